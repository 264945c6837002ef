"""The appliance's health, per uPMU, for the page (manual ch. 16, "No data is shown on the
plotter"): when each uPMU's last file was received, its unsynced backlog, its files in
quarantine, and supervisor's programs. The same figures as ``upmu-adm status`` (from
:mod:`qss.status`), as data.

Supervisor is asked through ``$SUPERVISOR_SERVER_URL``, which supervisord gives the
programs it runs (the plotter is one), so the demo's supervisord is found as the
appliance's is. Quarantined files are counted from sync2q's registry
(``sync2q-quarantine.db`` beside the queue, read only; sync2q's own until the queue
offers quarantine itself).
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from qss.queue import QueueError
from qss.status import ProbeError, Probes, supervisor_programs
from qss.upmuconfig import Upmu, UpmuConfigError, UpmuList

__all__ = ["QUARANTINE_FILE", "health", "quarantined", "supervisor_command"]

QUARANTINE_FILE = "sync2q-quarantine.db"


def supervisor_command(environ=os.environ) -> tuple[str, ...]:
    """``supervisorctl [-s URL] status``: the supervisord that runs us, when it does."""
    exe = shutil.which("supervisorctl") or str(Path(sys.executable).with_name("supervisorctl"))
    url = environ.get("SUPERVISOR_SERVER_URL")
    return (exe, "-s", url, "status") if url else (exe, "status")


def quarantined(folder: str) -> dict[str, int]:
    """Quarantined files per serial (casefolded) from sync2q's registry in ``folder``;
    empty when there is none."""
    path = os.path.join(folder, QUARANTINE_FILE)
    if not os.path.exists(path):
        return {}
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
        try:
            rows = db.execute("SELECT serial, count(*) FROM quarantine GROUP BY serial")
            return {serial.casefold(): n for serial, n in rows}
        finally:
            db.close()
    except sqlite3.Error:
        return {}


def _iso(t: dt.datetime | None) -> str | None:
    return None if t is None else t.astimezone(dt.timezone.utc).isoformat(timespec="seconds")


def health(probes: Probes, upmuconfig: str, may_see: Callable[[str], bool],
           upmus: Iterable[Upmu] | None = None) -> dict:
    """The health report for the uPMUs whose streams' collections ``may_see`` allows.

    Every probe that cannot tell is reported as text in its place (``queue_error``,
    ``upmus_error``, ``programs_error``); the rest is still given.
    """
    out: dict = {"time": _iso(probes.now())}
    if upmus is None:
        try:
            upmus = list(UpmuList.load(upmuconfig))
        except UpmuConfigError as exc:
            upmus, out["upmus_error"] = [], str(exc)
    try:
        queue = probes.queue()
        stats = {k.casefold(): v for k, v in queue.stats().items()}
        folder = queue.storage_dir or probes.srv
    except QueueError as exc:
        stats, folder, out["queue_error"] = {}, probes.srv, str(exc)
    held = quarantined(folder)
    now = probes.now()
    rows = []
    for u in upmus:
        collections = {s.collection for s in u.streams.values()}
        if not collections or not any(may_see(c) for c in collections):
            continue
        s = stats.get(u.serial.casefold())
        last = s.last_received if s else None
        rows.append({
            "alias": u.alias, "serial": u.serial, "ip": u.ip,
            "collection": sorted(c for c in collections if may_see(c))[0],
            "last_received": _iso(last),
            "seconds_ago": None if last is None else round((now - last).total_seconds()),
            "unsynced_files": s.unsynced_files if s else 0,
            "unsynced_bytes": s.unsynced_bytes if s else 0,
            "queued_files": s.files if s else 0,
            "quarantined": held.get(u.serial.casefold(), 0),
        })
    out["upmus"] = rows
    try:
        out["programs"] = [{"name": p.name, "state": p.state, "description": p.description}
                           for p in probes.supervisor()]
    except ProbeError as exc:
        out["programs"], out["programs_error"] = [], str(exc)
    return out


def make_probes(queue_url: str, srv: str, max_disk_percent: float) -> Probes:
    """The probes of the report for this appliance."""
    command = supervisor_command()
    return Probes(queue_url=queue_url, srv=srv, max_disk_percent=max_disk_percent,
                  supervisor=lambda: supervisor_programs(command))
