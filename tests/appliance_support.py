"""Support for the appliance's end-to-end, fault and load suites (``tests/test_e2e_*.py``)
and ``bench/bench_appliance.py``; no tests here.

:class:`Appliance` is the demo's appliance (:class:`demokit.demo.Demo`: btrdb, receiver and
sync2q under a real supervisord, in a folder under /tmp, 127.0.0.1 only) with uPMUs
registered through ``upmu-adm -c``. :class:`SimRun` is a real ``qss-sim --json`` pushing
to its receiver. :func:`check_exactly_once` compares the queue with the files the
devices make (the generator is deterministic per serial, seed and second) and every
stream in BTrDB, read through the official client, with what :func:`qss.dat.parse`
makes of those files. :func:`kill_at_random` SIGKILLs programs at seeded random moments;
supervisord restarts them (``autorestart=true``). :class:`RssSampler` samples each
program's resident memory with psutil.
"""
from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import btrdb
import numpy as np
import psutil

from qss import dat, naming
from demokit.demo import Demo, choose_ports
from qss.generator import UpmuSimulator
from qss.queue import open_queue
from simulator.devices import EXAMPLE_START
from qss.streams import EXTENDED_STREAMS
from qss.upmuconfig import UpmuList
from test_sync2q_support import connect, read_stream
from waiting import wait_until

BIN = Path(sys.executable).parent
#: The appliance's programs and the console script each runs.
PROGRAMS = {"btrdb": "qss-btrdb", "receiver": "qss-receiver", "sync2q": "qss-sync2q"}
START_ISO = "2015-12-18T08:14:57Z"      # = EXAMPLE_START: the manual's example file


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- what the devices push ------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Push:
    """What a qss-sim run pushes: enough to make every file again, byte for byte.

    ``files`` per device (None: until stopped), ``file_seconds`` of extended data each,
    from ``start``; ``interval`` seconds between a device's files (None: ``--fast``)."""

    serials: tuple[str, ...]
    files: int | None
    file_seconds: int = 10
    interval: float | None = None
    seed: int = 0
    start: int = EXAMPLE_START

    def args(self) -> list[str]:
        """qss-sim's arguments for this push (serials counting up from the first)."""
        out = ["--serial-base", self.serials[0], "--devices", str(len(self.serials)),
               "--file-seconds", str(self.file_seconds), "--seed", str(self.seed),
               "--start", dt.datetime.fromtimestamp(self.start, dt.timezone.utc)
               .strftime("%Y-%m-%dT%H:%M:%SZ"), "--extended"]
        if self.files is not None:
            out += ["--files", str(self.files)]
        if self.interval is None:
            out += ["--fast"]
        else:
            out += ["--interval", f"{self.interval:g}", "--gap", "0"]
        return out

    def file(self, serial: str, k: int) -> tuple[str, bytes]:
        """File ``k`` of ``serial``: (device path, contents), as qss-sim makes it."""
        start = self.start + k * self.file_seconds
        path = naming.device_path(serial, dt.datetime.fromtimestamp(start, dt.timezone.utc))
        sim = UpmuSimulator(serial, seed=self.seed, extended=True)
        return path, sim.file_bytes(start, self.file_seconds)

    def points_per_file(self) -> int:
        """Points of one file over its 19 streams."""
        return self.file_seconds * 120 * len(EXTENDED_STREAMS)


