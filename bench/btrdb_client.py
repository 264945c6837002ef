"""Figures through the official client against the embedded server in its own process.

    .venv/bin/python bench/btrdb_client.py [--hours 1] [--days 1,7,30]

Prints: arrow_insert points/s for the 19 extended streams of one simulated uPMU (serially,
stream by stream; with StreamSet.arrow_insert's thread pool; with two threads as sync2q),
each timed up to the flush of every stream (the client inserts without BTrDB's sync flag:
the flush is what puts the points on disk, and sync2q flushes before marking files synced;
``--no-fsync`` starts the server without any fsync); raw query of one hour
(432,000 points) with arrow_values, ms; aligned windows at pw=36 and 46 over 1/7/30 days
of one 120 Hz stream (data inserted by repeating the generated day), ms.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
from btrdb.conn import BTrDB, Connection  # noqa: E402
from btrdb.endpoint import Endpoint  # noqa: E402

import _server  # noqa: E402
from _data import upmu_streams  # noqa: E402
from qss.streams import EXTENDED_STREAMS  # noqa: E402

START = 1_500_000_000
SCHEMA = pa.schema([pa.field("time", pa.timestamp("ns", tz="UTC"), nullable=False),
                    pa.field("value", pa.float64(), nullable=False)])


def table(t, v):
    return pa.Table.from_arrays([pa.array(t, SCHEMA.field("time").type), pa.array(v)],
                                schema=SCHEMA)


def timed(fn, reps=5):
    fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        out = fn()
    return (time.perf_counter() - t0) / reps * 1e3, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--days", default="1,7,30")
    ap.add_argument("--no-fsync", action="store_true")
    ap.add_argument("--repeat", type=int, default=1,
                    help="insert the hour this many times into fresh streams; print each "
                         "rate and the median (the machine may be busy)")
    ap.add_argument("--insert-only", action="store_true", help="skip the query figures")
    args = ap.parse_args()
    data = tempfile.mkdtemp(prefix="btrdb-bench-")
    server, addr = _server.start(["--data", data, "--grpc", "127.0.0.1:0", "--http",
                                  "127.0.0.1:0"] + (["--no-fsync"] if args.no_fsync else []))
    try:
        channel = Connection(addr).channel
        db = BTrDB(Endpoint(channel))
        t, vals = upmu_streams(START, int(args.hours * 3600))
        tables = [table(t, vals[i]) for i in range(len(EXTENDED_STREAMS))]
        rates = []
        for rep in range(args.repeat):
            streams = [db.create(uuid.uuid4(), f"bench/P1-{rep}", {"name": n}, {})
                       for n in EXTENDED_STREAMS]
            t0 = time.perf_counter()
            for s, tb in zip(streams, tables):
                s.arrow_insert(tb)
                s.flush()
            el = time.perf_counter() - t0
            n = t.size * len(streams)
            rates.append(n / el / 1e6)
            print("arrow_insert + flush, streams one after another: "
                  f"{n:,} points in {el:.2f} s"
                  f" = {rates[-1]:.2f} M points/s")
        if args.repeat > 1:
            print(f"arrow_insert + flush, median of {args.repeat}: "
                  f"{np.median(rates):.2f} M points/s")
        par = [db.create(uuid.uuid4(), "bench/P2", {"name": n}, {}) for n in EXTENDED_STREAMS]
        from btrdb.stream import StreamSet
        ss = StreamSet(par)
        t0 = time.perf_counter()
        ss.arrow_insert({s.uuid: tb for s, tb in zip(par, tables)})
        for s in par:
            s.flush()
        el = time.perf_counter() - t0
        print(f"StreamSet.arrow_insert + flush (client thread pool): {n / el / 1e6:.2f} M points/s")
        # As sync2q inserts (sync2q/insert.py): two threads, a stream each, merge REPLACE.
        from concurrent.futures import ThreadPoolExecutor
        two = [db.create(uuid.uuid4(), "bench/P4", {"name": n}, {}) for n in EXTENDED_STREAMS]

        def insert_and_flush(stream, tb):
            stream.arrow_insert(tb, merge="replace")
            stream.flush()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(insert_and_flush, two, tables))
        el = time.perf_counter() - t0
        print("arrow_insert + flush, 2 threads, merge=replace (as sync2q): "
              f"{n / el / 1e6:.2f} M points/s")
        if args.insert_only:
            return
        s = streams[0]
        t0n = START * 10**9
        ms, tb = timed(lambda: s.arrow_values(t0n, t0n + 3600 * 10**9))
        print(f"raw 1 h via arrow_values: {ms:.1f} ms ({tb.num_rows:,} points)")
        # Long spans: one 120 Hz stream, the generated day repeated.
        day_t, day_v = upmu_streams(START, 86400)
        long = db.create(uuid.uuid4(), "bench/long", {"name": "L1MAG"}, {})
        days = [int(d) for d in args.days.split(",")]
        for d in range(max(days)):
            long.arrow_insert(table(day_t + d * 86400 * 10**9, day_v[0]))
        for d in days:
            for pw in (36, 46):
                ms, w = timed(lambda: long.arrow_aligned_windows(t0n, t0n + d * 86400 * 10**9,
                                                                 pw))
                print(f"aligned windows pw={pw} over {d} day(s): {ms:.2f} ms"
                      f" ({w.num_rows} windows)")
        channel.close()
        db._executor.shutdown()
    finally:
        server.terminate()
        server.wait(30)
    size = (Path(data) / "btrdb.sqlite3").stat().st_size
    print(f"(server data dir {data}: {size / 1e6:.0f} MB)")


if __name__ == "__main__":
    main()
