"""``qss-receiver``: accepts uPMU pushes on TCP 1883 and queues them (architecture §1, §3).

The asyncio layer only moves bytes. Each connection feeds a sans-IO
:class:`qss.protocol.Connection`; each complete file goes to :class:`receiver.intake.Intake`
in a writer thread (several: the SQLite queue commits the files waiting together in one
transaction, MongoDB takes them in parallel), and the reply is written only when the intake returns, i.e. after the queue's commit.
While a connection's file is being stored its reading is paused (back-pressure: a device
sends the next file only after the reply anyway). Other connections keep being served
while a write is slow.

A connection is closed, without a reply and without disturbing the others, on a protocol
error (a header over a limit, bad UTF-8, ...), when it stalls mid-message for
``stall_timeout`` seconds (a device that sends nothing for 600 s times out itself, so the
default of 60 s frees resources long before), or when it idles between messages for
``idle_timeout`` seconds (dead peers; devices reconnect every 10 s anyway).

SIGTERM and SIGINT stop accepting, close idle and half-received connections (their
devices resend), finish the files being stored, send their replies, and exit 0.
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import errno
import logging
import signal
import socket
import sys
from collections.abc import Sequence

from qss.cli import CommandError, ExitStatus, add_traceback_argument, load_settings, run
from qss.queue import Queue, QueueError, open_queue
from qss.settings import add_settings_arguments

from .intake import DiskGuard, Intake, RefusalLog, UpmuDirectory
from qss.protocol import (FAILURE_REPLY, NEED_DATA, Connection, ConnectionClosed, FileMessage,
                       ProtocolError)

__all__ = ["DeviceConnection", "ReceiverServer", "entry", "main"]

log = logging.getLogger("receiver")

STALL_TIMEOUT = 60.0
IDLE_TIMEOUT = 900.0
# Files stored at once; each waiting one holds its buffer, already received anyway.
WRITERS = 8


class DeviceConnection(asyncio.Protocol):
    """One device's TCP connection: bytes to the protocol, files to the intake."""

    def __init__(self, server: ReceiverServer) -> None:
        self.server = server
        self.parser = Connection()
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.last_progress = 0.0
        self.storing = False
        self.closed = False
        self.files = 0

    # -- asyncio callbacks --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if peer else "?"
        self.port = peer[1] if peer else 0
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # The reply is 4 bytes the device waits for: never hold it back (Nagle).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.last_progress = self.server.loop.time()
        self.server.connections.add(self)
        log.info("uPMU %s: connected from port %s", self.peer, self.port)

    def data_received(self, data: bytes) -> None:
        self.parser.receive_data(data)
        self.last_progress = self.server.loop.time()
        self._advance()

    def eof_received(self) -> bool:
        self.parser.receive_data(b"")
        self._advance()
        return True   # keep the transport: a file being stored still gets its reply

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        log.info("uPMU %s: disconnected from port %s after %d files stored%s", self.peer,
                 self.port, self.files, f" ({exc})" if exc else "")

    # -- the work ---------------------------------------------------------------------

    def _advance(self) -> None:
        while not self.storing and not self.closed:
            event = self.parser.next_event()
            if event is NEED_DATA:
                return
            if isinstance(event, FileMessage):
                self._store(event)
            elif isinstance(event, ProtocolError):
                self.close(f"protocol error: {event.reason}", kind="protocol error")
            else:
                assert isinstance(event, ConnectionClosed)
                self.close(None)

    def _store(self, message: FileMessage) -> None:
        assert self.transport is not None
        self.storing = True
        self.transport.pause_reading()
        future = self.server.loop.run_in_executor(self.server.writers, self.server.intake.handle,
                                                  message, self.peer)
        self.server.storing.add(future)
        future.add_done_callback(self._stored)

    def _stored(self, future: asyncio.Future) -> None:
        self.server.storing.discard(future)
        self.storing = False
        try:
            reply = future.result()   # Intake.handle never raises for device or storage causes
        except Exception:   # noqa: BLE001 - a bug: refuse the file, keep serving the others
            log.exception("uPMU %s: handling a file failed", self.peer)
            reply = FAILURE_REPLY
        self.files += reply != FAILURE_REPLY
        if self.closed:
            return   # the device went away: it resends, and the queue knows the file
        assert self.transport is not None
        self.transport.write(reply)
        self.last_progress = self.server.loop.time()
        if self.server.stopping:
            self.close(None)
            return
        self.transport.resume_reading()
        self._advance()

    def close(self, reason: str | None, *, kind: str | None = None) -> None:
        """Close the connection (after any reply already written), logging ``reason``:
        as a warning rate-limited per device and ``kind`` when a kind is given (a device
        that keeps doing it reconnects every 10 s), else as information."""
        if self.closed:
            return
        self.closed = True
        if reason:
            line = f"uPMU {self.peer}:{self.port}: closed the connection: {reason}"
            if kind:
                self.server.intake.refusals.refuse((self.peer, kind), line)
            else:
                log.info("%s", line)
        if self.transport is not None:
            self.transport.close()

    def check_timeouts(self, now: float) -> None:
        """Close a connection stalled mid-message or idle for too long (called by the sweep)."""
        if self.storing or self.closed:
            return
        quiet = now - self.last_progress
        if self.parser.in_message and quiet >= self.server.stall_timeout:
            self.close(f"stalled mid-message for {quiet:.0f} s ({self.parser.progress}); the "
                       f"uPMU will resend the file", kind="stalled")
        elif not self.parser.in_message and quiet >= self.server.idle_timeout:
            self.close(f"idle for {quiet:.0f} s")


