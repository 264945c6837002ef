"""``qss-get --status`` and ``--clean-synced``: the reports and the clean-up the operator
also has as ``upmu-adm status`` and ``clean_synced``, on the appliance's own settings
(:mod:`installer.appliance`).

Neither is written twice: the report is :func:`qss.status.report` (upmu-adm's
``status`` shows the same lines), the clean-up is :func:`installer.clean.clean_synced` (the
``clean_synced`` command). What is added here: the probes from the environment's
:class:`~installer.hooks.DataTools`, a header with the time, the refresh loop of
``--watch``, and after a clean-up how much the SQLite queue file gave back to the file
system (:meth:`~qss.queue.Queue.delete_synced` already runs its incremental vacuum and
truncates the WAL; MongoDB reuses the space itself).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
from pathlib import Path

from installer.clean import clean_synced as _clean_synced
from qss.distilstate import location as distil_location
from qss.queue import Queue, QueueError
from qss.queue.sqlite_segments import data_dir
from qss.status import Probes, report, watch
from qss.upmuconfig import UpmuConfigError, UpmuList

from .appliance import appliance_settings, place
from .environment import Environment
from .files import DeployError
from .hooks import DataTools
from .services import DataPaths, data_paths, human

__all__ = ["clean_synced", "probes_for", "status", "status_text"]


def _existing_queue(tools: DataTools, paths: DataPaths):
    """open_queue that refuses to create a SQLite queue that is not there (a report or a
    clean-up must not leave an empty queue behind, e.g. on an unmounted drive)."""
    def open_(url: str) -> Queue:
        if paths.queue_file is not None and not paths.queue_file.is_file():
            raise QueueError(f"no queue at {paths.queue_file} ([queue] url; is the data "
                             f"drive mounted?)")
        return tools.open_queue(url)
    return open_


def probes_for(env: Environment, tools: DataTools) -> tuple[Probes, DataPaths]:
    """The report's probes on the appliance's settings under ``env.root``.

    Raises:
        DeployError: qss.ini cannot be read.
    """
    settings = appliance_settings(env)
    paths = data_paths(env, settings)
    where = distil_location(settings)
    probes = Probes(queue_url=paths.queue_url, srv=str(paths.srv),
                    distil_state=where if "://" in where else str(place(env.root, where)),
                    max_disk_percent=settings.receiver.max_disk_percent,
                    open_queue=_existing_queue(tools, paths), disk_usage=tools.disk_usage,
                    supervisor=tools.programs,
                    now=lambda: env.clock().astimezone(dt.timezone.utc))
    return probes, paths


def status_text(probes: Probes, paths: DataPaths, note: str = "") -> str:
    """One report: a header with the time (UTC), then :func:`qss.status.report`. The
    uPMU list is read again each time (upmu-adm may have changed it)."""
    lines = [f"MicroPMU Quickstart Server status at "
             f"{probes.now().strftime('%Y-%m-%d %H:%M:%S')} UTC{note}"]
    try:
        upmus = list(UpmuList.load(str(paths.upmuconfig)))
    except UpmuConfigError as exc:
        upmus = []
        lines.append(f"uPMU list: cannot be read: {exc}")
    if probes._queue is not None and paths.queue_file is not None \
            and not paths.queue_file.is_file():
        probes.close()      # the file went away (--newdb, an unmounted drive): reopen
    return "\n".join(lines + report(probes, upmus, str(paths.upmuconfig)))


def status(env: Environment, tools: DataTools, every: float | None = None) -> int:
    """Print the report once, or (``every`` seconds) until Ctrl+C; return how many were
    shown. On a terminal each report replaces the previous one."""
    probes, paths = probes_for(env, tools)
    with probes:
        if every is None:
            env.say(status_text(probes, paths))
            return 1
        note = f", every {every:g} s (Ctrl+C stops)"
        tty = False
        with contextlib.suppress(AttributeError, ValueError):
            tty = env.stdout.isatty()
        return watch(lambda: status_text(probes, paths, note), out=env.stdout,
                     interval=every, sleep=env.sleep, clear=tty)


def _ask(env: Environment, prompt: str) -> str:
    """The operator's answer from ``env.stdin`` ("" at end of input), echoed when piped
    so the transcript reads right (as clean_synced does)."""
    env.stdout.write(prompt)
    env.stdout.flush()
    answer = env.stdin.readline()
    interactive = False
    with contextlib.suppress(AttributeError, ValueError):
        interactive = env.stdin.isatty()
    if not interactive or not answer:
        env.say(answer.rstrip("\n"))
    return answer


def _file_size(path: Path) -> int:
    """The queue's size: its SQLite file, WAL and data segments."""
    total = 0
    for suffix in ("", "-wal"):
        with contextlib.suppress(OSError):
            total += os.stat(f"{path}{suffix}").st_size
    with contextlib.suppress(OSError):
        for entry in os.scandir(data_dir(str(path))):
            total += entry.stat().st_size
    return total


def clean_synced(env: Environment, tools: DataTools, assume_yes: bool = False) -> bool:
    """``--clean-synced``: :func:`installer.clean.clean_synced` on the appliance's queue (count
    the synced files, ask for ``delete``, delete them, report), then what the queue file
    gave back to the file system. Returns False when the operator did not confirm.

    Raises:
        DeployError: no queue, or it cannot be read or cleaned.
    """
    settings = appliance_settings(env)
    paths = data_paths(env, settings)
    try:
        with _existing_queue(tools, paths)(paths.queue_url) as queue:
            before = _file_size(paths.queue_file) if paths.queue_file else 0
            done = _clean_synced(queue, out=env.stdout, ask=lambda p: _ask(env, p),
                                 assume_yes=assume_yes)
            # measured before closing: closing alone checkpoints (shrinks) the WAL
            after = _file_size(paths.queue_file) if paths.queue_file else 0
    except QueueError as exc:
        raise DeployError(str(exc)) from None
    if paths.queue_file is not None:
        if after < before:
            env.say(f"Gave {human(before - after)} back to the file system ({paths.queue_file}"
                    f" and its data files are now {human(after)}).")
    return int(done) == 0
