"""What qss-get's data actions need beyond :class:`~installer.environment.Environment`:
the services (supervisord), the queue, free space and block devices, and the paths of
the target system, with the one rule every destructive action follows: stop the
services, prove they are stopped, do the work, start them again.

Proof that the services are stopped: each holds an exclusive ``flock`` while it runs,
qss-btrdb on ``<[paths] data>/qss-btrdb.lock`` and sync2q on ``sync2q.lock`` in the
queue's directory; :func:`stopped` takes both (non-blocking) and keeps them for the
duration, so a service that supervisor (or an operator) starts meanwhile refuses to run
instead of writing under the action. The receiver holds no lock; on the live system,
when supervisor cannot be asked, no process may have the SQLite queue open
(``/proc/*/fd``).

The hooks are read from ``env.data_tools`` when the environment has them
(tests); otherwise :func:`tools_for` builds the real ones (supervisorctl through
``env.run``, lsblk, :func:`shutil.disk_usage`, :func:`qss.queue.open_queue`).
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from qss import lockfile
from qss.settings import Settings
from qss.status import supervisor_programs

from .appliance import named_settings, place, settings_path
from .environment import Environment, run_tool
from .files import DeployError
from .hooks import DataTools, Supervisor, Unreachable, lsblk_devices

BTRDB_LOCK = "qss-btrdb.lock"        # tsdb.server.LOCK_FILE
SYNC2Q_LOCK = "sync2q.lock"          # sync2q.cli.LOCK_FILE


def tools_for(env: Environment) -> DataTools:
    """The environment's own hooks (``env.data_tools``), or the real ones: on the live
    system supervisorctl, lsblk, mount and /proc; under ``--root`` none of them.
    Restored files go to the service user only on the machine's own settings: an
    appliance of a named settings file (the demo's) keeps its folder's owner."""
    if env.data_tools is not None:
        return env.data_tools
    if not env.live:
        return DataTools()
    run = env.run
    return DataTools(services=Supervisor(run),
                     block_devices=lambda: lsblk_devices(
                         lambda argv: run_tool(argv, stdout=True)),
                     mount=lambda point: run(["mount", point]),
                     chown=named_settings(env) is None,
                     proc_dir=Path("/proc"), programs=supervisor_programs)


# -- the target system's paths ----------------------------------------------------------

@dataclass(frozen=True)
class DataPaths:
    """Where the appliance keeps its data, under the root prefix."""

    data: Path                  # [paths] data: the BTrDB data directory
    srv: Path                   # [paths] srv: the queue's directory (MongoDB's dbpath)
    queue_file: Path | None     # the SQLite queue (None: MongoDB)
    upmuconfig: Path
    backupconfig: Path
    qss_ini: Path
    queue_url: str              # the URL as the services open it (root prefix applied)

    @property
    def queue_dir(self) -> Path:
        return self.queue_file.parent if self.queue_file else self.srv


def data_paths(env: Environment, settings: Settings) -> DataPaths:
    """The settings' paths under ``env.root`` (:func:`installer.appliance.place`: never
    twice), and the appliance's settings file."""
    p = settings.paths
    sqlite = settings.queue.sqlite_path
    queue_file = place(env.root, sqlite) if sqlite else None
    return DataPaths(
        data=place(env.root, p.data), srv=place(env.root, p.srv),
        queue_file=queue_file, upmuconfig=place(env.root, p.upmuconfig),
        backupconfig=place(env.root, p.backupconfig), qss_ini=settings_path(env),
        queue_url=f"sqlite:///{queue_file}" if queue_file else settings.queue.url)


# -- stopping and proving it ------------------------------------------------------------

def _try_lock(path: Path, what: str) -> int | None:
    """Take ``path``'s exclusive flock (None when its directory does not exist).

    Raises:
        DeployError: a process holds it (the service is running).
    """
    if not path.parent.is_dir():
        return None
    try:
        return lockfile.hold(path, mode=0o660, record_pid=False)
    except lockfile.LockError as exc:
        if exc.step == "held":
            raise DeployError(f"{what} is still running (pid {exc.holder} holds {path}): "
                              f"stop it first (sudo supervisorctl stop all); nothing was "
                              f"changed") from None
        raise DeployError(f"{path}: cannot {exc.step}: {exc.strerror}") from None


def _queue_holders(proc: Path, queue_file: Path) -> list[str]:
    """pids of processes that have ``queue_file`` open (from ``proc``/PID/fd)."""
    target = str(queue_file)
    pids = []
    for entry in proc.iterdir() if proc.is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd).split(" (deleted)")[0] in (
                            target, target + "-wal", target + "-shm"):
                        pids.append(entry.name)
                        break
    return pids


