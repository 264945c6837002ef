"""Time ranges [start, end) as sorted lists of pairs: widening, merging, cutting.

Pure functions; the engine keeps what it owes as such a list.
"""
from __future__ import annotations

from collections.abc import Iterable

#: BTrDB's valid times (v5): [MINIMUM_TIME, MAXIMUM_TIME).
MINIMUM_TIME = -(16 << 56)
MAXIMUM_TIME = 48 << 56

Range = tuple[int, int]


def clamp(r: Range) -> Range | None:
    """The part of ``r`` BTrDB can hold (a delete's end must stay below MAXIMUM_TIME)."""
    a, b = max(r[0], MINIMUM_TIME), min(r[1], MAXIMUM_TIME - 1)
    return (a, b) if a < b else None


def merge(ranges: Iterable[Range], gap: int = 0) -> list[Range]:
    """Sorted, disjoint ranges covering ``ranges``; ranges less than ``gap`` apart join
    (recomputing a small gap costs less than another chunk)."""
    out: list[list[int]] = []
    for a, b in sorted(r for r in ranges if r[0] < r[1]):
        if out and a <= out[-1][1] + gap:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def widen(ranges: Iterable[Range], before: int, after: int) -> list[Range]:
    """Each range grown by ``before`` and ``after``, clamped to BTrDB's times."""
    return [r for a, b in ranges if (r := clamp((a - before, b + after))) is not None]


def subtract(ranges: Iterable[Range], done: Range) -> list[Range]:
    """``ranges`` without ``done``."""
    out = []
    for a, b in ranges:
        if b <= done[0] or a >= done[1]:
            out.append((a, b))
            continue
        if a < done[0]:
            out.append((a, done[0]))
        if b > done[1]:
            out.append((done[1], b))
    return out


def total(ranges: Iterable[Range]) -> int:
    """The summed length of disjoint ranges, in ns."""
    return sum(b - a for a, b in ranges)
