"""What the receiver does with one pushed file: check, store, decide the reply, log.

No asyncio and no sockets here: :meth:`Intake.handle` runs in the service's writer
thread and returns the 4 reply bytes. The checks, in order:

1. the serial number is in ``upmuconfig.ini`` (read again whenever its fingerprint
   changes, so ``upmu-adm save`` takes effect without a restart; a file that no longer
   parses leaves the last good list in force, with one log line);
2. the data disk is below ``max_disk_percent`` (checked at most every ``disk_check_s``);
3. the queue stores it durably.

Anything else is the failure reply (four zero bytes): the device keeps the file and
sends it again later, so nothing is lost by refusing.

Files are queued under the serial as ``upmuconfig.ini`` spells it (serials match ignoring
case), which is the spelling sync2q asks the queue for.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from qss.queue import PutResult, Queue, QueueError
from qss.upmuconfig import Upmu, UpmuConfigError, UpmuList, fingerprint

from qss.protocol import FAILURE_REPLY, FileMessage, encode_reply

__all__ = ["DiskGuard", "Intake", "RefusalLog", "UpmuDirectory", "disk_percent"]

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
    """Logs a refusal once per ``window`` s per (device, reason); counts the rest.

    A device retries a refused file every few seconds for as long as the cause lasts; one
    line a minute says the same with a count, without flooding the log.
    """

    def __init__(self, window: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 logger: logging.Logger = log) -> None:
        self.window = window
        self._clock = clock
        self._log = logger
        self._last: dict[tuple[str, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def refuse(self, key: tuple[str, str], message: str) -> None:
        """Log ``message`` unless the same ``key`` was logged less than a window ago."""
        now = self._clock()
        with self._lock:
            logged_at, suppressed = self._last.get(key, (None, 0))
            if logged_at is not None and now - logged_at < self.window:
                self._last[key] = (logged_at, suppressed + 1)
                return
            self._last[key] = (now, 0)
            if len(self._last) > 10_000:   # a flood of distinct keys: forget the oldest
                for old in sorted(self._last, key=lambda k: self._last[k][0])[:5_000]:
                    del self._last[old]
        if suppressed:
            message += f" [{suppressed} more like it in the last {self.window:g} s]"
        self._log.warning("%s", message)


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

    def handle(self, message: FileMessage, peer: str) -> bytes:
        """Check and store one file from the device at ``peer`` (its IP address); return
        the reply: its send_id once stored durably, else four zero bytes. Never raises
        for anything a device or the storage can cause."""
        path, sent_serial, size = message.path, message.serial, len(message.data)
        upmu = self.upmus.lookup(sent_serial)
        if upmu is None:
            return self._refuse(peer, sent_serial, "unknown serial", path,
                                f"unknown serial {sent_serial!r}; add it with: upmu-adm add "
                                f"{peer} {sent_serial} ALIAS")
        if self.disk is not None:
            try:
                percent = self.disk.percent()
            except OSError as exc:
                return self._refuse(peer, sent_serial, "disk", path,
                                    f"cannot measure the data disk {self.disk.path}: {exc}")
            if percent >= self.disk.limit:
                return self._refuse(peer, sent_serial, "disk", path,
                                    f"data disk {self.disk.path} is {percent:.1f}% full, at or "
                                    f"above the limit of {self.disk.limit:g}%; free space, e.g."
                                    f" with clean_synced")
        try:
            result = self.queue.put(upmu.serial, path, message.data)
        except ValueError as exc:
            return self._refuse(peer, sent_serial, "name", path, f"cannot queue it: {exc}")
        except QueueError as exc:
            return self._refuse(peer, sent_serial, "queue", path,
                                f"{exc}; the uPMU keeps the file and retries")
        except Exception as exc:   # noqa: BLE001 - an unexpected bug must not ack a file
            log.exception("uPMU %s: storing file %r failed unexpectedly", peer, path)
            return self._refuse(peer, sent_serial, "internal", path,
                                f"internal error {type(exc).__name__}: {exc}")
        note = {PutResult.NEW: "",
                PutResult.DUPLICATE: " (already queued: acknowledged without a second copy)",
                PutResult.REPLACED: " (replaced a queued file with different contents)"}[result]
        log.info("Received %s: serial number is %s (%s), length is %d%s",
                 path, sent_serial, upmu.alias or "no alias", size, note)
        return encode_reply(message.send_id)

    def _refuse(self, peer: str, serial: str, kind: str, path: str, reason: str) -> bytes:
        self.refusals.refuse((f"{peer} {serial}", kind),
                             f"uPMU {peer} ({serial}): refused file {path!r} ({reason})")
        return FAILURE_REPLY
