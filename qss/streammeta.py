"""Making sure a uPMU's streams exist in BTrDB with the metadata ``upmuconfig.ini`` gives.

For each stream with a UUID in the uPMU's section (architecture §5, §6):

- collection: ``Path`` without the stream name and the leading slash (``upmu/uPMU1``);
- tags: ``name`` (the last element of ``Path``) and ``unit``;
- annotations: the uPMU's ``Metadata`` and the stream's ``Properties``, flattened with
  ``/``-joined keys (``Metadata/Instrument/SerialNumber``, ``Properties/UnitofMeasure``).

A missing stream is created; an existing one whose collection, tags or annotations differ
is updated. Annotations under ``Metadata/`` and ``Properties/`` are ours: values are set,
and keys of ours no longer in the file are removed. Other annotations (added by users or
distillates) are left alone. Values are sent as the raw strings of the file (the
client's JSON encoding would turn ``"1.0"`` into ``1.0`` and quote others) and compared
as raw strings (``Endpoint.streamInfo`` gives them undecoded).

What was checked is remembered per connection, keyed by the desired metadata, so a
stream is looked at once per (connection, metadata) and again after a config change, a
reconnect, or a 404 on insert (:meth:`StreamRegistry.forget`).
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import uuid as uuidlib
from concurrent import futures

from qss.upmuconfig import Upmu

from .btrdbclient import Btrdb, ErrorKind, classify, describe_error

log = logging.getLogger(__name__)

#: Annotation key prefixes sync2q owns (see the module docstring).
OWN_PREFIXES = ("Metadata/", "Properties/")
#: Streams checked or created at a time (see :meth:`StreamRegistry._ensure_all`).
ENSURE_AT_ONCE = 8


@dataclasses.dataclass(frozen=True)
class StreamSpec:
    """What one stream should look like in BTrDB."""

    name: str                      # the uPMU stream name, L1MAG ... FREQ_L1_C37
    uuid: uuidlib.UUID
    collection: str
    tags: tuple[tuple[str, str], ...]
    annotations: tuple[tuple[str, str], ...]

    @property
    def tag_dict(self) -> dict[str, str]:
        return dict(self.tags)

    @property
    def annotation_dict(self) -> dict[str, str]:
        return dict(self.annotations)


def specs_of(upmu: Upmu) -> dict[str, StreamSpec]:
    """The desired state of every stream of ``upmu`` that has a UUID, by stream name."""
    out = {}
    for name, info in upmu.streams.items():
        out[name] = StreamSpec(name, info.uuid, upmu.collection(name),
                               tuple(sorted(upmu.tags(name).items())),
                               tuple(sorted(upmu.annotations(name).items())))
    return out


class StreamConflict(Exception):
    """BTrDB refuses a stream as configured (e.g. another stream already has its
    collection and name, or its UUID belonged to a deleted stream). The message is one
    line naming the stream and the fix."""


class StreamRegistry:
    """Ensures streams (see the module docstring) and hands out client stream handles."""

    def __init__(self, btrdb: Btrdb) -> None:
        self._btrdb = btrdb
        self._lock = threading.Lock()
        # uuid -> (connection generation, spec) last verified
        self._verified: dict[uuidlib.UUID, tuple[int, StreamSpec]] = {}

    def forget(self, uuids=None) -> None:
        """Check these streams (all, when None) again before their next use."""
        with self._lock:
            if uuids is None:
                self._verified.clear()
            else:
                for u in uuids:
                    self._verified.pop(u, None)

    def ensure(self, upmu: Upmu, specs: dict[str, StreamSpec], names=None,
               done: dict[str, list[str]] | None = None) -> dict:
        """Make sure the streams ``names`` (all of ``specs`` when None) exist with their
        metadata; return ``{stream name: btrdb Stream}`` for them. ``done``, when given,
        receives what was done (as logged) -> stream names, also when an error ends it
        (upmu-adm reports it to the operator).

        Raises:
            StreamConflict: BTrDB refuses one of them as configured.
            Exception: from the client when BTrDB is unavailable (see
                :func:`~qss.btrdbclient.classify`).
        """
        db = self._btrdb.get()
        generation = self._btrdb.generation
        names = list(specs if names is None else names)
        if done is None:
            done = {}                       # what was done -> stream names, for one line
        with self._lock:
            todo = [n for n in names
                    if self._verified.get(specs[n].uuid) != (generation, specs[n])]
        try:
            for name, action in self._ensure_all(db, upmu, [specs[n] for n in todo]):
                if action:
                    done.setdefault(action, []).append(name)
                with self._lock:
                    self._verified[specs[name].uuid] = (generation, specs[name])
        finally:
            for action, streams in done.items():
                log.info("uPMU %s: %d streams %s: %s", upmu.describe(), len(streams), action,
                         ", ".join(streams))
        return {name: db.stream_from_uuid(specs[name].uuid) for name in names}

    def _ensure_all(self, db, upmu: Upmu, specs: list[StreamSpec]):
        """Yield (stream name, what was done) for each of ``specs`` that succeeded, in
        order, checking and creating up to :data:`ENSURE_AT_ONCE` of them at a time;
        then raise the first failure in that order, if any. A refusal stops no other
        spec; at any other failure the specs not yet started are dropped (a later call
        does them) and calls already running end in the background.

        One at a time, a new uPMU's 19 streams took 38 RPCs in a row (a failing
        ``streamInfo``, then ``create``, which waits for an fsync on the server): ~0.1 s
        with the server idle, and 0.4-0.5 s for a drain's 4 uPMUs while sync2q's reader
        held the GIL (py-spy). At once, their waits overlap and the server's fsyncs of
        concurrent creates are shared."""
        if len(specs) <= 1:
            for spec in specs:
                yield spec.name, self._ensure_one(db, upmu, spec)
            return
        pool = futures.ThreadPoolExecutor(min(ENSURE_AT_ONCE, len(specs)),
                                          thread_name_prefix="streammeta")
        try:
            jobs = [pool.submit(self._ensure_one, db, upmu, spec) for spec in specs]
            # A refused stream (StreamConflict) stops none else; any other failure (an
            # outage) stops the round: the specs not yet started are dropped, so a BTrDB
            # that accepts but never answers costs one call's timeout, not one per round
            # of ENSURE_AT_ONCE.
            pending = set(jobs)
            while pending:
                done, pending = futures.wait(pending, return_when=futures.FIRST_EXCEPTION)
                if any(job.exception() is not None
                       and not isinstance(job.exception(), StreamConflict) for job in done):
                    break
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        failure = None
        for spec, job in zip(specs, jobs):
            if not job.done() or job.cancelled():
                continue
            if job.exception() is None:
                yield spec.name, job.result()
            elif failure is None:
                failure = job.exception()
        if failure is not None:
            raise failure

    def _ensure_one(self, db, upmu: Upmu, spec: StreamSpec) -> str | None:
        """Create or fix one stream; returns what it did, for the log (None: nothing)."""
        from btrdb import exceptions as bx
        what = f"uPMU {upmu.describe()}: stream {spec.name} ({spec.uuid})"
        try:
            collection, version, tags, annotations, _ = db.ep.streamInfo(spec.uuid, False,
                                                                         True)
        except bx.StreamNotFoundError:
            try:
                db.create(spec.uuid, spec.collection, spec.tag_dict, spec.annotation_dict)
            except bx.StreamExists:   # created meanwhile by someone else: check it
                return self._ensure_one(db, upmu, spec)
            except Exception as exc:
                self._refused(what, "cannot be created", exc)
                raise
            return f"created in collection {spec.collection!r}"
        want_tags = spec.tag_dict
        did = []
        try:
            if collection != spec.collection or any(tags.get(k) != v
                                                    for k, v in want_tags.items()):
                db.ep.setStreamTags(spec.uuid, version, want_tags, spec.collection)
                did.append(f"moved to collection {spec.collection!r}"
                           if collection != spec.collection else "re-tagged")
                # Read the property version back: another writer may have bumped it too.
                _, version, _, annotations, _ = db.ep.streamInfo(spec.uuid, False, True)
            want = spec.annotation_dict
            changes = {k: v for k, v in want.items() if annotations.get(k) != v}
            removals = [k for k in annotations if k.startswith(OWN_PREFIXES) and k not in want]
            if changes or removals:
                db.ep.setStreamAnnotations(spec.uuid, version, changes, removals)
                did.append(f"with annotations updated ({', '.join(sorted(changes))} set"
                           + (f"; {', '.join(sorted(removals))} removed)" if removals else ")"))
        except Exception as exc:
            self._refused(what, "metadata cannot be updated", exc)
            raise
        return ", ".join(did) or None

    @staticmethod
    def _refused(what: str, doing: str, exc: Exception) -> None:
        if classify(exc) is ErrorKind.REFUSED:
            raise StreamConflict(
                f"{what} {doing}: {describe_error(exc)}; its files wait in the queue until "
                f"upmuconfig.ini is fixed (e.g. another stream already has this collection "
                f"and name, or the UUID belonged to a deleted stream)") from exc
