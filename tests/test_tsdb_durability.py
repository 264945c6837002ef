"""Once insert returns, the points survive SIGKILL of the process: exactly once each.
Surviving power loss takes an fsync of the WAL: before an insert with ``sync`` returns,
at a Flush, within SYNC_DELAY_SECONDS in the background, and at close."""
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

from tsdb import MAXIMUM_TIME, MINIMUM_TIME, Store, errors
from waiting import wait_until

BATCH = 5000

CHILD = textwrap.dedent("""
    import sys, uuid
    import numpy as np
    from tsdb import Store
    store = Store(sys.argv[1], chunk_points=4096)
    u = uuid.UUID(sys.argv[2])
    batch = 0
    while True:
        # Batches interleave in time (even/odd 2^30 windows), so later batches merge
        # into chunks and statistics blocks that earlier ones wrote.
        t = (np.arange({n}) * 10**6 + (batch // 2) * {n} * 10**6 * 2 + (batch % 2) * 10**6 // 2)
        store.insert(u, t.astype(np.int64), np.full({n}, float(batch)),
                     sync=sys.argv[3] == "sync")
        print(batch, flush=True)  # acknowledged
        batch += 1
""").format(n=BATCH)


# Without ``sync`` (what the official client sends) nothing waits for an fsync: the
# committed WAL frames in the page cache are what survives the SIGKILL.
@pytest.mark.parametrize("sync", ["sync", "nosync"])
def test_acknowledged_points_survive_sigkill_exactly_once(tmp_path, sync):
    u = uuid.uuid4()
    with Store(tmp_path) as s:
        s.create(u, "durability", {"name": "x"}, {})
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), str(u), sync],
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
    from tsdb import db as dbmod

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
        recorded = list(events)  # the inserts' (closing the store syncs once more)
    fsyncs = [(begun, at) for kind, begun, at in recorded if kind == "fsync"]
    acks = [(commit, at) for kind, commit, at in recorded if kind == "ack"]
    inserts = [c for c, _ in acks if c > len(uuids)]  # after the creates
    assert len(inserts) == 60
    for commit, at in acks:
        assert any(begun >= commit and end < at for begun, end in fsyncs), commit
    assert len(fsyncs) < len(acks)  # concurrent commits shared fsyncs


def test_a_failed_fsync_fails_the_insert_and_refuses_later_writes(tmp_path, monkeypatch):
    from tsdb import db as dbmod

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


@pytest.fixture
def fsyncs(monkeypatch):
    """The WAL fsyncs made from now on: (commits counted when it began, thread name).
    The background fsync waits an hour unless a test shortens it."""
    from tsdb import db as dbmod

    made = []
    real = dbmod.Db._fsync_wal

    def fsync(self):
        began = self._commits
        real(self)
        made.append((began, threading.current_thread().name))

    monkeypatch.setattr(dbmod.Db, "_fsync_wal", fsync)
    monkeypatch.setattr(dbmod, "SYNC_DELAY_SECONDS", 3600.0)
    return made


def _stream(store):
    u = uuid.uuid4()
    store.create(u, "test/c", {"name": "s"}, {})
    return u


def test_an_insert_without_sync_waits_for_no_fsync_and_flush_makes_it_durable(tmp_path,
                                                                              fsyncs):
    with Store(tmp_path) as store:
        u = _stream(store)
        before = len(fsyncs)
        for k in range(3):
            store.insert(u, np.arange(10, dtype=np.int64) + 10 * k, np.ones(10), sync=False)
        assert len(fsyncs) == before  # committed, not yet fsynced
        assert store.db._synced < store.db._commits
        store.flush(u)
        assert len(fsyncs) == before + 1  # one fsync for the three
        assert fsyncs[-1][0] == store.db._commits == store.db._synced
        store.flush(u)
        assert len(fsyncs) == before + 1  # nothing new to make durable
        store.insert(u, np.arange(30, 40, dtype=np.int64), np.ones(10), sync=True)
        assert len(fsyncs) == before + 2 and fsyncs[-1][0] == store.db._commits
        with pytest.raises(errors.StreamNotFound):
            store.flush(uuid.uuid4())


def test_unflushed_inserts_are_fsynced_in_the_background_and_at_close(tmp_path, fsyncs,
                                                                      monkeypatch):
    from tsdb import db as dbmod

    monkeypatch.setattr(dbmod, "SYNC_DELAY_SECONDS", 0.05)
    with Store(tmp_path) as store:
        u = _stream(store)
        store.insert(u, np.arange(10, dtype=np.int64), np.ones(10), sync=False)
        commit = store.db._commits
        wait_until(lambda: store.db._synced, until=lambda synced: synced >= commit,
                   timeout=20, interval=0.005, what=f"commit {commit} fsynced in the background")
        assert any(began >= commit and name == "tsdb-sync" for began, name in fsyncs)
    monkeypatch.setattr(dbmod, "SYNC_DELAY_SECONDS", 3600.0)
    store = Store(tmp_path)
    store.insert(u, np.arange(10, 20, dtype=np.int64), np.ones(10), sync=False)
    commit, before = store.db._commits, len(fsyncs)
    store.close()  # SIGTERM's path: what was not yet fsynced is, before the files close
    assert len(fsyncs) == before + 1 and fsyncs[-1][0] == commit
    with Store(tmp_path) as store:
        assert store.raw(u, MINIMUM_TIME, MAXIMUM_TIME - 1)[0].size == 20


