"""What the shell's commands reach beyond the uPMU list: the queue, the data drive,
supervisor, the clock and a progress display, in one object the state carries.

Everything here is injectable, so the commands stay functions of their state and
arguments: tests pass a queue on ``tmp_path``, a fixed clock, a fake disk and a fake
supervisor; the command line (:mod:`upmu_adm.cli`) builds the real one from ``qss.ini``
and gives it a tqdm progress bar. The queue is opened on first use and kept open; a
failure to open it is not remembered, so the next command tries again (the data drive
may have been mounted meanwhile).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from qss.queue import Queue, QueueError, open_queue
from qss.queue.base import utcnow

__all__ = ["DiskUsage", "ProbeError", "Program", "Progress", "Services", "disk_usage",
           "no_progress", "supervisor_programs"]


class ProbeError(Exception):
    """A probe (disk, supervisor) could not tell; the message says why, in one line."""


class DiskUsage(NamedTuple):
    """A file system's size and use, in bytes (``percent`` as psutil computes it)."""

    total: int
    used: int
    free: int
    percent: float


class Program(NamedTuple):
    """One supervisor program as ``supervisorctl status`` shows it."""

    name: str
    state: str          # RUNNING, STOPPED, FATAL, ...
    description: str    # pid 123, uptime 1:02:03


class Progress(Protocol):
    """``with progress(total, "Importing") as advance: advance(1)``."""

    def __call__(self, total: int, desc: str, unit: str = "file"
                 ) -> contextlib.AbstractContextManager[Callable[[int], None]]:
        ...


@contextlib.contextmanager
def no_progress(total: int, desc: str,
                unit: str = "file") -> Iterator[Callable[[int], None]]:
    """A progress display that shows nothing (tests, library use)."""
    yield lambda n: None


def disk_usage(path: str) -> DiskUsage:
    """The use of the file system holding ``path`` (psutil).

    Raises:
        ProbeError: the path does not exist or cannot be measured.
    """
    import psutil
    try:
        u = psutil.disk_usage(path)
    except OSError as exc:
        raise ProbeError(f"cannot measure {path}: {exc.strerror or exc}") from None
    return DiskUsage(u.total, u.used, u.free, u.percent)


_STATES = ("STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL",
           "UNKNOWN")
_STATUS_LINE = re.compile(r"^(\S+)\s+(%s)\b\s*(.*)$" % "|".join(_STATES))


def supervisor_programs(command: tuple[str, ...] = ("supervisorctl", "status"),
                        timeout: float = 5.0) -> list[Program]:
    """The supervisor programs and their states, from ``supervisorctl status``.

    supervisorctl exits non-zero when a program is not running, so its output decides.

    Raises:
        ProbeError: supervisorctl is missing, timed out, or could not reach supervisord
            (the reason it printed, e.g. a socket it may not open without sudo).
    """
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise ProbeError(f"{command[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise ProbeError(f"{' '.join(command)} did not answer within {timeout:g} s") \
            from None
    except OSError as exc:
        raise ProbeError(f"cannot run {command[0]}: {exc.strerror or exc}") from None
    programs = []
    for line in proc.stdout.splitlines():
        m = _STATUS_LINE.match(line.strip())
        if m:
            programs.append(Program(m[1], m[2], m[3].strip()))
    if not programs:
        said = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
        reason = said[-1].strip() if said else f"exit status {proc.returncode}"
        raise ProbeError(reason)
    return programs


@dataclass
class Services:
    """The queue and the probes the data commands use. Defaults: no queue (library and
    test use of the list commands), the real disk and supervisor, the real clock."""

    queue_url: str | None = None
    srv: str = "/ssd/srv"
    max_disk_percent: float = 98.0
    open_queue: Callable[[str], Queue] = open_queue
    disk_usage: Callable[[str], DiskUsage] = disk_usage
    supervisor: Callable[[], list[Program]] = supervisor_programs
    now: Callable[[], dt.datetime] = utcnow
    progress: Progress = no_progress
    cwd: Callable[[], str] = os.getcwd
    _queue: Queue | None = field(default=None, repr=False)
    _completion_failed: bool = field(default=False, repr=False)

    def queue(self) -> Queue:
        """The queue, opened on first use.

        Raises:
            QueueError: no queue is configured, or it cannot be opened (the message
                names it and says why).
        """
        if self._queue is None:
            if self.queue_url is None:
                raise QueueError("no queue configured ([queue] url in qss.ini, or --queue)")
            self._queue = self.open_queue(self.queue_url)
        return self._queue

    def queue_for_completion(self) -> Queue | None:
        """The queue for tab completion, which must never wait: once opening it failed,
        completion stops trying (commands still do)."""
        if self._queue is not None:
            return self._queue
        if self._completion_failed or self.queue_url is None:
            return None
        try:
            return self.queue()
        except QueueError:
            self._completion_failed = True
            return None

    def path(self, text: str) -> str:
        """An operator's path: ``~`` expanded, relative to the current directory."""
        return os.path.normpath(os.path.join(self.cwd(), os.path.expanduser(text)))

    def close(self) -> None:
        """Close the queue if it was opened. Idempotent."""
        if self._queue is not None:
            queue, self._queue = self._queue, None
            queue.close()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
