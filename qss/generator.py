"""Realistic uPMU data: a 60 Hz distribution circuit as a micro-PMU sees it.

Tests, benchmarks, compression figures and the demo all use this, so it looks like grid
data rather than sine waves:

- frequency wanders around 60 Hz (tens of mHz, seconds to hours), and every phase angle
  rotates with the integral of that deviation, as angles measured against a GPS-locked
  60 Hz reference do; the three phases sit 120 degrees apart;
- voltage magnitudes sit near the site's nominal (a 12 kV-class feeder: about 7,060 V
  line-to-neutral, ranging some tens of volts over a minute) with slow drift, a small
  per-phase imbalance and sensor noise;
- currents follow a load with a daily shape (or the sun, for a PV array) and a
  fluctuating power factor, lagging their voltages by the power-factor angle;
- LSTATE is mostly 0 with occasional runs of 4; extended records also carry watts, var,
  VA and displacement power factor computed from those phasors, and the frequency.

Slow behaviour is a sum of sinusoids with random periods and phases, a function of
absolute time, and per-sample noise comes from a counter-based generator keyed by the
second. So a second's data depends only on (seed, serial, site, the second): an hour
generated in one go equals the same hour generated file by file, and a simulated device
can produce any file of its history on demand.

Extended records set bit 0x20 in every status word (the format's extended flag is any bit
of 0xE0), so their LSTATE values read 32 or 36 where a base record reads 0 or 4.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from . import dat, naming
from .streams import CHANNELS

SAMPLES = dat.SAMPLES_PER_RECORD
INTERVAL_MS = np.float32(1000.0 / SAMPLES)
#: Status bit set in every status word of an extended record.
EXTENDED_STATUS_BIT = 0x20
LOCK_RUN_VALUE = 4
_T0 = 1_262_304_000  # 2010-01-01: keeps float64 times small enough for precise phases
_ROWS = 16           # standard normals drawn per second (fixed, so base == extended)


@dataclasses.dataclass(frozen=True)
class Site:
    """What a uPMU is connected to."""

    name: str
    volts: float          # mean line-to-neutral magnitude, V
    volt_wander: float    # standard deviation of the slow voltage drift, V
    amps: float           # typical phase current at the daily mean load, A
    power_factor: float   # typical displacement power factor (lagging)
    daily: str            # "load" (two daily peaks) or "solar" (daylight only)


#: Presets at the scale of public recordings of real circuits.
SITES: dict[str, Site] = {
    "feeder": Site("feeder", 7060.0, 9.0, 180.0, 0.95, "load"),
    "substation": Site("substation", 7200.0, 12.0, 420.0, 0.93, "load"),
    "building": Site("building", 283.0, 0.9, 60.0, 0.90, "load"),
    "pv": Site("pv", 283.0, 0.9, 0.4, 0.99, "solar"),
}


class _Wander:
    """A smooth random signal: a sum of sinusoids, with its exact time integral."""

    def __init__(self, rng: np.random.Generator, std: float, shortest_s: float,
                 longest_s: float, count: int = 12, redness: float = 0.5):
        periods = np.exp(rng.uniform(np.log(shortest_s), np.log(longest_s), count))
        amps = periods ** redness
        # Each sinusoid contributes amp^2 / 2 to the variance.
        amps *= std / np.sqrt(np.sum(amps ** 2) / 2)
        self.omega = 2 * np.pi / periods
        self.amp = amps
        self.phase = rng.uniform(0, 2 * np.pi, count)

    # Times are a record's start t0 (k,) plus offsets tau (n,) within the second; the
    # angle-addition identity turns k*n*count sines into k*count + n*count and two
    # small matrix products.
    def _parts(self, t0: np.ndarray, tau: np.ndarray):
        a = np.outer(t0, self.omega) + self.phase
        b = np.outer(tau, self.omega)
        return np.sin(a), np.cos(a), np.sin(b), np.cos(b)

    def value(self, t0: np.ndarray, tau: np.ndarray) -> np.ndarray:
        """The signal at t0[:, None] + tau[None, :]."""
        sa, ca, sb, cb = self._parts(t0, tau)
        return (sa * self.amp) @ cb.T + (ca * self.amp) @ sb.T

    def integral(self, t0: np.ndarray, tau: np.ndarray) -> np.ndarray:
        """An antiderivative of :meth:`value` at t0[:, None] + tau[None, :]."""
        sa, ca, sb, cb = self._parts(t0, tau)
        w = self.amp / self.omega
        return -((ca * w) @ cb.T - (sa * w) @ sb.T)


class UpmuSimulator:
    """Deterministic data of one simulated uPMU.

    ``records(start, seconds)`` gives the records of any span of its history; the same
    (seed, serial, site) always gives the same data for the same second.
    """

    def __init__(self, serial: str, seed: int = 0, site: Site | str = "feeder",
                 extended: bool = False):
        self.serial = serial
        self.site = SITES[site] if isinstance(site, str) else site
        self.extended = extended
        rng = np.random.default_rng([seed, zlib.crc32(serial.encode())])
        s = self.site
        self._freq = _Wander(rng, 0.012, 2.0, 3600.0, redness=0.4)
        self._volts = _Wander(rng, s.volt_wander, 1.0, 6 * 3600.0, redness=0.45)
        self._phase_volts = [_Wander(rng, 0.6 * s.volt_wander, 1.0, 600.0, count=8, redness=0.3)
                             for _ in range(3)]
        self._load = _Wander(rng, 0.05, 1.0, 2 * 3600.0)
        self._pf = _Wander(rng, 0.01, 30.0, 3 * 3600.0)
        self._v_imbalance = rng.normal(0.0, 0.002, 3)
        self._i_imbalance = rng.normal(0.0, 0.03, 3)
        self._theta0 = rng.uniform(-180.0, 180.0)
        self._key = rng.integers(0, 2**63, size=2, dtype=np.uint64)
        self._gps = (rng.uniform(30, 45), rng.uniform(-123, -75), rng.uniform(5, 400))

    # One Philox stream per second: counter-based, so any second can be drawn alone.
    def _noise(self, seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        normals = np.empty((len(seconds), _ROWS, SAMPLES))
        uniforms = np.empty((len(seconds), 3))
        for j, sec in enumerate(seconds):
            bitgen = np.random.Philox(key=self._key, counter=[0, 0, 0, int(sec) & (2**64 - 1)])
            g = np.random.Generator(bitgen)
            normals[j] = g.standard_normal((_ROWS, SAMPLES))
            uniforms[j] = g.random(3)
        return normals, uniforms

    def records(self, start: int, seconds: int) -> np.ndarray:
        """``seconds`` one-second records from epoch second ``start`` (UTC)."""
        secs = np.arange(start, start + seconds, dtype=np.int64)
        k = len(secs)
        recs = dat.empty_records(k, extended=self.extended)
        dat.set_record_times(recs, secs, INTERVAL_MS)
        tau = np.rint(np.arange(SAMPLES) * float(INTERVAL_MS) * 1e6) / 1e9
        t0 = (secs - _T0).astype(np.float64)
        z, u = self._noise(secs)
        s = self.site

        freq_dev = self._freq.value(t0, tau)
        theta = self._theta0 + 360.0 * self._freq.integral(t0, tau) + 0.004 * z[:, 0]
        common_v = s.volts + self._volts.value(t0, tau)
        load = _daily_shape(s.daily, secs)[:, None] * (1.0 + self._load.value(t0, tau))
        pf = np.clip(s.power_factor + self._pf.value(t0, tau), 0.5, 1.0)
        pf_angle = np.degrees(np.arccos(pf))

        watts = np.zeros((k, SAMPLES))
        var = np.zeros((k, SAMPLES))
        for p in range(3):
            v_mag = (common_v * (1 + self._v_imbalance[p]) + self._phase_volts[p].value(t0, tau)
                     + 2e-4 * s.volts * z[:, 1 + p])
            i_mag = np.abs(s.amps * load * (1 + self._i_imbalance[p])
                           * (1 + 0.002 * z[:, 4 + p]) + 0.001 * s.amps * z[:, 7 + p])
            v_ang = theta - 120.0 * p + 0.003 * z[:, 10 + p]
            i_ang = v_ang - pf_angle + 0.02 * z[:, 13 + p]
            recs[CHANNELS[p]]["mag"] = v_mag
            recs[CHANNELS[p]]["angle"] = _wrap(v_ang)
            recs[CHANNELS[3 + p]]["mag"] = i_mag
            recs[CHANNELS[3 + p]]["angle"] = _wrap(i_ang)
            phi = np.radians(v_ang - i_ang)
            watts += v_mag * i_mag * np.cos(phi)
            var += v_mag * i_mag * np.sin(phi)

        status = _lock_runs(u)
        if self.extended:
            status |= EXTENDED_STATUS_BIT
            va = np.hypot(watts, var)
            recs["FUND_W"] = watts
            recs["FUND_VAR"] = var
            recs["FUND_VA"] = va
            recs["FUND_DPF"] = np.divide(watts, va, out=np.ones_like(va), where=va > 0)
            freq = 60.0 + freq_dev
            recs["FREQ_L1_1S"] = freq.mean(axis=1, keepdims=True)
            recs["FREQ_L1_C37"] = freq + 0.0004 * z[:, 0]
        recs["status"] = status
        lat, lon, alt = self._gps
        recs["gps"] = np.array([alt, lat, 0.9, lon, 9.0, 1.0, 1.0], dtype=np.float32)
        recs["pll"] = np.array([1, 100_000_000, 0, 0], dtype=np.uint32)
        recs["pll"][:, 2] = np.abs(np.rint(3 * z[:, 0, 0])).astype(np.uint32)
        return recs

    def file_bytes(self, start: int, seconds: int = 60) -> bytes:
        """The contents of the device's file starting at epoch second ``start``."""
        return dat.encode_records(self.records(start, seconds))

    def files(self, start: int, count: int, seconds_per_file: int = 60
              ) -> Iterator[tuple[str, bytes]]:
        """(path below ``upmu_data/``, contents) of ``count`` consecutive files."""
        for n in range(count):
            first = start + n * seconds_per_file
            when = dt.datetime.fromtimestamp(first, dt.timezone.utc)
            yield naming.relative_path(self.serial, when), self.file_bytes(first, seconds_per_file)


