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
