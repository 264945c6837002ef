"""save's BTrDB step against a real ``qss-btrdb``: the streams' metadata is created and
updated with sync2q's code, read back with the official client; a save with nothing to
do writes nothing to BTrDB; with BTrDB down the file is saved, backupconfig.ini left as
it was, and the next save applies what is pending. rem's offer to delete a removed
uPMU's streams: a typed yes has save obliterate them (the official client finds them
gone), anything else keeps them, a UUID another uPMU has is never deleted, and with
BTrDB down at save the deletion stays pending, named, until a later save.

Each test uses its own aliases and UUIDs, so one server serves the module.
"""
from __future__ import annotations

import secrets
import warnings
from pathlib import Path

import pytest

from qss.streams import BASE_STREAMS, EXTENDED_STREAMS, UNITS
from qss.upmuconfig import UpmuList
from upmu_adm import ShellState
from upmu_adm.commands import REGISTRY
from upmu_adm.metadata import BtrdbMetadata

from test_sync2q_support import reserve_port, start_btrdb_on
from test_upmu_adm_commands import PICKED_UP, one, run, section

SIX = [s for s in EXTENDED_STREAMS if s not in BASE_STREAMS]


@pytest.fixture(scope="module")
def db(server):
    import btrdb
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        conn = btrdb.connect(server.grpc)
    yield conn


class Site:
    """upmuconfig.ini with one base uPMU of unique alias and UUIDs."""

    def __init__(self, tmp_path: Path, endpoint: str, extra: str = "") -> None:
        tag = secrets.token_hex(4)
        self.alias, self.new = f"a{tag}", f"n{tag}"
        self.cfg = tmp_path / "upmuconfig.ini"
        self.backup = tmp_path / "backupconfig.ini"
        self.first = secrets.randbits(100)
        self.cfg.write_text(section("192.168.1.24", "P3112233", self.alias, BASE_STREAMS,
                                    first=self.first) + extra)
        self.endpoint = endpoint
        self.state = ShellState.load(str(self.cfg), str(self.backup),
                                     btrdb=BtrdbMetadata([endpoint], deadline=3.0))

    def describe(self, alias: str) -> str:
        return {self.alias: f"{self.alias} (192.168.1.24, P3112233)",
                self.new: f"{self.new} (10.0.0.5, P3001234)"}[alias]

    def upmu(self, alias: str):
        return UpmuList.load(str(self.cfg)).find(alias)


def versions(db, upmu) -> dict:
    """uuid -> (data version, property version) of every stream of ``upmu``."""
    out = {}
    for info in upmu.streams.values():
        _, prop_version, _, _, _ = db.ep.streamInfo(info.uuid, False, True)
        out[info.uuid] = (db.stream_from_uuid(info.uuid).version(), prop_version)
    return out


def assert_streams(db, upmu, names) -> None:
    """Each stream exists with the collection, tags and annotations of the file."""
    assert sorted(upmu.streams) == sorted(names)
    for name, info in upmu.streams.items():
        stream = db.stream_from_uuid(info.uuid)
        assert stream.exists(), name
        stream.refresh_metadata()
        assert stream.collection == f"upmu/{upmu.alias}"
        assert stream.tags()["name"] == name
        assert stream.tags()["unit"] == UNITS[name]
        assert stream.annotations()[0] == {
            "Metadata/Instrument/SerialNumber": upmu.serial,
            "Properties/UnitofMeasure": UNITS[name]}


