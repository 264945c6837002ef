"""Once insert returns, the points survive SIGKILL of the process: exactly once each."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import numpy as np
import pytest

from qss.tsdb import MAXIMUM_TIME, MINIMUM_TIME, Store, errors

BATCH = 5000

CHILD = textwrap.dedent("""
    import sys, uuid
    import numpy as np
    from qss.tsdb import Store
    store = Store(sys.argv[1], chunk_points=4096)
    u = uuid.UUID(sys.argv[2])
    batch = 0
    while True:
        # Batches interleave in time (even/odd 2^30 windows), so later batches merge
        # into chunks and statistics blocks that earlier ones wrote.
        t = (np.arange({n}) * 10**6 + (batch // 2) * {n} * 10**6 * 2 + (batch % 2) * 10**6 // 2)
        store.insert(u, t.astype(np.int64), np.full({n}, float(batch)))
        print(batch, flush=True)  # acknowledged
        batch += 1
""").format(n=BATCH)


def test_acknowledged_points_survive_sigkill_exactly_once(tmp_path):
    u = uuid.uuid4()
    with Store(tmp_path) as s:
        s.create(u, "durability", {"name": "x"}, {})
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), str(u)],
                             stdout=subprocess.PIPE, text=True, env=env)
    acked = -1
    try:
        deadline = time.monotonic() + 30
        while acked < 40 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            acked = int(line)
        os.kill(child.pid, signal.SIGKILL)  # mid-insert, most likely
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert acked >= 40, "child did not get going"
    with Store(tmp_path) as s:
        t, v, version = s.raw(u, MINIMUM_TIME, MAXIMUM_TIME - 1)
        counts = np.bincount(v.astype(np.int64))
        # Every acknowledged batch is there exactly once; the one in flight at the kill
        # is there whole or not at all (one transaction).
        assert np.all(counts[:acked + 1] == BATCH)
        assert len(counts) <= acked + 2 and counts[acked + 1:].tolist() in ([], [BATCH])
        assert version == 10 + len(counts)
        assert len(np.unique(t)) == len(t)
        assert s.count(u) == len(t)  # statistics agree with the raw data


def test_each_insert_returns_after_an_fsync_begun_after_its_commit(tmp_path, monkeypatch):
    """Group commit of the WAL's fsync: concurrent inserts share fsyncs, none runs under
    the write lock, and none returns before an fsync that began once its commit had
    written its frames."""
    from qss.tsdb import db as dbmod

    events = []  # ("fsync", commits counted at its start, end order) / ("ack", commit, order)
    order = iter(range(10**9))
    real_fsync = dbmod.Db._fsync_wal
    real_durable = dbmod.Db._make_durable
    held = []

    def fsync(self):
        begun = self._commits
        assert not self.conn().in_transaction  # after COMMIT, outside the write lock
        if begun > 6 and not held:  # once, during the inserts: a slow disk. Hold this
            held.append(begun)      # fsync until two other writers have committed, so
            deadline = time.monotonic() + 30  # that the next fsync serves both
            while self._commits < begun + 2 and time.monotonic() < deadline:
                time.sleep(0.001)
        real_fsync(self)
        events.append(("fsync", begun, next(order)))

    def durable(self, commit):
        real_durable(self, commit)
        events.append(("ack", commit, next(order)))

    monkeypatch.setattr(dbmod.Db, "_fsync_wal", fsync)
    monkeypatch.setattr(dbmod.Db, "_make_durable", durable)
    with Store(tmp_path) as store:
        uuids = [uuid.uuid4() for _ in range(6)]
        for i, u in enumerate(uuids):
            store.create(u, "test/c", {"name": f"s{i}"}, {})

        def writer(u):
            for k in range(10):
                t = np.arange(1000, dtype=np.int64) + k * 1000
                store.insert(u, t, np.ones(1000))

        threads = [threading.Thread(target=writer, args=(u,)) for u in uuids]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        for u in uuids:
            assert store.raw(u, MINIMUM_TIME, MAXIMUM_TIME - 1)[0].size == 10_000
    fsyncs = [(begun, at) for kind, begun, at in events if kind == "fsync"]
    acks = [(commit, at) for kind, commit, at in events if kind == "ack"]
    inserts = [c for c, _ in acks if c > len(uuids)]  # after the creates
    assert len(inserts) == 60
    for commit, at in acks:
        assert any(begun >= commit and end < at for begun, end in fsyncs), commit
    assert len(fsyncs) < len(acks)  # concurrent commits shared fsyncs


def test_a_failed_fsync_fails_the_insert_and_refuses_later_writes(tmp_path, monkeypatch):
    from qss.tsdb import db as dbmod

    with Store(tmp_path) as store:
        u = uuid.uuid4()
        store.create(u, "test/c", {"name": "s"}, {})
        store.insert(u, np.arange(10, dtype=np.int64), np.ones(10))

        def broken(fd):
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(dbmod.os, "fdatasync", broken)
        with pytest.raises(errors.StorageFailure):
            store.insert(u, np.arange(10, 20, dtype=np.int64), np.ones(10))
        monkeypatch.undo()
        with pytest.raises(errors.StorageFailure):  # durability of recent commits unknown
            store.insert(u, np.arange(20, 30, dtype=np.int64), np.ones(10))
        assert store.raw(u, MINIMUM_TIME, MAXIMUM_TIME - 1)[0].size in (10, 20)
