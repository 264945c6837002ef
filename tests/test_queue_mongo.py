"""The MongoDB queue against what appliances in the field hold (architecture §5), via mongomock."""
from __future__ import annotations

import datetime as dt

import mongomock
import pytest
from bson.binary import Binary

from qss.queue import PutResult, QueueError, open_queue
from qss.queue.mongo import MongoQueue

from test_queue_interface import _teach_mongomock_binary_size  # tests/ is on sys.path


@pytest.fixture
def client():
    _teach_mongomock_binary_size()
    return mongomock.MongoClient()


def legacy(client, name: str, data: bytes, **extra) -> None:
    """A document as the original Go receiver wrote it: no ytag, Binary data, naive UTC."""
    client.upmu_database.received_files.insert_one({
        "name": name, "data": Binary(data), "published": False,
        "time_received": dt.datetime(2016, 5, 1, 12, 0, 0, 123000),
        "serial_number": "P3001276", **extra})


def test_documents_have_exactly_the_field_schema(client):
    queue = MongoQueue(client=client)
    queue.put("P3001276", "/root/upmu_data/a.dat", b"abc")
    doc = client.upmu_database.received_files.find_one()
    assert set(doc) == {"_id", "name", "data", "serial_number", "time_received", "published",
                        "ytag"}
    assert (doc["name"], bytes(doc["data"]), doc["serial_number"], doc["published"],
            doc["ytag"]) == ("/root/upmu_data/a.dat", b"abc", "P3001276", False, 0)
    assert doc["time_received"].tzinfo is None     # BSON UTC, as the original wrote
    latest = client.upmu_database.latest_times.find_one()
    assert set(latest) == {"_id", "serial_number", "time_received"}
    assert latest["time_received"] == doc["time_received"]


def test_writes_are_journaled(client):
    queue = MongoQueue(client=client)
    for coll in (queue._files, queue._latest, queue._meta):
        assert coll.write_concern.document == {"w": 1, "j": True}


def test_files_of_the_original_tools(client):
    legacy(client, "/d/3", b"never synced")                 # no ytag: unsynced
    legacy(client, "/d/1", b"synced by the old sync2", ytag=12)
    legacy(client, "/d/2", b"old base", ytag=0)
    queue = MongoQueue(client=client)
    assert [f.name for f in queue.unsynced("P3001276")] == ["/d/2", "/d/3"]
    file = queue.get("P3001276", "/d/3")
    assert file.time_received == dt.datetime(2016, 5, 1, 12, 0, 0, 123000,
                                             tzinfo=dt.timezone.utc)
    assert file.size == len(b"never synced")
    # Raising the base re-syncs files the old tools synced with ytag 12 too.
    assert queue.resync_all() == 13
    assert [f.name for f in queue.unsynced("P3001276")] == ["/d/1", "/d/2", "/d/3"]
    # A resend of a legacy file is recognised, whatever its Binary wrapper.
    assert queue.put("P3001276", "/d/3", b"never synced") is PutResult.DUPLICATE


def test_unsynced_merges_every_unsynced_ytag_in_name_order(client):
    queue = MongoQueue(client=client)
    coll = client.upmu_database.received_files
    for i in range(30):
        legacy(client, f"/n/{i:02d}", b"x", **({} if i % 3 == 0 else {"ytag": i % 3}))
    coll.update_one({"name": "/n/05"}, {"$set": {"ytag": None}})
    queue._meta.insert_one({"_id": "ytagbase", "value": 2})
    listed = [f.name for f in queue.unsynced("P3001276", page_size=4)]
    # ytag missing, null, or 1 (< 2): unsynced; ytag 2: synced.
    assert listed == [f"/n/{i:02d}" for i in range(30) if i % 3 != 2 or i == 5]


def test_legacy_duplicates_are_replaced_together(client):
    legacy(client, "/dup", b"one")
    legacy(client, "/dup", b"one")
    queue = MongoQueue(client=client)
    assert queue.put("P3001276", "/dup", b"two") is PutResult.REPLACED
    datas = [bytes(d["data"]) for d in client.upmu_database.received_files.find()]
    assert datas == [b"two", b"two"]


def test_an_unreachable_server_is_a_queue_error_naming_the_url():
    queue = open_queue("mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=200")
    with pytest.raises(QueueError, match=r"queue mongodb://127\.0\.0\.1:9/.*cannot store file"):
        queue.put("P1", "/a", b"x")
    queue.close()


def test_the_queues_messages_never_show_the_urls_password():
    """The URL goes into every QueueError, the receiver's and sync2q's log lines and the
    status report: an operator's MongoDB password must not."""
    # An unreachable server (loopback port 9, discard) answers within the short timeout.
    url = "mongodb://qss:s3cret@127.0.0.1:9/?directConnection=true"
    queue = MongoQueue(url, timeout_ms=200)
    assert queue.url == "mongodb://127.0.0.1:9/?directConnection=true"
    with pytest.raises(QueueError) as caught:
        queue.put("P3001276", "/root/upmu_data/a.dat", b"abc")
    assert "s3cret" not in str(caught.value) and "qss:" not in str(caught.value)
    assert "127.0.0.1:9" in str(caught.value)
    with pytest.raises(QueueError) as caught:
        MongoQueue("mongodb://qss:s3cret/pw@127.0.0.1:9/")   # refused: "/" unescaped
    assert "invalid MongoDB URL" in str(caught.value) and "s3cret" not in str(caught.value)