class SimRun:
    """A real ``qss-sim --json`` process; its JSON lines are read in a thread."""

    def __init__(self, port: int, push: Push, *extra: str, progress: float = 0.5,
                 log: Path | None = None) -> None:
        self.push = push
        command = [str(BIN / "qss-sim"), "--json", "--port", str(port), "--progress",
                   f"{progress:g}", *push.args(), *extra]
        self.log_file = open(log, "w") if log else subprocess.DEVNULL   # noqa: SIM115
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self.log_file, text=True)
        self.events: list[dict] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            event = json.loads(line)
            with self._changed:
                self.events.append(event)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def totals(self) -> dict:
        """The latest totals (zeros before the first progress line)."""
        with self._changed:
            return self.events[-1]["totals"] if self.events else {}

    def wait_until(self, check: Callable[[dict], bool], what: str,
                   timeout: float = 60.0) -> dict:
        """The latest totals once ``check(totals)`` holds.

        Raises:
            AssertionError: qss-sim ended, or ``timeout`` passed, first.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if self.events and check(self.events[-1]["totals"]):
                    return self.events[-1]["totals"]
                if self.events and self.events[-1]["event"] == "summary":
                    raise AssertionError(f"qss-sim ended before {what}: {self.events[-1]}")
                if self.proc.poll() is not None and not self._reader.is_alive():
                    where = getattr(self.log_file, "name", None)
                    raise AssertionError(f"qss-sim exited ({self.proc.returncode}) before "
                                         f"{what}; its stderr: {where}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"qss-sim never reported {what} in {timeout:g} s; "
                                         f"last: {self.events[-1:]}")
                self._changed.wait(min(left, 0.5))

    def running(self) -> bool:
        return self.proc.poll() is None

    def finish(self, timeout: float) -> tuple[int, dict]:
        """Exit status and summary once qss-sim ends by itself."""
        code = self.proc.wait(timeout)
        self._reader.join(10)
        assert self.events and self.events[-1]["event"] == "summary", self.events[-1:]
        return code, self.events[-1]

    def stop(self, timeout: float = 30.0) -> tuple[int, dict]:
        """SIGTERM (a reply in flight is awaited a few seconds); exit status, summary."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.finish(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(10)
        if self.log_file is not subprocess.DEVNULL:
            self.log_file.close()


# -- the appliance ----------------------------------------------------------------------

class Appliance:
    """The demo's appliance in a new folder under /tmp, with ``devices`` uPMUs registered
    (P3000001 ...). ``receiver`` sets ``[receiver]`` keys of qss.ini before the start.
    A context manager: leaving it shuts supervisord down and checks that no process it
    started is left (:attr:`leftovers`)."""

    def __init__(self, devices: int, *, receiver: dict[str, str] | None = None,
                 keep: bool = False) -> None:
        # A short path: supervisord's socket path must fit in 108 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="qss-e2e-", dir="/tmp"))
        self.keep = keep
        self.demo = Demo(self.root)
        self.pids: set[int] = set()     # every process of ours seen, to check at the end
        self.sims: list[SimRun] = []
        self.leftovers: list[int] = []
        self.supervisord = 0
        try:
            self.ports, notes = choose_ports({"receiver": 0, "grpc": 0, "http": 0})
            self.demo.write(self.ports)
            for key, value in (receiver or {}).items():
                self.set_ini("receiver", key, value)
            self.demo.start()
            self.supervisord = int(self.demo.ctl("pid").stdout)
            self.pids.add(self.supervisord)
            self.program_pids()
            self.serials = self.demo.register(devices)
            self.upmus = {u.serial: u for u in UpmuList.load(
                str(self.root / "home/manager/upmuconfig.ini"))}
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Appliance:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def queue_url(self) -> str:
        return f"sqlite:///{self.root}/ssd/srv/queue.db"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"

    # Settings.

    def set_ini(self, section: str, key: str, value: str) -> None:
        """Set ``key = value`` in qss.ini's ``[section]`` (the programs read it at start)."""
        text = self.demo.ini.read_text()
        head = f"[{section}]\n"
        assert head in text, text
        before, after = text.split(head, 1)
        lines = [ln for ln in after.split("\n") if not re.match(rf"{key}\s*=", ln)]
        self.demo.ini.write_text(before + head + f"{key} = {value}\n" + "\n".join(lines))

    def restart(self, program: str, timeout: float = 60.0) -> None:
        """``supervisorctl restart PROGRAM``, then wait until it is RUNNING."""
        done = self.demo.ctl("restart", program, timeout=timeout)
        assert "started" in done.stdout, done.stdout + done.stderr
        self.wait_running([program], timeout)

    # Processes.

    def program_pids(self) -> dict[str, int]:
        """{program: pid} of btrdb, receiver and sync2q running now (supervisord's
        children, by the console script they run)."""
        out: dict[str, int] = {}
        try:
            children = psutil.Process(self.supervisord).children()
        except psutil.NoSuchProcess:
            return out
        for child in children:
            try:
                argv = child.cmdline()
            except psutil.Error:
                continue
            names = {os.path.basename(a) for a in argv[:2]}
            for program, script in PROGRAMS.items():
                if script in names:
                    out[program] = child.pid
        self.pids.update(out.values())
        return out

    def wait_running(self, names: Sequence[str], timeout: float = 60.0) -> None:
        self.demo.wait_running(names, timeout)
        self.program_pids()

    def sim(self, push: Push, *extra: str, progress: float = 0.5) -> SimRun:
        """Start qss-sim pushing ``push`` to the receiver (stopped by :meth:`close`)."""
        run = SimRun(self.ports.receiver, push, *extra, progress=progress,
                     log=self.root / "var/log" / f"qss-sim-{len(self.sims)}.log")
        self.sims.append(run)
        self.pids.add(run.proc.pid)
        return run

    # The queue.

    def queued(self, serials: Sequence[str]) -> dict[str, tuple[int, int]]:
        """{serial: (files queued, files not synced)}."""
        if not (self.root / "ssd/srv/queue.db").exists():
            return {s: (0, 0) for s in serials}
        with open_queue(self.queue_url) as q:
            stats = q.stats()
        return {s: (stats[s].files, stats[s].unsynced_files) if s in stats else (0, 0)
                for s in serials}

    def wait_synced(self, counts: dict[str, int], timeout: float,
                    at_least: bool = False) -> None:
        """Wait until each serial has exactly (``at_least``: at least) ``counts[serial]``
        files queued, all synced.

        Raises:
            AssertionError: not after ``timeout`` seconds (with the status report).
        """
        def synced(now: dict[str, tuple[int, int]]) -> bool:
            return all((now[s][0] >= n if at_least else now[s][0] == n) and now[s][1] == 0
                       for s, n in counts.items())

        wait_until(lambda: self.queued(list(counts)), until=synced, timeout=timeout,
                   interval=0.5, what=f"{'at least' if at_least else 'exactly'} {counts} "
                   "files queued, all synced ({serial: (queued, unsynced)})",
                   detail=lambda: f"{self.demo.status_text()}\nsync2q: "
                                  f"{_tail(self.demo.log('sync2q'))}")

    # The end.

    def close(self) -> None:
        """Stop every qss-sim and supervisord (every program), then make sure no process
        of ours is left: those still alive after 30 s are SIGKILLed and listed in
        :attr:`leftovers`."""
        for run in self.sims:
            run.kill()
        self.program_pids()
        self.demo.stop()
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in self.pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.leftovers = sorted(p for p in self.pids if _alive(p))
        for pid in self.leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return f"no log at {path}"


