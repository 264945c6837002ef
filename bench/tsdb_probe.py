"""Where the time of concurrent arrow_insert calls goes: a timeline of both processes.

    .venv/bin/python bench/tsdb_probe.py [--threads 2] [--repeat 3] [--hours 1]

Starts qss-btrdb in its own process (as bench/btrdb_client.py does) with probes patched
in (this file run with ``--serve``), inserts one hour of the 19 extended streams with N
client threads (merge=replace, as sync2q), and prints per 50,000-point call, medians:

- client: Arrow serialisation + request building, and the wait for the response;
- server: handler time, Arrow decode, the write lock's wait and hold (SQLite statements,
  COMMIT and its fsync), and the number of ArrowInsert handlers in flight;
- CPU of each process (and its busiest threads) over the run, in cores.

Times come from CLOCK_MONOTONIC in both processes, so the timelines line up.

Experiments (server side): ``--fsync-in-lock`` restores the earlier commit (SQLite's
synchronous=FULL, the fsync inside COMMIT under the write lock), ``--switch-interval``
sets sys.setswitchinterval, ``--py-spy FILE`` records the server with py-spy;
PROBE_WORKERS=N (gRPC thread pool) and PROBE_GRPC_OPTIONS='[["name", value]]' in the
environment are passed to the server.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def now() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


# ---- server side ----------------------------------------------------------------------

def serve(argv: list[str], trace_path: str) -> None:
    from tsdb import arrowio, db as dbmod, grpc_service, server, store as storemod
    if os.environ.get("PROBE_SWITCH_INTERVAL"):
        sys.setswitchinterval(float(os.environ["PROBE_SWITCH_INTERVAL"]))
    if os.environ.get("PROBE_WORKERS"):  # the gRPC server's thread pool size
        real_init = server.BtrdbServer.__init__

        def bs_init(self, *a, **k):
            real_init(self, *a, **dict(k, workers=int(os.environ["PROBE_WORKERS"])))
        server.BtrdbServer.__init__ = bs_init
    if os.environ.get("PROBE_GRPC_OPTIONS"):  # extra server options, JSON [[name, value]]
        import grpc
        extra = [tuple(o) for o in json.loads(os.environ["PROBE_GRPC_OPTIONS"])]
        real_server = grpc.server

        def grpc_server(executor, options=(), **k):
            return real_server(executor, options=list(options) + extra, **k)
        grpc_service.grpc.server = grpc_server
    if os.environ.get("PROBE_FSYNC_IN_LOCK") and hasattr(dbmod.Db, "_make_durable"):
        # the earlier behaviour: SQLite fsyncs the WAL inside COMMIT (synchronous=FULL)
        orig_conn, full = dbmod.Db.conn, set()

        def conn(self):
            c = orig_conn(self)
            if self.durable and id(c) not in full:
                c.execute("PRAGMA synchronous=FULL")
                full.add(id(c))
            return c
        dbmod.Db.conn = conn
        dbmod.Db._make_durable = lambda self, commit: None
    events: list[tuple] = []  # (kind, thread, t0, t1)

    def timed(kind, fn):
        def wrapper(*a, **k):
            t0, c0 = now(), time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                events.append((kind, threading.get_ident(), t0, now(), time.thread_time() - c0))
        return wrapper

    svc = grpc_service.BTrDBServicer
    svc.ArrowInsert = timed("handler", svc.ArrowInsert)
    arrowio.decode_points = timed("decode", arrowio.decode_points)
    storemod.Store._insert_sorted = timed("insert_sorted", storemod.Store._insert_sorted)

    class TimedLock:
        def __init__(self):
            self._lock = threading.Lock()
            self._t = 0.0

        def __enter__(self):
            t0 = now()
            self._lock.acquire()
            self._t, self._c = now(), time.thread_time()
            events.append(("lock_wait", threading.get_ident(), t0, self._t, 0.0))

        def __exit__(self, *exc):
            events.append(("lock_hold", threading.get_ident(), self._t, now(),
                           time.thread_time() - self._c))
            self._lock.release()

        acquire = __enter__

        def release(self):
            self.__exit__()

    if hasattr(dbmod.Db, "_make_durable"):
        dbmod.Db._make_durable = timed("durable", dbmod.Db._make_durable)
        dbmod.Db._fsync_wal = timed("fsync", dbmod.Db._fsync_wal)
    orig_init = dbmod.Db.__init__

    def init(self, *a, **k):
        orig_init(self, *a, **k)
        self.write_lock = TimedLock()
    dbmod.Db.__init__ = init
    try:
        server.main(argv)
    finally:
        with open(trace_path, "w") as f:
            json.dump(events, f)


# ---- client side ----------------------------------------------------------------------

def cpu_sampler(pids: dict[str, int], stop: threading.Event, out: dict) -> None:
    import psutil
    procs = {k: psutil.Process(p) for k, p in pids.items()}

    def snap():
        res = {}
        for k, p in procs.items():
            res[k] = (p.cpu_times(), {t.id: t.user_time + t.system_time for t in p.threads()})
        return res
    t0, s0 = now(), snap()
    stop.wait()
    t1, s1 = now(), snap()
    for k in procs:
        a, b = s0[k][0], s1[k][0]
        cores = (b.user + b.system - a.user - a.system) / (t1 - t0)
        threads = {tid: (c - s0[k][1].get(tid, 0.0)) / (t1 - t0) for tid, c in s1[k][1].items()}
        out[k] = (cores, sorted(threads.values(), reverse=True)[:6])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve", nargs=argparse.REMAINDER)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--no-fsync", action="store_true")
    ap.add_argument("--py-spy", metavar="FILE", help="record the server with py-spy "
                    "(--idle --threads, collapsed stacks) during the runs into FILE")
    ap.add_argument("--py-spy-args", default="--idle --threads",
                    help="extra py-spy record arguments (e.g. '--gil')")
    ap.add_argument("--fsync-in-lock", action="store_true",
                    help="the earlier commit: synchronous=FULL, fsync inside the write lock")
    ap.add_argument("--switch-interval", type=float,
                    help="the server's sys.setswitchinterval, seconds (a probe of GIL handover)")
    args = ap.parse_args()
    if args.serve is not None:
        serve(args.serve[1:], args.serve[0])
        return

    import pyarrow as pa
    from btrdb import endpoint as ep_mod
    from btrdb.conn import BTrDB, Connection
    from btrdb.endpoint import Endpoint
    from btrdb.grpcinterface import btrdb_pb2
    from concurrent.futures import ThreadPoolExecutor

    import _server
    from _data import upmu_streams
    from qss.streams import EXTENDED_STREAMS
    from btrdb_client import table

    calls: list[tuple] = []  # (thread, start, serialised, end)

    def arrow_insert_values(self, uu, values, policy):  # Endpoint.arrowInsertValues, timed
        import io
        t0 = now()
        byte_io = io.BytesIO()
        with pa.ipc.new_stream(sink=byte_io, schema=values.schema) as writer:
            writer.write(values)
        params = btrdb_pb2.ArrowInsertParams(uuid=uu.bytes, sync=False,
                                             arrowBytes=byte_io.getvalue(),
                                             merge_policy=btrdb_pb2.MergePolicy.REPLACE
                                             if policy == "replace" else 0)
        t1 = now()
        result = self.stub.ArrowInsert(params)
        ep_mod.check_proto_stat(result.stat)
        calls.append((threading.get_ident(), t0, t1, now()))
        return result.versionMajor
    Endpoint.arrowInsertValues = arrow_insert_values

    data = tempfile.mkdtemp(prefix="btrdb-probe-")
    trace = os.path.join(data, "trace.json")
    env = {"PROBE_SWITCH_INTERVAL": str(args.switch_interval)} if args.switch_interval else {}
    if args.fsync_in_lock:
        env["PROBE_FSYNC_IN_LOCK"] = "1"
    server, addr = _server.start(
        ["--data", data, "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"]
        + (["--no-fsync"] if args.no_fsync else []),
        env=env, command=[sys.executable, __file__, "--serve", trace])
    try:
        channel = Connection(addr).channel
        db = BTrDB(Endpoint(channel))
        t, vals = upmu_streams(1_500_000_000, int(args.hours * 3600))
        tables = [table(t, vals[i]) for i in range(len(EXTENDED_STREAMS))]
        runs, spy = [], None
        if args.py_spy:
            spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record",
                                    "--pid", str(server.pid), "--rate", "400", "--format",
                                    "raw", "-o", args.py_spy, "--nonblocking"]
                                   + args.py_spy_args.split())
            time.sleep(1.0)
        for rep in range(args.repeat):
            streams = [db.create(uuid.uuid4(), f"probe/{rep}", {"name": n}, {})
                       for n in EXTENDED_STREAMS]
            stop, cpu = threading.Event(), {}
            sampler = threading.Thread(target=cpu_sampler, args=(
                {"client": os.getpid(), "server": server.pid}, stop, cpu))
            sampler.start()
            time.sleep(0.05)
            calls.clear()
            t0 = now()
            with ThreadPoolExecutor(args.threads) as pool:
                list(pool.map(lambda st: st[0].arrow_insert(st[1], merge="replace"),
                              zip(streams, tables)))
            t1 = now()
            stop.set()
            sampler.join()
            n = t.size * len(streams)
            runs.append((t0, t1, list(calls), cpu))
            print(f"run {rep}: {n / (t1 - t0) / 1e6:.2f} M points/s, {len(calls)} calls,"
                  f" {(t1 - t0) / len(calls) * 1e3:.2f} ms wall per call; CPU cores:"
                  f" client {cpu['client'][0]:.2f} (threads "
                  f"{' '.join(f'{x:.2f}' for x in cpu['client'][1])}), server "
                  f"{cpu['server'][0]:.2f} (threads "
                  f"{' '.join(f'{x:.2f}' for x in cpu['server'][1])})")
        channel.close()
        if spy is not None:
            spy.send_signal(2)  # SIGINT: py-spy writes its output and exits
            spy.wait(30)
    finally:
        server.terminate()
        server.wait(30)
    with open(trace) as f:
        events = json.load(f)
    med = lambda xs: statistics.median(xs) * 1e3 if xs else float("nan")  # noqa: E731
    for rep, (t0, t1, cl, cpu) in enumerate(runs):
        ev = [e for e in events if t0 <= e[2] <= t1]
        by = lambda k: [e[3] - e[2] for e in ev if e[0] == k]  # noqa: E731
        cpu_of = lambda k: [e[4] for e in ev if e[0] == k]  # noqa: E731
        hs = sorted((e[2], e[3]) for e in ev if e[0] == "handler")
        # time-weighted number of handlers in flight, and share of time with 0/1/2+
        pts = sorted([(a, 1) for a, _ in hs] + [(b, -1) for _, b in hs])
        level, last, dist = 0, t0, {}
        for x, d in pts:
            dist[level] = dist.get(level, 0.0) + x - last
            level, last = level + d, x
        dist[level] = dist.get(level, 0.0) + t1 - last
        total = t1 - t0
        share = " ".join(f"{k}:{v / total:.0%}" for k, v in sorted(dist.items()))
        locked = sum(by("lock_hold")) / total
        print(f"run {rep} medians (ms): client serialise {med([c[2] - c[1] for c in cl]):.2f},"
              f" client wait {med([c[3] - c[2] for c in cl]):.2f}; server handler "
              f"{med([b - a for a, b in hs]):.2f}, decode {med(by('decode')):.2f}, "
              f"insert_sorted {med(by('insert_sorted')):.2f}, lock wait "
              f"{med(by('lock_wait')):.2f}, lock hold {med(by('lock_hold')):.2f}")
        lw = by("lock_wait")
        print(f"       lock wait mean {statistics.mean(lw) * 1e3:.2f} ms, max {max(lw) * 1e3:.2f}"
              f" ms, {sum(x > 1e-4 for x in lw)} of {len(lw)} waited > 0.1 ms; lock hold mean "
              f"{statistics.mean(by('lock_hold')) * 1e3:.2f} ms")
        print(f"       fsyncs {len(by('fsync'))} for {len(by('lock_hold'))} commits, fsync "
              f"{med(by('fsync')):.2f} ms, wait for durability {med(by('durable')):.2f} ms")
        print(f"       thread CPU (ms): handler {med(cpu_of('handler')):.2f}, insert_sorted "
              f"{med(cpu_of('insert_sorted')):.2f}, lock hold {med(cpu_of('lock_hold')):.2f}")
        print(f"       handlers in flight (share of wall time) {share}; write lock held"
              f" {locked:.0%} of the time; client wait - handler = gRPC/transport "
              f"{med([c[3] - c[2] for c in cl]) - med([b - a for a, b in hs]):.2f} ms")


if __name__ == "__main__":
    main()
