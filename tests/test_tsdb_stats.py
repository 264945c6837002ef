"""Window statistics against numpy, and their combination across levels."""
import numpy as np
import pytest

from tsdb import stats as st


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
    from tsdb import kernels
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


def test_insert_kernels_window_starts_and_stats():
    """The insert path's kernels: where windows begin (negative times included), the
    distinct windows, and the statistics of selected windows, against numpy."""
    from tsdb import kernels
    rng = np.random.default_rng(11)
    t = np.sort(rng.integers(-(2**20), 2**20, 6000))
    v = 7060 + rng.normal(0, 2, len(t))
    w = t >> 8
    starts = kernels.window_starts(t, 8)
    assert np.array_equal(starts, np.flatnonzero(np.r_[True, w[1:] != w[:-1]]))
    assert np.array_equal(kernels.unique_windows(t, 8), np.unique(w))
    assert len(kernels.window_starts(t[:0], 8)) == 0
    wanted = np.unique(w)[[0, 3, 4, 5, 40, -1]]
    sel = np.isin(w, wanted)
    got = st.Stats(*kernels.window_stats(t, v, starts, 8, wanted))
    assert_matches(got, reference(t[sel], v[sel], 8))


@pytest.mark.parametrize("values,bad", [([1.0, 2.0], 0), ([1.0, np.inf], 2),
                                        ([-np.inf, 1.0], 2), ([np.inf, np.nan], 1),
                                        ([np.nan, 1.0], 1), ([1.7976931348623157e308, 0], 0)])
def test_check_batch_values(values, bad):
    from tsdb import kernels
    t = np.array([5, 3], np.int64)
    assert kernels.check_batch(t, np.array(values)) == (bad, 3, 5, False, False)


@pytest.mark.parametrize("t,ascending,repeats", [([1, 2, 3], True, False),
                                                 ([1, 1, 3], True, True),
                                                 ([1, 3, 2], False, False),
                                                 ([7], True, False)])
def test_check_batch_order(t, ascending, repeats):
    from tsdb import kernels
    t = np.array(t, np.int64)
    got = kernels.check_batch(t, np.zeros(len(t)))
    assert got == (0, t.min(), t.max(), ascending, repeats)


def test_statistics_blocks_of_every_size_and_level_round_trip():
    """Coarse levels store small blocks as plain zstd and large ones with the column
    codec; both decode to the records written (and old plain blocks stay readable)."""
    from tsdb import levels
    rng = np.random.default_rng(3)
    for n in (1, 127, 128, 1024):
        win = np.sort(rng.choice(1024, n, replace=False)).astype(np.int64) + (5 << 10)
        s = st.Stats(win, rng.integers(1, 200, n), rng.normal(size=n),
                     rng.normal(size=n), rng.normal(size=n), rng.random(n))
        for level in levels.LEVELS:
            blob = levels.encode_block(level, 5, s)
            assert (blob[:2] == b"P1") == (level != levels.LEVEL0 and n < 128)
            back = levels.decode_block(5, blob)
            for a, b in zip(back.columns(), s.columns()):
                assert np.array_equal(a, b)


@pytest.mark.parametrize("cleared", [False, True])
def test_all_levels_kernels_against_numpy(cleared):
    """kernels.level_windows (every level's dirty windows and blocks) and
    kernels.update_levels (every level's records of those blocks after a write, in one
    call) against numpy sets and statistics of the final points."""
    from tsdb import kernels
    rng = np.random.default_rng(11 + cleared)
    fine, stride, bits, nlev = 4, 2, 3, 4
    t = np.sort(rng.integers(0, 2**15, 6000))
    v = 7060 + rng.normal(0, 2, len(t))
    dirty = np.array([*range(100, 140), 400, 401, 1500], np.int64)
    lo, hi = (600, 700) if cleared else (1, 0)
    w = t >> fine
    keep = ~np.isin(w, [401]) & ~((w >= lo) & (w <= hi))
    t2, v2 = t[keep], np.where(np.isin(w, dirty), v * 1.5, v)[keep]
    if cleared:
        dirty = np.union1d(dirty, [lo, hi])  # the cleared range's ends, partly kept
    sel = np.isin(t2 >> fine, dirty)
    fresh = st.from_points(t2[sel], v2[sel], fine)
    dflat, doff, bflat, boff = kernels.level_windows(dirty, cleared, lo, hi, nlev, stride,
                                                     bits)
    parts, ooff = [], [0]
    for k in range(nlev):
        s = k * stride
        want = np.unique(dirty >> s)
        if cleared and k:
            want = np.union1d(want, [lo >> s, hi >> s])
        assert np.array_equal(dflat[doff[k]:doff[k + 1]], want)
        blocks = np.unique(want >> bits)
        if cleared:
            blocks = np.union1d(blocks, [(lo >> s) >> bits, (hi >> s) >> bits])
        assert np.array_equal(bflat[boff[k]:boff[k + 1]], blocks)
        old = st.from_points(t, v, fine + s)
        parts.append(old.take(np.isin(old.win >> bits, blocks)))
        ooff.append(ooff[-1] + len(parts[-1]))
    old = [np.concatenate(c) for c in zip(*(p.columns() for p in parts))]
    *cols, off = kernels.update_levels(dflat, doff, cleared, lo, hi, stride,
                                       *fresh.columns(), *old, np.array(ooff, np.int64))
    for k in range(nlev):
        got = st.Stats(*(c[off[k]:off[k + 1]] for c in cols))
        level = fine + k * stride
        blocks = bflat[boff[k]:boff[k + 1]]
        sel = np.isin((t2 >> level) >> bits, blocks)
        assert len(got) > 0
        assert_matches(got, reference(t2[sel], v2[sel], level))
