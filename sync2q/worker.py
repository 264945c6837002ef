"""The sync loop: queued files in, BTrDB points out, each file marked synced only after
every one of its points is in.

How it works
------------
Three threads and a pipeline between them, so that parsing overlaps inserting:

- the **reader** goes round the uPMUs with unsynced files (one batch each in turn, so a
  big backlog of one device does not starve the others), lists each one's files in name
  order, reads and parses them (:func:`sync2q.batch.prepare`) and groups consecutive
  files into batches of up to 172,800 samples per stream; files with no usable record
  are quarantined (:mod:`sync2q.quarantine`) right there;
- the **writer** inserts batches (:class:`sync2q.insert.Inserter`: two streams at a
  time, the next batch starting as the last streams of one finish, each stream's inserts
  in order), first making sure the uPMU's streams exist with the right metadata
  (:mod:`qss.streammeta`);
- the **marker** marks the files of each inserted batch synced, in order, and logs one
  line per file, so the queue's fsyncs do not hold up the next insert.

The main thread reloads ``upmuconfig.ini`` when it changes, logs the rate, and stops
everything on request.

Exactly once: points are inserted with merge policy REPLACE and a file is marked synced
only after its batch's inserts all returned. A crash in between re-inserts the same
points over themselves; a file replaced in the queue meanwhile is not marked (its new
contents are synced next).

Failures: BTrDB unreachable or failing makes the writer retry the same batch with capped,
jittered backoff (one log line when BTrDB goes down, one when it is back); the reader
waits meanwhile (bounded queue), so nothing is lost, skipped or marked. BTrDB refusing a
stream as configured (a name clash, a recycled UUID) parks that uPMU until its section
of ``upmuconfig.ini`` changes (or ``park_retry`` seconds), its files waiting in the queue.
BTrDB refusing a file's data is narrowed down to the file, which is quarantined.
"""
from __future__ import annotations

import collections
import dataclasses
import enum
import itertools
import logging
import queue as queuemod
import threading
import time
from collections.abc import Callable
from concurrent import futures

from qss import dat
from qss.queue import FileGone, FileUnreadable, Queue, QueueError, QueuedFile
from qss.upmuconfig import Upmu

from .batch import Batch, FileWork, max_batch_samples, prepare
from .config import ConfigWatcher
from qss.btrdbclient import (Backoff, Btrdb, BtrdbOutage, ErrorKind, Outage, classify,
                              describe_error)
from .insert import Inserter
from .quarantine import Quarantine, QuarantineError
from qss.streammeta import StreamConflict, StreamRegistry, specs_of

log = logging.getLogger("sync2q")


@dataclasses.dataclass
class Options:
    """Tuning and behaviour; the defaults are the daemon's."""

    once: bool = False            # drain what is queued, then return
    insert_threads: int = 2       # streams inserted at a time
    in_flight: int = 2            # batches being inserted at a time (in order per stream)
    parsed_ahead: int = 3         # batches parsed ahead of the insert (memory bound)
    max_files: int = 64           # files per batch, whatever their size
    page: int = 64                # files listed per queue query
    poll: float = 1.0             # seconds between looks at an idle queue
    config_poll: float = 1.0      # seconds between looks at upmuconfig.ini
    rescan: float = 60.0          # seconds between listings from the first unsynced file
    rate_interval: float = 60.0   # seconds between rate lines
    park_retry: float = 600.0     # seconds before a parked uPMU is tried again anyway
    backoff_first: float = 0.5
    backoff_cap: float = 30.0
    grace: float = 8.0            # seconds the threads get to finish after a stop
    window: dat.DateWindow | None = None   # plausible record dates (None: 2010 .. now+1d)


class WorkerFailed(Exception):
    """A thread of the worker failed (a bug, or something no retry can fix): the worker
    stopped; files not marked synced stay in the queue and are synced next time."""


class Outcome(enum.Enum):
    """How the writer's retries of one action ended (:meth:`Worker._retrying`)."""

    OK = "ok"               # the action succeeded
    REFUSED = "refused"     # BTrDB refused the batch's data (narrowed down to a file)
    PARKED = "parked"       # the uPMU's streams cannot be made: it waits for its config
    STOPPED = "stopped"     # the worker is stopping; the batch stays unsynced


