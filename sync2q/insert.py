"""Writing a batch into BTrDB through the official client, stream by stream.

Each stream of a :class:`~sync2q.batch.Batch` goes in with one Arrow insert RPC (Arrow
IPC, when the server reports v5.30 or later) or ``Stream.insert`` (RawPoints,
otherwise), merge policy REPLACE: inserting a file again (after a crash between insert
and marking it synced, or a BTrDB outage mid-batch) rewrites the same points instead of
duplicating them. A batch is one Arrow RPC per stream: :func:`arrow_insert` calls the
official client's ``Endpoint.arrowInsertValues`` (what ``Stream.arrow_insert`` calls) with
up to :data:`~sync2q.batch.BATCH_SAMPLES` points each. ``Stream.arrow_insert`` itself
would cut the table at ``btrdb.stream.INSERT_BATCH_SIZE`` (50,000), a module global with
no per-call override; raising it would change the client for every other user in the
process. RawPoints calls stay at 50,000 points (their messages are larger per point).

Once every stream's insert of a batch has returned, each stream is flushed
(``Stream.flush``): the client inserts without BTrDB's ``sync`` flag, so only a flush
says the points are on disk (a real BTrDB buffers them in memory; the embedded server
has committed them, and fsyncs at the flush). Flushing after all the inserts rather than
after each lets one fsync of the embedded server cover the whole batch (its Flush waits
only for the stream's own commits). A file is marked synced only after every stream's
insert and flush returned.

The streams of one batch are independent, so they are inserted by a small pool of
threads: the server prepares one stream's chunks while it commits another's, and the
client's Arrow encoding and gRPC I/O release the GIL. :meth:`Inserter.finish` returns
only when every stream's insert of the batch has returned, and if any failed it waits
for the others before raising, so a retry never overlaps an insert still running.
"""
from __future__ import annotations

import logging
import time
import weakref
from concurrent import futures

import numpy as np

from .batch import BATCH_SAMPLES, Batch
from qss.btrdbclient import Btrdb, arrow_insert
from qss.streammeta import StreamRegistry

log = logging.getLogger("sync2q")

MERGE = "replace"
#: Points per RawPoints RPC (the client's own default; ~21 bytes a point on the wire).
RAW_RPC_POINTS = 50_000


class Skipped(Exception):
    """A stream's insert was not attempted because the batch before it on the same
    stream failed (the batches are then redone in order)."""


class Inserter:
    """Inserts batches; ``threads`` streams at a time.

    :meth:`submit` starts a batch without waiting, so the next batch's streams can start
    while the last streams of this one finish (no idle thread at a batch boundary). The
    inserts of one stream still happen in batch order: each waits for the same stream's
    previous insert, and is skipped if that one failed.
    """

    def __init__(self, btrdb: Btrdb, registry: StreamRegistry, threads: int = 2,
                 clock=time.perf_counter) -> None:
        self._btrdb = btrdb
        self._registry = registry
        self._clock = clock
        self._pool = futures.ThreadPoolExecutor(max_workers=max(1, threads),
                                                thread_name_prefix="sync2q-insert")
        self._last: dict = {}        # stream uuid -> the future of its latest insert
        # A submitted batch -> its streams, flushed by finish() after every insert.
        self._flush: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def submit(self, batch: Batch, chain: bool = True) -> list[futures.Future]:
        """Make sure the batch's streams exist (waiting for that), then start inserting
        them; returns one future per stream. ``chain=False`` is for a batch inserted
        alone, with nothing else in flight: it neither waits for nor is waited for by
        other inserts (a retry after a failure must not be skipped because of it).

        Raises:
            StreamConflict, or an error of the client, from making the streams.
        """
        batch.started = self._clock()
        names = batch.stream_names()
        handles = self._registry.ensure(batch.upmu, batch.specs, names)
        arrow = self._btrdb.arrow
        jobs = []
        for name in names:
            uuid = batch.specs[name].uuid
            # The pool runs tasks in submission order, so the previous insert of this
            # stream has started (or ended) before this one waits for it: no deadlock.
            previous = self._last.pop(uuid, None)
            job = self._pool.submit(self._one, previous if chain else None, handles[name],
                                    *batch.stream_points(name), arrow)
            if chain:
                self._last[uuid] = job
            jobs.append(job)
        self._flush[batch] = [handles[name] for name in names]
        return jobs

    def finish(self, batch: Batch, jobs: list[futures.Future]) -> None:
        """Wait for a submitted batch's inserts, then flush each of its streams; sets
        ``batch.insert_ms``.

        Raises:
            Exception: the first failure (a client error, or :class:`Skipped`), once
                every stream's insert has ended; or a client error from a flush.
        """
        futures.wait(jobs)
        for job in jobs:
            job.result()
        for stream in self._flush.pop(batch, ()):
            stream.flush()  # on disk, not only in the server's buffers or page cache
        batch.insert_ms = (self._clock() - batch.started) * 1e3

    def insert(self, batch: Batch) -> None:
        """Insert a batch alone (nothing else in flight): :meth:`submit` without chaining,
        and :meth:`finish`."""
        self.finish(batch, self.submit(batch, chain=False))

    @staticmethod
    def _one(previous: futures.Future | None, stream, t: np.ndarray, v: np.ndarray,
             arrow: bool) -> None:
        if previous is not None and previous.exception() is not None:
            raise Skipped("the previous insert of this stream failed")
        if arrow:
            arrow_insert(stream, t, v, MERGE, BATCH_SAMPLES)
            return
        for lo in range(0, len(t), RAW_RPC_POINTS):
            stream.insert(list(zip(t[lo:lo + RAW_RPC_POINTS].tolist(),
                                   v[lo:lo + RAW_RPC_POINTS].tolist())), merge=MERGE)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._last.clear()
