"""How fast distil catches up a backlog, against merely reading its inputs, and how soon
derived points follow a file's sync.

    .venv/bin/python bench/bench_distil.py [--hours 24] [--rounds 1] [--cache FILE]

1. A backlog of ``--hours`` (default a uPMU-day) of one extended uPMU from the realistic
   generator (:mod:`qss.generator`, through the real ``.dat`` encoder and parser, so the
   values are sync2q's), cached in ``--cache`` (the generator takes minutes a day), put
   into a fresh embedded server (``qss-btrdb``, own process) through the official client:
   the 12 phasor streams ``power`` reads, ``L1ANG`` among them (``frequency``'s input).
2. In each round, alternating: read ``frequency``'s inputs through the official client
   (``arrow_values``) in the engine's chunks (``--chunk``, widened by the lead as the engine
   reads), then catch ``frequency`` up from nothing with the engine (this process, a
   fresh state and fresh outputs, the service's settings and allocator settings); the
   same for ``power``. Rates in input points per second; the ratio of each catch-up to
   its read (goal >= 0.5); how far the client's and the server's resident memory rose
   during a catch-up.
3. Lag: ``qss-distil`` (a subprocess, the service's defaults: polls every 2 s) keeps
   ``frequency`` and ``power`` current while one-minute files of the uPMU arrive (the
   demo's pace while it empties a backlog: a file every ``--gap`` s); for each file, from
   the moment its insert and flush returned (sync2q marks a file synced then) to the
   moment both derived streams hold its last tick, p50 and p99.

One line per figure; the last line is the summary.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from qss import dat, generator  # noqa: E402
from qss.upmuconfig import UpmuList  # noqa: E402
from tsdb import testing  # noqa: E402

S = 1_000_000_000
START = 1450396800          # 2015-12-18 00:00:00 UTC
SERIAL = "P3900001"
PHASORS = tuple(f"{c}{p}{q}" for p in "123" for c in "LC" for q in ("MAG", "ANG"))
PIECE_S = 600               # generated and inserted 10 minutes at a time


# -- the backlog ------------------------------------------------------------------------

def generate(hours: float, cache: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(times int64 [n], {stream: float32 [n]}) of the phasor streams, from the cache
    when it holds the same span."""
    seconds = int(hours * 3600)
    if cache.exists():
        with np.load(cache) as z:
            if int(z["seconds"]) == seconds:
                return z["t"], {n: z[n] for n in PHASORS}
    sim = generator.UpmuSimulator(SERIAL, extended=True)
    times, values = [], {n: [] for n in PHASORS}
    started = time.perf_counter()
    for s in range(START, START + seconds, PIECE_S):
        parsed = dat.parse(dat.encode_records(sim.records(s, min(PIECE_S,
                                                               START + seconds - s))))
        for name, t, v in parsed.iter_streams():
            if name == PHASORS[0]:
                times.append(t)
            if name in values:
                values[name].append(v.astype(np.float32))
    t = np.concatenate(times)
    out = {n: np.concatenate(v) for n, v in values.items()}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, seconds=seconds, t=t, **out)
    print(f"# generated {hours:g} h ({len(t):,} ticks) in {time.perf_counter() - started:.0f} s;"
          f" cached in {cache}", flush=True)
    return t, out


def insert(db, upmu, t: np.ndarray, values: dict[str, np.ndarray], start: int = 0,
           end: int | None = None) -> None:
    """The points in [start, end) of the arrays into the uPMU's streams, then flush."""
    from qss.btrdbclient import arrow_table
    end = len(t) if end is None else end
    for name, v in values.items():
        stream = db.stream_from_uuid(upmu.streams[name].uuid)
        for a in range(start, end, 432_000):
            b = min(end, a + 432_000)
            stream.arrow_insert(arrow_table(t[a:b], v[a:b].astype(np.float64)),
                                merge="replace")
    for name in values:
        db.stream_from_uuid(upmu.streams[name].uuid).flush()


# -- rates ------------------------------------------------------------------------------

class Cpu:
    """CPU seconds (user + system) of this process and the server's over a span, and
    how far each one's resident memory rose above where it was at the start (sampled
    every 10 ms): ``grown`` (this process, the server) in bytes."""

    def __init__(self, server_pid: int) -> None:
        import psutil
        self.procs = [psutil.Process(), psutil.Process(server_pid)]

    def __enter__(self):
        import threading
        self.before = [sum(p.cpu_times()[:2]) for p in self.procs]
        self.rss = [p.memory_info().rss for p in self.procs]
        self.peak = list(self.rss)
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        self.started = time.perf_counter()
        return self

    def _sample(self) -> None:
        while not self._done.wait(0.01):
            self.peak = [max(m, p.memory_info().rss) for m, p in zip(self.peak, self.procs)]

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.started
        self.cpu = sum(sum(p.cpu_times()[:2]) - b for p, b in zip(self.procs, self.before))
        self._done.set()
        self._sampler.join()
        self.grown = tuple(m - r for m, r in zip(self.peak, self.rss))


