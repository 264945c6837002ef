"""Merge policies: how an insert treats timestamps that already hold a point.

reference/btrdb-v5.md (Insert) and the client's integration test
``test_arrow_insert_duplicate_timestamps`` define the four policies; this engine applies
each both within the inserted batch and against stored points:

- NEVER   keep every point; equal timestamps are kept in insertion order (stored first);
- EQUAL   drop a new point when a point with the same time and value (bit-identical)
  exists, stored or earlier in the batch;
- RETAIN  at an equal timestamp keep the stored point (within a batch: the first);
- REPLACE at an equal timestamp keep the new point (within a batch: the last); every
  stored point at that timestamp goes.

All functions are pure numpy over time-sorted arrays.
"""
from __future__ import annotations

import enum

import numpy as np


class MergePolicy(enum.IntEnum):
    """Values match the proto's MergePolicy enum."""

    NEVER = 0
    EQUAL = 1
    RETAIN = 2
    REPLACE = 3


def sort_batch(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort a batch by time, stably, so equal timestamps keep their insertion order."""
    if len(times) > 1 and not np.all(times[1:] >= times[:-1]):
        order = np.argsort(times, kind="stable")
        return times[order], values[order]
    return times, values


def dedupe_batch(times: np.ndarray, values: np.ndarray, policy: MergePolicy
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Apply the policy within one time-sorted batch."""
    n = len(times)
    if n < 2 or policy == MergePolicy.NEVER:
        return times, values
    same_as_next = times[1:] == times[:-1]
    if not same_as_next.any():
        return times, values
    if policy == MergePolicy.RETAIN:
        keep = np.concatenate(([True], ~same_as_next))
    elif policy == MergePolicy.REPLACE:
        keep = np.concatenate((~same_as_next, [True]))
    else:  # EQUAL: drop later copies of an identical (time, value) pair
        bits = values.view(np.int64)
        order = np.lexsort((np.arange(n), bits, times))
        t, b = times[order], bits[order]
        dup = np.concatenate(([False], (t[1:] == t[:-1]) & (b[1:] == b[:-1])))
        keep = np.ones(n, bool)
        keep[order[dup]] = False
    return times[keep], values[keep]


def _present(sorted_keys: np.ndarray, probe: np.ndarray) -> np.ndarray:
    """For each probe, whether it occurs in sorted_keys."""
    if len(sorted_keys) == 0:
        return np.zeros(len(probe), bool)
    idx = np.searchsorted(sorted_keys, probe)
    idx[idx == len(sorted_keys)] = len(sorted_keys) - 1
    return sorted_keys[idx] == probe


def merge(old_t: np.ndarray, old_v: np.ndarray, old_ver: np.ndarray,
          new_t: np.ndarray, new_v: np.ndarray, version: int, policy: MergePolicy
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Merge a deduplicated, sorted batch into sorted stored points.

    Returns (times, values, versions, kept_new_times, replaced): the merged points, the
    times of the new points that were actually stored, and how many stored points the
    batch displaced (only REPLACE displaces).
    """
    replaced = 0
    if len(old_t) and len(new_t) and new_t[0] <= old_t[-1] and new_t[-1] >= old_t[0]:
        if policy == MergePolicy.RETAIN:
            keep = ~_present(old_t, new_t)
            new_t, new_v = new_t[keep], new_v[keep]
        elif policy == MergePolicy.REPLACE:
            gone = _present(new_t, old_t)
            replaced = int(gone.sum())
            if replaced:
                old_t, old_v, old_ver = old_t[~gone], old_v[~gone], old_ver[~gone]
        elif policy == MergePolicy.EQUAL:
            # Sort stored and new (time, bits) pairs together, stored first; a new pair
            # equal to its predecessor matches a stored one (the batch has no copies).
            t = np.concatenate((old_t, new_t))
            bits = np.concatenate((old_v.view(np.int64), new_v.view(np.int64)))
            origin = np.concatenate((np.zeros(len(old_t), np.int8), np.ones(len(new_t), np.int8)))
            order = np.lexsort((origin, bits, t))
            ts, bs = t[order], bits[order]
            dup = np.concatenate(([False], (ts[1:] == ts[:-1]) & (bs[1:] == bs[:-1])))
            keep = np.ones(len(new_t), bool)
            hit = order[dup]
            keep[hit[hit >= len(old_t)] - len(old_t)] = False  # stored copies stay
            new_t, new_v = new_t[keep], new_v[keep]
    new_ver = np.full(len(new_t), version, np.int64)
    if len(old_t) == 0:
        return new_t, new_v, new_ver, new_t, replaced
    if len(new_t) == 0:
        return old_t, old_v, old_ver, new_t, replaced
    t = np.concatenate((old_t, new_t))
    v = np.concatenate((old_v, new_v))
    ver = np.concatenate((old_ver, new_ver))
    if new_t[0] <= old_t[-1]:
        order = np.argsort(t, kind="stable")  # stored points first at equal times
        t, v, ver = t[order], v[order], ver[order]
    return t, v, ver, new_t, replaced
