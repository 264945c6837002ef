"""save's transaction as a library function (upmu_adm.saving.save) and its result, with a
stand-in for BTrDB that records what it was asked; and refusals (registry.Refusal)
raised by commands, helpers and the continuations of questions, which the registry
turns into failed replies. save against a real BTrDB is in test_upmu_adm_save_btrdb.py;
the words of its reply in test_upmu_adm_commands.py.
"""
from __future__ import annotations

import pytest

from qss.streams import BASE_STREAMS
from qss.upmuconfig import UpmuConflictError, UpmuList
from upmu_adm import REGISTRY, Refusal, ShellState, save
from upmu_adm.metadata import Applied, MetadataError, Stored, StoredDataError
from upmu_adm.registry import Choice, Confirm, Registry, Reply, ok
from upmu_adm.saving import ReplayError

from test_upmu_adm_commands import ORIGINAL, U1, U2, run, section


class FakeBtrdb:
    """What save asks of BTrDB (``upmu_adm.metadata.BtrdbMetadata``), recorded; ``fail_*``
    make the next calls fail as BTrDB down would."""

    what = "BTrDB fake:4410"

    def __init__(self) -> None:
        self.applied: list[list[str]] = []     # aliases, per apply call
        self.deleted: list = []
        self.fail_apply_after: int | None = None
        self.fail_obliterate_after: int | None = None

    def apply(self, upmus):
        self.applied.append([u.alias for u in upmus])
        done = [Applied(u, len(u.streams), 0, 0) for u in upmus]
        n = self.fail_apply_after
        if n is not None:
            raise MetadataError("BTrDB fake:4410 is unreachable", False, done[:n],
                                list(upmus[n:]))
        return done

    def stored(self, uuids):
        return Stored(tuple(uuids), 0)

    def obliterate(self, uuids):
        n = self.fail_obliterate_after
        if n is not None:
            self.deleted += uuids[:n]
            raise StoredDataError("BTrDB fake:4410 is unreachable", uuids[:n])
        self.deleted += uuids
        return list(uuids)


@pytest.fixture
def btrdb() -> FakeBtrdb:
    return FakeBtrdb()


@pytest.fixture
def state(tmp_path, btrdb) -> ShellState:
    cfg = tmp_path / "upmuconfig.ini"
    cfg.write_text(ORIGINAL)
    return ShellState.load(str(cfg), str(tmp_path / "backupconfig.ini"), btrdb=btrdb)


# -- save() ------------------------------------------------------------------------------

def test_save_returns_what_it_wrote_applied_and_recorded(state, btrdb):
    run(state, "add 10.0.0.5 P3001234 u1 true; rem uPMU2", answers=[True, False])
    result = save(state)
    assert result.ok and result.recorded and not result.pending
    assert result.written is not None and not result.written.merged
    assert [u.alias for u in result.written.changes.added] == ["u1"]
    assert [u.describe() for u in result.written.changes.removed] == [U2]
    assert [u.describe() for u in result.kept] == [U2]     # its streams were not asked for
    # No backupconfig.ini yet: every uPMU of the list is applied, once.
    assert btrdb.applied == [["uPMU1", "u1"]]
    assert [a.upmu.alias for a in result.applied] == ["uPMU1", "u1"]
    assert not state.unsaved and state.saved.render() == result.saved.render()
    assert open(state.backup_path).read() == open(state.path).read()
    assert (result.purges, result.deletions) == ([], [])

    again = save(state)                     # nothing to save, nothing to apply
    assert again.ok and again.written is None and again.since is None
    assert not again.recorded and btrdb.applied == [["uPMU1", "u1"]]


def test_save_with_the_metadata_failing_records_nothing_and_the_next_save_applies_it(
        state, btrdb, tmp_path):
    run(state, "add 10.0.0.5 P3001234 u1")
    btrdb.fail_apply_after = 1
    result = save(state)
    assert not result.ok and not result.recorded
    assert [a.upmu.alias for a in result.applied] == ["uPMU1"]
    assert [u.alias for u in result.pending] == ["uPMU2", "u1"]
    assert UpmuList.load(state.path).find("u1")          # the file is saved all the same
    assert not (tmp_path / "backupconfig.ini").exists() and not state.unsaved

    btrdb.fail_apply_after = None
    result = save(state)
    assert result.ok and result.recorded and result.written is None
    assert result.since is not None and len(result.since.added) == 3
    assert btrdb.applied[-1] == ["uPMU1", "uPMU2", "u1"]
    assert open(state.backup_path).read() == open(state.path).read()


