"""What the receiver does with one pushed file: check, store, decide the reply, log.

No asyncio and no sockets here. The service calls :meth:`Intake.admit` as soon as a
file's header, path and serial are in, before any of its contents: a file refused there
is never stored and its contents are thrown away as they arrive. An admitted file is then
stored whole (:meth:`Intake.store`, one queue put) or, when it arrives in several pieces,
through a queue upload (:meth:`Intake.open_upload`, :meth:`Intake.finish`); these run in
the service's writer threads and return the 4 reply bytes. The checks, in order:

1. the serial number is in ``upmuconfig.ini`` (read again whenever its fingerprint
   changes, so ``upmu-adm save`` takes effect without a restart; a file that no longer
   parses leaves the last good list in force, with one log line);
2. the data disk is below ``max_disk_percent`` (checked at most every ``disk_check_s``);
3. the serial and path are storable (no NUL, not too long);
4. the queue stores it durably.

Anything else is the failure reply (four zero bytes): the device keeps the file and
sends it again later, so nothing is lost by refusing.

Files are queued under the serial as ``upmuconfig.ini`` spells it (serials match ignoring
case), which is the spelling sync2q asks the queue for. Every value a sender chose
(serial, path) goes through :func:`qss.logtext.escape` before it reaches a log line.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from dataclasses import dataclass

from qss.logtext import escape
from qss.protocol import FAILURE_REPLY, FileHeader, encode_reply
from qss.queue import Contents, PutResult, Queue, QueueError, Upload, check_identity
from qss.upmuconfig import Upmu, UpmuConfigError, UpmuList, fingerprint

__all__ = ["DiskGuard", "Intake", "PushedFile", "RefusalLog", "UpmuDirectory",
           "disk_percent"]

log = logging.getLogger("receiver")


def disk_percent(path: str) -> float:
    """How full the file system holding ``path`` is, in percent (psutil).

    A path that does not exist yet is measured at its nearest existing parent.

    Raises:
        OSError: the file system cannot be queried.
    """
    import psutil   # imported here so the protocol and tests of the logic need no psutil
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return psutil.disk_usage(path).percent


class UpmuDirectory:
    """The uPMU list of ``path``, reloaded when the file's fingerprint changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._list = UpmuList.parse("", path)
        self._seen: object = "never loaded"   # fingerprint of the last attempt
        self.refresh()

    def refresh(self) -> UpmuList:
        """The current list: re-read if the file changed since the last look."""
        with self._lock:
            current = fingerprint(self.path)
            if current != self._seen:
                self._seen = current
                try:
                    self._list = UpmuList.load(self.path)
                except UpmuConfigError as exc:
                    log.error("%s; still using the uPMU list read before (%d uPMUs); fix the "
                              "file and save it again", exc, len(self._list))
                else:
                    if current is None:
                        log.warning("uPMU list %s does not exist: every file will be refused;"
                                    " add uPMUs with upmu-adm", self.path)
                    else:
                        log.info("uPMU list %s: %d uPMUs (%s)", self.path, len(self._list),
                                 ", ".join(f"{u.serial} {u.alias}" for u in self._list)
                                 or "none")
                    for problem in self._list.problems:
                        log.warning("%s", problem)
            return self._list

    def lookup(self, serial: str) -> Upmu | None:
        """The configured uPMU with this serial (ignoring case), or None."""
        return self.refresh().by_serial(serial)


class DiskGuard:
    """Is the data disk at or above the limit? Measured at most every ``interval`` s.

    ``usage(path) -> percent`` and ``clock() -> seconds`` are injectable for tests.
    """

    def __init__(self, path: str, limit_percent: float, *,
                 usage: Callable[[str], float] = disk_percent,
                 clock: Callable[[], float] = time.monotonic, interval: float = 1.0) -> None:
        self.path = path
        self.limit = limit_percent
        self._usage = usage
        self._clock = clock
        self._interval = interval
        self._checked_at: float | None = None
        self._percent = 0.0

    def percent(self) -> float:
        """The last measurement, refreshed if older than the interval.

        Raises:
            OSError: the measurement failed.
        """
        now = self._clock()
        if self._checked_at is None or now - self._checked_at >= self._interval:
            self._percent = self._usage(self.path)
            self._checked_at = now
        return self._percent

    def full(self) -> bool:
        """True when storing must stop (at or above the limit)."""
        return self.percent() >= self.limit