def test_a_failed_background_fsync_refuses_later_writes_and_flushes(tmp_path, monkeypatch,
                                                                    caplog):
    from tsdb import db as dbmod

    monkeypatch.setattr(dbmod, "SYNC_DELAY_SECONDS", 0.01)
    with Store(tmp_path) as store:
        u = _stream(store)

        def broken(fd):
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(dbmod.os, "fdatasync", broken)
        store.insert(u, np.arange(10, dtype=np.int64), np.ones(10), sync=False)
        wait_until(lambda: store.db._sync_error, until=lambda error: error is not None,
                   timeout=20, interval=0.005, what="the background fsync to fail")
        monkeypatch.setattr(dbmod.os, "fdatasync", os.fdatasync)
        with pytest.raises(errors.StorageFailure, match="Input/output error"):
            store.flush(u)
        with pytest.raises(errors.StorageFailure, match="refused"):
            store.insert(u, np.arange(10, 20, dtype=np.int64), np.ones(10), sync=False)
        wait_until(lambda: "writes are refused until the server is restarted" in caplog.text,
                   timeout=20, interval=0.005, what="the refusal logged",
                   detail=lambda: caplog.text)


def test_the_official_client_inserts_without_fsync_and_its_flush_fsyncs(tmp_path, fsyncs):
    """Over real gRPC: ArrowInsert and Insert as the client sends them (sync false) wait
    for no fsync; Stream.flush does; an Insert with sync set waits for its own."""
    import pyarrow as pa
    from btrdb.conn import BTrDB, Connection
    from btrdb.endpoint import Endpoint
    from btrdb.grpcinterface import btrdb_pb2 as pb

    from tsdb.grpc_service import make_server

    store = Store(tmp_path)
    server, port = make_server(store, "127.0.0.1:0")
    server.start()
    channel = Connection(f"127.0.0.1:{port}").channel
    db = BTrDB(Endpoint(channel))
    try:
        stream = db.create(uuid.uuid4(), "test/c", tags={"name": "s"}, annotations={})
        before = len(fsyncs)
        t = pa.array(np.arange(1000, dtype=np.int64) * 10**6, pa.timestamp("ns", tz="UTC"))
        stream.arrow_insert(pa.Table.from_arrays([t, pa.array(np.ones(1000))],
                                                 names=["time", "value"]))
        stream.insert([(2 * 10**9, 1.0), (3 * 10**9, 2.0)])
        assert len(fsyncs) == before and store.db._synced < store.db._commits
        stream.flush()
        assert len(fsyncs) == before + 1 and store.db._synced == store.db._commits
        answer = db.ep.stub.Insert(pb.InsertParams(
            uuid=stream.uuid.bytes, sync=True, merge_policy=pb.MergePolicy.NEVER,
            values=[pb.RawPoint(time=4 * 10**9, value=3.0)]))
        assert answer.stat.code == 0
        assert len(fsyncs) == before + 2 and store.db._synced == store.db._commits
        assert stream.count() == 1003
    finally:
        db._executor.shutdown()
        channel.close()
        server.stop(0).wait()
        store.close()


def test_a_flush_waits_for_its_own_streams_commits_only(tmp_path, fsyncs):
    """Flushing the streams of a batch after inserting them all takes one fsync: the
    first flush covers every commit so far, and a later flush whose stream has nothing
    newer returns without another, even while other streams keep committing."""
    with Store(tmp_path) as store:
        a, b = uuid.uuid4(), uuid.uuid4()
        store.create(a, "test/a", {"name": "s"}, {})
        store.create(b, "test/b", {"name": "s"}, {})
        before = len(fsyncs)
        store.insert(a, np.arange(10, dtype=np.int64), np.ones(10), sync=False)
        store.insert(b, np.arange(10, dtype=np.int64), np.ones(10), sync=False)
        store.flush(a)
        assert len(fsyncs) == before + 1 and store.db._synced == store.db._commits
        store.insert(b, np.arange(10, 20, dtype=np.int64), np.ones(10), sync=False)
        store.flush(a)  # a's points are on disk already; b's new insert is not a's
        assert len(fsyncs) == before + 1 and store.db._synced < store.db._commits
        store.flush(b)
        assert len(fsyncs) == before + 2 and store.db._synced == store.db._commits
