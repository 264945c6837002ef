"""How fast sync2q drains a backlog into BTrDB, against what parsing and the server allow.

    .venv/bin/python bench/bench_sync2q.py [--files 500] [--upmus 4] [--dir DIR]

Builds a backlog of extended one-minute files from the realistic generator (``--files``
spread over ``--upmus`` simulated uPMUs; 500 files = 68.4 million points) in a real
SQLite queue, then prints, in one run:

1. parse-only rate: every file read from the queue and turned into per-stream arrays
   exactly as sync2q's reader does (:func:`sync2q.batch.prepare`), one thread;
2. the server's raw ``arrow_insert`` rate: the same points, already parsed and in Arrow
   tables, inserted by the official client into a fresh embedded server (``qss-btrdb``,
   own process) in sync2q's batches (24 files, 172,800 points per stream per call), every
   stream of a batch flushed after the batch's inserts as sync2q does, one stream after
   another and two at a time; and the same calls into the storage engine in this process
   (``tsdb.Store.insert`` without ``sync``, then ``Store.flush`` of the batch's streams,
   one thread, no gRPC, no Arrow): the reference;
3. end-to-end drain: ``qss-sync2q --once`` (a subprocess) against another fresh server,
   from the start of the process to its exit, with every count checked afterwards; and
   the CPU of sync2q and of the server during the drain, per point (on a shared machine
   steadier than the rates);
4. the drain rate as a ratio of the slower of (1) and the faster of (2);
5. last line: the drain rate as a ratio of the engine's (goal, issue 20: >= 0.85).

This process and the engine in it use the allocator settings of the server and of
sync2q (:func:`qss.malloc.keep_large_buffers`), so the reference is the same engine.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent import futures
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import psutil  # noqa: E402

from qss import generator, malloc  # noqa: E402
from qss.naming import DEVICE_ROOT  # noqa: E402
from qss.queue import open_queue  # noqa: E402
from tsdb import testing  # noqa: E402
from qss.upmuconfig import UpmuList  # noqa: E402

START = 1450426440      # 2015-12-18 08:14:00 UTC
FILES_PER_BATCH = 24    # what sync2q puts in one call for one-minute extended files


def build_backlog(workdir: str, files: int, upmus: int) -> tuple[str, str, list[str]]:
    """Queue ``files`` extended files over ``upmus`` uPMUs; return (queue URL, upmuconfig,
    serials)."""
    url = f"sqlite:///{workdir}/queue.db"
    config = os.path.join(workdir, "upmuconfig.ini")
    serials = [f"P39{i:05d}" for i in range(upmus)]
    with UpmuList.edit(config) as ul:
        for i, serial in enumerate(serials):
            ul.add(f"10.1.0.{i + 1}", serial, f"bench{i}", extended=True)
    queue = open_queue(url)
    try:
        per = [files // upmus + (i < files % upmus) for i in range(upmus)]
        for serial, count in zip(serials, per):
            sim = generator.UpmuSimulator(serial, extended=True)
            for rel, data in sim.files(START, count):
                queue.put(serial, f"{DEVICE_ROOT}/{rel}", data, update_latest=False)
    finally:
        queue.close()
    return url, config, serials


def parse_only(url: str, config: str):
    """Read + prepare every queued file as sync2q's reader does; (points, seconds, works)."""
    from sync2q.batch import prepare
    from qss.streammeta import specs_of
    queue = open_queue(url)
    upmus = {u.serial: u for u in UpmuList.load(config).upmus}
    listed = [(s, f) for s in queue.serials() for f in queue.unsynced(s)]
    t0 = time.perf_counter()
    works = []
    for serial, f in listed:
        upmu = upmus[serial]
        works.append((serial, prepare(f, queue.read(f), upmu, specs_of(upmu))))
    seconds = time.perf_counter() - t0
    queue.close()
    return sum(w.points for _, w in works), seconds, works


def _batches(works):
    """(serial, batch number, stream name, times, values) per call, in sync2q's
    batches."""
    import numpy as np
    by_serial: dict[str, list] = {}
    for serial, w in works:
        by_serial.setdefault(serial, []).append(w)
    for serial, ws in by_serial.items():
        names = sorted({n for w in ws for n in w.streams})
        for i in range(0, len(ws), FILES_PER_BATCH):
            group = ws[i:i + FILES_PER_BATCH]
            for n in names:
                yield (serial, i, n, np.concatenate([w.streams[n][0] for w in group]),
                       np.concatenate([w.streams[n][1] for w in group]))