def test_save_creates_the_streams_and_a_second_save_does_nothing(tmp_path, server, db):
    site = Site(tmp_path, server.grpc)
    reply = run(site.state, f"add 10.0.0.5 P3001234 {site.new} true; save")[-1]
    assert reply.ok, reply.text
    assert reply.text.splitlines() == [
        f"Saved {site.cfg}:",
        f"  added   {site.describe(site.new)}, extended mode, 19 streams",
        f"Applied the streams' metadata in BTrDB {server.grpc}: {site.describe(site.alias)} "
        f"13 created; {site.describe(site.new)} 19 created.",
        f"Recorded it as the last applied list in {site.backup}.",
        PICKED_UP]
    assert site.backup.read_text() == site.cfg.read_text()
    assert_streams(db, site.upmu(site.alias), BASE_STREAMS)
    assert_streams(db, site.upmu(site.new), EXTENDED_STREAMS)

    # Nothing changed: nothing written to BTrDB (data and property versions unchanged).
    before = {**versions(db, site.upmu(site.alias)), **versions(db, site.upmu(site.new))}
    assert one(site.state, "save").text == "Nothing to save - no unsaved changes"
    assert {**versions(db, site.upmu(site.alias)),
            **versions(db, site.upmu(site.new))} == before

    # A removed uPMU's streams stay unless deleted at rem, and the operator is told so.
    removed = site.upmu(site.new)
    reply = run(site.state, f"rem {site.new}; save", answers=[True, False])[-1]
    assert reply.ok, reply.text
    assert reply.text.splitlines()[2] == (
        f"Removed {site.describe(site.new)}: its streams and data stored in BTrDB are "
        f"kept.")
    assert "Applied" not in reply.text             # nothing to apply: BTrDB not asked
    assert {**versions(db, site.upmu(site.alias)), **versions(db, removed)} == before


def test_setext_then_save_adds_the_six_streams_and_keeps_the_others(tmp_path, server, db):
    site = Site(tmp_path, server.grpc)
    assert one(site.state, "save").ok              # first apply: backupconfig.ini missing
    base = site.upmu(site.alias)
    before = versions(db, base)
    reply = run(site.state, f"setext {site.alias} true; save")[-1]
    assert reply.ok, reply.text
    assert reply.text.splitlines()[2:] == [
        f"Applied the streams' metadata in BTrDB {server.grpc}: {site.describe(site.alias)} "
        f"6 created, 13 already right.",
        f"Recorded it as the last applied list in {site.backup}.",
        PICKED_UP]
    extended = site.upmu(site.alias)
    assert {n: i.uuid for n, i in extended.streams.items() if n in BASE_STREAMS} == \
        {n: i.uuid for n, i in base.streams.items()}
    assert_streams(db, extended, EXTENDED_STREAMS)
    after = versions(db, extended)
    assert {u: after[u] for u in before} == before       # the 13 untouched


def test_save_with_btrdb_down_keeps_the_file_and_the_next_save_applies_it(tmp_path, db):
    # Nothing listens on it (BTrDB down), and no other process is given it meanwhile;
    # BTrDB starts on it below (retried should it be in use all the same).
    port = reserve_port()
    site = Site(tmp_path, f"127.0.0.1:{port}")
    site.backup.write_text(site.cfg.read_text())   # as if applied earlier
    recorded = site.backup.read_text()

    reply = run(site.state, f"add 10.0.0.5 P3001234 {site.new} true; save")[-1]
    assert not reply.ok
    lines = reply.text.splitlines()
    assert lines[:2] == [f"Saved {site.cfg}:",
                         f"  added   {site.describe(site.new)}, extended mode, 19 streams"]
    assert lines[2].startswith(
        f"save: the streams' metadata is not applied: BTrDB 127.0.0.1:{port} is "
        f"unreachable or failing (")
    assert lines[2].endswith(f"); {site.cfg} is saved, {site.backup} is left as it was.")
    assert lines[3:] == [
        f"Pending in BTrDB: create or update the streams of {site.describe(site.new)} "
        f"(19 streams).",
        "The receiver picks up the new list now (no restart needed); sync2q creates the "
        "streams itself once BTrDB answers; type save again to retry the metadata now."]
    assert site.upmu(site.new).extended                  # the file is saved
    assert site.backup.read_text() == recorded           # backupconfig.ini untouched
    assert not site.state.unsaved

    # Still down: save retries, and says the same.
    reply = one(site.state, "save")
    assert not reply.ok
    assert reply.text.splitlines()[:2] == [
        f"Nothing to save in {site.cfg}, but it differs from the last applied list in "
        f"{site.backup}:",
        f"  added   {site.describe(site.new)}, extended mode, 19 streams"]
    assert reply.text.splitlines()[3:] == lines[3:]
    assert site.backup.read_text() == recorded

    server = start_btrdb_on(tmp_path / "data", port)
    try:
        reply = one(site.state, "save")
        assert reply.ok, reply.text
        assert reply.text.splitlines() == [
            f"Nothing to save in {site.cfg}; recorded it as the last applied list in "
            f"{site.backup}, which differed:",
            f"  added   {site.describe(site.new)}, extended mode, 19 streams",
            f"Applied the streams' metadata in BTrDB 127.0.0.1:{port}: "
            f"{site.describe(site.new)} 19 created."]
        assert site.backup.read_text() == site.cfg.read_text()
        import btrdb
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            conn = btrdb.connect(server.grpc)
        assert_streams(conn, site.upmu(site.new), EXTENDED_STREAMS)
        assert one(site.state, "save").text == "Nothing to save - no unsaved changes"
    finally:
        server.stop()


