"""Is data flowing? The status report shared by ``upmu-adm status`` and ``qss-get
--status``: per uPMU when its last file was received and its unsynced backlog, how far
behind the derived streams (qss-distil) are, the data drive against the receiver's
limit, and supervisor's programs.

Everything the report reads comes from a :class:`StatusSource` (the queue, the disk and
supervisor probes, the clock), so tests inject them; a probe that cannot tell is one line
saying why, and the rest is still shown. :class:`Probes` is the plain source (qss-get);
upmu-adm's :class:`upmu_adm.services.Services` extends it with what its shell needs.
:func:`watch` repeats a report until Ctrl+C, with an injectable sleep.

No sync rate: the queue does not record when a file was synced, so a rate cannot be
derived from it; sync2q logs its own (``rate: ... files/s``).
"""
from __future__ import annotations

import datetime as dt
import re
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TextIO

from qss.distilstate import StateError, Status, read_statuses
from qss.queue import Queue, QueueError, SerialStats, open_queue
from qss.queue.base import utcnow
from qss.upmuconfig import Upmu

__all__ = ["DiskUsage", "ProbeError", "distil_lines", "Probes", "Program", "StatusSource", "age",
           "disk_usage", "number", "report", "size", "supervisor_programs", "table",
           "tally", "watch", "when"]

NEAR = 5.0      # percentage points below the receiver's limit that earn a warning


# -- text ------------------------------------------------------------------------------

