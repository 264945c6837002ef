"""Storage-engine figures without gRPC: insert rate, bytes/point, query latencies.

    .venv/bin/python bench/tsdb_engine.py --hours 1 [--data DIR] [--no-fsync]

Inserts ``--hours`` of the 19 extended streams of one simulated uPMU (qss.generator, through
the real .dat encoder and parser) in 50,000-point batches, as the official client's
arrow_insert sends them, then prints points/s, bytes on disk per point (the whole SQLite
file after a WAL checkpoint, all statistics levels included), and query latencies.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from _data import upmu_streams  # noqa: E402
from qss.streams import EXTENDED_STREAMS  # noqa: E402
from tsdb import MergePolicy, Store  # noqa: E402

START = 1_500_000_000  # 2017-07-14, seconds
BATCH = 50_000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--data", default=None)
    ap.add_argument("--no-fsync", "--normal", dest="no_fsync", action="store_true",
                    help="a store that never fsyncs (durable=False)")
    ap.add_argument("--policy", default="NEVER", choices=[p.name for p in MergePolicy])
    args = ap.parse_args()
    data = args.data or tempfile.mkdtemp(prefix="tsdb-bench-")
    store = Store(data, durable=not args.no_fsync)
    ids = [uuid.uuid4() for _ in EXTENDED_STREAMS]
    for u, name in zip(ids, EXTENDED_STREAMS):
        store.create(u, "bench/P3001276", {"name": name}, {})
    seconds = int(args.hours * 3600)
    total, busy = 0, 0.0
    step = 3600
    for s in range(START, START + seconds, step):
        t, vals = upmu_streams(s, min(step, START + seconds - s))
        t0 = time.perf_counter()
        for i, u in enumerate(ids):
            for a in range(0, len(t), BATCH):
                store.insert(u, t[a:a + BATCH], vals[i, a:a + BATCH], MergePolicy[args.policy])
        busy += time.perf_counter() - t0
        total += t.size * len(ids)
    print(f"insert: {total:,} points in {busy:.2f} s = {total / busy / 1e6:.2f} M points/s"
          f" (one thread, {BATCH}-point batches, policy {args.policy},"
          f" {'no fsync' if args.no_fsync else 'each insert fsynced (sync)'})")
    c = store.db.conn()
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = os.path.getsize(Path(data) / "btrdb.sqlite3")
    print(f"disk: {size:,} bytes = {size / total:.3f} bytes/point")
    for table in ("chunks", "stats", "changes"):
        n, b = c.execute(f"SELECT count(*), coalesce(sum(length(data)),0) FROM {table}"
                         if table != "changes" else "SELECT count(*), 0 FROM changes").fetchone()
        print(f"  {table}: {n:,} rows, {b / total:.3f} bytes/point in blobs")
    u = ids[0]
    t0n = START * 10**9
    hour = min(seconds, 3600) * 10**9
    for label, fn in [
        ("raw 1 h", lambda: store.raw(u, t0n, t0n + hour)),
        ("aligned pw=36 all", lambda: store.aligned_windows(u, t0n, t0n + seconds * 10**9, 36)),
        ("aligned pw=46 all", lambda: store.aligned_windows(u, t0n, t0n + seconds * 10**9, 46)),
        ("aligned pw=30 1 h", lambda: store.aligned_windows(u, t0n, t0n + hour, 30)),
        ("aligned pw=24 1 h", lambda: store.aligned_windows(u, t0n, t0n + hour, 24)),
    ]:
        fn()
        reps = 5
        t1 = time.perf_counter()
        for _ in range(reps):
            out = fn()
        ms = (time.perf_counter() - t1) / reps * 1e3
        print(f"{label}: {ms:.2f} ms ({len(out[0])} rows)")
    store.close()


if __name__ == "__main__":
    main()
