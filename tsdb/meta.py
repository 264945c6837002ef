"""Stream metadata: create, describe, tag and annotate, list and look up streams.

Rules follow reference/btrdb-v5.md (Create, SetStreamAnnotations, SetStreamTags,
ListCollections, LookupStreams, GetMetadataUsage). Choices where the v5 server is unknown:
annotation keys are accepted when non-empty, at most 255 bytes and without NUL (v4 demanded
``^[a-z][a-z0-9_.]*$``, which would refuse keys such as ``UnitofMeasure``); a tag or
annotation value may be at most 255 characters.
"""
from __future__ import annotations

import dataclasses
import json
import uuid as uuidlib

from . import errors
from .db import Db

#: The fixed tag keys of BTrDB v5.
TAG_KEYS = ("name", "unit", "ingress", "distiller")
#: Version of a stream with no data yet (v4's SpecialVersionFirst; reference §3).
FIRST_VERSION = 10
MAX_VALUE_CHARS = 255


@dataclasses.dataclass(frozen=True)
class StreamInfo:
    """A stream's descriptor and versions."""

    uuid: uuidlib.UUID
    collection: str
    tags: dict[str, str]
    annotations: dict[str, str | None]
    property_version: int
    version: int


def _row_info(row) -> StreamInfo:
    return StreamInfo(uuidlib.UUID(bytes=row[0]), row[1], json.loads(row[2]),
                      json.loads(row[3]), row[4], row[5])


_COLUMNS = "uuid, collection, tags, annotations, property_version, version"


def _check_collection(collection: str) -> None:
    raw = collection.encode("utf-8", "surrogatepass")
    if not 1 <= len(raw) <= 255 or "\0" in collection:
        raise errors.InvalidCollection(f"collection {collection!r} is invalid")


def _check_tags(tags: dict[str, str | None]) -> None:
    for k, v in tags.items():
        if k not in TAG_KEYS:
            raise errors.InvalidTagKey(
                f"invalid tag key {k!r}; tag keys are {', '.join(TAG_KEYS)}")
        if v is not None and (len(v) > MAX_VALUE_CHARS or "\0" in v):
            raise errors.InvalidTagValue(f"invalid value for tag {k!r}")


def _check_annotations(annotations: dict[str, str | None]) -> None:
    for k, v in annotations.items():
        if not k or len(k.encode("utf-8", "surrogatepass")) > 255 or "\0" in k:
            raise errors.InvalidTagKey(f"invalid annotation key {k!r}")
        if v is not None and (len(v) > MAX_VALUE_CHARS or "\0" in v):
            raise errors.InvalidTagValue(f"invalid value for annotation {k!r}")


def _clean_tags(tags: dict[str, str | None]) -> dict[str, str]:
    # A tag is never stored as null (reference §4); "" and unset read the same.
    return {k: v for k, v in sorted(tags.items()) if v}


def get(db: Db, uuid: uuidlib.UUID) -> StreamInfo:
    """The stream's descriptor. Raises StreamNotFound."""
    row = db.conn().execute(f"SELECT {_COLUMNS} FROM streams WHERE uuid=?",
                            (uuid.bytes,)).fetchone()
    if row is None:
        raise errors.StreamNotFound(f"stream {uuid} does not exist")
    return _row_info(row)


def stream_id(db: Db, uuid: uuidlib.UUID) -> tuple[int, int]:
    """(internal id, data version) of a stream. Raises StreamNotFound."""
    row = db.conn().execute("SELECT id, version FROM streams WHERE uuid=?",
                            (uuid.bytes,)).fetchone()
    if row is None:
        raise errors.StreamNotFound(f"stream {uuid} does not exist")
    return row[0], row[1]


def create(db: Db, uuid: uuidlib.UUID, collection: str, tags: dict[str, str | None],
           annotations: dict[str, str | None]) -> StreamInfo:
    """Create an empty stream (property version 1). Raises StreamExists, RecycledUUID,
    AmbiguousStream (same collection and tags as another stream), Invalid*."""
    _check_collection(collection)
    _check_tags(tags)
    _check_annotations(annotations)
    clean = _clean_tags(tags)
    tags_json = json.dumps(clean, sort_keys=True)
    with db.transaction() as c:
        if c.execute("SELECT 1 FROM streams WHERE uuid=?", (uuid.bytes,)).fetchone():
            raise errors.StreamExists(f"stream {uuid} already exists")
        if c.execute("SELECT 1 FROM obliterated WHERE uuid=?", (uuid.bytes,)).fetchone():
            raise errors.RecycledUUID(f"uuid {uuid} belonged to an obliterated stream")
        if c.execute("SELECT 1 FROM streams WHERE collection=? AND tags=?",
                     (collection, tags_json)).fetchone():
            raise errors.AmbiguousStream(
                f"a stream in collection {collection!r} already has tags {clean}")
        c.execute("INSERT INTO streams(uuid, collection, tags, annotations, property_version,"
                  " version) VALUES (?,?,?,?,1,?)",
                  (uuid.bytes, collection, tags_json, json.dumps(dict(sorted(annotations.items()))),
                   FIRST_VERSION))
    return StreamInfo(uuid, collection, clean, dict(annotations), 1, FIRST_VERSION)