# -- exactly once --------------------------------------------------------------------------

def check_exactly_once(app: Appliance, push: Push, acknowledged: dict[str, int], *,
                       values: Sequence[str] | None = None) -> dict:
    """Assert that each device's acknowledged files, and nothing else, are in the queue
    and in BTrDB exactly once.

    ``acknowledged[serial]`` files (the first ones of the device's plan) were
    acknowledged; the queue must hold exactly those, byte for byte, and at most the next
    one (sent, stored, but its reply lost when the device stopped), each once and synced.
    Every one of the 19 streams in BTrDB, read through the official client, must hold
    exactly the points :func:`qss.dat.parse` makes of the queued files: the same count
    (``count(precise=True)``), the same times and the same values (NaN and Inf left
    out, as sync2q does). ``values``: only these serials' times and values are read
    back (a load run's hundreds of millions of points); the others' counts are checked.
    Returns ``{"files": queued files, "points": points checked}``.
    """
    files = points = 0
    db = connect(app.grpc)
    with open_queue(app.queue_url) as q:
        stats = q.stats()
        for serial in push.serials:
            acked = acknowledged[serial]
            stored = list(q.files(serial))
            names = [f.name for f in stored]
            n = len(stored)
            assert acked <= n <= acked + 1, (serial, acked, n)
            want = [push.file(serial, k) for k in range(n)]
            assert names == [path for path, _ in want], serial      # each once, in order
            for f, (path, data) in zip(stored, want):
                assert bytes(q.read(f)) == data, (serial, path)
            assert stats[serial].unsynced_files == 0, (serial, stats[serial])
            parsed = [dat.parse(data) for _, data in want]
            assert all(p.record_count == push.file_seconds for p in parsed), serial
            uuids = app.upmus[serial].streams
            for name in EXTENDED_STREAMS:
                t = np.concatenate([p.stream(name)[0] for p in parsed])
                v = np.concatenate([p.stream(name)[1] for p in parsed])
                assert np.all(np.diff(t) > 0), (serial, name)   # the files do not overlap
                keep = np.isfinite(v)
                t, v = t[keep], v[keep]
                uuid = uuids[name].uuid
                counted = db.stream_from_uuid(uuid).count(
                    btrdb.MINIMUM_TIME, btrdb.MAXIMUM_TIME, precise=True)
                assert counted == len(t), (serial, name, counted, len(t))
                points += len(t)
                if values is not None and serial not in values:
                    continue
                got_t, got_v = read_stream(db, uuid)
                assert len(got_t) == len(t), (serial, name, len(got_t), len(t))
                assert np.array_equal(got_t, t), (serial, name)
                assert np.array_equal(got_v, v), (serial, name)
            files += n
    return {"files": files, "points": points}


