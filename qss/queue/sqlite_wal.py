"""The SQLite queue's WAL: background checkpoints (:class:`Checkpointer`) and the fsync
that makes puts durable, shared and outside the write lock (:class:`WalSync`)."""
from __future__ import annotations

import errno
import os
import sqlite3
import threading

from .base import log

CHECKPOINT_S = 0.1       # how often the background thread copies the WAL into the file
WAL_RESTART = 128 << 20  # WAL size at which the checkpointer restarts it (see Checkpointer)


class Checkpointer:
    """Copies the WAL into the database file from a thread of its own, every
    ``CHECKPOINT_S`` seconds, with its own connection.

    PASSIVE checkpoints never take the write lock, so commits go on meanwhile; when one
    has copied everything, the next commit starts the WAL over (and ``journal_size_limit``
    trims the file). Measured with the receiver: reply p99 17 ms instead of 99 ms, and
    290 instead of 234 files/s at 10 devices. Each writing process runs one, so the WAL
    stays short whichever of receiver, sync2q or upmu-adm is writing.

    Under non-stop writes a passive checkpoint never catches up (frames are added while
    it copies), and the WAL only starts over once one has. So once the WAL outgrows
    ``WAL_RESTART`` this thread takes ``lock`` (the queue's write lock: this process's
    writers wait, briefly) right after a passive pass and runs a RESTART checkpoint,
    which has only the frames added during that pass left to copy. The writers used to
    run that RESTART themselves between two transactions: it then also waited, in
    SQLite's busy handler, for this thread's passive pass to end (measured under the
    receiver benchmark at 10 devices: 7 stalls of 70 to 90 ms per 1,000 files, a third
    of the committer's time).
    """

    def __init__(self, path: str, page_size: int, lock: threading.RLock) -> None:
        self._path = path
        self._page_size = page_size
        self._lock = lock
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queue-checkpointer",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            db = sqlite3.connect(self._path, timeout=0, isolation_level=None)
        except sqlite3.Error as exc:
            log.warning("queue %s: no background checkpoints: %s", self._path, exc)
            return
        try:
            while not self._stopping.wait(CHECKPOINT_S):
                try:
                    _, frames, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    # A timeout: close() holds the lock while it waits for this thread.
                    if frames * self._page_size > WAL_RESTART and self._lock.acquire(
                            timeout=CHECKPOINT_S):
                        try:
                            db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                        finally:
                            self._lock.release()
                except sqlite3.Error as exc:   # busy or I/O error: try again next time
                    log.debug("queue %s: checkpoint failed: %s", self._path, exc)
        finally:
            db.close()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()


class WalSync:
    """Group commit of the WAL's fsync, run after the write lock is released.

    A put's transaction commits with ``synchronous=NORMAL`` (its WAL frames are written
    to the page cache: a SIGKILL can no longer lose them), counts itself with
    :meth:`committed`, releases the write lock, and then waits in :meth:`wait` for an
    fdatasync of the WAL that began after its commit (power loss cannot lose it either).
    The next transaction writes its frames while this fsync runs, and threads that
    commit meanwhile share the next fsync; with SQLite's own ``synchronous=FULL`` the
    fsync ran inside COMMIT, under the lock, and every other writer waited for the disk
    (the embedded BTrDB does the same, :mod:`tsdb.db`). After a failed fsync the
    durability of recent commits is unknown (Linux marks the pages clean anyway): this and
    every later :meth:`wait` raises until the process restarts.
    """

    def __init__(self, wal_path: str) -> None:
        """Open the WAL ``wal_path`` (SQLite's own name for it: see :func:`wal_path`)
        and fsync its directory, so that its name is durable too.

        Opened once: SQLite deletes the WAL only when the last connection closes, and the
        queue's stays open until :meth:`close`; a checkpoint truncates the file, it never
        replaces it.

        Raises:
            OSError: it cannot be opened, or the file opened is not the one at
                ``wal_path`` (it was replaced meanwhile).
        """
        self.wal_path = wal_path
        self._cond = threading.Condition(threading.Lock())
        self._commits = 0        # commits whose WAL frames have been written
        self._synced = 0         # commits known to be on disk
        self._syncing = False    # a thread is running an fsync
        self._error: OSError | None = None
        fd = os.open(wal_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            opened, named = os.fstat(fd), os.stat(wal_path)
            if (opened.st_dev, opened.st_ino) != (named.st_dev, named.st_ino):
                raise OSError(errno.ESTALE, "the file opened is not the WAL SQLite uses "
                                            "(it was replaced while the queue opened)")
            directory = os.open(os.path.dirname(wal_path), os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except BaseException:
            os.close(fd)
            raise
        self._fd: int | None = fd

    def committed(self) -> int:
        """Count a commit whose frames are written (call it right after COMMIT, under
        the write lock); return its number for :meth:`wait`."""
        with self._cond:
            self._commits += 1
            return self._commits

    def wait(self, commit: int) -> None:
        """Return once commit number ``commit`` is on disk.

        Raises:
            OSError: this fsync, or an earlier one, failed.
        """
        with self._cond:
            while self._synced < commit:
                if self._error is not None:
                    raise self._error
                if self._syncing:
                    self._cond.wait()
                    continue
                self._syncing = True
                target = self._commits   # every commit counted so far has written its frames
                self._cond.release()
                error = None
                try:
                    self._fsync()
                except OSError as exc:
                    error = exc
                finally:
                    self._cond.acquire()
                    self._syncing = False
                    self._cond.notify_all()
                if error is not None:
                    self._error = error
                    raise error
                self._synced = max(self._synced, target)

    def _fsync(self) -> None:
        # Only the thread that set _syncing gets here, and close() waits for it to end:
        # the descriptor read under the lock stays open (never another file's number).
        with self._cond:
            fd = self._fd
        if fd is None:
            raise OSError(errno.EBADF, "the queue is closed")
        os.fdatasync(fd)

    @property
    def closed(self) -> bool:
        """:meth:`close` has been called."""
        with self._cond:
            return self._fd is None

    def close(self) -> None:
        """Close the WAL's descriptor (before the queue's connection), once a running
        fsync has ended; a later :meth:`wait` raises OSError."""
        with self._cond:
            while self._syncing:
                self._cond.wait()
            if self._error is None:
                self._error = OSError(errno.EBADF, "the queue is closed")
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def wal_path(db: sqlite3.Connection) -> str:
    """The WAL of ``db``'s main database, named as SQLite names it: after the file it
    opened, with symlinks resolved (not after the name it was given)."""
    return db.execute("PRAGMA database_list").fetchone()[2] + "-wal"
