"""The storage engine: streams of (int64 ns, float64) points with BTrDB semantics.

:class:`Store` is what the gRPC and REST adapters call; it knows nothing of either. Every
write is one SQLite transaction (chunks, statistics at every level, change log, version)
committed before the call returns. Every insert or delete makes a new data version; reads
at an older version are exact wherever nothing older was deleted or overwritten since
(points remember the version that wrote them), and fail with VersionNotAvailable where
something was. Semantics: reference/btrdb-v5.md §2-3.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import threading
import uuid as uuidlib
from collections.abc import Iterator

import numpy as np

from . import chunks, kernels, levels, merge, meta
from . import stats as st
from .db import Db, snapshot
from .errors import (MAXIMUM_TIME, MINIMUM_TIME, BadValue, InvalidPointWidth,
                     InvalidTimeRange, InvalidVersions, NoSuchPoint, VersionNotAvailable,
                     WrongArgs)
from .merge import MergePolicy
from .meta import StreamInfo

__all__ = ["Store", "Windows", "MergePolicy", "StreamInfo"]

assert chunks.ALIGN == levels.LEVEL0  # the insert path cuts chunks at level-30 windows


@dataclasses.dataclass(frozen=True)
class Windows:
    """Statistics of non-empty windows: start time, min, mean, max, count, stddev."""

    time: np.ndarray    # int64 ns, window start
    min: np.ndarray
    mean: np.ndarray
    max: np.ndarray
    count: np.ndarray   # uint64
    stddev: np.ndarray  # population standard deviation

    def __len__(self) -> int:
        return len(self.time)


def _windows(s: st.Stats, time: np.ndarray) -> Windows:
    return Windows(time.astype(np.int64), s.min, s.mean, s.max, s.count.astype(np.uint64),
                   s.stddev)


_TAILS = 256  # streams whose last chunk is kept decoded (each < 3/4 of a chunk)


@dataclasses.dataclass(frozen=True)
class _Version:
    reported: int                        # the version the answer is for
    filter: bool                         # leave out points written after it
    changed: list[tuple[int, int]]       # ranges written since (when filtering)


class Store:
    """A data directory of streams. Thread-safe; writes to one stream are serialised."""

    def __init__(self, directory: str | os.PathLike, *, durable: bool = True,
                 chunk_points: int = chunks.CHUNK_POINTS, max_bytes: int | None = None):
        kernels.warm_up()
        self.db = Db(directory, durable=durable, max_bytes=max_bytes)
        self.chunk_points = chunk_points
        # Write-side caches of committed state (see levels.BlockCache): decoded statistics
        # blocks, and per stream the chunk written last (appends merge into it).
        self._blocks = levels.BlockCache(max_blocks=1024)  # <= ~50 MB decoded
        self._tails: collections.OrderedDict[int, tuple[int, chunks.Points]] = \
            collections.OrderedDict()
        self._locks: dict[bytes, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        # Per stream, the commit of its latest insert: a Flush waits for that one only,
        # so flushing many streams after inserting them all takes one fsync, not one
        # per stream while other streams' inserts keep committing.
        self._commit_of: dict[int, int] = {}

    def close(self) -> None:
        """Close the database; the store cannot be used afterwards."""
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _lock(self, uuid: uuidlib.UUID) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(uuid.bytes, threading.Lock())

    # ---- metadata -------------------------------------------------------------------
    def create(self, uuid: uuidlib.UUID, collection: str, tags: dict[str, str | None],
               annotations: dict[str, str | None]) -> StreamInfo:
        """Create an empty stream. Raises StreamExists, RecycledUUID, AmbiguousStream,
        InvalidCollection, InvalidTagKey, InvalidTagValue."""
        return meta.create(self.db, uuid, collection, tags, annotations)

    def info(self, uuid: uuidlib.UUID) -> StreamInfo:
        """Descriptor, property version and data version. Raises StreamNotFound."""
        return meta.get(self.db, uuid)

    def set_annotations(self, uuid: uuidlib.UUID, expected_property_version: int,
                        changes: dict[str, str | None], removals: list[str] = ()) -> int:
        """Compare-and-set annotation upserts and removals; returns the property version."""
        return meta.set_annotations(self.db, uuid, expected_property_version, changes,
                                    list(removals))

    def set_tags(self, uuid: uuidlib.UUID, expected_property_version: int,
                 tags: dict[str, str | None], collection: str,
                 removals: list[str] = ()) -> int:
        """Compare-and-set tag upserts and a collection move; returns the property version."""
        return meta.set_tags(self.db, uuid, expected_property_version, tags, collection,
                             list(removals))

    def list_collections(self, prefix: str = "") -> list[str]:
        """Sorted collections with at least one stream, starting with ``prefix``."""
        return meta.list_collections(self.db, prefix)

    def lookup(self, collection: str, is_prefix: bool = True,
               tags: dict[str, str | None] | None = None,
               annotations: dict[str, str | None] | None = None) -> list[StreamInfo]:
        """Streams by collection (exact or prefix) and tag/annotation conditions."""
        return meta.lookup(self.db, collection, is_prefix, tags or {}, annotations or {})

    def metadata_usage(self, prefix: str = "") -> tuple[dict[str, int], dict[str, int]]:
        """Per tag and annotation key, the number of streams under ``prefix`` having it."""
        return meta.metadata_usage(self.db, prefix)

    # ---- writes ---------------------------------------------------------------------
    def insert(self, uuid: uuidlib.UUID, times, values,
               policy: MergePolicy = MergePolicy.NEVER, *, sync: bool = True) -> int:
        """Insert points (any order) and return the new data version.

        The points are committed when it returns (a SIGKILL cannot lose them); with
        ``sync`` also on disk (a power loss cannot), else within db.SYNC_DELAY_SECONDS or
        at the next :meth:`flush`. An insert that stores nothing (empty, or every point
        merged away) returns the current version. Raises StreamNotFound, BadValue
        (NaN/Inf), InvalidTimeRange, WrongArgs (arrays of different shapes).
        """
        t = np.ascontiguousarray(times, dtype=np.int64)
        v = np.ascontiguousarray(values, dtype=np.float64)
        if t.ndim != 1 or t.shape != v.shape:
            raise WrongArgs("times and values must be 1-d arrays of the same length")
        policy = MergePolicy(policy)
        with self._lock(uuid):
            sid, version = meta.stream_id(self.db, uuid)
            if len(t) == 0:
                return version
            bad, tmin, tmax, ascending, repeats = kernels.check_batch(t, v)  # one pass
            if bad:
                raise BadValue(f"insert contains {'NaN' if bad == 1 else 'Inf'} values")
            if tmin < MINIMUM_TIME or tmax >= MAXIMUM_TIME - 1:
                raise InvalidTimeRange("insert contains points outside valid time interval")
            if not ascending:
                t, v = merge.sort_batch(t, v)
                repeats = True  # not known for the sorted batch: let dedupe_batch look
            if repeats:
                t, v = merge.dedupe_batch(t, v, policy)
            return self._insert_sorted(sid, version, t, v, policy, sync)

    def _insert_sorted(self, sid: int, version: int, t: np.ndarray, v: np.ndarray,
                       policy: MergePolicy, sync: bool) -> int:
        conn = self.db.conn()
        new_version = version + 1
        rows = chunks.rows_between(conn, sid, int(t[0]), int(t[-1]))
        starts = np.array([r.start for r in rows], np.int64)
        # The points of chunk c are t[edges[c + 1]:edges[c + 2]] (c = -1: before the
        # first chunk): t is sorted, so search the few chunk starts in t rather than
        # every point among the starts.
        edges = np.r_[0, np.searchsorted(t, starts, "left"), len(t)].tolist()
        # The chunks to write, as runs of consecutive chunks cut from one set of points:
        # (points, [(chunk start, lo, hi), ...]), encoded a run at a time.
        runs: list[tuple[chunks.Points, list[tuple[int, int, int]]]] = []
        dirty, fresh, changes = [], [], []
        for c in range(-1, len(rows)):
            lo, hi = edges[c + 1], edges[c + 2]
            if lo == hi:
                continue
            nt, nv = t[lo:hi], v[lo:hi]
            old, base = chunks.empty_points(), chunks.floor_align(int(nt[0]))
            if c >= 0:
                r = rows[c]
                # Appending past a nearly full chunk starts a new one instead of
                # rewriting it; otherwise merge into the chunk and re-cut it.
                appending = nt[0] > r.last and (nt[0] >> chunks.ALIGN) > (r.last >> chunks.ALIGN)
                if not (appending and r.count >= self.chunk_points * 3 // 4):
                    old, base = self._load_chunk(conn, sid, r), r.start
            if len(old) == 0 or nt[0] > old.t[-1]:
                cut = self._append(old, base, nt, nv, new_version)
                if cut is not None:  # the batch lies after every point of its chunk
                    runs.extend(cut[0])
                    fresh.extend(cut[1])
                    dirty.append(cut[2])
                    changes.extend(change_spans(nt, cut[2], levels.LEVEL0, False))
                    continue
            mt, mv, mver, kept, replaced = merge.merge(old.t, old.v, old.ver, nt, nv,
                                                       new_version, policy)
            if len(kept) == 0:
                continue
            merged = chunks.Points(mt, mv, mver)
            # Level-30 windows are the chunks' alignment windows (ALIGN == LEVEL0): one
            # pass finds where they begin, for cutting chunks and for their statistics.
            wstarts = kernels.window_starts(mt, levels.LEVEL0)
            runs.append((merged, chunks.split(mt, base, self.chunk_points, wstarts)))
            wins = kernels.unique_windows(kept, levels.LEVEL0)  # the dirty windows
            fresh.append(st.Stats(*kernels.window_stats(mt, mv, wstarts, levels.LEVEL0,
                                                        wins)))
            dirty.append(wins)
            changes.extend(change_spans(kept, wins, levels.LEVEL0, replaced > 0))
        if not runs:
            return version
        plan = levels.plan_update(conn, sid, np.concatenate(dirty), st.concat(fresh),
                                  cache=self._blocks)
        chunk_rows = []
        for p, pieces in runs:
            blobs = chunks.encode_pieces(p, [(a, b) for _, a, b in pieces])
            chunk_rows.extend((sid, start, int(p.t[a]), int(p.t[b - 1]), b - a, blob)
                              for (start, a, b), blob in zip(pieces, blobs, strict=True))
        try:
            with self.db.transaction(durable=sync) as c:
                c.executemany("INSERT OR REPLACE INTO chunks(stream, start, first, last,"
                              " count, data) VALUES (?,?,?,?,?,?)", chunk_rows)
                plan.apply(c, sid)
                c.executemany('INSERT INTO changes(stream, version, start, "end", lossy)'
                              " VALUES (?,?,?,?,?)",
                              [(sid, new_version, a, b, lossy) for a, b, lossy in changes])
                c.execute("UPDATE streams SET version=? WHERE id=?", (new_version, sid))
        except BaseException:
            self._forget(sid)
            raise
        self._commit_of[sid] = self.db.last_commit()
        self._blocks.commit(sid, plan)
        p, (start, a, b) = max(((p, piece) for p, pieces in runs for piece in pieces),
                               key=lambda w: w[1][0])
        tail = (start, p.slice(a, b))
        with self._locks_lock:
            if tail[0] >= self._tails.get(sid, (tail[0],))[0]:
                if len(tail[1]) < self.chunk_points * 3 // 4:  # appends will merge into it
                    # A copy: its arrays may be views of the whole request (or of a
                    # reused buffer), which the cache must not keep alive.
                    p = tail[1]
                    self._tails[sid] = (tail[0], chunks.Points(p.t.copy(), p.v.copy(),
                                                               p.ver.copy()))
                    self._tails.move_to_end(sid)
                    while len(self._tails) > _TAILS:
                        self._tails.popitem(last=False)
                else:
                    self._tails.pop(sid, None)
        return new_version

    def _append(self, old: chunks.Points, base: int, nt: np.ndarray, nv: np.ndarray,
                version: int) -> tuple[list, list, np.ndarray] | None:
        """Chunks and level-30 statistics of a batch (nt, nv) lying wholly after the
        stored points ``old`` of the chunk at ``base`` (or with ``old`` empty: a chunk
        of its own from ``base``): (chunk runs as ``_insert_sorted`` keeps them,
        statistics, dirty windows), the same as merging and re-cutting would give, or
        None where that path must decide.

        Only the points sharing a chunk with ``old`` are copied next to it; the chunks
        after it are views of the batch (an append of 172,800 points used to copy the
        batch's three columns into the merged arrays, then cut those).
        """
        target, shift = self.chunk_points, levels.LEVEL0
        n_old = len(old)
        wn = kernels.window_starts(nt, shift)   # where the batch's windows begin
        j = 0                                   # wn[j:]: the windows after the head
        if n_old:
            if n_old + len(nt) <= target:
                return None  # one small chunk: merging costs little
            # chunks.split cuts the merged points at the last window start within the
            # first ``target`` points; it must fall in the batch (the head keeps every
            # stored point), and not at the window the batch shares with ``old``.
            j = int(np.searchsorted(wn, target - n_old, "right")) - 1
            shared = (int(nt[0]) >> shift) == (int(old.t[-1]) >> shift)
            if j < (1 if shared else 0):
                return None
        k = int(wn[j]) if n_old else 0          # batch points going into the head
        runs, fresh = [], []
        wins = nt[wn] >> shift                  # every window the batch touches
        if k:
            ht = np.concatenate((old.t, nt[:k]))
            hv = np.concatenate((old.v, nv[:k]))
            hver = np.concatenate((old.ver, np.full(k, version, np.int64)))
            hs = kernels.window_starts(ht, shift)
            runs.append((chunks.Points(ht, hv, hver), [(base, 0, len(ht))]))
            fresh.append(st.Stats(*kernels.window_stats(ht, hv, hs, shift, wins[:j])))
        rt, rv = nt[k:], nv[k:]
        rs = wn[j:] - k if k else wn
        rest = chunks.Points(rt, rv, np.full(len(rt), version, np.int64))
        start = base if not n_old else chunks.floor_align(int(rt[0]))
        runs.append((rest, chunks.split(rt, start, target, rs)))
        fresh.append(st.Stats(*kernels.window_stats(rt, rv, rs, shift, wins[j:])))
        return runs, fresh, wins

    def _load_chunk(self, conn, sid: int, row: chunks.ChunkRow) -> chunks.Points:
        with self._locks_lock:
            cached = self._tails.get(sid)
        if cached is not None and cached[0] == row.start and len(cached[1]) == row.count \
                and int(cached[1].t[-1]) == row.last:
            return cached[1]
        return chunks.load(conn, sid, row.start)

    def _forget(self, sid: int) -> None:
        """Drop the write caches of a stream (after anything but a committed insert)."""
        self._blocks.drop(sid)
        with self._locks_lock:
            self._tails.pop(sid, None)

    def delete(self, uuid: uuidlib.UUID, start: int, end: int) -> int:
        """Delete points with start <= t < end; returns the new data version.

        Raises StreamNotFound, InvalidTimeRange."""
        if start < MINIMUM_TIME or end >= MAXIMUM_TIME:
            raise InvalidTimeRange("delete time range out of bounds")
        if start >= end:
            raise InvalidTimeRange("delete start time >= end time")
        with self._lock(uuid):
            sid, version = meta.stream_id(self.db, uuid)
            self._forget(sid)
            conn = self.db.conn()
            new_version = version + 1
            removes, writes = [], []
            for r in chunks.rows_between(conn, sid, start, end - 1):
                if r.last < start or r.first >= end:
                    continue
                if r.first >= start and r.last < end:
                    removes.append(r.start)
                    continue
                p = chunks.load(conn, sid, r.start)
                kept = p.take((p.t < start) | (p.t >= end))
                if len(kept) == 0:
                    removes.append(r.start)
                elif len(kept) < len(p):
                    writes.append((r.start, kept))
            # The two edge windows keep their points outside [start, end): recompute them
            # from what is stored there (untouched by this delete).
            a, b = start >> levels.LEVEL0, (end - 1) >> levels.LEVEL0
            head = chunks.read(conn, sid, a << levels.LEVEL0, start)
            tail = chunks.read(conn, sid, end, (b + 1) << levels.LEVEL0)
            edge = chunks.concat([head, tail])
            fresh = st.from_points(edge.t, edge.v, levels.LEVEL0)
            plan = levels.plan_update(conn, sid, np.unique(np.array([a, b], np.int64)), fresh,
                                      cleared=(a, b))
            with self.db.transaction() as c:
                c.executemany("DELETE FROM chunks WHERE stream=? AND start=?",
                              [(sid, s) for s in removes])
                c.executemany("UPDATE chunks SET first=?, last=?, count=?, data=?"
                              " WHERE stream=? AND start=?",
                              [(int(p.t[0]), int(p.t[-1]), len(p), chunks.encode(p), sid, s)
                               for s, p in writes])
                plan.apply(c, sid)
                c.execute('INSERT INTO changes(stream, version, start, "end", lossy)'
                          " VALUES (?,?,?,?,1)", (sid, new_version, start, end))
                c.execute("UPDATE streams SET version=? WHERE id=?", (new_version, sid))
            return new_version

    def flush(self, uuid: uuidlib.UUID) -> int:
        """Make the stream's inserts survive power loss (every write is committed when it
        returns already): returns, with the version, once every commit so far is on disk.

        Raises StreamNotFound, StorageFailure (the fsync failed)."""
        sid, version = meta.stream_id(self.db, uuid)
        # Its inserts up to the latest (deletes and metadata changes were durable when
        # they returned); a stream not written since the start waits for every commit.
        self.db.sync(self._commit_of.get(sid))
        return version

    def obliterate(self, uuid: uuidlib.UUID) -> None:
        """Delete the stream, its data and metadata; its uuid can never be used again."""
        with self._lock(uuid):
            sid, _ = meta.stream_id(self.db, uuid)
            self._forget(sid)
            with self.db.transaction() as c:
                for table in ("chunks", "stats", "changes"):
                    c.execute(f"DELETE FROM {table} WHERE stream=?", (sid,))
                c.execute("DELETE FROM streams WHERE id=?", (sid,))
                c.execute("INSERT OR IGNORE INTO obliterated(uuid) VALUES (?)", (uuid.bytes,))

    # ---- reads ----------------------------------------------------------------------
    def _version(self, conn, sid: int, latest: int, version: int, t0: int, t1: int
                 ) -> _Version:
        """How to answer for [t0, t1) at ``version`` (0 = latest)."""
        if version == 0 or version == latest:
            return _Version(latest, False, [])
        if version > latest:
            raise VersionNotAvailable(f"version {version} does not exist (latest {latest})")
        rows = conn.execute('SELECT start, "end", lossy FROM changes WHERE stream=?'
                            ' AND version>? AND start<? AND "end">?',
                            (sid, version, t1, t0)).fetchall()
        if any(r[2] for r in rows):
            raise VersionNotAvailable(
                f"version {version} is no longer available for this range: points were"
                " deleted or overwritten since")
        return _Version(version, bool(rows), [(r[0], r[1]) for r in rows])

    def _points(self, conn, sid: int, t0: int, t1: int, ver: _Version) -> chunks.Points:
        p = chunks.read(conn, sid, t0, t1)
        return p.take(p.ver <= ver.reported) if ver.filter else p

    @staticmethod
    def _check_range(start: int, end: int) -> None:
        if start < MINIMUM_TIME or end >= MAXIMUM_TIME:
            raise InvalidTimeRange("time range out of bounds")
        if start >= end:
            raise InvalidTimeRange("start time >= end time")

    def raw(self, uuid: uuidlib.UUID, start: int, end: int, version: int = 0
            ) -> tuple[np.ndarray, np.ndarray, int]:
        """(times, values, version) of the points with start <= t < end, sorted by time.

        Raises StreamNotFound, InvalidTimeRange, VersionNotAvailable."""
        self._check_range(start, end)
        with snapshot(self.db) as conn:
            sid, latest = meta.stream_id(self.db, uuid)
            ver = self._version(conn, sid, latest, version, start, end)
            p = self._points(conn, sid, start, end, ver)
        return p.t, p.v, ver.reported

    def raw_pieces(self, uuid: uuidlib.UUID, start: int, end: int, version: int = 0,
                   max_points: int = 1 << 20) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
        """:meth:`raw` in consecutive pieces of about ``max_points`` points (whole chunks),
        so that any range can be answered in bounded memory. Yields at least one piece.

        Each piece is read in its own snapshot at the version the first one reported, so
        the pieces fit together even when writes land meanwhile (where such a write
        deleted or overwrote points in a later piece's range, that piece raises
        VersionNotAvailable). Raises as :meth:`raw`, before the first piece for a bad
        request."""
        return self._raw_pieces(uuid, self.piece_bounds(uuid, start, end, max_points),
                                version)

    def piece_bounds(self, uuid: uuidlib.UUID, start: int, end: int,
                     max_points: int = 1 << 20) -> list[int]:
        """Times start = b0 < b1 < ... < bn = end cutting [start, end) at chunk starts
        into pieces of about ``max_points`` stored points. Raises StreamNotFound,
        InvalidTimeRange."""
        self._check_range(start, end)
        with snapshot(self.db) as conn:
            sid, _ = meta.stream_id(self.db, uuid)
            rows = conn.execute(
                "SELECT start, count FROM chunks WHERE stream=?1 AND start >= coalesce("
                "(SELECT max(start) FROM chunks WHERE stream=?1 AND start<=?2), ?2)"
                " AND start < ?3 ORDER BY start", (sid, start, end)).fetchall()
        bounds, acc = [start], 0
        for chunk_start, count in rows:
            if acc >= max_points and chunk_start > bounds[-1]:
                bounds.append(chunk_start)
                acc = 0
            acc += count
        bounds.append(end)
        return bounds

    def _raw_pieces(self, uuid: uuidlib.UUID, bounds: list[int], version: int
                    ) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
        for a, b in zip(bounds, bounds[1:]):
            t, v, version = self.raw(uuid, a, b, version)
            yield t, v, version

    def aligned_windows(self, uuid: uuidlib.UUID, start: int, end: int, pw: int,
                        version: int = 0) -> tuple[Windows, int]:
        """Statistics of the non-empty windows [s, s + 2^pw) with s a multiple of 2^pw and
        start & ~(2^pw-1) <= s < end & ~(2^pw-1); each reported at its start.

        A range that rounds to nothing gives no windows (v4 answered 413 there).
        Raises StreamNotFound, InvalidPointWidth, InvalidTimeRange, VersionNotAvailable."""
        if not 0 <= pw <= 63:
            raise InvalidPointWidth(f"point width {pw} is invalid (0 to 63)")
        if start < MINIMUM_TIME or end > MAXIMUM_TIME:
            raise InvalidTimeRange("time range out of bounds")
        if start >= end:
            raise InvalidTimeRange("start time >= end time")
        mask = (1 << pw) - 1
        s, e = start & ~mask, end & ~mask
        with snapshot(self.db) as conn:
            sid, latest = meta.stream_id(self.db, uuid)
            if s >= e:
                return _windows(st.empty(), np.empty(0, np.int64)), \
                    self._version(conn, sid, latest, version, start, end).reported
            ver = self._version(conn, sid, latest, version, s, e)
            level = levels.level_for(pw)
            if level is None:
                p = self._points(conn, sid, s, e, ver)
                res = st.from_points(p.t, p.v, pw)
            else:
                res = st.combine(levels.read(conn, sid, level, s >> level, e >> level),
                                 pw - level)
                if ver.filter:
                    res = self._refilter(conn, sid, res, pw, s, e, ver)
        return _windows(res, res.win << pw), ver.reported

    def aligned_pieces(self, uuid: uuidlib.UUID, start: int, end: int, pw: int,
                       version: int = 0, max_items: int = 1 << 18
                       ) -> Iterator[tuple[Windows, int]]:
        """:meth:`aligned_windows` in consecutive pieces, each computed from about
        ``max_items`` stored points or statistics records, so that any range is answered
        in bounded memory. The first piece is computed before this returns (errors
        surface here); later pieces are pinned to its version as in :meth:`raw_pieces`."""
        mask = (1 << pw) - 1 if 0 <= pw <= 63 else 0
        s, e = start & ~mask, end & ~mask
        bounds = [start, end]
        if 0 <= pw <= 63 and s < e and MINIMUM_TIME <= start < end <= MAXIMUM_TIME:
            level = levels.level_for(pw)
            with snapshot(self.db) as conn:
                sid, _ = meta.stream_id(self.db, uuid)
                if level is None:  # computed from points: cut at chunk starts
                    rows = conn.execute(
                        "SELECT start, count FROM chunks WHERE stream=?1 AND start >="
                        " coalesce((SELECT max(start) FROM chunks WHERE stream=?1 AND"
                        " start<=?2), ?2) AND start < ?3 ORDER BY start",
                        (sid, s, e)).fetchall()
                else:  # from statistics records: cut at block starts
                    shift = level + levels.BLOCK_BITS
                    rows = [(b << shift, 1 << levels.BLOCK_BITS) for (b,) in conn.execute(
                        "SELECT block FROM stats WHERE stream=? AND level=? AND block"
                        " BETWEEN ? AND ? ORDER BY block",
                        (sid, level, s >> shift, (e - 1) >> shift))]
            bounds, acc = [s], 0
            for cut, n in rows:  # chunk and block starts are multiples of 2^pw here
                if acc >= max_items and s < cut < e and cut > bounds[-1]:
                    bounds.append(cut)
                    acc = 0
                acc += n
            bounds.append(e)
        first = self.aligned_windows(uuid, bounds[0], bounds[1], pw, version)

        def pieces() -> Iterator[tuple[Windows, int]]:
            yield first
            for a, b in zip(bounds[1:], bounds[2:]):
                yield self.aligned_windows(uuid, a, b, pw, first[1])
        return pieces()

    def _refilter(self, conn, sid: int, res: st.Stats, pw: int, s: int, e: int,
                  ver: _Version) -> st.Stats:
        """Recompute, from raw points of the old version, the windows touched since."""
        for c0, c1 in ver.changed:
            w0, w1 = max(c0, s) >> pw, (min(c1, e) - 1) >> pw
            p = self._points(conn, sid, w0 << pw, (w1 + 1) << pw, ver)
            keep = (res.win < w0) | (res.win > w1)
            res = st.concat([res.take(keep), st.from_points(p.t, p.v, pw)])
            res = res.take(np.argsort(res.win, kind="stable"))
        return res

    def windows(self, uuid: uuidlib.UUID, start: int, end: int, width: int, depth: int = 0,
                version: int = 0) -> tuple[Windows, int]:
        """Statistics of the non-empty windows [start + k*width, start + (k+1)*width) that
        end at or before ``end`` (end is cut back to a whole number of windows).

        ``depth`` is accepted (0-63) and ignored: results are always exact.
        Raises StreamNotFound, InvalidPointWidth, InvalidTimeRange, VersionNotAvailable."""
        if width <= 0 or width > 1 << 63:
            raise InvalidPointWidth(f"window width {width} is invalid")
        if not 0 <= depth <= 63:
            raise InvalidPointWidth(f"window depth {depth} is invalid")
        self._check_range(start, end)
        end -= (end - start) % width
        with snapshot(self.db) as conn:
            sid, latest = meta.stream_id(self.db, uuid)
            ver = self._version(conn, sid, latest, version, start, max(end, start + 1))
            if end <= start:
                return _windows(st.empty(), np.empty(0, np.int64)), ver.reported
            level = None if ver.filter else self._windows_level(conn, sid, start, end, width)
            if level is None:
                p = self._points(conn, sid, start, end, ver)
                res = st.from_keyed((p.t - start) // width, p.v)
            else:
                res = self._windows_from_level(conn, sid, start, end, width, level)
        return _windows(res, start + res.win * width), ver.reported

    def _windows_level(self, conn, sid: int, start: int, end: int, width: int) -> int | None:
        """The statistics level to build windows of ``width`` from, or None when reading
        the raw points is cheaper.

        From level L a window costs its records (width / 2^L) plus, at each window
        boundary not aligned to 2^L, the chunk holding the record cut by it; raw reading
        costs every point. So levels pay off for windows of many chunks' worth of points.
        """
        fitting = [lv for lv in levels.LEVELS if width >> lv >= 16]
        if not fitting:
            return None
        top = levels.LEVELS[-1]
        points = int(levels.read(conn, sid, top, start >> top, ((end - 1) >> top) + 1)
                     .count.sum())
        boundaries = (end - start) // width + 1
        if points < 4 * boundaries * self.chunk_points:
            return None
        return fitting[-1]

    def _windows_from_level(self, conn, sid: int, start: int, end: int, width: int,
                            level: int) -> st.Stats:
        """Windows keyed k = (t - start) // width: level records lying inside one window,
        plus raw points of the records cut by a window boundary (or by start and end)."""
        size = 1 << level
        rec = levels.read(conn, sid, level, -(-start // size), end // size)
        first = ((rec.win << level) - start) // width
        last = (((rec.win + 1) << level) - 1 - start) // width
        inside = first == last
        parts = [st.group(rec.take(inside), first[inside])]
        for k in range((end - start) // width + 1):
            b = start + k * width
            if b % size == 0:
                continue  # no record is cut here
            lo, hi = max(b - b % size, start), min(b - b % size + size, end)
            if lo < hi:
                p = chunks.read(conn, sid, lo, hi)
                parts.append(st.from_keyed((p.t - start) // width, p.v))
        res = st.concat(parts)
        if not len(res):
            return res
        order = np.argsort(res.win, kind="stable")
        res = res.take(order)
        return st.group(res, res.win)

    def nearest(self, uuid: uuidlib.UUID, time: int, backward: bool = False,
                version: int = 0) -> tuple[int, float, int]:
        """(t, value, version) of the first point with t >= time, or with ``backward`` the
        last point with t < time. Raises NoSuchPoint, StreamNotFound, InvalidTimeRange."""
        if not MINIMUM_TIME <= time < MAXIMUM_TIME:
            raise InvalidTimeRange("nearest time out of range")
        with snapshot(self.db) as conn:
            sid, latest = meta.stream_id(self.db, uuid)
            lo, hi = (MINIMUM_TIME, time) if backward else (time, MAXIMUM_TIME)
            ver = self._version(conn, sid, latest, version, lo, hi)
            if backward:
                q = ("SELECT data FROM chunks WHERE stream=? AND start<? AND first<?"
                     " ORDER BY start DESC")
            else:
                q = ("SELECT data FROM chunks WHERE stream=? AND start>=coalesce((SELECT"
                     " max(start) FROM chunks WHERE stream=?1 AND start<=?2), ?2) AND last>=?"
                     " ORDER BY start")
            for (data,) in conn.execute(q, (sid, time, time)):
                p = chunks.decode(data)
                if ver.filter:
                    p = p.take(p.ver <= ver.reported)
                if backward:
                    i = int(np.searchsorted(p.t, time, "left")) - 1
                    if i >= 0:
                        return int(p.t[i]), float(p.v[i]), ver.reported
                else:
                    i = int(np.searchsorted(p.t, time, "left"))
                    if i < len(p):
                        return int(p.t[i]), float(p.v[i]), ver.reported
        raise NoSuchPoint("no such point")

    def changes(self, uuid: uuidlib.UUID, from_version: int, to_version: int = 0,
                resolution: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
        """(starts, ends, to_version): the sorted, merged time ranges written by versions
        in (from_version, to_version], widened to multiples of 2^resolution.

        ``to_version`` 0 means latest. Raises StreamNotFound, InvalidPointWidth,
        InvalidVersions."""
        if not 0 <= resolution <= 63:
            raise InvalidPointWidth(f"resolution {resolution} is invalid")
        with snapshot(self.db) as conn:
            sid, latest = meta.stream_id(self.db, uuid)
            to = latest if to_version == 0 else to_version
            if from_version > to:
                raise InvalidVersions("start version after end version")
            rows = np.array(conn.execute('SELECT start, "end" FROM changes WHERE stream=?'
                                         ' AND version>? AND version<=?',
                                         (sid, from_version, to)).fetchall(),
                            np.int64).reshape(-1, 2)
        mask = (1 << resolution) - 1
        a = rows[:, 0] & ~mask
        b = np.minimum(((rows[:, 1] - 1) | mask), MAXIMUM_TIME - 1) + 1
        order = np.argsort(a, kind="stable")
        a, b = a[order], b[order]
        if len(a) == 0:
            return a, b, to
        reach = np.maximum.accumulate(b)
        new = np.concatenate(([True], a[1:] > reach[:-1]))  # gap before this range
        idx = np.flatnonzero(new)
        return a[idx], np.maximum.reduceat(b, idx), to

    def count(self, uuid: uuidlib.UUID, version: int = 0) -> int:
        """Number of points in the stream (from the coarsest statistics level)."""
        # 2^60-wide windows tile [MINIMUM_TIME, MAXIMUM_TIME) exactly (the client uses 60).
        w, _ = self.aligned_windows(uuid, MINIMUM_TIME, MAXIMUM_TIME, 60,
                                    version)
        return int(w.count.sum())


def change_spans(kept: np.ndarray, wins: np.ndarray, shift: int, lossy: bool
                 ) -> list[tuple[int, int, int]]:
    """The change-log rows of one insert group: (start, end, lossy) per run of adjacent
    windows ``wins`` (sorted, distinct ``kept >> shift``), from its first kept point to
    just past its last.

    One row per run rather than one for the whole group keeps Changes tight, as the
    real BTrDB's tree walk is: a batch holding a record dated 2000 among 2015 data
    reports two small ranges, not fifteen years (distil recomputes what Changes reports).
    """
    cut = np.flatnonzero(np.diff(wins) > 1) + 1
    first, last = wins[np.r_[0, cut]], wins[np.r_[cut, len(wins)] - 1]
    lo = np.searchsorted(kept, first << shift, "left")
    hi = np.searchsorted(kept, (last + 1) << shift, "left")
    return [(int(kept[a]), int(kept[b - 1]) + 1, int(lossy)) for a, b in zip(lo, hi)]
