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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from installer.hooks import DataTools


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


def _base_python() -> str:
    return getattr(sys, "_base_executable", None) or sys.executable


def _default_bindir() -> str:
    """Where supervisord finds the suite's commands: ``/opt/qss/current/bin`` when this
    program runs from a version installed by qss-get (so a switch of versions needs no
    new configuration), else this environment's scripts folder."""
    scripts = sysconfig.get_path("scripts")
    if "/opt/qss/versions/" in scripts:      # also a tree made under --root
        return "/opt/qss/current/bin"
    return scripts


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


def run_tool(argv: Sequence[str], stdout: bool = False,
             timeout: float = 120, combined: bool = False) -> tuple[int, str]:
    """Run a system tool: (its exit status, its message), 127 when it cannot be started
    and 124 when it does not answer in ``timeout`` seconds.

    The message is its standard error, or standard output when that is empty, stripped;
    with ``stdout``, a tool that succeeds returns its standard output as it is (lsblk -J
    prints JSON); with ``combined`` the message is both streams as the tool interleaved
    them (another qss-get's report).
    """
    try:
        proc = subprocess.run(list(argv), stdout=subprocess.PIPE, text=True, timeout=timeout,
                              stderr=subprocess.STDOUT if combined else subprocess.PIPE,
                              stdin=subprocess.DEVNULL)
    except OSError as exc:
        return 127, f"{argv[0]}: {exc.strerror or exc}"
    except subprocess.TimeoutExpired:
        return 124, f"{argv[0]}: no answer in {timeout:g} s"
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
    name service). All three are used only when ``root`` is ``/``. ``settings_file`` is
    the data actions' settings file when named (``--settings``); ``environ`` is the
    process's environment (``$QSS_CONFIG``, ``BTRDB_ENDPOINTS``, ``MONGO_ADDR``), read
    only when ``root`` is ``/`` (:mod:`installer.appliance`).
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
    bindir: str = field(default_factory=_default_bindir)
    euid: Callable[[], int] = os.geteuid
    run: Callable[[Sequence[str]], tuple[int, str]] = run_tool
    #: Long steps (creating a Python environment, pip, apt-get): up to 30 minutes.
    run_long: Callable[[Sequence[str]], tuple[int, str]] = lambda argv: run_tool(
        argv, timeout=1800, combined=True)
    #: The interpreter new versions' environments are made from (this one's base).
    python: str = field(default_factory=_base_python)
    user_exists: Callable[[str], bool] = _user_exists
    in_group: Callable[[str, str], bool] = _in_group
    #: Hooks of the data actions (service control, locks, block devices); None: the real
    #: ones (:class:`installer.hooks.DataTools`).
    data_tools: DataTools | None = None
    settings_file: Path | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

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
