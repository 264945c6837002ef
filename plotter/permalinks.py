"""Permalinks: a view of the page stored on the server under a short id.

A permalink holds the streams, the window, the time zone and the page's own view state
(axes, colours, cursors) as the page sends it. Its window is one of the original
plotter's three kinds:

- ``fixed``: ``start`` and ``end`` (ns);
- ``now``: the last ``span`` ns before the moment it is opened;
- ``last``: the last ``span`` ns before the streams' newest point.

:func:`validate` checks a document sans IO; :func:`resolve` turns a window into a range.
Stored in the appliance's database, as the queue: embedded SQLite by default (the file
``plotter.db`` beside the SQLite queue), MongoDB (database ``mr_plotter``, collection
``permalinks``, documents ``{_id, created, doc}``) when the queue is MongoDB.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import sqlite3
import threading
import uuid as uuidlib
from collections.abc import Callable
from typing import Protocol

__all__ = ["ID", "MAX_DOC_BYTES", "MongoPermalinks", "PermalinkError", "Permalinks",
           "SqlitePermalinks", "new_id", "open_permalinks", "resolve", "validate"]

ID = re.compile(r"[A-Za-z0-9_-]{6,32}\Z")
#: A document's size as stored: a view of 64 streams with axes and colours is ~10 KB.
MAX_DOC_BYTES = 32_000
MAX_STREAMS = 64
KINDS = ("fixed", "now", "last")


class PermalinkError(ValueError):
    """A permalink document or id the API refuses; the message says why (a 400)."""


def new_id() -> str:
    """A short random id (8 bytes: 11 URL-safe characters)."""
    return secrets.token_urlsafe(8)


def check_id(text: str) -> str:
    """``text`` if it has a permalink id's form.

    Raises:
        PermalinkError: malformed (6-32 letters, digits, ``-`` or ``_``).
    """
    if not isinstance(text, str) or not ID.match(text):
        raise PermalinkError(f"malformed permalink id {text!r} (6 to 32 letters, digits, "
                             f"- or _)")
    return text


def _int(doc: dict, key: str) -> int:
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise PermalinkError(f"window {key!r} must be an integer number of ns, not {value!r}")
    return value


def validate(doc: object) -> dict:
    """The permalink document ``doc`` (parsed JSON), checked and normalised.

    Raises:
        PermalinkError: what is wrong with it.
    """
    if not isinstance(doc, dict):
        raise PermalinkError("a permalink is a JSON object")
    streams = doc.get("streams")
    if not isinstance(streams, list) or not streams or len(streams) > MAX_STREAMS:
        raise PermalinkError(f"'streams' must be a list of 1 to {MAX_STREAMS} stream UUIDs")
    try:
        streams = [str(uuidlib.UUID(s)) for s in streams]
    except (ValueError, TypeError, AttributeError):
        raise PermalinkError("'streams' must hold stream UUIDs") from None
    window = doc.get("window")
    if not isinstance(window, dict) or window.get("kind") not in KINDS:
        raise PermalinkError(f"'window' must be an object whose 'kind' is one of "
                             f"{', '.join(KINDS)}")
    if window["kind"] == "fixed":
        start, end = _int(window, "start"), _int(window, "end")
        if end <= start:
            raise PermalinkError(f"window end ({end}) must be after its start ({start})")
        window = {"kind": "fixed", "start": start, "end": end}
    else:
        span = _int(window, "span")
        if span <= 0:
            raise PermalinkError("window 'span' must be more than 0 ns")
        window = {"kind": window["kind"], "span": span}
    zone = doc.get("zone", "UTC")
    if not isinstance(zone, str) or not 0 < len(zone) <= 64:
        raise PermalinkError("'zone' must be a time zone name such as UTC or Europe/Berlin")
    view = doc.get("view", {})
    if not isinstance(view, dict):
        raise PermalinkError("'view' must be an object (the page's axes, colours, cursors)")
    out = {"streams": streams, "window": window, "zone": zone, "view": view}
    if len(json.dumps(out)) > MAX_DOC_BYTES:
        raise PermalinkError(f"a permalink may hold at most {MAX_DOC_BYTES:,} bytes")
    return out


def resolve(window: dict, now_ns: int, newest: Callable[[], int | None]) -> tuple[int, int]:
    """The range ``[start, end)`` a window means when opened at ``now_ns``; ``newest``
    gives the streams' newest point (for ``last``; None: no data, then as ``now``)."""
    if window["kind"] == "fixed":
        return window["start"], window["end"]
    end = now_ns
    if window["kind"] == "last":
        last = newest()
        if last is not None:
            end = last + 1
    return end - window["span"], end


class Permalinks(Protocol):
    def create(self, doc: dict) -> str: ...
    def get(self, pid: str) -> dict | None: ...
    def close(self) -> None: ...


class SqlitePermalinks:
    """Permalinks in an SQLite file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS permalinks (id TEXT PRIMARY KEY, "
                         "created TEXT NOT NULL, doc TEXT NOT NULL)")

    def create(self, doc: dict) -> str:
        created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
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

    def close(self) -> None:
        self._db.close()


class MongoPermalinks:
    """Permalinks in MongoDB: database ``mr_plotter``, collection ``permalinks``."""

    def __init__(self, url: str, client=None) -> None:
        if client is None:
            import pymongo
            client = pymongo.MongoClient(url, serverSelectionTimeoutMS=5000)
        self._client = client
        self._coll = client["mr_plotter"]["permalinks"]

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

    def close(self) -> None:
        self._client.close()


def open_permalinks(queue_url: str, srv: str) -> Permalinks:
    """The permalink store of an appliance whose queue is ``queue_url``: MongoDB beside a
    MongoDB queue, else ``plotter.db`` beside the SQLite queue (or in ``srv``)."""
    if queue_url.startswith(("mongodb://", "mongodb+srv://")):
        return MongoPermalinks(queue_url)
    folder = os.path.dirname(queue_url[len("sqlite:///"):]) if queue_url.startswith(
        "sqlite:///") else srv
    return SqlitePermalinks(os.path.join(folder, "plotter.db"))
