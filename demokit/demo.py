"""The whole appliance on one machine, in one folder, under a real supervisord: ``./dev demo``.

``python -m demokit up [--dir DIR]`` lays out a folder as the appliance's root (its
``etc/qss/qss.ini``, ``etc/supervisor/``, ``ssd/data``, ``ssd/srv``, ``home/manager``,
``var/log``, ``var/run``), renders supervisord's files with the same library code as
``qss-get --config qss`` (:mod:`installer.components`, for a :class:`Layout` whose prefix
is the folder, run as the current user), starts supervisord with the programs btrdb
(the embedded BTrDB), receiver, sync2q (the embedded SQLite queue) and distil (derived
streams: frequency, power, ... of every uPMU within seconds of its data), registers the
simulated uPMUs with ``upmu-adm -c "add ...; save"``, and then adds one supervisor
program per simulated uPMU (``qss-sim``), each back from an hour offline: it pushes
that hour first, then a file a minute. Everything listens on 127.0.0.1 only; nothing
needs root or touches the machine's ``/etc``.

``status [--watch S] [--for S]`` shows the appliance's status report (the one of
``upmu-adm status`` and ``qss-get --status``), or that the demo is stopped and how to
start it (exit status 1); ``stop`` shuts supervisord down, which stops every program.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import getpass
import grp
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from installer import files
from installer.components import (Layout, Program, program_block, programs, qss_files,
                                  tools_files)
from qss.cli import CommandError, ExitStatus, add_traceback_argument, run
from qss.distilstate import location as distil_location
from qss.settings import load_settings
from qss.status import Probes, report, supervisor_programs, watch
from qss.upmuconfig import UpmuList

__all__ = ["Demo", "Ports", "choose_ports", "main"]

PROG = "qss-demo"
BIN = Path(sys.executable).parent
#: The appliance's own ports (architecture §5), used when free, so the manual's examples work.
PREFERRED = {"receiver": 1883, "grpc": 4410, "http": 9000, "plotter": 8080}
SERIAL_BASE = 3000001
SIM_PRIORITY = 500      # after sync2q (400): supervisord starts the devices last


@dataclasses.dataclass(frozen=True)
class Ports:
    """The demo's loopback ports."""

    receiver: int
    grpc: int
    http: int
    plotter: int = 0       # the plotter's web site (mr-plotter); 0: none


def _free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _any_free_port(taken: set[int]) -> int:
    """A free loopback port, left in TIME_WAIT so that the kernel does not hand it to
    another process's port 0 before our programs (which bind with SO_REUSEADDR) take it."""
    while True:
        with socket.socket() as listener:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            port = listener.getsockname()[1]
            with socket.create_connection(("127.0.0.1", port)):
                accepted, _ = listener.accept()
                accepted.close()        # the server's side closes first: TIME_WAIT
        if port not in taken:
            return port


def choose_ports(preferred: dict[str, int] | None = None) -> tuple[Ports, list[str]]:
    """Loopback ports for the demo: the appliance's own when free, else free ones; and a
    note for each port that had to change."""
    chosen: dict[str, int] = {}
    notes = []
    for name, port in (preferred or PREFERRED).items():
        if port and _free(port) and port not in chosen.values():
            chosen[name] = port
        else:
            chosen[name] = _any_free_port(set(chosen.values()))
            if port:
                notes.append(f"port {port} ({name}) is in use on 127.0.0.1: using "
                             f"{chosen[name]} instead")
    return Ports(**chosen), notes