def test_save_raises_and_changes_nothing_when_the_file_changed_meanwhile(state):
    run(state, "add 10.0.0.5 P3001234 u1")
    hand = ORIGINAL + section("10.0.0.7", "P3000007", "byhand", BASE_STREAMS, first=400)
    with open(state.path, "w") as f:
        f.write(hand)
    with pytest.raises(UpmuConflictError):
        save(state)
    assert state.unsaved and open(state.path).read() == hand

    result = save(state, merge=True)
    assert result.ok and result.written is not None and result.written.merged
    assert [u.alias for u in result.written.changes.added] == ["u1"]
    assert [u.alias for u in state.saved] == ["uPMU1", "uPMU2", "byhand", "u1"]


def test_save_merge_raises_on_an_edit_it_cannot_replay(state):
    run(state, "add 10.0.0.5 P3001234 u1")
    hand = ORIGINAL + section("10.0.0.5", "P3000007", "byhand", BASE_STREAMS, first=400)
    with open(state.path, "w") as f:
        f.write(hand)
    with pytest.raises(ReplayError) as info:
        save(state, merge=True)
    assert info.value.edit.line == "add 10.0.0.5 P3001234 u1 false"
    assert state.unsaved and open(state.path).read() == hand


def test_save_keeps_a_failed_deletion_pending_and_the_next_save_retries_it(state, btrdb):
    uuids = [info.uuid for info in state.upmus.find("uPMU1").streams.values()]
    run(state, "rem uPMU1", answers=[True, True])
    btrdb.fail_obliterate_after = 4
    result = save(state)
    assert not result.ok
    (deletion,) = result.deletions
    assert (deletion.described, deletion.asked, deletion.error) == (
        U1, 13, "BTrDB fake:4410 is unreachable")
    assert deletion.left is not None and list(deletion.left.uuids) == uuids[4:]
    assert list(state.pending_drops["192.168.1.24"].uuids) == uuids[4:]

    btrdb.fail_obliterate_after = None
    result = save(state)
    assert result.ok and result.written is None
    (deletion,) = result.deletions
    assert (deletion.asked, deletion.deleted, deletion.left) == (9, 9, None)
    assert btrdb.deleted == uuids and not state.pending_drops


# -- refusals ------------------------------------------------------------------------------

class _Quiet:
    """A state whose file never changes on disk."""

    def refresh(self) -> None:
        return None


def _refuse() -> Reply:
    raise Refusal("x: no uPMU has alias 'u9'; type list to see the uPMUs")


def test_a_refusal_is_a_failed_reply_and_stops_the_line():
    reg = Registry()
    reg.command("x", usage="x", help="refuses")(lambda s, a: _refuse())
    reg.command("y", usage="y", help="fine")(lambda s, a: ok("y ran"))
    replies = list(reg.execute(_Quiet(), "y; x; y"))
    assert [(r.ok, r.text) for r in replies] == [
        (True, "y ran"),
        (False, "x: no uPMU has alias 'u9'; type list to see the uPMUs"),
        (False, "not run: y")]


@pytest.mark.parametrize("answer", [True, False])
def test_a_refusal_after_a_question_is_a_failed_reply(answer):
    reg = Registry()
    reg.command("x", usage="x", help="asks")(
        lambda s, a: ok(confirm=Confirm("Sure?", _refuse, _refuse)))
    (reply,) = reg.execute(_Quiet(), "x", lambda c: answer)
    assert (reply.ok, reply.text) == (
        False, "x: no uPMU has alias 'u9'; type list to see the uPMUs")


def test_a_refusal_of_an_unasked_offer_or_a_choice_is_a_failed_reply():
    reg = Registry()
    reg.command("offer", usage="offer", help="offers")(
        lambda s, a: ok(confirm=Confirm("Delete?", lambda: ok(), _refuse,
                                        unattended=False)))
    reg.command("pick", usage="pick", help="picks")(
        lambda s, a: ok(choice=Choice("Which?", (("u1", "u1"),), lambda v: _refuse(),
                                      lambda: ok("none"))))
    (reply,) = reg.execute(_Quiet(), "offer")          # no terminal: answered no
    assert not reply.ok and reply.text.startswith("x: no uPMU")
    (reply,) = reg.execute(_Quiet(), "pick", choose=lambda c: "u9")
    assert not reply.ok and reply.text.startswith("x: no uPMU")


def test_the_shells_helpers_refuse_through_the_registry(state):
    reply = REGISTRY.run(state, ["show", "u9"])
    assert (reply.ok, reply.text) == (
        False, "show: no uPMU has IP address, serial number or alias 'u9'; type list to "
               "see the uPMUs")
