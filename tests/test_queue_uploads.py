"""The SQLite backend's uploads (Queue.open_upload; the interface is tested with the
others in test_queue_interface.py): a data file of
its own until the commit, invisible until then, gone after an abort or a crash."""
from __future__ import annotations

import os

from qss.queue import PutResult, open_queue
from test_queue_interface import name_of

SERIAL = "P3001276"

def data_files(tmp_path, suffix: str) -> dict[str, int]:
    """The queue's data files of one kind (``.seg``, ``.part``) and their sizes."""
    folder = tmp_path / "queue.db.data"
    return {p.name: p.stat().st_size for p in folder.glob(f"*{suffix}")} \
        if folder.is_dir() else {}


def test_sqlite_pieces_go_to_disk_and_a_crash_leaves_them_to_the_next_receiver(tmp_path):
    url = f"sqlite:///{tmp_path}/queue.db"
    queue = open_queue(url)
    up = queue.open_upload(SERIAL, name_of(SERIAL, 5), 70_000_000)
    up.write(b"x" * (1 << 20))
    up.write(b"y" * (1 << 20))
    # On disk already, though not in the queue; and only what was sent: no room is taken
    # for the 70 MB announced, and none of it goes through SQLite.
    assert list(data_files(tmp_path, ".part").values()) == [2 << 20]
    assert data_files(tmp_path, ".seg") == {}
    assert os.path.getsize(f"{tmp_path}/queue.db") + os.path.getsize(
        f"{tmp_path}/queue.db-wal") < 1 << 20
    # Crash: neither committed nor aborted, and the process's lock on it is gone.
    up.part.close(delete=False)
    queue.close()
    with open_queue(url) as queue:
        assert queue.serials() == []
        stale = queue.unfinished_uploads()
        assert len(stale) == 1
        queue.put(SERIAL, name_of(SERIAL, 6), b"a file")
        newer = queue.open_upload(SERIAL, name_of(SERIAL, 7), 3)   # opened after the listing
        newer.write(b"abc")
        assert queue.unfinished_uploads() == stale     # the open one is held: not listed
        assert queue.discard_uploads(stale) == 1      # what the last run left, only
        assert newer.commit() is PutResult.NEW
        assert queue.discard_uploads() == 0
        assert [f.name for f in queue.files(SERIAL)] == [name_of(SERIAL, 6), name_of(SERIAL, 7)]
        assert bytes(queue.read(queue.get(SERIAL, name_of(SERIAL, 7)))) == b"abc"
    assert data_files(tmp_path, ".part") == {}
    assert len(data_files(tmp_path, ".seg")) == 2   # the put's, and the upload's own


def test_sqlite_a_crash_between_the_data_and_the_commit_is_cleaned_up_too(tmp_path):
    url = f"sqlite:///{tmp_path}/queue.db"
    queue = open_queue(url)
    up = queue.open_upload(SERIAL, name_of(SERIAL, 8), 6)
    up.write(b"abc")
    up.write(b"def")
    queue._segments.seal(up.part)   # a segment now; then the process dies before the commit
    up.part.close(delete=False)
    queue.close()
    assert len(data_files(tmp_path, ".seg")) == 1
    with open_queue(url) as queue:      # no row points into it: deleted at the open
        assert queue.serials() == []
        assert queue.discard_uploads() == 0
    assert data_files(tmp_path, ".seg") == {} and data_files(tmp_path, ".part") == {}


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
                              "(SELECT count(*) FROM received_files)", ())
    assert counts == [(0, 1)]
    # The put's segment held only the replaced version: deleted; the duplicate's part too.
    assert list(data_files(tmp_path, ".seg").values()) == [5]
    assert data_files(tmp_path, ".part") == {}
