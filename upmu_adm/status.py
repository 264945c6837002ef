"""``status``: is data flowing? Per uPMU, the queue's figures; the data drive against
the receiver's limit; supervisor's programs. Every probe comes from the state's
:class:`~upmu_adm.services.Services`, so tests inject them; a probe that cannot tell
is one line saying why, and the rest is still shown.

No sync rate: the queue does not record when a file was synced, so a rate cannot be
derived from it; sync2q logs its own (``rate: ... files/s``).
"""
from __future__ import annotations

from collections.abc import Sequence

from qss.queue import QueueError, SerialStats

from .commands import REGISTRY, queue_stats
from .registry import Reply, ok
from .services import ProbeError
from .state import ShellState
from .views import age, size, table, tally, when

__all__ = ["cmd_status"]

_NEAR = 5.0     # percentage points below the receiver's limit that earn a warning


@REGISTRY.command(
    "status", usage="status", group="data",
    help="""
show data flow, disk and services
For each uPMU: when its last file was received (UTC) and how long ago, its unsynced
backlog (files queued that sync2q has not stored in BTrDB yet) and all its queued
files. Then how full the data drive is, against the limit at which the receiver
refuses files ([receiver] max_disk_percent in qss.ini; clean_synced frees space), and
the state of the supervisor programs (btrdb, receiver, sync2q), when supervisorctl
can reach supervisord (its socket is root's: run upmu-adm with sudo to see them).
sync2q logs its sync rate: sudo supervisorctl tail sync2q.""")
def cmd_status(state: ShellState, args: Sequence[str]) -> Reply:
    svc = state.services
    lines: list[str] = []
    try:
        stats = queue_stats(state)
    except QueueError as exc:
        stats = None
        lines.append(f"Queue: cannot be read: {exc}")
    if stats is not None:
        lines += _upmu_lines(state, stats)
    lines.append(_disk_line(state, stats is not None))
    lines += _supervisor_lines(state)
    return ok("\n".join(lines))


def _upmu_lines(state: ShellState, stats: dict[str, SerialStats]) -> list[str]:
    now = state.services.now()
    rows = []
    known = set()
    for u in state.upmus:
        known.add(u.serial.casefold())
        rows.append([u.describe(), *_figures(stats.get(u.serial.casefold()), now)])
    for key, s in stats.items():
        if key not in known:
            rows.append([f"{s.serial} (not in the list)", *_figures(s, now)])
    if not rows:
        return [f"No uPMUs in {state.path} and no queued files"]
    total = [s for s in stats.values()]
    queued = tally(sum(s.files for s in total), sum(s.bytes for s in total))
    unsynced = tally(sum(s.unsynced_files for s in total),
                     sum(s.unsynced_bytes for s in total))
    return [table(["UPMU", "LAST RECEIVED (UTC)", "AGO", "UNSYNCED BACKLOG", "QUEUED"],
                  rows),
            f"Queue {state.services.queue().url}: {queued}, {unsynced} not synced yet"]


def _figures(s: SerialStats | None, now) -> list[str]:
    if s is None:
        return ["never", "", "none", "none"]
    ago = age((now - s.last_received).total_seconds()) if s.last_received else ""
    return [when(s.last_received), ago,
            tally(s.unsynced_files, s.unsynced_bytes) if s.unsynced_files else "none",
            tally(s.files, s.bytes) if s.files else "none"]


def _disk_line(state: ShellState, queue_open: bool) -> str:
    svc = state.services
    # The receiver measures the queue's directory, or [paths] srv when the backend
    # cannot tell (MongoDB): measure the same.
    path = (svc.queue().storage_dir if queue_open else None) or svc.srv
    limit = svc.max_disk_percent
    try:
        u = svc.disk_usage(path)
    except ProbeError as exc:
        return f"Data drive: {exc}"
    line = (f"Data drive ({path}): {u.percent:.1f} % used, {size(u.free)} free of "
            f"{size(u.total)}; the receiver refuses files from {limit:g} %")
    if u.percent >= limit:
        line += ("\nWARNING: the data drive is FULL: the receiver is refusing files (the "
                 "uPMUs keep them and retry); free space with clean_synced")
    elif u.percent >= limit - _NEAR:
        line += "\nwarning: the data drive is nearly full; free space with clean_synced"
    return line


def _supervisor_lines(state: ShellState) -> list[str]:
    try:
        programs = state.services.supervisor()
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
