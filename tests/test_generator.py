"""The realistic uPMU generator: deterministic, laid out like a device, and grid-like."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from qss import dat, generator, naming

START = 1450426497  # 2015-12-18 08:14:57 UTC


@pytest.fixture(scope="module")
def ext_hour():
    sim = generator.UpmuSimulator("P3001276", seed=3, extended=True)
    return dat.parse(dat.encode_records(sim.records(START, 3600)))


def test_same_seed_same_bytes_whatever_the_chunking():
    a = generator.UpmuSimulator("P3001276", seed=9)
    b = generator.UpmuSimulator("P3001276", seed=9)
    whole = a.records(START, 180).tobytes()
    pieces = b"".join(b.records(START + s, n).tobytes() for s, n in ((0, 7), (7, 113), (120, 60)))
    assert whole == pieces
    assert generator.UpmuSimulator("P3001276", seed=10).records(START, 5).tobytes() != \
        a.records(START, 5).tobytes()
    assert generator.UpmuSimulator("P3001277", seed=9).records(START, 5).tobytes() != \
        a.records(START, 5).tobytes()


def test_base_and_extended_files_agree_on_the_base_streams():
    base = dat.parse(generator.UpmuSimulator("P1", seed=1).file_bytes(START))
    ext = dat.parse(generator.UpmuSimulator("P1", seed=1, extended=True).file_bytes(START))
    assert len(base.times) == 7200 and base.size == 378_720 and ext.size == 551_520
    assert base.extended_records == 0 and ext.extended_records == 60
    assert np.array_equal(base.values[:12], ext.values[:12])
    assert np.array_equal(base.values[12] + generator.EXTENDED_STATUS_BIT, ext.values[12])


def test_files_are_named_and_stamped_like_a_device(tmp_path):
    paths = generator.write_tree(tmp_path, "P3001276",
                                 dt.datetime(2015, 12, 18, 8, 58, 57, tzinfo=dt.timezone.utc),
                                 3)
    rel = [p.relative_to(tmp_path / "upmu_data").as_posix() for p in paths]
    assert rel == ["2015/Month_12/Day_18/Hour_08/P3001276_2015-12-18-08-58-57.dat",
                   "2015/Month_12/Day_18/Hour_08/P3001276_2015-12-18-08-59-57.dat",
                   "2015/Month_12/Day_18/Hour_09/P3001276_2015-12-18-09-00-57.dat"]
    for p in paths:
        serial, start = naming.parse_dat_filename(p.name)
        f = dat.parse(p.read_bytes())
        assert serial == "P3001276"
        assert f.times[0] == int(start.timestamp()) * dat.NS_PER_S
        assert f.record_count == 60 and f.skipped == ()


def test_voltages_look_like_a_12kv_feeder(ext_hour):
    for name in ("L1MAG", "L2MAG", "L3MAG"):
        v = ext_hour.stream(name)[1].reshape(60, -1)  # minutes
        assert 6950 < v.min() and v.max() < 7170, name
        ranges = v.max(axis=1) - v.min(axis=1)
        assert 8 < np.median(ranges) < 60, name        # tens of volts over a minute
        assert np.abs(np.diff(v, axis=1)).mean() < 3   # but smooth sample to sample
    means = [ext_hour.stream(n)[1].mean() for n in ("L1MAG", "L2MAG", "L3MAG")]
    assert max(means) - min(means) < 60                # a small imbalance


def test_phases_are_120_degrees_apart_and_rotate_with_frequency(ext_hour):
    a1, a2, a3 = (ext_hour.stream(n)[1] for n in ("L1ANG", "L2ANG", "L3ANG"))
    assert np.all((-180 <= a1) & (a1 < 180))
    wrap = lambda d: (d + 180) % 360 - 180  # noqa: E731
    assert np.abs(wrap(a1 - a2 - 120)).max() < 0.1
    assert np.abs(wrap(a3 - a1 - 120)).max() < 0.1
    # d(angle)/dt = 360 * (f - 60): compare over one-second steps.
    t, f = ext_hour.stream("FREQ_L1_C37")
    step = 120
    dtheta = wrap(a1[step:] - a1[:-step])
    mean_dev = np.convolve(f - 60, np.ones(step) / step, "valid")[:len(dtheta)]
    dt_s = (t[step:] - t[:-step]) / 1e9
    assert np.corrcoef(dtheta, 360 * mean_dev * dt_s)[0, 1] > 0.99
    assert 59.9 < f.min() and f.max() < 60.1 and f.std() > 0.002


def test_power_is_consistent_with_the_phasors(ext_hour):
    w = ext_hour.stream("FUND_W")[1]
    var = ext_hour.stream("FUND_VAR")[1]
    va = ext_hour.stream("FUND_VA")[1]
    dpf = ext_hour.stream("FUND_DPF")[1]
    p = np.zeros_like(w)
    q = np.zeros_like(w)
    for k in (1, 2, 3):
        v, i = ext_hour.stream(f"L{k}MAG")[1], ext_hour.stream(f"C{k}MAG")[1]
        phi = np.radians(ext_hour.stream(f"L{k}ANG")[1] - ext_hour.stream(f"C{k}ANG")[1])
        p += v * i * np.cos(phi)
        q += v * i * np.sin(phi)
    # float32 storage of angles of a few hundred degrees limits agreement to ~1e-4.
    np.testing.assert_allclose(w, p, rtol=1e-4)
    np.testing.assert_allclose(var, q, rtol=1e-3)
    np.testing.assert_allclose(va, np.hypot(w, var), rtol=1e-6)
    np.testing.assert_allclose(dpf, w / va, rtol=1e-6)
    assert 0.85 < dpf.min() and dpf.max() <= 1.0 and np.all(var > 0)  # lagging load


def test_currents_follow_the_site():
    for site, lo, hi in (("feeder", 50, 400), ("substation", 200, 900), ("building", 20, 150)):
        f = dat.parse(generator.UpmuSimulator("P1", site=site).file_bytes(START))
        c = f.stream("C1MAG")[1]
        assert lo < c.mean() < hi, site
    night = dat.parse(generator.UpmuSimulator("P1", site="pv").file_bytes(START + 4 * 3600))
    noon = dat.parse(generator.UpmuSimulator("P1", site="pv").file_bytes(START + 12 * 3600))
    assert night.stream("C1MAG")[1].mean() < 0.02 < 0.2 < noon.stream("C1MAG")[1].mean() < 1
    bus = dat.parse(generator.UpmuSimulator("P1", site="building").file_bytes(START))
    assert 270 < bus.stream("L1MAG")[1].mean() < 296


def test_lstate_is_mostly_zero_with_runs_of_four():
    base = dat.parse(dat.encode_records(generator.UpmuSimulator("P2", seed=4).records(START, 3600)))
    lstate = base.stream("LSTATE")[1]
    assert set(np.unique(lstate)) == {0.0, 4.0}
    assert 0.0005 < np.mean(lstate == 4) < 0.05
    edges = np.flatnonzero(np.diff((lstate == 4).astype(int)) == 1)
    assert len(edges) > 20  # many separate runs, not one block


def test_gps_and_pll_debug_fields_are_plausible():
    recs = generator.UpmuSimulator("P1", seed=2).records(START, 10)
    alt, lat, hdop, lon, sats, state, fix = recs["gps"][0]
    assert 30 <= lat <= 45 and -123 <= lon <= -75 and fix == 1 and sats >= 4
    assert np.all(recs["pll"][:, 1] == 100_000_000)