def read_rate(db, upmu, names, t0: int, t1: int, chunk_s: int, lead_ns: int,
              server_pid: int) -> tuple[float, float]:
    """(input points per second, per CPU second of client and server) reading ``names``
    as the engine does: chunk by chunk, each input over the chunk widened by the lead."""
    from distil import btrdbio
    points = 0
    with Cpu(server_pid) as cpu:
        for a in range(t0, t1, chunk_s * S):
            for n in names:
                tt, _ = btrdbio.read(db, upmu.streams[n].uuid, a - lead_ns,
                                     min(t1, a + chunk_s * S))
                points += len(tt)
    return points / cpu.seconds, points / cpu.cpu


def catch_up_rate(btrdb, upmu, name: str, workdir: Path, round_: int, points: int,
                  server_pid: int, chunk_s: float) -> tuple[float, float, tuple[int, int]]:
    """(input points per second, per CPU second of client and server, how far the
    client's and the server's resident memory rose) of the engine computing ``name``
    from nothing."""
    import dataclasses
    from distil.catalog import builtin_instances
    from distil.engine import Engine, Options
    from distil.state import SqliteStore
    inst = builtin_instances([upmu], [name])[0]
    inst = dataclasses.replace(inst, name=f"r{round_}/{inst.name}",
                               collection=f"r{round_}/{inst.collection}")
    state = SqliteStore(str(workdir / f"state-{name}-{round_}.db"))
    engine = Engine(btrdb, state, Options(chunk_ns=int(chunk_s * S)))
    engine.set_instances([inst])
    engine.bind(inst)                       # creating the outputs is not catching up
    with Cpu(server_pid) as cpu:
        engine.catch_up(timeout=3600)
    state.close()
    return points / cpu.seconds, points / cpu.cpu, cpu.grown


# -- lag --------------------------------------------------------------------------------

def lag(server, upmuconfig: Path, upmu, workdir: Path, files: int, gap: float,
        t: np.ndarray, values: dict[str, np.ndarray]) -> list[float]:
    """Seconds from each file's insert + flush to both derived streams holding its last
    tick, with qss-distil running as the service does."""
    import btrdb as client
    from distil.catalog import builtin_instances
    db = client.connect(server.grpc)
    log = open(workdir / "distil.log", "w")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "distil", "serve", "--config", os.devnull, "--btrdb",
         server.grpc, "--upmuconfig", str(upmuconfig), "--state",
         str(workdir / "lag.db"), "--builtins", "frequency,power"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    insts = builtin_instances([upmu], ["frequency", "power"])
    outputs = [db.stream_from_uuid(insts[0].output_uuid("FREQ_L1")),
               db.stream_from_uuid(insts[1].output_uuid("P"))]
    lags: list[float] = []
    try:
        # Wait until the backlog is computed: the service is then as it runs every day.
        last_tick = int(t[-1])
        while not all(_holds(o, last_tick) for o in outputs):
            if proc.poll() is not None:
                raise SystemExit(f"qss-distil exited: {(workdir / 'distil.log').read_text()}")
            time.sleep(0.5)
        base = int(t[-1]) // S + 1
        sim = generator.UpmuSimulator(SERIAL, extended=True)
        for i in range(files):
            parsed = dat.parse(dat.encode_records(sim.records(base + 60 * i, 60)))
            ft = parsed.times
            fv = {n: v for n, _, v in parsed.iter_streams() if n in values}
            insert(db, upmu, ft, fv)
            synced = time.perf_counter()
            end = int(ft[-1])
            while not all(_holds(o, end) for o in outputs):
                if time.perf_counter() - synced > 120:
                    raise SystemExit(f"no derived points 120 s after a file: "
                                     f"{(workdir / 'distil.log').read_text()[-2000:]}")
                time.sleep(0.02)
            lags.append(time.perf_counter() - synced)
            time.sleep(max(0.0, gap - lags[-1]))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()
    return lags


def _holds(stream, t: int) -> bool:
    """Whether the stream has a point on the tick of ``t`` (outputs are on pad_snap's
    ticks, which may differ from the raw times by a nanosecond's rounding)."""
    half = S // 240
    try:
        found = stream.nearest(t - half, 0, backward=False)
    except Exception:           # the output stream does not exist yet
        return False
    return found is not None and found[0].time <= t + half


