"""save's transaction, as a library function: :func:`save` does the work and returns a
:class:`SaveResult`; the ``save`` command (:mod:`upmu_adm.commands`) only words it.

How this works, in order (each step only once the one before it is done):

1. Write ``upmuconfig.ini`` atomically: the working copy, refused if someone changed the
   file since upmu-adm read it; or, merging, the logged edits replayed on the file as it
   is now under its lock. Either failure writes nothing and raises. Without unsaved
   changes nothing is written and save brings the record of what was applied up to the
   file instead (it may have been changed by hand, or an earlier save left metadata or
   the record pending).
2. Apply the streams' metadata of the uPMUs added or changed since the last applied list
   (``backupconfig.ini``) in BTrDB, with sync2q's code (:mod:`upmu_adm.metadata`).
3. Only then record the list as applied in ``backupconfig.ini``: it is the base of the
   next metadata diff, so a list whose metadata is pending must not be recorded.
4. Delete the queued files of removed uPMUs the operator asked to delete at ``rem``.
5. Delete from BTrDB the streams of removed uPMUs asked for at ``rem``, and those an
   earlier save could not delete, never a stream whose UUID a uPMU of the saved list
   has; what BTrDB does not let it delete stays in ``state.pending_drops``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

from qss.queue import QueueError, Tally
from qss.upmuconfig import (Fingerprint, Upmu, UpmuConfigError, UpmuDiff, UpmuList,
                            UpmuListError, diff, load_backup, write_backup)

from .metadata import Applied, MetadataError, StoredDataError
from .state import Edit, ShellState, StreamDrop

__all__ = ["Deletion", "Purge", "ReplayError", "SaveResult", "Written", "in_use", "save"]


class ReplayError(Exception):
    """``save merge``: ``edit`` cannot be made on the file as it is now (``error`` says
    why); nothing was written."""

    def __init__(self, edit: Edit, error: UpmuListError) -> None:
        super().__init__(str(error))
        self.edit = edit
        self.error = error


@dataclass(frozen=True)
class Written:
    """``upmuconfig.ini`` as this save wrote it."""

    before: UpmuList     # the list it replaced (merging: the file as it was on disk)
    after: UpmuList      # the list as written
    merged: bool         # the edits were replayed on the file as it was (save merge)

    @property
    def changes(self) -> UpmuDiff:
        return diff(self.before, self.after)


@dataclass(frozen=True)
class Purge:
    """The queued files of a removed uPMU, asked at ``rem`` to be deleted. Neither
    ``deleted`` nor ``error``: kept, as its serial is in the saved list again."""

    serial: str
    described: str                # the uPMU as described when removed
    deleted: Tally | None = None  # what was deleted
    error: str | None = None      # why nothing was deleted (the queue failed)


@dataclass(frozen=True)
class Deletion:
    """The streams of a removed uPMU, to delete from BTrDB."""

    described: str                # the uPMU as described when removed
    back: tuple[str, ...]         # streams kept: their UUIDs are in the list again
    asked: int                    # streams to delete (those not in ``back``)
    deleted: int = 0              # deleted now; asked - deleted were already gone
    left: StreamDrop | None = None   # still to delete (BTrDB failed; ``error`` says how)
    error: str | None = None


@dataclass
class SaveResult:
    """What one :func:`save` did and what it left pending.

    ``written`` None: there were no unsaved changes, so nothing was written, and save
    brought ``backupconfig.ini`` up to the file: ``last_applied`` is None when it cannot
    be read (``backup_error`` says why), ``since`` None when it records the file already.
    ``ok`` False: something is pending (the operator retries with save).
    """

    path: str
    backup_path: str
    saved: UpmuList                          # the list as the file now holds it
    btrdb: str | None                        # where metadata goes; None: no BTrDB step
    written: Written | None = None
    last_applied: UpmuList | None = None     # backupconfig.ini before this save (empty
                                             # when missing, or unreadable at a write)
    since: UpmuDiff | None = None            # saved against last_applied
    applied: list[Applied] = field(default_factory=list)    # metadata applied
    metadata_error: MetadataError | None = None   # its .pending uPMUs were not applied
    recorded: bool = False                   # backupconfig.ini written by this save
    backup_error: UpmuConfigError | None = None   # backupconfig.ini unreadable/unwritable
    kept: list[Upmu] = field(default_factory=list)   # removed; streams stay in BTrDB
    purges: list[Purge] = field(default_factory=list)
    deletions: list[Deletion] = field(default_factory=list)

    @property
    def pending(self) -> list[Upmu]:
        """The uPMUs whose streams' metadata is still to apply in BTrDB."""
        return [] if self.metadata_error is None else list(self.metadata_error.pending)

    @property
    def ok(self) -> bool:
        """Everything was done: no metadata, record or deletion is pending."""
        return (self.metadata_error is None and self.backup_error is None
                and all(p.error is None for p in self.purges)
                and all(d.error is None for d in self.deletions))


def save(state: ShellState, merge: bool = False) -> SaveResult:
    """Save ``state`` (see the module's steps); the state's saved list becomes the
    written one. ``merge``: replay the edits on the file as it is now.

    Raises (nothing written, the state unchanged):
        UpmuConflictError: not merging, and someone changed ``upmuconfig.ini`` since
            upmu-adm read it.
        ReplayError: merging, and an edit cannot be made on the file as it is now.
        UpmuConfigError: ``upmuconfig.ini`` cannot be read or written.
    """
    if state.unsaved:
        written, fp = _merge(state) if merge else _write(state)
        drops = dict(state.drops)      # the reset to the written list clears them
        result = _apply_saved(state, written, fp, drops)
    else:
        drops = {}
        result = _record_applied(state)
    result.deletions = _delete_streams(state, drops)
    return result


