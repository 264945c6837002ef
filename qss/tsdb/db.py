"""The SQLite database under the data directory: schema, pragmas, connections.

One file, ``<data>/btrdb.sqlite3``, in WAL mode. Every insert, delete and metadata change is
one transaction, committed before the call returns: with ``synchronous=FULL`` (the default)
it survives power loss, with ``NORMAL`` it survives a crash or SIGKILL of the server.

Connections are per thread (sqlite3 objects must not be used by two threads at once);
writes are serialised by :attr:`Db.write_lock` so that transactions never wait on SQLite's
busy handler.

Checkpoints (copying the WAL into the main file, with an fsync of it) run on a background
thread instead of inside whichever commit crosses SQLite's threshold: measured, that
halves the wall time of an insert on this appliance's disk. Durability is unchanged:
each commit still fsyncs the WAL before it returns. The WAL is checkpointed once it
holds CHECKPOINT_BYTES, and truncated when writes pause; a bulk load that outruns the
checkpointer is held back briefly at WAL_LIMIT_BYTES.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from .errors import storage_error

FILENAME = "btrdb.sqlite3"
CHECKPOINT_BYTES = 32 << 20
WAL_LIMIT_BYTES = 512 << 20
IDLE_SECONDS = 1.0  # no commit for this long: checkpoint and truncate the WAL

SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    id INTEGER PRIMARY KEY,
    uuid BLOB NOT NULL UNIQUE,
    collection TEXT NOT NULL,
    tags TEXT NOT NULL,             -- JSON object: key -> string
    annotations TEXT NOT NULL,      -- JSON object: key -> string or null
    property_version INTEGER NOT NULL,
    version INTEGER NOT NULL        -- data version (BTrDB versionMajor)
);
CREATE INDEX IF NOT EXISTS streams_collection ON streams(collection);
CREATE TABLE IF NOT EXISTS obliterated (uuid BLOB PRIMARY KEY) WITHOUT ROWID;
-- Raw points. A chunk covers [start, next chunk's start) of its stream; start is a
-- multiple of 2^30 ns so that no finest-level statistics window straddles two chunks.
CREATE TABLE IF NOT EXISTS chunks (
    stream INTEGER NOT NULL,
    start INTEGER NOT NULL,
    first INTEGER NOT NULL,         -- first and last point times, for deletes and nearest
    last INTEGER NOT NULL,
    count INTEGER NOT NULL,
    data BLOB NOT NULL,             -- codec columns: time, value, version
    PRIMARY KEY (stream, start)
);
-- Statistics: level L holds windows of 2^L ns; a row holds up to 2^BLOCK_BITS of them.
CREATE TABLE IF NOT EXISTS stats (
    stream INTEGER NOT NULL,
    level INTEGER NOT NULL,
    block INTEGER NOT NULL,
    data BLOB NOT NULL,             -- codec columns: window offset, count, min, mean, max, m2
    PRIMARY KEY (stream, level, block)
);
-- The change log behind Changes and reads at old versions: what each version touched.
CREATE TABLE IF NOT EXISTS changes (
    stream INTEGER NOT NULL,
    version INTEGER NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,         -- exclusive
    lossy INTEGER NOT NULL          -- 1 when older points were deleted or overwritten
);
CREATE INDEX IF NOT EXISTS changes_version ON changes(stream, version);
"""


