"""Errors of the storage engine, each carrying the BTrDB status code it maps to.

The gRPC adapter puts ``code`` and ``message`` in the response's ``stat`` field, where the
official client turns them into its exceptions (reference/btrdb-v5.md §1); the REST adapter
turns them into HTTP 400 with the message.
"""
from __future__ import annotations

# Time bounds of the BTrDB tree (reference/btrdb-v5.md §0): the root spans [MIN, MAX).
MINIMUM_TIME = -(16 << 56)
MAXIMUM_TIME = 48 << 56


class TsdbError(Exception):
    """Base class; ``code`` is the BTrDB status code."""

    code = 416  # GenericError

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NoSuchPoint(TsdbError):
    code = 401


class StreamNotFound(TsdbError):
    code = 404


class InvalidCollection(TsdbError):
    code = 407


class InvalidTagKey(TsdbError):
    code = 408


class InvalidTagValue(TsdbError):
    code = 409


class InvalidTimeRange(TsdbError):
    code = 413


class InvalidPointWidth(TsdbError):
    code = 415


class StreamExists(TsdbError):
    code = 417


class AmbiguousStream(TsdbError):
    code = 418


class WrongArgs(TsdbError):
    code = 421


class PropertyVersionMismatch(TsdbError):
    """BTrDB's AnnotationVersionMismatch: the compare-and-set saw another version."""

    code = 423


class BadValue(TsdbError):
    code = 425


class InvalidVersions(TsdbError):
    code = 427


class RecycledUUID(TsdbError):
    code = 429


class VersionNotAvailable(TsdbError):
    code = 450


class NotSupported(TsdbError):
    """BTrDB's NotImplemented."""

    code = 501


class ResourceDepleted(TsdbError):
    """The disk (or the database's size limit) is full; nothing of the write was kept."""

    code = 426


class StorageFailure(TsdbError):
    """The database file could not be read or written (I/O error, corruption)."""

    code = 500


# SQLite primary result codes (https://sqlite.org/rescode.html).
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 10, 11, 13, 26


def storage_error(exc: Exception) -> TsdbError | None:
    """The engine error for an ``sqlite3.Error`` caused by the disk or the file, or None
    when it is something else (a programming error, best left as it is)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return None
    code &= 0xFF
    if code == _SQLITE_FULL:
        return ResourceDepleted("disk full: the write was not stored (free space on the "
                                "data disk)")
    if code == _SQLITE_IOERR:
        return StorageFailure(f"I/O error on the database file: {exc}")
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return StorageFailure(f"the database file is damaged: {exc}")
    return None
