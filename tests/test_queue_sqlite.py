"""The embedded SQLite queue beyond the interface: crash safety, several processes,
memory for the largest file, giving space back, and refusing what is not a queue."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading

import pytest

from qss.queue import PutResult, QueueError, Tally, open_queue
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


def queue_bytes(db) -> int:
    """The queue's size on disk: its SQLite file, WAL and data files."""
    data = [p.stat().st_size for p in db.with_name(db.name + ".data").iterdir()] \
        if db.with_name(db.name + ".data").is_dir() else []
    return os.path.getsize(db) + os.path.getsize(str(db) + "-wal") + sum(data)


def test_delete_gives_space_back_to_the_file_system(tmp_path, monkeypatch):
    monkeypatch.setattr("qss.queue.sqlite_segments.SEGMENT_BYTES", 2_000_000)
    db = tmp_path / "queue.db"
    with SqliteQueue(str(db)) as queue:
        for i in range(40):
            queue.put("P1", f"/f{i:03d}", contents(f"/f{i:03d}", 500_000))
        for file in list(queue.unsynced("P1"))[:30]:
            queue.mark_synced(file)
        queue.reclaim()
        full = queue_bytes(db)
        assert queue.delete_synced() == Tally(30, 30 * 500_000)
        left = queue_bytes(db)
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
            queue._plan = broken             # this transaction fails as a whole
            try:
                original(batch)
            finally:
                del queue._plan
        else:
            original(batch)

    def broken(db, batch):
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
        if self._hook and sql.startswith("SELECT id, size, segment FROM received_files"):
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
    db.execute(f"PRAGMA max_page_count = {pages}")
    # The rows do not fit (long names): the commit fails after the contents were written.
    batch = [("P1", f"/big/{i}/" + "n" * 4000, os.urandom(50_000)) for i in range(4)]
    assert all(isinstance(r, QueueError) for r in q.put_many(batch))
    assert not db.in_transaction
    [segment] = os.listdir(f"{tmp_path}/queue.db.data")
    assert os.path.getsize(f"{tmp_path}/queue.db.data/{segment}") == 1   # cut back
    db.execute("PRAGMA max_page_count = 1073741823")
    assert q.put_many(batch) == [PutResult.NEW] * 4
    for serial, name, data in batch:
        assert bytes(q.read(q.get(serial, name))) == data
    q.close()
