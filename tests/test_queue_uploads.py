"""The SQLite backend's uploads (Queue.open_upload; the interface is tested with the
others in test_queue_interface.py): pieces on disk, invisible until the commit, gone
after an abort or a crash, ids that never collide with a put's."""
from __future__ import annotations

import os
import sqlite3

from qss.queue import PutResult, open_queue
from test_queue_interface import name_of

SERIAL = "P3001276"

def test_sqlite_pieces_go_to_disk_and_a_crash_leaves_them_to_the_next_receiver(tmp_path):
    url = f"sqlite:///{tmp_path}/queue.db"
    queue = open_queue(url)
    up = queue.open_upload(SERIAL, name_of(SERIAL, 5), 70_000_000)
    up.write(b"x" * (1 << 20))
    up.write(b"y" * (1 << 20))
    # On disk already (another connection sees them), though not in the queue; and only
    # what was sent: no room is taken for the 70 MB announced.
    db = sqlite3.connect(f"{tmp_path}/queue.db")
    assert db.execute("SELECT count(*), sum(length(data)) FROM upload_pieces").fetchone() == (
        2, 2 << 20)
    assert db.execute("SELECT count(*) FROM file_data").fetchone() == (0,)
    assert os.path.getsize(f"{tmp_path}/queue.db") + os.path.getsize(
        f"{tmp_path}/queue.db-wal") < 8 << 20
    queue.close()   # as a crash would: neither committed nor aborted
    with open_queue(url) as queue:
        assert queue.serials() == []
        stale = queue.unfinished_uploads()
        assert len(stale) == 1
        queue.put(SERIAL, name_of(SERIAL, 6), b"a file")
        newer = queue.open_upload(SERIAL, name_of(SERIAL, 7), 3)   # opened after the listing
        newer.write(b"abc")
        assert queue.discard_uploads(stale) == 1      # what the last run left, only
        assert newer.commit() is PutResult.NEW
        assert queue.discard_uploads() == 0
        assert [f.name for f in queue.files(SERIAL)] == [name_of(SERIAL, 6), name_of(SERIAL, 7)]
    assert db.execute("SELECT (SELECT count(*) FROM file_data), (SELECT count(*) FROM "
                      "upload_pieces), (SELECT count(*) FROM uploads)").fetchone() == (2, 0, 0)
    db.close()


def test_sqlite_a_crash_during_assembly_is_cleaned_up_too(tmp_path):
    url = f"sqlite:///{tmp_path}/queue.db"
    queue = open_queue(url)
    up = queue.open_upload(SERIAL, name_of(SERIAL, 8), 6)
    up.write(b"abc")
    up.write(b"def")
    up._assemble()   # then the process dies before the durable commit
    queue.close()
    with open_queue(url) as queue:
        assert queue.serials() == []
        assert queue.discard_uploads() == 1
        assert queue._query("SELECT (SELECT count(*) FROM file_data), "
                            "(SELECT count(*) FROM upload_pieces)", ()) == [(0, 0)]


def upload(queue, name: str, data: bytes) -> PutResult:
    up = queue.open_upload(SERIAL, name, len(data))
    up.write(data)
    return up.commit()

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
                              "(SELECT count(*) FROM uploads), "
                              "(SELECT count(*) FROM upload_pieces)", ())
    assert counts == [(1, 1, 0, 0)]