@dataclasses.dataclass
class Stats:
    """Counters since start (``files``, ``points``...) for the rate lines."""

    files: int = 0
    points: int = 0
    bytes: int = 0
    quarantined: int = 0
    insert_s: float = 0.0


@dataclasses.dataclass(eq=False)
class _Serial:
    """The reader's position in one serial's unsynced files."""

    pending: collections.deque = dataclasses.field(default_factory=collections.deque)
    cursor: str | None = None      # last name listed (None: list from the first)
    last_full: float = float("-inf")
    carry: tuple[FileWork, Upmu] | None = None   # parsed, did not fit the last batch


class Worker:
    """Moves queued files into BTrDB until :meth:`stop` (or, with ``once``, until the
    queue is drained). Construct, then :meth:`run` in the main thread."""

    def __init__(self, queue: Queue, config: ConfigWatcher, btrdb: Btrdb,
                 quarantine: Quarantine, options: Options | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.queue = queue
        self.config = config
        self.btrdb = btrdb
        self.quarantine = quarantine
        self.options = options or Options()
        self.clock = clock
        self.stats = Stats()
        self.registry = StreamRegistry(btrdb)
        self.inserter = Inserter(btrdb, self.registry, self.options.insert_threads)
        self.outage = BtrdbOutage(btrdb.endpoints, clock)   # one line a minute at most
        self.queue_outage = Outage(f"queue {queue.url}", clock)
        self._stop = threading.Event()       # stop requested
        self._wake = threading.Event()       # main loop: stop requested or drained
        self._drained = False
        self._lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._batches: queuemod.Queue = queuemod.Queue(maxsize=max(1, self.options.parsed_ahead))
        self._inserted: queuemod.Queue = queuemod.Queue()
        self._ensure_jobs: collections.deque[Upmu] = collections.deque()
        self._inflight: dict[str, set[str]] = collections.defaultdict(set)
        self._serials: dict[str, _Serial] = collections.defaultdict(_Serial)
        self._rescan: set[str] = set()
        self._parked: dict[str, tuple[Upmu, float]] = {}
        self._unconfigured_logged: set[str] = set()
        self._final_check: float | None = None
        self._serials_stale = True       # list the queue's serials again (config changed)
        self._limit = max_batch_samples()
        self._failed: list[str] = []         # "thread: error" of each thread that failed

    # -- control ----------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to finish the batch being inserted and return (signal-safe)."""
        self._stop.set()
        self._wake.set()

    def run(self) -> int:
        """Work until stopped or (``once``) drained; return 0, or 1 when ``once`` left
        files of a parked uPMU behind.

        Raises:
            WorkerFailed: one of its threads failed; the others were stopped first.
        """
        started = self.clock()
        self._poll_config()
        log.info("started: queue %s, %s, uPMU list %s (%d uPMUs)%s", self.queue.url,
                 self.btrdb.what, self.config.path, len(self.config.upmus),
                 "; draining the queue once" if self.options.once else "")
        threads = [threading.Thread(target=self._guard, args=(fn,), name=f"sync2q-{name}",
                                    daemon=True)
                   for name, fn in (("reader", self._read_loop), ("writer", self._write_loop),
                                    ("marker", self._mark_loop))]
        for t in threads:
            t.start()
        last_rate, last_stats = self.clock(), dataclasses.replace(self.stats)
        next_config = self.clock() + self.options.config_poll
        while not self._wake.is_set():
            now = self.clock()
            if now >= next_config:
                self._poll_config()
                next_config = now + self.options.config_poll
            if now - last_rate >= self.options.rate_interval:
                last_stats = self._log_rate(now - last_rate, last_stats)
                last_rate = now
            self._wake.wait(max(0.01, min(next_config, last_rate + self.options.rate_interval)
                                - self.clock()))
        self._stop.set()
        deadline = time.monotonic() + self.options.grace
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in threads if t.is_alive()]
        if stuck:
            # A call to BTrDB or the queue that does not return (its deadline is longer):
            # leave without it. Nothing is lost: what is not marked is synced next time.
            log.warning("exiting without waiting for %s (blocked in a call to BTrDB or the "
                        "queue); files not marked synced are synced next time",
                        ", ".join(stuck))
        else:
            self.inserter.close()
        status = self._finish(self.clock() - started)
        if self._failed:
            raise WorkerFailed(f"{'; '.join(self._failed)} (a bug: the log has the "
                               f"traceback); files not marked synced stay in the queue "
                               f"and are synced next time")
        return status

    def _guard(self, fn: Callable[[], None]) -> None:
        """Run a thread's loop; a bug in it stops the worker instead of hanging it."""
        try:
            fn()
        except BaseException as exc:
            name = threading.current_thread().name
            log.critical("%s failed; stopping", name, exc_info=True)
            with self._lock:
                self._failed.append(f"{name} failed: {type(exc).__name__}: {exc}")
            self.stop()   # run() raises WorkerFailed; the traceback is in the log only
        finally:
            if threading.current_thread().name == "sync2q-reader":
                self._put(None, force=True)           # the writer's end
            elif threading.current_thread().name == "sync2q-writer":
                self._inserted.put(None)              # the marker's end

    def _finish(self, elapsed: float) -> int:
        s = self.stats
        log.info("%s: %d files, %d points in %.1f s (%.2f M points/s); %d quarantined",
                 "drained" if self._drained else "stopped", s.files, s.points, elapsed,
                 s.points / elapsed / 1e6 if elapsed > 0 else 0.0, s.quarantined)
        if self.options.once and self._parked:
            for upmu, _ in self._parked.values():
                log.error("uPMU %s: files left in the queue (see the error above)",
                          upmu.describe())
            return 1
        return 0

    def _log_rate(self, seconds: float, before: Stats) -> Stats:
        with self._stats_lock:
            now = dataclasses.replace(self.stats)
        files, points = now.files - before.files, now.points - before.points
        with self._lock:
            waiting = sum(len(v) for v in self._inflight.values())
        log.info("rate: %d files, %d points in %.1f s = %.1f files/s, %.2f M points/s "
                 "(insert busy %.0f%%); %d files in flight; since start %d files, "
                 "%d points, %d quarantined", files, points, seconds, files / seconds,
                 points / seconds / 1e6, 100 * (now.insert_s - before.insert_s) / seconds,
                 waiting, now.files, now.points, now.quarantined)
        return now

    def _poll_config(self) -> None:
        change = self.config.poll()
        if change is None:
            return
        with self._lock:
            self._serials_stale = True
            for upmu in change.added + change.changed:
                self._ensure_jobs.append(upmu)
                self._parked.pop(upmu.serial.casefold(), None)
                self._rescan.add(upmu.serial.casefold())
            self._unconfigured_logged.clear()

    # -- reader -------------------------------------------------------------------------

    def _read_loop(self) -> None:
        rotation = 0
        queued: list[str] = []          # serials in the queue (a query over every file)
        queued_at = float("-inf")
        ytagbase = None
        backoff = self._backoff()
        while not self._stop.is_set():
            try:
                # An operator released quarantined files, or raised ytagbase (a new
                # database: every file is unsynced again): list everything from the start.
                released = self.quarantine.refresh()
                base, ytagbase = ytagbase, self.queue.ytagbase
                if released or (base is not None and base != ytagbase):
                    with self._lock:
                        self._rescan.update(s.casefold() for s in self._serials)
                now = self.clock()
                with self._lock:
                    stale, self._serials_stale = self._serials_stale, False
                if stale or now - queued_at >= self.options.rescan:
                    queued, queued_at = self.queue.serials(), now
                # The configured serials, as the receiver queues them, and any other
                # spelling or unconfigured serial the queue held at the last look.
                serials = sorted(set(queued) | {u.serial for u in self.config.upmus.values()})
                progressed = False
                for serial in serials[rotation:] + serials[:rotation]:
                    if self._stop.is_set():
                        return
                    batch = self._next_batch(serial)
                    if batch is not None:
                        self._put(batch)
                        progressed = True
                rotation = (rotation + 1) % max(1, len(serials))
            except (QueueError, QuarantineError) as exc:
                self.queue_outage.failed(" ".join(str(exc).split()),
                                         "waiting for it, retrying with backoff")
                with self._lock:      # a file taken from a listing may not have been read
                    self._rescan.update(s.casefold() for s in self._serials)
                self._stop.wait(backoff.next())
                continue
            self.queue_outage.succeeded()
            backoff.reset()
            if progressed:
                continue
            if self.options.once and self._once_done(serials):
                return
            self._stop.wait(self.options.poll if not self.options.once else 0.05)

    def _once_done(self, serials: list[str]) -> bool:
        """With ``once``: True (and wake the main thread) when nothing is in flight and a
        listing from the first unsynced file of every serial, made after everything
        settled, found nothing new."""
        now = self.clock()
        with self._lock:
            if any(self._inflight.values()) or self._batches.qsize():
                return False
            active = [s for s in serials if self.config.by_serial(s) is not None
                      and s.casefold() not in self._parked]
            check = self._final_check
            if check is not None and all(self._serials[s].last_full >= check for s in active):
                self._drained = True
                self._wake.set()
                return True
            # List every serial from its first unsynced file next round, then decide.
            self._final_check = now
            for s in active:
                self._serials[s].cursor = None
        return False

    def _put(self, batch: Batch | None, force: bool = False) -> None:
        """Hand a batch to the writer, waiting while it is busy (until stopped)."""
        while True:
            try:
                self._batches.put(batch, timeout=0.2)
                return
            except queuemod.Full:
                if self._stop.is_set() and not force:
                    self._abandon(batch)
                    return
                if force:      # the writer is finishing its batch: drop a parsed one
                    try:
                        dropped = self._batches.get_nowait()
                    except queuemod.Empty:
                        continue
                    if dropped is not None:
                        self._abandon(dropped)

    def _next_batch(self, serial: str) -> Batch | None:
        """The next batch of ``serial`` (None: nothing to do for it now)."""
        upmu = self.config.by_serial(serial)
        key = serial.casefold()
        if upmu is None:
            self._log_unconfigured(serial)
            return None
        if self._is_parked(key, upmu):
            return None
        missing = [n for n in upmu.active_streams if n not in upmu.streams]
        if missing:
            self._park(key, upmu, f"uPMU {upmu.describe()}: no usable uuid for stream(s) "
                                  f"{', '.join(missing)} in {self.config.path}; its files "
                                  f"wait in the queue until the list is fixed")
            return None
        st = self._serials[serial]
        specs = specs_of(upmu)
        batch = Batch(serial, upmu, specs)
        if st.carry is not None:
            work, made_for = st.carry
            st.carry = None
            if made_for == upmu:
                batch.files.append(work)
            else:                     # the list changed: parse it again for the new one
                st.pending.appendleft(work.file)
        while len(batch.files) < self.options.max_files and batch.samples < self._limit:
            file = self._next_file(serial, st)
            if file is None:
                break
            work = self._prepare(file, upmu, specs)
            if work is None:
                continue
            if batch.files and batch.samples + work.samples > self._limit:
                st.carry = (work, upmu)
                break
            batch.files.append(work)
        if not batch.files:
            return None
        with self._lock:
            self._inflight[serial].update(f.file.name for f in batch.files)
        return batch

    def _next_file(self, serial: str, st: _Serial) -> QueuedFile | None:
        if not st.pending:
            now = self.clock()
            with self._lock:
                full = (st.cursor is None or serial.casefold() in self._rescan
                        or now - st.last_full >= self.options.rescan)
                self._rescan.discard(serial.casefold())
                inflight = set(self._inflight.get(serial, ()))
            after = None if full else st.cursor
            listed = list(itertools.islice(
                self.queue.unsynced(serial, after=after, page_size=self.options.page),
                self.options.page))
            if full:
                st.last_full = now
            if listed:
                st.cursor = listed[-1].name
            carried = st.carry[0].file.name if st.carry else None
            st.pending.extend(f for f in listed if f.name not in inflight
                              and f.name != carried and not self.quarantine.holds(f))
        return st.pending.popleft() if st.pending else None

    def _prepare(self, file: QueuedFile, upmu: Upmu, specs) -> FileWork | None:
        try:
            data = self.queue.read(file)
        except FileGone:
            return None
        except FileUnreadable as exc:
            # This file's contents are damaged, not the queue: set it aside (a resend
            # replaces it and gets a fresh try) and go on with the others.
            self._quarantine(file, upmu, f"cannot be read: {exc.reason}")
            return None
        try:
            result = prepare(file, data, upmu, specs, self.options.window)
        except Exception as exc:  # noqa: BLE001 - one file never stops the worker
            log.error("uPMU %s: file %s: parsing failed", upmu.describe(), file.name,
                      exc_info=True)
            result = f"cannot be parsed: {type(exc).__name__}: {exc}"
        if isinstance(result, str):
            self._quarantine(file, upmu, result)
            return None
        if result.notes:
            log.log(logging.WARNING if result.warn else logging.INFO,
                    "uPMU %s: file %s: %s", upmu.describe(), file.name,
                    "; ".join(result.notes))
        return result

    def _quarantine(self, file: QueuedFile, upmu: Upmu, reason: str) -> None:
        self.quarantine.add(file, reason)
        with self._stats_lock:
            self.stats.quarantined += 1
        log.error("uPMU %s: file %s quarantined (%s); it stays in the queue unsynced, "
                  "qss-sync2q --requeue %s tries it again", upmu.describe(), file.name,
                  reason, file.name.rsplit("/", 1)[-1])

    def _log_unconfigured(self, serial: str) -> None:
        with self._lock:
            if serial in self._unconfigured_logged:
                return
            self._unconfigured_logged.add(serial)
        if next(iter(self.queue.unsynced(serial, page_size=1)), None) is not None:
            log.warning("uPMU %s: not in %s; its queued files wait until it is added",
                        serial, self.config.path)

    def _is_parked(self, key: str, upmu: Upmu) -> bool:
        with self._lock:
            parked = self._parked.get(key)
            if parked is None:
                return False
            if parked[0] == upmu and self.clock() < parked[1]:
                return True
            del self._parked[key]
            return False

    def _park(self, key: str, upmu: Upmu, message: str) -> None:
        with self._lock:
            if key in self._parked:
                return
            self._parked[key] = (upmu, self.clock() + self.options.park_retry)
        log.error("%s", message)

    # -- writer -------------------------------------------------------------------------

    @property
    def _waiting(self) -> str:
        return "retrying"      # files wait in the queue meanwhile (docs/sync2q.md)

    def _backoff(self) -> Backoff:
        return Backoff(self.options.backoff_first, self.options.backoff_cap)

    def _write_loop(self) -> None:
        """Insert batches, up to ``options.in_flight`` at a time (see
        :meth:`sync2q.insert.Inserter.submit`), handing each to the marker in order once
        all its inserts returned. A failure is handled one batch at a time, in order."""
        window: collections.deque[tuple[Batch, list]] = collections.deque()
        ended = False
        while not ended or window:
            while not ended and len(window) < self.options.in_flight:
                job = self._take_ensure_job()
                if job is not None:
                    self._ensure(job)
                    continue
                try:   # wait for work only when nothing is in flight
                    batch = self._batches.get(timeout=0.2) if not window else \
                        self._batches.get_nowait()
                except queuemod.Empty:
                    if window:
                        break
                    continue
                if batch is None:
                    ended = True
                elif self._stop.is_set():
                    self._abandon(batch)
                else:
                    try:
                        window.append((batch, self.inserter.submit(batch)))
                    except Exception:  # noqa: BLE001 - making streams failed: go slowly
                        self._redo(window, [b for b, _ in window] + [batch])
            if window:
                batch, jobs = window.popleft()
                try:
                    self.inserter.finish(batch, jobs)
                except Exception as exc:  # noqa: BLE001 - retried (and sorted) by _write
                    if classify(exc) is ErrorKind.UNAVAILABLE:
                        self.outage.failed(describe_error(exc), self._waiting)
                    self._redo(window, [batch] + [b for b, _ in window])
                else:
                    self._inserted_ok(batch)

    def _redo(self, window: collections.deque, batches: list[Batch]) -> None:
        """After a failure: let the batches in flight end, then insert ``batches`` (the
        failed one and those in flight, in order) one at a time (REPLACE makes inserting
        again what did get in harmless)."""
        for _, jobs in window:
            futures.wait(jobs)
        window.clear()
        for batch in batches:
            self._write(batch)

    def _inserted_ok(self, batch: Batch) -> None:
        self.outage.succeeded()
        with self._stats_lock:
            self.stats.insert_s += batch.insert_ms / 1e3
        self._inserted.put(batch)

    def _take_ensure_job(self) -> Upmu | None:
        with self._lock:
            return self._ensure_jobs.popleft() if self._ensure_jobs else None

    def _ensure(self, upmu: Upmu) -> None:
        """Create or fix every stream of a new or changed uPMU, files or not."""
        if self.config.by_serial(upmu.serial) != upmu:
            return                     # superseded by a later change
        self._retrying(lambda: self.registry.ensure(upmu, specs_of(upmu)), upmu, None)

    def _write(self, batch: Batch) -> None:
        """Insert one batch, retrying until it is in (or refused, parked, stopping)."""
        if self._stop.is_set():
            self._abandon(batch)
            return
        outcome, reason = self._retrying(lambda: self.inserter.insert(batch), batch.upmu,
                                         batch)
        if outcome is Outcome.OK:
            self._inserted_ok(batch)
        elif outcome is Outcome.REFUSED and len(batch.files) > 1:
            for single in batch.split():    # find the file BTrDB refuses
                self._write(single)
        elif outcome is Outcome.REFUSED:
            self._quarantine(batch.files[0].file, batch.upmu,
                             f"BTrDB refused its data: {reason}")
            self._abandon(batch)
        else:                               # PARKED, STOPPED: the files stay unsynced
            self._abandon(batch)

    def _retrying(self, action: Callable[[], object], upmu: Upmu,
                  batch: Batch | None) -> tuple[Outcome, str]:
        """Run ``action`` until it succeeds (OK), BTrDB refuses ``batch`` (REFUSED), the
        uPMU's streams cannot be made (PARKED), or the worker stops (STOPPED); returns
        that :class:`Outcome` and the reason."""
        backoff = self._backoff()
        missing = 0
        while not self._stop.is_set():
            db = self.btrdb.current
            try:
                action()
            except StreamConflict as exc:
                self.outage.succeeded()
                self._park(upmu.serial.casefold(), upmu, str(exc))
                return Outcome.PARKED, str(exc)
            except Exception as exc:  # noqa: BLE001 - sorted by classify()
                kind, reason = classify(exc), describe_error(exc)
                if kind is ErrorKind.STREAM_MISSING:
                    # A wiped database: create the streams again (then, should the server
                    # keep saying so, wait as for any other failure).
                    self.registry.forget(s.uuid for s in specs_of(upmu).values())
                    missing += 1
                    if missing <= 2:
                        log.warning("uPMU %s: a stream is missing in BTrDB (%s); creating "
                                    "its streams again", upmu.describe(), reason)
                        continue
                elif kind is ErrorKind.REFUSED and batch is not None:
                    self.outage.succeeded()
                    log.warning("uPMU %s: BTrDB refused a batch of %d files (%s)",
                                upmu.describe(), len(batch.files), reason)
                    return Outcome.REFUSED, reason
                self.outage.failed(reason, self._waiting)
                self.btrdb.reset(db)
                self._stop.wait(backoff.next())
                continue
            self.outage.succeeded()
            return Outcome.OK, ""
        return Outcome.STOPPED, ""

    def _abandon(self, batch: Batch | None) -> None:
        """Forget a batch that will not be marked (stopping, parked): its files stay
        unsynced and are listed again."""
        if batch is None:
            return
        with self._lock:
            names = self._inflight.get(batch.serial, set())
            names.difference_update(f.file.name for f in batch.files)
            self._rescan.add(batch.serial.casefold())

    # -- marker -------------------------------------------------------------------------

    def _mark_loop(self) -> None:
        while True:
            batch = self._inserted.get()
            if batch is None:
                return
            for work in batch.files:
                self._mark(batch, work)

    def _mark(self, batch: Batch, work: FileWork) -> None:
        backoff = self._backoff()
        file = work.file
        while True:
            try:
                marked = self.queue.mark_synced(file)
                break
            except QueueError as exc:
                self.queue_outage.failed(" ".join(str(exc).split()),
                                         "retrying to mark files synced with backoff")
                if self._stop.wait(backoff.next()):
                    # Stopping: the file stays unsynced and is inserted again next time
                    # (REPLACE: no duplicates).
                    self._abandon(dataclasses.replace(batch, files=[work]))
                    return
        self.queue_outage.succeeded()
        with self._lock:
            self._inflight[batch.serial].discard(file.name)
            if not marked:
                self._rescan.add(batch.serial.casefold())
        if not marked:
            log.info("uPMU %s: file %s not marked synced: it was replaced or deleted in "
                     "the queue meanwhile (new contents are synced next)",
                     batch.upmu.describe(), file.name)
            return
        points = work.points
        with self._stats_lock:
            self.stats.files += 1
            self.stats.points += points
            self.stats.bytes += file.size
        others = len(batch.files) - 1
        log.info("uPMU %s: file %s synced: %d points, parse %.1f ms, insert %.0f ms%s",
                 batch.upmu.describe(), file.name, points, work.parse_ms, batch.insert_ms,
                 f" (batch of {others + 1} files)" if others else "")
