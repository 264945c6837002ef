"""The streams in BTrDB and their metadata, as ``upmu-adm save`` writes them.

A stream's collection is its ``Path`` without the stream name (``upmu/uPMU1``; its first
element is the access domain), its tags ``name`` and ``unit`` (architecture §5, §6).
The list is read with one ``LookupStreams`` and kept for :data:`TTL` seconds, so the
tree and every access check are cheap; an unknown UUID re-reads it once (a stream
``save`` has just created is found at once).
"""
from __future__ import annotations

import threading
import time
import uuid as uuidlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

from qss.btrdbclient import Btrdb

__all__ = ["Catalog", "StreamEntry", "TTL", "tree"]

#: Seconds the stream list is reused before it is read again.
TTL = 5.0


@dataclass(frozen=True)
class StreamEntry:
    """One stream as BTrDB describes it."""

    uuid: uuidlib.UUID
    collection: str
    name: str
    unit: str
    tags: dict[str, str] = field(compare=False, hash=False)
    annotations: dict[str, str] = field(compare=False, hash=False)
    property_version: int = 0

    @property
    def path(self) -> str:
        """``/upmu/uPMU1/L1MAG``: the stream's Path in ``upmuconfig.ini``."""
        return "/" + "/".join(p for p in (self.collection, self.name) if p)

    def brief(self) -> dict:
        """The stream as the tree lists it."""
        return {"uuid": str(self.uuid), "collection": self.collection, "name": self.name,
                "unit": self.unit, "path": self.path}


class Catalog:
    """The list of streams in BTrDB, refreshed every :data:`TTL` seconds."""

    def __init__(self, btrdb: Btrdb, ttl: float = TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.btrdb = btrdb
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._read_at: float | None = None
        self._by_uuid: dict[uuidlib.UUID, StreamEntry] = {}

    def streams(self) -> list[StreamEntry]:
        """Every stream, by collection and name.

        Raises:
            Exception: from the client when BTrDB is unavailable.
        """
        with self._lock:
            # A connection dropped after a failure makes the list stale too: BTrDB is
            # asked again, so an outage is seen at once rather than after the TTL.
            fresh = (self._read_at is not None and self._clock() - self._read_at < self.ttl
                     and self.btrdb.current is not None)
        if not fresh:
            self.refresh()
        with self._lock:
            entries = list(self._by_uuid.values())
        return sorted(entries, key=lambda e: (e.collection, e.name, str(e.uuid)))

    def find(self, uu: uuidlib.UUID) -> StreamEntry | None:
        """The stream ``uu``, reading the list again once if it is not known."""
        self.streams()
        with self._lock:
            entry = self._by_uuid.get(uu)
            read_at = self._read_at
        if entry is None and read_at is not None and self._clock() - read_at > 0.5:
            self.refresh()
            with self._lock:
                entry = self._by_uuid.get(uu)
        return entry

    def expire(self) -> None:
        """Read the list from BTrDB again on its next use."""
        with self._lock:
            self._read_at = None

    def refresh(self) -> None:
        """Read the list from BTrDB now.

        Raises:
            Exception: from the client when BTrDB is unavailable.
        """
        db = self.btrdb.get()
        with warnings.catch_warnings():
            # "StreamSet will be the default return object": we only read attributes.
            warnings.simplefilter("ignore", FutureWarning)
            found = db.streams_in_collection()
        by_uuid = {}
        for s in found:
            # Cached from LookupStreams (no RPC); annotations as stored, undecoded.
            tags = s.tags()
            annotations, version = s.annotations()
            by_uuid[s.uuid] = StreamEntry(s.uuid, s.collection or "", tags.get("name", ""),
                                          tags.get("unit", ""), tags, annotations,
                                          int(version or 0))
        with self._lock:
            self._by_uuid = by_uuid
            self._read_at = self._clock()


def tree(entries: list[StreamEntry]) -> list[dict]:
    """The streams as nested folders by collection path: ``[{"name": "upmu", "children":
    [{"name": "uPMU1", "children": [], "streams": [...]}], "streams": []}]``."""
    root: dict = {"children": {}, "streams": []}
    for e in entries:
        node = root
        for part in (p for p in e.collection.split("/") if p):
            node = node["children"].setdefault(part, {"children": {}, "streams": []})
        node["streams"].append(e.brief())

    def out(node: dict) -> list[dict]:
        return [{"name": name, "children": out(child), "streams": child["streams"]}
                for name, child in sorted(node["children"].items())]
    top = out(root)
    if root["streams"]:
        top.append({"name": "", "children": [], "streams": root["streams"]})
    return top
