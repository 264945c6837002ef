"""The engine: keeps every instance's outputs equal to a computation from scratch.

For each instance, a **pass** asks BTrDB which ranges of each input changed since the
versions it consumed (``Changes``), widens them by what the distillate needs around a
change (``trail`` before and ``lead`` after, plus the rebaser's margin: an input change
at t alters outputs in [t - trail, t + lead]), and adds them to the ranges it owes;
ranges owed and the new input versions are recorded together in one transaction. Then
it works through what it owes in chunks of at most ``chunk_ns``:

1. read every input over the chunk widened by lead and trail (one bounded read each);
2. rebase and :meth:`~distil.distillate.Distillate.process` them;
3. for each output, delete exactly the chunk's range and insert the new points in it
   (merge REPLACE); then flush them all;
4. only then strike the chunk from what is owed, in one transaction.

Killed at any moment, it redoes at most the chunk it was in: the outputs over it are
deleted again before the insert, so they never hold points of two computations. A new
instance, a distillate whose version was raised, or changed inputs owe everything
(all of BTrDB's time); spans without input points are crossed with one ``nearest``
query per input instead of chunk by chunk, so that costs a few calls per span of data.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import logging
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterable, Iterator


from qss.btrdbclient import Backoff, Btrdb, ErrorKind, Outage, classify, describe_error

from . import btrdbio, ranges
from .distillate import Instance, Outputs, Series
from .ranges import MAXIMUM_TIME, MINIMUM_TIME, Range
from .state import Backlog, InstanceState, StateStore

log = logging.getLogger("distil")

SECOND = 1_000_000_000
EVERYTHING: Range = (MINIMUM_TIME, MAXIMUM_TIME - 1)


class DistillateFailed(Exception):
    """A distillate's process raised; the message names the instance and the range."""


@dataclasses.dataclass(frozen=True)
class Options:
    #: At most this much output time per chunk: 24 min, one insert RPC per output of a
    #: 120 Hz uPMU (btrdbio.INSERT_POINTS); fewer, larger calls and fsyncs than 10 min.
    chunk_ns: int = 1440 * SECOND
    slice_s: float = 2.0                  # work on one instance at most this long a turn
    measure_s: float = 5.0                # measure an owing instance's backlog this often
    ahead: bool = True                    # compute the next chunk while writing one
    writers: int = 2                      # outputs written at once (1: one after another)
    readers: int = 2                      # inputs read at once (1: one after another)


@dataclasses.dataclass(frozen=True)
class Computed:
    """A chunk read and processed, not yet written: ``asked`` is the chunk it was
    computed for, ``range`` what it covers (longer, up to the next input point, when
    no input was near)."""

    asked: Range
    range: Range
    outputs: Outputs


@dataclasses.dataclass(frozen=True)
class Bound:
    """An instance with its inputs resolved and its outputs made sure of."""

    instance: Instance
    inputs: dict[str, uuidlib.UUID]
    generation: int
    #: Per output, a time no point is at or past (queried once; the engine is the
    #: outputs' only writer): a chunk past it needs no delete first.
    ends: dict[uuidlib.UUID, int] = dataclasses.field(default_factory=dict, compare=False)
    #: Output role -> stream UUID (``Instance.output_uuid`` hashes each time).
    outputs: dict[str, uuidlib.UUID] = dataclasses.field(default_factory=dict, compare=False)

    @property
    def signature(self) -> str:
        d = self.instance.distillate
        ins = ",".join(f"{r}={u}" for r, u in sorted(self.inputs.items()))
        return f"{d.name} v{d.version} ({type(d).__module__}.{type(d).__qualname__}) {ins}"


def _fmt(t: int) -> str:
    if t <= MINIMUM_TIME:
        return "the beginning"
    if t >= MAXIMUM_TIME - 1:
        return "the end"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // SECOND)) + \
        f".{t % SECOND // 1_000_000:03d}Z"


def describe_range(r: Range) -> str:
    return f"[{_fmt(r[0])}, {_fmt(r[1])})"


def _from_btrdb(exc: BaseException) -> bool:
    """Whether an exception came from the client or the connection."""
    import grpc
    from btrdb.exceptions import BTrDBError
    return isinstance(exc, (grpc.RpcError, BTrDBError, ConnectionError, TimeoutError))


