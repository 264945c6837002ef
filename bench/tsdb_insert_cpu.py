"""Server-side cost of one ArrowInsert call, without the network: what to optimise.

    .venv/bin/python bench/tsdb_insert_cpu.py [--fsync] [--runs 5] [--profile]

Builds the exact payloads the official client sends for one hour of the 19 extended
streams (50,000-point Arrow IPC streams), feeds them to the gRPC servicer's ArrowInsert
in-process, and prints wall and CPU milliseconds per call for each run and the median
(this machine is noisy; CPU time is the steadier figure). ``--profile`` prints the
cProfile of one run, sorted by internal time.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import pyarrow as pa  # noqa: E402
from btrdb.grpcinterface import btrdb_pb2 as pb  # noqa: E402

from _data import upmu_streams  # noqa: E402
from tsdb import Store  # noqa: E402
from tsdb.grpc_service import BTrDBServicer  # noqa: E402

SCHEMA = pa.schema([pa.field("time", pa.timestamp("ns", tz="UTC"), nullable=False),
                    pa.field("value", pa.float64(), nullable=False)])
BATCH = 50_000


def payloads(t, vals) -> list[tuple[int, bytes]]:
    out = []
    for i in range(vals.shape[0]):
        table = pa.Table.from_arrays([pa.array(t, SCHEMA.field("time").type),
                                      pa.array(vals[i])], schema=SCHEMA)
        for lo in range(0, len(t), BATCH):
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, SCHEMA) as writer:
                writer.write_table(table.slice(lo, BATCH))
            out.append((i, sink.getvalue().to_pybytes()))
    return out


def run(items, durable: bool, profile: bool) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="tsdb-insert-cpu-") as d:
        store = Store(d, durable=durable)
        svc = BTrDBServicer(store)
        uuids = [uuid.uuid4() for _ in range(19)]
        for n, u in enumerate(uuids):
            store.create(u, "bench", {"name": f"s{n}"}, {})
        reqs = [pb.ArrowInsertParams(uuid=uuids[i].bytes, arrowBytes=p) for i, p in items]
        prof = cProfile.Profile() if profile else None
        t0, c0 = time.perf_counter(), time.process_time()
        if prof:
            prof.enable()
        for r in reqs:
            resp = svc.ArrowInsert(r, None)
            assert resp.stat.code == 0, resp.stat
        if prof:
            prof.disable()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        store.close()
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return wall / len(reqs) * 1e3, cpu / len(reqs) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fsync", action="store_true", help="synchronous=FULL (the default "
                    "of qss-btrdb); without it synchronous=NORMAL")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    t, vals = upmu_streams(1_500_000_000, 3600)
    items = payloads(t, vals)
    walls, cpus = [], []
    for _ in range(args.runs):
        wall, cpu = run(items, args.fsync, args.profile)
        walls.append(wall)
        cpus.append(cpu)
        print(f"{wall:.2f} ms wall, {cpu:.2f} ms CPU per 50,000-point call"
              f" ({BATCH / wall / 1e3:.2f} M points/s)")
    print(f"median: {statistics.median(walls):.2f} ms wall, {statistics.median(cpus):.2f} ms"
          f" CPU per call")


if __name__ == "__main__":
    main()
