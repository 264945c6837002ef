"""One interface suite for every queue backend (qss.queue, architecture §5).

Backends: SQLite on tmp_path; MongoDB through mongomock, once with server-side sizes
(``$binarySize``, taught to mongomock below) and once with the client-side fallback of
servers older than 4.4; and a real MongoDB when ``QSS_TEST_MONGO_URL`` is set.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import uuid

import pytest

from qss.generator import UpmuSimulator
from qss.naming import DEVICE_ROOT
from qss.queue import (DEFAULT_YTAGBASE, FileGone, PutResult, Queue, QueueError, Tally,
                       open_queue)

START = 1450426497  # 2015-12-18 08:14:57 UTC
T0 = dt.datetime(2020, 1, 2, 3, 4, 5, 678000, tzinfo=dt.timezone.utc)


def _teach_mongomock_binary_size() -> None:
    """mongomock lacks ``$binarySize`` (MongoDB 4.4); add it so the server-side path runs."""
    import mongomock.aggregate as agg
    if getattr(agg._Parser, "_qss_binary_size", False):
        return
    original = agg._Parser.parse

    def parse(self, expression):
        if isinstance(expression, dict) and len(expression) == 1 and "$binarySize" in expression:
            value = self.parse(expression["$binarySize"])
            return None if value is None else len(value)
        return original(self, expression)

    agg._Parser.parse = parse
    agg._Parser._qss_binary_size = True


# Every test runs against a real MongoDB server too when QSS_TEST_MONGO_URL is set (the
# README's "Tests"); else those runs skip, saying how to set it.
REAL_MONGO = os.environ.get("QSS_TEST_MONGO_URL")
BACKENDS = ["sqlite", "mongomock", "mongomock-old-server", "mongodb"]


@pytest.fixture(params=BACKENDS)
def queue(request, tmp_path):
    kind = request.param
    if kind == "sqlite":
        q = open_queue(f"sqlite:///{tmp_path}/queue.db")
        yield q
        q.close()
        return
    from qss.queue.mongo import MongoQueue
    if kind == "mongodb":
        if not REAL_MONGO:
            pytest.skip("a real MongoDB server: set QSS_TEST_MONGO_URL=mongodb://HOST:PORT "
                        "(a scratch database is made and dropped)")
        name = f"qss_test_{uuid.uuid4().hex[:12]}"
        q = MongoQueue(REAL_MONGO, database=name)
        yield q
        q._client.drop_database(name)
        q.close()
        return
    import mongomock
    _teach_mongomock_binary_size()
    q = MongoQueue(client=mongomock.MongoClient())
    if kind == "mongomock-old-server":
        q._server_sizes = False
    yield q
    q.close()


def name_of(serial: str, minute: int) -> str:
    when = dt.datetime(2015, 12, 18, 8, 0, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=minute)
    return (f"{DEVICE_ROOT}/{when:%Y}/Month_{when:%m}/Day_{when:%d}/Hour_{when:%H}/"
            f"{serial}_{when:%Y-%m-%d-%H-%M-%S}.dat")


def fill(queue: Queue, serial: str, count: int, *, size: int = 100) -> list[str]:
    names = [name_of(serial, i) for i in range(count)]
    for i, name in enumerate(names):
        queue.put(serial, name, bytes([i % 256]) * size, time_received=T0)
    return names


# -- put ---------------------------------------------------------------------------------

def test_put_new_duplicate_replaced_and_read_back(queue, caplog):
    (path, data), = UpmuSimulator("P3001276", extended=True).files(START, 1)
    name = f"{DEVICE_ROOT}/{path}"
    assert queue.put("P3001276", name, memoryview(data)) is PutResult.NEW
    assert queue.put("P3001276", name, bytearray(data)) is PutResult.DUPLICATE
    file = queue.get("P3001276", name)
    assert (file.serial, file.name, file.size, file.ytag) == ("P3001276", name, len(data), 0)
    assert bytes(queue.read(file)) == data
    assert [f.name for f in queue.unsynced("P3001276")] == [name]

    other = data[:-1] + b"\x01"
    with caplog.at_level(logging.WARNING, logger="qss.queue"):
        assert queue.put("P3001276", name, other) is PutResult.REPLACED
    assert "different contents" in caplog.text and name in caplog.text
    assert bytes(queue.read(queue.get("P3001276", name))) == other
    assert [f.name for f in queue.files("P3001276")] == [name]   # still one copy


def test_empty_file_and_bytes_of_every_value(queue):
    assert queue.put("P1", "/a/empty", b"") is PutResult.NEW
    assert queue.put("P1", "/a/empty", b"") is PutResult.DUPLICATE
    every = bytes(range(256)) * 3
    queue.put("P1", "/a/every", every)
    assert bytes(queue.read(queue.get("P1", "/a/empty"))) == b""
    assert bytes(queue.read(queue.get("P1", "/a/every"))) == every


def test_same_size_different_bytes_is_a_replacement(queue):
    queue.put("P1", "/a", b"x" * 1000)
    assert queue.put("P1", "/a", b"x" * 999 + b"y") is PutResult.REPLACED


def test_identity_is_serial_and_name(queue):
    assert queue.put("P1", "/same/name", b"one") is PutResult.NEW
    assert queue.put("P2", "/same/name", b"two") is PutResult.NEW
    assert bytes(queue.read(queue.get("P1", "/same/name"))) == b"one"
    assert bytes(queue.read(queue.get("P2", "/same/name"))) == b"two"
    assert queue.get("P3", "/same/name") is None


@pytest.mark.parametrize("serial, name", [
    ("", "/a"), ("P1", ""), ("P" * 33, "/a"), ("P1", "/a\0b"), ("P\x001", "/a"),
    ("P1", "/" + "x" * 5000), ("P1", "/bad\udcff"),
])
def test_put_refuses_identities_no_backend_should_store(queue, serial, name):
    with pytest.raises(ValueError):
        queue.put(serial, name, b"data")
    assert queue.serials() == []


def test_hostile_names_are_only_values(queue, tmp_path):
    names = ["../../../../etc/passwd", "/root/upmu_data/../../x.dat", "C:\\x", "a'; DROP TABLE x",
             "$where", "{\"$gt\": \"\"}", "ünïcode/日本.dat"]
    for i, name in enumerate(names):
        assert queue.put("P1", name, bytes([i])) is PutResult.NEW
    assert sorted(f.name for f in queue.files("P1")) == sorted(names)
    assert not (tmp_path.parent / "etc").exists()


def test_concurrent_puts_of_the_same_files_store_one_copy(queue):
    names = [name_of("P1", i) for i in range(20)]
    results: list[PutResult] = []

    def worker():
        for name in names:
            results.append(queue.put("P1", name, name.encode() * 100))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(PutResult.NEW) == 20
    assert results.count(PutResult.DUPLICATE) == 60
    assert [f.name for f in queue.files("P1")] == names


# -- listing and syncing -----------------------------------------------------------------

def test_unsynced_in_name_order_across_pages(queue):
    names = fill(queue, "P1", 11)
    fill(queue, "P2", 3)
    # Put in reverse too: the order comes from the names, not from arrival.
    for name in reversed(names):
        queue.put("P1", name, b"again")
    listed = list(queue.unsynced("P1", page_size=3))
    assert [f.name for f in listed] == names
    assert all(f.serial == "P1" and f.ytag == 0 for f in listed)
    assert [f.name for f in queue.unsynced("P1", after=names[7], page_size=2)] == names[8:]
    assert list(queue.unsynced("P9")) == []


def test_mark_synced_and_counts(queue):
    names = fill(queue, "P1", 6, size=10)
    for file in list(queue.unsynced("P1"))[:4]:
        assert queue.mark_synced(file)
    assert [f.name for f in queue.unsynced("P1")] == names[4:]
    assert queue.count_synced() == Tally(4, 40)
    assert queue.count_synced("P1") == Tally(4, 40)
    assert queue.count_synced("P2") == Tally(0, 0)
    assert queue.get("P1", names[0]).synced(queue.ytagbase)
    assert not queue.get("P1", names[5]).synced(queue.ytagbase)


def test_replacement_after_listing_is_not_marked_synced(queue):
    queue.put("P1", "/a", b"old")
    listed, = queue.unsynced("P1")
    queue.put("P1", "/a", b"new!")
    assert queue.mark_synced(listed) is False
    again, = queue.unsynced("P1")
    assert bytes(queue.read(again)) == b"new!"
    assert queue.mark_synced(again) is True
    assert list(queue.unsynced("P1")) == []


def test_replacing_a_synced_file_makes_it_unsynced(queue):
    queue.put("P1", "/a", b"old")
    queue.mark_synced(queue.get("P1", "/a"))
    assert list(queue.unsynced("P1")) == []
    queue.put("P1", "/a", b"new")
    assert [f.name for f in queue.unsynced("P1")] == ["/a"]


def test_resync_all_raises_ytagbase(queue):
    assert queue.ytagbase == DEFAULT_YTAGBASE
    names = fill(queue, "P1", 3)
    for file in queue.unsynced("P1"):
        queue.mark_synced(file)
    listed_before = queue.get("P1", names[0])
    new = queue.resync_all()
    assert new == queue.ytagbase > DEFAULT_YTAGBASE
    assert [f.name for f in queue.unsynced("P1")] == names
    assert queue.count_synced() == Tally(0, 0)
    # A mark made under the old base does not count under the new one.
    queue.mark_synced(listed_before)
    assert [f.name for f in queue.unsynced("P1")] == names
    for file in queue.unsynced("P1"):
        assert queue.mark_synced(file)
    assert queue.get("P1", names[0]).ytag == new
    assert queue.count_synced().files == 3


def test_read_after_delete_raises_file_gone(queue):
    queue.put("P1", "/a", b"x")
    file = queue.get("P1", "/a")
    queue.delete("P1")
    with pytest.raises(FileGone):
        queue.read(file)
    assert queue.mark_synced(file) is False


# -- latest times and statistics ---------------------------------------------------------

def test_latest_time_and_stats(queue):
    t1 = T0 + dt.timedelta(minutes=1)
    queue.put("P1", "/a", b"12345", time_received=T0)
    queue.put("P1", "/b", b"123", time_received=t1)
    queue.put("P2", "/a", b"1", time_received=T0)
    queue.put("P2", "/imported", b"12", time_received=t1, update_latest=False)
    queue.mark_synced(queue.get("P1", "/a"))
    stats = queue.stats()
    assert list(stats) == ["P1", "P2"] == queue.serials()
    p1 = stats["P1"]
    assert (p1.files, p1.bytes, p1.unsynced_files, p1.unsynced_bytes) == (2, 8, 1, 3)
    assert p1.last_received == t1
    assert stats["P2"].last_received == T0     # the import is not a sign of life
    # A resend refreshes the latest time but not the file's own time.
    t2 = t1 + dt.timedelta(minutes=1)
    assert queue.put("P1", "/a", b"12345", time_received=t2) is PutResult.DUPLICATE
    assert queue.stats()["P1"].last_received == t2
    assert queue.get("P1", "/a").time_received == T0


def test_a_serial_that_never_pushed_has_no_last_received(queue):
    queue.put("P3", "/imported", b"12", time_received=T0, update_latest=False)
    stats = queue.stats()["P3"]
    assert (stats.files, stats.bytes, stats.last_received) == (1, 2, None)


def test_latest_time_never_goes_back(queue):
    queue.put("P1", "/a", b"1", time_received=T0)
    queue.put("P1", "/b", b"1", time_received=T0 - dt.timedelta(days=1))
    assert queue.stats()["P1"].last_received == T0


def test_naive_times_are_utc(queue):
    queue.put("P1", "/a", b"1", time_received=T0.replace(tzinfo=None))
    assert queue.get("P1", "/a").time_received == T0


# -- deleting ----------------------------------------------------------------------------

def test_delete_synced_leaves_unsynced(queue):
    fill(queue, "P1", 5, size=10)
    fill(queue, "P2", 4, size=20)
    for serial in ("P1", "P2"):
        for file in list(queue.unsynced(serial))[:2]:
            queue.mark_synced(file)
    assert queue.delete_synced("P2") == Tally(2, 40)
    assert queue.count_synced() == Tally(2, 20)
    assert queue.delete_synced() == Tally(2, 20)
    assert queue.count_synced() == Tally(0, 0)
    assert len(list(queue.unsynced("P1"))) == 3 and len(list(queue.unsynced("P2"))) == 2
    assert queue.delete_synced() == Tally(0, 0)


def test_delete_a_serial(queue):
    fill(queue, "P1", 3, size=10)
    fill(queue, "P2", 2, size=10)
    assert queue.delete("P1") == Tally(3, 30)
    assert queue.serials() == ["P2"]
    assert list(queue.files("P1")) == []
    assert queue.delete("P1") == Tally(0, 0)


def test_files_and_delete_of_a_period(queue):
    names = fill(queue, "P1", 130, size=1)    # 08:00 to 10:09 on 2015-12-18
    queue.put("P1", "/not/a/device/name", b"x")
    hour9 = dt.datetime(2015, 12, 18, 9, tzinfo=dt.timezone.utc)
    in_hour9 = [f.name for f in queue.files("P1", start=hour9, end=hour9 + dt.timedelta(hours=1))]
    assert in_hour9 == names[60:120]
    naive = [f.name for f in queue.files("P1", start=hour9.replace(tzinfo=None))]
    assert naive == names[60:]
    assert len(list(queue.files("P1"))) == 131
    assert queue.delete("P1", start=hour9, end=hour9 + dt.timedelta(hours=1)) == Tally(60, 60)
    left = [f.name for f in queue.files("P1")]
    assert left == sorted(names[:60] + names[120:] + ["/not/a/device/name"])
    assert queue.stats()["P1"].last_received is not None   # a period keeps the latest time


# -- indexes -----------------------------------------------------------------------------

def test_ensure_indexes_is_idempotent(queue):
    first = queue.ensure_indexes()
    assert queue.ensure_indexes() == []
    if queue.storage_dir is None:   # MongoDB: both indexes of architecture §5 on a new database
        assert len(first) == 2
        assert any("(serial_number, ytag, name)" in line for line in first)
        assert any("(serial_number, name)" in line for line in first)
    else:
        assert first == []              # SQLite creates them with the tables


def test_errors_are_queue_errors_with_the_url():
    with pytest.raises(QueueError, match="unknown kind of queue"):
        open_queue("redis://localhost")
    with pytest.raises(QueueError, match="does not exist; mount the data drive"):
        open_queue("sqlite:////nonexistent-dir-qss/queue.db")


# -- uploads (files stored piece by piece, as the receiver does) -------------------------

SERIAL = "P3001276"


def upload(queue, name: str, data: bytes, piece: int = 7) -> PutResult:
    up = queue.open_upload(SERIAL, name, len(data), time_received=T0)
    for offset in range(0, len(data), piece):
        up.write(data[offset:offset + piece])
    return up.commit()


def test_an_upload_is_new_duplicate_or_replaced_like_a_put(queue):
    name = name_of(SERIAL, 1)
    data = bytes(range(256)) * 3
    assert upload(queue, name, data) is PutResult.NEW
    [file] = queue.files(SERIAL)
    assert bytes(queue.read(file)) == data and file.size == len(data)
    assert upload(queue, name, data, piece=100) is PutResult.DUPLICATE
    assert queue.mark_synced(queue.get(SERIAL, name))
    changed = data[:-1] + b"!"
    assert upload(queue, name, changed) is PutResult.REPLACED
    [file] = queue.files(SERIAL)
    assert bytes(queue.read(file)) == changed and not file.synced(queue.ytagbase)
    assert queue.stats()[SERIAL].last_received is not None
    assert upload(queue, name_of(SERIAL, 2), b"") is PutResult.NEW   # an empty file
    assert bytes(queue.read(queue.get(SERIAL, name_of(SERIAL, 2)))) == b""


def test_an_upload_is_invisible_until_committed_and_abort_leaves_nothing(queue):
    up = queue.open_upload(SERIAL, name_of(SERIAL, 3), 10)
    up.write(b"01234")
    assert queue.get(SERIAL, name_of(SERIAL, 3)) is None and queue.serials() == []
    up.abort()
    up.abort()   # idempotent
    assert queue.serials() == []
    assert upload(queue, name_of(SERIAL, 3), b"0123456789") is PutResult.NEW


def test_an_upload_refuses_the_wrong_number_of_bytes(queue):
    up = queue.open_upload(SERIAL, name_of(SERIAL, 4), 4)
    up.write(b"abc")
    with pytest.raises(ValueError, match="3 bytes written of 4"):
        up.commit()
    with pytest.raises(ValueError, match="more than the 4 announced"):
        up.write(b"de")
    up.abort()
    with pytest.raises(ValueError, match="NUL"):
        queue.open_upload(SERIAL, "/a\0b", 1)
    assert queue.serials() == []


def test_put_takes_the_contents_as_pieces_without_joining_them(queue):
    name = name_of(SERIAL, 9)
    data = bytes(range(256)) * 10
    pieces = [memoryview(data)[:100], data[100:1000], bytearray(data[1000:])]
    assert queue.put(SERIAL, name, pieces) is PutResult.NEW
    assert bytes(queue.read(queue.get(SERIAL, name))) == data
    assert queue.get(SERIAL, name).size == len(data)
    assert queue.put(SERIAL, name, data) is PutResult.DUPLICATE
    assert queue.put(SERIAL, name, [data[:5], b"!" + data[6:]]) is PutResult.REPLACED
    assert queue.put(SERIAL, name_of(SERIAL, 10), []) is PutResult.NEW   # empty


def test_put_many_gives_each_file_its_own_outcome(queue, caplog):
    queue.put(SERIAL, name_of(SERIAL, 1), b"old")
    queue.put(SERIAL, name_of(SERIAL, 2), b"same")
    files = [(SERIAL, name_of(SERIAL, 1), b"new"),            # replaced
             (SERIAL, name_of(SERIAL, 2), [b"sa", b"me"]),     # duplicate, in pieces
             (SERIAL, "/a\0b", b"x"),                          # refused: NUL in the name
             ("P2", name_of("P2", 3), memoryview(b"fresh"))]   # new
    with caplog.at_level(logging.WARNING, logger="qss.queue"):
        results = queue.put_many(files)
    assert results[:2] == [PutResult.REPLACED, PutResult.DUPLICATE]
    assert isinstance(results[2], ValueError) and results[3] is PutResult.NEW
    assert "different contents" in caplog.text
    assert bytes(queue.read(queue.get(SERIAL, name_of(SERIAL, 1)))) == b"new"
    assert bytes(queue.read(queue.get("P2", name_of("P2", 3)))) == b"fresh"
    assert queue.stats()["P2"].last_received is not None   # a push: the latest time moves
    assert queue.put_many([]) == []
