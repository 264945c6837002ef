"""The queue of received files: one interface, two backends (architecture §5).

Model
-----
A queued file is identified by ``(serial, name)``: the uPMU's serial number as the device
sent it, and the file's path on the device (``/root/upmu_data/2015/Month_12/...``). The
name is untrusted text: backends store it as a value and never use it as a file-system
path. Besides its bytes a file has ``time_received`` (UTC) and ``ytag``.

Synced or not (the original tools' ``ytag``/``ytagbase``)
-----------------------------------------------------------
A file is synced iff ``ytag >= ytagbase``. New and replaced files get ``ytag = 0``;
sync2q sets ``ytag`` to the ``ytagbase`` in force when it listed the file. Raising
``ytagbase`` (:meth:`Queue.resync_all`) therefore makes every queued file unsynced again,
without touching a single file, which is how a rebuilt BTrDB is refilled.

``ytagbase`` lives in the queue itself (SQLite: table ``meta``; MongoDB: collection
``qss_meta`` of ``upmu_database``), not in ``qss.ini``: receiver, sync2q, upmu-adm and
qss-get must agree on it, a backup of the queue carries it, and raising it is an
operation on the queue, not a configuration edit. When absent it is 1, so files synced by
the original tools (any ``ytag >= 1``) count as synced and files they never synced
(``ytag`` missing) do not.

Durability
----------
:meth:`Queue.put` returns only after the file and the device's latest time are on disk
(SQLite: the contents fdatasynced in a data segment, then one transaction in WAL mode
with ``synchronous=FULL``; MongoDB: journaled writes). An acknowledgement to the device
may be sent then and only then.
"""
from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import enum
import logging
from collections.abc import Iterator
from typing import Any

from qss.logtext import escape
from qss.naming import parse_dat_filename

__all__ = [
    "Contents", "DEFAULT_YTAGBASE", "FileGone", "PutResult", "Queue", "QueueError",
    "QueuedFile", "SerialStats", "Tally", "Upload", "check_identity", "in_period", "utcnow",
]

log = logging.getLogger("qss.queue")

#: The ``ytagbase`` of a queue that never stored one (see the module docstring).
DEFAULT_YTAGBASE = 1
# The push protocol's limits (architecture §3), with headroom for imported names.
_MAX_SERIAL_LEN = 32
_MAX_NAME_BYTES = 4096


#: A file's contents for :meth:`Queue.put`: one buffer, or a list of buffers to be stored
#: one after the other (what a receiver got from the network, without joining them).
Contents = bytes | bytearray | memoryview | list[bytes | bytearray | memoryview]


class QueueError(Exception):
    """The queue cannot be opened or used; the message is one line naming it and why."""


class FileGone(QueueError, LookupError):
    """The file was deleted from the queue after it was listed."""


