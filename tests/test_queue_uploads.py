"""Files stored piece by piece as they arrive (Queue.open_upload), on every backend, and
the SQLite backend's way: pieces on disk, invisible until the commit, gone after an abort
or a crash."""
from __future__ import annotations

import sqlite3

import pytest

from qss.queue import PutResult, open_queue
from test_queue_interface import T0, name_of, queue  # noqa: F401 - the fixture

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


def test_sqlite_pieces_go_to_disk_and_a_crash_leaves_them_to_the_next_receiver(tmp_path):
    url = f"sqlite:///{tmp_path}/queue.db"
    queue = open_queue(url)
    up = queue.open_upload(SERIAL, name_of(SERIAL, 5), 3 << 20)
    up.write(b"x" * (2 << 20))
    # On disk already (another connection sees the row), though not in the queue.
    db = sqlite3.connect(f"{tmp_path}/queue.db")
    assert db.execute("SELECT count(*) FROM file_data").fetchone() == (1,)
    assert db.execute("SELECT count(*) FROM uploads").fetchone() == (1,)
    queue.close()   # as a crash would: neither committed nor aborted
    with open_queue(url) as queue:
        assert queue.serials() == []
        queue.put(SERIAL, name_of(SERIAL, 6), b"a file")   # ids never collide
        assert queue.discard_uploads() == 1
        assert queue.discard_uploads() == 0
        assert [f.name for f in queue.files(SERIAL)] == [name_of(SERIAL, 6)]
    assert db.execute("SELECT count(*) FROM file_data").fetchone() == (1,)
    db.close()


def test_sqlite_replacement_by_upload_leaves_no_orphan_contents(tmp_path):
    with open_queue(f"sqlite:///{tmp_path}/queue.db") as queue:
        name = name_of(SERIAL, 7)
        queue.put(SERIAL, name, b"old")
        listed = queue.get(SERIAL, name)
        assert upload(queue, name, b"newer") is PutResult.REPLACED
        assert not queue.mark_synced(listed)   # the listed version is gone
        assert bytes(queue.read(queue.get(SERIAL, name))) == b"newer"
        assert upload(queue, name, b"newer") is PutResult.DUPLICATE
        counts = queue._query("SELECT (SELECT count(*) FROM file_data), "
                              "(SELECT count(*) FROM received_files), "
                              "(SELECT count(*) FROM uploads)", ())
    assert counts == [(1, 1, 0)]