def engine_insert(workdir: str, works) -> tuple[int, float, float]:
    """The same calls straight into the storage engine (no gRPC, no Arrow), one thread,
    made durable as the server makes sync2q's: inserts without ``sync``, then a flush of
    every stream of the batch (before, each insert waited for its own fsync, which on a
    busy disk made the reference slower than the server); (points, seconds, CPU seconds
    of this process)."""
    from tsdb import MergePolicy, Store
    store = Store(os.path.join(workdir, "engine"))
    ids: dict[tuple[str, str], uuid.UUID] = {}
    batches: list[list] = []
    last = None
    for serial, group, name, t, v in _batches(works):
        if (serial, name) not in ids:
            ids[serial, name] = uuid.uuid4()
            store.create(ids[serial, name], f"engine/{serial}", {"name": name}, {})
        if (serial, group) != last:
            batches.append([])
            last = (serial, group)
        batches[-1].append((ids[serial, name], t, v))
    cpu = CpuMeter(os.getpid())
    cpu.start()
    t0 = time.perf_counter()
    for batch in batches:
        for u, t, v in batch:
            store.insert(u, t, v, MergePolicy.REPLACE, sync=False)
        for u, _, _ in batch:
            store.flush(u)
    seconds = time.perf_counter() - t0
    used = cpu.stop()
    store.close()
    return sum(len(t) for b in batches for _, t, _ in b), seconds, used


def raw_insert(server, works, threads: int) -> tuple[int, float, float, float]:
    """arrow_insert the parsed points in sync2q's batches, then flush every stream of the
    batch (as sync2q inserts); (points, seconds, server CPU s, client CPU s)."""
    import btrdb
    from qss.btrdbclient import arrow_insert
    from sync2q.batch import BATCH_SAMPLES
    from sync2q.insert import MERGE
    db = btrdb.connect(server.grpc)
    streams: dict[tuple[str, str], object] = {}
    batches: list[list] = []    # per batch: (stream, table) per stream
    last = None
    for serial, group, name, t, v in _batches(works):
        if (serial, name) not in streams:
            streams[serial, name] = db.create(uuid.uuid4(), f"raw{threads}/{serial}",
                                              {"name": name}, {})
        if (serial, group) != last:
            batches.append([])
            last = (serial, group)
        batches[-1].append((streams[serial, name], (t, v)))
    points = sum(len(t) for b in batches for _, (t, _) in b)

    def insert(stream, points) -> None:
        arrow_insert(stream, *points, MERGE, BATCH_SAMPLES)   # as sync2q: one RPC per stream and batch

    pool = futures.ThreadPoolExecutor(threads)
    server_cpu, client_cpu = CpuMeter(server.proc.pid), CpuMeter(os.getpid())
    server_cpu.start()
    client_cpu.start()
    t0 = time.perf_counter()
    for batch in batches:
        list(pool.map(insert, *zip(*batch)))
        for stream, _ in batch:
            stream.flush()
    seconds = time.perf_counter() - t0
    used = server_cpu.stop(), client_cpu.stop()
    pool.shutdown()
    return points, seconds, *used


