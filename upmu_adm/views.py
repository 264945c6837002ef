"""Text the shell shows: tables and descriptions of changes to the uPMU list (pure)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from qss.upmuconfig import Upmu, UpmuDiff, UpmuList

__all__ = ["age", "change_lines", "count", "describe_change", "mode", "number", "size",
           "table", "tally", "unsaved_summary", "when"]


def count(n: int, noun: str) -> str:
    """``1 uPMU``, ``2 uPMUs``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def mode(extended: bool) -> str:
    """``extended`` or ``base``, the manual's names of the two file modes."""
    return "extended" if extended else "base"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> str:
    """Left-aligned columns two spaces apart, a dashed rule under the header, no
    trailing spaces (so the text copies cleanly from a terminal)."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return (indent + "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]),
                      *(line(r) for r in rows)])


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


def number(n: int, noun: str) -> str:
    """``1 file``, ``1,440 files``: counts that may be large."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def size(nbytes: int) -> str:
    """Decimal units, as the manual writes file sizes: ``552 KB``, ``1.6 MB``."""
    if nbytes < 1000:
        return f"{nbytes} byte{'' if nbytes == 1 else 's'}"
    value = float(nbytes)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1000
        if value < 999.5 or unit == "TB":
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    raise AssertionError("unreachable")


def tally(files: int, nbytes: int, noun: str = "file") -> str:
    """``12 files (6.6 MB)``; ``0 files``."""
    return number(files, noun) + (f" ({size(nbytes)})" if files else "")


def when(t: dt.datetime | None) -> str:
    """A UTC time to the second, ``2015-12-18 08:14:57``, or ``never``."""
    if t is None:
        return "never"
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def age(seconds: float) -> str:
    """How long ago, roughly: ``12 s``, ``3 min``, ``2 h 5 min``, ``3 days``."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 48 * 3600:
        h, m = divmod(s // 60, 60)
        return f"{h} h {m} min" if m else f"{h} h"
    return f"{s // 86400} days"
