"""The real ``qss-receiver`` process against hostile senders: memory bounded by
``--max-buffer-mb``, not by what senders send (issue 22), measured as the process's RSS.

A hostile sender announces a file of 70 MB, sends part of it and stalls; with an unknown
serial its contents must be dropped as they arrive, with a known one they must go to the
queue in pieces, and neither may reach the queue as a file.
"""
from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import threading
import time

import psutil

from qss.protocol import FAILURE_REPLY, HEADER, encode_message, encode_reply
from qss.queue import open_queue
from qss.queue.sqlite_segments import data_dir
from simulator.devices import device_files
from sim_upmu import serial_of, write_upmus
from receiver_support import Receiver


def part_bytes(db) -> tuple[int, int]:
    """(unfinished uploads' data files, their bytes) beside the queue file ``db``."""
    folder = data_dir(str(db))
    parts = [n for n in os.listdir(folder) if n.endswith(".part")] \
        if os.path.isdir(folder) else []
    return len(parts), sum(os.path.getsize(os.path.join(folder, n)) for n in parts)

MB = 1 << 20
HOSTILE_SIZE = 70_000_000
HOSTILE_PATH = "/root/upmu_data/2015/Month_12/Day_18/Hour_08/hostile.dat"


class PeakRss:
    """Samples a process's RSS every few milliseconds in a thread; ``peak`` in bytes."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.process.memory_info().rss)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.peak


def header_of(serial: str, size: int, send_id: int = 1, path: str = HOSTILE_PATH) -> bytes:
    """The start of a message announcing ``size`` bytes, up to its first data byte."""
    empty = encode_message(send_id, path, serial, b"")   # the header, padded path and serial
    return HEADER.pack(send_id, len(path), len(serial), size) + empty[HEADER.size:]


def send_and_stall(sock: socket.socket, serial: str, amount: int) -> None:
    """Announce a 70 MB file and send ``amount`` bytes of it (then nothing more)."""
    sock.sendall(header_of(serial, HOSTILE_SIZE))
    piece = b"\xa5" * MB
    for offset in range(0, amount, MB):
        sock.sendall(piece[:min(MB, amount - offset)])


def push_blocking(address, serial: str, files, timeout: float = 30) -> tuple[list[bytes], float]:
    """Push files over one connection as a device does; the replies and the slowest."""
    replies, slowest = [], 0.0
    with socket.create_connection(address, timeout=timeout) as sock:
        for send_id, (path, data) in enumerate(files, 1):
            sock.sendall(encode_message(send_id, path, serial, data))
            started = time.monotonic()
            reply = b""
            while len(reply) < 4:
                chunk = sock.recv(4 - len(reply))
                if not chunk:
                    break
                reply += chunk
            slowest = max(slowest, time.monotonic() - started)
            replies.append(reply)
    return replies, slowest


def start_receiver(tmp_path, listener, *extra: str) -> Receiver:
    receiver = Receiver(tmp_path, listener, "--max-buffer-mb", "64", *extra)
    assert receiver.ready.wait(30), receiver.log
    time.sleep(0.2)   # let start-up allocations settle before the baseline
    return receiver


def wait_for(condition, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_an_unknown_serial_is_refused_after_the_header_and_its_70_mb_dropped(tmp_path,
                                                                            listener):
    write_upmus(str(tmp_path / "upmuconfig.ini"), [serial_of(0)])
    receiver = start_receiver(tmp_path, listener)
    try:
        rest = psutil.Process(receiver.proc.pid).memory_info().rss
        rss = PeakRss(receiver.proc.pid)
        with socket.create_connection(listener.getsockname(), timeout=30) as sock:
            sock.sendall(header_of("P3999999", HOSTILE_SIZE))
            # Refused on the header alone, before a single byte of contents was sent.
            assert wait_for(lambda: "unknown serial 'P3999999'" in receiver.log), receiver.log
            piece = b"\x5a" * MB
            for offset in range(0, HOSTILE_SIZE, MB):
                sock.sendall(piece[:min(MB, HOSTILE_SIZE - offset)])
            reply = sock.recv(4)
            # The connection stays usable: a known device's file on it is stored.
            (path, data), = device_files(serial_of(0), 1)
            sock.sendall(encode_message(2, path, serial_of(0), data))
            second = sock.recv(4)
        peak = rss.stop()
    finally:
        receiver.stop()
    assert reply == FAILURE_REPLY and second == encode_reply(2)
    assert peak - rest < 24 * MB, f"RSS grew by {(peak - rest) / MB:.1f} MiB (at rest " \
                                  f"{rest / MB:.1f} MiB) for a dropped 70 MB file"
    with open_queue(f"sqlite:///{tmp_path}/queue.db") as queue:
        assert queue.serials() == [serial_of(0)]


def test_hostile_senders_stay_within_the_cap_and_a_device_is_served_meanwhile(tmp_path,
                                                                             listener):
    """20 connections each send 24 MB of a 70 MB file and stall, half of them with unknown
    serials, against a cap of 64 MiB (the issue's hostile run, scaled to a test machine)."""
    hostile_n, amount = 20, 24 * MB
    known = [serial_of(i) for i in range(hostile_n // 2)]
    normal = serial_of(99)
    write_upmus(str(tmp_path / "upmuconfig.ini"), [*known, normal])
    receiver = start_receiver(tmp_path, listener)
    sockets: list[socket.socket] = []
    try:
        rest = psutil.Process(receiver.proc.pid).memory_info().rss
        rss = PeakRss(receiver.proc.pid)
        senders = []
        for i in range(hostile_n):
            sock = socket.create_connection(listener.getsockname(), timeout=60)
            sockets.append(sock)
            serial = known[i // 2] if i % 2 else f"P39{i:05d}"
            senders.append(threading.Thread(target=send_and_stall, args=(sock, serial, amount),
                                            daemon=True))
        for sender in senders:
            sender.start()
        time.sleep(0.5)   # the flood is under way
        replies, slowest = push_blocking(listener.getsockname(), normal,
                                         device_files(normal, 3))
        for sender in senders:
            sender.join(120)
        assert not any(sender.is_alive() for sender in senders)
        stalled_peak = rss.peak
        # All sent, all stalled: the receiver still answers a device at once.
        later, later_slowest = push_blocking(listener.getsockname(), normal,
                                             device_files(normal, 2, start=1_500_000_000))
        for sock in sockets:
            sock.close()
        sockets = []
        db = tmp_path / "queue.db"

        assert wait_for(lambda: part_bytes(db) == (0, 0))
        peak = rss.stop()
    finally:
        for sock in sockets:
            sock.close()
        receiver.stop()
    assert replies == [encode_reply(i) for i in (1, 2, 3)]
    assert later == [encode_reply(1), encode_reply(2)]
    assert later_slowest < 2.0, f"a device waited {later_slowest:.2f} s for its reply"
    # The cap plus a fixed overhead (the read buffers of the connections, SQLite's cache),
    # far below the 480 MB the senders sent.
    assert peak - rest < 64 * MB + 32 * MB, (
        f"RSS grew by {(peak - rest) / MB:.0f} MiB (at rest {rest / MB:.0f} MiB; "
        f"{stalled_peak / MB:.0f} MiB when all had stalled)")
    with open_queue(f"sqlite:///{tmp_path}/queue.db") as queue:
        assert queue.serials() == [normal]     # nothing from the hostile connections
        assert len(list(queue.files(normal))) == 5
    with contextlib.closing(sqlite3.connect(db)) as check:
        assert check.execute("SELECT count(DISTINCT segment), count(*) FROM "
                             "received_files").fetchone() == (1, 5)
    assert len(os.listdir(data_dir(str(db)))) == 1   # the cut uploads' data files are gone
    print(f"receiver RSS at rest {rest / MB:.0f} MiB, peak {peak / MB:.0f} MiB; the device's "
          f"slowest reply {max(slowest, later_slowest) * 1e3:.0f} ms")


def test_a_restart_deletes_what_a_killed_receiver_left_half_received(tmp_path, listener):
    write_upmus(str(tmp_path / "upmuconfig.ini"), [serial_of(0)])
    db = tmp_path / "queue.db"

    def pieces() -> int:
        return part_bytes(db)[1] // MB

    receiver = start_receiver(tmp_path, listener)
    try:
        with socket.create_connection(listener.getsockname(), timeout=30) as sock:
            send_and_stall(sock, serial_of(0), 8 * MB)
            assert wait_for(lambda: pieces() >= 4)
            receiver.proc.kill()
            assert receiver.stop() == -9
    finally:
        receiver.stop()
    receiver = start_receiver(tmp_path, listener)
    try:
        assert wait_for(lambda: "deleted 1 files left half-received by the last run"
                        in receiver.log), receiver.log
        (path, data), = device_files(serial_of(0), 1)
        replies, _ = push_blocking(listener.getsockname(), serial_of(0), [(path, data)])
    finally:
        receiver.stop()
    assert replies == [encode_reply(1)] and part_bytes(db) == (0, 0)
    with open_queue(f"sqlite:///{db}") as queue:
        assert [f.name for f in queue.files(serial_of(0))] == [path]
