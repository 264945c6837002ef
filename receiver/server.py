"""``qss-receiver``: accepts uPMU pushes on TCP 1883 and queues them (architecture §1, §3).

The asyncio layer only moves bytes. Each connection feeds a sans-IO
:class:`qss.protocol.Connection`, which hands a file out in pieces: its header (the
intake admits or refuses the file there, before any contents arrive), its contents as
they arrive, its end. Memory is bounded by configuration, not by senders:

- a refused file's contents (unknown serial, full disk, ...) are dropped as they arrive
  and the failure reply goes out after its last byte. The connection stays open: the
  device gets the same answer as from the original receiver, its next file can still
  be taken, and closing would only make it reconnect and send the same bytes again.
- an admitted file's contents are gathered into pieces of up to ``PIECE`` bytes; a file
  that fits in one piece is stored with one queue put (the common case, group-committed
  with the others), a longer one goes to the queue piece by piece through an upload
  (SQLite writes each piece to disk; MongoDB keeps them until the commit);
- a file that will arrive in several pieces takes disk space before its commit, so the
  files of a serial arriving that way are limited in number and announced bytes, and so
  are all of them together (:class:`~receiver.limits.UploadLimits`); past a limit the
  file is refused at its header like an unknown serial's;
- the contents of refused and of long files ("bulk") share one rate
  (:class:`~receiver.limits.BulkRate`, 64 MiB/s): past it such a connection stops
  reading for its share of the time, so a flood cannot starve devices' files (one piece
  each, never counted) of the event loop, the queue or the disk;
- the bytes held across all connections (unparsed input, pieces, pieces being written)
  are counted; at ``max_buffer`` every connection stops reading and partial pieces are
  written out, until the total falls to three quarters of it (back-pressure: the kernel's
  socket buffers fill and the senders wait). A connection also stops reading when bytes
  arrive while its own piece or file is being written (at most one read is held then);
  a device sends its next file only after the reply anyway.

The queue work runs in writer threads (:mod:`receiver.committer`: for the SQLite queue
one thread commits every file waiting in one transaction; MongoDB takes them in
parallel), and the reply is written only when the file is durable. A connection cut
mid-file leaves nothing in the queue: its upload is aborted. Other connections keep
being served while a write is slow.

A connection is closed, without a reply and without disturbing the others, on a protocol
error (a header over a limit, bad UTF-8, ...), when it stalls mid-message for
``stall_timeout`` seconds (a device that sends nothing for 600 s times out itself, so the
default of 60 s frees resources long before), or when it idles between messages for
``idle_timeout`` seconds (dead peers; devices reconnect every 10 s anyway). Refusals and
closes go through the intake's :class:`~receiver.intake.RefusalLog`: each reason once a
minute per address, with the repeats counted when the minute ends.

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
from collections.abc import Callable, Sequence

from qss.cli import CommandError, ExitStatus, add_traceback_argument, load_settings, run
from qss.logtext import escape
from qss.protocol import (FAILURE_REPLY, NEED_DATA, Connection, ConnectionClosed, EndOfMessage,
                          FileData, FileHeader, ProtocolError)
from qss.queue import Queue, QueueError, Upload, open_queue
from qss.settings import add_settings_arguments
from qss.upmuconfig import Upmu

from .committer import Committer
from .intake import DiskGuard, Intake, RefusalLog, UpmuDirectory
from .limits import BulkRate, UploadLimits

__all__ = ["DeviceConnection", "ReceiverServer", "entry", "main"]

log = logging.getLogger("receiver")

STALL_TIMEOUT = 60.0
IDLE_TIMEOUT = 900.0
# Queue work at once; each job holds at most one piece.
WRITERS = 8
PIECE_WRITERS = 2
#: Contents gathered before they go to the queue: a whole file in one put for every file
#: a uPMU sends (378,720 or 551,520 bytes), and the SQLite queue's blob piece size.
PIECE = 1 << 20
MAX_BUFFER = 256 << 20


class _File:
    """The file a connection is receiving."""

    __slots__ = ("header", "upmu", "pieces", "piece_bytes", "upload", "failed", "reserved")

    def __init__(self, header: FileHeader, upmu: Upmu | None, reserved: bool) -> None:
        self.header = header
        self.upmu = upmu            # None: refused, contents dropped
        self.pieces: list[memoryview] = []
        self.piece_bytes = 0
        self.upload: Upload | None = None
        self.failed = upmu is None  # refused, or the queue failed part way: reply zeros
        self.reserved = reserved    # counted in the server's UploadLimits

    @property
    def bulk(self) -> bool:
        """Contents that count against the shared bulk rate (see :mod:`receiver.limits`)."""
        return self.failed or self.reserved

    def take_piece(self) -> bytes | memoryview:
        pieces = self.pieces
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        self.pieces = []
        self.piece_bytes = 0
        return data


class DeviceConnection(asyncio.Protocol):
    """One device's TCP connection: bytes to the protocol, pieces to the queue."""

    def __init__(self, server: ReceiverServer) -> None:
        self.server = server
        self.parser = Connection()
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.port = 0
        self.last_progress = 0.0
        self.busy = False          # a queue job of this connection is running
        self.closed = False
        self.reading = True
        self.throttled = False     # waiting for its share of the bulk rate
        self.files = 0
        self.file: _File | None = None
        self.writing = 0           # bytes of the piece being written
        self.kept = 0              # bytes an upload keeps in memory (holds_data)
        self.held = 0              # what this connection counts in server.held

    # -- asyncio callbacks --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = escape(str(peer[0])) if peer else "?"
        self.port = peer[1] if peer else 0
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # The reply is 4 bytes the device waits for: never hold it back (Nagle).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.last_progress = self.server.loop.time()
        self.server.connections.add(self)
        log.info("uPMU %s: connected from port %s", self.peer, self.port)
        if self.server.pressure:
            self._update_reading()

    def data_received(self, data: bytes) -> None:
        bulk = self.file is not None and self.file.bulk
        self.parser.receive_data(data)
        now = self.last_progress = self.server.loop.time()
        if self.busy:
            # Paused only now that bytes came while its file is stored: a device waits
            # for its reply before it sends more, so this is rare, where pausing and
            # resuming around every file cost two epoll_ctl calls each.
            self._update_reading()
        self._advance()
        if bulk or (self.file is not None and self.file.bulk):
            delay = self.server.bulk.charge(len(data), now)
            if delay > 0 and not self.closed:
                self.throttled = True
                self._update_reading()
                self.server.loop.call_later(delay, self._unthrottle)

    def _unthrottle(self) -> None:
        self.throttled = False
        self.last_progress = self.server.loop.time()   # the wait was not the sender's
        self._update_reading()

    def eof_received(self) -> bool:
        self.parser.receive_data(b"")
        self._advance()
        return True   # keep the transport: a file being stored still gets its reply

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        if not self.busy:
            self._drop_file()
        log.info("uPMU %s: disconnected from port %s after %d files stored%s", self.peer,
                 self.port, self.files, f" ({escape(str(exc))})" if exc else "")

    # -- the work ---------------------------------------------------------------------

    def _advance(self) -> None:
        parser = self.parser
        while not self.busy and not self.closed:
            event = parser.next_event()
            if event is NEED_DATA:
                break
            cls = type(event)
            if cls is FileData:
                file = self.file
                if file.failed:
                    continue            # refused: dropped as it arrives
                file.pieces.append(event.data)
                file.piece_bytes += len(event.data)
                if file.piece_bytes >= PIECE:
                    self._write_piece()
            elif cls is FileHeader:
                self.file = self._admit(event)
            elif cls is EndOfMessage:
                self._end_file()
            elif cls is ProtocolError:
                self.close(f"protocol error: {event.reason}", kind=event.kind)
            else:
                assert cls is ConnectionClosed
                self.close(None)
        self._account()

    def _admit(self, header: FileHeader) -> _File:
        intake = self.server.intake
        try:
            upmu = intake.admit(header, self.peer)
        except Exception:   # noqa: BLE001 - a bug (or an unreadable uPMU list): refuse
            log.exception("uPMU %s: checking a file failed", self.peer)
            upmu = None
        if upmu is None or header.data_len <= PIECE:
            return _File(header, upmu, False)
        # It will arrive in pieces and take disk space before its commit: within limits.
        why = self.server.uploads.reserve(upmu.serial, header.data_len)
        if why is not None:
            intake.refuse(header, self.peer, "uploads", why)
            return _File(header, None, False)
        return _File(header, upmu, True)

    def _release(self, file: _File) -> None:
        """The file is committed or forgotten: it no longer counts in the upload limits."""
        if file.reserved:
            file.reserved = False
            self.server.uploads.release(file.upmu.serial, file.header.data_len)

    def _job(self, work: Callable, *args, done: Callable, piece: bool = False) -> None:
        """Run ``work(*args)`` in a finisher thread (``piece``: one of the fewer threads
        that write pieces of long files), then ``done(result)`` here."""
        executor = self.server.piece_writers if piece else self.server.finishers
        self._wait(self.server.loop.run_in_executor(executor, work, *args), done)

    def _wait(self, future: asyncio.Future, done: Callable) -> None:
        """Read no further into the connection until the queue work behind ``future`` is
        done (bytes arriving meanwhile pause it: see :meth:`data_received`), then pass its
        result to ``done`` here and go on with the connection."""
        self.busy = True
        self.server.storing.add(future)

        def finished(future: asyncio.Future) -> None:
            self.server.storing.discard(future)
            self.busy = False
            try:
                result = future.result()
            except Exception:   # noqa: BLE001 - a bug: refuse the file, keep serving others
                log.exception("uPMU %s: storing a file failed", self.peer)
                result = FAILURE_REPLY
            done(result)
            if not self.closed and self.server.stopping and self.file is not None:
                self.close("the receiver is stopping")   # mid-file: the device resends
            if self.closed:
                self._drop_file()
            else:
                self._advance()          # may start the next job: then reading stays paused
                self._update_reading()
            self._account()

        future.add_done_callback(finished)

    def _write_piece(self) -> None:
        file = self.file
        piece = file.take_piece()
        self.writing = len(piece)
        intake, peer = self.server.intake, self.peer

        def work() -> bytes | None:
            if file.upload is None:
                opened = intake.open_upload(file.upmu, file.header, peer)
                if isinstance(opened, bytes):
                    return opened
                file.upload = opened
            return intake.write(file.upload, piece, file.header, peer)

        def done(failure: bytes | None) -> None:
            if file.upload is not None and file.upload.holds_data:
                self.kept += self.writing
            self.writing = 0
            if failure is not None:
                file.failed = True   # the rest is dropped; zeros at the end
                self._abort(file)

        self._job(work, done=done, piece=True)

    def _end_file(self) -> None:
        file = self.file
        self.file = None
        header = file.header
        if file.failed:
            self._release(file)
            self._reply(FAILURE_REPLY)
            return
        intake, peer = self.server.intake, self.peer
        if file.upload is None:
            # The pieces as received, unjoined: the queue writes them one after the other.
            pieces, self.writing = file.pieces, file.piece_bytes
            file.pieces, file.piece_bytes = [], 0
            future = self.server.committer.submit((file.upmu, header, pieces, peer))
        else:
            piece = file.take_piece() if file.pieces else None
            self.writing = len(piece) if piece is not None else 0

            def work() -> bytes:
                if piece is not None:
                    failure = intake.write(file.upload, piece, header, peer)
                    if failure is not None:
                        file.upload.abort()
                        return failure
                return intake.finish(file.upmu, header, file.upload, peer)

            future = self.server.loop.run_in_executor(self.server.finishers, work)

        def done(reply: bytes) -> None:
            self._release(file)
            self.writing = self.kept = 0
            self.files += reply != FAILURE_REPLY
            self._reply(reply)

        self._wait(future, done)

    def _reply(self, reply: bytes) -> None:
        if self.closed:
            return   # the device went away: it resends, and the queue knows the file
        assert self.transport is not None
        self.transport.write(reply)
        self.last_progress = self.server.loop.time()
        if self.server.stopping:
            self.close(None)

    def _abort(self, file: _File) -> None:
        """Forget an upload's pieces (in a writer thread: the queue may block). When the
        receiver is stopping, the next start does it: a stop must not wait for that."""
        upload, file.upload = file.upload, None
        self.kept = 0
        if upload is not None and not self.server.stopping:
            future = self.server.loop.run_in_executor(self.server.piece_writers, upload.abort)
            self.server.storing.add(future)
            future.add_done_callback(self.server.storing.discard)

    def _drop_file(self) -> None:
        """The connection is gone: nothing of the file being received is kept."""
        file, self.file = self.file, None
        if file is not None:
            file.pieces = []
            file.piece_bytes = 0
            self._abort(file)
            self._release(file)
        self._account()

    def _account(self) -> None:
        """Tell the server what this connection holds now (see the module docstring)."""
        file = self.file
        held = 0 if self.closed else self.parser.buffered_bytes
        held += self.writing + self.kept + (file.piece_bytes if file is not None else 0)
        if held != self.held:
            self.server.held += held - self.held
            self.held = held
            self.server.check_pressure()

    def _update_reading(self) -> None:
        want = not (self.busy or self.closed or self.server.pressure or self.throttled)
        if want != self.reading and self.transport is not None and not self.closed:
            self.reading = want
            if want:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    def relieve(self) -> None:
        """At the memory cap: stop reading, and send a partial piece to the queue."""
        self._update_reading()
        file = self.file
        if file is not None and file.pieces and not self.busy and not self.closed:
            self._write_piece()
            self._account()

    def close(self, reason: str | None, *, kind: str | None = None) -> None:
        """Close the connection (after any reply already written), logging ``reason``:
        through the refusal log under ``kind`` when a kind is given (a device that keeps
        doing it reconnects every 10 s), else as information."""
        if self.closed:
            return
        self.closed = True
        if reason:
            line = f"uPMU {self.peer}:{self.port}: closed the connection: {reason}"
            if kind:
                self.server.intake.refusals.refuse(self.peer, kind, line)
            else:
                log.info("%s", line)
        if self.transport is not None:
            self.transport.close()
        if not self.busy:
            self._drop_file()

    def check_timeouts(self, now: float) -> None:
        """Close a connection stalled mid-message or idle for too long (called by the sweep)."""
        if self.busy or self.closed or not self.reading:
            return
        quiet = now - self.last_progress
        if self.parser.in_message and quiet >= self.server.stall_timeout:
            self.close(f"stalled mid-message for {quiet:.0f} s ({self.parser.progress}); the "
                       f"uPMU will resend the file", kind="stalled")
        elif not self.parser.in_message and quiet >= self.server.idle_timeout:
            self.close(f"idle for {quiet:.0f} s")


