"""The MongoDB queue (``[queue] url = mongodb://HOST[:PORT]``), as appliances in the field
have it (architecture §5), so an existing ``upmu_database`` keeps working:

    received_files  {name, data (binary), serial_number, time_received, published, ytag}
    latest_times    {serial_number, time_received}
    indexes         received_files (serial_number, ytag, name) and (serial_number, name)

plus one collection of our own, ``qss_meta`` (``{_id: "ytagbase", value: N}``), which
the original tools never read.

Decisions:

- Writes are journaled (``j=True``, with the ``w`` of the URL, default 1), as the original
  receiver's ``FSync`` safe mode was: a put returns once MongoDB has it in its journal.
  A file and its device's latest time are two journaled writes, file first (a standalone
  server has no multi-document transactions); a crash between them leaves the latest
  time one file behind, which the device's next push (or resend) corrects.
- Identity: the indexes are not unique (field databases already hold duplicates the
  original receiver inserted blindly, and a unique index could not be built on them), so
  :meth:`put` upserts on (serial_number, name), serialised per file within a process
  (two concurrent upserts could both insert), and replaces every copy on different bytes.
  Two processes putting the same new file in the same millisecond could still make two
  copies; sync2q inserts both idempotently, so no point is doubled.
- New documents get ``ytag: 0``; documents the original receiver wrote have none. Unsynced
  (``ytag`` missing or below ``ytagbase``) is listed as a merge of one index range per
  distinct unsynced ``ytag`` value, each already in name order on (serial_number, ytag,
  name), so MongoDB never sorts in memory (the "Overflow sort stage" failure of old
  appliances) and never reads synced documents.
- Sizes come from ``$binarySize`` on the server (MongoDB 4.4+), so listing never pulls
  file contents. Older servers (and mongomock) reject it; then sizes are computed from the
  contents client-side, correct but slower, with one log line saying so.
- ``mark_synced`` matches the listed version by ``_id`` and ``time_received``; a
  replacement always moves ``time_received`` forward by at least 1 ms, so it cannot
  collide.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import heapq
import threading
from collections.abc import Iterator
from typing import Any

import pymongo
from pymongo.errors import OperationFailure, PyMongoError
from pymongo.write_concern import WriteConcern

from qss.logtext import without_password

from .base import (DEFAULT_YTAGBASE, Contents, FileGone, PutResult, Queue, QueueError,
                   QueuedFile, SerialStats, Tally, check_identity, in_period, log,
                   log_replaced, utcnow)

__all__ = ["DATABASE", "INDEXES", "MongoQueue"]

DATABASE = "upmu_database"
#: (collection, key) of every index the suite relies on (architecture §5).
INDEXES = [
    ("received_files", (("serial_number", 1), ("ytag", 1), ("name", 1))),
    ("received_files", (("serial_number", 1), ("name", 1))),
]
_DELETE_BATCH = 256
_UTC = dt.timezone.utc
_MS = dt.timedelta(milliseconds=1)
# Fields listed for a QueuedFile (never "data", unless sizes must be computed here).
_META = {"_id": 1, "name": 1, "serial_number": 1, "time_received": 1, "ytag": 1}


def _naive_utc(when: dt.datetime) -> dt.datetime:
    # BSON dates are UTC milliseconds; the original receiver wrote UTC too.
    if when.tzinfo is not None:
        when = when.astimezone(_UTC).replace(tzinfo=None)
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


def _aware(when: dt.datetime | None) -> dt.datetime | None:
    if when is None:
        return None
    return when.replace(tzinfo=_UTC) if when.tzinfo is None else when.astimezone(_UTC)


def _ytag(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


class MongoQueue(Queue):
    """The queue in MongoDB database ``upmu_database`` (``database`` is for tests).

    Connects lazily: opening never fails because the server is down; operations then
    raise :class:`QueueError` after ``timeout_ms`` (default 5 s, or the URL's own
    ``serverSelectionTimeoutMS``). ``client`` injects a ready client (mongomock in tests).

    Raises:
        QueueError: the URL is invalid.
    """

    def __init__(self, url: str | None = None, *, client: Any = None,
                 database: str = DATABASE, timeout_ms: int = 5000) -> None:
        if client is None:
            if url is None:
                raise ValueError("MongoQueue needs a url or a client")
            options = {} if "serverSelectionTimeoutMS" in url else {
                "serverSelectionTimeoutMS": timeout_ms}
            try:
                client = pymongo.MongoClient(url, connect=False, **options)
            except (PyMongoError, ValueError) as exc:
                raise QueueError(f"queue {without_password(url)}: invalid MongoDB URL: "
                                 f"{exc}") from None
        # For messages and logs only (the client holds the real one): no password.
        self.url = without_password(url) if url else f"mongodb://<{type(client).__name__}>"
        self._client = client
        self._db = client[database]
        # Keep the URL's w (e.g. majority on a replica set); always journal.
        write_concern = getattr(client, "write_concern", None)
        w = (write_concern.document.get("w", 1) if isinstance(write_concern, WriteConcern)
             else 1)
        concern = WriteConcern(w=w, j=True)
        self._files = self._db.get_collection("received_files", write_concern=concern)
        self._latest = self._db.get_collection("latest_times", write_concern=concern)
        self._meta = self._db.get_collection("qss_meta", write_concern=concern)
        self._server_sizes = True   # False once the server rejected $binarySize
        self._size_lock = threading.Lock()
        # Without a unique index, two concurrent upserts of one (serial, name) can both
        # insert; puts of the same file are serialised here (per process: the receiver's
        # writers). Striped, so unrelated files do not wait for each other.
        self._put_locks = [threading.Lock() for _ in range(64)]

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except PyMongoError as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise QueueError(f"queue {self.url}: {doing}: {reason}") from None

    # -- writing --------------------------------------------------------------------

    def put(self, serial: str, name: str, data: Contents, *,
            time_received: dt.datetime | None = None, update_latest: bool = True) -> PutResult:
        check_identity(serial, name)
        # pymongo encodes only bytes; a copy of a bytearray/memoryview is unavoidable here.
        if isinstance(data, (list, tuple)):
            payload = b"".join(data)
        else:
            payload = data if type(data) is bytes else bytes(data)
        when = _naive_utc(time_received or utcnow())
        key = {"serial_number": serial, "name": name}
        old_size = 0
        lock = self._put_locks[hash((serial, name)) % len(self._put_locks)]
        with lock, self._errors(f"cannot store file {name!r} of uPMU {serial}"):
            upserted = self._files.update_one(key, {"$setOnInsert": {
                "data": payload, "time_received": when, "published": False, "ytag": 0,
            }}, upsert=True).upserted_id
            if upserted is not None:
                result = PutResult.NEW
            else:
                old = self._files.find_one(key, {"data": 1, "time_received": 1}) or {}
                stored = old.get("data")
                if stored is not None and bytes(stored) == payload:
                    result = PutResult.DUPLICATE
                else:
                    old_size = len(stored or b"")
                    previous = old.get("time_received")
                    if isinstance(previous, dt.datetime):
                        # Strictly later, so mark_synced of the old version cannot match.
                        when = max(when, _naive_utc(previous) + _MS)
                    self._files.update_many(key, {"$set": {
                        "data": payload, "time_received": when, "published": False, "ytag": 0,
                    }})
                    result = PutResult.REPLACED
            if update_latest:
                self._latest.update_one({"serial_number": serial},
                                        {"$max": {"time_received": when}}, upsert=True)
        if result is PutResult.REPLACED:
            log_replaced(self.url, serial, name, old_size, len(payload))
        return result

    def mark_synced(self, file: QueuedFile) -> bool:
        oid, when, base = file.ref
        with self._errors(f"cannot mark file {file.name!r} of uPMU {file.serial} synced"):
            matched = self._files.update_one({"_id": oid, "time_received": when},
                                             {"$max": {"ytag": base}}).matched_count
        return matched == 1

    # -- reading --------------------------------------------------------------------

    def _find(self, match: dict, *, limit: int = 0, by_name: bool = True) -> list[dict]:
        """Documents matching ``match`` (without contents, with ``size``), in name order."""
        if self._server_sizes:
            pipeline: list[dict] = [{"$match": match}]
            if by_name:
                pipeline.append({"$sort": {"name": 1}})
            if limit:
                pipeline.append({"$limit": limit})
            pipeline.append({"$project": {**_META, "size": {"$binarySize": "$data"}}})
            try:
                return list(self._files.aggregate(pipeline))
            except OperationFailure as exc:
                if not self._no_binary_size(exc):
                    raise
        cursor = self._files.find(match, {**_META, "data": 1})
        if by_name:
            cursor = cursor.sort("name", pymongo.ASCENDING)
        if limit:
            cursor = cursor.limit(limit)
        docs = []
        for doc in cursor:
            doc["size"] = len(doc.pop("data", None) or b"")
            docs.append(doc)
        return docs

    def _no_binary_size(self, exc: OperationFailure) -> bool:
        # 168: InvalidPipelineOperator, what servers before 4.4 answer to $binarySize.
        if exc.code != 168 and "binarySize" not in str(exc):
            return False
        with self._size_lock:
            if self._server_sizes:
                self._server_sizes = False
                log.warning("queue %s: the MongoDB server has no $binarySize (MongoDB < 4.4);"
                            " file sizes are computed from the contents, which is slower",
                            self.url)
        return True

    def _file(self, doc: dict, base: int) -> QueuedFile:
        when = doc.get("time_received")
        return QueuedFile(doc.get("serial_number", ""), doc.get("name", ""),
                          int(doc.get("size") or 0),
                          _aware(when) or dt.datetime(1970, 1, 1, tzinfo=_UTC),
                          _ytag(doc.get("ytag")), (doc["_id"], when, base))

    def get(self, serial: str, name: str) -> QueuedFile | None:
        base = self.ytagbase
        with self._errors(f"cannot look up file {name!r} of uPMU {serial}"):
            docs = self._find({"serial_number": serial, "name": name}, limit=1, by_name=False)
        return self._file(docs[0], base) if docs else None

    def read(self, file: QueuedFile) -> bytes:
        with self._errors(f"cannot read file {file.name!r} of uPMU {file.serial}"):
            doc = self._files.find_one({"_id": file.ref[0]}, {"data": 1})
        if doc is None:
            raise FileGone(f"queue {self.url}: file {file.name!r} of uPMU {file.serial} is "
                           f"no longer queued")
        data = doc.get("data") or b""
        return data if type(data) is bytes else bytes(data)

    def _pages(self, match: dict, after: str | None, page_size: int,
               base: int) -> Iterator[QueuedFile]:
        last = after
        while True:
            page = dict(match)
            if last is not None:
                page["name"] = {"$gt": last}
            with self._errors(f"cannot list files of uPMU {match.get('serial_number')}"):
                docs = self._find(page, limit=page_size)
            for doc in docs:
                yield self._file(doc, base)
            if len(docs) < page_size:
                return
            last = docs[-1]["name"]

    def unsynced(self, serial: str, *, after: str | None = None,
                 page_size: int = 256) -> Iterator[QueuedFile]:
        base = self.ytagbase
        with self._errors(f"cannot list unsynced files of uPMU {serial}"):
            values = self._files.distinct("ytag", {"serial_number": serial,
                                                   "ytag": {"$lt": base}})
        # None matches a missing ytag (the original receiver's documents) and null.
        tags = [None, *sorted({v for v in values if v is not None})]
        streams = [self._pages({"serial_number": serial, "ytag": tag}, after, page_size, base)
                   for tag in tags]
        yield from heapq.merge(*streams, key=lambda f: f.name)

    def files(self, serial: str, *, start: dt.datetime | None = None,
              end: dt.datetime | None = None, page_size: int = 256) -> Iterator[QueuedFile]:
        base = self.ytagbase
        for file in self._pages({"serial_number": serial}, None, page_size, base):
            if in_period(file.name, start, end):
                yield file

    def serials(self) -> list[str]:
        with self._errors("cannot list serial numbers"):
            found = set(self._files.distinct("serial_number"))
            found.update(self._latest.distinct("serial_number"))
        return sorted(s for s in found if isinstance(s, str))

    def _totals(self, match: dict, base: int) -> dict[str, list]:
        """serial -> [files, bytes, unsynced files, unsynced bytes]."""
        out: dict[str, list] = {}
        if self._server_sizes:
            size = {"$binarySize": "$data"}
            synced = {"$gte": ["$ytag", base]}
            pipeline = [{"$match": match}, {"$group": {
                "_id": "$serial_number", "files": {"$sum": 1}, "bytes": {"$sum": size},
                "unsynced": {"$sum": {"$cond": [synced, 0, 1]}},
                "unsynced_bytes": {"$sum": {"$cond": [synced, 0, size]}}}}]
            try:
                for doc in self._files.aggregate(pipeline):
                    out[doc["_id"]] = [doc["files"], doc["bytes"], doc["unsynced"],
                                       doc["unsynced_bytes"]]
                return out
            except OperationFailure as exc:
                if not self._no_binary_size(exc):
                    raise
        for doc in self._files.find(match, {"serial_number": 1, "ytag": 1, "data": 1}):
            row = out.setdefault(doc.get("serial_number"), [0, 0, 0, 0])
            length = len(doc.get("data") or b"")
            row[0] += 1
            row[1] += length
            if _ytag(doc.get("ytag")) < base:
                row[2] += 1
                row[3] += length
        return out

    def stats(self) -> dict[str, SerialStats]:
        base = self.ytagbase
        with self._errors("cannot compute statistics"):
            totals = self._totals({}, base)
            latest = {d["serial_number"]: d.get("time_received")
                      for d in self._latest.find({}, {"serial_number": 1, "time_received": 1})}
        out = {}
        for serial in set(totals) | set(latest):
            if not isinstance(serial, str):
                continue
            files, size, unsynced, unsynced_size = totals.get(serial, [0, 0, 0, 0])
            # Only a push is a sign of life: imported files leave last_received None.
            when = latest.get(serial)
            out[serial] = SerialStats(serial, files, size, unsynced, unsynced_size, _aware(when))
        return dict(sorted(out.items()))

    # -- ytagbase -------------------------------------------------------------------

    @property
    def ytagbase(self) -> int:
        with self._errors("cannot read ytagbase"):
            doc = self._meta.find_one({"_id": "ytagbase"})
        return int(doc["value"]) if doc else DEFAULT_YTAGBASE

    def resync_all(self) -> int:
        base = self.ytagbase
        top = 0
        with self._errors("cannot raise ytagbase"):
            # Per serial, the (serial_number, ytag, name) index gives the largest ytag at once.
            for serial in self._files.distinct("serial_number"):
                doc = self._files.find_one(
                    {"serial_number": serial, "ytag": {"$type": "number"}},
                    {"ytag": 1, "_id": 0}, sort=[("ytag", pymongo.DESCENDING)])
                if doc:
                    top = max(top, _ytag(doc["ytag"]))
            new = max(base, top) + 1
            self._meta.update_one({"_id": "ytagbase"}, {"$set": {"value": new}}, upsert=True)
        log.info("queue %s: ytagbase raised from %d to %d; every queued file will be synced "
                 "again", self.url, base, new)
        return new

    # -- deleting -------------------------------------------------------------------

    def _synced_match(self, serial: str | None) -> dict:
        match: dict = {"ytag": {"$gte": self.ytagbase}}
        if serial is not None:
            match["serial_number"] = serial
        return match

    def count_synced(self, serial: str | None = None) -> Tally:
        match = self._synced_match(serial)
        with self._errors("cannot count synced files"):
            totals = self._totals(match, self.ytagbase).values()
        return Tally(sum(t[0] for t in totals), sum(t[1] for t in totals))

    def _delete_docs(self, docs: list[dict], match: dict) -> Tally:
        ids = [d["_id"] for d in docs]
        # Re-checking `match` leaves a file replaced meanwhile (ytag back to 0) in place.
        deleted = self._files.delete_many({"_id": {"$in": ids}, **match}).deleted_count
        if deleted == len(docs):
            return Tally(deleted, sum(int(d.get("size") or 0) for d in docs))
        gone = {d["_id"] for d in self._files.find({"_id": {"$in": ids}}, {"_id": 1})}
        return Tally(deleted, sum(int(d.get("size") or 0) for d in docs if d["_id"] not in gone))

    def _delete_where(self, match: dict, doing: str) -> Tally:
        total = Tally()
        with self._errors(doing):
            while docs := self._find(match, limit=_DELETE_BATCH, by_name=False):
                done = self._delete_docs(docs, match)
                total += done
                if done.files == 0:   # all replaced under us: nothing left that matches
                    break
        return total

    def delete_synced(self, serial: str | None = None) -> Tally:
        return self._delete_where(self._synced_match(serial), "cannot delete synced files")

    def delete(self, serial: str, *, start: dt.datetime | None = None,
               end: dt.datetime | None = None) -> Tally:
        doing = f"cannot delete files of uPMU {serial}"
        if start is None and end is None:
            total = self._delete_where({"serial_number": serial}, doing)
            with self._errors(doing):
                self._latest.delete_many({"serial_number": serial})
            return total
        total = Tally()
        batch: list[dict] = []
        with self._errors(doing):
            for file in list(self.files(serial, start=start, end=end)):
                batch.append({"_id": file.ref[0], "size": file.size})
                if len(batch) == _DELETE_BATCH:
                    total += self._delete_docs(batch, {})
                    batch = []
            if batch:
                total += self._delete_docs(batch, {})
        return total

    # -- housekeeping ---------------------------------------------------------------

    def ensure_indexes(self) -> list[str]:
        created = []
        with self._errors("cannot create indexes"):
            for collection, key in INDEXES:
                coll = self._db[collection]
                have = {tuple((f, int(d)) for f, d in spec["key"])
                        for spec in coll.index_information().values()}
                if key not in have:
                    name = coll.create_index(list(key))
                    fields = ", ".join(f for f, _ in key)
                    created.append(f"{collection}.{name} on ({fields})")
        return created

    @property
    def storage_dir(self) -> None:
        return None

    def close(self) -> None:
        self._client.close()
