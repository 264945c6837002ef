"""Simulated uPMUs and receivers for the receiver's tests and benchmark.

A device pushes realistic files from :mod:`qss.generator` as the real transfer agent
does: one message at a time, a reply awaited for each, send_id counting from 1.
"""
from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable

from qss.generator import UpmuSimulator
from qss.naming import DEVICE_ROOT
from qss.queue import Queue
from qss.upmuconfig import UpmuList
from receiver.intake import DiskGuard, Intake, RefusalLog, UpmuDirectory
from receiver.protocol import encode_message
from receiver.server import ReceiverServer

START = 1450426497  # 2015-12-18 08:14:57 UTC


def serial_of(i: int) -> str:
    return f"P30{i:05d}"


def device_files(serial: str, count: int, *, extended: bool = True,
                 start: int = START) -> list[tuple[str, bytes]]:
    """``count`` consecutive files of a simulated uPMU: (device path, contents)."""
    sim = UpmuSimulator(serial, extended=extended)
    return [(f"{DEVICE_ROOT}/{rel}", data) for rel, data in sim.files(start, count)]


def write_upmus(path: str, serials: list[str]) -> None:
    """Add these serials to the uPMU list at ``path`` (aliases u0, u1, ...)."""
    with UpmuList.edit(path) as upmus:
        for serial in serials:
            n = len(upmus)
            upmus.add(f"10.0.{n // 250}.{n % 250 + 1}", serial, f"u{n}", extended=True)


@contextlib.asynccontextmanager
async def running(queue: Queue, upmuconfig: str, *, disk: Callable[[str], float] | None = None,
                  limit: float = 98.0, **server_options) -> AsyncIterator[ReceiverServer]:
    """A receiver on 127.0.0.1 (a free port: ``server.port``), stopped on exit."""
    usage = disk or (lambda path: 10.0)
    guard = DiskGuard(queue.storage_dir or "/", limit, usage=usage, interval=0)
    intake = Intake(queue, UpmuDirectory(upmuconfig), guard, RefusalLog())
    server = ReceiverServer(intake, **server_options)
    _, server.port = await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.stop()


async def push(port: int, serial: str, files: list[tuple[str, bytes]], *,
               first_id: int = 1) -> list[bytes]:
    """Push files over one connection, each after the previous reply; return the replies."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies = []
    try:
        for i, (path, data) in enumerate(files):
            writer.write(encode_message(first_id + i, path, serial, data))
            await writer.drain()
            replies.append(await reader.readexactly(4))
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return replies


async def closed_without_reply(reader: asyncio.StreamReader, timeout: float = 5.0) -> bool:
    """True when the server closes the connection without sending anything."""
    try:
        return await asyncio.wait_for(reader.read(4), timeout) == b""
    except ConnectionResetError:
        return True


class BlockingDevice:
    """A device with blocking sockets (for threads and subprocess tests): keeps pushing its
    files, reconnecting after errors, until every one was acknowledged."""

    def __init__(self, address: tuple[str, int], serial: str,
                 files: list[tuple[str, bytes]]) -> None:
        self.address = address
        self.serial = serial
        self.pending = list(files)
        self.acknowledged: list[str] = []
        self.send_id = 0
        self.failures = 0

    def run(self, deadline: float, retry_delay: float = 0.05) -> None:
        sock = None
        while self.pending and time.monotonic() < deadline:
            try:
                if sock is None:
                    sock = socket.create_connection(self.address, timeout=5)
                path, data = self.pending[0]
                self.send_id = self.send_id % 0xFFFF_FFFE + 1
                sock.sendall(encode_message(self.send_id, path, self.serial, data))
                reply = b""
                while len(reply) < 4:
                    chunk = sock.recv(4 - len(reply))
                    if not chunk:
                        raise ConnectionError("closed by the server")
                    reply += chunk
                if reply == self.send_id.to_bytes(4, "little"):
                    self.acknowledged.append(path)   # the device deletes the file now
                    self.pending.pop(0)
                else:
                    self.failures += 1
                    time.sleep(retry_delay)
            except OSError:
                self.failures += 1
                if sock is not None:
                    sock.close()
                sock = None
                time.sleep(retry_delay)
        if sock is not None:
            sock.close()