def write_tree(outdir: str | os.PathLike, serial: str, start: dt.datetime, minutes: int, *,
               extended: bool = False, seed: int = 0, site: Site | str = "feeder",
               seconds_per_file: int = 60,
               progress: Callable[[int], None] | None = None) -> list[Path]:
    """Write a device's files for ``minutes`` of data from ``start`` under ``outdir``.

    Files land at ``<outdir>/upmu_data/YYYY/Month_MM/Day_DD/Hour_HH/<SERIAL>_<time>.dat``
    (or directly under ``outdir`` when it is itself named ``upmu_data``), exactly as a
    device lays them out. ``progress(1)`` is called after each file. Returns the paths
    written, in time order.
    """
    root = Path(outdir)
    if root.name != "upmu_data":
        root = root / "upmu_data"
    sim = UpmuSimulator(serial, seed=seed, site=site, extended=extended)
    first = int(start.replace(tzinfo=start.tzinfo or dt.timezone.utc).timestamp())
    count = -(-minutes * 60 // seconds_per_file)
    written = []
    for rel, data in sim.files(first, count, seconds_per_file):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
        if progress:
            progress(1)
    return written


def _wrap(deg: np.ndarray) -> np.ndarray:
    return (deg + 180.0) % 360.0 - 180.0


def _daily_shape(kind: str, secs: np.ndarray) -> np.ndarray:
    """Load relative to its daily mean at each second (local time taken as UTC-8)."""
    hour = ((secs - 8 * 3600) % 86400) / 3600.0
    if kind == "solar":
        sun = np.sin(np.pi * (hour - 6.0) / 12.0)
        return np.maximum(sun, 0.0) * 1.6 + 0.005
    morning = np.exp(-0.5 * ((hour - 8.5) / 2.0) ** 2)
    evening = np.exp(-0.5 * ((hour - 19.0) / 2.5) ** 2)
    return 0.7 + 0.25 * morning + 0.45 * evening


def _lock_runs(u: np.ndarray) -> np.ndarray:
    """LSTATE words: 0, with a run of 4s in about one second in thirty."""
    k = len(u)
    status = np.zeros((k, SAMPLES), dtype=np.int32)
    has_run = u[:, 0] < 1 / 30
    start = (u[:, 1] * SAMPLES).astype(int)
    length = 4 + (u[:, 2] * 60).astype(int)
    idx = np.arange(SAMPLES)
    run = has_run[:, None] & (idx >= start[:, None]) & (idx < (start + length)[:, None])
    status[run] = LOCK_RUN_VALUE
    return status
