"""Multi-resolution statistics, kept up to date on every write.

How this works. Level L holds one record (count, min, mean, max, m2) per non-empty window
of 2^L ns, for L in LEVELS = 30, 34, ..., 50. Level 30 (about 1.07 s) is computed from raw
points; each coarser level from the one below, 16 windows at a time. A row of the ``stats``
table ("block") holds the records of 2^BLOCK_BITS consecutive windows of one level, so an
aligned-windows query at point width pw reads level L = the largest level <= pw and
combines at most 2^(pw-L) <= 8 records per output window: its cost follows the number of
windows returned, not the number of points beneath them. Widths below 2^30 are computed
from raw points (at 120 Hz that is at most ~128 points per window).

A write names the level-30 windows it made dirty (with their fresh records; a dirty window
without a record became empty) and, for deletes, a cleared range of level-30 windows.
:func:`plan_update` turns that into the block rows to rewrite or delete at every level.
"""
from __future__ import annotations

import collections
import sqlite3
import threading

import numpy as np

from . import codec, kernels
from . import stats as st

LEVEL0 = 30
STRIDE = 4
# Up to 50 (13 days): coarser windows are built from at most (span of the data) / 2^50
# records, a few hundred for ten years, while every write would pay to keep them.
LEVELS = tuple(range(LEVEL0, 51, STRIDE))  # 30, 34, ..., 50
BLOCK_BITS = 10
_KINDS = (codec.INT, codec.INT, codec.F64, codec.F64, codec.F64, codec.F64)


def level_for(pw: int) -> int | None:
    """The coarsest stored level whose windows nest in windows of 2^pw, or None (raw)."""
    if pw < LEVEL0:
        return None
    return min(LEVEL0 + (pw - LEVEL0) // STRIDE * STRIDE, LEVELS[-1])


_PLAIN = b"P1"
_EMPTY = st.empty()
#: Blocks of coarser levels with fewer records than this are stored as plain zstd, which
#: encodes them faster than the column codec; from about this size on (measured, codec
#: vs plain: 128 records 34 vs 38 us, 1024 records 74 vs 198 us) the codec is faster
#: and smaller.
_PLAIN_BELOW = 128


def encode_block(level: int, block: int, s: st.Stats) -> bytes:
    """Level 30, nearly all of the statistics' bytes, gets the compact column codec;
    small blocks of coarser levels (rewritten by most writes) get plain zstd, which
    encodes them faster. :func:`decode_block` reads either."""
    off = s.win - (block << BLOCK_BITS)
    if level == LEVEL0 or len(s) >= _PLAIN_BELOW:
        return codec.encode([off, s.count, s.min, s.mean, s.max, s.m2], _KINDS)
    body = b"".join(c.astype("<f8" if c.dtype.kind == "f" else "<i8", copy=False).tobytes()
                    for c in (off, s.count, s.min, s.mean, s.max, s.m2))
    return _PLAIN + codec.compress(body)


def decode_block(block: int, blob: bytes) -> st.Stats:
    if blob[:2] == _PLAIN:
        # A writable copy: the write path's kernels are compiled for writable arrays.
        raw = np.frombuffer(codec.decompress(blob[2:]), np.uint8).copy()
        cols = raw.reshape(6, -1)
        off, count = cols[0].view("<i8"), cols[1].view("<i8")
        mn, mean, mx, m2 = (cols[i].view("<f8") for i in range(2, 6))
    else:
        off, count, mn, mean, mx, m2 = codec.decode(blob)
    return st.Stats(off + (block << BLOCK_BITS), count, mn, mean, mx, m2)


def read(conn: sqlite3.Connection, sid: int, level: int, w0: int, w1: int) -> st.Stats:
    """Records of windows w0 <= w < w1 at ``level``."""
    if w1 <= w0:
        return st.empty()
    rows = conn.execute("SELECT block, data FROM stats WHERE stream=? AND level=?"
                        " AND block BETWEEN ? AND ? ORDER BY block",
                        (sid, level, w0 >> BLOCK_BITS, (w1 - 1) >> BLOCK_BITS)).fetchall()
    s = st.concat([decode_block(b, d) for b, d in rows])
    if len(s) and (s.win[0] < w0 or s.win[-1] >= w1):
        s = s.take((s.win >= w0) & (s.win < w1))
    return s


class BlockCache:
    """Decoded statistics blocks as last committed, most recently used kept.

    Appends rewrite the same few blocks at every level call after call; keeping them
    decoded saves reading and decoding them again. The cache holds committed state only:
    writers :meth:`commit` a plan after its transaction committed and :meth:`drop` the
    stream after anything else (a failed transaction, a delete, an obliteration). It is
    valid while this process is the only writer of the database (qss-btrdb locks its
    data directory).
    """

    def __init__(self, max_blocks: int = 4096):
        self.max_blocks = max_blocks
        self._blocks: collections.OrderedDict[tuple[int, int, int], st.Stats] = \
            collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, sid: int, level: int, block: int) -> st.Stats | None:
        with self._lock:
            s = self._blocks.get((sid, level, block))
            if s is not None:
                self._blocks.move_to_end((sid, level, block))
            return s

    def get_many(self, sid: int, keys: list[tuple[int, int]]
                 ) -> dict[tuple[int, int], st.Stats]:
        """The cached blocks among ``keys`` (level, block)."""
        out = {}
        with self._lock:
            blocks = self._blocks
            for level, block in keys:
                s = blocks.get((sid, level, block))
                if s is not None:
                    blocks.move_to_end((sid, level, block))
                    out[(level, block)] = s
        return out

    def commit(self, sid: int, plan: Plan) -> None:
        if plan.range_deletes:
            self.drop(sid)
            return
        with self._lock:
            for level, block in plan.deletes:
                self._blocks.pop((sid, level, block), None)
            for (level, block), s in plan.decoded.items():
                self._blocks[(sid, level, block)] = s
                self._blocks.move_to_end((sid, level, block))
            while len(self._blocks) > self.max_blocks:
                self._blocks.popitem(last=False)

    def drop(self, sid: int) -> None:
        with self._lock:
            for key in [k for k in self._blocks if k[0] == sid]:
                del self._blocks[key]


