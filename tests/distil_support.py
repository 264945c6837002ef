"""Helpers of the distil tests: uPMUs with streams in a real qss-btrdb, generator data
put in as sync2q would (file by file, merge REPLACE), outputs read back, and the
built-ins computed independently with plain numpy (no rebaser, no engine)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from qss import dat
from qss.btrdbclient import Btrdb
from qss.generator import UpmuSimulator
from qss.streammeta import StreamRegistry, specs_of
from qss.upmuconfig import UpmuList

S = 10**9
T0 = 1_450_000_800                 # 2015-12-13T10:00:00Z, whole minute
SCHEMA = pa.schema([pa.field("time", pa.timestamp("ns", tz="UTC"), nullable=False),
                    pa.field("value", pa.float64(), nullable=False)])


def upmu_list(*serials: str, extended: bool = True, first: int = 1) -> UpmuList:
    """uPMUs ``uPMU<first>``, ``uPMU<first+1>`` ... (tests sharing a server differ)."""
    ul = UpmuList.parse("")
    for n, serial in enumerate(serials, first):
        ul.add(f"10.0.0.{n}", serial, f"uPMU{n}", extended=extended)
    return ul


def create_streams(btrdb: Btrdb, upmu) -> None:
    StreamRegistry(btrdb).ensure(upmu, specs_of(upmu))


def put(db, upmu, records: np.ndarray) -> None:
    """Records into the uPMU's streams, as sync2q stores a file (any date: a record
    dated 2000 is kept, as an import of old data would)."""
    parsed = dat.parse(dat.encode_records(records), dat.DateWindow(0, 2**62))
    for name, t, v in parsed.iter_streams():
        if len(t) and name in upmu.streams:
            stream = db.stream_from_uuid(upmu.streams[name].uuid)
            stream.arrow_insert(pa.Table.from_arrays(
                [pa.array(t, SCHEMA.field("time").type), pa.array(v, pa.float64())],
                schema=SCHEMA), merge="replace")


def records(serial: str, start: int, seconds: int, extended: bool = True) -> np.ndarray:
    return UpmuSimulator(serial, seed=21, extended=extended).records(start, seconds)


def read(db, uuid, start=-(16 << 56), end=(48 << 56) - 1) -> tuple[np.ndarray, np.ndarray]:
    table = db.stream_from_uuid(uuid).arrow_values(start, end)
    return (table.column("time").cast(pa.int64()).to_numpy().astype(np.int64),
            table.column("value").to_numpy().astype(np.float64))


# -- independent computations ---------------------------------------------------------

def float32_exact(v: np.ndarray) -> bool:
    """Whether every value is a float32 (the built-ins' output precision)."""
    v = np.asarray(v, np.float64)
    return bool(np.array_equal(v.astype(np.float32).astype(np.float64), v))


def assert_float32_of(got: np.ndarray, want: np.ndarray, tol=0.0, msg: str = "") -> None:
    """``got`` is what a float32 output of ``want`` must be: float32-exact values, each
    the float32 nearest to ``want``, where the independent computation is exact
    (``tol`` 0), or the float32 nearest to some value within ``tol`` (an array, or one
    figure) of ``want``, where it sums or takes roots in another order: then ``got``
    is within ``tol`` plus half a float32 step of ``want`` (and still float32)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, msg
    assert float32_exact(got), f"{msg}: values not rounded to float32"
    nearest = want.astype(np.float32).astype(np.float64)
    if np.all(np.asarray(tol) == 0):
        np.testing.assert_array_equal(got, nearest, msg)
        return
    half_step = np.abs(np.spacing(np.abs(got).astype(np.float32))).astype(np.float64) / 2
    off = np.abs(got - want) - (half_step + tol)
    assert np.all(off <= 0), f"{msg}: {int((off > 0).sum())} values off, worst by {off.max():g}"

def tick_time(second: np.ndarray, i: np.ndarray) -> np.ndarray:
    return second * S + np.rint(i * (S / 120)).astype(np.int64)


def by_sample(t: np.ndarray, v: np.ndarray) -> dict[tuple[int, int], float]:
    """{(second, sample index): value}: the uPMU's own layout of a second."""
    sec = t // S
    i = np.rint((t - sec * S) / (S / 120)).astype(np.int64)
    out = {}
    for s_, i_, x in zip(sec.tolist(), i.tolist(), v.tolist()):
        if i_ == 120:
            s_, i_ = s_ + 1, 0
        out[(s_, i_)] = x
    return out


def wrap(d):
    return (np.asarray(d) + 180.0) % 360.0 - 180.0


def expected_frequency(t, v) -> tuple[np.ndarray, np.ndarray]:
    a = by_sample(t, v)
    keys = sorted(k for k in a if (k[0] - 1, k[1]) in a)
    times = np.array([tick_time(s, i) for s, i in keys], np.int64)
    f = np.array([60 + wrap(a[(s, i)] - a[(s - 1, i)]) / 360 for s, i in keys])
    return times, f


def expected_frequency_1s(t, v) -> tuple[np.ndarray, np.ndarray]:
    ft, fv = expected_frequency(t, v)
    f = by_sample(ft, fv)
    secs = sorted({s for s, _ in f})
    out_t, out_v = [], []
    for s in secs:
        vals = [f[k] for k in [(s, i) for i in range(1, 120)] + [(s + 1, 0)] if k in f]
        if len(vals) >= 60:
            out_t.append(s * S)
            out_v.append(sum(vals) / len(vals))
    return np.array(out_t, np.int64), np.array(out_v)


def expected_state_changes(t, v) -> tuple[np.ndarray, np.ndarray]:
    out_t, out_v = [], []
    for k in range(len(t)):
        if k == 0 or v[k] != v[k - 1] or t[k] - t[k - 1] > S:
            out_t.append(t[k])
            out_v.append(v[k])
    return np.array(out_t, np.int64), np.array(out_v)


def expected_power(streams: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, tuple]:
    """Total P, Q, S, DPF at the common times of the 12 phasor streams."""
    t = streams["L1MAG"][0]
    p = np.zeros(len(t))
    q = np.zeros(len(t))
    for ph in "123":
        vm, va = streams[f"L{ph}MAG"][1], streams[f"L{ph}ANG"][1]
        im, ia = streams[f"C{ph}MAG"][1], streams[f"C{ph}ANG"][1]
        phi = np.deg2rad(va - ia)
        p += vm * im * np.cos(phi)
        q += vm * im * np.sin(phi)
    sec = t // S
    i = np.rint((t - sec * S) / (S / 120)).astype(np.int64)
    ticks = tick_time(sec, i)
    s = np.sqrt(p * p + q * q)
    return {"P": (ticks, p), "Q": (ticks, q), "S": (ticks, s), "DPF": (ticks, p / s)}
