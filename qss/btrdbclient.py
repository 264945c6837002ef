"""Talking to BTrDB through the official client: connecting, deadlines, what an error means,
and waiting out an outage.

- :class:`Btrdb` opens ``btrdb.BTrDB`` on the first endpoint that answers, trying each of
  ``[btrdb] endpoints`` in turn (btrdb 5.34 takes one ``host:port``), and reopens it on the
  next one after a failure. Every RPC gets a deadline, added by a channel interceptor:
  the client sets none, and a server that stops answering (SIGSTOP, a hung disk) would
  otherwise hold an insert forever.
- :func:`classify` sorts an exception from the client into what sync2q does about it:
  wait and retry (BTrDB down or failing), re-create streams (404), or refuse the data.
- :class:`Backoff` gives capped exponential delays with jitter; :class:`Outage` writes one
  log line when BTrDB goes down and one when it is back, not one per attempt;
  :class:`BtrdbOutage` words it as waiting (``waiting for BTrDB at 127.0.0.1:4410
  (connection refused); retrying``), again once a minute while it lasts: after
  ``supervisorctl start all`` sync2q may start before btrdb listens, and says so once.
- :func:`describe_error` makes a client error one short reason: the client quotes the
  whole gRPC error, debug string included, in its own.
- :func:`arrow_insert` inserts (times, values) in Arrow RPCs of a size the caller picks,
  through the official client's ``Endpoint.arrowInsertValues`` (what
  ``Stream.arrow_insert`` calls). ``Stream.arrow_insert`` itself cuts tables at
  ``btrdb.stream.INSERT_BATCH_SIZE`` (50,000), a module global with no per-call
  override: raising it would change the client for every other user in the process.
"""
from __future__ import annotations

import collections
import enum
import logging
import random
import threading
import time
import functools
import warnings
from collections.abc import Callable, Sequence

import grpc

log = logging.getLogger(__name__)

#: Seconds an RPC may take before it counts as failed (and is retried: inserts are
#: REPLACE, so an insert that did land meanwhile is harmless to repeat).
RPC_DEADLINE = 60.0


class ErrorKind(enum.Enum):
    """What to do about a failed BTrDB call."""

    UNAVAILABLE = "unavailable"      #: down, unreachable, failing: back off and retry
    STREAM_MISSING = "missing"       #: 404: the streams must be created (again)
    REFUSED = "refused"              #: the server refuses this data or metadata for good


def classify(exc: BaseException) -> ErrorKind:
    """What a failure of the official client means for sync2q.

    Value errors (BadValue, InvalidTimeRange, InvalidCollection, AmbiguousStream, ...)
    are about the request and do not go away by retrying; 404 means the stream is gone
    (a wiped database); everything else (gRPC errors, server errors such as a full disk,
    connection failures, unknown codes) is treated as BTrDB being unavailable, so files
    wait in the queue rather than being given up on.
    """
    from btrdb import exceptions as bx
    if isinstance(exc, bx.StreamNotFoundError):
        return ErrorKind.STREAM_MISSING
    if isinstance(exc, (bx.BTRDBValueError, bx.InvalidOperation)) and not isinstance(
            exc, bx.PermissionDenied):
        return ErrorKind.REFUSED
    return ErrorKind.UNAVAILABLE


