"""The SQLite queue's background WAL checkpoints (:class:`Checkpointer`)."""
from __future__ import annotations

import sqlite3
import threading

from .base import log

CHECKPOINT_S = 0.1       # how often the background thread copies the WAL into the file
WAL_RESTART = 128 << 20  # WAL size at which the writer resets it (see Checkpointer)


class Checkpointer:
    """Copies the WAL into the database file from a thread of its own, every
    ``CHECKPOINT_S`` seconds, with its own connection.

    PASSIVE checkpoints never take the write lock, so commits go on meanwhile; when one
    has copied everything, the next commit starts the WAL over (and ``journal_size_limit``
    trims the file). Measured with the receiver: reply p99 17 ms instead of 99 ms, and
    290 instead of 234 files/s at 10 devices. Each writing process runs one, so the WAL
    stays short whichever of receiver, sync2q or upmu-adm is writing.
    """

    def __init__(self, path: str, page_size: int) -> None:
        self._path = path
        self._page_size = page_size
        #: Set when the WAL outgrew WAL_RESTART: under non-stop writes a passive
        #: checkpoint never catches up, and the WAL only starts over once one has, so the
        #: writer then runs one RESTART checkpoint itself between two transactions (most
        #: frames are copied already, so it is short; from another thread it would starve).
        self.restart_wanted = threading.Event()
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
                    if frames * self._page_size > WAL_RESTART:
                        self.restart_wanted.set()
                except sqlite3.Error as exc:   # busy or I/O error: try again next time
                    log.debug("queue %s: checkpoint failed: %s", self._path, exc)
        finally:
            db.close()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