class Engine:
    """Keeps a set of instances current (see the module docstring)."""

    def __init__(self, btrdb: Btrdb, state: StateStore, options: Options = Options(), *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.btrdb = btrdb
        self.state = state
        self.options = options
        self.clock = clock
        self.instances: dict[str, Instance] = {}
        self._bound: dict[str, Bound] = {}
        self._retry_at: dict[str, float] = {}
        self._backoff: dict[str, Backoff] = {}
        self._waiting: dict[str, str] = {}      # name -> why it waits (input missing)
        self._outage = Outage(btrdb.what)
        self._stop = threading.Event()
        self._measured: dict[str, tuple[float, tuple]] = {}   # name -> (when, what)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._readers: concurrent.futures.ThreadPoolExecutor | None = None
        self._last_commit = 0.0             # how long the last chunk's writes took

    # -- the set of instances -----------------------------------------------------
    def set_instances(self, instances: Iterable[Instance], *, activate: bool = True) -> None:
        """Keep these instances current from now on (names must be unique).
        ``activate``: record them in the state as the ones the service runs (the status
        report shows only those); False for a one-off command beside the service."""
        new: dict[str, Instance] = {}
        for inst in instances:
            if inst.name in new:
                raise ValueError(f"two instances named {inst.name!r}")
            new[inst.name] = inst
        for name in self.instances.keys() - new.keys():
            log.info("instance %s: dropped (its outputs and state stay)", name)
        for name, inst in new.items():
            old = self.instances.get(name)
            if old is None:
                log.info("instance %s: %s on %s -> %s", name, inst.distillate.describe(),
                         ", ".join(i.path for i in inst.inputs.values()), inst.collection)
            if old != inst:
                self._bound.pop(name, None)
                self._retry_at.pop(name, None)
            elif old is not inst and name in self._bound:
                # The same computation from a reloaded file: its new code from now on.
                self._bound[name] = dataclasses.replace(self._bound[name], instance=inst)
        self.instances = new
        if not activate:
            return
        try:
            self.state.activate(set(new))
        except Exception as exc:  # noqa: BLE001 - the status report only; go on
            log.warning("cannot record the instances in the state: %s", exc)

    def stop(self) -> None:
        self._stop.set()

    # -- one instance ---------------------------------------------------------------
    def bind(self, inst: Instance) -> Bound:
        """Resolve the inputs and make sure of the outputs (once per connection)."""
        db = self.btrdb.get()
        bound = self._bound.get(inst.name)
        if bound is not None and bound.generation == self.btrdb.generation:
            return bound
        inputs = {}
        for role, i in inst.inputs.items():
            uu = i.uuid if i.uuid is not None else btrdbio.resolve(db, i.path)
            btrdbio.version(db, uu)               # raises InputMissing
            inputs[role] = uu
        for line in btrdbio.ensure_outputs(db, inst, inputs):
            log.info("instance %s: %s", inst.name, line)
        bound = Bound(inst, inputs, self.btrdb.generation, outputs={
            role: inst.output_uuid(role) for role in inst.distillate.outputs})
        self._bound[inst.name] = bound
        return bound

    def _margins(self, inst: Instance) -> tuple[int, int]:
        d = inst.distillate
        m = d.rebaser.margin_ns
        return d.lead_ns + m, d.trail_ns + m

    def refresh(self, bound: Bound) -> InstanceState:
        """Add what changed upstream since the consumed versions to what is owed."""
        db = self.btrdb.get()
        inst = bound.instance
        st = self.state.load(inst.name)
        requests = self.state.requests(inst.name)
        taken = tuple(i for i, _ in requests)
        if st.signature != bound.signature:
            why = "new instance" if not st.signature else "distillate or inputs changed"
            consumed = {str(u): btrdbio.version(db, u) for u in bound.inputs.values()}
            st = InstanceState(bound.signature, consumed, [EVERYTHING])
            self.state.save(inst.name, st, taken)
            log.info("instance %s: %s; computing everything", inst.name, why)
            return st
        for _, r in requests:
            log.info("instance %s: recomputing %s as asked", inst.name, describe_range(r))
        st.pending = ranges.merge(st.pending + [r for _, r in requests])
        lead, trail = self._margins(inst)
        changed, consumed = [], dict(st.consumed)
        for uu in bound.inputs.values():
            since = consumed.get(str(uu), 0)
            try:
                found, to = btrdbio.changes(db, uu, since)
            except Exception:
                # A server refuses a start version past the stream's: see which it is.
                to = btrdbio.version(db, uu)
                if to >= since:
                    raise
            if to < since:
                # The input's version went back: a new database (qss-get --newdb, a
                # restore). What was consumed means nothing there: owe everything.
                log.info("instance %s: input %s is at version %d, before the %d "
                         "consumed (a new database?); computing everything", inst.name,
                         uu, to, since)
                found = [EVERYTHING]
            changed += found
            consumed[str(uu)] = to
        if consumed != st.consumed or taken:
            st.pending = ranges.merge(st.pending + ranges.widen(changed, trail, lead),
                                      gap=self.options.chunk_ns)
            st.consumed = consumed
            self.state.save(inst.name, st, taken)
        return st

    def _next(self, pending: list[Range]) -> tuple[Range, int]:
        """The chunk to recompute next (the start of what is owed, at most ``chunk_ns``)
        and the end of the owed range holding it."""
        a, b = pending[0]
        return (a, min(b, a + self.options.chunk_ns)), b

    def compute(self, bound: Bound, chunk: Range, owed_to: int) -> Computed:
        """Read the inputs around ``chunk`` and process them: no side effect, so it may
        run ahead of the writes of the chunk before (``owed_to``: where the owed range
        holding the chunk ends, how far a chunk without inputs near it may stretch).

        Raises:
            DistillateFailed: the distillate raised (BTrDB errors pass as they are).
        """
        db = self.btrdb.get()
        inst = bound.instance
        d = inst.distillate
        lead, trail = self._margins(inst)
        x, y = chunk
        r0, r1 = max(x - lead, MINIMUM_TIME), min(y + trail, MAXIMUM_TIME - 1)
        # Each input rebased as soon as it is read, in order, with ``readers`` reads under
        # way at a time (the server answers one on its other core while it inserts): at
        # most one input more than that is held as read.
        series, found = {}, False
        for role, (t, v) in zip(bound.inputs, self._reads(db, bound.inputs.values(), r0, r1)):
            found = found or len(t) > 0
            series[role] = Series(*d.rebaser.rebase(t, v, r0, r1))
            del t, v
        outputs = Outputs(d.outputs, d.output_precision)
        if not found:
            # No input near the chunk: no output until trail before the next point.
            nexts = [n for uu in bound.inputs.values()
                     if (n := btrdbio.next_time(db, uu, r1)) is not None]
            y = owed_to if not nexts else max(y, min(owed_to, min(nexts) - trail))
        else:
            try:
                d.process(series, outputs)
            except Exception as exc:
                raise DistillateFailed(
                    f"instance {inst.name}: {d.describe()} failed over "
                    f"{describe_range((x, y))}: {type(exc).__name__}: {exc}") from exc
        return Computed(chunk, (x, y), outputs)

    def commit(self, bound: Bound, st: InstanceState, done: Computed) -> int:
        """Write a computed chunk: replace every output over exactly its range, flush
        them all, and only then strike the range from what is owed (one transaction).
        Returns the output points written."""
        db = self.btrdb.get()
        inst = bound.instance
        x, y = done.range
        ends = bound.ends

        uuids = bound.outputs

        def write(role: str) -> tuple[int, bool]:
            """Replace one output over the chunk: (points written, whether anything
            was deleted or inserted)."""
            uu = uuids[role]
            t, v = done.outputs.points(role, x, y)
            end = ends.get(uu)
            if end is None:
                end = btrdbio.end_of(db, uu)
            # Raised before writing: whatever happens next, no point is at or past it.
            ends[uu] = max(end, y)
            btrdbio.replace(db, uu, x, y, t, v, delete=end > x)
            return len(t), end > x or len(t) > 0
        roles = list(inst.distillate.outputs)
        if self.options.writers > 1 and len(roles) > 1:
            # Outputs are separate streams: the server stores them on several cores.
            futures = [self._executor().submit(write, role) for role in roles]
            concurrent.futures.wait(futures)
            results = [f.result() for f in futures]         # raises the first failure
        else:
            results = list(map(write, roles))
        # Flushed once all are written: a flush waits for the disk up to its stream's last
        # commit, so the first one usually covers the others too (power's 16 outputs paid
        # 16 fsyncs in a row). An output this chunk did not touch (nothing deleted, nothing
        # inserted: a chunk without inputs) has nothing of it to flush. The state is saved
        # only after every flush.
        for role, (_, touched) in zip(roles, results):
            if touched:
                btrdbio.flush(db, uuids[role])
        written = sum(n for n, _ in results)
        st.pending = ranges.subtract(st.pending, (x, y))
        self.state.save(inst.name, st)
        return written

    def work_one_chunk(self, bound: Bound, st: InstanceState) -> int:
        """Recompute the first chunk owed; returns the output points written.

        Raises:
            DistillateFailed: the distillate raised (BTrDB errors pass as they are).
        """
        return self.commit(bound, st, self.compute(bound, *self._next(st.pending)))

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            # One worker computes the next chunk ahead, the others write outputs.
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=1 + max(1, self.options.writers), thread_name_prefix="distil")
        return self._pool

    def _reads(self, db, uuids: Iterable[uuidlib.UUID], start: int, end: int
               ) -> Iterator[tuple]:
        """``btrdbio.read`` of each stream over [start, end), in order, with up to
        ``Options.readers`` of them under way (the first failure raises when reached;
        reads after it still finish, unused)."""
        uuids = list(uuids)
        if self.options.readers <= 1 or len(uuids) <= 1:
            yield from (btrdbio.read(db, uu, start, end) for uu in uuids)
            return
        if self._readers is None:
            self._readers = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.options.readers, thread_name_prefix="distil-read")
        pending: collections.deque = collections.deque()
        for uu in uuids:
            pending.append(self._readers.submit(btrdbio.read, db, uu, start, end))
            if len(pending) >= self.options.readers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def work(self, bound: Bound, st: InstanceState, deadline: float) -> tuple[int, int]:
        """Work through what is owed, chunk by chunk, until done, stopped or past
        ``deadline``; returns (chunks, output points written).

        While one chunk is written, the next is read and computed (``Options.ahead``):
        the writes still go in order, each chunk's state saved after its flush, so a
        kill still redoes at most the chunk being written; a chunk computed ahead is
        only used if it is what is owed next."""
        chunks = written = 0
        ahead: concurrent.futures.Future | None = None
        try:
            done = self.compute(bound, *self._next(st.pending))
            while True:
                after = ranges.subtract(st.pending, done.range)
                started = self.clock()
                if after and self.options.ahead and not self._stop.is_set() and \
                        started + self._last_commit < deadline:
                    wanted = self._next(after)
                    ahead = self._executor().submit(self.compute, bound, *wanted)
                written += self.commit(bound, st, done)
                chunks += 1
                self._last_commit = self.clock() - started
                if not st.pending or self._stop.is_set() or self.clock() >= deadline:
                    break
                if ahead is not None:
                    taken, ahead = ahead, None
                    if wanted == self._next(st.pending):    # always, as it stands
                        done = taken.result()
                        continue
                    concurrent.futures.wait([taken])
                done = self.compute(bound, *self._next(st.pending))
        finally:
            if ahead is not None:
                # Not taken (stopped, past the deadline, or a failure): let it finish,
                # so nothing computes behind the caller's back; its outcome is dropped.
                concurrent.futures.wait([ahead])
        return chunks, written

    def turn(self, inst: Instance) -> bool:
        """One turn of an instance: refresh, then work for up to ``slice_s``. Returns
        whether it still owes work (or waits to retry). Failures are logged, recorded
        and retried with backoff; they never reach the caller."""
        now = self.clock()
        if self._retry_at.get(inst.name, now) > now:
            return True
        try:
            bound = self.bind(inst)
            st = self.refresh(bound)
            chunks = written = 0
            if st.pending and not self._stop.is_set():
                chunks, written = self.work(bound, st, self.clock() + self.options.slice_s)
        except btrdbio.InputMissing as exc:
            if self._waiting.get(inst.name) != str(exc):
                log.warning("instance %s: waiting: %s", inst.name, exc)
            self._waiting[inst.name] = str(exc)
            self._retry_later(inst.name, quiet=True)
            return True
        except DistillateFailed as exc:
            failures = self.state.failed(inst.name, str(exc))
            delay = self._retry_later(inst.name)
            log.error("%s (failure %d in a row; retrying in %.1f s)", exc, failures, delay)
            return True
        except Exception as exc:  # noqa: BLE001 - BTrDB or state failures: retry
            reason = describe_error(exc)
            if not _from_btrdb(exc):
                log.exception("instance %s: internal error: %s", inst.name, reason)
            elif classify(exc) is ErrorKind.UNAVAILABLE:
                self._outage.failed(reason, "distillates wait")
                self.btrdb.reset()
            else:
                log.error("instance %s: %s", inst.name, reason)
            self.state.failed(inst.name, reason)
            self._retry_later(inst.name)
            return True
        self._outage.succeeded()
        self._waiting.pop(inst.name, None)
        self._backoff.pop(inst.name, None)
        self._record_backlog(bound, st)
        if chunks:
            self.state.succeeded(inst.name, written)
            log.debug("instance %s: %d chunks, %d points", inst.name, chunks, written)
        elif not st.pending:
            status = self.state.status(inst.name)
            if status is None or status.failures:
                self.state.succeeded(inst.name, 0)
        return bool(st.pending)

    def _retry_later(self, name: str, quiet: bool = False) -> float:
        backoff = self._backoff.setdefault(name, Backoff(first=1.0, cap=60.0))
        delay = backoff.next()
        self._retry_at[name] = self.clock() + delay
        return delay

    # -- all instances ----------------------------------------------------------------
    def run_once(self) -> bool:
        """One turn of every instance; returns whether any still owes work."""
        busy = False
        for inst in list(self.instances.values()):
            if self._stop.is_set():
                break
            busy |= self.turn(inst)
        return busy

    def catch_up(self, timeout: float = 600.0) -> None:
        """Run until nothing is owed (for tests, benchmarks and ``run``).

        Raises:
            TimeoutError: still owing after ``timeout`` seconds (a failing instance).
        """
        deadline = time.monotonic() + timeout
        while self.run_once():
            if time.monotonic() > deadline:
                raise TimeoutError(f"distil did not catch up in {timeout:g} s")
            if self._retry_at and all(self._retry_at.get(n, 0) > self.clock()
                                      for n in self.instances):
                time.sleep(0.05)

    def serve(self, poll_interval: float, reload: Callable[[], list[Instance] | None]
              ) -> None:
        """Until :meth:`stop`: reload the instances when ``reload`` returns a list, give
        every instance a turn, and sleep ``poll_interval`` when nothing is owed."""
        while not self._stop.is_set():
            instances = reload()
            if instances is not None:
                self.set_instances(instances)
            if not self.run_once():
                self._stop.wait(poll_interval)

    # -- reports and requests -------------------------------------------------------
    def owed(self, bound: Bound, st: InstanceState) -> list[Range]:
        """What the instance owes, with the changes it has not yet seen (read only)."""
        if st.signature != bound.signature:
            return [EVERYTHING]
        db = self.btrdb.get()
        lead, trail = self._margins(bound.instance)
        changed = []
        for uu in bound.inputs.values():
            since = st.consumed.get(str(uu), 0)
            try:
                changed += btrdbio.changes(db, uu, since)[0]
            except Exception:
                if btrdbio.version(db, uu) >= since:
                    raise
                return [EVERYTHING]         # a new database: see refresh()
        return ranges.merge(st.pending + ranges.widen(changed, trail, lead)
                            + [r for _, r in self.state.requests(bound.instance.name)])

    def measure(self, bound: Bound, owed: list[Range]) -> Backlog:
        """How far behind ``owed`` puts the instance: the input points in it (from
        BTrDB's statistics, so about: a window at each end may count a little more),
        and the time from the oldest owed input point to the newest input point."""
        now = time.time()
        if not owed:
            return Backlog(0, 0, None, now)
        db = self.btrdb.get()
        points, oldest, newest = 0, None, None
        for uu in bound.inputs.values():
            first = btrdbio.first_in(db, uu, owed)
            if first is None:
                continue
            oldest = first if oldest is None else min(oldest, first)
            last = btrdbio.next_time(db, uu, MAXIMUM_TIME - 1, backward=True)
            newest = last if newest is None or (last or 0) > newest else newest
            points += btrdbio.count_about(db, uu, owed)
        if oldest is None:
            return Backlog(0, 0, None, now)
        return Backlog(points, max(0, (newest or oldest) - oldest), oldest, now)

    def backlog(self, inst: Instance) -> Backlog:
        """How far behind the instance is now, changes not yet seen included."""
        bound = self.bind(inst)
        return self.measure(bound, self.owed(bound, self.state.load(inst.name)))

    def _record_backlog(self, bound: Bound, st: InstanceState) -> None:
        """Measure and record the backlog after a turn: at once when the instance
        became current, at most every ``measure_s`` while it owes, and every 30 s
        anyway (so the status report can tell a stopped service)."""
        name = bound.instance.name
        now = self.clock()
        last_at, last = self._measured.get(name, (None, None))
        age = None if last_at is None else now - last_at
        if not st.pending:
            if last == (0, 0) and age is not None and age < 30:
                return
        elif age is not None and age < self.options.measure_s:
            return
        try:
            b = self.measure(bound, st.pending)
            self.state.measured(name, b)
        except Exception as exc:  # noqa: BLE001 - a report; the work goes on
            log.debug("instance %s: backlog not measured: %s", name, describe_error(exc))
            return
        self._measured[name] = (now, (b.points, b.lag_ns))

    def request(self, inst: Instance, r: Range) -> None:
        """Owe ``r`` again (``qss-distil run``, ``reset``): taken on the instance's next
        turn, by this engine or by a running service."""
        self.state.request(inst.name, r)

