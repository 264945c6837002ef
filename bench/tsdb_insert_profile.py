"""Where the server's CPU goes under ``arrow_insert``: stage timers, threads, samples.

    .venv/bin/python bench/tsdb_insert_profile.py [--minutes 72] [--threads 2]
        [--files-per-call 24] [--flush-each] [--py-spy PATH [--gil] [--raw FILE]]

Starts ``qss-btrdb`` in its own process (this file run with ``--serve``, which wraps the
insert path's stages in thread-CPU timers), inserts ``--minutes`` of the 19 extended
streams as sync2q does (``--files-per-call`` one-minute files per stream in one
``Stream.arrow_insert`` RPC, ``--threads`` streams at a time, then every stream's
``flush``; ``--flush-each``: each stream's flush right after its insert, as sync2q did
before issue 20), and prints, per point:

- the CPU of the server and of this client (steadier than wall time on a shared
  machine), and the rate;
- the server's thread CPU by stage: Arrow decode, checks, merge, level-30 statistics,
  chunk encoding (transforms and zstd), statistics levels, SQLite reads, the write
  transaction, the rest of the ArrowInsert handler (per-call Python), the Flush handler,
  and what ran outside the handlers;
- the server's CPU by thread (gRPC pool, gRPC poller and C threads, checkpointer,
  background fsync), from the first insert on;
- with ``--py-spy`` (the path of a py-spy binary), the server's sampled stacks sorted
  into stages by the innermost frame that names one (``--gil``: samples holding the GIL).

Runs against an older tree too (copy this file and tsdb/testing.py into it).
"""
from __future__ import annotations

import argparse
import importlib
import collections
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent import futures
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

importlib.import_module("btrdb")  # before any CPU is counted (it imports pandas)
import psutil  # noqa: E402

from _data import upmu_streams  # noqa: E402
from tsdb import testing  # noqa: E402

SAMPLES_PER_FILE = 7200          # one minute at 120 Hz

#: (stage, substrings of a frame): the innermost frame matching any decides the stage.
STAGES = [
    ("flush (fsync)", ("_fsync_wal", "_make_durable", "Flush (")),
    ("SQLite", ("execute", "transaction (", "rows_between", "_load_blocks", "stream_id",
                "chunks.py:load", "load (")),
    ("chunk encoding (codec + zstd)", ("codec.py",)),
    ("statistics", ("levels.py", "stats.py", "window_stats", "unique_windows",
                    "window_starts")),
    ("merge and checks", ("merge.py", "check_batch", "split (")),
    ("Arrow decode", ("arrowio.py",)),
    ("handler Python (store.insert, grpc_service)", ("store.py", "grpc_service.py",
                                                     "reqlog.py")),
    ("gRPC machinery", ("grpc/", "grpc\\", "_server.py", "_common.py", "threading.py",
                        "thread.py")),
]


# ---- the server, with stage timers (this file run with --serve) -----------------------

#: Functions timed in the server (thread CPU, outermost call only per stage).
TIMED = [
    ("Arrow decode", "tsdb.arrowio", "decode_points"),
    ("checks (check_batch)", "tsdb.kernels", "check_batch"),
    ("merge", "tsdb.merge", "merge"),
    ("level-30 statistics", "tsdb.kernels", "window_stats"),
    ("chunk encoding (codec + zstd)", "tsdb.chunks", "encode"),
    ("chunk encoding (codec + zstd)", "tsdb.chunks", "encode_pieces"),
    ("statistics levels (plan + encode)", "tsdb.levels", "plan_update"),
    ("SQLite reads (chunk rows, stream id)", "tsdb.chunks", "rows_between"),
    ("SQLite reads (chunk rows, stream id)", "tsdb.meta", "stream_id"),
]


