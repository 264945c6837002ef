"""The embedded SQLite queue beyond the interface: crash safety, several processes,
memory for the largest file, giving space back, and refusing what is not a queue."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from qss.queue import PutResult, QueueError, Tally, open_queue
from qss.queue import sqlite_wal
from qss.queue.sqlite import PAGE_SIZE, SqliteQueue


def contents(name: str, size: int = 200_000) -> bytes:
    """Deterministic contents per name, so any stored file can be checked on its own."""
    seed = hashlib.sha256(name.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def run_child(code: str, *args: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env,
                            stdout=subprocess.PIPE, text=True, **kwargs)


PUTTER = """
    import sys
    from qss.queue import open_queue
    from tests.test_queue_sqlite import contents
    queue = open_queue("sqlite:///" + sys.argv[1])
    prefix, count = sys.argv[2], int(sys.argv[3])
    for i in range(count):
        name = f"/root/upmu_data/{prefix}{i:05d}.dat"
        result = queue.put("P3001276", name, contents(name))
        print(name, result.value, flush=True)
"""


def test_sigkill_mid_puts_keeps_every_acknowledged_file_and_no_half_file(tmp_path):
    db = str(tmp_path / "queue.db")
    child = run_child(PUTTER, db, "a", "100000")
    acknowledged = []
    try:
        for line in child.stdout:
            acknowledged.append(line.split()[0])
            if len(acknowledged) == 40:
                os.kill(child.pid, signal.SIGKILL)   # most likely inside a put
                break
        acknowledged += [line.split()[0] for line in child.stdout]  # printed before the kill
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    check = sqlite3.connect(db)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    check.close()
    with open_queue(f"sqlite:///{db}") as queue:
        stored = {f.name: f for f in queue.files("P3001276")}
        assert set(acknowledged) <= set(stored)
        assert len(stored) <= len(acknowledged) + 1          # at most the one in flight
        for name, file in stored.items():
            assert file.size == 200_000
            assert bytes(queue.read(file)) == contents(name)  # whole, never half
        # The device resends what it had no reply for: exactly one copy of each.
        for name in acknowledged:
            assert queue.put("P3001276", name, contents(name)) is PutResult.DUPLICATE
        assert len(list(queue.files("P3001276"))) == len(stored)


def test_several_processes_at_once(tmp_path):
    db = str(tmp_path / "queue.db")
    SqliteQueue(db).close()
    # Two writers on overlapping names and one syncing reader, all at once.
    writers = [run_child(PUTTER, db, "x", "60") for _ in range(2)]
    syncer = run_child("""
        import sys, time
        from qss.queue import open_queue
        queue = open_queue("sqlite:///" + sys.argv[1])
        marked = 0
        deadline = time.monotonic() + 60
        while marked < 60 and time.monotonic() < deadline:
            for file in queue.unsynced("P3001276", page_size=7):
                queue.read(file)
                marked += queue.mark_synced(file)
        print(marked)
    """, db)
    results = []
    for w in writers:
        out, _ = w.communicate(timeout=60)
        assert w.returncode == 0
        results += [line.split()[1] for line in out.splitlines()]
    out, _ = syncer.communicate(timeout=60)
    assert syncer.returncode == 0 and int(out) == 60
    assert sorted(results) == ["duplicate"] * 60 + ["new"] * 60
    with open_queue(f"sqlite:///{db}") as queue:
        assert queue.count_synced() == Tally(60, 60 * 200_000)
        assert list(queue.unsynced("P3001276")) == []


def test_a_75_mb_file_is_not_held_twice(tmp_path):
    child = run_child("""
        import json, resource, sys
        from qss.queue import open_queue
        def peak():
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        queue = open_queue("sqlite:///" + sys.argv[1])
        data = bytearray(b"u") * 75_744_000   # one buffer, no temporary copy
        before = peak()
        queue.put("P3001276", "/big.dat", memoryview(data))
        after_put = peak()
        del data
        file = queue.get("P3001276", "/big.dat")
        back = queue.read(file)
        after_read = peak()
        ok = len(back) == 75_744_000 and back.count(b"u") == len(back)
        print(json.dumps([before, after_put, after_read, ok]))
    """, str(tmp_path / "queue.db"))
    out, _ = child.communicate(timeout=120)
    before, after_put, after_read, ok = json.loads(out)
    assert ok
    mb = 1 << 20
    # Storing adds only the 1 MiB pieces and SQLite's page cache, not a second copy.
    assert after_put - before < 12 * mb, (before, after_put)
    # Reading fills one buffer: the peak stays near one copy (the freed input's pages are
    # reused), far below two.
    assert after_read - before < 12 * mb, (before, after_read)


def test_delete_gives_space_back_to_the_file_system(tmp_path):
    db = tmp_path / "queue.db"
    with SqliteQueue(str(db)) as queue:
        for i in range(40):
            queue.put("P1", f"/f{i:03d}", contents(f"/f{i:03d}", 500_000))
        for file in list(queue.unsynced("P1"))[:30]:
            queue.mark_synced(file)
        queue.reclaim()
        full = os.path.getsize(db) + os.path.getsize(str(db) + "-wal")
        assert queue.delete_synced() == Tally(30, 30 * 500_000)
        left = os.path.getsize(db) + os.path.getsize(str(db) + "-wal")
        assert full - left > 25 * 500_000
        for file in queue.files("P1"):
            assert bytes(queue.read(file)) == contents(file.name, 500_000)


def test_file_settings(tmp_path):
    with SqliteQueue(str(tmp_path / "queue.db")) as queue:
        pragma = lambda p: queue._db.execute(f"PRAGMA {p}").fetchone()[0]   # noqa: E731
        assert pragma("page_size") == PAGE_SIZE
        assert pragma("journal_mode") == "wal"
        assert pragma("synchronous") == 2          # FULL
        assert pragma("auto_vacuum") == 2          # INCREMENTAL
        assert queue.storage_dir == str(tmp_path)
        queue._db.execute("DROP INDEX received_files_sync")
        assert queue.ensure_indexes() == [
            "received_files_sync on received_files (serial_number, ytag, name)"]


def test_refuses_what_is_not_a_queue(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(QueueError, match="cannot use it as a queue"):
        open_queue(f"sqlite:///{junk}")
    newer = tmp_path / "newer.db"
    SqliteQueue(str(newer)).close()
    con = sqlite3.connect(newer)
    con.execute("UPDATE meta SET value = 99 WHERE key = 'schema'")
    con.commit()
    con.close()
    with pytest.raises(QueueError, match="schema version 99 is newer"):
        open_queue(f"sqlite:///{newer}")
    with pytest.raises(QueueError, match="must be absolute"):
        open_queue("sqlite:///relative/queue.db")


def test_group_commit_stores_waiting_puts_together_and_fails_them_together(tmp_path):
    queue = SqliteQueue(str(tmp_path / "queue.db"))
    commits = []
    original = queue._commit

    def counting(batch):
        commits.append(len(batch))
        if any(r.name == "/poison" for r in batch):
            queue._put_one = broken          # this transaction fails as a whole
            try:
                original(batch)
            finally:
                del queue._put_one
        else:
            original(batch)

    def broken(db, request):
        raise sqlite3.OperationalError("disk I/O error")

    queue._commit = counting
    results: dict[str, object] = {}

    def worker(t):
        for i in range(25):
            name = f"/t{t}/{i:03d}"
            results[name] = queue.put("P1", name, contents(name, 50_000))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(results.values()) == {PutResult.NEW} and len(results) == 200
    assert len(commits) < 200                   # several files per transaction
    assert sum(commits) == 200
    for file in queue.files("P1"):
        assert bytes(queue.read(file)) == contents(file.name, 50_000)
    with pytest.raises(QueueError, match="cannot store file '/poison' of uPMU P1: disk I/O"):
        queue.put("P1", "/poison", b"x")
    assert queue.get("P1", "/poison") is None
    queue._commit = original
    assert queue.put("P1", "/poison", b"x") is PutResult.NEW
    queue.close()


def test_each_put_returns_after_an_fsync_of_the_wal_begun_after_its_commit(tmp_path):
    """The fsync of puts runs outside the write lock, is shared by the puts that commit
    while one runs, and no put returns before an fsync that began after its commit."""
    queue = SqliteQueue(str(tmp_path / "queue.db"))
    sync = queue._wal_sync
    real_fsync, real_wait = sync._fsync, sync.wait
    fsyncs: list[int] = []   # commits counted when each finished fsync began
    acks: list[tuple[int, int]] = []   # (commit, latest commit covered by an fsync then)
    lock = threading.Lock()

    def fsync():
        assert not queue._lock._is_owned()   # no other writer waits for the disk
        begun = sync._commits
        time.sleep(0.005)                    # a slow disk: puts gather meanwhile
        real_fsync()
        with lock:
            fsyncs.append(begun)

    def wait(commit):
        real_wait(commit)
        with lock:
            acks.append((commit, max(fsyncs, default=0)))

    sync._fsync, sync.wait = fsync, wait

    def worker(t):
        for i in range(20):
            name = f"/t{t}/{i:03d}"
            assert queue.put("P1", name, contents(name, 20_000)) is PutResult.NEW

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(acks) == sync._commits and all(covered >= commit for commit, covered in acks)
    assert len(fsyncs) < sync._commits          # shared
    assert sum(1 for _ in queue.files("P1")) == 120
    queue.close()


def test_after_a_failed_fsync_of_the_wal_no_put_is_acknowledged(tmp_path):
    # Linux marks the pages clean after a failed fsync: a later one succeeding would
    # prove nothing, so the queue refuses files until it is opened again.
    queue = SqliteQueue(str(tmp_path / "queue.db"))
    assert queue.put("P1", "/a", b"1") is PutResult.NEW

    def failing():
        raise OSError(errno.EIO, "Input/output error")

    queue._wal_sync._fsync = failing
    with pytest.raises(QueueError, match="cannot make file '/b' of uPMU P1 durable: fsync "
                                         "of the WAL failed \\(Input/output error\\)"):
        queue.put("P1", "/b", b"2")
    del queue._wal_sync._fsync   # the disk is fine again: still refused
    assert isinstance(queue.put_many([("P1", "/c", b"3")])[0], QueueError)
    queue.close()
    reopened = SqliteQueue(str(tmp_path / "queue.db"))
    # Committed, never acknowledged: the device's resend is acknowledged now.
    assert reopened.put("P1", "/c", b"3") is PutResult.DUPLICATE
    assert reopened.put("P1", "/d", b"4") is PutResult.NEW
    reopened.close()


def test_a_queue_file_symlinked_elsewhere_fsyncs_the_wal_sqlite_writes(tmp_path,
                                                                       monkeypatch):
    # SQLite names the WAL after the symlink's target; a stray file next to the link
    # (left from before the queue was moved) must not be the one fsynced.
    (tmp_path / "real").mkdir()
    (tmp_path / "link").mkdir()
    os.symlink("../real/queue.db", tmp_path / "link" / "queue.db")
    stray = tmp_path / "link" / "queue.db-wal"
    stray.write_bytes(b"")
    synced: list[int] = []
    real_fdatasync = os.fdatasync

    def fdatasync(fd):
        synced.append(os.fstat(fd).st_ino)
        real_fdatasync(fd)

    monkeypatch.setattr(sqlite_wal.os, "fdatasync", fdatasync)
    queue = SqliteQueue(str(tmp_path / "link" / "queue.db"))
    assert queue.put("P1", "/a", b"1") is PutResult.NEW
    assert queue.put_many([("P1", "/b", b"2")]) == [PutResult.NEW]
    real_wal = os.stat(tmp_path / "real" / "queue.db-wal").st_ino
    assert synced and set(synced) == {real_wal}
    assert os.stat(stray).st_ino != real_wal
    queue.close()


def test_an_error_opening_the_wal_fails_the_open_not_later_puts(tmp_path, monkeypatch):
    path = str(tmp_path / "queue.db")
    SqliteQueue(path).close()
    real_open = os.open

    def open_(name, *args, **kwargs):
        if str(name).endswith("-wal"):
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr(sqlite_wal.os, "open", open_)
    with pytest.raises(QueueError, match=r"cannot open its WAL .*queue\.db-wal: Too many "
                                         r"open files$"):
        SqliteQueue(path)
    monkeypatch.setattr(sqlite_wal.os, "open", real_open)   # descriptors freed again
    queue = SqliteQueue(path)
    assert queue.put("P1", "/a", b"1") is PutResult.NEW
    queue.close()


def test_a_replaced_wal_fails_the_open_with_one_line(tmp_path, monkeypatch):
    path = str(tmp_path / "queue.db")
    SqliteQueue(path).close()
    real_stat = os.stat
    other = real_stat(path)   # another inode than the WAL's

    def stat(name, *args, **kwargs):
        return other if str(name).endswith("-wal") else real_stat(name, *args, **kwargs)

    monkeypatch.setattr(sqlite_wal.os, "stat", stat)
    with pytest.raises(QueueError, match="cannot open its WAL .*: the file opened is not "
                                         "the WAL SQLite uses"):
        SqliteQueue(path)


def test_close_waits_for_a_running_fsync_of_the_wal(tmp_path):
    queue = SqliteQueue(str(tmp_path / "queue.db"))
    sync = queue._wal_sync
    real_fsync = sync._fsync
    started, release = threading.Event(), threading.Event()

    def slow_fsync():
        started.set()
        assert release.wait(10)
        real_fsync()   # the descriptor is still open: close() waits for this

    sync._fsync = slow_fsync
    results = []
    put = threading.Thread(target=lambda: results.append(queue.put("P1", "/a", b"1")))
    put.start()
    assert started.wait(10)
    closing = threading.Thread(target=queue.close)
    closing.start()
    closing.join(0.3)
    assert closing.is_alive()          # waiting for the fsync, descriptor not closed
    release.set()
    put.join(10)
    closing.join(10)
    assert not closing.is_alive() and results == [PutResult.NEW]
    assert sync.closed
    with pytest.raises(OSError, match="the queue is closed"):
        sync.wait(sync._commits + 1)


def test_under_non_stop_puts_the_wal_starts_over_instead_of_growing(tmp_path, monkeypatch):
    # A passive checkpoint never catches up while puts go on; the checkpointer then
    # restarts the WAL under the write lock, so the file stays near WAL_RESTART.
    monkeypatch.setattr(sqlite_wal, "WAL_RESTART", 2 << 20)
    monkeypatch.setattr(sqlite_wal, "CHECKPOINT_S", 0.02)
    queue = SqliteQueue(str(tmp_path / "queue.db"))
    wal = str(tmp_path / "queue.db-wal")
    data = contents("x", 300_000)
    largest = written = 0
    # Until 160 MB are written (80 x WAL_RESTART), not for a fixed time: a loaded machine
    # or a slow disk writes less per second. (The WAL's size is its high-water mark, and
    # the first ~20 MB come before the checkpointer's first passes: measured.)
    deadline = time.monotonic() + 60
    while written * len(data) <= 160 << 20 and time.monotonic() < deadline:
        queue.put_many([("P1", f"/f{written + i}", data) for i in range(4)])
        written += 4
        largest = max(largest, os.path.getsize(wal))
    total = written * len(data)
    assert total > 160 << 20, "too few puts to tell in 60 s"
    assert largest < total / 4   # without restarts the WAL holds every byte written
    queue.close()


def test_a_new_queue_file_is_group_writable_under_a_group_umask(tmp_path):
    # The services run with umask 007 and the operator (group qss) writes the queue too.
    old = os.umask(0o007)
    try:
        q = open_queue(f"sqlite:///{tmp_path}/queue.db")
        q.put("P1", "/a", b"1")
        q.close()
    finally:
        os.umask(old)
    assert (tmp_path / "queue.db").stat().st_mode & 0o777 == 0o660


class _AfterSelect:
    """The queue's connection, running ``hook`` right after the clean-up's SELECT."""

    def __init__(self, db, hook):
        self._db, self._hook = db, hook

    def execute(self, sql, *args):
        cur = self._db.execute(sql, *args)
        if self._hook and sql.startswith("SELECT id, size FROM received_files"):
            rows = cur.fetchall()
            hook, self._hook = self._hook, None
            hook()
            return _Rows(rows)
        return cur

    def __getattr__(self, name):
        return getattr(self._db, name)


class _Rows:
    def __init__(self, rows):
        self._rows = rows

    def fetchall(self):
        return self._rows


def test_clean_up_never_deletes_a_file_replaced_while_it_runs(tmp_path):
    # A device resends a synced file with new bytes, from another process, between the
    # clean-up's look at the synced files and its delete; the resend was acknowledged (the
    # device deleted its copy), so the new bytes must survive.
    url = f"sqlite:///{tmp_path}/queue.db"
    cleaner, receiver = open_queue(url), open_queue(url)
    receiver.put("P1", "/a.dat", b"old")
    assert receiver.mark_synced(receiver.get("P1", "/a.dat"))
    resend = threading.Thread(target=receiver.put, args=("P1", "/a.dat", b"new bytes"))

    def device_resends():
        resend.start()
        resend.join(1.0)  # blocks on the clean-up's write lock when selecting is atomic

    cleaner._db = _AfterSelect(cleaner._db, device_resends)
    cleaner.delete_synced()
    resend.join()
    file = receiver.get("P1", "/a.dat")
    assert file is not None and bytes(receiver.read(file)) == b"new bytes"
    assert not file.synced(receiver.ytagbase)
    cleaner.close()
    receiver.close()


def test_the_queue_recovers_after_a_write_fails_for_lack_of_space(tmp_path):
    q = open_queue(f"sqlite:///{tmp_path}/queue.db")
    q.put("P1", "/a", b"x")
    db = q._db
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages + 1}")
    with pytest.raises(QueueError):
        q.put("P1", "/big", os.urandom(4 * PAGE_SIZE))
    assert not db.in_transaction
    db.execute("PRAGMA max_page_count = 1073741823")
    assert q.put("P1", "/big", b"fits now") is PutResult.NEW
    assert q.get("P1", "/big") is not None
    q.close()
