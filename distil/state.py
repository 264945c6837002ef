"""The engine's own state, in SQLite beside the queue (``distil.db``).

Per instance: its signature (distillate, version, inputs: a different one means
recompute everything), the input versions consumed, the ranges still owed (to be
recomputed), and its status (last success, last error, failures in a row). Every update
of an instance's work is one transaction, so a kill leaves either the state before a
chunk or the state after it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import threading
import time

from .ranges import Range

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
    points INTEGER NOT NULL DEFAULT 0   -- output points written, all time
);
-- Ranges an operator asked to recompute (qss-distil run, reset), taken by the engine.
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL
);
"""


class StateError(Exception):
    """The state database cannot be used; the message is one line."""


@dataclasses.dataclass
class InstanceState:
    signature: str = ""
    consumed: dict[str, int] = dataclasses.field(default_factory=dict)
    pending: list[Range] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Status:
    name: str
    ok_at: float | None
    error: str | None
    error_at: float | None
    failures: int
    points: int


class StateStore:
    """The state database; safe to share between threads."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                         timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StateError(f"{path}: cannot open the distil state database: {exc}") from None

    @classmethod
    def beside(cls, directory: str) -> StateStore:
        """The store ``distil.db`` in ``directory`` (the queue's folder)."""
        return cls(os.path.join(directory, FILENAME))

    def close(self) -> None:
        self._conn.close()

    def names(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._conn.execute("SELECT name FROM instances ORDER BY name")]

    def load(self, name: str) -> InstanceState:
        """The instance's state (empty for an instance never seen)."""
        with self._lock:
            row = self._conn.execute("SELECT signature, consumed, pending FROM instances"
                                     " WHERE name=?", (name,)).fetchone()
        if row is None:
            return InstanceState()
        return InstanceState(row[0], json.loads(row[1]), [tuple(r) for r in json.loads(row[2])])

    def save(self, name: str, state: InstanceState, taken: tuple[int, ...] = ()) -> None:
        """Replace the instance's state, durably; the requests ``taken`` (ids) are gone
        in the same transaction."""
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
        """Ask the engine (this process's or a running service's) to recompute ``r``."""
        with self._lock:
            self._conn.execute('INSERT INTO requests(name, start, "end") VALUES (?,?,?)',
                               (name, int(r[0]), int(r[1])))

    def requests(self, name: str) -> list[tuple[int, Range]]:
        """(id, range) of the instance's requests not yet taken."""
        with self._lock:
            rows = self._conn.execute('SELECT id, start, "end" FROM requests WHERE name=?'
                                      " ORDER BY id", (name,)).fetchall()
        return [(i, (a, b)) for i, a, b in rows]

    def forget(self, name: str) -> bool:
        """Drop the instance's state: its next pass recomputes everything. Returns
        whether there was any."""
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
        """Record a failure; returns the failures in a row."""
        now = time.time() if now is None else now
        with self._lock:
            self._conn.execute(
                "INSERT INTO status(name, error, error_at, failures) VALUES (?,?,?,1)"
                " ON CONFLICT(name) DO UPDATE SET error=excluded.error,"
                " error_at=excluded.error_at, failures=failures+1", (name, error, now))
            return self._conn.execute("SELECT failures FROM status WHERE name=?",
                                      (name,)).fetchone()[0]

    def status(self, name: str) -> Status | None:
        with self._lock:
            row = self._conn.execute("SELECT name, ok_at, error, error_at, failures, points"
                                     " FROM status WHERE name=?", (name,)).fetchone()
        return Status(*row) if row else None
