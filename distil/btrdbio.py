"""What the engine asks of BTrDB, through the official client only (architecture §6):
versions and changed ranges, reads, replacing an output over a range, flushing, and
making sure the output streams exist with their metadata.
"""
from __future__ import annotations

import uuid as uuidlib

import numpy as np

from qss.btrdbclient import arrow_insert

from .distillate import Instance
from .ranges import Range

#: Annotation keys distil owns on its output streams.
ANNOTATIONS = ("distil/distillate", "distil/version", "distil/instance", "distil/rebaser",
               "distil/input/")


#: Points per Arrow insert RPC: a chunk (24 min) of a 120 Hz output in one call (the
#: client's Stream.arrow_insert cuts at 50,000; sync2q sends up to this many, well under
#: gRPC's 4 MB), through qss.btrdbclient.arrow_insert, which leaves the client's
#: process-wide batch size alone.
INSERT_POINTS = 172_800


class InputMissing(Exception):
    """An input stream does not exist (yet): the instance waits for it."""


def version(db, uuid: uuidlib.UUID) -> int:
    """The stream's current data version.

    Raises:
        InputMissing: no such stream.
    """
    from btrdb.exceptions import StreamNotFoundError
    try:
        return int(db.stream_from_uuid(uuid).version())
    except StreamNotFoundError:
        raise InputMissing(f"stream {uuid} does not exist") from None


def changes(db, uuid: uuidlib.UUID, since: int) -> tuple[list[Range], int]:
    """The ranges written since version ``since`` and the version they lead to."""
    out, to = [], since
    for batch, to in db.ep.changes(uuid, since, 0, 0):
        out += [(r.start, r.end) for r in batch]
    return out, int(to)


def read(db, uuid: uuidlib.UUID, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
    """The points in [start, end) as int64 ns times and float64 values."""
    stream = db.stream_from_uuid(uuid)
    if db._ARROW_ENABLED:
        import pyarrow as pa
        table = stream.arrow_values(start, end)
        t = table.column("time").cast(pa.int64()).to_numpy()
        v = table.column("value").to_numpy()
        return np.asarray(t, np.int64), np.asarray(v, np.float64)
    points = [p for p, _ in stream.values(start, end)]
    return (np.fromiter((p.time for p in points), np.int64, len(points)),
            np.fromiter((p.value for p in points), np.float64, len(points)))


def next_time(db, uuid: uuidlib.UUID, at: int, backward: bool = False) -> int | None:
    """The time of the first point at or after ``at`` (``backward``: the last before
    it), or None."""
    found = db.stream_from_uuid(uuid).nearest(at, 0, backward=backward)
    return None if found is None else int(found[0].time)


def end_of(db, uuid: uuidlib.UUID) -> int:
    """Just past the stream's last point (the earliest time when it has none)."""
    from .ranges import MAXIMUM_TIME, MINIMUM_TIME
    last = next_time(db, uuid, MAXIMUM_TIME - 1, backward=True)
    return MINIMUM_TIME if last is None else last + 1


def first_in(db, uuid: uuidlib.UUID, within: list[Range]) -> int | None:
    """The time of the stream's first point in any of the sorted, disjoint ranges
    ``within``, or None: one ``nearest`` query per range it skips."""
    i = 0
    while i < len(within):
        t = next_time(db, uuid, within[i][0])
        if t is None:
            return None
        while i < len(within) and within[i][1] <= t:
            i += 1
        if i < len(within) and within[i][0] <= t:
            return t
    return None


def count_about(db, uuid: uuidlib.UUID, within: list[Range]) -> int:
    """The stream's points in the ranges, from statistics: about 64 aligned windows a
    range, so a range's count may include up to two windows' worth beside it."""
    stream = db.stream_from_uuid(uuid)
    total = 0
    for a, b in within:
        pw = min(62, max(20, ((b - a) // 64).bit_length()))
        total += sum(w.count for w, _ in stream.aligned_windows(a, b, pw))
    return total


def replace(db, uuid: uuidlib.UUID, start: int, end: int, t: np.ndarray,
            v: np.ndarray, delete: bool = True) -> None:
    """Make the stream hold exactly (t, v) in [start, end): delete, then insert
    (``delete=False``: the caller knows the range holds nothing)."""
    stream = db.stream_from_uuid(uuid)
    if delete:
        stream.delete(start, end)
    if not len(t):
        return
    if db._ARROW_ENABLED:
        arrow_insert(stream, t, v, "replace", INSERT_POINTS)
    else:
        stream.insert(list(zip(t.tolist(), v.tolist())), merge="replace")


def flush(db, uuid: uuidlib.UUID) -> None:
    db.stream_from_uuid(uuid).flush()


def resolve(db, path: str) -> uuidlib.UUID:
    """The UUID of the stream at ``collection/name``.

    Raises:
        InputMissing: none (or the path names no stream).
    """
    collection, _, name = path.strip("/").rpartition("/")
    found = db.streams_in_collection(collection, is_collection_prefix=False,
                                     tags={"name": name}) if collection else []
    if not found:
        raise InputMissing(f"no stream {path!r} in BTrDB")
    return found[0].uuid


def output_annotations(inst: Instance, inputs: dict[str, uuidlib.UUID]) -> dict[str, str]:
    """What an output stream says of its making: distillate, version, instance, rebaser,
    and one ``distil/input/<role>`` = ``<path> <uuid>`` per input (BTrDB allows 255
    characters a value)."""
    d = inst.distillate
    return {"distil/distillate": d.name, "distil/version": str(d.version),
            "distil/instance": inst.name, "distil/rebaser": d.rebaser.describe(),
            **{f"distil/input/{r}": f"{inst.inputs[r].path} {u}"
               for r, u in sorted(inputs.items())}, **inst.tags}


def ensure_outputs(db, inst: Instance, inputs: dict[str, uuidlib.UUID]) -> list[str]:
    """Create the instance's output streams, or fix their collection, tags and
    annotations; returns what was done, for the log."""
    from btrdb.exceptions import StreamNotFoundError
    want = output_annotations(inst, inputs)
    done = []
    for role, unit in inst.distillate.outputs.items():
        uu = inst.output_uuid(role)
        tags = {"name": role, "unit": unit}
        try:
            collection, ver, have_tags, annotations, _ = db.ep.streamInfo(uu, False, True)
        except StreamNotFoundError:
            db.create(uu, inst.collection, tags, want)
            done.append(f"created {inst.output_path(role)}")
            continue
        if collection != inst.collection or any(have_tags.get(k) != v for k, v in tags.items()):
            db.ep.setStreamTags(uu, ver, tags, inst.collection)
            _, ver, _, annotations, _ = db.ep.streamInfo(uu, False, True)
            done.append(f"moved {inst.output_path(role)}")
        changes = {k: v for k, v in want.items() if annotations.get(k) != v}
        if changes:
            db.ep.setStreamAnnotations(uu, ver, changes, [])
            done.append(f"annotated {inst.output_path(role)}")
    return done
