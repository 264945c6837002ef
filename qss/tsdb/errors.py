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