class FileUnreadable(QueueError):
    """The file is queued but its contents cannot be read (the SQLite queue: its data
    file is missing or short). Other files are unaffected: the file is damaged, not the
    queue. ``reason`` says why, without the queue's and the file's names."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class PutResult(enum.Enum):
    """What :meth:`Queue.put` did."""

    NEW = "new"              #: stored; the queue did not have this (serial, name)
    DUPLICATE = "duplicate"  #: the same bytes were already queued; nothing stored twice
    REPLACED = "replaced"    #: different bytes under the same name; the newer are kept


@dataclasses.dataclass(frozen=True, slots=True)
class QueuedFile:
    """One queued file as listed (its bytes are read with :meth:`Queue.read`).

    ``ref`` is the backend's handle on this very version of the file: :meth:`Queue.mark_synced`
    marks the file only if it was not replaced since it was listed.
    """

    serial: str
    name: str
    size: int
    time_received: dt.datetime
    ytag: int
    ref: Any = dataclasses.field(default=None, compare=False, repr=False)

    def synced(self, ytagbase: int) -> bool:
        """True when this file counts as synced under ``ytagbase``."""
        return self.ytag >= ytagbase


@dataclasses.dataclass(frozen=True, slots=True)
class Tally:
    """A number of files and their total size in bytes."""

    files: int = 0
    bytes: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.files + other.files, self.bytes + other.bytes)


@dataclasses.dataclass(frozen=True, slots=True)
class SerialStats:
    """Per-uPMU figures for ``upmu-adm list``/``status`` and ``qss-get --status``.

    ``last_received`` is when the device last pushed anything, resends included
    (``latest_times``), or None if it never did.
    """

    serial: str
    files: int
    bytes: int
    unsynced_files: int
    unsynced_bytes: int
    last_received: dt.datetime | None


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC, at millisecond precision (what MongoDB keeps)."""
    now = dt.datetime.now(dt.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def check_identity(serial: str, name: str) -> None:
    """Refuse a (serial, name) no backend should store.

    Raises:
        ValueError: empty, too long, NUL characters, or not encodable as UTF-8.
    """
    if not isinstance(serial, str) or not 1 <= len(serial) <= _MAX_SERIAL_LEN:
        raise ValueError(f"serial must be 1 to {_MAX_SERIAL_LEN} characters, not {serial!r}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"file name must be a non-empty string, not {name!r}")
    for what, text in (("serial", serial), ("file name", name)):
        # C tools down the line (and MongoDB keys, should a name ever become one) stop at NUL.
        if "\0" in text:
            raise ValueError(f"{what} contains a NUL character: {text!r}")
        try:
            length = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError(f"{what} is not valid Unicode: {text!r}") from None
        if length > _MAX_NAME_BYTES:
            raise ValueError(f"{what} is {length} bytes, over the limit of {_MAX_NAME_BYTES}")


def in_period(name: str, start: dt.datetime | None, end: dt.datetime | None) -> bool:
    """True when the file's time, from its name ``<SERIAL>_<YYYY-MM-DD-HH-MM-SS>.dat``,
    is in ``[start, end)`` (naive datetimes are UTC). No bounds: every file. A name that
    carries no time is in no bounded period."""
    if start is None and end is None:
        return True
    parsed = parse_dat_filename(name.rsplit("/", 1)[-1])
    if parsed is None:
        return False
    when = parsed[1]
    if start is not None and when < _aware(start):
        return False
    return end is None or when < _aware(end)


def _aware(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)


class Upload(abc.ABC):
    """A file being stored piece by piece, as it arrives (see :meth:`Queue.open_upload`).

    Call :meth:`write` with consecutive pieces, then :meth:`commit` once all ``size``
    bytes are written, or :meth:`abort`. Until :meth:`commit` returns the file is not in
    the queue: listings, reads and statistics do not see it, and a crash or an abort
    leaves nothing behind. Not thread-safe: one thread at a time per upload.
    """

    #: True when the pieces stay in this process's memory until :meth:`commit` (a backend
    #: that cannot store a file in pieces); the caller counts them as held meanwhile.
    holds_data: bool = False

    def __init__(self, serial: str, name: str, size: int) -> None:
        self.serial = serial
        self.name = name
        self.size = size
        self.written = 0

    @abc.abstractmethod
    def write(self, piece: bytes | bytearray | memoryview) -> None:
        """Store the next piece of the contents (not yet durable, not yet visible).

        Raises:
            ValueError: more than ``size`` bytes in all.
            QueueError: the store failed; abort and let the device resend.
        """

    @abc.abstractmethod
    def commit(self) -> PutResult:
        """Make the file part of the queue, durably (as :meth:`Queue.put` would have).

        Raises:
            ValueError: fewer than ``size`` bytes were written.
            QueueError: the store failed; nothing was acknowledged; abort.
        """

    @abc.abstractmethod
    def abort(self) -> None:
        """Forget the pieces written (the device will resend). Idempotent; never raises."""

    def _check_piece(self, piece: bytes | bytearray | memoryview) -> int:
        length = memoryview(piece).nbytes
        if self.written + length > self.size:
            raise ValueError(f"file {self.name!r}: {self.written + length} bytes written, "
                             f"more than the {self.size} announced")
        return length

    def _check_complete(self) -> None:
        if self.written != self.size:
            raise ValueError(f"file {self.name!r}: {self.written} bytes written of "
                             f"{self.size}")


class _BufferedUpload(Upload):
    """An upload kept in memory and stored with one :meth:`Queue.put` at commit."""

    holds_data = True

    def __init__(self, queue: Queue, serial: str, name: str, size: int,
                 time_received: dt.datetime | None) -> None:
        super().__init__(serial, name, size)
        self._queue = queue
        self._when = time_received
        self._data: bytearray | None = bytearray(size)

    def write(self, piece: bytes | bytearray | memoryview) -> None:
        length = self._check_piece(piece)
        if self._data is None:
            raise ValueError(f"file {self.name!r}: upload already finished")
        self._data[self.written:self.written + length] = piece
        self.written += length

    def commit(self) -> PutResult:
        self._check_complete()
        if self._data is None:
            raise ValueError(f"file {self.name!r}: upload already finished")
        try:
            return self._queue.put(self.serial, self.name, self._data,
                                   time_received=self._when)
        finally:
            self._data = None

    def abort(self) -> None:
        self._data = None


class Queue(abc.ABC):
    """The queue of received files. Open one with :func:`qss.queue.open_queue`.

    Safe to use from several threads and, for both backends, from several processes at
    once (receiver, sync2q, upmu-adm). Iterators fetch in pages with short reads, so a
    long iteration neither holds everything in memory nor blocks writers.
    """

    #: The URL this queue was opened from (for messages).
    url: str

    #: True when :meth:`put_many` stores its files together in one durable transaction
    #: (SQLite: one WAL fsync for all), so that one writer thread taking every file
    #: waiting does better than puts in parallel (MongoDB).
    group_commit: bool = False

    # -- writing ----------------------------------------------------------------------

    @abc.abstractmethod
    def put(self, serial: str, name: str, data: Contents, *,
            time_received: dt.datetime | None = None, update_latest: bool = True) -> PutResult:
        """Store a file durably; return only once it (and, with ``update_latest``, the
        device's latest time) survives a crash. ``data`` is the contents, in one buffer
        or as a list of consecutive pieces.

        Same (serial, name) and same bytes: nothing is written but the latest time
        (:attr:`PutResult.DUPLICATE`). Different bytes: the newer replace the older, the
        file becomes unsynced, and a warning is logged (:attr:`PutResult.REPLACED`).
        ``time_received`` defaults to now; ``update_latest=False`` is for imports, which
        are not a sign of life from the device.

        Raises:
            ValueError: see :func:`check_identity`.
            QueueError: the store failed; nothing was acknowledged, retrying is safe.
        """

    def put_many(self, files: list[tuple[str, str, Contents]]) -> list[PutResult | Exception]:
        """Store several ``(serial, name, data)`` files, each as :meth:`put` would (each
        with its own outcome: one file's failure does not undo another's); return per
        file its :class:`PutResult`, or the :class:`ValueError` or :class:`QueueError`
        that :meth:`put` would have raised. Returns once every file's outcome is known.
        This default puts them one after the other; see :attr:`group_commit`."""
        results: list[PutResult | Exception] = []
        for serial, name, data in files:
            try:
                results.append(self.put(serial, name, data))
            except (ValueError, QueueError) as exc:
                results.append(exc)
        return results

    def open_upload(self, serial: str, name: str, size: int, *,
                    time_received: dt.datetime | None = None) -> Upload:
        """Start storing a file of ``size`` bytes piece by piece (the receiver's way, so
        that no file need be held whole in memory); :meth:`Upload.commit` ends it as
        :meth:`put` would. This default keeps the pieces in memory (``holds_data``).

        Raises:
            ValueError: see :func:`check_identity`, or a negative size.
            QueueError: the store failed.
        """
        check_identity(serial, name)
        if size < 0:
            raise ValueError(f"size must not be negative, not {size}")
        return _BufferedUpload(self, serial, name, size, time_received)

    def unfinished_uploads(self) -> list:
        """The uploads left unfinished (by a crash or a stop), for
        :meth:`discard_uploads`. Only the receiver calls it, before it takes any file."""
        return []

    def discard_uploads(self, uploads: list | None = None) -> int:
        """Delete these unfinished uploads (None: all listed now; only safe while no
        upload is open); return how many. Safe to run while new uploads go on."""
        return 0

    @abc.abstractmethod
    def mark_synced(self, file: QueuedFile) -> bool:
        """Mark a listed file synced under the ``ytagbase`` in force when it was listed.

        Returns False (and marks nothing) when the file was replaced or deleted since it
        was listed: a replaced file stays unsynced and is listed again.
        """

    # -- reading ----------------------------------------------------------------------

    @abc.abstractmethod
    def get(self, serial: str, name: str) -> QueuedFile | None:
        """The queued file (serial, name), or None."""

    @abc.abstractmethod
    def read(self, file: QueuedFile) -> bytes | bytearray:
        """The file's bytes, read without holding a second whole copy in memory.

        Raises:
            FileGone: the file was deleted since it was listed.
        """

    @abc.abstractmethod
    def unsynced(self, serial: str, *, after: str | None = None,
                 page_size: int = 256) -> Iterator[QueuedFile]:
        """The serial's unsynced files in name order (name order is time order), from
        names after ``after``. Fetched a page at a time; files marked synced or added
        while iterating may or may not appear."""

    @abc.abstractmethod
    def files(self, serial: str, *, start: dt.datetime | None = None,
              end: dt.datetime | None = None, page_size: int = 256) -> Iterator[QueuedFile]:
        """All of the serial's files in name order, or those whose name's time is in
        ``[start, end)`` (see :func:`in_period`), synced or not."""

    @abc.abstractmethod
    def serials(self) -> list[str]:
        """Every serial with queued files or a latest time, sorted."""

    @abc.abstractmethod
    def stats(self) -> dict[str, SerialStats]:
        """Figures per serial (see :class:`SerialStats`), for every serial of :meth:`serials`."""

    # -- ytagbase -----------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def ytagbase(self) -> int:
        """The current ``ytagbase`` (see the module docstring)."""

    @abc.abstractmethod
    def resync_all(self) -> int:
        """Make every queued file unsynced by raising ``ytagbase`` above every ``ytag`` in
        the queue (files synced by the original tools included); return the new base."""

    # -- deleting -----------------------------------------------------------------------

    @abc.abstractmethod
    def count_synced(self, serial: str | None = None) -> Tally:
        """How many synced files (of one serial, or all) and their size."""

    @abc.abstractmethod
    def delete_synced(self, serial: str | None = None) -> Tally:
        """Delete synced files (of one serial, or all), in short batches; return what went.
        The space goes back to the file system (SQLite: incremental vacuum and a WAL
        truncation; MongoDB reuses it)."""

    @abc.abstractmethod
    def delete(self, serial: str, *, start: dt.datetime | None = None,
               end: dt.datetime | None = None) -> Tally:
        """Delete the serial's files, synced or not: all of them (and its latest time),
        or those of ``[start, end)`` (see :func:`in_period`). For ``upmu-adm rem`` and
        ``delbackup``."""

    # -- housekeeping -------------------------------------------------------------------

    @abc.abstractmethod
    def ensure_indexes(self) -> list[str]:
        """Create missing indexes; return a description of each one created (empty when
        all existed)."""

    @property
    @abc.abstractmethod
    def storage_dir(self) -> str | None:
        """The local directory holding the queue's data (for the disk guard), or None
        when the backend cannot tell (a MongoDB server)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections. Idempotent."""

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


def log_replaced(url: str, serial: str, name: str, old_size: int, new_size: int) -> None:
    """The one warning line for :attr:`PutResult.REPLACED` (shared by the backends)."""
    log.warning("queue %s: file '%s' of uPMU %s arrived again with different contents "
                "(%d bytes, was %d); kept the newer and marked it unsynced",
                url, escape(name), escape(serial), new_size, old_size)
