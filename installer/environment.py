"""What qss-get's actions touch outside their arguments, as one object tests replace.

The root prefix, the standard streams, the clock (and sleep), the machine's routing table and
network devices, where the suite's programs are installed, the runner of system tools,
and the machine's accounts: :meth:`Environment.from_system` gives the real ones; tests
build their own.
"""
from __future__ import annotations

import datetime as dt
import grp
import os
import pwd
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from installer.services import DataTools


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _net_devices() -> list[str]:
    try:
        return sorted(os.listdir("/sys/class/net"))
    except OSError:
        return []


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _in_group(user: str, group: str) -> bool:
    try:
        g = grp.getgrnam(group)
    except KeyError:
        return False
    if user in g.gr_mem:
        return True
    try:
        return pwd.getpwnam(user).pw_gid == g.gr_gid
    except KeyError:
        return False


def run_tool(argv: Sequence[str], stdout: bool = False) -> tuple[int, str]:
    """Run a system tool: (its exit status, its message), 127 when it cannot be started
    and 124 when it does not answer in 120 s.

    The message is its standard error, or standard output when that is empty, stripped;
    with ``stdout``, a tool that succeeds returns its standard output as it is (lsblk -J
    prints JSON).
    """
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=120)
    except OSError as exc:
        return 127, f"{argv[0]}: {exc.strerror or exc}"
    except subprocess.TimeoutExpired:
        return 124, f"{argv[0]}: no answer in 120 s"
    if stdout and proc.returncode == 0:
        return proc.returncode, proc.stdout
    return proc.returncode, (proc.stderr or proc.stdout).strip()


@dataclass
class Environment:
    """The world an action runs in.

    ``root`` is where files are written (``--root``; ``/`` on the appliance); the files'
    contents always name the appliance's own paths. ``bindir`` is where the suite's
    console scripts (qss-btrdb, qss-receiver, ...) are installed: supervisord runs them
    from there. ``run`` runs a system tool and returns (exit status, its output);
    ``user_exists(name)`` and ``in_group(user, group)`` ask this machine's accounts (the
    name service). All three are used only when ``root`` is ``/``.
    """

    root: Path = Path("/")
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    clock: Callable[[], dt.datetime] = dt.datetime.now
    #: Waits between refreshes of ``--status --watch`` (tests: no waiting).
    sleep: Callable[[float], None] = time.sleep
    route_table: Callable[[], str] = lambda: _read("/proc/net/route")
    net_devices: Callable[[], list[str]] = _net_devices
    bindir: str = field(default_factory=lambda: sysconfig.get_path("scripts"))
    euid: Callable[[], int] = os.geteuid
    run: Callable[[Sequence[str]], tuple[int, str]] = run_tool
    user_exists: Callable[[str], bool] = _user_exists
    in_group: Callable[[str, str], bool] = _in_group
    #: Hooks of the data actions (service control, locks, block devices); None: the real
    #: ones (see :func:`installer.services.tools_for`).
    data_tools: DataTools | None = None

    @classmethod
    def from_system(cls) -> Environment:
        """The real machine: ``/``, the process's streams, clock and tools."""
        return cls()

    @property
    def live(self) -> bool:
        """True when writing to this machine's own ``/`` (not into a folder)."""
        return self.root == Path("/")

    def say(self, line: str = "") -> None:
        """One line to standard output."""
        print(line, file=self.stdout, flush=True)

    def warn(self, line: str) -> None:
        """One ``qss-get: warning: ...`` line to standard error."""
        print(f"qss-get: warning: {line}", file=self.stderr, flush=True)
