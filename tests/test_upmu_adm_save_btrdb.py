"""save's BTrDB step against a real ``qss-btrdb``: the streams' metadata is created and
updated with sync2q's code, read back with the official client; a save with nothing to
do writes nothing to BTrDB; with BTrDB down the file is saved, backupconfig.ini left as
it was, and the next save applies what is pending.

Each test uses its own aliases and UUIDs, so one server serves the module.
"""
from __future__ import annotations

import secrets
import socket
import uuid
import warnings
from pathlib import Path

import pytest

from qss.streams import BASE_STREAMS, EXTENDED_STREAMS, UNITS
from qss.tsdb import testing
from qss.upmuconfig import UpmuList
from upmu_adm import ShellState
from upmu_adm.metadata import BtrdbMetadata

from test_upmu_adm_commands import PICKED_UP, one, run, section

SIX = [s for s in EXTENDED_STREAMS if s not in BASE_STREAMS]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc = testing.start(tmp_path_factory.mktemp("btrdb") / "data")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def db(server):
    import btrdb
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        conn = btrdb.connect(server.grpc)
    yield conn


class Site:
    """upmuconfig.ini with one base uPMU of unique alias and UUIDs."""

    def __init__(self, tmp_path: Path, endpoint: str) -> None:
        tag = secrets.token_hex(4)
        self.alias, self.new = f"a{tag}", f"n{tag}"
        self.cfg = tmp_path / "upmuconfig.ini"
        self.backup = tmp_path / "backupconfig.ini"
        self.cfg.write_text(section("192.168.1.24", "P3112233", self.alias, BASE_STREAMS,
                                    first=secrets.randbits(100)))
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

    # A removed uPMU's streams stay, and the operator is told so.
    removed = site.upmu(site.new)
    reply = run(site.state, f"rem {site.new}; save", answers=[True])[-1]
    assert reply.ok, reply.text
    assert reply.text.splitlines()[2] == (
        f"Removed {site.describe(site.new)}: its streams and data stored in BTrDB are "
        f"kept (this version of upmu-adm cannot delete stored data).")
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_save_with_btrdb_down_keeps_the_file_and_the_next_save_applies_it(tmp_path, db):
    port = free_port()
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

    server = testing.start(tmp_path / "data", "--grpc", f"127.0.0.1:{port}")
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
    """No second copy of the metadata rules: save goes through sync2q.streams."""
    import sync2q.streams
    calls = []

    def ensure(self, upmu, specs, names=None, done=None):
        calls.append((upmu.alias, sorted(specs) == sorted(upmu.streams)))
        raise ConnectionError("no")

    monkeypatch.setattr(sync2q.streams.StreamRegistry, "ensure", ensure)
    site = Site(tmp_path, "127.0.0.1:1")
    reply = one(site.state, "save")
    assert calls == [(site.alias, True)]
    assert not reply.ok and not site.backup.exists()
