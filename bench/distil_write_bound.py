"""What a distil catch-up's parts cost alone: the bounds they put on its rate.

    .venv/bin/python bench/distil_write_bound.py [--hours 2] [--writers 1 2 4] [--rounds 2]
        [--distillates power frequency] [--servers 1]

For each distillate of the speed goal (issue 21: a catch-up at >= 0.5 of the rate of
merely reading its inputs), on ``--hours`` of one extended uPMU's phasors (the same data
and cache as ``bench/bench_distil.py``), each part of a catch-up is measured alone, in
the engine's chunks of 24 minutes (one 172,800-point RPC per stream and chunk):

- **write**: the distillate's outputs, computed beforehand and rounded to float32 as the
  built-in stores them, written into fresh streams of a fresh embedded server
  (``qss-btrdb``, own process) through the official client as the engine writes them:
  ``--writers`` outputs at a time (``power``'s 16; ``frequency`` has one), every output
  flushed at the end of its chunk. Nothing read, nothing computed meanwhile;
- **read**: its inputs read back through the client, as the benchmark's read does;
- **compute**: the engine's own work in this process: each chunk's inputs rebased
  (``pad_snap``) over the chunk and its margins, ``process`` run, its outputs' points
  taken as they are written.

Printed: wall time and the CPU of the server and of this client for each part, and how
many of the cores the server used while writing. ``--servers 2`` spreads the outputs
over two embedded servers, each its own process (the inputs stay on the first), as a
server on several processes would: what one process's GIL costs the writes. The summary line per distillate gives
three ceilings on catch-up / read, whatever the engine does:

- without overlap: read / (read + write);
- if reading were free: read / write (a chunk's writes to one output stream go one
  after another, each followed by its flush: ``frequency``'s whole chain);
- with every core busy all the time: read wall x cores / (read CPU + write CPU + compute
  CPU), the CPU of the parts at the writer count the engine uses spread over the cores;
- with the server as parallel as it ever got while writing several outputs at once
  (``power``): read wall x those cores / (the server's CPU for the read and the write),
  the engine's own work free.

docs/distil-design.md ("Session 5 altogether", "Where the speed goal stops") reads them.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from concurrent import futures
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402

S = 1_000_000_000
CHUNK = 172_800             # 24 minutes at 120 Hz: distil's chunk, one RPC per output


def _distillate(name: str):
    from distil.builtins import BUILTINS
    return BUILTINS[name]()


def chunks_of(t: np.ndarray) -> list[tuple[int, int]]:
    """The engine's chunks over the ticks ``t``: [x, y) time ranges of CHUNK ticks."""
    return [(int(t[a]), int(t[min(a + CHUNK, len(t)) - 1]) + 1)
            for a in range(0, len(t), CHUNK)]


