"""Merge policies within a batch and against stored points."""
import numpy as np
import pytest

from tsdb.merge import MergePolicy, dedupe_batch, merge, sort_batch

# The client's integration test test_arrow_insert_duplicate_timestamps.
T = np.array([100, 105, 110, 110, 120])
V = np.array([0.0, 1, 2, 3, 4])


@pytest.mark.parametrize("policy,times,values", [
    (MergePolicy.NEVER, [100, 105, 110, 110, 120], [0, 1, 2, 3, 4]),
    (MergePolicy.EQUAL, [100, 105, 110, 110, 120], [0, 1, 2, 3, 4]),
    (MergePolicy.RETAIN, [100, 105, 110, 120], [0, 1, 2, 4]),
    (MergePolicy.REPLACE, [100, 105, 110, 120], [0, 1, 3, 4]),
])
def test_within_batch(policy, times, values):
    t, v = dedupe_batch(T, V, policy)
    assert t.tolist() == times and v.tolist() == values


def test_equal_drops_identical_pairs_within_batch():
    t, v = dedupe_batch(np.array([1, 1, 1, 2]), np.array([5.0, 6.0, 5.0, 5.0]),
                        MergePolicy.EQUAL)
    assert sorted(zip(t.tolist(), v.tolist())) == [(1, 5.0), (1, 6.0), (2, 5.0)]


def test_sort_is_stable_for_equal_times():
    t, v = sort_batch(np.array([3, 1, 3, 1]), np.array([0.0, 1, 2, 3]))
    assert t.tolist() == [1, 1, 3, 3] and v.tolist() == [1, 3, 0, 2]


OLD_T = np.array([10, 20, 20, 30])
OLD_V = np.array([1.0, 2.0, 2.5, 3.0])
OLD_VER = np.array([11, 11, 12, 11])
NEW_T = np.array([5, 20, 30, 40])
NEW_V = np.array([0.5, 2.0, 9.0, 4.0])


@pytest.mark.parametrize("policy,expect,replaced", [
    (MergePolicy.NEVER, [(5, .5), (10, 1), (20, 2), (20, 2.5), (20, 2), (30, 3), (30, 9),
                         (40, 4)], 0),
    (MergePolicy.EQUAL, [(5, .5), (10, 1), (20, 2), (20, 2.5), (30, 3), (30, 9), (40, 4)], 0),
    (MergePolicy.RETAIN, [(5, .5), (10, 1), (20, 2), (20, 2.5), (30, 3), (40, 4)], 0),
    (MergePolicy.REPLACE, [(5, .5), (10, 1), (20, 2), (30, 9), (40, 4)], 3),
])
def test_against_stored(policy, expect, replaced):
    t, v, ver, kept, n_replaced = merge(OLD_T, OLD_V, OLD_VER, NEW_T, NEW_V, 13, policy)
    assert list(zip(t.tolist(), v.tolist())) == expect
    assert n_replaced == replaced
    assert np.all(np.diff(t) >= 0)
    # Every stored point keeps its version; every new one gets 13.
    new_count = len(kept)
    assert (ver == 13).sum() == new_count and set(kept.tolist()) <= set(NEW_T.tolist())
