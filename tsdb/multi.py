"""Raw values of several streams joined on time (ArrowMultiValues), without network code.

Semantics (reference/btrdb-v5.md, ArrowMultiValues, from the client's integration tests):

- without snapping, one row per distinct timestamp of any stream in [start, end) (a full
  outer join); a stream without a point at that time gets NaN;
- with a snap period P, the grid is the multiples of P from the epoch; a point at x goes
  to the grid time g with g - P/2 <= x < g + P/2 (a tie at half a period rounds up), rows
  are the grid times start <= g < end where at least one stream has a point;
- one value per stream and row: the point closest to the grid time with snapping, and
  without it (duplicate timestamps, stored under merge policy NEVER) the last stored.
  Where two points are equally close the later one wins.
"""
from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterator, Sequence

import numpy as np

from .errors import MAXIMUM_TIME, MINIMUM_TIME, InvalidTimeRange, WrongArgs
from .store import Store

#: Stored points per stream read at a time, to bound memory for any range.
PIECE_POINTS = 1 << 20


def _one_per_row(keys: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Index of the point kept for each distinct key (keys sorted): the smallest
    ``dist``, the last among equals."""
    n = len(keys)
    if n == 0:
        return np.empty(0, np.intp)
    # Sort by key, then by distance descending, then by position: the last of each key
    # group is the closest (and, among equals, the latest).
    order = np.lexsort((np.arange(n), -dist, keys))
    k = keys[order]
    last = np.concatenate((k[1:] != k[:-1], [True]))
    return order[last]


def multi_values(store: Store, uuids: Sequence[uuidlib.UUID], versions: Sequence[int],
                 start: int, end: int, snap: int = 0
                 ) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
    """Yield (times, one value array per stream) in consecutive time slices; at least
    one, possibly empty, slice. Checks the request before the first slice.

    Raises StreamNotFound, InvalidTimeRange, WrongArgs, VersionNotAvailable."""
    if not uuids:
        raise WrongArgs("no streams given")
    versions = list(versions) or [0] * len(uuids)
    if len(versions) != len(uuids):
        raise WrongArgs(f"{len(versions)} versions for {len(uuids)} streams")
    if not 0 <= snap <= 1 << 62:
        raise WrongArgs(f"snap period {snap} ns is invalid (0 to 2^62)")
    if start < MINIMUM_TIME or end >= MAXIMUM_TIME:
        raise InvalidTimeRange("time range out of bounds")
    if start >= end:
        raise InvalidTimeRange("start time >= end time")
    # Raw reads reach half a period beyond each grid end (a little more, to be safe).
    pad = snap
    lo, hi = max(start - pad, MINIMUM_TIME), min(end + pad, MAXIMUM_TIME - 1)
    cuts = sorted({c for u in uuids for c in store.piece_bounds(u, lo, hi, PIECE_POINTS)})
    if snap:  # cut on the grid so that no grid time straddles two slices
        cuts = sorted({lo, hi} | {-(-c // snap) * snap for c in cuts[1:-1]})
    return _slices(store, uuids, versions, start, end, snap, cuts)


def _slices(store, uuids, versions, start, end, snap, cuts):
    yielded = False
    for a, b in zip(cuts, cuts[1:]):
        if a >= b:
            continue
        # With snapping, slice [a, b) owns the grid times a <= g < b, whose points lie in
        # [a - P/2, b + P/2).
        ra, rb = (max(a - snap, MINIMUM_TIME), min(b + snap, MAXIMUM_TIME - 1)) if snap \
            else (a, b)
        keys, per = [], []
        for i, u in enumerate(uuids):
            t, v, versions[i] = store.raw(u, ra, rb, versions[i])
            if snap:
                k = (t + snap // 2) // snap * snap
                keep = (k >= max(a, start)) & (k < min(b, end))
                t, v, k = t[keep], v[keep], k[keep]
                idx = _one_per_row(k, np.abs(t - k))
            else:
                keep = (t >= max(a, start)) & (t < min(b, end))
                t, v, k = t[keep], v[keep], t[keep]
                idx = _one_per_row(k, np.zeros(len(k), np.int64))
            keys.append(k[idx])
            per.append(v[idx])
        times = np.unique(np.concatenate(keys)) if keys else np.empty(0, np.int64)
        cols = []
        for k, v in zip(keys, per):
            col = np.full(len(times), np.nan)
            col[np.searchsorted(times, k)] = v
            cols.append(col)
        if len(times) or not yielded:
            yielded = True
            yield times, cols
    if not yielded:
        yield np.empty(0, np.int64), [np.empty(0) for _ in uuids]