def outputs_of(name: str, t: np.ndarray, values: dict[str, np.ndarray]
               ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The built-in ``name``'s outputs over the whole span, as it stores them:
    role -> (times, values)."""
    from distil.distillate import Outputs, Series
    d = _distillate(name)
    out = Outputs(d.outputs, d.output_precision)
    d.process({n: Series(t, values[n].astype(np.float64)) for n in d.inputs}, out)
    return {role: out.points(role, int(t[0]), int(t[-1]) + 1) for role in d.outputs}


def write_all(dbs: list, spans: list[tuple[int, int]],
              outputs: dict[str, tuple[np.ndarray, np.ndarray]], writers: int,
              tag: str) -> float:
    """Seconds to write every output into fresh streams, chunk by chunk; the outputs
    are spread over the servers of ``dbs`` in turn."""
    from qss.btrdbclient import arrow_insert
    streams = {role: dbs[i % len(dbs)].create(uuid.uuid4(), f"bound/{tag}",
                                              tags={"name": role, "unit": "x"})
               for i, role in enumerate(outputs)}

    def write(role: str, x: int, y: int) -> None:
        t, v = outputs[role]
        a, b = np.searchsorted(t, [x, y])
        arrow_insert(streams[role], t[a:b], v[a:b], "replace", CHUNK)

    pool = futures.ThreadPoolExecutor(writers)
    started = time.perf_counter()
    for x, y in spans:
        list(pool.map(lambda role: write(role, x, y), outputs))
        for s in streams.values():
            s.flush()
    seconds = time.perf_counter() - started
    pool.shutdown()
    return seconds


def compute_all(name: str, t: np.ndarray, values: dict[str, np.ndarray]) -> int:
    """The distillate over the span chunk by chunk as the engine computes it (inputs
    rebased over the chunk and its margins, then process, then each output's points);
    returns the points it gives, so nothing is optimised away."""
    from distil.distillate import Outputs, Series
    d = _distillate(name)
    m = d.rebaser.margin_ns
    inputs = {n: values[n].astype(np.float64) for n in d.inputs}
    made = 0
    for x, y in chunks_of(t):
        r0, r1 = x - d.lead_ns - m, y + d.trail_ns + m
        lo, hi = np.searchsorted(t, [r0, r1])
        series = {n: Series(*d.rebaser.rebase(t[lo:hi], v[lo:hi], r0, r1))
                  for n, v in inputs.items()}
        out = Outputs(d.outputs, d.output_precision)
        d.process(series, out)
        made += sum(len(out.points(role, x, y)[0]) for role in d.outputs)
    return made


def read_all(db, uuids: list, spans: list[tuple[int, int]]) -> float:
    """Seconds to read the inputs back in the engine's chunks."""
    started = time.perf_counter()
    for lo, hi in spans:
        for u in uuids:
            db.stream_from_uuid(u).arrow_values(lo, hi)
    return time.perf_counter() - started


def measure(name: str, dbs: list, cpu, t: np.ndarray, values: dict[str, np.ndarray],
            writer_counts: list[int], rounds: int) -> None:
    """Print one distillate's parts and ceilings (``cpu()``: the servers' CPU seconds
    and this process's; the inputs are read from the first server)."""
    db = dbs[0]
    from distil.engine import Options
    from qss.btrdbclient import arrow_insert
    d = _distillate(name)
    spans = chunks_of(t)
    outputs = outputs_of(name, t, values)
    points = sum(len(tv[0]) for tv in outputs.values())
    print(f"## {name}: {len(d.inputs)} input(s) of {len(t):,} points, {len(outputs)} "
          f"output(s) = {points:,} points", flush=True)
    counts = writer_counts if len(outputs) > 1 else [1]
    best, write_cpu, write_srv, server_cores = None, {}, {}, 0.0
    for writers in counts:
        walls, servers, clients = [], [], []
        for r in range(rounds):
            s0, c0 = cpu()
            walls.append(write_all(dbs, spans, outputs, writers, f"{name}-w{writers}r{r}"))
            s1, c1 = cpu()
            servers.append(s1 - s0)
            clients.append(c1 - c0)
        wall, srv = statistics.median(walls), statistics.median(servers)
        best = wall if best is None else min(best, wall)
        write_cpu[writers] = srv + statistics.median(clients)
        write_srv[writers] = srv
        server_cores = max(server_cores, srv / wall)
        print(f"write, {writers} at a time: {wall:.3f} s; server "
              f"{srv / points * 1e9:.0f} ns/point ({srv / wall:.2f} cores), client "
              f"{statistics.median(clients) / points * 1e9:.0f} ns/point", flush=True)
    inputs = []
    for n in d.inputs:
        s = db.create(uuid.uuid4(), f"bound/{name}-inputs", tags={"name": n, "unit": "x"})
        arrow_insert(s, t, values[n].astype(np.float64), "replace", 432_000)
        s.flush()
        inputs.append(s.uuid)
    reads = []
    for _ in range(rounds):
        s0, c0 = cpu()
        wall = read_all(db, inputs, spans)
        s1, c1 = cpu()
        reads.append((wall, s1 - s0, c1 - c0))
    read, read_srv, read_cli = (statistics.median(r[i] for r in reads) for i in range(3))
    print(f"read the {len(inputs)} input(s): {read:.3f} s (server {read_srv:.2f}, client "
          f"{read_cli:.2f} CPU s)")
    computes = []
    for _ in range(rounds):
        c0 = cpu()[1]
        compute_all(name, t, values)
        computes.append(cpu()[1] - c0)
    compute = statistics.median(computes)
    print(f"compute (rebase, process, outputs' points) alone: {compute:.2f} CPU s")
    writers = Options().writers if Options().writers in write_cpu else \
        min(write_cpu, key=write_cpu.get)
    total = read_srv + read_cli + write_cpu[writers] + compute
    cores = os.cpu_count() or 1
    print(f"CPU of the parts: read {read_srv + read_cli:.2f} + write ({writers} at a time) "
          f"{write_cpu[writers]:.2f} + compute {compute:.2f} = {total:.2f} s: at least "
          f"{total / cores:.2f} s on {cores} cores")
    # The server's cores are known only where several writes ran at once.
    on_server = "" if len(counts) < 2 else (
        f", {min(1.0, read * server_cores / (read_srv + write_srv[writers])):.2f} with "
        f"the server on {server_cores:.2f} cores")
    print(f"SUMMARY {name}: writing the outputs alone takes {best:.3f} s against "
          f"{read:.3f} s to read the inputs: a catch-up reaches at most "
          f"{read / (read + best):.2f} of the read without overlap, "
          f"{min(1.0, read / best):.2f} if reading were free, "
          f"{min(1.0, read * cores / total):.2f} with every core busy all the time"
          f"{on_server}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hours", type=float, default=2.0, help="span of data (default 2)")
    p.add_argument("--writers", type=int, nargs="+", default=[1, 2, 4],
                   help="outputs written at a time, one measurement each (default 1 2 4)")
    p.add_argument("--rounds", type=int, default=2,
                   help="rounds per measurement; the median is shown (default 2)")
    p.add_argument("--distillates", nargs="+", choices=("power", "frequency"),
                   default=["power", "frequency"], help="which (default both)")
    p.add_argument("--servers", type=int, default=1,
                   help="embedded servers (processes) the outputs are spread over, as "
                        "a server on several processes would (default 1)")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir())
                   / "qss-bench-distil.npz", help="generated data (bench_distil.py's)")
    args = p.parse_args()

    import psutil
    from bench_distil import generate
    from distil.cli import keep_memory
    from qss.btrdbclient import Btrdb
    from tsdb import testing

    keep_memory()                                   # qss-distil's allocator settings
    t, values = generate(args.hours, args.cache)
    print(f"# {args.hours:g} h: {len(t):,} ticks; load {os.getloadavg()[0]:.2f}, "
          f"{os.cpu_count()} cores", flush=True)
    work = Path(tempfile.mkdtemp(prefix="qss-write-bound-"))
    servers, clients = [], []
    try:
        for i in range(max(1, args.servers)):
            servers.append(testing.start(work / f"data{i}"))
            clients.append(Btrdb([servers[-1].grpc]))
        dbs = [c.get() for c in clients]
        sps, cp = [psutil.Process(s.proc.pid) for s in servers], psutil.Process()

        def cpu() -> tuple[float, float]:
            return (sum(sum(sp.cpu_times()[:2]) for sp in sps), sum(cp.cpu_times()[:2]))

        for name in args.distillates:
            measure(name, dbs, cpu, t, values, args.writers, args.rounds)
    finally:
        for c in clients:
            c.close()
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
