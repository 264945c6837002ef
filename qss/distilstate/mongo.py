"""The engine's state in MongoDB, beside a MongoDB queue: database ``qss_distil``,
collections ``instances``, ``status`` and ``requests``. An instance's state is one
document, so saving it is atomic; taking requests is a delete after that save (a kill
in between takes them again, which only recomputes a range twice).
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from .base import (Backlog, InstanceState, Range, StateError, StateStore, Status,
                   describe)

DATABASE = "qss_distil"


class MongoState(StateStore):
    """The state in MongoDB at ``url`` (``client`` injects one: mongomock in tests).

    Raises:
        StateError: the URL is invalid.
    """

    def __init__(self, url: str | None = None, *, client: Any = None,
                 database: str = DATABASE, timeout_ms: int = 5000) -> None:
        import pymongo
        from pymongo.errors import PyMongoError
        from pymongo.write_concern import WriteConcern
        if client is None:
            options = {} if "serverSelectionTimeoutMS" in (url or "") else {
                "serverSelectionTimeoutMS": timeout_ms}
            try:
                client = pymongo.MongoClient(url, connect=False, **options)
            except (PyMongoError, ValueError, TypeError) as exc:
                raise StateError(f"distil state {describe(url or '')}: invalid MongoDB URL: "
                                 f"{exc}") from None
        # Without its password: the status report prints messages naming it.
        self.location = describe(url) if url else f"mongodb://<{type(client).__name__}>"
        self._client = client
        db = client[database]
        concern = WriteConcern(w=1, j=True)
        self._instances = db.get_collection("instances", write_concern=concern)
        self._status = db.get_collection("status", write_concern=concern)
        self._requests = db.get_collection("requests", write_concern=concern)
        self._counters = db.get_collection("counters", write_concern=concern)
        self._lock = threading.Lock()
        self._errors_type = PyMongoError

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except self._errors_type as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StateError(f"distil state {self.location}: {doing}: {reason}") from None

    def close(self) -> None:
        self._client.close()

    def names(self) -> list[str]:
        with self._errors("listing instances"):
            return sorted(d["_id"] for d in self._instances.find({}, {"_id": 1}))

    def load(self, name: str) -> InstanceState:
        with self._errors(f"loading {name}"):
            doc = self._instances.find_one({"_id": name})
        if doc is None:
            return InstanceState()
        # Versions are stored as strings: BSON integers stop at 2^63 - 1 and keys are
        # strings anyway; ranges as [start, end] pairs of int64.
        return InstanceState(doc["signature"], {k: int(v) for k, v in doc["consumed"].items()},
                             [(int(a), int(b)) for a, b in doc["pending"]])

    def save(self, name: str, state: InstanceState, taken: tuple[int, ...] = ()) -> None:
        with self._errors(f"saving {name}"):
            self._instances.replace_one(
                {"_id": name},
                {"_id": name, "signature": state.signature,
                 "consumed": {k: str(v) for k, v in state.consumed.items()},
                 "pending": [[int(a), int(b)] for a, b in state.pending]}, upsert=True)
            if taken:
                self._requests.delete_many({"_id": {"$in": list(taken)}})

    def request(self, name: str, r: Range) -> None:
        from pymongo import ReturnDocument
        with self._errors(f"asking to recompute {name}"):
            n = self._counters.find_one_and_update(
                {"_id": "requests"}, {"$inc": {"n": 1}}, upsert=True,
                return_document=ReturnDocument.AFTER)["n"]
            self._requests.insert_one({"_id": int(n), "name": name, "start": int(r[0]),
                                       "end": int(r[1])})

    def requests(self, name: str) -> list[tuple[int, Range]]:
        with self._errors(f"reading the requests of {name}"):
            docs = list(self._requests.find({"name": name}).sort("_id", 1))
        return [(d["_id"], (int(d["start"]), int(d["end"]))) for d in docs]

    def forget(self, name: str) -> bool:
        with self._errors(f"forgetting {name}"):
            n = self._instances.delete_one({"_id": name}).deleted_count
            self._status.delete_one({"_id": name})
        return n > 0

    # -- status -------------------------------------------------------------------
    def succeeded(self, name: str, points: int = 0, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._errors(f"recording {name}"):
            self._status.update_one({"_id": name}, {
                "$set": {"ok_at": now, "error": None, "error_at": None, "failures": 0},
                "$inc": {"points": int(points)}}, upsert=True)

    def failed(self, name: str, error: str, now: float | None = None) -> int:
        from pymongo import ReturnDocument
        now = time.time() if now is None else now
        with self._errors(f"recording {name}"):
            doc = self._status.find_one_and_update(
                {"_id": name}, {"$set": {"error": error, "error_at": now},
                                "$inc": {"failures": 1}},
                upsert=True, return_document=ReturnDocument.AFTER)
        return int(doc["failures"])

    def measured(self, name: str, backlog: Backlog) -> None:
        at = time.time() if backlog.at is None else backlog.at
        with self._errors(f"recording {name}"):
            self._status.update_one({"_id": name}, {"$set": {
                "owed_points": int(backlog.points), "lag_ns": int(backlog.lag_ns),
                "oldest_ns": backlog.oldest_ns, "measured_at": at}}, upsert=True)

    def activate(self, names: set[str]) -> None:
        with self._errors("recording the instances"):
            self._status.update_many({"_id": {"$nin": sorted(names)}},
                                     {"$set": {"active": False}})
            for n in sorted(names):
                self._status.update_one({"_id": n}, {"$set": {"active": True}}, upsert=True)

    @staticmethod
    def _of(d: dict) -> Status:
        return Status(d["_id"], d.get("ok_at"), d.get("error"), d.get("error_at"),
                      int(d.get("failures", 0)), int(d.get("points", 0)),
                      active=bool(d.get("active", True)),
                      backlog=Backlog(int(d.get("owed_points", 0)), int(d.get("lag_ns", 0)),
                                      d.get("oldest_ns"), d.get("measured_at")))

    def status(self, name: str) -> Status | None:
        with self._errors(f"reading the status of {name}"):
            d = self._status.find_one({"_id": name})
        return None if d is None else self._of(d)

    def statuses(self) -> list[Status]:
        with self._errors("reading the status"):
            return [self._of(d) for d in self._status.find().sort("_id", 1)]