class ReceiverServer:
    """The listening service around an :class:`Intake`.

    Whole files go to the queue through a :class:`~receiver.committer.Committer`: one
    thread storing every file waiting in one transaction for the SQLite queue (group
    commit), ``writers`` threads in parallel for MongoDB. ``bulk`` and ``uploads`` limit
    what refused and long files may take (:mod:`receiver.limits`; defaults when None).
    ``max_buffer`` bytes of contents at most are held across connections (see the module
    docstring). Call :meth:`start`, then :meth:`stop` (or :meth:`serve` until a stop is
    requested).
    """

    def __init__(self, intake: Intake, *, stall_timeout: float = STALL_TIMEOUT,
                 idle_timeout: float = IDLE_TIMEOUT, writers: int = WRITERS,
                 max_buffer: int = MAX_BUFFER, bulk: BulkRate | None = None,
                 uploads: UploadLimits | None = None) -> None:
        self.intake = intake
        self.bulk = bulk or BulkRate()
        self.uploads = uploads or UploadLimits()
        self.stall_timeout = stall_timeout
        self.idle_timeout = idle_timeout
        self.max_buffer = max_buffer
        self._committer_threads = writers
        self.committer: Committer | None = None   # started with the loop
        # Commits of files that came in pieces (rare from real devices).
        self.finishers = concurrent.futures.ThreadPoolExecutor(PIECE_WRITERS, "receiver-finish")
        # Pieces of long files (rare from real devices, the bulk of a flood) go through
        # threads of their own, so that files devices wait for never queue behind them.
        self.piece_writers = concurrent.futures.ThreadPoolExecutor(PIECE_WRITERS,
                                                                   "receiver-pieces")
        self.connections: set[DeviceConnection] = set()
        self.storing: set[asyncio.Future] = set()
        self.held = 0              # bytes held by all connections
        self.pressure = False      # at the cap: nobody reads
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
        batch = getattr(self.intake.queue, "group_commit", False)
        self.committer = Committer(self.intake.store_many, self.loop,
                                   threads=1 if batch else self._committer_threads, batch=batch)
        self._sweeper = asyncio.create_task(self._sweep())
        address = self._server.sockets[0].getsockname()
        return address[0], address[1]

    def check_pressure(self) -> None:
        """Pause every connection at the memory cap, resume them at three quarters."""
        if not self.pressure and self.held >= self.max_buffer:
            self.pressure = True
            for conn in list(self.connections):
                conn.relieve()
        elif self.pressure and self.held <= self.max_buffer * 3 // 4:
            self.pressure = False
            for conn in list(self.connections):
                conn._update_reading()

    async def _sweep(self) -> None:
        # One timer for all connections: cheaper than a timer reset on every read. It
        # also ends the refusal log's windows, so repeat counts come out on time.
        interval = min(1.0, self.stall_timeout / 4, self.idle_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            now = self.loop.time()
            for conn in list(self.connections):
                conn.check_timeouts(now)
            self.intake.refusals.flush()

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
            if not conn.busy:
                conn.close("the receiver is stopping" if conn.parser.in_message else None)
        while self.storing:   # a finished piece may start the file's commit: loop
            log.info("finishing %d files being stored", len(self.storing))
            await asyncio.wait(list(self.storing))
            await asyncio.sleep(0)   # let the done callbacks write their replies
        for conn in list(self.connections):
            conn.close(None)
        while self.storing:   # anything the last callbacks started
            await asyncio.wait(list(self.storing))
            await asyncio.sleep(0)
        if self._server is not None:
            await self._server.wait_closed()
        self.finishers.shutdown(wait=True)
        self.piece_writers.shutdown(wait=True)
        if self.committer is not None:
            self.committer.close()
        self.intake.refusals.flush(everything=True)


# -- the command ---------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qss-receiver",
        description="Accept files pushed by uPMUs (TCP, default port 1883) and queue them "
                    "for sync2q. Runs in the foreground and logs to stdout (supervisor "
                    "program 'receiver').")
    add_settings_arguments(parser, "listen", "queue", "upmuconfig", "srv", "max_disk_percent",
                           "max_buffer_mb")
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
    stale: list = []
    try:
        created = await asyncio.to_thread(queue.ensure_indexes)
        # Listed now, before any file is taken; deleted once listening (it can take a while).
        stale = await asyncio.to_thread(queue.unfinished_uploads)
    except QueueError as exc:
        log.warning("%s; will try to store files anyway", exc)
    else:
        for index in created:
            log.info("queue %s: created index %s", queue.url, index)
    # MongoDB keeps its data on the appliance's data drive: /ssd/srv by default.
    disk = DiskGuard(queue.storage_dir or settings.paths.srv, settings.receiver.max_disk_percent)
    upmus = await asyncio.to_thread(UpmuDirectory, settings.paths.upmuconfig)
    max_buffer = settings.receiver.max_buffer_mb << 20
    server = ReceiverServer(Intake(queue, upmus, disk, RefusalLog()),
                            stall_timeout=args.stall_timeout, idle_timeout=args.idle_timeout,
                            max_buffer=max_buffer)
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
             "%g%% disk use of %s; holding at most %d MiB of received data", host, port,
             queue.url, settings.paths.upmuconfig, disk.limit, disk.path,
             settings.receiver.max_buffer_mb)
    if stale:
        server.piece_writers.submit(_discard, queue, stale)
    await server.serve()
    log.info("receiver stopped")
    return int(ExitStatus.OK)


def _discard(queue: Queue, stale: list) -> None:
    try:
        queue.discard_uploads(stale)
    except QueueError as exc:
        log.warning("%s; the next start tries again", exc)
    else:
        log.info("queue %s: deleted %d files left half-received by the last run",
                 queue.url, len(stale))


def entry() -> None:
    """Console script ``qss-receiver``."""
    sys.exit(run(main, prog="qss-receiver"))


if __name__ == "__main__":
    entry()