class RefusalLog:
    """Refusals and closes, logged once per ``window`` s per (address, reason), with a
    count of the repeats when the window ends.

    The first refusal of a kind from an address is logged at once; repeats within the
    window are counted, and :meth:`flush` (the service calls it every second: a timer,
    not the next refusal) logs the last of them with the count once the window is over.
    Different reasons from one address never hide each other. A device retries a
    refused file every few seconds for as long as the cause lasts: at most two lines a
    minute say so.
    """

    #: Keys remembered at most; past it, the oldest windows are reported and dropped.
    MAX_KEYS = 10_000

    def __init__(self, window: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 logger: logging.Logger = log) -> None:
        self.window = window
        self._clock = clock
        self._log = logger
        # (address, kind) -> [window start, repeats since, last repeat's message]
        self._windows: dict[tuple[str, str], list] = {}
        self._lock = threading.Lock()

    def refuse(self, address: str, kind: str, message: str) -> None:
        """Log ``message`` (one line, wire values already escaped) unless the same
        ``kind`` from ``address`` was logged less than a window ago; then count it."""
        now = self._clock()
        due: list[str] = []
        with self._lock:
            entry = self._windows.get((address, kind))
            if entry is not None and now - entry[0] < self.window:
                entry[1] += 1
                entry[2] = message
                return
            if entry is not None:
                due.append(self._summary(entry))
            self._windows[(address, kind)] = [now, 0, None]
            if len(self._windows) > self.MAX_KEYS:
                oldest = sorted(self._windows, key=lambda k: self._windows[k][0])
                for key in oldest[:self.MAX_KEYS // 2]:
                    old = self._windows.pop(key)
                    if old[1]:
                        due.append(self._summary(old))
        for line in (*due, message):
            if line:
                self._log.warning("%s", line)

    def flush(self, *, everything: bool = False) -> int:
        """Log the repeat counts of windows that are over (``everything``: of all, as
        at a stop) and forget those windows; return the number of lines logged."""
        now = self._clock()
        with self._lock:
            over = [key for key, entry in self._windows.items()
                    if everything or now - entry[0] >= self.window]
            lines = [self._summary(self._windows.pop(key)) for key in over]
        lines = [line for line in lines if line]
        for line in lines:
            self._log.warning("%s", line)
        return len(lines)

    def _summary(self, entry: list) -> str:
        started, repeats, last = entry
        if not repeats:
            return ""
        return f"{last} [{repeats} more like it in the last {self.window:g} s]"


@dataclass(frozen=True, slots=True)
class PushedFile:
    """A whole pushed file, for :meth:`Intake.handle`."""

    send_id: int
    path: str
    serial: str
    data: bytes | bytearray | memoryview


class Intake:
    """Decides the reply to each pushed file; see the module docstring.

    ``upmus`` is the uPMU list, ``disk`` the guard (None: no disk check), ``refusals``
    the rate-limited refusal log.
    """

    def __init__(self, queue: Queue, upmus: UpmuDirectory, disk: DiskGuard | None,
                 refusals: RefusalLog | None = None) -> None:
        self.queue = queue
        self.upmus = upmus
        self.disk = disk
        self.refusals = refusals or RefusalLog()

    def admit(self, header: FileHeader, peer: str) -> Upmu | None:
        """The configured uPMU to store the file announced by ``header`` for, or None
        when it is refused (logged; reply :data:`FAILURE_REPLY` once its contents have
        arrived, which the caller throws away). Cheap: one stat, and a disk measurement
        at most once per interval."""
        path, sent_serial = header.path, header.serial
        upmu = self.upmus.lookup(sent_serial)
        if upmu is None:
            shown = escape(sent_serial)
            self._refuse(peer, sent_serial, "unknown serial", path,
                         f"unknown serial '{shown}'; add it with: upmu-adm add "
                         f"{escape(peer)} {shown} ALIAS")
            return None
        if self.disk is not None:
            try:
                percent = self.disk.percent()
            except OSError as exc:
                self._refuse(peer, sent_serial, "disk", path,
                             f"cannot measure the data disk {self.disk.path}: {exc}")
                return None
            if percent >= self.disk.limit:
                self._refuse(peer, sent_serial, "disk", path,
                             f"data disk {self.disk.path} is {percent:.1f}% full, at or "
                             f"above the limit of {self.disk.limit:g}%; free space, e.g."
                             f" with clean_synced")
                return None
        try:
            check_identity(upmu.serial, path)
        except ValueError as exc:
            self._refuse(peer, sent_serial, "name", path, f"cannot queue it: {exc}")
            return None
        return upmu

    def store(self, upmu: Upmu, header: FileHeader, data: Contents, peer: str) -> bytes:
        """Store a whole admitted file (in one buffer or as a list of pieces); return the
        reply: its send_id once stored durably, else four zero bytes. Never raises for
        anything a device or the storage can cause."""
        try:
            result = self.queue.put(upmu.serial, header.path, data)
        except Exception as exc:   # noqa: BLE001 - sorted out in _failed
            return self._failed(peer, header, exc)
        return self._stored(upmu, header, result)

    def store_many(self, files: list[tuple[Upmu, FileHeader, Contents, str]]) -> list[bytes]:
        """Store several whole admitted files ``(upmu, header, data, peer)`` together
        (:meth:`qss.queue.Queue.put_many`: one transaction for the SQLite queue); return
        their replies as :meth:`store` does, in order. Never raises for anything a device
        or the storage can cause."""
        if len(files) == 1:
            return [self.store(*files[0])]
        try:
            results = self.queue.put_many([(upmu.serial, header.path, data)
                                           for upmu, header, data, _ in files])
        except Exception as exc:   # noqa: BLE001 - sorted out in _failed
            return [self._failed(peer, header, exc) for _, header, _, peer in files]
        return [self._failed(peer, header, result) if isinstance(result, Exception)
                else self._stored(upmu, header, result)
                for (upmu, header, _, peer), result in zip(files, results)]

    def open_upload(self, upmu: Upmu, header: FileHeader, peer: str) -> Upload | bytes:
        """Start storing an admitted file piece by piece; return the upload, or the
        failure reply (logged) when the queue cannot start it."""
        try:
            return self.queue.open_upload(upmu.serial, header.path, header.data_len)
        except Exception as exc:   # noqa: BLE001 - sorted out in _failed
            return self._failed(peer, header, exc)

    def write(self, upload: Upload, piece: bytes | bytearray | memoryview, header: FileHeader,
              peer: str) -> bytes | None:
        """Write the next piece; None when done, else the failure reply (logged; the
        caller aborts the upload)."""
        try:
            upload.write(piece)
        except Exception as exc:   # noqa: BLE001 - sorted out in _failed
            return self._failed(peer, header, exc)
        return None

    def finish(self, upmu: Upmu, header: FileHeader, upload: Upload, peer: str) -> bytes:
        """Commit an upload whose pieces are all written; return the reply as
        :meth:`store` does (on failure the upload is aborted)."""
        try:
            result = upload.commit()
        except Exception as exc:   # noqa: BLE001 - sorted out in _failed
            upload.abort()
            return self._failed(peer, header, exc)
        return self._stored(upmu, header, result)

    def handle(self, file: PushedFile, peer: str) -> bytes:
        """Check and store one whole file from the device at ``peer`` (its IP address):
        :meth:`admit`, then :meth:`store`."""
        header = FileHeader(file.send_id, file.path, file.serial, memoryview(file.data).nbytes)
        upmu = self.admit(header, peer)
        if upmu is None:
            return FAILURE_REPLY
        return self.store(upmu, header, file.data, peer)

    def refuse(self, header: FileHeader, peer: str, kind: str, reason: str) -> bytes:
        """Refuse the file of ``header`` for a reason the caller found (logged through
        the refusal log under ``kind``); return the failure reply."""
        return self._refuse(peer, header.serial, kind, header.path, reason)

    def _stored(self, upmu: Upmu, header: FileHeader, result: PutResult) -> bytes:
        note = {PutResult.NEW: "",
                PutResult.DUPLICATE: " (already queued: acknowledged without a second copy)",
                PutResult.REPLACED: " (replaced a queued file with different contents)"}[result]
        log.info("Received %s: serial number is %s (%s), length is %d%s",
                 escape(header.path), escape(header.serial), escape(upmu.alias or "no alias"),
                 header.data_len, note)
        return encode_reply(header.send_id)

    def _failed(self, peer: str, header: FileHeader, exc: Exception) -> bytes:
        serial, path = header.serial, header.path
        if isinstance(exc, ValueError):
            return self._refuse(peer, serial, "name", path, f"cannot queue it: {exc}")
        if isinstance(exc, QueueError):
            return self._refuse(peer, serial, "queue", path,
                                f"{exc}; the uPMU keeps the file and retries")
        # An unexpected bug must not acknowledge a file.
        log.error("uPMU %s: storing file '%s' failed unexpectedly", escape(peer),
                  escape(path), exc_info=exc)
        return self._refuse(peer, serial, "internal", path,
                            f"internal error {type(exc).__name__}: {exc}")

    def _refuse(self, peer: str, serial: str, kind: str, path: str, reason: str) -> bytes:
        self.refusals.refuse(peer, kind, f"uPMU {escape(peer)} ({escape(serial)}): refused "
                                         f"file '{escape(path)}' ({reason})")
        return FAILURE_REPLY
