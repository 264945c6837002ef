"""The SQLite queue's data segments: each file's contents written once, beside the queue
file; what a crash leaves is cleaned at the next open; queues of the old layout (contents
in SQLite) still work; deleting files frees their segments."""
from __future__ import annotations

import errno
import fcntl
import os
import signal
import sqlite3

import pytest

from qss.queue import PutResult, QueueError, Tally, open_queue
from qss.queue.sqlite import SqliteQueue
from qss.queue.sqlite_segments import data_dir
from test_queue_sqlite import contents, run_child

SERIAL = "P3001276"


def segments(db) -> dict[str, int]:
    folder = data_dir(str(db))
    return {n: os.path.getsize(os.path.join(folder, n))
            for n in sorted(os.listdir(folder)) if n.endswith(".seg")} \
        if os.path.isdir(folder) else {}


def rows(db) -> list[tuple]:
    with sqlite3.connect(db) as check:
        return check.execute("SELECT name, size, segment, seg_offset FROM received_files "
                             "ORDER BY name").fetchall()


def test_contents_are_written_once_into_a_segment_and_read_back(tmp_path):
    db = tmp_path / "queue.db"
    names = [f"/f{i}" for i in range(5)]
    with SqliteQueue(str(db)) as queue:
        results = queue.put_many([(SERIAL, n, contents(n)) for n in names[:3]])
        assert results == [PutResult.NEW] * 3
        for n in names[3:]:
            assert queue.put(SERIAL, n, [contents(n)[:1000], contents(n)[1000:]]) \
                is PutResult.NEW
        for file in queue.files(SERIAL):
            assert bytes(queue.read(file)) == contents(file.name)
        # The contents did not go through SQLite: the file and its WAL hold metadata only.
        assert os.path.getsize(db) + os.path.getsize(f"{db}-wal") < 200_000
    # One segment, the files one after the other, each row pointing at its bytes.
    [(name, size)] = segments(db).items()
    assert size == 5 * 200_000
    raw = open(os.path.join(data_dir(str(db)), name), "rb").read()
    for n, length, segment, offset in rows(db):
        assert segment == name and raw[offset:offset + length] == contents(n)
    with open_queue(f"sqlite:///{db}") as queue:   # and after a reopen
        assert [bytes(queue.read(f)) == contents(f.name) for f in queue.files(SERIAL)] \
            == [True] * 5
        assert queue.put(SERIAL, "/f0", contents("/f0")) is PutResult.DUPLICATE


def test_a_writer_starts_a_new_segment_past_the_size_and_never_appends_to_another(
        tmp_path, monkeypatch):
    monkeypatch.setattr("qss.queue.sqlite_segments.SEGMENT_BYTES", 500_000)
    db = tmp_path / "queue.db"
    with SqliteQueue(str(db)) as first, SqliteQueue(str(db)) as second:
        for i in range(6):
            (first if i % 2 else second).put(SERIAL, f"/f{i}", contents(f"/f{i}"))
        # Each process (here: each queue object) appends to segments of its own.
        by_segment: dict[str, list[str]] = {}
        for name, _, segment, _ in rows(db):
            by_segment.setdefault(segment, []).append(name)
        assert sorted(by_segment.values()) == [["/f0", "/f2", "/f4"], ["/f1", "/f3", "/f5"]]
        for i in range(6, 12):
            first.put(SERIAL, f"/f{i}", contents(f"/f{i}"))
        assert len(segments(db)) == 4   # 3 files of 200 kB, then the next segment
        for file in first.files(SERIAL):
            assert bytes(second.read(file)) == contents(file.name)


def test_an_unreferenced_segment_is_deleted_at_the_open_unless_its_writer_lives(tmp_path):
    db = tmp_path / "queue.db"
    with SqliteQueue(str(db)) as queue:
        queue.put(SERIAL, "/a", contents("/a"))
    folder = data_dir(str(db))
    [kept] = segments(db)
    # What a crash between a batch's data fsync and its commit leaves: a segment no row
    # points into, and a tail past the last file of a referenced one.
    with open(os.path.join(folder, "s-1-dead.seg"), "wb") as f:
        f.write(b"z" * 300_000)
    with open(os.path.join(folder, kept), "ab") as f:
        f.write(b"z" * 300_000)
    # ...and a live writer's new segment (locked), which must not be touched.
    live = open(os.path.join(folder, "s-2-live.seg"), "wb")
    fcntl.flock(live, fcntl.LOCK_EX)
    try:
        with open_queue(f"sqlite:///{db}") as queue:
            assert segments(db) == {kept: 200_000, "s-2-live.seg": 0}
            assert bytes(queue.read(queue.get(SERIAL, "/a"))) == contents("/a")
    finally:
        live.close()
    with open_queue(f"sqlite:///{db}"):     # its writer is gone now
        assert segments(db) == {kept: 200_000}


