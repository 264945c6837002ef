"""Window statistics against numpy, and their combination across levels."""
import numpy as np
import pytest

from qss.tsdb import stats as st


def reference(t, v, pw):
    """Per non-empty window: (window, count, min, mean, max, population std) by numpy."""
    out = []
    for w in np.unique(t >> pw):
        x = v[(t >> pw) == w]
        out.append((w, len(x), x.min(), x.mean(), x.max(), x.std()))
    return np.array(out).T if out else np.empty((6, 0))


def assert_matches(s, ref):
    w, c, mn, mean, mx, sd = ref
    assert np.array_equal(s.win, w.astype(np.int64))
    assert np.array_equal(s.count, c.astype(np.int64))
    assert np.array_equal(s.min, mn) and np.array_equal(s.max, mx)
    np.testing.assert_allclose(s.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(s.stddev, sd, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("pw", [0, 3, 10, 20])
def test_from_points_matches_numpy(pw):
    rng = np.random.default_rng(pw)
    t = np.sort(rng.integers(-(2**22), 2**22, 3000))
    v = 7200 + rng.normal(0, 0.5, len(t))
    assert_matches(st.from_points(t, v, pw), reference(t, v, pw))


@pytest.mark.parametrize("fine,shift", [(4, 1), (6, 4), (2, 9)])
def test_combine_equals_direct_computation(fine, shift):
    rng = np.random.default_rng(fine * 100 + shift)
    t = np.sort(rng.integers(0, 2**16, 5000))
    v = 7060 + rng.normal(0, 2, len(t))  # large offset: m2 must not cancel
    combined = st.combine(st.from_points(t, v, fine), shift)
    assert_matches(combined, reference(t, v, fine + shift))


def test_population_stddev_examples_from_the_client_docs():
    s = st.from_points(np.array([0, 1, 2, 8, 9]), np.array([2.0, 3, 4, 8, 9]), 3)
    assert np.allclose(s.stddev, [0.816496580927726, 0.5])
    single = st.from_points(np.array([5]), np.array([3.0]), 0)
    assert single.stddev[0] == 0.0


def test_level_kernels_replace_and_combine():
    """The write path's kernels: a block's records with dirty windows replaced, and the
    coarser level's records of the wanted windows, against numpy on the final points."""
    from qss.tsdb import kernels
    rng = np.random.default_rng(7)
    t = np.sort(rng.integers(0, 2**16, 4000))
    v = 7060 + rng.normal(0, 2, len(t))
    old = st.from_points(t, v, 6)
    # Rewrite windows 10..19 and 40 (window 41 becomes empty), clear 60..70.
    dirty = np.array([*range(10, 20), 40, 41], np.int64)
    w = t >> 6
    keep = ~np.isin(w, [41]) & ~((w >= 60) & (w <= 70))
    t2, v2 = t[keep], np.where(np.isin(w, dirty), v + 1.5, v)[keep]
    fresh = st.from_points(t2[np.isin(t2 >> 6, dirty)], v2[np.isin(t2 >> 6, dirty)], 6)
    merged = st.Stats(*kernels.replace_windows(*old.columns(), dirty, 60, 70,
                                               *fresh.columns()))
    assert_matches(merged, reference(t2, v2, 6))
    wanted = np.array([0, 2, 3, 9], np.int64)
    coarse = st.Stats(*kernels.combine_windows(*merged.columns(), 4, wanted))
    sel = np.isin(t2 >> 10, wanted)
    assert_matches(coarse, reference(t2[sel], v2[sel], 10))
