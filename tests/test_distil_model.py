"""The distil model without BTrDB: pad_snap's grid, range arithmetic, outputs."""
import numpy as np
import pytest

from distil import builtins, ranges
from distil.distillate import Distillate, Input, Instance, Outputs
from distil.rebase import SECOND, pad_snap

T = 1_450_000_800 * SECOND


def test_pad_snap_puts_upmu_samples_on_absolute_ticks_and_fills_holes():
    r = pad_snap(120)
    i = np.arange(240)
    t = T + (i // 120) * SECOND + np.rint((i % 120) * 8.333333015441895e6).astype(np.int64)
    v = i.astype(float)
    keep = (i != 7) & (i != 130)                              # two holes
    gt, gv = r.rebase(t[keep], v[keep], T, T + 2 * SECOND)
    assert len(gt) == 240 and gt[0] == T and gt[120] == T + SECOND
    assert np.isnan(gv[[7, 130]]).all() and (gv[keep] == v[keep]).all()
    # Any bounds give the same ticks: a chunk from the middle lines up.
    ct, cv = r.rebase(t, v, T + SECOND // 3, T + SECOND)
    assert (ct == gt[40:120]).all() and (cv == v[40:120]).all()


def test_pad_snap_keeps_the_nearest_of_two_points_on_one_tick():
    r = pad_snap(120)
    t = np.array([T - 3_000_000, T + 1_000, T + 2_000_000])
    gt, gv = r.rebase(t, np.array([1.0, 2.0, 3.0]), T - SECOND // 240, T + SECOND // 240)
    assert gt.tolist() == [T] and gv.tolist() == [2.0]
    with pytest.raises(ValueError):
        pad_snap(0)


def test_ranges_merge_widen_subtract():
    assert ranges.merge([(5, 9), (0, 3), (3, 4), (20, 30)]) == [(0, 4), (5, 9), (20, 30)]
    assert ranges.merge([(0, 3), (5, 9)], gap=2) == [(0, 9)]
    assert ranges.widen([(10, 20)], 3, 5) == [(7, 25)]
    assert ranges.widen([(ranges.MINIMUM_TIME, ranges.MAXIMUM_TIME)], 1, 1) == [
        (ranges.MINIMUM_TIME, ranges.MAXIMUM_TIME - 1)]
    assert ranges.subtract([(0, 10), (20, 30)], (5, 25)) == [(0, 5), (25, 30)]
    assert ranges.total([(0, 5), (25, 30)]) == 10


def test_outputs_keep_finite_points_in_range_the_last_added_winning():
    out = Outputs(["x"])
    out.add("x", [3, 1, 2, 9], [3.0, 1.0, np.nan, 9.0])
    out.add("x", [3], [30.0])
    t, v = out.points("x", 0, 5)
    assert t.tolist() == [1, 3] and v.tolist() == [1.0, 30.0]
    assert len(out.points("x", 100, 200)[0]) == 0
    with pytest.raises(KeyError, match="no output 'y'"):
        out.add("y", [1], [1.0])


def test_float32_outputs_are_rounded_where_they_leave_and_nan_still_means_no_point():
    out = Outputs(["x"], "float32")
    v = np.array([0.1, np.nan, 60.0 + 1e-9, -7.2e6 / 3, 1e300, np.inf, 2.0 ** -150])
    out.add("x", np.arange(len(v)), v)
    t, got = out.points("x", 0, 100)
    assert t.tolist() == [0, 2, 3, 4, 6]                   # NaN and inf: no point
    assert got.tolist() == [float(np.float32(0.1)), 60.0, float(np.float32(-2.4e6)),
                            1e300, 0.0]                    # beyond float32: kept as is
    # Two parts: the slow path rounds the same way.
    out.add("x", [9], [0.1])
    assert out.points("x", 9, 10)[1].tolist() == [float(np.float32(0.1))]


def test_a_user_distillate_stores_float64_unless_it_says_float32():
    class Mine(Distillate):
        name = "mine"
        inputs = ("in",)
        outputs = {"out": ""}

    assert Mine.output_precision == "float64"
    out = Outputs(Mine.outputs, Mine.output_precision)
    out.add("out", [1, 2], [0.1, 60.000001234567])
    assert out.points("out", 0, 10)[1].tolist() == [0.1, 60.000001234567]
    assert Outputs(["out"]).points("out", 0, 1)[1].dtype == np.float64

    Mine.output_precision = "float16"
    with pytest.raises(ValueError, match="mine's output_precision 'float16' is not one of"):
        Instance("mine/x", Mine(), {"in": Input("a/b")}, "a/distil/mine")


def test_the_builtins_computing_from_phasors_store_float32_the_copies_float64():
    precision = {n: c.output_precision for n, c in builtins.BUILTINS.items()}
    assert precision == {"noop": "float64", "frequency": "float32",
                         "frequency-1s": "float32", "power": "float32",
                         "state-changes": "float64", "angle-difference": "float32"}


def test_an_angle_difference_just_below_180_is_stored_as_minus_180():
    from distil.distillate import Series
    d = builtins.AngleDifference()
    out = Outputs(d.outputs, d.output_precision)
    t = np.array([0, 1, 2])
    a = np.array([179.999999, 10.0, -179.999999])
    d.process({"A": Series(t, a), "B": Series(t, np.zeros(3))}, out)
    assert out.points("ANGLE_DIFF", 0, 3)[1].tolist() == [-180.0, 10.0, -180.0]
