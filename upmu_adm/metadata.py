"""save's BTrDB step: create or update the streams' metadata of new and changed uPMUs.

This is the old ``manager2lite.ipy`` step, done by ``save`` itself with sync2q's own code
(:mod:`qss.streammeta` decides what each stream must look like and makes it so,
:mod:`qss.btrdbclient` connects with deadlines), so upmu-adm and sync2q can never
disagree about a stream. The operator is waiting, so every call gets a short deadline
(:data:`DEADLINE`) instead of sync2q's minute, and nothing is retried here: ``save``
reports what is pending and the operator (or sync2q, which ensures the streams of every
new or changed uPMU itself once BTrDB answers) retries.

The same connection code counts and deletes a removed uPMU's streams (:meth:`BtrdbMetadata.
stored`, :meth:`BtrdbMetadata.obliterate`) when the operator asked for it at ``rem``;
streams are deleted through the official client (``Stream.obliterate``).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from qss.upmuconfig import Upmu

__all__ = ["DEADLINE", "Applied", "BtrdbMetadata", "MetadataError", "Stored",
           "StoredDataError"]

#: Seconds each BTrDB call of save may take.
DEADLINE = 3.0


@dataclass(frozen=True)
class Applied:
    """What was done to one uPMU's streams."""

    upmu: Upmu
    created: int
    updated: int
    unchanged: int

    def describe(self) -> str:
        parts = [f"{n} {what}" for n, what in ((self.created, "created"),
                                              (self.updated, "updated"),
                                              (self.unchanged, "already right")) if n]
        return f"{self.upmu.describe()} {', '.join(parts) or 'no streams'}"


class MetadataError(Exception):
    """The metadata of ``pending`` (in order) could not be applied; ``done`` were.
    ``refused``: BTrDB refuses a stream as configured (retrying does not help until the
    file or the stream is fixed); otherwise BTrDB is unreachable or failing."""

    def __init__(self, reason: str, refused: bool, done: list[Applied],
                 pending: list[Upmu]) -> None:
        super().__init__(reason)
        self.reason, self.refused, self.done, self.pending = reason, refused, done, pending


@dataclass(frozen=True)
class Stored:
    """What BTrDB holds of some streams: those that exist, and their points (None when
    not counted)."""

    existing: tuple[UUID, ...]
    points: int | None


class StoredDataError(Exception):
    """BTrDB is unreachable or failing while counting or deleting streams; ``done``: the
    streams deleted before it failed."""

    def __init__(self, reason: str, done: Sequence[UUID] = ()) -> None:
        super().__init__(reason)
        self.reason, self.done = reason, list(done)


def _quiet_client_logging() -> None:
    """Keep log lines off the operator's screen: importing the btrdb client calls
    ``logging.basicConfig(level=INFO)`` (then numexpr and sync2q's INFO lines would be
    printed). save reports what happened itself, so a root handler that drops records
    makes that basicConfig a no-op."""
    import logging
    if not logging.root.handlers:
        logging.root.addHandler(logging.NullHandler())


@dataclass
class BtrdbMetadata:
    """Where and how save applies the streams' metadata (``[btrdb] endpoints``)."""

    endpoints: Sequence[str]
    apikey: str | None = None
    deadline: float = DEADLINE
    opener: Callable[..., object] | None = field(default=None, repr=False)  # tests

    @property
    def what(self) -> str:
        """``BTrDB 127.0.0.1:4410``, for messages."""
        return f"BTrDB {','.join(self.endpoints)}"

    def _connection(self):
        _quiet_client_logging()
        from qss.btrdbclient import Btrdb, connect
        return Btrdb(list(self.endpoints), self.apikey, deadline=self.deadline,
                     opener=self.opener or connect)

    def _failure(self, btrdb, exc: BaseException, done: Sequence[UUID] = ()
                 ) -> StoredDataError:
        from qss.btrdbclient import describe_error
        return StoredDataError(f"{btrdb.what} is unreachable or failing "
                               f"({describe_error(exc)})", done)

    def stored(self, uuids: Sequence[UUID]) -> Stored:
        """Which of these streams exist, and how many points they hold (the client's
        ``Stream.count()``: aligned windows, cheap; None if counting fails).

        Raises:
            StoredDataError: BTrDB does not answer.
        """
        btrdb = self._connection()          # first: it quiets the client's logging
        from btrdb.exceptions import StreamNotFoundError
        try:
            db = btrdb.get()
            existing = [u for u in uuids if db.stream_from_uuid(u).exists()]
            points: int | None = 0
            for u in existing:
                try:
                    points += db.stream_from_uuid(u).count()
                except StreamNotFoundError:
                    pass                        # deleted meanwhile
                except Exception:  # noqa: BLE001 - a count is a nicety
                    points = None
                    break
            return Stored(tuple(existing), points)
        except Exception as exc:  # noqa: BLE001 - reported to the operator
            raise self._failure(btrdb, exc) from exc
        finally:
            btrdb.close()

    def obliterate(self, uuids: Sequence[UUID]) -> list[UUID]:
        """Delete these streams and all their data (``Stream.obliterate()``); returns
        those deleted (a stream already gone is skipped).

        Raises:
            StoredDataError: BTrDB failed; ``done`` lists the streams deleted before.
        """
        btrdb = self._connection()          # first: it quiets the client's logging
        from btrdb.exceptions import StreamNotFoundError
        done: list[UUID] = []
        try:
            db = btrdb.get()
            for u in uuids:
                try:
                    db.stream_from_uuid(u).obliterate()
                except StreamNotFoundError:
                    continue
                done.append(u)
        except Exception as exc:  # noqa: BLE001 - reported to the operator
            raise self._failure(btrdb, exc, done) from exc
        finally:
            btrdb.close()
        return done

    def apply(self, upmus: Sequence[Upmu]) -> list[Applied]:
        """Make the streams of ``upmus`` exist with their metadata, one uPMU after the
        other; stops at the first failure.

        Raises:
            MetadataError: what failed, what was done, what is pending.
        """
        _quiet_client_logging()
        # The BTrDB client code (and grpc, 0.1 s to import) only when there is something
        # to apply: upmu-adm starts fast.
        from qss.btrdbclient import Btrdb, ErrorKind, classify, connect, describe_error
        from qss.streammeta import StreamConflict, StreamRegistry, specs_of
        btrdb = Btrdb(list(self.endpoints), self.apikey, deadline=self.deadline,
                      opener=self.opener or connect)
        registry = StreamRegistry(btrdb)
        applied: list[Applied] = []
        try:
            for i, upmu in enumerate(upmus):
                specs = specs_of(upmu)
                done: dict[str, list[str]] = {}
                try:
                    registry.ensure(upmu, specs, done=done)
                except StreamConflict as exc:
                    raise MetadataError(str(exc), True, applied, list(upmus[i:])) from exc
                except Exception as exc:  # noqa: BLE001 - sorted by classify()
                    refused = classify(exc) is ErrorKind.REFUSED
                    reason = describe_error(exc)
                    if not refused:
                        reason = f"{btrdb.what} is unreachable or failing ({reason})"
                    raise MetadataError(reason, refused, applied,
                                        list(upmus[i:])) from exc
                created = sum(len(v) for k, v in done.items() if k.startswith("created"))
                updated = sum(len(v) for k, v in done.items()) - created
                applied.append(Applied(upmu, created, updated,
                                       len(specs) - created - updated))
        finally:
            btrdb.close()
        return applied
