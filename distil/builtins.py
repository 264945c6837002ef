"""The built-in distillates (the manual's "Derived streams" chapter gives the formulas).

- ``noop``: a copy of its input (DISTIL's first example; for testing the engine).
- ``frequency``: from ``L1ANG`` on ``pad_snap(120)``: the angle advance over the last
  second, wrapped to ±180°, as Hz: ``60 + Δθ/360`` at every tick (DISTIL's second).
- ``frequency-1s``: the mean of that frequency over each second's ticks (s, s+1],
  dated at the second s: the same second as the uPMU's own ``FREQ_L1_1S``.
- ``power``: per phase P = V·I·cos(θV − θI) (W), Q = V·I·sin(θV − θI) (var),
  S = V·I (VA) and DPF = cos(θV − θI), and the three-phase P, Q, S = |P + jQ| and
  DPF = P/S, as the uPMU's ``FUND_W``, ``FUND_VAR``, ``FUND_VA``, ``FUND_DPF``.
- ``state-changes``: one ``LSTATE`` point wherever the status word differs from the
  sample before it, and at the first sample after a gap of more than a second.
- ``angle-difference``: one phase angle of a uPMU minus the same phase of another,
  wrapped to ±180° (DISTIL's third example).

``frequency``, ``frequency-1s``, ``power`` and ``angle-difference`` compute from uPMU
phasor channels, which are float32: their outputs are stored rounded to float32
(``output_precision``), below the inputs' own precision, and the server keeps a
float32-exact value in half the bytes and CPU of a float64 one. ``noop`` and
``state-changes`` copy input values as they are (float64): a status word is an int32,
and rounding it to float32 would change bits above 2^24; a copy of a float32-exact
stream is float32-exact anyway. Their ``version`` stayed 1 when the rounding came in:
outputs stored before differ by less than half a float32 step, and recomputing every
appliance's whole history oldest first would hold the live derived streams back for
hours (``qss-distil reset`` recomputes an instance for whoever wants it uniform).
"""
from __future__ import annotations

import numpy as np

from .distillate import Distillate
from .rebase import SECOND, pad_snap

HZ = 120
NOMINAL_HZ = 60.0


def wrap(deg: np.ndarray) -> np.ndarray:
    """Degrees into [-180, 180)."""
    return (deg + 180.0) % 360.0 - 180.0


class Noop(Distillate):
    name = "noop"
    inputs = ("in",)
    outputs = {"out": ""}

    def process(self, inputs, outputs):
        outputs.add("out", inputs["in"].t, inputs["in"].v)


def frequency_of(angle: np.ndarray, hz: int = HZ) -> np.ndarray:
    """Frequency at each tick of a ``pad_snap(hz)`` angle series (NaN where the tick or
    the one a second before has no point, and for the first second)."""
    out = np.full(len(angle), np.nan)
    if len(angle) > hz:
        out[hz:] = NOMINAL_HZ + wrap(angle[hz:] - angle[:-hz]) / 360.0
    return out


class Frequency(Distillate):
    name = "frequency"
    inputs = ("L1ANG",)
    outputs = {"FREQ_L1": "Hz"}
    output_precision = "float32"
    lead_ns = SECOND
    rebaser = pad_snap(HZ)

    def process(self, inputs, outputs):
        a = inputs["L1ANG"]
        outputs.add("FREQ_L1", a.t, frequency_of(a.v))


