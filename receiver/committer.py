"""The receiver's writer threads for whole files (:class:`Committer`): files from the event
loop to the queue, their replies back.

Why not ``loop.run_in_executor`` per file: with the SQLite queue, puts from several
threads only wait for each other's lock and are then committed together anyway, and every
file paid a thread wake-up, a lock hand-over and a loop wake-up of its own (measured under
``bench/bench_receiver.py``: futex and scheduler work were a sixth of the receiver's CPU).
Here a queue that group-commits (:attr:`qss.queue.Queue.group_commit`) gets one thread:
it takes every file waiting, stores them with one :meth:`~qss.queue.Queue.put_many` (one
transaction, one fsync), and hands all their replies back to the loop in one call. While
it commits, the next files gather. Other queues (MongoDB) get several threads taking one
file each, so that their writes run in parallel and one slow write holds up no other.
"""
from __future__ import annotations

import asyncio
import logging
import queue as queue_module
import threading
from collections.abc import Callable

from qss.protocol import FAILURE_REPLY

__all__ = ["Committer"]

log = logging.getLogger("receiver")

#: Files per batch at most (the SQLite queue splits a batch further by bytes).
BATCH = 64


class Committer:
    """Runs ``store(jobs) -> replies`` (one reply per job, never raising for a file) in
    ``threads`` threads; each takes every job waiting when ``batch``, else one.
    :meth:`submit` and :meth:`close` are called from the event loop's thread."""

    def __init__(self, store: Callable[[list], list[bytes]], loop: asyncio.AbstractEventLoop,
                 *, threads: int, batch: bool) -> None:
        self._store = store
        self._loop = loop
        self._batch = batch
        self._jobs: queue_module.SimpleQueue = queue_module.SimpleQueue()
        self._threads = [threading.Thread(target=self._run, name=f"receiver-writer_{i}",
                                          daemon=True) for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, job: object) -> asyncio.Future:
        """Queue ``job``; the future's result is its reply (set in the loop's thread)."""
        future = self._loop.create_future()
        self._jobs.put((job, future))
        return future

    def close(self) -> None:
        """Let the threads finish the jobs queued, then end them (waits)."""
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        jobs = self._jobs
        while True:
            first = jobs.get()
            if first is None:
                return
            batch = [first]
            last = False
            while self._batch and len(batch) < BATCH:
                try:
                    item = jobs.get_nowait()
                except queue_module.Empty:
                    break
                if item is None:
                    last = True
                    break
                batch.append(item)
            try:
                replies = self._store([job for job, _ in batch])
                # Not an assert (gone under -O): a reply short would leave a device's
                # connection waiting forever.
                if len(replies) != len(batch):
                    raise RuntimeError(f"{len(replies)} replies for {len(batch)} files")
            except Exception:   # noqa: BLE001 - a bug: refuse the files, keep serving
                log.exception("storing %d files failed", len(batch))
                replies = [FAILURE_REPLY] * len(batch)
            try:
                self._loop.call_soon_threadsafe(_resolve, batch, replies)
            except RuntimeError:   # the loop is closed: nobody waits for the replies
                pass
            if last:
                return


def _resolve(batch: list[tuple[object, asyncio.Future]], replies: list[bytes]) -> None:
    for (_, future), reply in zip(batch, replies):
        if not future.done():
            future.set_result(reply)
