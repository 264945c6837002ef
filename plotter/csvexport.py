"""CSV of several streams over a range, raw or as windows, made chunk by chunk.

The file: a header row, then one row per time at which any stream has a point (raw) or
a window (``2**pw`` ns): ``time_ns``, the ISO time (UTC, to the nanosecond), and per
stream ``mean``, ``min``, ``max`` and ``count`` (raw points: the value thrice and 1).
A stream without a point at that time leaves its cells empty. Values are written with
``repr``, so they read back as the very float64 BTrDB holds.

The range is read in chunks (:func:`chunks`) so the server never holds the whole file;
the web handler sends each chunk's rows as soon as they are made.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence

import numpy as np

from .catalog import StreamEntry
from .query import read_raw, read_windows, round_up

__all__ = ["RAW_CHUNK_NS", "WINDOWS_PER_CHUNK", "chunks", "header", "iso", "read_chunk",
           "rows"]

#: Raw points are read 5 minutes at a time (36,000 points per stream at 120 Hz).
RAW_CHUNK_NS = 300 * 10**9
#: Windows are read 20,000 at a time.
WINDOWS_PER_CHUNK = 20_000


def chunks(start: int, end: int, pw: int | None) -> Iterator[tuple[int, int]]:
    """``[start, end)`` cut into reading chunks; for windows, on window boundaries, from
    the window holding ``start`` to the one holding the last instant before ``end``."""
    if pw is None:
        step = RAW_CHUNK_NS
    else:
        start, end = start >> pw << pw, round_up(end, pw)
        step = WINDOWS_PER_CHUNK << pw
    t = start
    while t < end:
        yield t, min(end, t + step)
        t += step


def header(entries: Sequence[StreamEntry]) -> str:
    cols = ["time_ns", "time"]
    for e in entries:
        label = e.path.replace('"', "'")
        cols += [f"{label} {stat}" for stat in ("mean", "min", "max", "count")]
    return ",".join(f'"{c}"' if "," in c else c for c in cols) + "\n"


def read_chunk(streams: Sequence, span: tuple[int, int], pw: int | None) -> list[dict]:
    """Each stream's columns over ``span`` (raw when ``pw`` is None)."""
    start, end = span
    out = []
    for s in streams:
        if pw is None:
            r = read_raw(s, start, end)
            v = r["values"]
            out.append({"times": r["times"], "mean": v, "min": v, "max": v,
                        "count": np.ones(len(v), np.int64)})
        else:
            out.append(read_windows(s, start, end, pw))
    return out


def iso(ns: int) -> str:
    """``2015-12-18T08:14:57.008333333Z``: UTC to the nanosecond."""
    sec, frac = divmod(int(ns), 10**9)
    return (dt.datetime(1970, 1, 1) + dt.timedelta(seconds=sec)).strftime(
        "%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def rows(columns: list[dict], n_streams: int) -> str:
    """The rows of one chunk: the union of the streams' times, in order."""
    if not columns:
        return ""
    times = np.unique(np.concatenate([c["times"] for c in columns])) if columns else []
    lines = []
    index = []
    for c in columns:
        pos = np.searchsorted(times, c["times"])
        where = np.full(len(times), -1, np.int64)
        where[pos] = np.arange(len(pos))
        index.append(where)
    stats = [(c["mean"].tolist(), c["min"].tolist(), c["max"].tolist(), c["count"].tolist())
             for c in columns]
    for row, t in enumerate(times.tolist()):
        cells = [str(t), iso(t)]
        for (means, mins, maxs, counts), where in zip(stats, index):
            i = where[row]
            if i < 0:
                cells += ["", "", "", ""]
            else:
                cells += [repr(means[i]), repr(mins[i]), repr(maxs[i]), str(counts[i])]
        lines.append(",".join(cells))
    return "\n".join(lines) + ("\n" if lines else "")