class ReceiverServer:
    """The listening service around an :class:`Intake`.

    ``writers`` threads run the intake: files waiting together are stored in one
    transaction by the SQLite queue (group commit), and MongoDB takes writes in parallel.
    Call :meth:`start`, then :meth:`stop` (or :meth:`serve` until a stop is requested).
    """

    def __init__(self, intake: Intake, *, stall_timeout: float = STALL_TIMEOUT,
                 idle_timeout: float = IDLE_TIMEOUT, writers: int = WRITERS) -> None:
        self.intake = intake
        self.stall_timeout = stall_timeout
        self.idle_timeout = idle_timeout
        self.writers = concurrent.futures.ThreadPoolExecutor(writers, "receiver-writer")
        self.connections: set[DeviceConnection] = set()
        self.storing: set[asyncio.Future] = set()
        self.stopping = False
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task | None = None
        self._stop_requested: asyncio.Event | None = None

    async def start(self, host: str = "0.0.0.0", port: int = 1883, *,
                    sock: socket.socket | None = None) -> tuple[str, int]:
        """Listen on host:port (port 0: any free port), or accept on ``sock``, a socket
        already listening; return the address.

        Raises:
            OSError: the address cannot be bound (in use, not local, no permission).
        """
        self.loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        if sock is not None:
            self._server = await self.loop.create_server(lambda: DeviceConnection(self),
                                                         sock=sock, backlog=1024)
        else:
            self._server = await self.loop.create_server(
                lambda: DeviceConnection(self), host, port, reuse_address=True, backlog=1024)
        self._sweeper = asyncio.create_task(self._sweep())
        address = self._server.sockets[0].getsockname()
        return address[0], address[1]

    async def _sweep(self) -> None:
        # One timer for all connections: cheaper than a timer reset on every read.
        interval = min(1.0, self.stall_timeout / 4, self.idle_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            now = self.loop.time()
            for conn in list(self.connections):
                conn.check_timeouts(now)

    def request_stop(self) -> None:
        """Ask :meth:`serve` to stop (signal handlers call this)."""
        if self._stop_requested is not None:
            self._stop_requested.set()

    async def serve(self) -> None:
        """Serve until :meth:`request_stop`, then :meth:`stop`."""
        assert self._stop_requested is not None
        await self._stop_requested.wait()
        await self.stop()

    async def stop(self) -> None:
        """Stop accepting, close connections, finish and answer the files being stored."""
        if self.stopping:
            return
        self.stopping = True
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self.connections):
            if not conn.storing:
                conn.close("the receiver is stopping" if conn.parser.in_message else None)
        if self.storing:
            log.info("finishing %d files being stored", len(self.storing))
            await asyncio.wait(list(self.storing))
        await asyncio.sleep(0)   # let the done callbacks write their replies
        for conn in list(self.connections):
            conn.close(None)
        if self._server is not None:
            await self._server.wait_closed()
        self.writers.shutdown(wait=True)


