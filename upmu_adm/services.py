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
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from qss.queue import Queue, QueueError
# The probes live with the status report they serve (shared with qss-get --status).
from qss.status import DiskUsage, ProbeError, Probes, Program, disk_usage, supervisor_programs

__all__ = ["DiskUsage", "ProbeError", "Program", "Progress", "Services", "disk_usage",
           "no_progress", "supervisor_programs"]


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


@dataclass
class Services(Probes):
    """The queue and the probes the data commands use (those of the status report,
    :class:`qss.status.Probes`), plus a progress display and the current directory.
    Defaults: no queue (library and test use of the list commands), the real disk and
    supervisor, the real clock."""

    progress: Progress = no_progress
    cwd: Callable[[], str] = os.getcwd
    _completion_failed: bool = field(default=False, repr=False, kw_only=True)

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
