"""A real supervisord on the generated configuration, in a temporary root.

The supervisor files are rendered by the same code as ``qss-get --config qss``, for a
:class:`~installer.components.Layout` whose prefix is a temporary directory (socket, pid
file, logs, the included conf.d and qss.ini all live there), as the current user, with
startsecs of 1 s to keep the test short. The programs are the real ones (``qss-btrdb``,
``qss-receiver``, ``qss-sync2q``, from their console scripts or, until those are
installed, their ``entry`` functions).

What an operator relies on (manual ch. 16): ``supervisorctl status`` shows every program
RUNNING, ``tail`` (and ``tail -f``) shows a program's log, a killed program comes back,
and ``stop all`` stops each with SIGTERM and waits for it to finish; every program runs
with umask 007, and a member of the socket's group (the operator) may ask supervisord
without sudo, anyone else may not. supervisord is always shut down afterwards, and any
program it leaves behind is killed.
"""
from __future__ import annotations

import datetime as dt
import getpass
import grp
import importlib.util
import os
import pwd
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from installer import files
from installer.components import Layout, programs, qss_files
from qss.settings import load_settings

from test_sync2q_support import reserve_port
from waiting import wait_until

BIN = Path(sys.executable).parent
SUPERVISORD = shutil.which("supervisord", path=str(BIN)) or shutil.which("supervisord")
SUPERVISORCTL = shutil.which("supervisorctl", path=str(BIN)) or shutil.which("supervisorctl")
# What the operator runs: Debian's, whose interpreter any user may run.
DEBIAN_SUPERVISORCTL = "/usr/bin/supervisorctl"
# The socket's group. As root, "nogroup", whose member "nobody" stands in for the
# operator (a real user other than supervisord's); otherwise the current user's group.
ROOT = os.geteuid() == 0
SOCKET_GROUP = "nogroup" if ROOT else grp.getgrgid(os.getegid()).gr_name

# The function each program's console script runs, for when the script is not
# installed in the venv yet (setup.py lists the scripts once they land).
REAL_ENTRIES = {"qss-btrdb": "tsdb.server:entry", "qss-receiver": "receiver.server:entry",
                "qss-sync2q": "sync2q.cli:entry", "qss-distil": "distil.cli:entry",
                "qss-plotter": "plotter.server:entry", "qss-metadata": "plotter.metadata:entry"}

# How supervisord reports a program that stopped because of its SIGTERM: it exited by
# itself (the contract), or, when the signal came before the program had installed its
# handler (still starting up, nothing in flight), by the signal's default action. Never
# "terminated by SIGKILL": that would mean stopwaitsecs ran out.
BY_SIGTERM = {"exit status 0", "terminated by SIGTERM"}


def _install_program(bindir: Path, name: str) -> None:
    """Put ``name`` in ``bindir``: the real console script, or a script running its entry."""
    target = bindir / name
    real = BIN / name
    if real.exists():
        target.symlink_to(real)
        return
    module, _, func = REAL_ENTRIES.get(name, ":").partition(":")
    if not module or importlib.util.find_spec(module) is None:
        pytest.fail(f"{name}: neither its console script nor its module exists")
    code = f"import sys; sys.argv[0] = {name!r}; from {module} import {func}; {func}()"
    target.write_text(f"#!/bin/sh\nexec {sys.executable} -c {_sh(code)} \"$@\"\n")
    target.chmod(0o755)