def rpc_error(exc: BaseException) -> BaseException:
    """The gRPC error under a client error (``BTrDBError("Could not connect to the
    database, error message: <_InactiveRpcError ...>")`` raised while handling it), else
    ``exc`` itself."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, grpc.RpcError) and hasattr(seen, "code"):
            return seen
        seen = seen.__cause__ or seen.__context__
    return exc


def describe_error(exc: BaseException) -> str:
    """A short one-line reason for a log message: ``connection refused`` for a server
    that does not listen (gRPC UNAVAILABLE says which address it tried; the message
    names the endpoint anyway), ``no answer within the deadline``, else the gRPC code and
    its details, or the exception."""
    exc = rpc_error(exc)
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        try:
            code, details = exc.code(), " ".join(str(exc.details() or "").split())
        except Exception:  # noqa: BLE001 - a half-formed RpcError still needs a message
            pass
        else:
            if code is grpc.StatusCode.DEADLINE_EXCEEDED:
                return "no answer within the deadline"
            last = details.rsplit(": ", 1)[-1]
            if code is grpc.StatusCode.UNAVAILABLE and last:
                return last[0].lower() + last[1:]      # "Connection refused"
            return f"gRPC {code.name}: {details}"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


class Backoff:
    """Capped exponential delays with jitter: ``first``, 2x, 4x ... up to ``cap`` seconds,
    each drawn uniformly from its upper half, so many waiters do not retry in step and
    no delay is ever near zero (no busy loop)."""

    def __init__(self, first: float = 0.5, cap: float = 30.0,
                 rng: Callable[[], float] = random.random) -> None:
        self.first, self.cap, self._rng = first, cap, rng
        self.failures = 0

    def next(self) -> float:
        """The delay before the next attempt; each call counts one more failure."""
        ceiling = min(self.cap, self.first * 2 ** min(self.failures, 30))
        self.failures += 1
        return ceiling * (0.5 + 0.5 * self._rng())

    def reset(self) -> None:
        self.failures = 0


class Outage:
    """Log lines for a dependency going down and coming back, once each.

    With ``repeat`` (seconds), a line says so again every ``repeat`` seconds while the
    outage lasts (never more often, however often it is retried).

    Thread-safe: several threads may report the same outage; it is logged as one.
    """

    def __init__(self, what: str, clock: Callable[[], float] = time.monotonic, *,
                 repeat: float | None = None) -> None:
        self.what = what
        self.repeat = repeat
        self._clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None
        self._attempts = 0
        self._said = 0.0                    # when this outage's last line was logged

    @property
    def down(self) -> bool:
        return self._since is not None

    def down_line(self, reason: str, consequence: str, down_for: float | None) -> str:
        """The log line for going down (``down_for`` None) or still being down."""
        if down_for is None:
            return f"{self.what}: unavailable ({reason}); {consequence}"
        return (f"{self.what}: still unavailable after {_duration(down_for)} ({reason}); "
                f"{consequence}")

    def failed(self, reason: str, consequence: str) -> None:
        """Report a failed attempt; the first one of an outage is logged (and, with
        ``repeat``, one again after that many seconds)."""
        with self._lock:
            now = self._clock()
            self._attempts += 1
            if self._since is None:
                self._since = self._said = now
                line = self.down_line(reason, consequence, None)
            elif self.repeat is not None and now - self._said >= self.repeat:
                self._said = now
                line = self.down_line(reason, consequence, now - self._since)
            else:
                log.debug("%s: still failing (%s)", self.what, reason)
                return
        log.warning("%s", line)

    def succeeded(self) -> None:
        """Report a success; ends an outage with one line."""
        if self._since is None:     # the common case, without the lock
            return
        with self._lock:
            if self._since is None:
                return
            took, attempts = self._clock() - self._since, self._attempts
            self._since, self._attempts = None, 0
        log.info("%s: available again after %.1f s (%d failed attempts); resuming",
                 self.what, took, attempts)


class BtrdbOutage(Outage):
    """BTrDB's outages as sync2q logs them: ``waiting for BTrDB at 127.0.0.1:4410
    (connection refused); retrying``, and again once a minute while it lasts."""

    def __init__(self, endpoints: Sequence[str], clock: Callable[[], float] = time.monotonic,
                 repeat: float = 60.0) -> None:
        super().__init__(f"BTrDB at {','.join(endpoints)}", clock, repeat=repeat)

    def down_line(self, reason: str, consequence: str, down_for: float | None) -> str:
        if down_for is None:
            return f"waiting for {self.what} ({reason}); {consequence}"
        return (f"still waiting for {self.what} after {_duration(down_for)} ({reason}); "
                f"{consequence}")


def _duration(seconds: float) -> str:
    """``45 s``, ``2 min``, ``1 h 5 min``: how long an outage has lasted."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


# -- the connection -------------------------------------------------------------------

class _CallDetails(collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready",
                         "compression")), grpc.ClientCallDetails):
    pass