def number(n: int, noun: str) -> str:
    """``1 file``, ``1,440 files``: counts that may be large."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def size(nbytes: int) -> str:
    """Decimal units, as the manual writes file sizes: ``552 KB``, ``1.6 MB``."""
    if nbytes < 1000:
        return f"{nbytes} byte{'' if nbytes == 1 else 's'}"
    value = float(nbytes)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1000
        if value < 999.5 or unit == "TB":
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    raise AssertionError("unreachable")


def tally(files: int, nbytes: int, noun: str = "file") -> str:
    """``12 files (6.6 MB)``; ``0 files``."""
    return number(files, noun) + (f" ({size(nbytes)})" if files else "")


def when(t: dt.datetime | None) -> str:
    """A UTC time to the second, ``2015-12-18 08:14:57``, or ``never``."""
    if t is None:
        return "never"
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def age(seconds: float) -> str:
    """How long ago, roughly: ``12 s``, ``3 min``, ``2 h 5 min``, ``3 days``."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 48 * 3600:
        h, m = divmod(s // 60, 60)
        return f"{h} h {m} min" if m else f"{h} h"
    return f"{s // 86400} days"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> str:
    """Left-aligned columns two spaces apart, a dashed rule under the header, no
    trailing spaces (so the text copies cleanly from a terminal)."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return (indent + "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]),
                      *(line(r) for r in rows)])


# -- probes ----------------------------------------------------------------------------

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


class StatusSource(Protocol):
    """What :func:`report` reads."""

    srv: str
    max_disk_percent: float
    disk_usage: Callable[[str], DiskUsage]
    supervisor: Callable[[], list[Program]]
    now: Callable[[], dt.datetime]

    def queue(self) -> Queue:
        """Raises QueueError."""

    def distil_statuses(self) -> list[Status] | None:
        """qss-distil's instances; None when it has recorded none. Raises ProbeError."""


@dataclass
class Probes:
    """The queue and the probes of the report. Defaults: no queue, the real disk and
    supervisor, the real clock (UTC). The queue is opened on first use and kept open; a
    failure to open it is not remembered, so the next report tries again (the data drive
    may have been mounted meanwhile)."""

    queue_url: str | None = None
    srv: str = "/ssd/srv"
    #: Where qss-distil keeps its state (qss.distilstate.location); None: no section.
    distil_state: str | None = None
    max_disk_percent: float = 98.0
    open_queue: Callable[[str], Queue] = open_queue
    disk_usage: Callable[[str], DiskUsage] = disk_usage
    supervisor: Callable[[], list[Program]] = supervisor_programs
    now: Callable[[], dt.datetime] = utcnow
    _queue: Queue | None = field(default=None, repr=False, kw_only=True)

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

    def distil_statuses(self) -> list[Status] | None:
        """qss-distil's instances and their backlogs, from its state (read only); None
        when there is no state or no instance yet, or no ``distil_state`` is set.

        Raises:
            ProbeError: the state cannot be read (the message says why).
        """
        if self.distil_state is None:
            return None
        try:
            return read_statuses(self.distil_state)
        except StateError as exc:
            raise ProbeError(str(exc)) from None

    def close(self) -> None:
        """Close the queue if it was opened. Idempotent."""
        if self._queue is not None:
            queue, self._queue = self._queue, None
            queue.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# -- the report ------------------------------------------------------------------------

def report(source: StatusSource, upmus: Iterable[Upmu], upmu_path: str) -> list[str]:
    """The status report's lines: the uPMUs of ``upmus`` (read from ``upmu_path``) and
    any other serial with queued files, the data drive, supervisor's programs."""
    lines: list[str] = []
    try:
        stats = {k.casefold(): v for k, v in source.queue().stats().items()}
    except QueueError as exc:
        stats = None
        lines.append(f"Queue: cannot be read: {exc}")
    if stats is not None:
        lines += upmu_lines(source, upmus, upmu_path, stats)
    lines += distil_lines(source)
    lines.append(disk_line(source, stats is not None))
    lines += supervisor_lines(source)
    return lines


def upmu_lines(source: StatusSource, upmus: Iterable[Upmu], upmu_path: str,
               stats: dict[str, SerialStats]) -> list[str]:
    """The per-uPMU table and the queue's totals (``stats`` keyed by casefolded serial)."""
    now = source.now()
    rows = []
    known = set()
    for u in upmus:
        known.add(u.serial.casefold())
        rows.append([u.describe(), *_figures(stats.get(u.serial.casefold()), now)])
    for key, s in stats.items():
        if key not in known:
            rows.append([f"{s.serial} (not in the list)", *_figures(s, now)])
    if not rows:
        return [f"No uPMUs in {upmu_path} and no queued files"]
    total = list(stats.values())
    queued = tally(sum(s.files for s in total), sum(s.bytes for s in total))
    unsynced = tally(sum(s.unsynced_files for s in total),
                     sum(s.unsynced_bytes for s in total))
    return [table(["UPMU", "LAST RECEIVED (UTC)", "AGO", "UNSYNCED BACKLOG", "QUEUED"],
                  rows),
            f"Queue {source.queue().url}: {queued}, {unsynced} not synced yet"]


def _figures(s: SerialStats | None, now: dt.datetime) -> list[str]:
    if s is None:
        return ["never", "", "none", "none"]
    ago = age((now - s.last_received).total_seconds()) if s.last_received else ""
    return [when(s.last_received), ago,
            tally(s.unsynced_files, s.unsynced_bytes) if s.unsynced_files else "none",
            tally(s.files, s.bytes) if s.files else "none"]


#: A backlog measured longer ago than this is old news: qss-distil is not running.
STALE_S = 120.0


def _behind(st: Status) -> tuple[str, str]:
    b = st.backlog
    if b.oldest_ns is None:
        return "current", "0"
    return age(b.lag_ns / 1e9), f"{b.points:,}"


def distil_lines(source: StatusSource) -> list[str]:
    """The derived streams: one row per instance qss-distil runs, how far behind it
    is (the time from its oldest owed input point to the newest, and the input points
    owed), and which fail; nothing when distil is not set up here."""
    try:
        statuses = source.distil_statuses()
    except ProbeError as exc:
        return [f"Derived streams: cannot be read: {exc}"]
    if statuses is None:
        return ["Derived streams: none yet (qss-distil has not run: sudo supervisorctl "
                "status distil)"] if getattr(source, "distil_state", None) else []
    now = source.now().timestamp()
    rows, failing, behind, stale = [], [], 0, []
    for st in statuses:
        if not st.active:
            continue
        lag, points = _behind(st)
        state = "ok"
        if st.failures:
            state = f"FAILING ({st.failures} in a row)"
            failing.append(st)
        elif st.backlog.oldest_ns is not None:
            state = "catching up"
            behind += 1
        measured = st.backlog.at
        if measured is None or now - measured > STALE_S:
            stale.append(st.name)
        rows.append([st.name, lag, points, state,
                     "never" if measured is None else age(now - measured)])
    if not rows:
        return ["Derived streams: none yet (qss-distil has not run: sudo supervisorctl "
                "status distil)"]
    head = (f"Derived streams (qss-distil): {number(len(rows), 'instance')}, "
            f"{len(rows) - behind - len(failing)} current, {behind} catching up, "
            f"{len(failing)} failing")
    lines = [head, *table(["INSTANCE", "BEHIND", "POINTS OWED", "STATE", "MEASURED AGO"],
                          rows, indent="  ").splitlines()]
    for st in failing:
        lines.append(f"FAILING: {st.name}: {st.error}")
    if stale:
        lines.append(f"warning: no fresh figures for {len(stale)} instance(s) for over "
                     f"{STALE_S:g} s: is qss-distil running? (sudo supervisorctl status "
                     f"distil)")
    return lines


def disk_line(source: StatusSource, queue_open: bool) -> str:
    """The data drive against the receiver's limit, with a warning near or at it."""
    # The receiver measures the queue's directory, or [paths] srv when the backend
    # cannot tell (MongoDB): measure the same.
    path = (source.queue().storage_dir if queue_open else None) or source.srv
    limit = source.max_disk_percent
    try:
        u = source.disk_usage(path)
    except ProbeError as exc:
        return f"Data drive: {exc}"
    line = (f"Data drive ({path}): {u.percent:.1f} % used, {size(u.free)} free of "
            f"{size(u.total)}; the receiver refuses files from {limit:g} %")
    if u.percent >= limit:
        line += ("\nWARNING: the data drive is FULL: the receiver is refusing files (the "
                 "uPMUs keep them and retry); free space with clean_synced")
    elif u.percent >= limit - NEAR:
        line += "\nwarning: the data drive is nearly full; free space with clean_synced"
    return line


def supervisor_lines(source: StatusSource) -> list[str]:
    """supervisor's programs, with a warning naming those not running."""
    try:
        programs = source.supervisor()
    except ProbeError as exc:
        return [f"Supervisor: not reachable ({exc}); sudo supervisorctl status shows the "
                f"programs"]
    lines = ["Supervisor programs:"]
    lines += table(["PROGRAM", "STATE", "DETAILS"],
                   [[p.name, p.state, p.description] for p in programs],
                   indent="  ").splitlines()
    down = [p.name for p in programs if p.state != "RUNNING"]
    if down:
        lines.append(f"warning: not running: {', '.join(down)}; sudo supervisorctl tail "
                     f"{down[0]} shows why")
    return lines


# -- refreshing ------------------------------------------------------------------------

CLEAR = "\x1b[H\x1b[2J"     # cursor home, clear the screen (VT100; every terminal)


def watch(render: Callable[[], str], *, out: TextIO, interval: float,
          sleep: Callable[[float], None], clear: bool) -> int:
    """Write ``render()`` every ``interval`` seconds until Ctrl+C; return how many
    reports were shown. On a terminal (``clear``) each report replaces the previous one
    (rendered first, so the screen is blank only for an instant); otherwise reports
    follow each other, a blank line apart (a log, a pipe)."""
    shown = 0
    try:
        while True:
            text = render()
            if clear:
                out.write(CLEAR)
            elif shown:
                out.write("\n")
            out.write(text.rstrip("\n") + "\n")
            out.flush()
            shown += 1
            sleep(interval)
    except KeyboardInterrupt:
        out.write("\n" if clear else "")
        out.flush()
    return shown