def _sh(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


class Appliance:
    """A temporary root with the generated supervisor configuration, and its supervisord."""

    def __init__(self, prefix: Path):
        self.prefix = prefix
        self.conf = prefix / "etc/supervisor/supervisord.conf"
        self.proc: subprocess.Popen | None = None
        self.pids: set[int] = set()

    def write(self) -> None:
        p = self.prefix
        for d in ("etc/qss", "var/run", "var/log/supervisor", "var/lib/qss", "ssd/data",
                  "ssd/srv", "home/manager", "bin"):
            (p / d).mkdir(parents=True, exist_ok=True)
        # Ports left in TIME_WAIT: no other process is given them before the programs
        # (which bind with SO_REUSEADDR) take them; supervisord's startretries cover a
        # restart that finds one still in use.
        grpc, http, listen, web = reserve_port(), reserve_port(), reserve_port(), reserve_port()
        self.ports = {"btrdb gRPC": grpc, "btrdb REST": http, "receiver": listen,
                      "mr-plotter": web}
        ini = p / "etc/qss/qss.ini"
        ini.write_text(f"[paths]\nupmuconfig = {p}/home/manager/upmuconfig.ini\n"
                       f"backupconfig = {p}/home/manager/backupconfig.ini\n"
                       f"data = {p}/ssd/data\nsrv = {p}/ssd/srv\n"
                       f"[queue]\nurl = sqlite:///{p}/ssd/srv/queue.db\n"
                       f"[btrdb]\nendpoints = 127.0.0.1:{grpc}\n"
                       f"[receiver]\nlisten = 127.0.0.1:{listen}\n"
                       f"[store]\ngrpc = 127.0.0.1:{grpc}\nhttp = 127.0.0.1:{http}\n"
                       # plain HTTP on loopback: ports 443 and 80 need root
                       f"[plotter]\nlisten = 127.0.0.1:{web}\ncertificate =\nkey =\n"
                       f"redirect = off\n")
        layout = Layout(bindir=str(p / "bin"), prefix=str(p), user=getpass.getuser(),
                        group=SOCKET_GROUP, socket_owner=getpass.getuser(), startsecs=1)
        settings = load_settings(str(ini), environ={})
        self.programs = programs(settings, layout)
        for prog in self.programs:
            _install_program(p / "bin", Path(prog.command.split()[0]).name)
        changes = files.plan(qss_files(settings, layout), p)
        list(files.apply(changes, dt.datetime.now()))

    def start(self) -> None:
        log = open(self.prefix / "supervisord.out", "wb")
        self.proc = subprocess.Popen([SUPERVISORD, "-n", "-c", str(self.conf)],
                                     stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, cwd=self.prefix)
        log.close()
        # supervisorctl fails ("sock no such file") until supervisord has made its socket.
        sock = self.prefix / "var/run/supervisor.sock"
        wait_until(lambda: sock.exists() or self.proc.poll() is not None,
                   what=f"supervisord's socket {sock}")
        assert sock.exists(), (self.prefix / "supervisord.out").read_text(errors="replace")

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([SUPERVISORCTL, "-c", str(self.conf), *args],
                              capture_output=True, text=True, timeout=timeout)

    def status(self) -> dict[str, tuple[str, int | None]]:
        out = {}
        for line in self.ctl("status").stdout.splitlines():
            m = re.match(r"(\S+)\s+([A-Z]+)\s*(?:pid (\d+))?", line)
            if m:
                pid = int(m.group(3)) if m.group(3) else None
                out[m.group(1)] = (m.group(2), pid)
                if pid:
                    self.pids.add(pid)
        return out

    def wait_for(self, check, what: str, timeout: float = 30.0):
        """The programs' status once ``check(status)`` holds."""
        def detail() -> str:
            logs = self.logs()
            taken = ("a port was in use by another process (ports: "
                     f"{self.ports})\n" if "Address already in use" in logs else "")
            return taken + logs
        return wait_until(self.status, until=check, timeout=timeout, interval=0.1, what=what,
                          detail=detail)

    def log(self, name: str) -> str:
        path = self.prefix / "var/log" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> str:
        paths = sorted(self.prefix.rglob("*.log")) + [self.prefix / "supervisord.out"]
        return "\n".join(f"--- {f}\n{f.read_text(errors='replace')[-3000:]}"
                         for f in paths if f.exists())

    def shutdown(self) -> None:
        """Stop supervisord whatever state it is in; kill what it leaves behind."""
        if self.proc is not None and self.proc.poll() is None:
            self.ctl("shutdown", timeout=30)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for pid in self.pids:     # only the programs this supervisord started
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass


@pytest.fixture(scope="module")
def appliance():
    if SUPERVISORD is None or SUPERVISORCTL is None:
        pytest.fail("supervisord not found: pip install 'supervisor>=4.2,<5' into the venv "
                    "(setup.py's test extra)")
    # A short path: the control socket's path must fit in 108 bytes.
    prefix = Path(tempfile.mkdtemp(prefix="qss-sv-", dir="/tmp"))
    prefix.chmod(0o755)     # the operator's supervisorctl reads the configuration there
    app = Appliance(prefix)
    try:
        app.write()
        app.start()
        yield app
    finally:
        app.shutdown()
        shutil.rmtree(prefix, ignore_errors=True)


def all_running(names):
    return lambda status: all(status.get(n, ("",))[0] == "RUNNING" for n in names)


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _wait_serving(appliance, timeout: float = 20.0) -> None:
    """Until BTrDB's gRPC and REST ports, the receiver's uPMU port and the plotter's web
    port accept connections
    (RUNNING only means up for startsecs: a loaded machine may still be importing)."""
    wait_until(lambda: {name: _accepting(port) for name, port in appliance.ports.items()},
               until=lambda accepting: all(accepting.values()), timeout=timeout,
               interval=0.1, what="every port accepting connections", detail=appliance.logs)


def test_every_program_reaches_running(appliance):
    names = [p.name for p in appliance.programs]
    assert names == ["btrdb", "receiver", "sync2q", "distil", "mr-plotter", "metadata"]
    appliance.wait_for(all_running(names), "every program RUNNING")
    proc = appliance.ctl("status", "all")
    assert proc.returncode == 0, proc.stdout
    # the real programs serve: BTrDB's gRPC and REST ports, the receiver's uPMU port, the
    # plotter's web site
    _wait_serving(appliance)


def test_every_program_runs_with_umask_007(appliance):
    """What the services create is the group's too (the operator's), never others'."""
    names = [p.name for p in appliance.programs]
    status = appliance.wait_for(all_running(names), "every program RUNNING")
    for name in names:
        proc_status = Path(f"/proc/{status[name][1]}/status").read_text()
        assert re.search(r"^Umask:\s+0007$", proc_status, re.M), name


def test_the_socket_admits_its_group_and_no_one_else(appliance):
    sock = appliance.prefix / "var/run/supervisor.sock"
    st = sock.stat()
    assert (grp.getgrgid(st.st_gid).gr_name, oct(st.st_mode & 0o777)) == \
        (SOCKET_GROUP, oct(0o770))
    if not ROOT:
        pytest.skip("a second user needs root: the socket's owner and mode are checked")
    if not os.access(DEBIAN_SUPERVISORCTL, os.X_OK):
        pytest.fail("/usr/bin/supervisorctl not found: install Debian's supervisor package "
                    "(apt-get install -y supervisor; ./dev does it)")
    nobody, nogroup = pwd.getpwnam("nobody").pw_uid, grp.getgrnam(SOCKET_GROUP).gr_gid
    daemon = grp.getgrnam("daemon").gr_gid     # nobody's group here: not the socket's

    def status_as(gid: int, groups: list[int]) -> subprocess.CompletedProcess:
        return subprocess.run([DEBIAN_SUPERVISORCTL, "-c", str(appliance.conf), "status"],
                              capture_output=True, text=True, timeout=60, user=nobody,
                              group=gid, extra_groups=groups, cwd="/")

    names = [p.name for p in appliance.programs]
    appliance.wait_for(all_running(names), "every program RUNNING")
    member = status_as(daemon, [nogroup])      # as the operator: a supplementary group
    assert sorted(line.split()[:2] for line in member.stdout.splitlines()) == \
        sorted([n, "RUNNING"] for n in names), member.stdout + member.stderr
    other = status_as(daemon, [])
    assert other.returncode != 0 and "Permission denied" in other.stdout + other.stderr


def test_tail_shows_a_programs_log(appliance):
    appliance.wait_for(all_running(["receiver"]), "receiver RUNNING")
    proc = appliance.ctl("tail", "receiver")
    assert proc.returncode == 0 and proc.stdout.strip()
    assert proc.stdout.rstrip("\n") in appliance.log("receiver")   # /var/log/receiver.log
    # tail -f, as the manual's troubleshooting chapter runs it, follows the same log:
    # it shows what is there, then what the receiver logs next (a connection, here)
    follow = subprocess.Popen([SUPERVISORCTL, "-c", str(appliance.conf), "tail", "-f",
                               "receiver"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    try:
        _read_until(follow, lambda text: proc.stdout.strip().splitlines()[-1] in text)
        before = appliance.log("receiver")
        _accepting(appliance.ports["receiver"])
        logged = wait_until(lambda: appliance.log("receiver"),
                            until=lambda log: log != before, timeout=10,
                            what="the receiver to log a connection")
        new = logged[len(before):].strip().splitlines()
        _read_until(follow, lambda text: new[0] in text)
    finally:
        follow.kill()
        follow.wait(timeout=10)


def _read_until(proc: subprocess.Popen, done, timeout: float = 10.0) -> str:
    """What ``proc`` printed, read until ``done(text)``; fails after ``timeout`` s."""
    text = ""
    deadline = time.monotonic() + timeout
    while not done(text):
        left = deadline - time.monotonic()
        ready, _, _ = select.select([proc.stdout], [], [], max(left, 0))
        assert ready and left > 0, f"timed out; printed so far: {text!r}"
        chunk = os.read(proc.stdout.fileno(), 65536)
        assert chunk, f"ended; printed: {text!r}"
        text += chunk.decode(errors="replace")
    return text


def test_a_program_killed_with_sigkill_is_restarted(appliance):
    state, pid = appliance.wait_for(all_running(["receiver"]), "receiver RUNNING")["receiver"]
    os.kill(pid, signal.SIGKILL)
    appliance.wait_for(lambda s: s["receiver"][0] == "RUNNING" and s["receiver"][1] != pid,
                       "receiver restarted with a new pid")
    log = (appliance.prefix / "var/log/supervisor/supervisord.log").read_text()
    assert "exited: receiver (terminated by SIGKILL; not expected)" in log


def test_stop_all_sends_sigterm_and_waits_for_each_program(appliance):
    """`supervisorctl stop all` (manual ch. 5, 6) signals every program at once and waits
    until each has finished and exited by itself."""
    names = [p.name for p in appliance.programs]
    appliance.wait_for(all_running(names), "every program RUNNING")
    started = time.monotonic()
    proc = appliance.ctl("stop", "all")
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(proc.stdout.splitlines()) == sorted(f"{n}: stopped" for n in names)
    status = appliance.status()
    assert {n: status[n][0] for n in names} == {n: "STOPPED" for n in names}
    log = (appliance.prefix / "var/log/supervisor/supervisord.log").read_text()
    # every program stopped because of the SIGTERM, none needed SIGKILL
    stopped = dict(re.findall(r"stopped: (\S+) \((.*?)\)", log))
    assert sorted(stopped) == sorted(names) and set(stopped.values()) <= BY_SIGTERM, log
    assert elapsed < max(p.stopwaitsecs for p in appliance.programs)


def test_shutdown_stops_programs_one_at_a_time_in_reverse_start_order(appliance):
    """What systemd does at shutdown and reboot (supervisor.service's ExecStop is
    `supervisorctl shutdown`): metadata first, then mr-plotter, distil, sync2q, receiver,
    btrdb, each only after the one before has exited; the time this may take is the drop-in's TimeoutStopSec."""
    names = [p.name for p in appliance.programs]
    assert appliance.ctl("start", "all").returncode == 0
    appliance.wait_for(all_running(names), "every program RUNNING")
    _wait_serving(appliance)   # BTrDB logs a SIGTERM once it listens, not before
    log_path = appliance.prefix / "var/log/supervisor/supervisord.log"
    offset = len(log_path.read_text())
    btrdb_offset = len(appliance.log("btrdb"))
    assert appliance.ctl("shutdown").returncode == 0
    appliance.proc.wait(timeout=sum(p.stopwaitsecs for p in appliance.programs))
    log = log_path.read_text()[offset:]
    stopped = re.findall(r"^(\S+ \S+) \w+ stopped: (\S+) \((.*?)\)$", log, re.M)
    assert [name for _, name, _ in stopped] == list(reversed(names)), log
    assert all(how in BY_SIGTERM for _, _, how in stopped), log
    # BTrDB is told to stop only once sync2q and the receiver have exited: it logs the
    # signal it got, with a timestamp in the same format and clock as supervisord's.
    term = [line for line in appliance.log("btrdb")[btrdb_offset:].splitlines()
            if "SIGTERM" in line]
    assert term, appliance.log("btrdb")
    btrdb_signalled = term[0][:23]
    last_before = dict((name, when) for when, name, _ in stopped)["receiver"]
    assert btrdb_signalled >= last_before, (btrdb_signalled, log)