class CpuMeter:
    """CPU seconds a process uses between start() and stop()."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)

    def start(self) -> None:
        self.t0 = self.proc.cpu_times()

    def stop(self) -> float:
        t = self.proc.cpu_times()
        return (t.user - self.t0.user) + (t.system - self.t0.system)


def drain(workdir: str, url: str, config: str, server) -> tuple[float, str, float, float]:
    """Run qss-sync2q --once; (seconds, its log, sync2q CPU s, server CPU s)."""
    log_path = os.path.join(workdir, "sync2q.log")
    server_cpu = CpuMeter(server.proc.pid)
    cmd = [sys.executable, "-m", "sync2q", "--config", os.devnull, "--queue", url,
           "--upmuconfig", config, "--btrdb", server.grpc, "--once", "--rate-interval", "5"]
    with open(log_path, "w") as out:
        server_cpu.start()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                env=dict(os.environ, PYTHONPATH=ROOT))
        ps = psutil.Process(proc.pid)
        own = [0.0]

        def sample():           # the child's CPU time, read just before it exits
            while proc.poll() is None:
                try:
                    t = ps.cpu_times()
                    own[0] = t.user + t.system
                except psutil.Error:
                    return
                time.sleep(0.05)
        sampler = threading.Thread(target=sample)
        sampler.start()
        code = proc.wait()
        seconds = time.perf_counter() - t0
        sampler.join()
        srv = server_cpu.stop()
    text = Path(log_path).read_text()
    if code != 0:
        raise SystemExit(f"qss-sync2q --once exited {code}:\n{text[-3000:]}")
    return seconds, text, own[0], srv


def check_counts(server, config: str, works) -> int:
    """Every stream's count equals the files' points for it; returns the total."""
    import btrdb
    db = btrdb.connect(server.grpc)
    total = 0
    for upmu in UpmuList.load(config).upmus:
        for name, info in upmu.streams.items():
            want = sum(len(w.streams[name][0]) for s, w in works
                       if s == upmu.serial and name in w.streams)
            got = db.stream_from_uuid(info.uuid).count()
            if got != want:
                raise SystemExit(f"count mismatch: {upmu.serial} {name}: {got} != {want}")
            total += got
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=500, help="files in the backlog (500)")
    ap.add_argument("--upmus", type=int, default=4, help="uPMUs they come from (4)")
    ap.add_argument("--dir", help="work directory (default: a new temporary one, removed)")
    args = ap.parse_args()
    malloc.keep_large_buffers()
    workdir = args.dir or tempfile.mkdtemp(prefix="bench-sync2q-")
    os.makedirs(workdir, exist_ok=True)
    try:
        t0 = time.perf_counter()
        url, config, _ = build_backlog(workdir, args.files, args.upmus)
        print(f"backlog: {args.files} extended files of {args.upmus} uPMUs queued in "
              f"{time.perf_counter() - t0:.1f} s ({workdir})")

        points, seconds, works = parse_only(url, config)
        parse_rate = points / seconds
        print(f"1. parse only (read from the queue + parse + per-stream arrays, 1 thread): "
              f"{points:,} points in {seconds:.2f} s = {parse_rate / 1e6:.1f} M points/s")

        raw_rates = []
        for threads in (1, 2):
            with testing.running(os.path.join(workdir, f"raw{threads}")) as server:
                p, s, srv_cpu, cl_cpu = raw_insert(server, works, threads)
            raw_rates.append(p / s)
            print(f"2. server raw arrow_insert + flush, {threads} stream(s) at a time, "
                  f"{FILES_PER_BATCH} files per call: {p:,} points in {s:.2f} s = "
                  f"{p / s / 1e6:.2f} M points/s; CPU per point: server "
                  f"{srv_cpu / p * 1e9:.0f} ns, client {cl_cpu / p * 1e9:.0f} ns")

        p, s, engine_cpu = engine_insert(workdir, works)
        engine_rate = p / s
        print(f"   the storage engine alone (tsdb.Store.insert + flush per batch in one "
              f"thread, same calls, no gRPC or Arrow): {engine_rate / 1e6:.2f} M points/s; CPU "
              f"{engine_cpu / p * 1e9:.0f} ns per point")

        with testing.running(os.path.join(workdir, "drain")) as server:
            seconds, text, own_cpu, server_cpu = drain(workdir, url, config, server)
            total = check_counts(server, config, works)
        stored = sum(f.stat().st_size for f in Path(workdir, "drain").iterdir())
        drained = [line for line in text.splitlines() if " drained: " in line]
        rate = total / seconds
        print(f"3. end to end, qss-sync2q --once (process start to exit): {total:,} points "
              f"in {seconds:.2f} s = {rate / 1e6:.2f} M points/s (goal >= 5); counts "
              f"checked")
        if drained:
            print(f"   sync2q's own line: {drained[-1].split(' INFO ', 1)[-1]}")
        print(f"   stored: {stored:,} bytes = {stored / total:.3f} bytes per point (server "
              f"stopped, WAL checkpointed)")
        print(f"   CPU during the drain: sync2q {own_cpu:.1f} s ({own_cpu / seconds:.0%} of "
              f"a core, {own_cpu / total * 1e9:.0f} ns per point), server "
              f"{server_cpu:.1f} s ({server_cpu / seconds:.0%} of a core, "
              f"{server_cpu / total * 1e9:.0f} ns per point); {os.cpu_count()} cores, "
              f"load {os.getloadavg()[0]:.1f}")
        slower = min(parse_rate, max(raw_rates))
        print(f"4. drain / min(parse {parse_rate / 1e6:.1f}, raw insert "
              f"{max(raw_rates) / 1e6:.2f}) = {rate / slower:.2f} (goal >= 0.5)")
        print(f"end-to-end {rate / 1e6:.1f} M/s = {rate / engine_rate:.2f} of the engine "
              f"({engine_rate / 1e6:.1f} M/s)")
    finally:
        if not args.dir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
