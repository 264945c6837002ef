"""The SQLite database under the data directory: schema, pragmas, connections.

One file, ``<data>/btrdb.sqlite3``, in WAL mode. Every insert, delete and metadata change is
one transaction, committed before the call returns: with ``synchronous=FULL`` (the default)
it survives power loss, with ``NORMAL`` it survives a crash or SIGKILL of the server.

Connections are per thread (sqlite3 objects must not be used by two threads at once);
writes are serialised by :attr:`Db.write_lock` so that transactions never wait on SQLite's
busy handler.
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

FILENAME = "btrdb.sqlite3"

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

    def __init__(self, directory: str | os.PathLike, *, durable: bool = True):
        self.directory = Path(directory)
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
            self._local.conn = c
            with self._all_lock:
                self._all.append(c)
        return c

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, committed on exit (rolled back on an exception)."""
        c = self.conn()
        with self.write_lock:
            c.execute("BEGIN IMMEDIATE")
            try:
                yield c
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")

    def close(self) -> None:
        """Close every connection (checkpointing the WAL into the main file)."""
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
