"""Simulated uPMUs pushing realistic files to a receiver over the real push protocol.

How this works
--------------
A real uPMU's transfer agent (architecture §3) pushes its ``.dat`` files in name order, one
message at a time, and deletes a file only when the reply equals the message's send_id.
On a failure reply (four zero bytes) it keeps the file and tries again later; on a lost
connection it reconnects every few seconds and resends the unanswered file under a new
send_id; between files it sleeps about a second.

:class:`Device` is that agent's decisions as plain logic: no sockets, no clock. The
caller asks :meth:`Device.next_step` what to do at time ``now`` (a :class:`Connect`, a
:class:`Send`, a :class:`Wait` or :data:`FINISHED`) and reports what happened
(:meth:`Device.connected`, :meth:`Device.connect_failed`, :meth:`Device.replied`,
:meth:`Device.connection_lost`). Times are seconds on any monotonic clock the caller
chooses, so tests drive a device with plain numbers.

Which files exist when is a :class:`Plan`: ``backlog`` files are waiting when the device
starts (it was offline; it pushes them in name order, as fast as the server accepts
with ``gap`` seconds between files), then one live file every ``interval`` seconds,
each holding ``file_seconds`` of data that follows the previous file's. With
``interval == file_seconds`` (the default, 60 s) and a first file ``backlog`` files
before now, the data keeps pace with the clock, as on a real device; a shorter
``interval`` (or ``interval=None``, "fast": every file at once) replays data faster than
real time, so it runs ahead of the clock (sync2q rejects records dated more than a day
ahead). File contents come from :class:`qss.generator.UpmuSimulator` and are made only
when a file is sent, so a long backlog costs nothing until then.

:func:`run_device` and :func:`simulate` are the asyncio edge: they move bytes, read the
event loop's clock and sleep. :func:`push` and :func:`device_files` are small helpers for
tests and benchmarks that want to push given files over one connection.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import enum
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from qss import naming
from qss.generator import UpmuSimulator
from qss.protocol import FAILURE_REPLY, encode_message, encode_reply

__all__ = [
    "EXAMPLE_START", "FINISHED", "Connect", "Device", "DeviceStats", "Outcome", "Plan",
    "ReplyTimes", "Send", "SimFile", "Wait", "device_files", "next_send_id", "plan_from_now",
    "push", "run_device", "run_blocking", "serial_range", "simulate", "totals",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1883
#: Seconds of data per file on current firmware (older firmware: 120).
FILE_SECONDS = 60
#: The transfer agent's pause between two files (architecture §3: about 1 s).
GAP_SECONDS = 1.0
#: How long a device waits before resending a file the server refused.
RETRY_SECONDS = 5.0
#: How long a device waits before reconnecting (the real agent: every 10 s).
RECONNECT_SECONDS = 10.0
#: A socket silent this long is given up (the real agent: 600 s).
TIMEOUT_SECONDS = 600.0
#: The manual's example file starts here (2015-12-18 08:14:57 UTC): tests' default.
EXAMPLE_START = 1450426497
_SEND_ID_WRAP = 0xFFFF_FFFE     # send_id wraps back to 1 before 0xFFFFFFFF


def next_send_id(previous: int) -> int:
    """The send_id after ``previous`` (0 before the first message): 1, 2, ...,
    0xFFFFFFFE, then 1 again; never 0, which would read as a failure reply."""
    return previous % _SEND_ID_WRAP + 1


def serial_range(base: str, count: int) -> list[str]:
    """``count`` serials counting up from ``base``, keeping the width of its digits:
    ``serial_range("P3000001", 3) == ["P3000001", "P3000002", "P3000003"]``.

    Raises:
        ValueError: ``base`` does not end in digits, or counting overflows them.
    """
    digits = len(base) - len(base.rstrip("0123456789"))
    if digits == 0:
        raise ValueError(f"serial {base!r} does not end in digits (e.g. P3000001)")
    prefix, first = base[:-digits], int(base[-digits:])
    if len(str(first + count - 1)) > digits:
        raise ValueError(f"{count} serials from {base!r} overflow its {digits} digits")
    return [f"{prefix}{first + i:0{digits}d}" for i in range(count)]


# -- the plan: which files exist when ---------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """When a device's files exist and what data they hold.

    ``first`` is the epoch second of file 0's first sample; file ``k`` holds
    ``file_seconds`` from ``first + k * file_seconds``. Files ``0 .. backlog-1`` exist
    when the device starts; live file ``backlog + j`` exists ``(j + 1) * interval``
    seconds later (``interval=None``: every file at once). ``count`` ends the plan
    (None: files keep coming).
    """

    first: int
    file_seconds: int = FILE_SECONDS
    backlog: int = 0
    interval: float | None = FILE_SECONDS
    count: int | None = None

    def __post_init__(self) -> None:
        if self.file_seconds < 1:
            raise ValueError(f"file_seconds must be at least 1, not {self.file_seconds!r}")
        if self.interval is not None and self.interval <= 0:
            raise ValueError(f"interval must be more than 0, not {self.interval!r}")
        if self.backlog < 0 or (self.count is not None and self.count < 0):
            raise ValueError("backlog and count must not be negative")

    def start_of(self, k: int) -> int:
        """Epoch second of file ``k``'s first sample."""
        return self.first + k * self.file_seconds

    def due_after(self, k: int) -> float:
        """Seconds after the device's start when file ``k`` exists."""
        if k < self.backlog or self.interval is None:
            return 0.0
        return (k - self.backlog + 1) * self.interval

    def made_by(self, elapsed: float) -> int:
        """How many files exist ``elapsed`` seconds after the start."""
        if self.interval is None:
            made = self.count if self.count is not None else 1 << 62
        else:
            made = self.backlog + max(0, int(elapsed // self.interval + 1e-9))
        return made if self.count is None else min(made, self.count)


def plan_from_now(now_epoch: float, *, backlog_hours: float = 0.0,
                  file_seconds: int = FILE_SECONDS, interval: float | None = FILE_SECONDS,
                  count: int | None = None, first: int | None = None) -> Plan:
    """The plan of a device starting at ``now_epoch`` after ``backlog_hours`` offline:
    its backlog's files end at now (so with ``interval == file_seconds`` live files keep
    pace with the clock), unless ``first`` sets the first file's time."""
    backlog = round(backlog_hours * 3600 / file_seconds)
    if first is None:
        first = int(now_epoch) - backlog * file_seconds
    return Plan(first=first, file_seconds=file_seconds, backlog=backlog, interval=interval,
                count=count)


# -- the device's decisions ----------------------------------------------------------------

@dataclass(frozen=True)
class SimFile:
    """One file of a device: its index in the plan, device path and data start."""

    index: int
    path: str
    start: int


@dataclass(frozen=True)
class Connect:
    """Open a connection to the server now."""


@dataclass(frozen=True)
class Send:
    """Send ``file`` as message ``send_id``, then wait for the 4-byte reply."""

    file: SimFile
    send_id: int


@dataclass(frozen=True)
class Wait:
    """Nothing to do before ``until`` (None: until the run is stopped)."""

    until: float | None


class _Finished:
    def __repr__(self) -> str:
        return "FINISHED"


#: Every file of the plan was acknowledged: close the connection and stop.
FINISHED = _Finished()

Step = Connect | Send | Wait | _Finished


class Outcome(enum.Enum):
    """What a reply meant."""

    ACKNOWLEDGED = "acknowledged"   # the device deletes the file
    REFUSED = "refused"             # four zero bytes: keep the file, retry later
    BAD_REPLY = "bad reply"         # neither: the device drops the connection


class _State(enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTED = "connected"
    AWAITING_REPLY = "awaiting reply"


class ReplyTimes:
    """Reply latencies (message out to its reply), as a histogram of buckets 2^(1/8)
    wide (9 %) from 0.1 ms up, so that memory stays bounded however long a device runs.
    A quantile is its bucket's upper edge (at most 9 % high), never above the maximum."""

    _FLOOR = 1e-4               # seconds: bucket 0 holds every latency up to 0.1 ms
    _STEP = math.log(2) / 8

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        """Count one reply that took ``seconds``."""
        k = 0 if seconds <= self._FLOOR else math.ceil(math.log(seconds / self._FLOOR)
                                                       / self._STEP - 1e-9)
        self.buckets[k] = self.buckets.get(k, 0) + 1
        self.count += 1
        self.max = max(self.max, seconds)

    def merge(self, other: ReplyTimes) -> None:
        """Add ``other``'s replies to these."""
        for k, n in other.buckets.items():
            self.buckets[k] = self.buckets.get(k, 0) + n
        self.count += other.count
        self.max = max(self.max, other.max)

    def quantile(self, q: float) -> float | None:
        """The latency (seconds) that a fraction ``q`` of the replies did not exceed;
        None before the first reply."""
        if not self.count:
            return None
        rank, seen = max(1, math.ceil(q * self.count)), 0
        for k in sorted(self.buckets):
            seen += self.buckets[k]
            if seen >= rank:
                return min(self.max, self._FLOOR * math.exp(k * self._STEP))
        return self.max

    def as_dict(self) -> dict:
        """``count`` and ``p50``, ``p99``, ``max`` in milliseconds (None before a reply)."""
        def ms(s: float | None) -> float | None:
            return None if s is None else round(s * 1000, 3)
        return {"count": self.count, "p50": ms(self.quantile(0.5)),
                "p99": ms(self.quantile(0.99)), "max": ms(self.max if self.count else None)}


@dataclass
class DeviceStats:
    """A device's counters. ``made`` files exist on the device so far; ``sent``
    messages went out (resends included); each got one of ``acknowledged``,
    ``refused`` (failure reply), or was ``unanswered`` (connection lost first).
    ``reply_times``: how long the replies took."""

    serial: str
    made: int = 0
    sent: int = 0
    acknowledged: int = 0
    refused: int = 0
    unanswered: int = 0
    connects: int = 0
    connect_failures: int = 0
    reply_times: ReplyTimes = dataclasses.field(default_factory=ReplyTimes, compare=False,
                                                repr=False)

    @property
    def waiting(self) -> int:
        """Files on the device not acknowledged yet."""
        return self.made - self.acknowledged

    def as_dict(self) -> dict:
        """The counters, ``waiting`` and ``reply_ms`` (:meth:`ReplyTimes.as_dict`), for
        JSON."""
        counters = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                    if f.name != "reply_times"}
        return {**counters, "waiting": self.waiting, "reply_ms": self.reply_times.as_dict()}


class Device:
    """A simulated uPMU's transfer agent: which file next, when to retry, when to
    reconnect. No I/O; ``now`` is the caller's monotonic clock in seconds.

    The first call to :meth:`next_step` marks the device's start (the plan's time 0).
    ``sim`` makes the contents (:meth:`content`); by default a feeder's base data
    seeded 0.
    """

    def __init__(self, serial: str, plan: Plan, *, sim: UpmuSimulator | None = None,
                 gap: float = GAP_SECONDS, retry: float = RETRY_SECONDS,
                 reconnect: float = RECONNECT_SECONDS) -> None:
        self.serial = serial
        self.plan = plan
        self.sim = sim or UpmuSimulator(serial)
        self.gap, self.retry, self.reconnect = gap, retry, reconnect
        self.stats = DeviceStats(serial)
        #: Device paths of the acknowledged files, in order (the device deleted them).
        self.acknowledged: list[str] = []
        self._state = _State.DISCONNECTED
        self._started: float | None = None
        self._send_id = 0
        self._in_flight: Send | None = None
        self._sent_at = 0.0             # when the message in flight went out
        self._not_before = 0.0          # no connect or send before this time
        self._last_refused = False

    # What the caller asks.

    def file(self, index: int) -> SimFile:
        """File ``index`` of the plan."""
        start = self.plan.start_of(index)
        when = dt.datetime.fromtimestamp(start, dt.timezone.utc)
        return SimFile(index, naming.device_path(self.serial, when), start)

    def content(self, file: SimFile) -> bytes:
        """The bytes of ``file`` (deterministic: the same every time it is made)."""
        return self.sim.file_bytes(file.start, self.plan.file_seconds)

    @property
    def connected(self) -> bool:
        """Whether the device believes it has a connection."""
        return self._state is not _State.DISCONNECTED

    @property
    def refusing(self) -> bool:
        """Whether the last reply was a failure reply (the file is being retried)."""
        return self._last_refused

    @property
    def head(self) -> int:
        """Index of the oldest file not acknowledged (the next to send)."""
        return self.stats.acknowledged

    def finished(self) -> bool:
        """Every file of a finite plan was acknowledged."""
        return self.plan.count is not None and self.head >= self.plan.count

    def next_step(self, now: float) -> Step:
        """What to do at ``now``.

        Raises:
            RuntimeError: a message is awaiting its reply (report it first).
        """
        if self._state is _State.AWAITING_REPLY:
            raise RuntimeError(f"{self.serial}: message {self._send_id} awaits its reply")
        if self._started is None:
            self._started = now
        elapsed = now - self._started
        self.stats.made = max(self.stats.made, self.plan.made_by(elapsed))
        if self.finished():
            return FINISHED
        if self._state is _State.DISCONNECTED:
            return Connect() if now >= self._not_before else Wait(self._not_before)
        if self.stats.made <= self.head:            # nothing to send until the next file
            due = self._started + self.plan.due_after(self.head)
            return Wait(max(due, self._not_before))
        if now < self._not_before:
            return Wait(self._not_before)
        self._send_id = next_send_id(self._send_id)
        step = Send(self.file(self.head), self._send_id)
        self._in_flight = step
        self._sent_at = now
        self._state = _State.AWAITING_REPLY
        self.stats.sent += 1
        return step

    # What happened.

    def connected_at(self, now: float) -> None:
        """A connection is open."""
        self._state = _State.CONNECTED
        self.stats.connects += 1

    def connect_failed(self, now: float) -> None:
        """Connecting failed: try again after ``reconnect`` seconds."""
        self._state = _State.DISCONNECTED
        self.stats.connect_failures += 1
        self._not_before = now + self.reconnect

    def replied(self, reply: bytes, now: float, sent: float | None = None) -> Outcome:
        """The 4-byte reply to the message in flight arrived. ``sent``: when the
        message's first byte went out (default: when :meth:`next_step` returned it);
        the reply's latency is counted from there in ``stats.reply_times``.

        Raises:
            RuntimeError: no message is in flight.
        """
        if self._in_flight is None:
            raise RuntimeError(f"{self.serial}: a reply with no message in flight")
        send_id = self._in_flight.send_id
        self._in_flight = None
        self._state = _State.CONNECTED
        if reply in (encode_reply(send_id), FAILURE_REPLY):
            self.stats.reply_times.add(max(0.0, now - (self._sent_at if sent is None
                                                       else sent)))
        if reply == encode_reply(send_id):
            self.stats.acknowledged += 1
            self.acknowledged.append(self.file(self.head - 1).path)
            self._not_before = now + self.gap
            self._last_refused = False
            return Outcome.ACKNOWLEDGED
        if reply == FAILURE_REPLY:
            self.stats.refused += 1
            self._not_before = now + self.retry
            self._last_refused = True
            return Outcome.REFUSED
        # Someone else's send_id: the stream is out of step; start again on a new one.
        self.connection_lost(now)
        return Outcome.BAD_REPLY

    def connection_lost(self, now: float) -> None:
        """The connection closed or failed; a message in flight went unanswered (the
        file is still on the device). Reconnect after ``reconnect`` seconds."""
        if self._in_flight is not None:
            self.stats.unanswered += 1
            self._in_flight = None
        if self._state is not _State.DISCONNECTED:
            self._not_before = now + self.reconnect
        self._state = _State.DISCONNECTED


# -- the asyncio edge ---------------------------------------------------------------------

Notify = Callable[[str, str], None]     # (serial, one-line event)


async def run_device(device: Device, host: str, port: int, stop: asyncio.Event, *,
                     timeout: float = TIMEOUT_SECONDS, grace: float = 5.0,
                     notify: Notify | None = None) -> None:
    """Run ``device`` against the receiver at ``host:port`` until it finishes or
    ``stop`` is set. A reply in flight when ``stop`` is set is awaited up to ``grace``
    seconds. ``notify(serial, line)`` hears of state changes (connected, refused, lost),
    not of every file."""
    loop = asyncio.get_running_loop()
    say = notify or (lambda serial, line: None)
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    cache: tuple[int, bytes] | None = None      # the head file's contents, until acked
    where = f"{host}:{port}"
    down_reason = ""                            # last reported failure, said once
    try:
        while not stop.is_set():
            step = device.next_step(loop.time())
            if step is FINISHED:
                return
            if isinstance(step, Wait):
                delay = None if step.until is None else max(0.0, step.until - loop.time())
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                continue
            if isinstance(step, Connect):
                try:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(host, port), timeout)
                except (OSError, asyncio.TimeoutError) as exc:
                    device.connect_failed(loop.time())
                    reason = _reason(exc)
                    if reason != down_reason:
                        say(device.serial, f"cannot connect to {where} ({reason}); trying "
                                           f"again every {device.reconnect:g} s")
                        down_reason = reason
                    continue
                device.connected_at(loop.time())
                if down_reason or device.stats.connects > 1:
                    say(device.serial, f"connected to {where}")
                down_reason = ""
                continue
            assert isinstance(step, Send) and writer is not None and reader is not None
            if cache is None or cache[0] != step.file.index:
                cache = (step.file.index,
                         await asyncio.to_thread(device.content, step.file))
            try:
                sent = loop.time()
                writer.write(encode_message(step.send_id, step.file.path, device.serial,
                                            cache[1]))
                reply = await _reply(writer, reader, stop, timeout, grace)
            except (OSError, EOFError, asyncio.TimeoutError) as exc:
                device.connection_lost(loop.time())
                _close(writer)
                writer = reader = None
                reason = _reason(exc)
                say(device.serial, f"connection to {where} lost ({reason}); {step.file.path} "
                                   f"kept, reconnecting in {device.reconnect:g} s")
                down_reason = reason
                continue
            was_refused = device.refusing
            outcome = device.replied(reply, loop.time(), sent)
            if outcome is Outcome.ACKNOWLEDGED:
                cache = None
            elif outcome is Outcome.REFUSED and not was_refused:
                say(device.serial, f"{step.file.path} refused by {where}; kept, trying again "
                                   f"every {device.retry:g} s")
            elif outcome is Outcome.BAD_REPLY:
                _close(writer)
                writer = reader = None
                say(device.serial, f"reply {reply!r} to message {step.send_id} from {where}; "
                                   f"reconnecting")
    finally:
        if writer is not None:
            _close(writer)
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _reply(writer: asyncio.StreamWriter, reader: asyncio.StreamReader,
                 stop: asyncio.Event, timeout: float, grace: float) -> bytes:
    """The 4-byte reply; after ``stop`` at most ``grace`` more seconds.

    Raises:
        OSError, EOFError: the connection failed or closed.
        asyncio.TimeoutError: no reply in time.
    """
    async def exchange() -> bytes:
        await writer.drain()
        try:
            return await reader.readexactly(4)
        except asyncio.IncompleteReadError:
            raise EOFError("closed by the server") from None

    task = asyncio.ensure_future(asyncio.wait_for(exchange(), timeout))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            await asyncio.wait({task}, timeout=grace)
        if not task.done():
            task.cancel()
            raise EOFError("stopped before the reply")
        return task.result()
    finally:
        stopper.cancel()
        if not task.done():
            task.cancel()


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)        # asyncio's "Connect call failed (...)" says less
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


