"""How fast the receiver queues pushed files, how fast it answers, and what it costs.

    .venv/bin/python bench/bench_receiver.py [--dir DIR] [--quick] [--rounds N]
                                             [--go-source PATH]

Runs a real ``qss-receiver`` process (``python -m receiver.server``, embedded SQLite
queue in DIR, default a new temporary directory) and drives it from this process with
simulated uPMUs over loopback. Prints:

1. durable throughput (files/s, MB/s) with 1, 10 and 100 devices sending extended files
   (551,520 bytes) back to back, each waiting for its reply as a real device does;
   a file counts once its reply arrived, i.e. after the queue's commit. ``--rounds``
   rounds (default 3), medians reported. Goals: >= 200 files/s at 10 devices (issue 4),
   at least the original Go receiver's dry-run rate (issue 22);
2. reply latency p50/p99 at 50 files/s (50 devices, one file a second each, as real
   devices pace themselves), from the last byte handed to the kernel to the reply.
   Goal: p99 < 100 ms;
3. the receiver's resident memory (RSS) at rest and with 1,000 idle device connections.
   Goal: < 200 MB;
4. a hostile run (issue 22): 100 connections each send 70 MB of a 75.7 MB message and
   then stall, half of them with unknown serials, while a device pushes a file a second; the
   receiver's peak RSS and the device's reply latency. Goal: < 400 MB, replies < 100 ms.

Server CPU per file is the receiver process's user + system time over a phase divided by
its files: on a machine shared with other work it is steadier than files/s. The last
lines sum the figures up.

With ``--go-source PATH`` (``receiver.go``, or a checkout of SoftwareDefinedBuildings/
uPMU-daemon) and Go installed, the original Go receiver is built and run through the same
throughput phases in its dry-run mode (acknowledging without storing), side by side: each
phase of each round runs against ours, then against it, so both see the same load.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import multiprocessing
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from _go_receiver import GoReceiver, GoUnavailable, build as build_go  # noqa: E402
from qss.generator import UpmuSimulator  # noqa: E402
from qss.naming import device_path  # noqa: E402
from simulator.devices import EXAMPLE_START as START  # noqa: E402
from qss.protocol import HEADER, MAX_DATA_LEN, encode_message  # noqa: E402
from sim_upmu import serial_of, write_upmus  # noqa: E402

DEVICES = 100          # configured uPMUs (the most any phase uses)
POOL = 16              # distinct contents reused under distinct names (storage is the same)


class Receiver:
    """The receiver process on a listening socket this benchmark owns."""

    def __init__(self, workdir: str, sock: socket.socket) -> None:
        self.log = open(os.path.join(workdir, "receiver.log"), "w")
        config = os.path.join(workdir, "qss.ini")
        open(config, "w").close()
        env = {k: v for k, v in os.environ.items() if k not in ("MONGO_ADDR", "QSS_CONFIG")}
        env["PYTHONPATH"] = ROOT
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "receiver.server", "--config", config,
             "--queue", f"sqlite:///{workdir}/queue.db",
             "--upmuconfig", os.path.join(workdir, "upmuconfig.ini"),
             "--listen-fd", str(sock.fileno())],
            pass_fds=(sock.fileno(),), stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 30
        while "Listening on" not in open(self.log.name).read():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"receiver did not start:\n{open(self.log.name).read()}")
            time.sleep(0.05)
        self.ps = psutil.Process(self.proc.pid)
        self.port = sock.getsockname()[1]

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 1e6

    def cpu_s(self) -> float:
        times = self.ps.cpu_times()
        return times.user + times.system

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        self.log.close()


class Device:
    """One simulated uPMU on one connection."""

    def __init__(self, port: int, serial: str, pool: list[bytes], phase: int) -> None:
        self.port = port
        self.serial = serial
        self.pool = pool
        self.sent = 0
        # Each phase pushes new minutes, so no push is a resend of an earlier phase's file.
        self.first = START + phase * 10_000_000

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        # drain() then returns only when every byte is in the kernel: the latency clock
        # starts when the device has really sent the whole file.
        self.writer.transport.set_write_buffer_limits(0)

    async def push_one(self) -> float:
        """Send the next file and wait for its reply; return the reply latency in s."""
        self.sent += 1
        when = dt.datetime.fromtimestamp(self.first + 60 * self.sent, dt.timezone.utc)
        name = device_path(self.serial, when)
        data = self.pool[self.sent % len(self.pool)]
        self.writer.write(encode_message(self.sent, name, self.serial, data))
        await self.writer.drain()
        sent_at = time.perf_counter()
        reply = await self.reader.readexactly(4)
        latency = time.perf_counter() - sent_at
        if reply != self.sent.to_bytes(4, "little"):
            raise SystemExit(f"{self.serial}: file {self.sent} refused: {reply!r}")
        return latency

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def throughput(port: int, pool: list[bytes], devices_n: int, files: int,
                     phase: int) -> tuple[float, float]:
    devices = [Device(port, serial_of(i), pool, phase) for i in range(devices_n)]
    await asyncio.gather(*(d.connect() for d in devices))
    per_device = files // devices_n
    started = time.perf_counter()

    async def run(device: Device) -> None:
        for _ in range(per_device):
            await device.push_one()

    await asyncio.gather(*(run(d) for d in devices))
    elapsed = time.perf_counter() - started
    await asyncio.gather(*(d.close() for d in devices))
    done = per_device * devices_n
    return done / elapsed, done * len(pool[0]) / elapsed / 1e6


async def latency(port: int, pool: list[bytes], devices_n: int, seconds: float,
                  phase: int) -> list[float]:
    devices = [Device(port, serial_of(i), pool, phase) for i in range(devices_n)]
    await asyncio.gather(*(d.connect() for d in devices))
    samples: list[float] = []
    rng = random.Random(1)
    start = time.perf_counter() + 0.5

    async def run(device: Device) -> None:
        # One file a second, each device at its own phase: 50 files/s in all.
        next_at = start + rng.random()
        while next_at < start + seconds:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            samples.append(await device.push_one())
            next_at += 1.0

    await asyncio.gather(*(run(d) for d in devices))
    await asyncio.gather(*(d.close() for d in devices))
    return samples


async def idle_memory(port: int, receiver: Receiver, count: int) -> tuple[float, float]:
    before = receiver.rss_mb()
    conns = []
    for i in range(0, count, 100):
        conns += await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port)
                                        for _ in range(min(100, count - i))))
    await asyncio.sleep(1.0)
    with_idle = receiver.rss_mb()
    open_fds = receiver.ps.num_fds()
    for _, writer in conns:
        writer.close()
    if open_fds < count:
        raise SystemExit(f"only {open_fds} descriptors open in the receiver; raise ulimit -n")
    return before, with_idle


def _paced_device(port: int, pool: list[bytes], phase: int, stop, results) -> None:
    """In a process of its own: push a file a second until ``stop`` is set, then send
    ``(push started, reply latency)`` for each over ``results``."""
    async def pace() -> list[tuple[float, float]]:
        device = Device(port, serial_of(DEVICES - 1), pool, phase)
        await device.connect()
        samples = []
        while not stop.is_set():
            started = time.perf_counter()
            samples.append((started, await device.push_one()))
            await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - started)))
        await device.close()
        return samples

    results.send(asyncio.run(pace()))


async def hostile(port: int, receiver: Receiver, pool: list[bytes], connections: int,
                  amount: int, phase: int) -> tuple[float, float, list[float], list[float]]:
    """``connections`` senders announce 70 MB and send ``amount`` bytes of it, then stall
    (half with unknown serials); a device pushes a file a second meanwhile. Returns the
    peak RSS (MB), the RSS once all stalled, and the device's latencies while the senders
    send and once they all stalled.

    The device runs in a process of its own: in this one, the event loop writing the
    senders' 7 GB delayed its replies by up to a second (measured: a reply the receiver
    wrote 33 ms after the push was read here 169 ms after it), which is not the receiver's
    answer time."""
    size = MAX_DATA_LEN   # 75.7 MB announced, ``amount`` of it sent
    piece = b"\xa5" * (1 << 20)
    writers = []
    peak = receiver.rss_mb()
    done = asyncio.Event()

    async def sender(i: int) -> None:
        serial = serial_of(i // 2) if i % 2 else f"P39{i:05d}"
        path = f"/root/upmu_data/hostile/{i}.dat"
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writers.append(writer)
        empty = encode_message(1, path, serial, b"")
        writer.write(HEADER.pack(1, len(path), len(serial), size) + empty[HEADER.size:])
        for offset in range(0, amount, len(piece)):
            writer.write(piece[:min(len(piece), amount - offset)])
            await writer.drain()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, receiver.rss_mb())
            await asyncio.sleep(0.02)

    context = multiprocessing.get_context("fork")
    stop = context.Event()
    results, child_end = context.Pipe(duplex=False)
    device = context.Process(target=_paced_device, args=(port, pool, phase, stop, child_end))
    device.start()
    sampler = asyncio.create_task(sample())
    await asyncio.gather(*(sender(i) for i in range(connections)))
    flood_over = time.perf_counter()
    await asyncio.sleep(10.0)   # all stalled: the device keeps pushing
    stalled = receiver.rss_mb()
    done.set()
    stop.set()
    await sampler
    samples = await asyncio.to_thread(results.recv)
    device.join()
    for writer in writers:
        writer.close()
    during = [latency for started, latency in samples if started < flood_over]
    after = [latency for started, latency in samples if started >= flood_over]
    return max(peak, stalled), stalled, during, after


PHASES = ((1, 300), (10, 1000), (100, 2000))   # (devices, files per round)


def start_go(source: str | None, workdir: str) -> tuple[GoReceiver | None, str]:
    """The original Go receiver in its dry run, or None and why not (one line)."""
    if source is None:
        return None, "not compared (give --go-source PATH to receiver.go)"
    try:
        return GoReceiver(build_go(source, workdir), workdir), ""
    except GoUnavailable as exc:
        return None, f"not compared ({exc})"


def throughput_rounds(receivers: dict[str, Receiver | GoReceiver], pool: list[bytes],
                      scale: float, rounds: int) -> dict[str, dict[int, tuple[float, float]]]:
    """Each phase of :data:`PHASES`, ``rounds`` times, the receivers taking turns (the
    same client, one after the other, so that both see the same load); return per
    receiver and device count the median files/s and server CPU per file."""
    runs: dict[str, dict[int, list[tuple[float, float]]]] = {
        name: {n: [] for n, _ in PHASES} for name in receivers}
    for round_ in range(rounds):
        for i, (n, files) in enumerate(PHASES):
            for name, receiver in receivers.items():
                count = int(files * scale) // n * n
                cpu = receiver.cpu_s()
                rate, mbs = asyncio.run(throughput(receiver.port, pool, n, count,
                                                   round_ * len(PHASES) + i))
                per_file = (receiver.cpu_s() - cpu) / count
                runs[name][n].append((rate, per_file))
                print(f"round {round_ + 1} {name:>4}: {n:4d} devices: {rate:7.1f} files/s  "
                      f"{mbs:6.1f} MB/s  server CPU {per_file * 1e3:.2f} ms per file",
                      flush=True)
    return {name: {n: (statistics.median(r for r, _ in values),
                       statistics.median(c for _, c in values))
                   for n, values in by_n.items()}
            for name, by_n in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="directory for the queue (default: a new temporary one)")
    parser.add_argument("--quick", action="store_true", help="fewer files (a smoke run)")
    parser.add_argument("--rounds", type=int, default=3, metavar="N",
                        help="throughput rounds (medians are reported; default 3)")
    parser.add_argument("--go-source", metavar="PATH",
                        help="receiver.go of the original uPMU-daemon (or a checkout of it): "
                             "build it and compare its dry run side by side")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))   # inherited too

    workdir = args.dir or tempfile.mkdtemp(prefix="bench-receiver-")
    os.makedirs(workdir, exist_ok=True)
    write_upmus(os.path.join(workdir, "upmuconfig.ini"), [serial_of(i) for i in range(DEVICES)])
    pool = [data for _, data in UpmuSimulator("P3000000", extended=True).files(START, POOL)]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    sock.set_inheritable(True)
    port = sock.getsockname()[1]
    receiver = Receiver(workdir, sock)
    scale = 0.2 if args.quick else 1.0
    print(f"receiver pid {receiver.proc.pid}, queue {workdir}/queue.db, "
          f"{os.cpu_count()} CPUs, files of {len(pool[0]):,} bytes (extended); "
          f"load average {os.getloadavg()[0]:.1f}")
    summary: list[str] = []
    go, go_missing = start_go(args.go_source, workdir)
    try:
        rest = receiver.rss_mb()
        receivers: dict[str, Receiver | GoReceiver] = {"ours": receiver}
        if go is not None:
            receivers["Go"] = go
        print(f"\n== durable throughput, devices sending back to back ({args.rounds} rounds"
              + (", taking turns with the original Go receiver's dry run (-m NULL: "
                 "acknowledges, stores nothing)" if go else f"; Go receiver {go_missing}")
              + ")")
        try:
            figures = throughput_rounds(receivers, pool, scale, args.rounds)
        finally:
            if go is not None:
                go.stop()
        print("\n== reply latency at 50 files/s (50 devices, one file a second each)")
        samples = asyncio.run(latency(port, pool, 50, 20 * scale, 100))
        q = statistics.quantiles(samples, n=100)
        p50, p99 = q[49] * 1e3, q[98] * 1e3
        print(f"{len(samples)} files: p50 {p50:.1f} ms  p99 {p99:.1f} ms  "
              f"max {max(samples) * 1e3:.1f} ms")
        print("\n== receiver memory (RSS)")
        before, idle = asyncio.run(idle_memory(port, receiver, 1000))
        print(f"at start {rest:.1f} MB; after the runs {before:.1f} MB; with 1,000 idle "
              f"connections {idle:.1f} MB ({(idle - before) * 1e3 / 1000:.1f} KB each)")
        print("\n== hostile run: 100 connections send 70 MB each and stall, half with "
              "unknown serials; a device pushes a file a second")
        amount = int(70_000_000 * scale)
        hostile_peak, hostile_end, during, after = asyncio.run(
            hostile(port, receiver, pool, 100, amount, 101))
        print(f"{100 * amount / 1e9:.1f} GB sent; receiver RSS peak {hostile_peak:.1f} MB, "
              f"{hostile_end:.1f} MB once all stalled")
        for what, values in (("while they sent", during), ("once all stalled", after)):
            if values:
                print(f"the device's replies {what}: {len(values)} files, median "
                      f"{statistics.median(values) * 1e3:.1f} ms, max "
                      f"{max(values) * 1e3:.1f} ms")
        go_figures = figures.get("Go")

        def side_by_side(n: int) -> str:
            rate, cpu = figures["ours"][n]
            if go_figures is None:
                return f"{rate:.0f} files/s, {cpu * 1e3:.2f} ms CPU per file"
            go_rate, go_cpu = go_figures[n]
            return (f"{rate:.0f} vs {go_rate:.0f} files/s ({rate / go_rate:.2f}x), "
                    f"{cpu * 1e3:.2f} vs {go_cpu * 1e3:.2f} ms CPU per file")

        summary = [
            "",
            f"== summary: medians of {args.rounds} rounds; load average "
            f"{os.getloadavg()[0]:.1f} (a shared machine makes rates noisy; CPU per file is "
            f"steadier)",
            "ours storing durably" + (" vs the original Go receiver's dry run (storing "
                                      "nothing), taking turns" if go_figures else
                                      f"; original Go receiver {go_missing}"),
            *(f"{n:3d} device{'s' if n > 1 else ' '}: {side_by_side(n)}" for n, _ in PHASES),
            f"reply latency at 50 files/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms",
            f"RSS with 1,000 idle connections: {idle:.1f} MB",
            f"RSS at the end of the hostile run: {hostile_end:.1f} MB (peak "
            f"{hostile_peak:.1f} MB); a device's replies while they sent: median "
            f"{statistics.median(during or [0]) * 1e3:.0f} ms, max "
            f"{max(during, default=0) * 1e3:.0f} ms; once all stalled: median "
            f"{statistics.median(after or [0]) * 1e3:.0f} ms, max "
            f"{max(after, default=0) * 1e3:.0f} ms",
        ]
    finally:
        receiver.stop()
        sock.close()
        size = os.path.getsize(os.path.join(workdir, "queue.db"))
        data = os.path.join(workdir, "queue.db.data")   # the queue's data segments
        if os.path.isdir(data):
            size += sum(e.stat().st_size for e in os.scandir(data))
        print(f"\nqueue {size / 1e6:.0f} MB; receiver log {workdir}/receiver.log")
        if not args.dir:
            shutil.rmtree(workdir)
    print("\n".join(summary))


if __name__ == "__main__":
    main()
