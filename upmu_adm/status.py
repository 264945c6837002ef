"""``status``: is data flowing? Per uPMU, the queue's figures; the data drive against
the receiver's limit; supervisor's programs. The report is :func:`qss.status.report`
(``qss-get --status`` shows the same); every probe comes from the state's
:class:`~upmu_adm.services.Services`, so tests inject them.
"""
from __future__ import annotations

from collections.abc import Sequence

from qss.status import report

from .commands import REGISTRY
from .registry import Reply, ok
from .state import ShellState

__all__ = ["cmd_status"]


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
    return ok("\n".join(report(state.services, state.upmus, state.path)))