def serve(argv: list[str], out_path: str) -> None:
    """Run qss-btrdb with thread-CPU timers around the insert path's stages; write the
    totals (seconds) as JSON to ``out_path`` at exit."""
    import contextlib
    import importlib
    import json
    from tsdb import db as dbmod, grpc_service, server
    totals: collections.Counter = collections.Counter()
    local = threading.local()

    def timed(stage, fn):
        def wrapper(*a, **k):
            if getattr(local, "busy", False):      # nested: counted by the outer one
                return fn(*a, **k)
            local.busy = True
            c0 = time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                totals[stage] += time.thread_time() - c0
                local.busy = False
        return wrapper

    for stage, module, name in TIMED:
        mod = importlib.import_module(module)
        if hasattr(mod, name):  # an older tree may lack one (encode_pieces)
            setattr(mod, name, timed(stage, getattr(mod, name)))
    real_tx = dbmod.Db.transaction

    @contextlib.contextmanager
    def transaction(self, *a, **k):
        c0 = time.thread_time()
        try:
            with real_tx(self, *a, **k) as c:
                yield c
        finally:
            totals["SQLite write transaction (statements, COMMIT)"] += \
                time.thread_time() - c0
    dbmod.Db.transaction = transaction
    roles: dict[int, str] = {}          # native thread id -> role
    base: dict[int, float] = {}         # thread CPU when the first insert arrived

    def role(name, fn):
        def wrapper(*a, **k):
            roles[threading.get_native_id()] = name
            return fn(*a, **k)
        return wrapper
    dbmod.Db._checkpoint_loop = role("thread: checkpoints", dbmod.Db._checkpoint_loop)
    dbmod.Db._sync_loop = role("thread: background fsync", dbmod.Db._sync_loop)
    svc = grpc_service.BTrDBServicer
    for rpc, stage in (("ArrowInsert", "ArrowInsert handler (all)"),
                       ("Flush", "Flush handler (all)")):
        real = getattr(svc, rpc)

        def handler(self, request, context, real=real, stage=stage):
            roles[threading.get_native_id()] = "thread: gRPC pool (handlers and more)"
            if not base:
                base.update({tid: cpu for tid, (_, cpu) in thread_cpu(os.getpid()).items()})
            c0 = time.thread_time()
            try:
                return real(self, request, context)
            finally:
                totals[stage] += time.thread_time() - c0
        setattr(svc, rpc, handler)
    last: dict[int, float] = {}         # thread CPU at the latest look (threads end)

    def watch():
        while True:
            for tid, (_, cpu) in thread_cpu(os.getpid()).items():
                last[tid] = cpu
            time.sleep(0.1)
    threading.Thread(target=watch, daemon=True).start()
    try:
        server.main(argv)
    finally:
        for tid, cpu in last.items():
            totals[roles.get(tid, "thread: other (gRPC poller, main, C threads)")] += \
                cpu - base.get(tid, 0.0)
        Path(out_path).write_text(json.dumps(totals))


# ---- the client ------------------------------------------------------------------------

def calls(minutes: int, files_per_call: int):
    """(stream index, times, values) per call, in batch order (all streams of a batch,
    then the next batch), as sync2q sends them."""
    t, vals = upmu_streams(1_500_000_000, minutes * 60)
    per = SAMPLES_PER_FILE * files_per_call
    out = []
    for lo in range(0, len(t), per):
        for i in range(vals.shape[0]):
            out.append((i, t[lo:lo + per], vals[i, lo:lo + per]))
    return out