def check_stoppable(env: Environment, tools: DataTools, paths: DataPaths) -> None:
    """Before asking the operator: refuse at once when :func:`stopped` would, because a
    service runs and there is no supervisor to stop it (``--root``, or supervisord does
    not answer). Takes the services' locks and lets them go; :func:`stopped` takes them
    again for the work itself.

    Raises:
        DeployError: as :func:`stopped`, naming the service and the process.
    """
    if tools.services is not None and tools.services.reachable():
        return
    for path, what in ((paths.data / BTRDB_LOCK, "the BTrDB server (qss-btrdb)"),
                       (paths.queue_dir / SYNC2Q_LOCK, "sync2q")):
        fd = _try_lock(path, what)
        if fd is not None:
            os.close(fd)
    if tools.proc_dir and paths.queue_file:
        _refuse_queue_holders(tools.proc_dir, paths.queue_file)


def _refuse_queue_holders(proc: Path, queue_file: Path) -> None:
    pids = _queue_holders(proc, queue_file)
    if pids:
        raise DeployError(f"the queue {queue_file} is open in process {', '.join(pids)} "
                          f"(the receiver?): stop it first (sudo supervisorctl stop all); "
                          f"nothing was changed")


@contextlib.contextmanager
def stopped(env: Environment, tools: DataTools, paths: DataPaths, *,
            restart_on_error: bool = True) -> Iterator[None]:
    """Stop the services, prove they are stopped (their locks), run the body holding the
    locks, then start the services again (after an error only if ``restart_on_error``).

    Raises:
        DeployError: a service still runs (supervisor unreachable and a lock held, or
            the queue open), or supervisor failed to stop them; nothing was changed.
    """
    stopped_by_us = False
    if tools.services is not None:
        try:
            tools.services.stop_all()
            stopped_by_us = True
            env.say("stopped   the services (supervisorctl stop all)")
        except Unreachable as exc:
            env.warn(f"supervisor is not reachable ({exc}); going ahead only if no "
                     f"service is running")
    locks: list[int] = []
    ok = False
    try:
        for path, what in ((paths.data / BTRDB_LOCK, "the BTrDB server (qss-btrdb)"),
                           (paths.queue_dir / SYNC2Q_LOCK, "sync2q")):
            fd = _try_lock(path, what)
            if fd is not None:
                locks.append(fd)
        if not stopped_by_us and tools.proc_dir and paths.queue_file:
            _refuse_queue_holders(tools.proc_dir, paths.queue_file)
        yield
        ok = True
    finally:
        for fd in locks:
            os.close(fd)
        if stopped_by_us and (ok or restart_on_error):
            try:
                tools.services.start_all()
                env.say("started   the services (supervisorctl start all)")
            except DeployError as exc:
                env.warn(f"{exc}; start them with: sudo supervisorctl start all")
        elif stopped_by_us:
            env.warn("the services were left stopped; start them with: sudo supervisorctl "
                     "start all once the cause is fixed")


# -- small helpers ----------------------------------------------------------------------

def tree_size(path: Path) -> tuple[int, int]:
    """(files, bytes) beneath ``path`` (0, 0 when missing)."""
    files = size = 0
    if path.is_file():
        return 1, path.stat().st_size
    for dirpath, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                size += os.lstat(os.path.join(dirpath, name)).st_size
                files += 1
    return files, size


def human(n: int) -> str:
    """``1.5 GB``: sizes as the operator reads them (powers of 1000, as df -H)."""
    if n < 1000:
        return f"{n} byte{'' if n == 1 else 's'}"
    value = float(n)
    for unit in ("KB", "MB", "GB", "TB", "PB"):
        value /= 1000
        if value < 999.5 or unit == "PB":
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    raise AssertionError("unreachable")


def confirm(env: Environment, question: str, assume_yes: bool) -> bool:
    """The manual's confirmation: "y" or "Y" continues, anything else (or end of input)
    cancels; ``assume_yes`` answers for scripts (and says so)."""
    env.stdout.write(question)
    if assume_yes:
        env.stdout.write("y (--yes)\n")
        env.stdout.flush()
        return True
    env.stdout.flush()
    answer = env.stdin.readline()
    interactive = False
    with contextlib.suppress(AttributeError, ValueError):
        interactive = env.stdin.isatty()
    if not interactive:
        env.say(answer.rstrip("\n"))   # piped: show the answer so the transcript reads right
    return answer.strip() in ("y", "Y")


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


__all__ = ["BTRDB_LOCK", "SYNC2Q_LOCK", "DataPaths", "check_stoppable", "confirm", "data_paths",
           "human", "plural", "stopped", "tools_for", "tree_size"]
