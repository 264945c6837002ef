"""The SQLite database under the data directory: schema, pragmas, connections.

One file, ``<data>/btrdb.sqlite3``, in WAL mode. Every insert, delete and metadata change is
one transaction, committed before the call returns, so it survives a crash or SIGKILL of
the server (the COMMIT has written its WAL frames to the page cache). Surviving power loss
as well needs an fsync of the WAL that began after the COMMIT (``durable=True``, the
default, makes those fsyncs; ``durable=False`` is for tests and scratch data):

- a durable transaction (deletes, metadata, inserts with BTrDB's ``sync`` flag) returns
  only after such an fsync;
- an insert without ``sync`` (what the official client sends) returns after its COMMIT;
  :meth:`Db.sync` (BTrDB's Flush) returns once every commit so far is on disk, and a
  background thread makes sure of that within SYNC_DELAY_SECONDS of any commit anyway.
  The real server keeps such inserts in memory until a flush; here a SIGKILL cannot lose
  them and a power loss at most the last SYNC_DELAY_SECONDS of them.

The fsync runs after the write lock is released (SQLite itself runs with
``synchronous=NORMAL``, which in WAL mode syncs only at checkpoints), and concurrent
writers share it (group commit, :meth:`Db._make_durable`). Inside the lock SQLite's own
fsync (``synchronous=FULL``) kept every other writer waiting for the disk and for this
thread to get the GIL back afterwards. A reader may see a commit before its fsync ends
(the writer has not been answered yet); a power loss then takes it back, never anything
already acknowledged as durable.

Connections are per thread (sqlite3 objects must not be used by two threads at once);
writes are serialised by :attr:`Db.write_lock` so that transactions never wait on SQLite's
busy handler.

Checkpoints (copying the WAL into the main file, with an fsync of it) run on a background
thread instead of inside whichever commit crosses SQLite's threshold: measured, that
halves the wall time of an insert on this appliance's disk. The WAL is checkpointed
once it holds CHECKPOINT_BYTES, and truncated when writes pause; a bulk load that
outruns the checkpointer is held back briefly at WAL_LIMIT_BYTES.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from .errors import StorageFailure, storage_error

FILENAME = "btrdb.sqlite3"
CHECKPOINT_BYTES = 32 << 20
WAL_LIMIT_BYTES = 512 << 20
IDLE_SECONDS = 1.0  # no commit for this long: checkpoint and truncate the WAL
#: A commit nobody asked to be durable is fsynced within about this long (the power-loss
#: exposure of inserts that are never flushed); the wait lets a burst share one fsync.
SYNC_DELAY_SECONDS = 1.0

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
        # Durable commits fsync the WAL themselves, after the write lock is released
        # (see :meth:`_make_durable`); SQLite itself runs with synchronous=NORMAL, which
        # in WAL mode syncs only at checkpoints.
        self.durable = durable
        self.synchronous = "NORMAL"
        self.write_lock = threading.Lock()
        self._sync = threading.Condition(threading.Lock())
        self._commits = 0        # commits whose WAL frames have been written
        self._synced = 0         # commits known to be on disk
        self._syncing = False    # a thread is running an fsync of the WAL
        self._sync_error: OSError | None = None
        self._wal_fd: int | None = None  # see _fsync_wal
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._closed = False
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.write_lock:
            self.conn().executescript(SCHEMA)
        if durable:
            self._fsync_wal()  # the schema, and the WAL file's directory entry
        self._committed = threading.Event()
        self._unsynced = threading.Event()  # a commit was not made durable by its writer
        self._stop = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, daemon=True,
                                              name="tsdb-checkpoint")
        self._checkpointer.start()
        self._syncer = threading.Thread(target=self._sync_loop, daemon=True,
                                        name="tsdb-sync")
        if durable:
            self._syncer.start()

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
        log = logging.getLogger("tsdb.db")
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
    def transaction(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction, committed on exit (rolled back on an exception).

        With ``durable`` (and a durable Db) the exit waits for an fsync that began after
        the COMMIT; without, it returns after the COMMIT and the background thread fsyncs
        within SYNC_DELAY_SECONDS (or :meth:`sync` does, sooner).

        Raises:
            ResourceDepleted: the disk is full (nothing of the transaction is kept).
            StorageFailure: an I/O error or a damaged file.
        """
        c = self.conn()
        commit = 0
        with self.write_lock:
            if self._sync_error is not None:
                raise StorageFailure(f"writes refused after a failed fsync of the WAL: "
                                     f"{self._sync_error}")
            try:
                c.execute("BEGIN IMMEDIATE")
                try:
                    yield c
                    c.execute("COMMIT")
                    with self._sync:
                        self._commits += 1
                        commit = self._commits
                    self._local.commit = commit
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
        if self.durable:
            if durable:
                self._make_durable(commit)
            else:
                self._unsynced.set()

    def last_commit(self) -> int:
        """The number of the latest commit made by this thread (0: none yet); pass it to
        :meth:`sync` to wait for that commit only."""
        return getattr(self._local, "commit", 0)

    def sync(self, upto: int | None = None) -> None:
        """Return once every commit made so far (with ``upto``: commits up to that
        number, from :meth:`last_commit`) is on disk (BTrDB's Flush).

        Raises:
            StorageFailure: the fsync failed, now or in the background since the last
                successful one (the durability of recent commits is unknown).
        """
        if not self.durable:
            return
        if self._sync_error is not None:
            raise StorageFailure(f"fsync of the WAL failed: {self._sync_error}")
        with self._sync:
            target = self._commits if upto is None else min(upto, self._commits)
        self._make_durable(target)

    def _sync_loop(self) -> None:
        log = logging.getLogger("tsdb.db")
        while True:
            self._unsynced.wait()
            if self._stop.wait(SYNC_DELAY_SECONDS):
                break  # close() syncs what is left
            self._unsynced.clear()  # a commit from now on sets it again
            try:
                self.sync()
            except StorageFailure as exc:
                log.error("%s; writes are refused until the server is restarted", exc)
                return

    def _make_durable(self, commit: int) -> None:
        """Return once commit number ``commit`` is on disk (group commit of the fsync).

        The COMMIT has written its WAL frames (to the page cache: a SIGKILL of the server
        can no longer lose them); an fsync of the WAL started after that makes them
        survive power loss too. Threads that commit while an fsync runs wait for it and
        then share the next one, so concurrent inserts need fewer fsyncs than commits,
        and none runs under the write lock. Each caller still returns only after an
        fsync that began after its own commit. After a failed fsync the durability of
        recent commits is unknown: this and every later write raises StorageFailure.
        """
        with self._sync:
            while self._synced < commit:
                if self._sync_error is not None:
                    raise StorageFailure(f"fsync of the WAL failed: {self._sync_error}")
                if self._syncing:
                    self._sync.wait()
                    continue
                self._syncing = True
                target = self._commits  # every commit counted here has written its frames
                self._sync.release()
                try:
                    self._fsync_wal()
                except OSError as exc:
                    error = exc
                else:
                    error = None
                finally:
                    self._sync.acquire()
                    self._syncing = False
                    self._sync.notify_all()
                if error is not None:
                    self._sync_error = error
                    raise StorageFailure(f"fsync of the WAL failed: {error}") from error
                self._synced = max(self._synced, target)

    def _fsync_wal(self) -> None:
        """fdatasync the WAL file.

        The descriptor is opened once (with an fsync of the directory, making the WAL's
        name durable): SQLite deletes the WAL only when the last connection closes, and
        this object's connections stay open until :meth:`close` (a checkpoint truncates
        the file, it does not replace it)."""
        if self._wal_fd is None:
            fd = os.open(self.wal_path, os.O_RDONLY | os.O_CLOEXEC)
            dfd = os.open(self.directory, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
            self._wal_fd = fd
        os.fdatasync(self._wal_fd)

    def close(self) -> None:
        """Close every connection (checkpointing the WAL into the main file)."""
        self._stop.set()
        self._committed.set()
        self._unsynced.set()
        for thread in (self._checkpointer, self._syncer):
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join()
        if self.durable and not self._closed:
            try:
                self.sync()  # commits not yet made durable (SQLite's close may not sync)
            except StorageFailure as exc:
                logging.getLogger("tsdb.db").error("at close: %s", exc)
        with self._all_lock:
            self._closed = True
            for c in self._all:
                c.close()
            self._all.clear()
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None
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