async def simulate(devices: Iterable[Device], host: str, port: int, stop: asyncio.Event,
                   *, timeout: float = TIMEOUT_SECONDS, notify: Notify | None = None) -> None:
    """Run every device at once until each finished or ``stop`` is set."""
    await asyncio.gather(*(run_device(d, host, port, stop, timeout=timeout, notify=notify)
                           for d in devices))


def run_blocking(devices: list[Device], host: str, port: int,
                  deadline_seconds: float) -> None:
    """Blocking: :func:`simulate` for at most ``deadline_seconds`` (for threads in tests
    and benchmarks)."""
    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(deadline_seconds, stop.set)
        await simulate(devices, host, port, stop)
    asyncio.run(main())


# -- helpers for tests and benchmarks ----------------------------------------------------

def device_files(serial: str, count: int, *, extended: bool = True,
                 start: int = EXAMPLE_START, seed: int = 0) -> list[tuple[str, bytes]]:
    """``count`` consecutive 60-second files of a simulated uPMU from epoch second
    ``start``: (device path, contents), in name order."""
    sim = UpmuSimulator(serial, seed=seed, extended=extended)
    return [(f"{naming.DEVICE_ROOT}/{rel}", data) for rel, data in sim.files(start, count)]


async def push(port: int, serial: str, files: list[tuple[str, bytes]], *,
               host: str = DEFAULT_HOST, first_id: int = 1) -> list[bytes]:
    """Push ``files`` over one connection, each after the previous reply (as a device
    does, but without retrying anything); return the replies."""
    reader, writer = await asyncio.open_connection(host, port)
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


def totals(devices: Iterable[Device]) -> dict:
    """Every counter of :class:`DeviceStats` (and ``waiting``) summed over ``devices``,
    and ``reply_ms`` over all their replies."""
    out: dict = {}
    replies = ReplyTimes()
    for d in devices:
        for key, value in d.stats.as_dict().items():
            if key not in ("serial", "reply_ms"):
                out[key] = out.get(key, 0) + value
        replies.merge(d.stats.reply_times)
    out["reply_ms"] = replies.as_dict()
    return out
