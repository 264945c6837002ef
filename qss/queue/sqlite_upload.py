"""An upload to the SQLite queue: a file stored piece by piece as it arrives, visible only
once committed (:meth:`qss.queue.sqlite.SqliteQueue.open_upload`; the module docstring of
:mod:`qss.queue.sqlite` tells the tables and why)."""
from __future__ import annotations

import datetime as dt
import sqlite3

from qss.logtext import escape

from .base import PutResult, Queue, QueueError, Upload, log, log_replaced, utcnow


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
    """An upload as rows of ``upload_pieces`` (see the module docstring)."""

    def __init__(self, queue: Queue, serial: str, name: str, size: int, upload: int,
                 time_received: dt.datetime | None) -> None:
        super().__init__(serial, name, size)
        self._queue = queue
        self._id = upload
        self._pieces = 0
        self._when = time_received
        self._done = False

    def _failed(self, exc: sqlite3.Error) -> QueueError:
        return self._queue._error(f"cannot store file {self.name!r} of uPMU {self.serial}", exc)

    def write(self, piece: bytes | bytearray | memoryview) -> None:
        length = self._check_piece(piece)
        if self._done:
            raise ValueError(f"file {self.name!r}: upload already finished")
        if not length:
            return
        try:
            with self._queue._write(durable=False) as db:
                db.execute("INSERT INTO upload_pieces (upload, seq, data) VALUES (?, ?, ?)",
                           (self._id, self._pieces, as_bytes_view(piece)))
        except sqlite3.Error as exc:
            raise self._failed(exc) from None
        self._pieces += 1
        self.written += length

    def _assemble(self) -> int:
        """Copy the pieces into a new file_data row, a piece per short transaction."""
        queue = self._queue
        with queue._write(durable=False) as db:
            fid = db.execute("INSERT INTO file_data (data) VALUES (zeroblob(?))",
                             (self.size,)).lastrowid
            db.execute("UPDATE uploads SET file = ? WHERE id = ?", (fid, self._id))
        offset = 0
        for seq in range(self._pieces):
            with queue._write(durable=False) as db:
                data, = db.execute("SELECT data FROM upload_pieces WHERE upload = ? AND seq = ?",
                                   (self._id, seq)).fetchone()
                with db.blobopen("file_data", "data", fid) as blob:
                    blob.seek(offset)
                    blob.write(data)
                db.execute("DELETE FROM upload_pieces WHERE upload = ? AND seq = ?",
                           (self._id, seq))
            offset += len(data)
        return fid

    def commit(self) -> PutResult:
        self._check_complete()
        if self._done:
            raise ValueError(f"file {self.name!r}: upload already finished")
        queue, size = self._queue, self.size
        when = to_us(self._when or utcnow())
        old_size = 0
        try:
            fid = self._assemble()
            with queue._write() as db:
                row = db.execute("SELECT id, size FROM received_files "
                                 "WHERE serial_number = ? AND name = ?",
                                 (self.serial, self.name)).fetchone()
                if row is None:
                    db.execute("INSERT INTO received_files (id, serial_number, name, size, "
                               "time_received) VALUES (?, ?, ?, ?, ?)",
                               (fid, self.serial, self.name, size, when))
                    result = PutResult.NEW
                elif row[1] == size and queue._blobs_equal(row[0], fid, size):
                    db.execute("DELETE FROM file_data WHERE id = ?", (fid,))
                    result = PutResult.DUPLICATE
                else:
                    # The row moves to the new contents (a new id: a listing of the old
                    # version then reads FileGone and marks nothing).
                    old_id, old_size = row
                    db.execute("UPDATE received_files SET id = ?, size = ?, time_received = ?,"
                               " ytag = 0, published = 0, generation = generation + 1"
                               " WHERE id = ?", (fid, size, when, old_id))
                    db.execute("DELETE FROM file_data WHERE id = ?", (old_id,))
                    result = PutResult.REPLACED
                db.execute("DELETE FROM uploads WHERE id = ?", (self._id,))
                queue._update_latest(db, self.serial, when)
        except sqlite3.Error as exc:
            raise self._failed(exc) from None
        self._done = True
        if result is PutResult.REPLACED:
            log_replaced(queue.url, self.serial, self.name, old_size, size)
        return result

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        queue = self._queue
        try:
            queue._forget_upload(self._id)
        except sqlite3.Error as exc:   # the next start of the receiver deletes it
            log.warning("queue %s: cannot delete the unfinished upload of file '%s': %s",
                        queue.url, escape(self.name), exc)
