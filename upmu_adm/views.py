"""Text the shell shows: tables and descriptions of changes to the uPMU list (pure)."""
from __future__ import annotations

from qss.status import age, number, size, table, tally, when  # shared with qss-get --status
from qss.upmuconfig import Upmu, UpmuDiff, UpmuList

__all__ = ["BTRDB_KEPT", "age", "change_lines", "count", "describe_change", "mode",
           "number", "size", "table", "tally", "unsaved_summary", "when"]

#: Said of a removed uPMU's stored data when there is no BTrDB step (library use).
BTRDB_KEPT = ("its data stored in BTrDB is kept (this version of upmu-adm cannot delete "
              "stored data)")


def count(n: int, noun: str) -> str:
    """``1 uPMU``, ``2 uPMUs``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def mode(extended: bool) -> str:
    """``extended`` or ``base``, the manual's names of the two file modes."""
    return "extended" if extended else "base"


def describe_change(old: Upmu, new: Upmu) -> str:
    """What changed in one uPMU, e.g. ``base -> extended mode, 6 streams added``."""
    parts = []
    if old.serial != new.serial:
        parts.append(f"serial {old.serial} -> {new.serial}")
    if old.alias != new.alias:
        parts.append(f"alias {old.alias} -> {new.alias}")
    if old.extended != new.extended:
        parts.append(f"{mode(old.extended)} -> {mode(new.extended)} mode")
    added = [s for s in new.streams if s not in old.streams]
    removed = [s for s in old.streams if s not in new.streams]
    if added:
        parts.append(f"{count(len(added), 'stream')} added ({', '.join(added)})")
    if removed:
        parts.append(f"{count(len(removed), 'stream')} removed ({', '.join(removed)})")
    moved = [s for s in new.streams if s in old.streams
             and (old.streams[s].uuid, old.streams[s].path)
             != (new.streams[s].uuid, new.streams[s].path)]
    if moved:
        parts.append(f"UUID or Path changed for {', '.join(moved)}")
    return ", ".join(parts) or "section edited"


def _summary(u: Upmu) -> str:
    active = sum(1 for s in u.active_streams if s in u.streams)
    return f"{u.describe()}, {mode(u.extended)} mode, {count(active, 'stream')}"


def change_lines(d: UpmuDiff, old: UpmuList | None = None,
                 new: UpmuList | None = None) -> list[str]:
    """One line per uPMU added, removed or changed; with both lists, also sections
    that were left out as unusable (see ``UpmuList.excluded``) and are now gone."""
    lines = [f"added   {_summary(u)}" for u in d.added]
    lines += [f"removed {u.describe()}" for u in d.removed]
    lines += [f"changed {n.describe()}: {describe_change(o, n)}" for o, n in d.changed]
    if old is not None and new is not None:
        remaining = {u.ip for u in new.upmus + new.excluded}
        lines += [f"removed unusable section [{u.ip}]" for u in old.excluded
                  if u.ip not in remaining]
    return lines


def unsaved_summary(d: UpmuDiff, old: UpmuList, new: UpmuList) -> tuple[str, str]:
    """(``2 unsaved changes``, ``added ...; removed ...``), each on one line."""
    lines = change_lines(d, old, new) or ["edits to the file"]
    return (count(len(lines), "unsaved change"),
            "; ".join(" ".join(line.split()) for line in lines))

