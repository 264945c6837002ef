"""Where the plotter's permalinks are stored: the appliance's database, as the queue.

Embedded SQLite by default (the file ``plotter.db`` beside the SQLite queue, table
``permalinks (id, created, doc)``); MongoDB (database ``mr_plotter``, collection
``permalinks``, documents ``{_id, created, doc}``) when the queue is MongoDB.

The store is in the core because two programs use it: the plotter (``plotter.permalinks``
checks documents and serves them) and ``qss-get --backup``/``--restore``, which carry
every permalink as JSON lines (:func:`dump`, :func:`load`) whichever database holds them.
"""
from __future__ import annotations

import datetime as dt
import json
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from typing import Protocol

from . import records as _records
from .accounts import create_shared, plotter_db_path
from .settings import is_mongodb

__all__ = ["DATABASE", "COLLECTION", "MongoPermalinks", "Permalinks", "SqlitePermalinks",
           "check_record", "dump", "load", "new_id", "open_permalinks"]

DATABASE, COLLECTION = "mr_plotter", "permalinks"


def new_id() -> str:
    """A short random id (8 bytes: 11 URL-safe characters)."""
    return secrets.token_urlsafe(8)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class Permalinks(Protocol):
    """A permalink store. A record is ``{"id", "created" (ISO 8601, UTC), "doc"}``."""

    def create(self, doc: dict) -> str: ...
    def get(self, pid: str) -> dict | None: ...
    def records(self) -> Iterator[dict]: ...
    def replace_all(self, records: Iterable[dict]) -> int: ...
    def close(self) -> None: ...


class SqlitePermalinks:
    """Permalinks in an SQLite file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        create_shared(path)             # the console writes plotter.db too
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS permalinks (id TEXT PRIMARY KEY, "
                         "created TEXT NOT NULL, doc TEXT NOT NULL)")

    def create(self, doc: dict) -> str:
        created = _now()
        with self._lock:
            while True:
                pid = new_id()
                try:
                    self._db.execute("INSERT INTO permalinks VALUES (?, ?, ?)",
                                     (pid, created, json.dumps(doc)))
                    return pid
                except sqlite3.IntegrityError:    # an id already taken: draw again
                    continue

    def get(self, pid: str) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT doc FROM permalinks WHERE id = ?", (pid,)).fetchone()
        return None if row is None else json.loads(row[0])

    def records(self) -> Iterator[dict]:
        with self._lock:
            rows = self._db.execute("SELECT id, created, doc FROM permalinks ORDER BY id")
            rows = rows.fetchall()         # one read: a consistent set
        for pid, created, doc in rows:
            yield {"id": pid, "created": created, "doc": json.loads(doc)}

    def replace_all(self, records: Iterable[dict]) -> int:
        rows = [(r["id"], r["created"], json.dumps(r["doc"])) for r in records]
        return _records.replace_table(self._db, self._lock, "permalinks", rows)

    def close(self) -> None:
        self._db.close()


class MongoPermalinks:
    """Permalinks in MongoDB: database ``mr_plotter``, collection ``permalinks``."""

    def __init__(self, url: str, client=None, timeout_ms: int = 5000,
                 database: str = DATABASE) -> None:
        if client is None:
            import pymongo
            client = pymongo.MongoClient(url, serverSelectionTimeoutMS=timeout_ms)
        self._client = client
        self._coll = client[database][COLLECTION]

    def create(self, doc: dict) -> str:
        from pymongo.errors import DuplicateKeyError
        while True:
            pid = new_id()
            try:
                self._coll.insert_one({"_id": pid, "created": dt.datetime.now(dt.timezone.utc),
                                       "doc": doc})
                return pid
            except DuplicateKeyError:
                continue

    def get(self, pid: str) -> dict | None:
        found = self._coll.find_one({"_id": pid})
        return None if found is None else found["doc"]

    def records(self) -> Iterator[dict]:
        for found in self._coll.find({}, sort=[("_id", 1)]):
            created = found.get("created")
            if isinstance(created, dt.datetime):
                if created.tzinfo is None:        # pymongo returns naive UTC times
                    created = created.replace(tzinfo=dt.timezone.utc)
                created = created.isoformat(timespec="seconds")
            yield {"id": found["_id"], "created": created, "doc": found["doc"]}

    def replace_all(self, records: Iterable[dict]) -> int:
        docs = [{"_id": r["id"], "created": dt.datetime.fromisoformat(r["created"]),
                 "doc": r["doc"]} for r in records]
        return _records.replace_collection(self._coll, docs)

    def close(self) -> None:
        self._client.close()


def open_permalinks(queue_url: str, srv: str, mongo_client=None,
                    timeout_ms: int = 5000) -> Permalinks:
    """The permalink store of an appliance whose queue is ``queue_url``: MongoDB beside a
    MongoDB queue (``mongo_client``: one already made, e.g. mongomock in tests;
    ``timeout_ms``: how long to look for the server), else ``plotter.db`` beside the
    SQLite queue (or in ``srv``)."""
    if is_mongodb(queue_url):
        return MongoPermalinks(queue_url, client=mongo_client, timeout_ms=timeout_ms)
    return SqlitePermalinks(plotter_db_path(queue_url, srv))


def check_record(r: object) -> dict:
    """``r`` if it is a permalink record (:meth:`Permalinks.records`).

    Raises:
        ValueError: it is not.
    """
    if not (isinstance(r, dict) and isinstance(r.get("id"), str)
            and isinstance(r.get("created"), str) and isinstance(r.get("doc"), dict)):
        raise ValueError("not a permalink record")
    dt.datetime.fromisoformat(r["created"])
    return r


def dump(store: Permalinks) -> bytes:
    """Every permalink of ``store`` as JSON lines (one record a line, by id)."""
    return _records.dump(store)


def load(store: Permalinks, data: bytes) -> int:
    """Make ``store`` hold exactly the permalinks of ``data`` (from :func:`dump`); their
    number.

    Raises:
        ValueError: ``data`` is not :func:`dump`'s (a line and why).
    """
    return _records.load(store, data, check_record, "id")
