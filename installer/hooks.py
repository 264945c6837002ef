"""The hooks qss-get's data actions reach the machine through: the services
(supervisord), the queue, free space, block devices and mounts, and supervisor's programs
for ``--status``. :class:`DataTools` holds them; tests build their own, and
:func:`installer.services.tools_for` builds the real ones."""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from qss.accounts import AccountStore, open_accounts
from qss.permalinks import Permalinks, open_permalinks
from qss.queue import Queue, open_queue
from qss.status import DiskUsage, ProbeError, Program, disk_usage

from .files import DeployError


class Unreachable(DeployError):
    """supervisord cannot be asked (not running, no permission on its socket)."""


class ServiceControl(Protocol):
    """Stops and starts every program of the appliance (``supervisorctl stop/start all``)."""

    def stop_all(self) -> None:
        """Raises :class:`Unreachable` or :class:`DeployError`."""

    def start_all(self) -> None:
        """Raises :class:`Unreachable` or :class:`DeployError`."""

    def restart_all(self) -> None:
        """Read the configuration again and restart every program (after an update).
        Raises :class:`Unreachable` or :class:`DeployError`."""

    def reachable(self) -> bool:
        """Whether supervisord answers (asked before a question whose answer would have
        it stop every program)."""


@dataclass
class Supervisor:
    """:class:`ServiceControl` through Debian's ``supervisorctl`` (run by ``run``);
    ``options`` go before the verb (``-c FILE`` for a supervisord of one's own)."""

    run: Callable[[Sequence[str]], tuple[int, str]]
    command: str = "supervisorctl"
    options: tuple[str, ...] = ()

    def _do(self, verb: str, *args: str) -> None:
        args = args or ("all",)
        code, output = self.run([self.command, *self.options, verb, *args])
        if code == 0:
            return
        text = " ".join(output.split()) or f"exit status {code}"
        if code == 127 or any(s in text.lower() for s in (
                "no such file", "refused", "permission denied", ".sock")):
            raise Unreachable(f"{self.command} {verb} all: {text}")
        raise DeployError(f"{self.command} {verb} all failed (exit status {code}): {text}")

    def stop_all(self) -> None:
        self._do("stop")

    def start_all(self) -> None:
        self._do("start")

    def reachable(self) -> bool:
        code, output = self.run([self.command, *self.options, "pid"])
        return code == 0 and output.strip().isdigit()

    def restart_all(self) -> None:
        # update: programs whose configuration changed are restarted with the new one;
        # restart all: the others run the new version's code too.
        self._do("update")
        self._do("restart")


@dataclass(frozen=True)
class BlockDevice:
    """A file system on a block device, as ``lsblk`` reports it."""

    path: str
    label: str | None
    uuid: str | None
    fstype: str | None
    mountpoints: tuple[str, ...] = ()


def lsblk_devices(run: Callable[[Sequence[str]], tuple[int, str]]) -> list[BlockDevice]:
    """The machine's file systems (``lsblk -J -p -o PATH,LABEL,UUID,FSTYPE,MOUNTPOINTS``).

    Raises:
        DeployError: lsblk failed or printed something else than JSON.
    """
    code, out = run(["lsblk", "-J", "-p", "-o", "PATH,LABEL,UUID,FSTYPE,MOUNTPOINTS"])
    if code != 0:
        raise DeployError(f"lsblk failed (exit status {code}): {out}")
    try:
        doc = json.loads(out)
    except ValueError:
        raise DeployError(f"lsblk printed something unexpected: {out[:80]!r}") from None
    found: list[BlockDevice] = []

    def walk(items: list[dict]) -> None:
        for d in items:
            points = d.get("mountpoints") or [d.get("mountpoint")]
            found.append(BlockDevice(d.get("path") or "", d.get("label"), d.get("uuid"),
                                     d.get("fstype"), tuple(p for p in points if p)))
            walk(d.get("children") or [])
    walk(doc.get("blockdevices") or [])
    return found


@dataclass
class DataTools:
    """The hooks of the data actions; ``services`` None: nothing to stop (``--root``)."""

    services: ServiceControl | None = None
    open_queue: Callable[[str], Queue] = open_queue
    #: the plotter's permalinks (queue url, srv): backup and restore carry them
    open_permalinks: Callable[[str, str], Permalinks] = \
        lambda url, srv: open_permalinks(url, srv, timeout_ms=30_000)
    #: the plotter's accounts (queue url, srv): backup and restore carry them, hashes only
    open_accounts: Callable[[str, str], AccountStore] = \
        lambda url, srv: open_accounts(url, srv, timeout_ms=30_000)
    disk_free: Callable[[Path], int] = lambda p: shutil.disk_usage(p).free
    block_devices: Callable[[], list[BlockDevice]] = list
    mount: Callable[[str], tuple[int, str]] | None = None
    chown: bool = False            # hand restored files to the service user (live only)
    proc_dir: Path | None = None   # /proc, to find processes holding the queue (live only)
    #: --status: the use of the file system holding a path, and supervisor's programs
    #: (``supervisorctl status``; under ``--root`` not asked: not that root's services).
    disk_usage: Callable[[str], DiskUsage] = disk_usage
    programs: Callable[[], list[Program]] = lambda: _not_asked()


def _not_asked() -> list[Program]:
    raise ProbeError("not asked under --root: this machine's services are not that "
                     "root's")