# -- faults ---------------------------------------------------------------------------------

@dataclasses.dataclass
class Kill:
    at: float           # seconds since the kills began
    program: str
    pid: int


def kill_at_random(app: Appliance, rng: random.Random, kills: int, *,
                   pause: tuple[float, float] = (0.5, 3.0),
                   while_: Callable[[], bool] = lambda: True,
                   log: Callable[[str], None] = print) -> list[Kill]:
    """SIGKILL ``kills`` programs, one at a time: btrdb, receiver and sync2q in turn, in
    an order drawn from ``rng``, each after a pause drawn from ``pause`` (seconds) and
    only once the previous victim was restarted by supervisord (RUNNING again, a new
    pid; RUNNING means up for startsecs, so supervisord never gives a program up as
    FATAL). Stops early when ``while_()`` turns false (the push is over). Each kill is
    logged; returns them."""
    done: list[Kill] = []
    began = time.monotonic()
    order: list[str] = []
    while len(done) < kills:
        if not order:
            order = list(PROGRAMS)
            rng.shuffle(order)
        program = order.pop()
        time.sleep(rng.uniform(*pause))
        if not while_():
            break
        app.wait_running([program], 60)
        pid = app.program_pids().get(program)
        assert pid, f"{program} is not running: {app.demo.programs()}"
        os.kill(pid, signal.SIGKILL)
        done.append(Kill(round(time.monotonic() - began, 2), program, pid))
        log(f"kill {len(done)}: SIGKILL {program} (pid {pid}) at {done[-1].at:.2f} s")
        wait_until(lambda: app.program_pids().get(program),
                   until=lambda now: now not in (None, pid), timeout=60, interval=0.1,
                   what=f"{program} restarted with a new pid (killed: {pid})")
        app.wait_running([program], 60)
    return done


# -- memory -----------------------------------------------------------------------------------

class RssSampler:
    """Samples the resident memory (RSS, with any children) of each of ``pids()``'s
    programs every ``interval`` seconds in a thread, until :meth:`stop`."""

    def __init__(self, pids: Callable[[], dict[str, int]], interval: float = 1.0) -> None:
        self.pids, self.interval = pids, interval
        self.samples: dict[str, list[tuple[float, int]]] = {}
        self._stop = threading.Event()
        self._began = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic() - self._began
            for name, pid in self.pids().items():
                try:
                    proc = psutil.Process(pid)
                    rss = proc.memory_info().rss + sum(
                        c.memory_info().rss for c in proc.children(recursive=True))
                except psutil.Error:
                    continue
                self.samples.setdefault(name, []).append((now, rss))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def peak(self, name: str, since: float = 0.0, until: float = float("inf")) -> int:
        """The highest RSS (bytes) of ``name`` sampled in [since, until) seconds."""
        return max((rss for t, rss in self.samples.get(name, []) if since <= t < until),
                   default=0)

    @property
    def duration(self) -> float:
        return max((s[-1][0] for s in self.samples.values() if s), default=0.0)


# -- scenarios (the tests' and the benchmark's) ----------------------------------------------