class _Deadline(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Give every call without a timeout ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def _details(self, d: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        if d.timeout is not None:
            return d
        return _CallDetails(d.method, self.seconds, d.metadata, d.credentials,
                            getattr(d, "wait_for_ready", None), getattr(d, "compression", None))

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)


def connect(endpoint: str, apikey: str | None = None, deadline: float = RPC_DEADLINE):
    """A ``btrdb.BTrDB`` on ``host:port`` (TLS on port 4411, as the client decides), its
    channel wrapped so that every RPC has a deadline.

    Raises:
        btrdb.exceptions.BTrDBError: the server did not answer ``Info``.
    """
    from btrdb.conn import BTrDB, Connection
    from btrdb.endpoint import Endpoint
    with warnings.catch_warnings():
        # "This API is deprecated in favor of the pingthings_api": it is what
        # btrdb.connect() itself uses in 5.34.
        warnings.simplefilter("ignore", FutureWarning)
        channel = Connection(endpoint, apikey=apikey).channel
    wrapped = grpc.intercept_channel(channel, _Deadline(deadline))
    try:
        db = BTrDB(Endpoint(wrapped))
    except BaseException:
        channel.close()
        raise
    db._qss_channel = channel   # closed by Btrdb.close (the client never closes it)
    return db


class Btrdb:
    """The BTrDB connection shared by sync2q's threads.

    :meth:`get` returns the open ``btrdb.BTrDB``, opening one on the first endpoint that
    answers; :meth:`reset` (after a failure) drops it, so the next :meth:`get` starts over
    with the next endpoint. ``arrow`` tells whether the server offers the Arrow RPCs
    (v5.30 or later); ``arrow=False`` in the constructor forces the RawPoint path.
    """

    def __init__(self, endpoints: Sequence[str], apikey: str | None = None, *,
                 arrow: bool | None = None, deadline: float = RPC_DEADLINE,
                 opener: Callable[..., object] = connect) -> None:
        if not endpoints:
            raise ValueError("no BTrDB endpoint")
        self.endpoints = list(endpoints)
        self._apikey = apikey
        self._force_arrow = arrow
        self._deadline = deadline
        self._opener = opener
        self._lock = threading.Lock()
        self._db = None
        self._next = 0
        self.endpoint = self.endpoints[0]
        self.generation = 0    # bumped on every (re)connect: stream caches key on it

    @property
    def what(self) -> str:
        """``BTrDB 127.0.0.1:4410``, for messages."""
        return f"BTrDB {','.join(self.endpoints)}"

    def get(self):
        """The open connection.

        Raises:
            btrdb.exceptions.BTrDBError: no endpoint answered (the last one's error).
        """
        with self._lock:
            if self._db is not None:
                return self._db
            error: BaseException | None = None
            for i in range(len(self.endpoints)):
                endpoint = self.endpoints[(self._next + i) % len(self.endpoints)]
                try:
                    db = self._opener(endpoint, self._apikey, self._deadline)
                except Exception as exc:  # noqa: BLE001 - try the next endpoint
                    error = exc
                    continue
                if self._force_arrow is not None:
                    db._ARROW_ENABLED = bool(self._force_arrow) and db._ARROW_ENABLED
                self._db, self.endpoint = db, endpoint
                self._next = (self._next + i) % len(self.endpoints)
                self.generation += 1
                log.info("BTrDB %s: connected (%s inserts)", endpoint,
                         "Arrow" if db._ARROW_ENABLED else "RawPoint")
                return db
            assert error is not None
            raise error

    @property
    def current(self):
        """The open connection, or None (for :meth:`reset`)."""
        return self._db

    @property
    def arrow(self) -> bool:
        db = self._db
        return bool(db is not None and db._ARROW_ENABLED)

    def reset(self, failed_db=None) -> None:
        """Drop the connection after a failure (only if it is still ``failed_db``, when
        given), moving on to the next endpoint."""
        with self._lock:
            if self._db is None or (failed_db is not None and self._db is not failed_db):
                return
            db, self._db = self._db, None
            self._next = (self._next + 1) % len(self.endpoints)
        _close(db)

    def close(self) -> None:
        with self._lock:
            db, self._db = self._db, None
        if db is not None:
            _close(db)


def _close(db) -> None:
    channel = getattr(db, "_qss_channel", None)
    if channel is not None:
        channel.close()
    executor = getattr(db, "_executor", None)
    if executor is not None:
        executor.shutdown(wait=False)


# -- Arrow inserts ---------------------------------------------------------------------

@functools.cache
def _schema():
    import pyarrow as pa
    # The schema the client casts to (btrdb.stream.Stream.arrow_insert): a table built in
    # it makes the client's cast a no-op.
    return pa.schema([pa.field("time", pa.timestamp("ns", tz="UTC"), nullable=False),
                      pa.field("value", pa.float64(), nullable=False)])


def arrow_table(t, v):
    """(int64 ns times, float64 values), numpy arrays, as the Arrow table
    ``Stream.arrow_insert`` takes (no copy of the arrays).

    The columns are made from the arrays' buffers: ``pa.array(t, timestamp(tz="UTC"))``
    loads Arrow's time-zone database on its first call in a process, 0.3-0.4 s of CPU
    under the GIL that held up a drain's first inserts (py-spy)."""
    import numpy as np
    import pyarrow as pa
    schema = _schema()
    # same_kind: int32 times widen, but float times raise instead of being truncated.
    t = np.ascontiguousarray(np.asarray(t).astype(np.int64, casting="same_kind", copy=False))
    v = np.ascontiguousarray(v, dtype=np.float64)
    if len(t) != len(v):
        raise ValueError(f"{len(t)} times but {len(v)} values")
    return pa.Table.from_arrays(
        [pa.Array.from_buffers(field.type, len(a), [None, pa.py_buffer(a)])
         for field, a in zip(schema, (t, v))], schema=schema)


def arrow_insert(stream, t, v, merge: str, points: int) -> int:
    """Insert (times, values) into ``stream`` (a ``btrdb.stream.Stream``) in Arrow RPCs of
    up to ``points`` points, through the official client's endpoint (its error handling
    included); returns the stream's version after the last. ``merge`` is the client's
    merge policy (``"replace"``: inserting the same points again rewrites them)."""
    ep = stream.btrdb.ep
    table = arrow_table(t, v)
    version = 0
    for lo in range(0, max(len(t), 1), points):
        version = ep.arrowInsertValues(uu=stream.uuid, values=table.slice(lo, points),
                                       policy=merge)
    return version