def main() -> None:
    from distil.engine import Options
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, default=24.0, help="backlog span (default 24)")
    p.add_argument("--rounds", type=int, default=1, help="read/catch-up rounds (median)")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir())
                   / "qss-bench-distil.npz", help="where the generated backlog is kept")
    p.add_argument("--files", type=int, default=30, help="files for the lag (default 30)")
    p.add_argument("--gap", type=float, default=2.0, help="seconds between files (lag)")
    p.add_argument("--chunk", type=int, default=int(Options().chunk_ns // S),
                   help="the engine's chunk, seconds (default: the service's)")
    p.add_argument("--dir", type=Path, help="work folder (default: a temporary one)")
    args = p.parse_args()

    from distil.builtins import Frequency
    from qss.btrdbclient import Btrdb
    from qss.streammeta import StreamRegistry, specs_of

    import logging
    from distil.cli import keep_memory
    logging.getLogger("distil").setLevel(logging.WARNING)
    # The engine runs in this process with the allocator settings qss-distil uses.
    keep_memory()
    print(f"# load before: {os.getloadavg()[0]:.2f} (uptime), {os.cpu_count()} cores",
          flush=True)
    t, values = generate(args.hours, args.cache)
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="qss-bench-distil-"))
    server = testing.start(workdir / "data")
    try:
        ul = UpmuList.parse("")
        ul.add("10.9.0.1", SERIAL, "bench1", extended=True)
        config = workdir / "upmuconfig.ini"
        ul.save(str(config))
        upmu = ul.upmus[0]
        btrdb = Btrdb([server.grpc])
        StreamRegistry(btrdb).ensure(upmu, specs_of(upmu))
        db = btrdb.get()
        started = time.perf_counter()
        insert(db, upmu, t, values)
        n = len(t)
        print(f"# backlog: {args.hours:g} h, {n:,} ticks x {len(PHASORS)} streams = "
              f"{n * len(PHASORS):,} points, inserted in {time.perf_counter() - started:.0f} s",
              flush=True)
        t0, t1 = int(t[0]), int(t[-1]) + 1
        pid = server.proc.pid
        runs: dict[str, list[tuple]] = {
            k: [] for k in ("read frequency", "distil frequency", "read power", "distil power")}
        for r in range(args.rounds):
            runs["read frequency"].append(read_rate(db, upmu, ["L1ANG"], t0, t1, args.chunk,
                                                    Frequency.lead_ns, pid))
            runs["distil frequency"].append(catch_up_rate(btrdb, upmu, "frequency",
                                                          workdir, r, n, pid, args.chunk))
            runs["read power"].append(read_rate(db, upmu, PHASORS, t0, t1, args.chunk, 0,
                                                   pid))
            runs["distil power"].append(catch_up_rate(btrdb, upmu, "power", workdir, r,
                                                      n * len(PHASORS), pid, args.chunk))
            print(f"# round {r + 1}: " + ", ".join(f"{k} {v[-1][0] / 1e6:.2f} M/s"
                                                   for k, v in runs.items())
                  + f"; load {os.getloadavg()[0]:.2f}", flush=True)
        med = {k: statistics.median(x[0] for x in v) for k, v in runs.items()}
        cpu = {k: statistics.median(x[1] for x in v) for k, v in runs.items()}
        for k in runs:
            print(f"{k}: {med[k] / 1e6:.2f} M input points/s, {cpu[k] / 1e6:.2f} M per CPU "
                  f"second (client + server; median of {args.rounds})")
        for k in ("distil frequency", "distil power"):
            grown = [x[2] for x in runs[k]]
            print(f"{k}: memory rose by at most {max(g[0] for g in grown) / 2**20:.0f} MB "
                  f"(client), {max(g[1] for g in grown) / 2**20:.0f} MB (server)")
        ratio_f = med["distil frequency"] / med["read frequency"]
        ratio_p = med["distil power"] / med["read power"]
        cpu_f = cpu["distil frequency"] / cpu["read frequency"]
        cpu_p = cpu["distil power"] / cpu["read power"]
        print(f"frequency catch-up / read: {ratio_f:.2f} (goal >= 0.5; in CPU {cpu_f:.2f}); "
              f"a day in {86400 * 120 / med['distil frequency']:.0f} s")
        print(f"power catch-up / read: {ratio_p:.2f} (goal >= 0.5; in CPU {cpu_p:.2f}); "
              f"a day in {86400 * 120 * len(PHASORS) / med['distil power']:.0f} s")
        lags = lag(server, config, upmu, workdir, args.files, args.gap, t, values)
        p50 = float(np.percentile(lags, 50))
        p99 = float(np.percentile(lags, 99))
        print(f"lag sync -> derived (frequency and power, {len(lags)} files, a file every "
              f"{args.gap:g} s, poll 2 s): p50 {p50:.2f} s, p99 {p99:.2f} s")
        print(f"SUMMARY: frequency {med['distil frequency'] / 1e6:.2f} M/s ({ratio_f:.2f} of "
              f"read), power {med['distil power'] / 1e6:.2f} M/s ({ratio_p:.2f} of read), "
              f"lag p50 {p50:.2f} s p99 {p99:.2f} s; load {os.getloadavg()[0]:.2f}")
        btrdb.close()
    finally:
        server.stop()
        if not args.dir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