def insert_all(grpc: str, work, threads: int, flush_each: bool = False) -> float:
    import btrdb
    from qss.btrdbclient import arrow_insert
    from sync2q.insert import MERGE
    per_rpc = max(len(w[1]) for w in work)   # as sync2q: one RPC per stream per call
    db = btrdb.connect(grpc)
    streams = {i: db.create(uuid.uuid4(), "profile", {"name": f"s{i}"}, {})
               for i in {w[0] for w in work}}

    def one(i, t, v):
        arrow_insert(streams[i], t, v, MERGE, per_rpc)
        if flush_each:
            streams[i].flush()
    pool = futures.ThreadPoolExecutor(threads)
    t0 = time.perf_counter()
    n = len(streams)
    for lo in range(0, len(work), n):       # a batch: every stream, then their flushes
        list(pool.map(one, *zip(*work[lo:lo + n])))
        for i, _, _ in work[lo:lo + n] if not flush_each else ():
            streams[i].flush()
    seconds = time.perf_counter() - t0
    pool.shutdown()
    return seconds


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """Per thread of a process: (name, CPU seconds so far)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(task.name)] = (name, (int(fields[11]) + int(fields[12]))
                               / os.sysconf("SC_CLK_TCK"))
    return out


def stage_of(stack: list[str]) -> str:
    for frame in reversed(stack):          # innermost first
        for stage, marks in STAGES:
            if any(m in frame for m in marks):
                return stage
    return "other"


def read_raw(path: str) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    for line in Path(path).read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            counts[stage_of(stack.split(";"))] += int(n)
    return counts


def main() -> None:
    try:
        from qss import malloc
        malloc.keep_large_buffers()        # as qss-sync2q does
    except ImportError:                    # an older tree, for comparisons
        pass
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=int, default=72)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--files-per-call", type=int, default=24)
    ap.add_argument("--py-spy", help="path of a py-spy binary: sample the server")
    ap.add_argument("--gil", action="store_true", help="only samples holding the GIL")
    ap.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    ap.add_argument("--server-args", default="", help="extra qss-btrdb arguments")
    ap.add_argument("--raw", help="keep py-spy's raw stacks in this file")
    ap.add_argument("--flush-each", action="store_true",
                    help="flush each stream right after its insert (sync2q before issue 20)")
    ap.add_argument("--serve", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve is not None:
        serve(args.serve[1:], args.serve[0])
        return
    work = calls(args.minutes, args.files_per_call)
    points = sum(len(w[1]) for w in work)
    with tempfile.TemporaryDirectory(prefix="tsdb-insert-profile-") as d:
        timers = os.path.join(d, "timers.json")
        server = testing.start(Path(d) / "data", *args.server_args.split(),
                               program=[sys.executable, __file__, "--serve", timers])
        try:
            srv, me = psutil.Process(server.proc.pid), psutil.Process()
            spy = None
            raw = args.raw or os.path.join(d, "spy.txt")
            if args.py_spy:
                cmd = [args.py_spy, "record", "--pid", str(server.proc.pid), "--format",
                       "raw", "-r", str(args.rate), "-o", raw, "--nonblocking"]
                if args.gil:
                    cmd.append("--gil")
                spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
                time.sleep(1.0)
            before_threads = thread_cpu(srv.pid)
            s0, c0 = srv.cpu_times(), me.cpu_times()
            seconds = insert_all(server.grpc, work, args.threads, args.flush_each)
            s1, c1 = srv.cpu_times(), me.cpu_times()
            by_thread = thread_cpu(srv.pid)
            if spy is not None:
                spy.send_signal(2)
                spy.wait(30)
            counts = read_raw(raw) if spy is not None and os.path.exists(raw) else None
        finally:
            server.stop()
        import json
        stages = json.loads(Path(timers).read_text())
    server_cpu = (s1.user - s0.user) + (s1.system - s0.system)
    server_sys = s1.system - s0.system
    client_cpu = (c1.user - c0.user) + (c1.system - c0.system)
    print(f"{points:,} points, {args.threads} thread(s), {args.files_per_call} files "
          f"({args.files_per_call * SAMPLES_PER_FILE:,} points) per call: {seconds:.2f} s = "
          f"{points / seconds / 1e6:.2f} M points/s; load {os.getloadavg()[0]:.1f}")
    print(f"server CPU {server_cpu:.2f} s = {server_cpu / points * 1e9:.0f} ns/point "
          f"(system {server_sys / points * 1e9:.0f}); client CPU {client_cpu:.2f} s = "
          f"{client_cpu / points * 1e9:.0f} ns/point")
    used = collections.Counter()
    for tid, (name, cpu) in by_thread.items():
        used[name] += cpu - before_threads.get(tid, (name, 0.0))[1]
    print("server CPU by thread name: " + ", ".join(
        f"{name} {cpu / points * 1e9:.0f}" for name, cpu in used.most_common() if cpu > 0)
        + " ns/point")
    print("server thread CPU by stage (ns/point):")
    handler = stages.pop("ArrowInsert handler (all)", 0.0)
    flush = stages.pop("Flush handler (all)", 0.0)
    inner = 0.0
    threads = {k: stages.pop(k) for k in list(stages) if k.startswith("thread: ")}
    for stage, sec in sorted(stages.items(), key=lambda kv: -kv[1]):
        print(f"  {stage:46s} {sec / points * 1e9:6.1f}")
        inner += sec
    print(f"  {'rest of the ArrowInsert handler':46s} {(handler - inner) / points * 1e9:6.1f}")
    print(f"  {'Flush handler':46s} {flush / points * 1e9:6.1f}")
    print(f"  {'outside handlers (gRPC, background threads)':46s} "
          f"{(server_cpu - handler - flush) / points * 1e9:6.1f}")
    print("server CPU by thread (ns/point, from the first insert on):")
    for name, sec in sorted(threads.items(), key=lambda kv: -kv[1]):
        print(f"  {name[8:]:46s} {sec / points * 1e9:6.1f}")
    if counts:
        total = sum(counts.values())
        print(f"server samples{' holding the GIL' if args.gil else ' on a CPU'}: {total}")
        for stage, n in counts.most_common():
            print(f"  {stage:46s} {n / total:6.1%}  {n / total * server_cpu / points * 1e9:6.1f}"
                  f" ns/point")


if __name__ == "__main__":
    main()