PUTTER = """
    import sys
    from qss.queue import open_queue
    from tests.test_queue_sqlite import contents
    queue = open_queue("sqlite:///" + sys.argv[1])
    for i in range(100000):
        names = [f"/root/upmu_data/{i:05d}-{k}.dat" for k in range(3)]
        queue.put_many([("P3001276", n, contents(n)) for n in names])
        print(*names, flush=True)
"""


@pytest.mark.parametrize("when", ["any time", "after the data's fsync"])
def test_sigkill_mid_commit_leaves_every_acknowledged_file_and_no_orphan_bytes(tmp_path,
                                                                               when):
    db = str(tmp_path / "queue.db")
    code = PUTTER
    if when == "after the data's fsync":
        # The 30th batch's data is durable in the segment; its rows are never committed.
        code = PUTTER.replace("queue = open_queue", """
    import os, signal
    import qss.queue.sqlite_segments as segments
    append, calls = segments.Segments.append, [0]
    def dying(self, files):
        out = append(self, files)
        calls[0] += 1
        if calls[0] == 30:
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    segments.Segments.append = dying
    queue = open_queue""")
    child = run_child(code, db)
    acknowledged = []
    try:
        for line in child.stdout:
            acknowledged += line.split()
            if when == "any time" and len(acknowledged) >= 60:
                os.kill(child.pid, signal.SIGKILL)
                break
        acknowledged += [n for line in child.stdout for n in line.split()]
    finally:
        child.kill()
        assert child.wait() == -signal.SIGKILL
        child.stdout.close()
    before = segments(db)
    with open_queue(f"sqlite:///{db}") as queue:
        stored = {f.name: f for f in queue.files(SERIAL)}
        assert set(acknowledged) <= set(stored)
        assert len(stored) <= len(acknowledged) + 3          # at most the batch in flight
        for name, file in stored.items():
            assert bytes(queue.read(file)) == contents(name)
        # Cleaned at the open: the segment ends where its last committed file ends.
        ends = {}
        for _, size, segment, offset in rows(db):
            ends[segment] = max(ends.get(segment, 0), offset + size)
        assert segments(db) == ends
        if when == "after the data's fsync":
            assert len(stored) == len(acknowledged) == 29 * 3
            assert sum(before.values()) == sum(ends.values()) + 3 * 200_000
        for name in acknowledged:    # the device resends what had no reply: one copy
            assert queue.put(SERIAL, name, contents(name)) is PutResult.DUPLICATE


def test_deleting_synced_files_frees_their_segments(tmp_path, monkeypatch):
    monkeypatch.setattr("qss.queue.sqlite_segments.SEGMENT_BYTES", 1_000_000)
    db = tmp_path / "queue.db"
    with SqliteQueue(str(db)) as queue:
        for i in range(20):
            queue.put(SERIAL, f"/f{i:02d}", contents(f"/f{i:02d}"))
        assert len(segments(db)) == 4               # 5 files of 200 kB each
        for file in list(queue.unsynced(SERIAL))[:12]:
            assert queue.mark_synced(file)
        assert queue.delete_synced() == Tally(12, 12 * 200_000)
        # The two segments whose files all went are gone; the third keeps its 3 files.
        assert len(segments(db)) == 2
        queue.delete(SERIAL)
        # The writer's own current segment goes once it lets go of it.
        assert len(segments(db)) == 1
    assert segments(db) == {}
    with SqliteQueue(str(db)) as queue:
        assert queue.stats() == {}