class Frequency1s(Distillate):
    name = "frequency-1s"
    inputs = ("L1ANG",)
    outputs = {"FREQ_L1_1S": "Hz"}
    output_precision = "float32"
    lead_ns = SECOND
    trail_ns = SECOND
    rebaser = pad_snap(HZ)
    #: Seconds with fewer ticks than this get no point.
    min_ticks = HZ // 2

    def process(self, inputs, outputs):
        a = inputs["L1ANG"]
        f = frequency_of(a.v)
        # Tick g belongs to second (g - 1) // HZ: ticks 1..120 of a second, (s, s+1].
        g = self.rebaser.tick_of(a.t)
        sec = (g - 1) // HZ
        first = np.r_[0, np.flatnonzero(sec[1:] != sec[:-1]) + 1]
        ok = np.isfinite(f)
        n = np.add.reduceat(ok.astype(np.int64), first) if len(f) else np.empty(0, np.int64)
        total = np.add.reduceat(np.where(ok, f, 0.0), first) if len(f) else np.empty(0)
        full = np.r_[first[1:], len(f)] - first == HZ       # seconds wholly in the read
        keep = full & (n >= self.min_ticks)
        with np.errstate(invalid="ignore", divide="ignore"):
            outputs.add("FREQ_L1_1S", sec[first][keep] * SECOND, (total / n)[keep])


PHASES = ("1", "2", "3")


class Power(Distillate):
    name = "power"
    inputs = tuple(f"{c}{p}{q}" for p in PHASES for c in "LC" for q in ("MAG", "ANG"))
    outputs = {**{f"{k}{p}": u for p in PHASES
                  for k, u in (("P", "W"), ("Q", "var"), ("S", "VA"), ("DPF", "none"))},
               "P": "W", "Q": "var", "S": "VA", "DPF": "none"}
    output_precision = "float32"
    rebaser = pad_snap(HZ)

    def process(self, inputs, outputs):
        t = inputs["L1MAG"].t
        total_p, total_q = np.zeros(len(t)), np.zeros(len(t))
        for p in PHASES:
            s = inputs[f"L{p}MAG"].v * inputs[f"C{p}MAG"].v
            phi = np.radians(inputs[f"L{p}ANG"].v - inputs[f"C{p}ANG"].v)
            cos = np.cos(phi)
            pw, qv = s * cos, s * np.sin(phi)
            outputs.add(f"P{p}", t, pw)
            outputs.add(f"Q{p}", t, qv)
            outputs.add(f"S{p}", t, s)
            outputs.add(f"DPF{p}", t, cos)
            total_p += pw
            total_q += qv
        va = np.hypot(total_p, total_q)
        outputs.add("P", t, total_p)
        outputs.add("Q", t, total_q)
        outputs.add("S", t, va)
        with np.errstate(invalid="ignore", divide="ignore"):
            # No power at all is unity power factor; no data stays NaN (dropped).
            outputs.add("DPF", t, np.where(va == 0, 1.0, total_p / va))


class StateChanges(Distillate):
    name = "state-changes"
    inputs = ("LSTATE",)
    outputs = {"LSTATE_CHANGES": "bitmap"}
    lead_ns = SECOND        # a sample is compared with the one before, if within a second

    def process(self, inputs, outputs):
        s = inputs["LSTATE"]
        if not len(s):
            return
        edge = np.r_[True, (s.v[1:] != s.v[:-1]) | (np.diff(s.t) > SECOND)]
        # The first point read has no known predecessor: the engine read a lead's worth
        # before any output time, so it only matters before the chunk (dropped there).
        outputs.add("LSTATE_CHANGES", s.t[edge], s.v[edge])


class AngleDifference(Distillate):
    name = "angle-difference"
    inputs = ("A", "B")
    outputs = {"ANGLE_DIFF": "deg"}
    output_precision = "float32"
    rebaser = pad_snap(HZ)

    def process(self, inputs, outputs):
        d = wrap(inputs["A"].v - inputs["B"].v)
        # Stored as float32, a difference within half a float32 step of 180 would
        # round up to 180, out of [-180, 180): store it as -180, the same angle.
        d[d.astype(np.float32) == 180.0] = -180.0
        outputs.add("ANGLE_DIFF", inputs["A"].t, d)


#: Built-ins by name.
BUILTINS: dict[str, type[Distillate]] = {
    c.name: c for c in (Noop, Frequency, Frequency1s, Power, StateChanges, AngleDifference)}

#: Built-ins on by default for every uPMU.
DEFAULT_ON = ("frequency", "frequency-1s", "power", "state-changes")
