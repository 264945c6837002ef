"""Quarantine: queued files sync2q will not try again until an operator says so.

A file with no usable record (empty, garbage, every record damaged or dated outside the
plausible window; :attr:`qss.dat.DatFile.error`), or one BTrDB refuses for good, is
quarantined: recorded here with its reason, logged, and skipped. It stays in the queue,
unsynced, so it is never lost (``clean_synced`` deletes synced files only) and still
counts as waiting in ``upmu-adm list``. ``qss-sync2q --quarantined`` lists the files
and reasons; ``qss-sync2q --requeue KEY`` releases them (a running sync2q tries them again
within a second).

A quarantined file is identified by (serial, name, size, time received): when the device
sends the file again with different bytes the queue replaces it, its time received
changes, and the new contents get a fresh try.

The registry is a small SQLite file beside the queue (``sync2q-quarantine.db`` in the
queue's directory, or in ``[paths] srv`` for a MongoDB queue), shared by the running
worker and the command line. It is sync2q's own until the queue offers quarantine itself.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import sqlite3
import threading

from qss.queue import QueuedFile

FILENAME = "sync2q-quarantine.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS quarantine (
    serial TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    time_received TEXT NOT NULL,
    reason TEXT NOT NULL,
    since TEXT NOT NULL,
    PRIMARY KEY (serial, name))
"""


class QuarantineError(Exception):
    """The registry cannot be opened or written; the message names it and why."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One quarantined file."""

    serial: str
    name: str
    size: int
    time_received: str
    reason: str
    since: str


def _key(file: QueuedFile) -> tuple[str, str, int, str]:
    return (file.serial, file.name, file.size, file.time_received.isoformat())


class Quarantine:
    """The registry in ``path`` (created if missing; its directory must exist).

    Raises:
        QuarantineError: the file cannot be opened or is not a registry.
    """

    def __init__(self, path: str, *, clock=lambda: dt.datetime.now(dt.timezone.utc)) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise QuarantineError(f"quarantine {path}: directory does not exist")
        try:
            self._db = sqlite3.connect(path, timeout=30, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise QuarantineError(f"quarantine {path}: cannot open: {exc}") from None
        self._keys: set[tuple[str, str, int, str]] = set()
        self._seen_version: int | None = None
        self.refresh()

    @classmethod
    def beside(cls, directory: str) -> Quarantine:
        """The registry in ``directory`` (the queue's)."""
        return cls(os.path.join(directory, FILENAME))

    def refresh(self) -> bool:
        """Reload the keys if another process changed the registry; True if it did."""
        with self._lock:
            try:
                version = self._db.execute("PRAGMA data_version").fetchone()[0]
                if version == self._seen_version:
                    return False
                rows = self._db.execute(
                    "SELECT serial, name, size, time_received FROM quarantine").fetchall()
            except sqlite3.Error as exc:
                raise QuarantineError(f"quarantine {self.path}: cannot read: {exc}") from None
            changed = self._seen_version is not None
            self._seen_version = version
            self._keys = {tuple(r) for r in rows}
            return changed

    def holds(self, file: QueuedFile) -> bool:
        """True when this very version of the file is quarantined."""
        return _key(file) in self._keys

    def add(self, file: QueuedFile, reason: str) -> None:
        """Quarantine a file with its reason (replacing an older entry of the same name)."""
        key = _key(file)
        with self._lock:
            try:
                self._db.execute("INSERT OR REPLACE INTO quarantine VALUES (?, ?, ?, ?, ?, ?)",
                                 (*key, reason, self._clock().isoformat(timespec="seconds")))
            except sqlite3.Error as exc:
                raise QuarantineError(f"quarantine {self.path}: cannot record file "
                                      f"{file.name!r} of uPMU {file.serial}: {exc}") from None
            self._keys.add(key)

    def entries(self, serial: str | None = None) -> list[Entry]:
        """Quarantined files (of one serial, or all), by serial and name."""
        sql = "SELECT * FROM quarantine"
        params: tuple = ()
        if serial is not None:
            sql += " WHERE serial = ? COLLATE NOCASE"
            params = (serial,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY serial, name", params).fetchall()
        return [Entry(*r) for r in rows]

    def release(self, key: str) -> list[Entry]:
        """Release files for another try: ``all``, a serial (all its files), or a file
        name (its full device path, or just the last element). Returns what was released."""
        key = key.strip()
        if key == "all":
            where, params = "1", ()
        else:
            where = ("serial = ? COLLATE NOCASE OR name = ? OR name LIKE ? ESCAPE '\\'")
            leaf = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params = (key, key, f"%/{leaf}")
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                rows = self._db.execute(f"SELECT * FROM quarantine WHERE {where}",
                                        params).fetchall()
                self._db.execute(f"DELETE FROM quarantine WHERE {where}", params)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise QuarantineError(f"quarantine {self.path}: cannot release: {exc}"
                                      ) from None
        for r in rows:
            self._keys.discard(tuple(r[:4]))
        return [Entry(*r) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