def _load_blocks(conn: sqlite3.Connection, sid: int, level: int, missing: list[int]
                 ) -> dict[int, st.Stats]:
    out: dict[int, st.Stats] = {}
    for i in range(0, len(missing), 500):  # stay under SQLite's parameter limit
        part = missing[i:i + 500]
        marks = ",".join("?" * len(part))
        for b, d in conn.execute(f"SELECT block, data FROM stats WHERE stream=? AND level=?"
                                 f" AND block IN ({marks})", (sid, level, *part)):
            out[b] = decode_block(b, d)
    return out


def _load_all(conn: sqlite3.Connection, sid: int, wanted: list[tuple[int, int]],
              cache: BlockCache | None = None) -> dict[tuple[int, int], st.Stats]:
    """The stored blocks among ``wanted`` (level, block) pairs, decoded."""
    out = cache.get_many(sid, wanted) if cache is not None else {}
    missing: dict[int, list[int]] = {}
    for level, b in wanted:
        if (level, b) not in out:
            missing.setdefault(level, []).append(b)
    for level, blocks in missing.items():
        for b, s in _load_blocks(conn, sid, level, blocks).items():
            out[(level, b)] = s
    return out


class Plan:
    """Rows to write: upserts (level, block, blob) and deletes (level, block) and
    (level, first block, last block) ranges."""

    def __init__(self) -> None:
        self.upserts: list[tuple[int, int, bytes]] = []
        self.deletes: list[tuple[int, int]] = []
        self.range_deletes: list[tuple[int, int, int]] = []
        self.decoded: dict[tuple[int, int], st.Stats] = {}  # the upserts, decoded

    def apply(self, conn: sqlite3.Connection, sid: int) -> None:
        """Execute inside the caller's write transaction."""
        for level, b0, b1 in self.range_deletes:
            conn.execute("DELETE FROM stats WHERE stream=? AND level=? AND block BETWEEN ? AND ?",
                         (sid, level, b0, b1))
        if self.deletes:
            conn.executemany("DELETE FROM stats WHERE stream=? AND level=? AND block=?",
                             [(sid, lv, b) for lv, b in self.deletes])
        conn.executemany("INSERT OR REPLACE INTO stats(stream, level, block, data)"
                         " VALUES (?,?,?,?)", [(sid, lv, b, d) for lv, b, d in self.upserts])


