"""Raw points of a stream, stored as compressed chunks of up to CHUNK_POINTS points.

A chunk row covers [start, next chunk's start) of its stream and holds the sorted (time,
value, version) columns of its points, encoded by :mod:`tsdb.codec`. Chunk starts are
multiples of 2^ALIGN ns and chunks are only cut at such boundaries, so every level-30
statistics window lies inside a single chunk: a write can recompute the statistics of
the windows it touches from the chunks it rewrote. The version column records which data
version wrote each point, so reads at an older version can leave newer points out.
"""
from __future__ import annotations

import dataclasses
import sqlite3

import numpy as np

from . import codec, kernels

ALIGN = 30
#: Target points per chunk: big enough to compress well and keep row overhead small,
#: small enough that appending a minute of 120 Hz data rewrites little.
CHUNK_POINTS = 16384
_KINDS = (codec.TIME, codec.F64, codec.INT)


@dataclasses.dataclass
class Points:
    """Sorted points with the version that wrote each."""

    t: np.ndarray
    v: np.ndarray
    ver: np.ndarray

    def __len__(self) -> int:
        return len(self.t)

    def slice(self, lo: int, hi: int) -> Points:
        return Points(self.t[lo:hi], self.v[lo:hi], self.ver[lo:hi])

    def take(self, index) -> Points:
        return Points(self.t[index], self.v[index], self.ver[index])


def empty_points() -> Points:
    return Points(np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.int64))


def concat(parts: list[Points]) -> Points:
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty_points()
    if len(parts) == 1:
        return parts[0]
    return Points(np.concatenate([p.t for p in parts]), np.concatenate([p.v for p in parts]),
                  np.concatenate([p.ver for p in parts]))


def encode(p: Points) -> bytes:
    return codec.encode([p.t, p.v, p.ver], _KINDS)


def encode_pieces(p: Points, pieces: list[tuple[int, int]]) -> list[bytes]:
    """``[encode(p.slice(a, b)) for a, b in pieces]`` for consecutive pieces (each ``a``
    the ``b`` before it), the same bytes, encoded together (:func:`codec.encode_chunks`)."""
    if len(pieces) == 1:
        return [encode(p.slice(*pieces[0]))]
    bounds = [pieces[0][0]] + [b for _, b in pieces]
    blobs = codec.encode_chunks(p.t, p.v, p.ver, bounds)
    return [blob if blob is not None else encode(p.slice(a, b))
            for blob, (a, b) in zip(blobs, pieces, strict=True)]


def decode(blob: bytes) -> Points:
    t, v, ver = codec.decode(blob)
    return Points(t, v, ver)


def floor_align(t: int) -> int:
    return (t >> ALIGN) << ALIGN


def split(t: np.ndarray, first_start: int, target: int = CHUNK_POINTS,
          window_starts: np.ndarray | None = None) -> list[tuple[int, int, int]]:
    """Cut sorted times into chunks of at most ``target`` points where windows allow.

    Returns (chunk start, lo, hi) index ranges; the first chunk keeps ``first_start``,
    later ones start at the aligned boundary they were cut at. A single 2^ALIGN window
    holding more than ``target`` points stays whole. ``window_starts``: the indices where
    a 2^ALIGN window begins (``kernels.window_starts(t, ALIGN)``), when the caller has them.
    """
    n = len(t)
    if n <= target:
        return [(first_start, 0, n)]
    if window_starts is None:
        window_starts = kernels.window_starts(t, ALIGN)
    bounds = window_starts[1:]  # index where a new window begins
    out, lo, start = [], 0, first_start
    while lo < n:
        if n - lo <= target:
            out.append((start, lo, n))
            break
        k = np.searchsorted(bounds, lo + target, "right") - 1
        hi = int(bounds[k]) if k >= 0 and bounds[k] > lo else None
        if hi is None:  # one window alone exceeds target: cut at its end
            k = np.searchsorted(bounds, lo, "right")
            hi = int(bounds[k]) if k < len(bounds) else n
        out.append((start, lo, hi))
        if hi < n:
            start = floor_align(int(t[hi]))
        lo = hi
    return out


@dataclasses.dataclass(frozen=True)
class ChunkRow:
    start: int
    first: int
    last: int
    count: int


def rows_between(conn: sqlite3.Connection, sid: int, t0: int, t1: int) -> list[ChunkRow]:
    """Chunks that may hold points in [t0, t1] (inclusive): the one containing t0 and
    every chunk starting after it up to t1."""
    q = ("SELECT start, first, last, count FROM chunks WHERE stream=?1 AND start >="
         " coalesce((SELECT max(start) FROM chunks WHERE stream=?1 AND start<=?2), ?2)"
         " AND start <= ?3 ORDER BY start")
    return [ChunkRow(*r) for r in conn.execute(q, (sid, t0, t1))]


def load(conn: sqlite3.Connection, sid: int, start: int) -> Points:
    row = conn.execute("SELECT data FROM chunks WHERE stream=? AND start=?",
                       (sid, start)).fetchone()
    return decode(row[0]) if row else empty_points()


def read(conn: sqlite3.Connection, sid: int, t0: int, t1: int) -> Points:
    """Points with t0 <= t < t1, sorted."""
    if t1 <= t0:
        return empty_points()
    q = ("SELECT data, first, last FROM chunks WHERE stream=?1 AND start >="
         " coalesce((SELECT max(start) FROM chunks WHERE stream=?1 AND start<=?2), ?2)"
         " AND start < ?3 ORDER BY start")
    parts = []
    for data, first, last in conn.execute(q, (sid, t0, t1)):
        if last < t0 or first >= t1:
            continue
        p = decode(data)
        if first < t0 or last >= t1:
            lo, hi = np.searchsorted(p.t, [t0, t1])
            p = p.slice(lo, hi)
        parts.append(p)
    return concat(parts)
