"""What distil's writes alone cost: the bound they put on a catch-up's rate.

    .venv/bin/python bench/distil_write_bound.py [--hours 2] [--writers 1 2 4] [--rounds 2]

``power`` computed from ``--hours`` of one extended uPMU's phasors (the same data and
cache as ``bench/bench_distil.py``) gives 16 outputs, rounded to float32 as the built-in
stores them. A fresh embedded server (``qss-btrdb``, own process) then receives only
those outputs, written through the official client as the engine writes them: chunks
of 24 minutes, one 172,800-point ``ArrowInsert`` per output and chunk, ``--writers``
outputs at a time, every output flushed at the end of its chunk. Nothing is read and
nothing computed meanwhile. Then the 12 inputs are read back through the client in the
same chunks, as the benchmark's read does.

Per writer count: the wall time, the server's and this client's CPU (ns per output
point), and how many of the 2 cores the server used. The last line compares the best
write time with the read: a catch-up does both, so with the server as it is, its rate
cannot exceed read / (read + write) of the read even with the engine's own work free,
and no more than the cores the server reaches allow (docs/distil-design.md, "Session 5
altogether").
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


def power_outputs(t: np.ndarray, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The built-in ``power``'s outputs over the whole span, as it stores them."""
    from distil.builtins import BUILTINS
    from distil.distillate import Outputs, Series
    power = BUILTINS["power"]()
    out = Outputs(power.outputs, power.output_precision)
    power.process({n: Series(t, v.astype(np.float64)) for n, v in values.items()}, out)
    return {role: out.points(role, int(t[0]), int(t[-1]) + 1)[1] for role in power.outputs}


def write_all(db, t: np.ndarray, outputs: dict[str, np.ndarray], writers: int,
              tag: str) -> float:
    """Seconds to write every output into fresh streams, chunk by chunk."""
    from qss.btrdbclient import arrow_insert
    streams = {role: db.create(uuid.uuid4(), f"bound/{tag}",
                               tags={"name": role, "unit": "x"}) for role in outputs}
    pool = futures.ThreadPoolExecutor(writers)
    started = time.perf_counter()
    for a in range(0, len(t), CHUNK):
        b = a + CHUNK
        list(pool.map(lambda role: arrow_insert(streams[role], t[a:b], outputs[role][a:b],
                                                "replace", CHUNK), outputs))
        for s in streams.values():
            s.flush()
    seconds = time.perf_counter() - started
    pool.shutdown()
    return seconds


def read_all(db, uuids: list, t: np.ndarray) -> float:
    """Seconds to read the inputs back in the engine's chunks."""
    started = time.perf_counter()
    for a in range(0, len(t), CHUNK):
        lo, hi = int(t[a]), int(t[min(a + CHUNK, len(t)) - 1]) + 1
        for u in uuids:
            db.stream_from_uuid(u).arrow_values(lo, hi)
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hours", type=float, default=2.0, help="span of data (default 2)")
    p.add_argument("--writers", type=int, nargs="+", default=[1, 2, 4],
                   help="outputs written at a time, one measurement each (default 1 2 4)")
    p.add_argument("--rounds", type=int, default=2,
                   help="rounds per measurement; the median is shown (default 2)")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir())
                   / "qss-bench-distil.npz", help="generated data (bench_distil.py's)")
    args = p.parse_args()

    import psutil
    from bench_distil import generate, PHASORS
    from distil.cli import keep_memory
    from qss.btrdbclient import Btrdb, arrow_insert
    from tsdb import testing

    keep_memory()                                   # qss-distil's allocator settings
    t, values = generate(args.hours, args.cache)
    outputs = power_outputs(t, values)
    points = sum(len(v) for v in outputs.values())
    print(f"# {args.hours:g} h: {len(t):,} ticks; power's {len(outputs)} outputs = "
          f"{points:,} points; load {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores",
          flush=True)
    work = Path(tempfile.mkdtemp(prefix="qss-write-bound-"))
    server = testing.start(work / "data")
    btrdb = Btrdb([server.grpc])
    try:
        db = btrdb.get()
        sp, cp = psutil.Process(server.proc.pid), psutil.Process()

        def cpu() -> tuple[float, float]:
            return sum(sp.cpu_times()[:2]), sum(cp.cpu_times()[:2])

        best = None
        for writers in args.writers:
            walls, servers, clients = [], [], []
            for r in range(args.rounds):
                s0, c0 = cpu()
                walls.append(write_all(db, t, outputs, writers, f"w{writers}r{r}"))
                s1, c1 = cpu()
                servers.append(s1 - s0)
                clients.append(c1 - c0)
            wall, srv = statistics.median(walls), statistics.median(servers)
            best = wall if best is None else min(best, wall)
            print(f"write, {writers} at a time: {wall:.2f} s; server "
                  f"{srv / points * 1e9:.0f} ns/point ({srv / wall:.2f} cores), client "
                  f"{statistics.median(clients) / points * 1e9:.0f} ns/point", flush=True)
        inputs = []
        for name in PHASORS:
            s = db.create(uuid.uuid4(), "bound/inputs", tags={"name": name, "unit": "x"})
            arrow_insert(s, t, values[name].astype(np.float64), "replace", 432_000)
            s.flush()
            inputs.append(s.uuid)
        reads = []
        for _ in range(args.rounds):
            s0, _c0 = cpu()
            reads.append((read_all(db, inputs, t), cpu()[0] - s0))
        read, read_srv = statistics.median(w for w, _ in reads), \
            statistics.median(c for _, c in reads)
        print(f"read the {len(PHASORS)} inputs: {read:.2f} s (server {read_srv:.2f} CPU s)")
        print(f"SUMMARY: writing power's outputs alone takes {best:.2f} s against "
              f"{read:.2f} s to read its inputs: a catch-up reaches at most "
              f"{read / (read + best):.2f} of the read without overlap, "
              f"{min(1.0, read / best):.2f} if reading were free")
    finally:
        btrdb.close()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