def plan_update(conn: sqlite3.Connection, sid: int, dirty: np.ndarray, fresh: st.Stats,
                cleared: tuple[int, int] | None = None, cache: BlockCache | None = None
                ) -> Plan:
    """Plan the rewrite of every level after a change of level-30 windows.

    ``dirty``: sorted unique level-30 windows whose records are recomputed; ``fresh``: their
    new records (windows of ``dirty`` missing from it are now empty); ``cleared``: an
    inclusive range of level-30 windows whose records all go (a delete), its two end
    windows being listed in ``dirty`` when partly kept.

    The window arithmetic of all levels is one kernel call (:func:`kernels.level_windows`:
    each level's dirty windows and blocks), the blocks of all levels are looked up
    together, and the records of all levels are recomputed by one more
    (:func:`kernels.update_levels`): Python is left with the lookups and the encoding.
    """
    plan = Plan()
    clear_lo, clear_hi = cleared if cleared is not None else (1, 0)  # 1 > 0: nothing
    dirty = np.ascontiguousarray(dirty, dtype=np.int64)
    nlev = len(LEVELS)
    dflat, doff, bflat, boff = kernels.level_windows(
        dirty, cleared is not None, clear_lo, clear_hi, nlev, STRIDE, BLOCK_BITS)
    bflat, boff = bflat.tolist(), boff.tolist()
    if cleared is not None:
        lo, hi = clear_lo, clear_hi
        for k, level in enumerate(LEVELS):
            ba, bb = lo >> BLOCK_BITS, hi >> BLOCK_BITS
            if bb - ba > 1:  # blocks strictly inside the range hold nothing afterwards
                plan.range_deletes.append((level, ba + 1, bb - 1))
            lo, hi = lo >> STRIDE, hi >> STRIDE
    wanted = [(level, b) for k, level in enumerate(LEVELS)
              for b in bflat[boff[k]:boff[k + 1]]]
    loaded = _load_all(conn, sid, wanted, cache)
    parts = [loaded[key] for key in wanted if key in loaded]
    ooff = np.zeros(nlev + 1, np.int64)
    for key, s in loaded.items():
        ooff[LEVELS.index(key[0]) + 1] += len(s)
    np.cumsum(ooff, out=ooff)
    old = [np.concatenate(c) for c in zip(*(p.columns() for p in parts))] if parts \
        else _EMPTY.columns()
    *cols, off = kernels.update_levels(dflat, doff, cleared is not None, clear_lo,
                                       clear_hi, STRIDE, *fresh.columns(), *old, ooff)
    off = off.tolist()
    for k, level in enumerate(LEVELS):
        a, b = off[k], off[k + 1]
        blocks = bflat[boff[k]:boff[k + 1]]
        if len(blocks) == 1:
            cuts = [a, b]
        else:
            cuts = (np.searchsorted(cols[0][a:b] >> BLOCK_BITS, blocks + [blocks[-1] + 1])
                    + a).tolist()
        for i, blk in enumerate(blocks):
            lo, hi = cuts[i], cuts[i + 1]
            if hi > lo:
                merged = st.Stats(*(c[lo:hi] for c in cols))
                plan.upserts.append((level, blk, encode_block(level, blk, merged)))
                plan.decoded[(level, blk)] = merged
            elif (level, blk) in loaded:
                plan.deletes.append((level, blk))
    return plan