def test_a_replaced_file_frees_its_old_segment(tmp_path):
    db = tmp_path / "queue.db"
    with SqliteQueue(str(db)) as first:
        first.put(SERIAL, "/a", b"old bytes")
    [old] = segments(db)
    with SqliteQueue(str(db)) as second:
        assert second.put(SERIAL, "/a", b"new bytes!") is PutResult.REPLACED
        assert old not in segments(db)
        assert bytes(second.read(second.get(SERIAL, "/a"))) == b"new bytes!"


def test_a_full_disk_is_a_clear_error_that_stores_nothing(tmp_path, monkeypatch):
    db = tmp_path / "queue.db"
    queue = SqliteQueue(str(db))
    queue.put(SERIAL, "/a", b"a" * 1000)
    real = os.pwrite

    def full(fd, data, offset):
        real(fd, bytes(data)[:100], offset)   # part of it landed, then the disk was full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("qss.queue.sqlite_segments.os.pwrite", full)
    with pytest.raises(QueueError, match=r"cannot store file '/b' of uPMU P3001276: No space "
                                         r"left on device$"):
        queue.put(SERIAL, "/b", b"b" * 5000)
    up = queue.open_upload(SERIAL, "/c", 5000)
    with pytest.raises(QueueError, match="No space left on device"):
        up.write(b"c" * 5000)
    up.abort()
    monkeypatch.setattr("qss.queue.sqlite_segments.os.pwrite", real)
    assert queue.get(SERIAL, "/b") is None
    assert bytes(queue.read(queue.get(SERIAL, "/a"))) == b"a" * 1000   # nothing lost
    assert queue.put(SERIAL, "/b", b"b" * 5000) is PutResult.NEW       # and it goes on
    assert bytes(queue.read(queue.get(SERIAL, "/b"))) == b"b" * 5000
    queue.close()
    assert sum(segments(db).values()) == 6000          # the failed bytes were cut off
    assert not any(n.endswith(".part") for n in os.listdir(data_dir(str(db))))


def test_a_disk_that_stays_full_leaves_no_empty_segments_behind(tmp_path, monkeypatch):
    """Every failed put starts a new segment (after a failed write a segment is never
    appended to again): one made for a put that failed holds no row and goes at once,
    not thousands of empty files while a device keeps resending to a full disk."""
    db = tmp_path / "queue.db"
    queue = SqliteQueue(str(db))
    queue.put(SERIAL, "/a", b"a" * 1000)

    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("qss.queue.sqlite_segments.os.pwrite", full)
    for _ in range(5):
        with pytest.raises(QueueError, match="No space left on device"):
            queue.put(SERIAL, "/b", b"b" * 5000)
    assert list(segments(db).values()) == [1000]
    monkeypatch.undo()
    assert queue.put(SERIAL, "/b", b"b" * 5000) is PutResult.NEW
    assert bytes(queue.read(queue.get(SERIAL, "/a"))) == b"a" * 1000
    queue.close()


def test_data_files_take_the_queue_files_mode_whatever_the_writers_umask(tmp_path):
    """The operator (umask 022 or 077 in a login shell) and the services (umask 007)
    share the queue: as SQLite gives -wal and -shm the database's mode, the data files
    get the queue file's (0660 on an appliance), so the services read, cut and delete
    what upmu-adm wrote."""
    db = tmp_path / "queue.db"
    db.touch()
    db.chmod(0o660)            # as systemd-tmpfiles makes it
    old = os.umask(0o077)
    try:
        with SqliteQueue(str(db)) as queue:
            queue.put(SERIAL, "/a", b"a" * 1000)
            up = queue.open_upload(SERIAL, "/b", 10)
            up.write(b"b" * 10)
            modes = {n: os.stat(os.path.join(data_dir(str(db)), n)).st_mode & 0o777
                     for n in os.listdir(data_dir(str(db)))}
            assert sorted(n[-4:] for n in modes) == [".seg", "part"]
            up.commit()
    finally:
        os.umask(old)
    assert set(modes.values()) == {0o660}, modes
    assert {os.stat(os.path.join(data_dir(str(db)), n)).st_mode & 0o777
            for n in segments(db)} == {0o660}