def in_use(upmus: UpmuList) -> dict[UUID, str]:
    """UUID -> the uPMU of the list (excluded sections too) whose section has it."""
    return {info.uuid: u.describe() for u in (*upmus, *upmus.excluded)
            for info in u.streams.values()}


def _copy(upmus: UpmuList, path: str) -> UpmuList:
    return UpmuList.parse(upmus.render(), path)


def _write(state: ShellState) -> tuple[Written, Fingerprint | None]:
    fp = state.upmus.save(state.path, expect=state.fingerprint)
    return Written(state.saved, _copy(state.upmus, state.path), merged=False), fp


def _merge(state: ShellState) -> tuple[Written, Fingerprint | None]:
    with UpmuList.edit(state.path) as current:
        before = _copy(current, state.path)
        for edit in state.edits:
            try:
                edit.apply(current)
            except UpmuListError as exc:
                raise ReplayError(edit, exc) from None
        text = current.render()
    return (Written(before, UpmuList.parse(text, state.path), merged=True),
            current.fingerprint)


def _result(state: ShellState, **kw) -> SaveResult:
    return SaveResult(state.path, state.backup_path, state.saved,
                      None if state.btrdb is None else state.btrdb.what, **kw)


def _apply_saved(state: ShellState, written: Written, fp: Fingerprint | None,
                 drops: dict[str, StreamDrop]) -> SaveResult:
    """The file is written: make it the state's saved list, apply the metadata, record
    the backup, delete the queued files asked for. ``drops``: the removed uPMUs whose
    streams are to be deleted (the others' are kept)."""
    purges = dict(state.purges)
    state.reset(written.after, fp)
    try:
        applied = load_backup(state.backup_path)
    except UpmuConfigError:
        applied = UpmuList.parse("", state.backup_path)   # apply every uPMU's metadata
    result = _result(state, written=written, last_applied=applied,
                     since=diff(applied, state.saved),
                     kept=[u for u in written.changes.removed if u.ip not in drops])
    _apply_metadata(state, result)
    if result.metadata_error is None:
        _record(state, result)
    result.purges = [_purge(state, serial, described)
                     for serial, described in purges.items()]
    return result


def _record_applied(state: ShellState) -> SaveResult:
    """No unsaved changes: bring backupconfig.ini up to the file (changed by hand, or a
    save whose metadata or backup was not applied), applying the streams' metadata of
    what differs first."""
    result = _result(state)
    try:
        applied = load_backup(state.backup_path)
    except UpmuConfigError as exc:
        result.backup_error = exc
        return result
    result.last_applied = applied
    if applied.render() == state.saved.render():
        return result
    result.since = diff(applied, state.saved)
    result.kept = list(result.since.removed)
    _apply_metadata(state, result)
    if result.metadata_error is None:
        _record(state, result)
    return result


def _apply_metadata(state: ShellState, result: SaveResult) -> None:
    """Create or update in BTrDB the streams of the uPMUs added or changed since the
    last applied list. Nothing to do without a BTrDB (library use) or such uPMUs."""
    assert result.since is not None
    upmus = list(result.since.added) + [new for _, new in result.since.changed]
    if state.btrdb is None or not upmus:
        return
    try:
        result.applied = state.btrdb.apply(upmus)
    except MetadataError as exc:
        result.applied = list(exc.done)
        result.metadata_error = exc


def _record(state: ShellState, result: SaveResult) -> None:
    try:
        write_backup(state.saved, state.backup_path)
    except UpmuConfigError as exc:
        result.backup_error = exc
    else:
        result.recorded = True


def _purge(state: ShellState, serial: str, described: str) -> Purge:
    """Delete a saved-away uPMU's queued files."""
    if state.saved.by_serial(serial) is not None:
        return Purge(serial, described)
    try:
        gone = state.services.queue().delete(serial)
    except QueueError as exc:
        return Purge(serial, described, error=str(exc))
    return Purge(serial, described, deleted=gone)


def _delete_streams(state: ShellState, drops: dict[str, StreamDrop]) -> list[Deletion]:
    """Delete from BTrDB the streams of ``drops`` and ``state.pending_drops``, except
    those whose UUIDs a uPMU of the saved list has. What BTrDB does not let it delete
    stays in ``state.pending_drops`` for the next save."""
    todo = {**state.pending_drops, **drops}
    if not todo or state.btrdb is None:
        return []
    used = in_use(state.saved)
    done = []
    for ip, drop in todo.items():
        state.pending_drops.pop(ip, None)
        back = tuple(n for n, u in drop.streams if u in used)
        drop = drop.only(u for u in drop.uuids if u not in used)
        if not drop.streams:
            done.append(Deletion(drop.described, back, 0))
            continue
        try:
            gone = state.btrdb.obliterate(drop.uuids)
        except StoredDataError as exc:
            left = drop.only(u for u in drop.uuids if u not in exc.done)
            state.pending_drops[ip] = left
            done.append(Deletion(drop.described, back, len(drop.streams), left=left,
                                 error=exc.reason))
            continue
        done.append(Deletion(drop.described, back, len(drop.streams), len(gone)))
    return done