class Demo:
    """The appliance in the folder ``root`` (absolute; short, since supervisord's socket
    path must fit in 108 bytes)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(os.path.abspath(root))
        self.ini = self.root / "etc/qss/qss.ini"
        self.conf = self.root / "etc/supervisor/supervisord.conf"
        self.sim_conf = self.root / "etc/supervisor/conf.d/upmus.conf"
        self.plotter_conf = self.root / "etc/supervisor/conf.d/plotter.conf"
        self.state = self.root / "demo.json"

    # -- set up ---------------------------------------------------------------------

    def write(self, ports: Ports) -> None:
        """qss.ini and supervisord's files for the folder (the devices come later).

        Raises:
            CommandError: the folder's appliance is running (stop it first).
        """
        if self.running():
            raise CommandError(f"the demo in {self.root} is running; stop it first "
                               f"(./dev demo stop)")
        r = self.root
        for d in ("etc/qss", "etc/supervisor/conf.d", "var/run", "var/log/supervisor",
                  "var/lib/qss", "ssd/data", "ssd/srv", "home/manager",
                  "home/manager/distillates"):
            (r / d).mkdir(parents=True, exist_ok=True)
        self.sim_conf.unlink(missing_ok=True)
        self.ini.write_text(
            "# The demo appliance's settings (python -m demokit): everything in this folder,\n"
            "# on 127.0.0.1 only.\n"
            f"[paths]\nupmuconfig = {r}/home/manager/upmuconfig.ini\n"
            f"backupconfig = {r}/home/manager/backupconfig.ini\n"
            f"data = {r}/ssd/data\nsrv = {r}/ssd/srv\n"
            f"[queue]\nurl = sqlite:///{r}/ssd/srv/queue.db\n"
            f"[btrdb]\nendpoints = 127.0.0.1:{ports.grpc}\n"
            f"[receiver]\nlisten = 127.0.0.1:{ports.receiver}\n"
            f"[store]\ngrpc = 127.0.0.1:{ports.grpc}\nhttp = 127.0.0.1:{ports.http}\n"
            # Your own distillates (manual ch. 17): *.py files dropped here.
            f"[distil]\ndistillates = {r}/home/manager/distillates\n"
            f"[plotter]\ntagconfig = {r}/home/manager/mr-plotter/tools/tagconfig.json\n"
            + (f"# plain HTTP on loopback (the appliance: HTTPS on 443)\n"
               f"listen = 127.0.0.1:{ports.plotter}\ncertificate =\nkey =\nredirect = off\n"
               if ports.plotter else ""))
        settings = load_settings(str(self.ini), environ={})
        layout = self.layout()
        # Only supervisor's files: the systemd drop-in, sysusers and tmpfiles are for a
        # real appliance's boot, not a folder.
        specs = [s for s in qss_files(settings, layout, plotter=bool(ports.plotter))
                 if s.path.startswith("/etc/supervisor/")]
        list(files.apply(files.plan(specs, r), dt.datetime.now()))
        # accounts.py and tagconfig.json (manual ch. 10-11), at the folder's own paths.
        list(files.apply(files.plan(tools_files(settings, layout), Path("/")),
                         dt.datetime.now()))
        # mr-plotter is in qss.conf, as on the appliance (a folder written before had it
        # in a file of its own: two programs of one name would stop supervisord).
        self.plotter_conf.unlink(missing_ok=True)
        # `cd DIR && supervisorctl status` finds the configuration here.
        link = r / "supervisord.conf"
        if not link.exists():
            link.symlink_to(self.conf.relative_to(r))
        self.state.write_text(json.dumps(dataclasses.asdict(ports)))

    def layout(self) -> Layout:
        """The supervisor layout: this folder, the current user, this Python's scripts."""
        user = getpass.getuser()
        return Layout(bindir=str(BIN), prefix=str(self.root), user=user,
                      group=grp.getgrgid(os.getegid()).gr_name, operator=user,
                      socket_owner=user, startsecs=2)

    def ports(self) -> Ports:
        """The ports written by :meth:`write`."""
        return Ports(**json.loads(self.state.read_text()))

    def start(self, timeout: float = 60.0) -> None:
        """Start supervisord (it detaches) and wait until its programs (btrdb, receiver,
        sync2q, distil) run.

        Raises:
            CommandError: supervisord or a program did not start (with the log's tail).
        """
        out = self.root / "var/log/supervisor/supervisord.out"
        with open(out, "ab") as log:
            done = subprocess.run([str(BIN / "supervisord"), "-c", str(self.conf)],
                                  stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=subprocess.STDOUT, cwd=self.root, timeout=60)
        if done.returncode != 0:
            raise CommandError(f"supervisord did not start: {_tail(out)}")
        ports = self.ports()
        names = [p.name for p in programs(load_settings(str(self.ini), environ={}),
                                          self.layout(), plotter=bool(ports.plotter))]
        self.wait_running(names, timeout)
        # RUNNING means up for startsecs, not yet serving: upmu-adm save needs BTrDB.
        deadline = time.monotonic() + timeout
        serving = [("btrdb", ports.grpc), ("btrdb", ports.http), ("receiver", ports.receiver)]
        if ports.plotter:
            serving.append(("mr-plotter", ports.plotter))
        for name, port in serving:
            while not _accepting(port):
                if time.monotonic() > deadline:
                    raise CommandError(f"{name} does not answer on 127.0.0.1:{port} after "
                                       f"{timeout:g} s ({_tail(self.log(name))})")
                time.sleep(0.1)

    def wait_running(self, names: Sequence[str], timeout: float) -> None:
        """Wait until every program of ``names`` is RUNNING.

        Raises:
            CommandError: one is not after ``timeout`` seconds (with its log's tail).
        """
        deadline = time.monotonic() + timeout
        while True:
            states = {p.name: p.state for p in self.programs()}
            if all(states.get(n) == "RUNNING" for n in names):
                return
            if time.monotonic() > deadline:
                bad = [n for n in names if states.get(n) != "RUNNING"]
                raise CommandError(f"not running after {timeout:g} s: "
                                   + "; ".join(f"{n} {states.get(n, 'missing')} "
                                               f"({_tail(self.log(n))})" for n in bad))
            time.sleep(0.2)

    def register(self, count: int) -> list[str]:
        """Add ``count`` simulated uPMUs (extended mode) with upmu-adm and save; returns
        their serials.

        Raises:
            CommandError: upmu-adm failed (its message).
        """
        serials = [f"P{SERIAL_BASE + i}" for i in range(count)]
        have = {u.serial for u in UpmuList.load(str(self.root / "home/manager/upmuconfig.ini"))}
        adds = [f"add 127.0.0.{11 + i} {s} upmu{i + 1} true"
                for i, s in enumerate(serials) if s not in have]
        if adds:
            command = "; ".join(adds + ["save"])
            done = subprocess.run([str(BIN / "upmu-adm"), "--config", str(self.ini), "-c",
                                   command], capture_output=True, text=True, timeout=120,
                                  stdin=subprocess.DEVNULL)
            if done.returncode != 0:
                raise CommandError(f"upmu-adm -c {command!r} failed: "
                                   f"{(done.stderr or done.stdout).strip()}")
        return serials

    def add_devices(self, serials: Sequence[str], backlog_hours: float = 1.0,
                    extra: Sequence[str] = ()) -> None:
        """One supervisor program per serial (``upmu1``, ...) running qss-sim against the
        receiver, then ``supervisorctl update`` starts them."""
        ports = self.ports()
        blocks = []
        for i, serial in enumerate(serials):
            command = (f"{BIN}/qss-sim --port {ports.receiver} --serial {serial} "
                       f"--backlog {backlog_hours:g} --seed {i} --progress 30 "
                       + " ".join(extra)).strip()
            blocks.append(self._program(f"upmu{i + 1}", command))
        self.sim_conf.write_text(
            "; Simulated uPMUs of the demo (python -m demokit): each pushes over the real\n"
            "; protocol to the receiver; logs in var/log/upmuN.log.\n\n" + "\n".join(blocks))
        done = self.ctl("update")
        if done.returncode != 0:
            raise CommandError(f"supervisorctl update failed: {done.stdout.strip()}")
        self.wait_running([f"upmu{i + 1}" for i in range(len(serials))], 60)

    def _program(self, name: str, command: str) -> str:
        # The appliance's own program template, so the devices behave as its programs do.
        env = {"HOME": f"{self.root}/var/lib/qss", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
        return program_block(Program(name, f"simulated uPMU ({name})", command, SIM_PRIORITY,
                                     stopwaitsecs=10, environment=env),
                             self.layout(), str(self.root / "var/log"))

    # -- look ---------------------------------------------------------------------------

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """``supervisorctl -c <the demo's supervisord.conf> ARGS``."""
        return subprocess.run([str(BIN / "supervisorctl"), "-c", str(self.conf), *args],
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def programs(self):
        """supervisor's programs (empty when supervisord is not running)."""
        try:
            return supervisor_programs((str(BIN / "supervisorctl"), "-c", str(self.conf),
                                        "status"))
        except Exception:   # noqa: BLE001 - not running (or not yet): no programs
            return []

    def running(self) -> bool:
        """Whether this folder's supervisord answers."""
        return self.conf.exists() and (self.root / "var/run/supervisor.sock").exists() \
            and self.ctl("pid").stdout.strip().isdigit()

    def log(self, program: str) -> Path:
        """A program's log file."""
        return self.root / "var/log" / f"{program}.log"

    def status_text(self) -> str:
        """The appliance's status report (as upmu-adm status), with the time."""
        settings = load_settings(str(self.ini), environ={})
        with Probes(queue_url=settings.queue.url, srv=settings.paths.srv,
                    distil_state=distil_location(settings),
                    max_disk_percent=settings.receiver.max_disk_percent,
                    supervisor=lambda: supervisor_programs(
                        (str(BIN / "supervisorctl"), "-c", str(self.conf), "status"))) as probes:
            upmus = list(UpmuList.load(settings.paths.upmuconfig))
            now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            return "\n".join([f"Demo appliance in {self.root} at {now} UTC",
                              *report(probes, upmus, settings.paths.upmuconfig)])

    # -- stop -----------------------------------------------------------------------

    def stop(self, timeout: float = 120.0) -> bool:
        """Shut supervisord down (every program stops first); False if it was not running."""
        if not self.running():
            return False
        pid = int(self.ctl("pid").stdout.strip())
        self.ctl("shutdown", timeout=timeout)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        return True


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return f"no log at {path}"
    return " | ".join(text[-lines:]) or f"{path} is empty"


def rest_example(ports: Ports, uuid: str, start_ns: int, end_ns: int) -> str:
    """The REST API URL of one stream's per-minute statistics (windows of 2^36 ns, about
    a minute; statistics need ``unitoftime=ns``, docs/btrdb-server.md)."""
    return (f"http://127.0.0.1:{ports.http}/data/uuid/{uuid}?starttime={start_ns}"
            f"&endtime={end_ns}&unitoftime=ns&pw=36")


def first_stream(demo: Demo, stream: str = "L1MAG") -> tuple[str, str] | None:
    """(alias, UUID) of the first uPMU's ``stream``, or None."""
    settings = load_settings(str(demo.ini), environ={})
    for upmu in UpmuList.load(settings.paths.upmuconfig):
        if stream in upmu.streams:
            return upmu.alias, str(upmu.streams[stream].uuid)
    return None


# -- the command ---------------------------------------------------------------------

def cmd_up(args: argparse.Namespace) -> int:
    demo = Demo(args.dir)
    if demo.running():
        print(f"The demo in {demo.root} is already running (./dev demo stop stops it).")
        return ExitStatus.OK
    ports, notes = choose_ports()
    print(f"Plotter: http://127.0.0.1:{ports.plotter}/   (open it in a browser: Select "
          f"Streams, then plot)", flush=True)
    for note in notes:
        print(f"note: {note}")
    demo.write(ports)
    print(f"Starting supervisord in {demo.root}: btrdb (gRPC 127.0.0.1:{ports.grpc}, REST "
          f"127.0.0.1:{ports.http}), receiver (127.0.0.1:{ports.receiver}), sync2q, "
          f"distil, mr-plotter (http://127.0.0.1:{ports.plotter}/)", flush=True)
    demo.start()
    serials = demo.register(args.devices)
    print(f"Registered {', '.join(serials)} with upmu-adm (add ...; save)", flush=True)
    demo.add_devices(serials, args.backlog)
    print(f"Started {len(serials)} simulated uPMU(s) (supervisor programs "
          f"{', '.join(f'upmu{i + 1}' for i in range(len(serials)))}), each pushing the last "
          f"{args.backlog:g} h of data, then a file a minute", flush=True)
    return ExitStatus.OK


def stopped_text(demo: Demo) -> str:
    """What ``status`` says of a demo that is not running."""
    return (f"The demo in {demo.root} is stopped (its data stays there); start it with: "
            f"./dev demo")


def cmd_status(args: argparse.Namespace) -> int:
    demo = Demo(args.dir)
    if not demo.ini.exists():
        raise CommandError(f"no demo in {demo.root}: start one with ./dev demo")
    if not demo.running():
        print(stopped_text(demo))
        return ExitStatus.ERROR
    if args.watch is None:
        print(demo.status_text())
        return ExitStatus.OK
    until = None if args.for_ is None else time.monotonic() + args.for_
    stopped = False

    def sleep(seconds: float) -> None:
        nonlocal stopped
        if until is not None and time.monotonic() + seconds > until:
            raise KeyboardInterrupt     # watch() ends on it, as on Ctrl+C
        time.sleep(seconds)
        if not demo.running():          # ./dev demo stop meanwhile
            stopped = True
            raise KeyboardInterrupt

    watch(demo.status_text, out=sys.stdout, interval=args.watch, sleep=sleep,
          clear=sys.stdout.isatty())
    if stopped:
        print(stopped_text(demo))
        return ExitStatus.ERROR
    return ExitStatus.OK


def cmd_rest(args: argparse.Namespace) -> int:
    demo = Demo(args.dir)
    found = first_stream(demo)
    if found is None:
        raise CommandError(f"no uPMU in the demo in {demo.root}")
    alias, uuid = found
    end = time.time_ns()
    url = rest_example(demo.ports(), uuid, end - 2 * 3600 * 10**9, end)
    print(f"$ curl '{url}'\n  ({alias} L1MAG in volts, per-minute statistics of the last "
          f"2 hours)")
    with urllib.request.urlopen(url, timeout=30) as response:
        body = json.loads(response.read())
    rows = body[0].get("XReadings", []) if body else []
    print(f"{len(rows)} windows of about a minute; the last 3 [ms, ns, min, mean, max, count]:")
    for row in rows[-3:]:
        print("  " + json.dumps(row))
    return ExitStatus.OK


def cmd_stop(args: argparse.Namespace) -> int:
    demo = Demo(args.dir)
    if demo.stop():
        print(f"Stopped the demo in {demo.root} (supervisord and every program); its data "
              f"stays there (delete the folder to start afresh).")
    else:
        print(f"No demo running in {demo.root}.")
    return ExitStatus.OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m demokit``."""
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", default="demo", help="the demo's folder (default ./demo)")
    add_traceback_argument(p)
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="set up the folder and start the appliance")
    up.add_argument("--devices", type=int, default=2, choices=range(1, 10), metavar="N",
                    help="simulated uPMUs (1 to 9, default 2)")
    up.add_argument("--backlog", type=float, default=1.0, metavar="HOURS",
                    help="hours of data each device pushes first (default 1)")
    status = sub.add_parser("status", help="the status report")
    status.add_argument("--watch", type=float, metavar="S", help="repeat every S seconds")
    status.add_argument("--for", dest="for_", type=float, metavar="S",
                        help="with --watch: stop after S seconds (default: Ctrl+C)")
    sub.add_parser("rest", help="one REST API query against the embedded BTrDB")
    sub.add_parser("stop", help="shut supervisord down")
    return p


def main(argv: Sequence[str]) -> int:
    """Entry point without exception mapping."""
    args = build_parser().parse_args(argv)
    return {"up": cmd_up, "status": cmd_status, "rest": cmd_rest,
            "stop": cmd_stop}[args.command](args)


def entry() -> None:
    """``python -m demokit``."""
    sys.exit(run(main, prog=PROG))