OLD_SCHEMA = [
    "PRAGMA page_size = 65536",
    "PRAGMA auto_vacuum = INCREMENTAL",
    "PRAGMA journal_mode = WAL",
    """CREATE TABLE received_files (id INTEGER PRIMARY KEY, serial_number TEXT NOT NULL,
       name TEXT NOT NULL, size INTEGER NOT NULL, time_received INTEGER NOT NULL,
       ytag INTEGER NOT NULL DEFAULT 0, published INTEGER NOT NULL DEFAULT 0,
       generation INTEGER NOT NULL DEFAULT 1, UNIQUE (serial_number, name))""",
    "CREATE TABLE file_data (id INTEGER PRIMARY KEY, data BLOB NOT NULL)",
    """CREATE TABLE latest_times (serial_number TEXT PRIMARY KEY,
       time_received INTEGER NOT NULL)""",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID",
    "CREATE TABLE uploads (id INTEGER PRIMARY KEY, file INTEGER)",
    """CREATE TABLE upload_pieces (upload INTEGER NOT NULL, seq INTEGER NOT NULL,
       data BLOB NOT NULL, PRIMARY KEY (upload, seq))""",
    "CREATE INDEX received_files_sync ON received_files (serial_number, ytag, name)",
    "INSERT INTO meta VALUES ('schema', 1)",
]


def old_queue(db) -> None:
    """A queue file as the suite before segments wrote it (schema 1, contents inline), with
    4 files (/o0 synced) and an upload a crash left (its pieces and an assembled row)."""
    con = sqlite3.connect(db, isolation_level=None)
    for sql in OLD_SCHEMA:
        con.execute(sql)
    con.execute("BEGIN")
    for i in range(4):
        name = f"/o{i}"
        con.execute("INSERT INTO file_data (id, data) VALUES (?, ?)", (i + 1, contents(name)))
        con.execute("INSERT INTO received_files (id, serial_number, name, size, time_received,"
                    " ytag) VALUES (?, ?, ?, ?, ?, ?)",
                    (i + 1, SERIAL, name, 200_000, 1_450_000_000_000_000, int(i == 0)))
    con.execute("INSERT INTO file_data (id, data) VALUES (5, x'00ff')")
    con.execute("INSERT INTO uploads (id, file) VALUES (1, 5)")
    con.execute("INSERT INTO upload_pieces VALUES (1, 0, x'00'), (1, 1, x'ff')")
    con.execute("COMMIT")
    con.close()


def test_a_queue_of_the_old_layout_is_read_as_it_is_and_works_on(tmp_path):
    db = tmp_path / "queue.db"
    old_queue(db)
    with open_queue(f"sqlite:///{db}") as queue:
        assert [f.name for f in queue.unsynced(SERIAL)] == ["/o1", "/o2", "/o3"]
        for file in queue.files(SERIAL):
            assert bytes(queue.read(file)) == contents(file.name)
        # Resends compare with the inline contents; new bytes move the file to a segment.
        assert queue.put(SERIAL, "/o1", contents("/o1")) is PutResult.DUPLICATE
        assert queue.put(SERIAL, "/o2", b"new") is PutResult.REPLACED
        assert queue.put(SERIAL, "/n0", contents("/n0")) is PutResult.NEW
        up = queue.open_upload(SERIAL, "/o3", 200_000)
        up.write(contents("/o3"))
        assert up.commit() is PutResult.DUPLICATE
        assert bytes(queue.read(queue.get(SERIAL, "/o2"))) == b"new"
        # The crashed upload of the old layout is listed and deleted as before.
        assert queue.unfinished_uploads() == [1]
        assert queue.discard_uploads() == 1
        assert queue._query("SELECT (SELECT count(*) FROM file_data), (SELECT count(*) "
                            "FROM uploads), (SELECT count(*) FROM upload_pieces)", ()) \
            == [(3, 0, 0)]     # /o0, /o1, /o3 inline; /o2's old bytes and the upload's gone
        assert queue.delete_synced() == Tally(1, 200_000)
        for file in queue.files(SERIAL):
            assert bytes(queue.read(file)) == (b"new" if file.name == "/o2"
                                               else contents(file.name))
        queue.delete(SERIAL)
        assert queue._query("SELECT count(*) FROM file_data", ()) == [(0,)]
    assert segments(db) == {}
    with sqlite3.connect(db) as check:
        assert check.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (2,)
