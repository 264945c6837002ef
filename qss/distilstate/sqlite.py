"""The engine's state in SQLite (``distil.db`` beside the queue): one transaction per
update, WAL, synchronous FULL."""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time

from .base import Backlog, InstanceState, Range, StateError, StateStore, Status

FILENAME = "distil.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    name TEXT PRIMARY KEY,
    signature TEXT NOT NULL,
    consumed TEXT NOT NULL,            -- JSON {input uuid: version}
    pending TEXT NOT NULL              -- JSON [[start, end], ...], sorted and disjoint
);
CREATE TABLE IF NOT EXISTS status (
    name TEXT PRIMARY KEY,
    ok_at REAL,                         -- last chunk done or nothing owed (unix time)
    error TEXT,                         -- the last failure, cleared by a success
    error_at REAL,
    failures INTEGER NOT NULL DEFAULT 0,
    points INTEGER NOT NULL DEFAULT 0,  -- output points written, all time
    active INTEGER NOT NULL DEFAULT 1,
    owed_points INTEGER NOT NULL DEFAULT 0,
    lag_ns INTEGER NOT NULL DEFAULT 0,
    oldest_ns INTEGER,
    measured_at REAL
);
-- Ranges an operator asked to recompute (qss-distil run, reset), taken by the engine.
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL
);
"""
# Columns added since the first release of the schema (an older distil.db gets them).
_ADDED = {"active": "INTEGER NOT NULL DEFAULT 1", "owed_points": "INTEGER NOT NULL DEFAULT 0",
          "lag_ns": "INTEGER NOT NULL DEFAULT 0", "oldest_ns": "INTEGER",
          "measured_at": "REAL"}
_STATUS = ("name, ok_at, error, error_at, failures, points, active, owed_points, lag_ns, "
           "oldest_ns, measured_at")


def _status(row) -> Status:
    return Status(*row[:6], active=bool(row[6]),
                  backlog=Backlog(row[7], row[8], row[9], row[10]))


class SqliteState(StateStore):
    """The state database at ``path``; ``readonly`` never creates or changes it (the
    status report)."""

    def __init__(self, path: str, readonly: bool = False) -> None:
        self.path = self.location = path
        self._lock = threading.Lock()
        try:
            if readonly:
                self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                             check_same_thread=False, timeout=5)
                return
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                         timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)
            have = {r[1] for r in self._conn.execute("PRAGMA table_info(status)")}
            for column, decl in _ADDED.items():
                if column not in have:
                    self._conn.execute(f"ALTER TABLE status ADD COLUMN {column} {decl}")
        except sqlite3.Error as exc:
            raise StateError(f"{path}: cannot open the distil state database: {exc}") from None

    @classmethod
    def beside(cls, directory: str) -> SqliteState:
        """The store ``distil.db`` in ``directory`` (the queue's folder)."""
        return cls(os.path.join(directory, FILENAME))

    def close(self) -> None:
        self._conn.close()

    def names(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._conn.execute("SELECT name FROM instances ORDER BY name")]

    def load(self, name: str) -> InstanceState:
        with self._lock:
            row = self._conn.execute("SELECT signature, consumed, pending FROM instances"
                                     " WHERE name=?", (name,)).fetchone()
        if row is None:
            return InstanceState()
        return InstanceState(row[0], json.loads(row[1]), [tuple(r) for r in json.loads(row[2])])

    def save(self, name: str, state: InstanceState, taken: tuple[int, ...] = ()) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    "INSERT OR REPLACE INTO instances(name, signature, consumed, pending)"
                    " VALUES (?,?,?,?)",
                    (name, state.signature, json.dumps(state.consumed, sort_keys=True),
                     json.dumps([list(r) for r in state.pending])))
                self._conn.executemany("DELETE FROM requests WHERE id=?",
                                       [(i,) for i in taken])
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def request(self, name: str, r: Range) -> None:
        with self._lock:
            self._conn.execute('INSERT INTO requests(name, start, "end") VALUES (?,?,?)',
                               (name, int(r[0]), int(r[1])))

    def requests(self, name: str) -> list[tuple[int, Range]]:
        with self._lock:
            rows = self._conn.execute('SELECT id, start, "end" FROM requests WHERE name=?'
                                      " ORDER BY id", (name,)).fetchall()
        return [(i, (a, b)) for i, a, b in rows]

    def forget(self, name: str) -> bool:
        with self._lock:
            cur = self._conn.execute("DELETE FROM instances WHERE name=?", (name,))
            self._conn.execute("DELETE FROM status WHERE name=?", (name,))
            return cur.rowcount > 0

    # -- status -------------------------------------------------------------------
    def succeeded(self, name: str, points: int = 0, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            self._conn.execute(
                "INSERT INTO status(name, ok_at, failures, points) VALUES (?,?,0,?)"
                " ON CONFLICT(name) DO UPDATE SET ok_at=excluded.ok_at, error=NULL,"
                " error_at=NULL, failures=0, points=points+excluded.points",
                (name, now, points))

    def failed(self, name: str, error: str, now: float | None = None) -> int:
        now = time.time() if now is None else now
        with self._lock:
            self._conn.execute(
                "INSERT INTO status(name, error, error_at, failures) VALUES (?,?,?,1)"
                " ON CONFLICT(name) DO UPDATE SET error=excluded.error,"
                " error_at=excluded.error_at, failures=failures+1", (name, error, now))
            return self._conn.execute("SELECT failures FROM status WHERE name=?",
                                      (name,)).fetchone()[0]

    def measured(self, name: str, backlog: Backlog) -> None:
        at = time.time() if backlog.at is None else backlog.at
        with self._lock:
            self._conn.execute(
                "INSERT INTO status(name, owed_points, lag_ns, oldest_ns, measured_at)"
                " VALUES (?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET"
                " owed_points=excluded.owed_points, lag_ns=excluded.lag_ns,"
                " oldest_ns=excluded.oldest_ns, measured_at=excluded.measured_at",
                (name, int(backlog.points), int(backlog.lag_ns), backlog.oldest_ns, at))

    def activate(self, names: set[str]) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute("UPDATE status SET active=0")
                self._conn.executemany(
                    "INSERT INTO status(name, active) VALUES (?,1)"
                    " ON CONFLICT(name) DO UPDATE SET active=1", [(n,) for n in sorted(names)])
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def status(self, name: str) -> Status | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {_STATUS} FROM status WHERE name=?",
                                     (name,)).fetchone()
        return _status(row) if row else None

    def statuses(self) -> list[Status]:
        try:
            with self._lock:
                rows = self._conn.execute(f"SELECT {_STATUS} FROM status ORDER BY name"
                                          ).fetchall()
        except sqlite3.Error as exc:
            raise StateError(f"{self.path}: cannot read the distil state database: {exc}"
                             ) from None
        return [_status(r) for r in rows]