def test_save_uses_sync2qs_streams_code(tmp_path, monkeypatch):
    """No second copy of the metadata rules: save goes through qss.streammeta."""
    import qss.streammeta
    calls = []

    def ensure(self, upmu, specs, names=None, done=None):
        calls.append((upmu.alias, sorted(specs) == sorted(upmu.streams)))
        raise ConnectionError("no")

    monkeypatch.setattr(qss.streammeta.StreamRegistry, "ensure", ensure)
    site = Site(tmp_path, "127.0.0.1:1")
    reply = one(site.state, "save")
    assert calls == [(site.alias, True)]
    assert not reply.ok and not site.backup.exists()


# -- rem's offer to delete the stored data --------------------------------------------------

def ask(state, line: str, answers):
    """Run a line answering questions from ``answers``; (replies, questions asked)."""
    answers, asked = list(answers), []

    def confirm(c) -> bool:
        asked.append(c)
        return answers.pop(0)

    replies = list(REGISTRY.execute(state, line, confirm))
    assert not answers, [c.question for c in asked]
    return replies, asked


def exists(db, uuids) -> list[bool]:
    return [db.stream_from_uuid(u).exists() for u in uuids]


def test_rem_yes_then_save_obliterates_the_streams(tmp_path, server, db):
    site = Site(tmp_path, server.grpc)
    assert run(site.state, f"add 10.0.0.5 P3001234 {site.new} true; save")[-1].ok
    gone = [i.uuid for i in site.upmu(site.new).streams.values()]
    kept = [i.uuid for i in site.upmu(site.alias).streams.values()]
    db.stream_from_uuid(gone[0]).insert([(1_000_000_000, 1.0), (2_000_000_000, 2.0)])
    db.stream_from_uuid(gone[0]).flush()

    (reply,), asked = ask(site.state, f"rem {site.new}", [True, True])
    assert asked[1].word == "yes" and not asked[1].unattended     # --yes never answers it
    assert asked[1].question.splitlines() == [
        f"{site.describe(site.new)} has 19 streams in BTrDB {server.grpc} holding 2 "
        f"points.",
        "WARNING: deleting them deletes all their data from BTrDB for good.",
        "Delete its streams and all their data from BTrDB when you save the removal?"]
    assert reply.ok and reply.text.splitlines()[1:] == [
        "Its queued files are kept",
        f"Its streams in BTrDB (19 streams in BTrDB {server.grpc} holding 2 points) will be "
        f"deleted with all their data when you save"]
    assert all(exists(db, gone))                                 # not before save

    reply = one(site.state, "save")
    assert reply.ok, reply.text
    assert reply.text.splitlines()[-1] == (
        f"Deleted the streams of {site.describe(site.new)} from BTrDB {server.grpc}: "
        f"19 streams and all their data.")
    assert "are kept" not in reply.text
    assert not any(exists(db, gone))                             # the official client agrees
    assert all(exists(db, kept))
    assert one(site.state, "save").text == "Nothing to save - no unsaved changes"


def test_rem_anything_but_yes_keeps_the_streams(tmp_path, server, db):
    site = Site(tmp_path, server.grpc)
    assert one(site.state, "save").ok
    mine = [i.uuid for i in site.upmu(site.alias).streams.values()]

    # No: kept.
    (reply,), _ = ask(site.state, f"rem {site.alias}", [True, False])
    assert reply.text.splitlines()[-1] == (
        f"Its streams and data stored in BTrDB are kept (13 streams in BTrDB "
        f"{server.grpc} holding 0 points)")
    # Without a terminal (scripts, even with --yes) nobody answers: kept.
    one(site.state, "reload", answers=[True])
    replies = list(REGISTRY.execute(site.state, f"rem {site.alias}",
                                    lambda c: c.word == "y"))   # y, never the typed yes
    assert "are kept" in replies[-1].text and not site.state.drops
    # Yes, then reload: the request is forgotten.
    one(site.state, "reload", answers=[True])
    ask(site.state, f"rem {site.alias}", [True, True])
    assert site.state.drops
    one(site.state, "reload", answers=[True])
    assert not site.state.drops
    reply = run(site.state, f"rem {site.alias}; save", answers=[True, False])[-1]
    assert reply.ok and "Deleted the streams" not in reply.text
    assert all(exists(db, mine))


