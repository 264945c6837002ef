"""Window statistics: computing them from points and combining them across windows.

A window's statistics are (count, min, mean, max, m2), where m2 is the sum of squared
deviations from the window's mean. m2 combines exactly across windows (Chan et al.'s
parallel formula), unlike a sum of squares, which loses every significant digit for
7,000 V signals with millivolt noise. stddev is the *population* standard deviation,
sqrt(m2 / count), as BTrDB reports it (reference/btrdb-v5.md, AlignedWindows).

Windows are identified by an int64 index ``w``; at width 2^pw, ``w = t >> pw`` (an
arithmetic shift, so negative times floor toward -inf) and the window starts at ``w << pw``.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from . import kernels


@dataclasses.dataclass(frozen=True)
class Stats:
    """Statistics of a sorted run of non-empty windows, one array element per window."""

    win: np.ndarray    # int64 window index, strictly increasing
    count: np.ndarray  # int64
    min: np.ndarray    # float64
    mean: np.ndarray   # float64
    max: np.ndarray    # float64
    m2: np.ndarray     # float64, sum of squared deviations from mean

    def __len__(self) -> int:
        return len(self.win)

    @property
    def stddev(self) -> np.ndarray:
        """Population standard deviation per window."""
        return np.sqrt(np.maximum(self.m2, 0.0) / self.count)

    def take(self, index) -> Stats:
        """The windows selected by a boolean mask or an index array."""
        return Stats(self.win[index], self.count[index], self.min[index], self.mean[index],
                     self.max[index], self.m2[index])

    def columns(self) -> list[np.ndarray]:
        return [self.win, self.count, self.min, self.mean, self.max, self.m2]


def empty() -> Stats:
    """No windows."""
    i, f = np.empty(0, np.int64), np.empty(0, np.float64)
    return Stats(i, i, f, f, f, f)


def concat(parts: list[Stats]) -> Stats:
    """Stats of consecutive, non-overlapping runs, in order."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty()
    if len(parts) == 1:
        return parts[0]
    return Stats(*(np.concatenate(cols) for cols in zip(*(p.columns() for p in parts))))


def _group_starts(keys: np.ndarray) -> np.ndarray:
    """Indices where a sorted key array changes value (always including 0)."""
    if len(keys) == 0:
        return np.empty(0, np.intp)
    return np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))


def from_points(times: np.ndarray, values: np.ndarray, shift: int) -> Stats:
    """Statistics per window of width 2^shift of time-sorted points."""
    return from_keyed(times >> shift, values)


def from_keyed(keys: np.ndarray, values: np.ndarray) -> Stats:
    """Statistics per window of points whose sorted window indices are ``keys``."""
    if len(keys) == 0:
        return empty()
    return Stats(*kernels.keyed_stats(np.ascontiguousarray(keys, dtype=np.int64),
                                      np.ascontiguousarray(values, dtype=np.float64)))


def combine(s: Stats, shift: int) -> Stats:
    """Merge windows into windows 2^shift times wider (``win >> shift``)."""
    if len(s) == 0 or shift == 0:
        return s
    return group(s, s.win >> shift)


def group(s: Stats, keys: np.ndarray) -> Stats:
    """Merge consecutive windows that share a key (``keys`` sorted, one per window)."""
    if len(s) == 0:
        return s
    starts = _group_starts(keys)
    if len(starts) == len(s):
        return Stats(keys, s.count, s.min, s.mean, s.max, s.m2)
    count = np.add.reduceat(s.count, starts)
    mean = np.add.reduceat(s.count * s.mean, starts) / count
    sizes = np.diff(np.append(starts, len(s)))
    dev = s.mean - np.repeat(mean, sizes)
    m2 = np.add.reduceat(s.m2 + s.count * dev * dev, starts)
    return Stats(keys[starts], count, np.minimum.reduceat(s.min, starts), mean,
                 np.maximum.reduceat(s.max, starts), m2)
