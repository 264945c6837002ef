"""Test-only helpers around the simulated uPMUs of :mod:`simulator.devices`: serial numbers,
a uPMU list, a queue and a uPMU list for a receiver (:func:`site`), an in-process receiver,
and a check for a connection closed unanswered.
The devices themselves (``device_files``, ``push``, :class:`simulator.devices.Device`) are
the library's, as ``qss-sim`` uses them.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator

from simulator import devices as simulator
from qss.queue import Queue, open_queue
from qss.upmuconfig import UpmuList
from receiver.intake import DiskGuard, Intake, RefusalLog, UpmuDirectory
from receiver.server import ReceiverServer

START = simulator.EXAMPLE_START     # 2015-12-18 08:14:57 UTC


def serial_of(i: int) -> str:
    return f"P30{i:05d}"


def write_upmus(path: str, serials: list[str]) -> None:
    """Add these serials to the uPMU list at ``path`` (aliases u0, u1, ...)."""
    with UpmuList.edit(path) as upmus:
        for serial in serials:
            n = len(upmus)
            upmus.add(f"10.0.{n // 250}.{n % 250 + 1}", serial, f"u{n}", extended=True)


@contextlib.contextmanager
def site(folder, count: int) -> Iterator[tuple[Queue, str]]:
    """(an SQLite queue in ``folder``, the path of a uPMU list there naming
    ``serial_of(0)`` to ``serial_of(count - 1)``); the queue is closed on exit."""
    upmuconfig = os.path.join(folder, "upmuconfig.ini")
    write_upmus(upmuconfig, [serial_of(i) for i in range(count)])
    queue = open_queue(f"sqlite:///{folder}/queue.db")
    try:
        yield queue, upmuconfig
    finally:
        queue.close()


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


async def closed_without_reply(reader: asyncio.StreamReader, timeout: float = 5.0) -> bool:
    """True when the server closes the connection without sending anything."""
    try:
        return await asyncio.wait_for(reader.read(4), timeout) == b""
    except ConnectionResetError:
        return True