class Db:
    """The engine's SQLite file; hands out one connection per thread."""

    def __init__(self, directory: str | os.PathLike, *, durable: bool = True,
                 max_bytes: int | None = None):
        self.directory = Path(directory)
        # A cap on the database file (SQLite's max_page_count): writes beyond it fail as
        # on a full disk. For tests of that path, and for operators who want a cap.
        self.max_bytes = max_bytes
        self.path = self.directory / FILENAME
        self.synchronous = "FULL" if durable else "NORMAL"
        self.write_lock = threading.Lock()
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._closed = False
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.write_lock:
            self.conn().executescript(SCHEMA)
        self._committed = threading.Event()
        self._stop = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, daemon=True,
                                              name="tsdb-checkpoint")
        self._checkpointer.start()

    @property
    def wal_path(self) -> Path:
        return self.path.with_name(self.path.name + "-wal")

    def checkpoint(self, truncate: bool = False) -> None:
        """Copy the WAL into the main file without holding up writers; with ``truncate``
        (holding writers back meanwhile) also empty the WAL file."""
        c = self.conn()
        if truncate:
            with self.write_lock:
                c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            c.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _checkpoint_loop(self) -> None:
        log = logging.getLogger("qss.tsdb.db")
        last_error = None
        # Never wait long for readers while holding writers back (a TRUNCATE checkpoint
        # waits for them); an unfinished checkpoint is simply tried again later.
        self.conn().execute("PRAGMA busy_timeout=200")
        while not self._stop.is_set():
            busy = self._committed.wait(IDLE_SECONDS)
            self._committed.clear()
            if self._stop.is_set():
                break
            try:
                size = self.wal_path.stat().st_size
                if size >= WAL_LIMIT_BYTES or (not busy and size > 0):
                    self.checkpoint(truncate=True)
                elif size >= CHECKPOINT_BYTES:
                    self.checkpoint()
                last_error = None
            except FileNotFoundError:
                continue
            except (sqlite3.Error, OSError) as exc:  # a full disk, say: retry later
                if str(exc) != last_error:
                    log.warning("checkpoint of %s failed (will retry): %s", self.path, exc)
                last_error = str(exc)

    def conn(self) -> sqlite3.Connection:
        """This thread's connection (autocommit; use :meth:`transaction` to write)."""
        c = getattr(self._local, "conn", None)
        if c is None:
            if self._closed:
                raise RuntimeError("store is closed")
            c = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                timeout=30.0)
            c.execute("PRAGMA journal_mode=WAL")
            c.execute(f"PRAGMA synchronous={self.synchronous}")
            c.execute("PRAGMA cache_size=-65536")  # 64 MiB of pages per connection
            c.execute("PRAGMA wal_autocheckpoint=0")  # the checkpoint thread does it
            c.execute(f"PRAGMA journal_size_limit={CHECKPOINT_BYTES}")
            if self.max_bytes is not None:
                page = c.execute("PRAGMA page_size").fetchone()[0]
                c.execute(f"PRAGMA max_page_count={max(1, self.max_bytes // page)}")
            self._local.conn = c
            with self._all_lock:
                self._all.append(c)
        return c

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, committed on exit (rolled back on an exception).

        Raises:
            ResourceDepleted: the disk is full (nothing of the transaction is kept).
            StorageFailure: an I/O error or a damaged file.
        """
        c = self.conn()
        with self.write_lock:
            try:
                c.execute("BEGIN IMMEDIATE")
                try:
                    yield c
                    c.execute("COMMIT")
                    self._committed.set()
                except BaseException:
                    # SQLite may already have rolled back (e.g. SQLITE_FULL on COMMIT).
                    if c.in_transaction:
                        try:
                            c.execute("ROLLBACK")
                        except sqlite3.Error:
                            pass  # the original error says more
                    raise
            except sqlite3.Error as exc:
                mapped = storage_error(exc)
                if mapped is None:
                    raise
                raise mapped from exc

    def close(self) -> None:
        """Close every connection (checkpointing the WAL into the main file)."""
        self._stop.set()
        self._committed.set()
        if self._checkpointer.is_alive() and self._checkpointer is not threading.current_thread():
            self._checkpointer.join()
        with self._all_lock:
            self._closed = True
            for c in self._all:
                c.close()
            self._all.clear()
        self._local = threading.local()


@contextlib.contextmanager
def snapshot(db: Db) -> Iterator[sqlite3.Connection]:
    """A read transaction: every query inside sees the same committed state."""
    c = db.conn()
    c.execute("BEGIN")
    try:
        yield c
    finally:
        c.execute("COMMIT")