def _compare_and_set(c, uuid: uuidlib.UUID, expected: int) -> tuple:
    row = c.execute("SELECT id, collection, tags, annotations, property_version FROM streams"
                    " WHERE uuid=?", (uuid.bytes,)).fetchone()
    if row is None:
        raise errors.StreamNotFound(f"stream {uuid} does not exist")
    if row[4] != expected:
        raise errors.PropertyVersionMismatch(
            f"stream {uuid}: property version is {row[4]}, not {expected}")
    return row


def set_annotations(db: Db, uuid: uuidlib.UUID, expected_property_version: int,
                    changes: dict[str, str | None], removals: list[str]) -> int:
    """Upsert ``changes`` and drop ``removals`` if the property version is as expected.

    A change whose value is None removes the key (v4's rule). Returns the new property
    version. Raises StreamNotFound, PropertyVersionMismatch, InvalidTagKey/Value.
    """
    _check_annotations(changes)
    with db.transaction() as c:
        row = _compare_and_set(c, uuid, expected_property_version)
        ann = json.loads(row[3])
        for k, v in changes.items():
            if v is None:
                ann.pop(k, None)
            else:
                ann[k] = v
        for k in removals:
            ann.pop(k, None)
        c.execute("UPDATE streams SET annotations=?, property_version=? WHERE id=?",
                  (json.dumps(dict(sorted(ann.items()))), row[4] + 1, row[0]))
    return row[4] + 1


def set_tags(db: Db, uuid: uuidlib.UUID, expected_property_version: int,
             tags: dict[str, str | None], collection: str, removals: list[str] = ()) -> int:
    """Upsert tags, remove ``removals``, and move the stream to ``collection``.

    Returns the new property version. Raises StreamNotFound, PropertyVersionMismatch,
    InvalidCollection, InvalidTagKey/Value, AmbiguousStream.
    """
    _check_collection(collection)
    _check_tags(tags)
    with db.transaction() as c:
        row = _compare_and_set(c, uuid, expected_property_version)
        cur = json.loads(row[2])
        cur.update(tags)
        for k in removals:
            cur.pop(k, None)
        clean = _clean_tags(cur)
        tags_json = json.dumps(clean, sort_keys=True)
        if c.execute("SELECT 1 FROM streams WHERE collection=? AND tags=? AND id<>?",
                     (collection, tags_json, row[0])).fetchone():
            raise errors.AmbiguousStream(
                f"a stream in collection {collection!r} already has tags {clean}")
        c.execute("UPDATE streams SET collection=?, tags=?, property_version=? WHERE id=?",
                  (collection, tags_json, row[4] + 1, row[0]))
    return row[4] + 1


def _prefix_clause(prefix: str) -> tuple[str, tuple]:
    # substr() compares bytes-exactly, where LIKE would treat % and _ as wildcards.
    return "substr(collection, 1, ?) = ?", (len(prefix), prefix)


def list_collections(db: Db, prefix: str = "") -> list[str]:
    """Sorted names of collections that hold at least one stream and start with prefix."""
    where, args = _prefix_clause(prefix)
    rows = db.conn().execute(f"SELECT DISTINCT collection FROM streams WHERE {where}"
                             " ORDER BY collection", args)
    return [r[0] for r in rows]


def _matches(have: dict, want: dict[str, str | None]) -> bool:
    # A None value means "key present, any value".
    return all(k in have and (v is None or have[k] == v) for k, v in want.items())


def lookup(db: Db, collection: str, is_prefix: bool, tags: dict[str, str | None],
           annotations: dict[str, str | None]) -> list[StreamInfo]:
    """Streams whose collection equals (or starts with) ``collection`` and whose tags and
    annotations have every given key (and value, where one is given)."""
    if is_prefix:
        where, args = _prefix_clause(collection)
    else:
        where, args = "collection = ?", (collection,)
    rows = db.conn().execute(f"SELECT {_COLUMNS} FROM streams WHERE {where}"
                             " ORDER BY collection, id", args)
    out = []
    for row in rows:
        info = _row_info(row)
        if _matches(info.tags, tags) and _matches(info.annotations, annotations):
            out.append(info)
    return out


def metadata_usage(db: Db, prefix: str = "") -> tuple[dict[str, int], dict[str, int]]:
    """For each tag and annotation key, how many streams under ``prefix`` have it.

    The four fixed tag keys are always listed (as the v5 client's docstring shows)."""
    where, args = _prefix_clause(prefix)
    tags = {k: 0 for k in TAG_KEYS}
    anns: dict[str, int] = {}
    for t, a in db.conn().execute(f"SELECT tags, annotations FROM streams WHERE {where}",
                                  args):
        for k in json.loads(t):
            tags[k] = tags.get(k, 0) + 1
        for k in json.loads(a):
            anns[k] = anns.get(k, 0) + 1
    return tags, dict(sorted(anns.items()))
