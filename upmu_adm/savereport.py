"""The words of ``save``'s reply: :func:`save_lines` turns the
:class:`~upmu_adm.saving.SaveResult` of :func:`upmu_adm.saving.save` into the lines the
operator reads (pure)."""
from __future__ import annotations

from .saving import Deletion, Purge, SaveResult
from .views import BTRDB_KEPT, change_lines, count, tally

__all__ = ["PICKED_UP", "save_lines"]

#: Said once the new list is saved and recorded as applied.
PICKED_UP = "receiver and sync2q pick up the new list by themselves; no restart is needed."


def save_lines(r: SaveResult) -> list[str]:
    """The ``save`` command's reply to :func:`upmu_adm.saving.save`'s result, in order:
    the file written (or the record brought up to it), the streams' metadata, the
    backup, the queued files and the streams deleted."""
    lines = _written_lines(r) if r.written else _record_lines(r)
    lines += [_purge_line(r, p) for p in r.purges]
    return lines + [line for d in r.deletions for line in _deletion_lines(r, d)]


def _written_lines(r: SaveResult) -> list[str]:
    """What a save that wrote the file did: the changes, the metadata, the record."""
    w = r.written
    assert w is not None
    how = ", merged with the changes made to it meanwhile" if w.merged else ""
    lines = [f"Saved {r.path}{how}:"]
    lines += ["  " + line for line in change_lines(w.changes, w.before, w.after)
              or ["(no uPMU changed)"]]
    if r.metadata_error is not None:
        return lines + _kept_lines(r) + _pending_lines(r)
    lines += _applied_lines(r) + _kept_lines(r)
    if r.backup_error is not None:
        return lines + [f"save: {r.backup_path}: not recorded as applied: "
                        f"{r.backup_error}; {r.path} is saved; type save to try recording "
                        f"it again"]
    return lines + [f"Recorded it as the last applied list in {r.backup_path}.",
                    PICKED_UP]


def _record_lines(r: SaveResult) -> list[str]:
    """What a save without unsaved changes did: bring backupconfig.ini up to the file."""
    if r.last_applied is None:          # backupconfig.ini cannot be read
        return [f"save: {r.backup_path}: not recorded as applied: {r.backup_error}"]
    if r.since is None:                 # it records the file already
        return ["Nothing to save - no unsaved changes"]
    changes = ["  " + line for line in change_lines(r.since, r.last_applied, r.saved)
               or ["(comments only)"]]
    if r.metadata_error is not None:
        return ([f"Nothing to save in {r.path}, but it differs from the last applied "
                 f"list in {r.backup_path}:"] + changes + _pending_lines(r))
    if r.backup_error is not None:
        return _applied_lines(r) + [f"save: {r.backup_path}: not recorded as applied: "
                                    f"{r.backup_error}"]
    return ([f"Nothing to save in {r.path}; recorded it as the last applied list in "
             f"{r.backup_path}, which differed:"] + changes + _applied_lines(r)
            + _kept_lines(r))


def _applied_lines(r: SaveResult) -> list[str]:
    if not r.applied:
        return []
    return [f"Applied the streams' metadata in {r.btrdb}: "
            f"{'; '.join(a.describe() for a in r.applied)}."]


def _pending_lines(r: SaveResult) -> list[str]:
    """The streams' metadata could not all be applied: what was, why not, what now."""
    exc = r.metadata_error
    assert exc is not None
    lines = _applied_lines(r)
    lines.append(f"save: the streams' metadata is not applied: {exc.reason}; "
                 f"{r.path} is saved, {r.backup_path} is left as it was.")
    lines.append("Pending in BTrDB: create or update the streams of "
                 + "; ".join(f"{u.describe()} ({count(len(u.streams), 'stream')})"
                             for u in exc.pending) + ".")
    if exc.refused:
        lines.append("The receiver picks up the new list now (no restart needed); "
                     "sync2q stores no data of that uPMU until its streams are right: "
                     "fix upmuconfig.ini or the stream in BTrDB, then type save again.")
    else:
        lines.append("The receiver picks up the new list now (no restart needed); "
                     "sync2q creates the streams itself once BTrDB answers; type save "
                     "again to retry the metadata now.")
    return lines


def _kept_lines(r: SaveResult) -> list[str]:
    """One line per removed uPMU whose streams stay in BTrDB."""
    why = " (this version of upmu-adm cannot delete stored data)" if r.btrdb is None else ""
    return [f"Removed {u.describe()}: its streams and data stored in BTrDB are kept{why}."
            for u in r.kept]


def _purge_line(r: SaveResult, p: Purge) -> str:
    if p.error is not None:
        return (f"save: the queued files of {p.described} were not deleted: {p.error}; "
                f"delete them with: delbackup {p.serial} all")
    if p.deleted is None:
        return f"Kept the queued files of {p.serial}: it is in the uPMU list again"
    kept = f"; {BTRDB_KEPT}" if r.btrdb is None else ""
    return (f"Deleted the queued files of {p.described}: "
            f"{tally(p.deleted.files, p.deleted.bytes)}{kept}.")


def _deletion_lines(r: SaveResult, d: Deletion) -> list[str]:
    lines = []
    if d.back:
        lines.append(f"Kept {count(len(d.back), 'stream')} of {d.described} in BTrDB: "
                     f"their UUIDs are in the uPMU list again ({', '.join(d.back)}).")
    if not d.asked:
        return lines
    if d.left is not None:
        lines.append(f"save: the streams of {d.described} are not deleted from BTrDB: "
                     f"{d.error}; still to delete: {count(len(d.left.streams), 'stream')} ("
                     + ", ".join(f"{n} {u}" for n, u in d.left.streams)
                     + "); type save again to retry (leaving upmu-adm forgets this).")
        return lines
    already = d.asked - d.deleted
    lines.append(f"Deleted the streams of {d.described} from {r.btrdb}: "
                 f"{count(d.deleted, 'stream')} and all their data"
                 + (f" ({already} already gone)." if already else "."))
    return lines
