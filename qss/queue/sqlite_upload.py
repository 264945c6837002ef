"""An upload to the SQLite queue: a file stored piece by piece as it arrives, visible only
once committed (:meth:`qss.queue.sqlite.SqliteQueue.open_upload`; the module docstring of
:mod:`qss.queue.sqlite` tells the tables and why)."""
from __future__ import annotations

import datetime as dt
import sqlite3

from .base import PutResult, Queue, QueueError, Upload, log_replaced
from .sqlite_segments import Part


def to_us(when: dt.datetime) -> int:
    """Microseconds since 1970 UTC (a naive time counts as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    delta = when - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def as_bytes_view(data: bytes | bytearray | memoryview) -> memoryview:
    """A flat byte view of ``data``, without a copy."""
    view = memoryview(data)
    if view.ndim != 1 or view.format not in ("B", "b", "c"):
        view = view.cast("B")
    if not view.contiguous:
        raise ValueError("file contents must be a contiguous buffer")
    return view



class SqliteUpload(Upload):
    """An upload as a data file of its own (``u-*.part``, see
    :mod:`qss.queue.sqlite_segments`), appended as pieces arrive, made a segment at the
    commit."""

    def __init__(self, queue: Queue, serial: str, name: str, size: int, part: Part,
                 time_received: dt.datetime | None) -> None:
        super().__init__(serial, name, size)
        self._queue = queue
        self.part = part
        self.when = time_received
        self._done = False

    def _failed(self, exc: Exception) -> QueueError:
        return self._queue._error(f"cannot store file {self.name!r} of uPMU {self.serial}", exc)

    def write(self, piece: bytes | bytearray | memoryview) -> None:
        length = self._check_piece(piece)
        if self._done:
            raise ValueError(f"file {self.name!r}: upload already finished")
        if not length:
            return
        try:
            self.part.write(as_bytes_view(piece))
        except OSError as exc:
            raise self._failed(exc) from None
        self.written += length

    def commit(self) -> PutResult:
        self._check_complete()
        if self._done:
            raise ValueError(f"file {self.name!r}: upload already finished")
        try:
            result, old_size = self._queue._commit_upload(self)
        except (sqlite3.Error, OSError) as exc:
            raise self._failed(exc) from None
        self._done = True
        # Now a segment some row points into (or, for a duplicate, a part nobody needs).
        self.part.close(delete=result is PutResult.DUPLICATE)
        if result is PutResult.REPLACED:
            log_replaced(self._queue.url, self.serial, self.name, old_size, self.size)
        return result

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        # No committed row points into it (a failed commit rolled its row back).
        self.part.close(delete=True)