def test_rem_never_deletes_a_stream_whose_uuid_another_upmu_has(tmp_path, server, db):
    site = Site(tmp_path, server.grpc)
    # The other uPMU's L1MAG repeats the last UUID of the first (the file lists it there).
    other = f"o{secrets.token_hex(4)}"
    site.cfg.write_text(site.cfg.read_text() + section(
        "10.0.0.9", "P3000009", other, BASE_STREAMS, first=site.first + 12))
    site.state = ShellState.load(str(site.cfg), str(site.backup),
                                 btrdb=site.state.btrdb)
    assert one(site.state, "save").ok
    first = [i.uuid for i in site.upmu(site.alias).streams.values()]
    shared = first[-1]

    (reply,), asked = ask(site.state, f"rem {site.alias}", [True, True])
    assert asked[1].question.splitlines()[:2] == [
        f"{site.describe(site.alias)} has 12 streams in BTrDB {server.grpc} holding 0 "
        f"points.",
        f"Of its streams, those whose UUIDs {other} (10.0.0.9, P3000009) also has are "
        f"kept."]
    assert one(site.state, "save").ok
    assert exists(db, first) == [False] * 12 + [True]
    assert site.upmu(other).streams["L1MAG"].uuid == shared


def test_btrdb_down_at_save_keeps_the_deletion_pending_until_a_later_save(tmp_path):
    port = reserve_port()
    site = Site(tmp_path, f"127.0.0.1:{port}")
    uuids = [i.uuid for i in site.upmu(site.alias).streams.values()]

    (reply,), asked = ask(site.state, f"rem {site.alias}", [True, True])
    details = asked[1].question.splitlines()[0]
    assert details.startswith(f"{site.describe(site.alias)} has 13 streams in "
                              f"upmuconfig.ini, not counted in BTrDB (BTrDB 127.0.0.1:"
                              f"{port} is unreachable or failing (")
    reply = one(site.state, "save")
    assert not reply.ok
    last = reply.text.splitlines()[-1]
    assert last.startswith(f"save: the streams of {site.describe(site.alias)} are not "
                           f"deleted from BTrDB: BTrDB 127.0.0.1:{port} is unreachable")
    assert last.endswith(
        "; still to delete: 13 streams ("
        + ", ".join(f"{n} {u}" for n, u in zip(BASE_STREAMS, uuids))
        + "); type save again to retry (leaving upmu-adm forgets this).")
    assert not list(UpmuList.load(str(site.cfg)))                # the file is saved
    assert not site.state.unsaved and list(site.state.pending_drops)

    # Still down: save (nothing to save) says the same and keeps it pending.
    reply = one(site.state, "save")
    assert not reply.ok
    assert reply.text.splitlines()[-1].endswith(last[last.index("; still to delete"):])
    assert site.state.pending_drops
    assert one(site.state, "exit").text.splitlines() == [     # leaving would forget it
        "Clean exit - no unsaved changes",
        f"warning: forgetting the deletion of 13 streams of {site.describe(site.alias)} "
        f"from BTrDB that save could not do; they stay in BTrDB"]

    server = start_btrdb_on(tmp_path / "data", port)
    try:
        import btrdb
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            conn = btrdb.connect(server.grpc)
        for name, u in zip(BASE_STREAMS, uuids):     # as sync2q had stored them
            conn.create(u, f"upmu/{site.alias}", {"name": name, "unit": UNITS[name]})
        reply = one(site.state, "save")
        assert reply.ok, reply.text
        assert reply.text.splitlines()[-1] == (
            f"Deleted the streams of {site.describe(site.alias)} from BTrDB 127.0.0.1:"
            f"{port}: 13 streams and all their data.")
        assert not any(exists(conn, uuids)) and not site.state.pending_drops
        assert one(site.state, "save").text == "Nothing to save - no unsaved changes"
    finally:
        server.stop()