def run_load(app: Appliance, *, duration: float, interval: float, file_seconds: int = 60,
             sample: float = 1.0, values: Sequence[str] = ("P3000001",),
             log: Callable[[str], None] = print) -> tuple[dict, RssSampler]:
    """Every registered device pushes a ``file_seconds`` extended file every ``interval``
    seconds for ``duration`` seconds (qss-sim stops by itself); then wait until sync2q
    has synced every queued file, and check exactly once (times and values of the
    ``values`` serials, counts of every stream of the others). RSS of btrdb, receiver,
    sync2q and qss-sim is sampled every ``sample`` s from the push's start to the drain.
    Returns the figures and the sampler."""
    push = Push(tuple(app.serials), files=None, file_seconds=file_seconds, interval=interval)
    log(f"load run: {len(app.serials)} devices, a {file_seconds} s extended file every "
        f"{interval:g} s each, for {duration:g} s")
    began = time.monotonic()
    sim = app.sim(push, "--duration", f"{duration:g}", progress=5.0)
    sampler = RssSampler(lambda: {**app.program_pids(), "qss-sim": sim.proc.pid}, sample)
    backlog: list[int] = []                 # unsynced files, sampled during the push
    while sim.running():
        backlog.append(sum(u for _, u in app.queued(app.serials).values()))
        time.sleep(2.0)
    code, summary = sim.finish(timeout=60)
    pushed = time.monotonic() - began
    assert code == 0 and summary["stopped"] == f"--duration {duration:g}", summary
    acked = {d["serial"]: d["acknowledged"] for d in summary["devices"]}
    at_end = sum(u for _, u in app.queued(app.serials).values())
    app.wait_synced(acked, timeout=max(120.0, duration), at_least=True)
    drained = time.monotonic() - began
    sampler.stop()
    checked = check_exactly_once(app, push, acked, values=values)
    t = summary["totals"]
    figures = {
        "devices": len(app.serials), "duration_s": round(pushed, 1),
        "files_acknowledged": t["acknowledged"], "refused": t["refused"],
        "unanswered": t["unanswered"], "connect_failures": t["connect_failures"],
        "waiting_at_end": t["waiting"],
        "files_per_s_accepted": round(t["acknowledged"] / pushed, 2),
        "points_synced": checked["points"],
        "points_per_s_synced": round(checked["points"] / drained, 0),
        "drained_after_push_s": round(drained - pushed, 1),
        "unsynced_max_during_push": max(backlog, default=0), "unsynced_at_push_end": at_end,
        "reply_ms": t["reply_ms"],
        "peak_rss_mb": {name: round(sampler.peak(name) / 2**20, 1)
                        for name in sorted(sampler.samples)},
        "files_checked": checked["files"],
    }
    log(f"load run: {figures}")
    return figures, sampler


def run_faults(app: Appliance, *, interval: float, kills: int, seed: int,
               pause: tuple[float, float], log: Callable[[str], None] = print) -> dict:
    """Every registered device pushes a 10 s extended file every ``interval`` seconds
    while :func:`kill_at_random` SIGKILLs ``kills`` programs (seeded by ``seed``); a
    little after the last restart the devices are stopped; then wait for sync2q and
    check exactly once. Returns the figures (kills by program, files, resends)."""
    log(f"fault run: seed {seed}, {len(app.serials)} devices, a 10 s file every "
        f"{interval:g} s each, {kills} kills")
    push = Push(tuple(app.serials), files=None, file_seconds=10, interval=interval)
    sim = app.sim(push, "--retry", "0.5", "--reconnect", "0.5", "--duration", "900")
    sim.wait_until(lambda t: t.get("acknowledged", 0) >= 5, "5 files acknowledged")
    done = kill_at_random(app, random.Random(seed), kills, pause=pause, while_=sim.running,
                          log=log)
    assert len(done) == kills and sim.running(), "the push ended before the last kill"
    before = sim.totals["acknowledged"]
    sim.wait_until(lambda t: t["acknowledged"] >= before + 2 * len(app.serials),
                   "files acknowledged after the last restart")
    code, summary = sim.stop()
    assert code == 0 and summary["stopped"] == "SIGTERM", summary
    acked = {d["serial"]: d["acknowledged"] for d in summary["devices"]}
    # A file whose reply was lost at the stop may be queued too (check_exactly_once
    # allows that one).
    app.wait_synced(acked, timeout=300, at_least=True)
    app.wait_running(list(PROGRAMS))
    checked = check_exactly_once(app, push, acked)
    kinds = collections.Counter(k.program for k in done)
    figures = {"seed": seed, "kills": len(done), "by_program": dict(sorted(kinds.items())),
               "files_acknowledged": sum(acked.values()), "files_checked": checked["files"],
               "points_checked": checked["points"],
               "resends": summary["totals"]["sent"] - summary["totals"]["acknowledged"],
               "unanswered": summary["totals"]["unanswered"],
               "connect_failures": summary["totals"]["connect_failures"],
               "exactly_once": "ok"}
    log(f"fault run: {figures}")
    return figures