# -- the command ---------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qss-receiver",
        description="Accept files pushed by uPMUs (TCP, default port 1883) and queue them "
                    "for sync2q. Runs in the foreground and logs to stdout (supervisor "
                    "program 'receiver').")
    add_settings_arguments(parser, "listen", "queue", "upmuconfig", "srv", "max_disk_percent")
    group = parser.add_argument_group("connections")
    group.add_argument("--stall-timeout", type=float, default=STALL_TIMEOUT, metavar="S",
                       help=f"close a connection that sends nothing for S seconds in the "
                            f"middle of a file (default {STALL_TIMEOUT:g}; uPMUs give up "
                            f"after 600)")
    group.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT, metavar="S",
                       help=f"close a connection idle between files for S seconds (default "
                            f"{IDLE_TIMEOUT:g})")
    group.add_argument("--listen-fd", type=int, metavar="FD",
                       help="accept on the listening TCP socket inherited as file descriptor "
                            "FD instead of opening --listen (socket activation; lets tests "
                            "restart a receiver on the same port)")
    add_traceback_argument(parser)
    return parser


def main(argv: Sequence[str]) -> int:
    """Run the receiver until SIGTERM or SIGINT; return the exit status.

    Raises:
        CommandError: bad settings, an unusable queue, or an address that cannot be bound.
    """
    args = _parser().parse_args(argv)
    for flag in ("stall_timeout", "idle_timeout"):
        if not getattr(args, flag) > 0:
            raise CommandError(f"--{flag.replace('_', '-')} must be more than 0 seconds",
                               ExitStatus.USAGE)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    settings = load_settings(args)
    for warning in settings.warnings:
        log.warning("%s", warning)
    try:
        queue = open_queue(settings.queue.url)
    except QueueError as exc:
        raise CommandError(str(exc)) from None
    try:
        return asyncio.run(_serve(queue, settings, args))
    finally:
        queue.close()


async def _serve(queue: Queue, settings, args: argparse.Namespace) -> int:
    try:
        created = await asyncio.to_thread(queue.ensure_indexes)
    except QueueError as exc:
        log.warning("%s; will try to store files anyway", exc)
    else:
        for index in created:
            log.info("queue %s: created index %s", queue.url, index)
    # MongoDB keeps its data on the appliance's data drive: /ssd/srv by default.
    disk = DiskGuard(queue.storage_dir or settings.paths.srv, settings.receiver.max_disk_percent)
    upmus = await asyncio.to_thread(UpmuDirectory, settings.paths.upmuconfig)
    server = ReceiverServer(Intake(queue, upmus, disk, RefusalLog()),
                            stall_timeout=args.stall_timeout, idle_timeout=args.idle_timeout)
    listen = settings.receiver.listen
    try:
        if args.listen_fd is not None:
            sock = socket.socket(fileno=args.listen_fd)
            host, port = await server.start(sock=sock)
        else:
            host, port = await server.start(listen.host, listen.port)
    except OSError as exc:
        where = f"file descriptor {args.listen_fd}" if args.listen_fd is not None else listen
        hint = "; is another receiver running?" if exc.errno == errno.EADDRINUSE else ""
        raise CommandError(f"cannot listen on {where}: {exc.strerror or exc}{hint}") from None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.request_stop)
    log.info("Listening on %s:%d for uPMU pushes; queue %s; uPMU list %s; refusing files at "
             "%g%% disk use of %s", host, port, queue.url, settings.paths.upmuconfig,
             disk.limit, disk.path)
    await server.serve()
    log.info("receiver stopped")
    return int(ExitStatus.OK)


def entry() -> None:
    """Console script ``qss-receiver``."""
    sys.exit(run(main, prog="qss-receiver"))


if __name__ == "__main__":
    entry()
