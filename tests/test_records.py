"""Replacing every record of a MongoDB store (the plotter's permalinks and accounts, as
``qss-get --restore`` does) happens at once: a reader never sees the collection empty or
half written, and a failure leaves the old records. mongomock, and a real server too when
QSS_TEST_MONGO_URL is set."""
from __future__ import annotations

import os
import uuid

import mongomock
import pytest
from argon2 import PasswordHasher
from pymongo.errors import AutoReconnect

from qss import records
from qss.accounts import MongoAccounts
from qss.permalinks import MongoPermalinks

FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)   # Argon2id, cheaply
REAL_MONGO = os.environ.get("QSS_TEST_MONGO_URL")


def view(n: int) -> dict:
    return {"streams": [], "window": {"kind": "now", "span": n}, "zone": "UTC", "view": {}}


def permalinks(client):
    """The permalink store, its name, and records for a restore (other than its own)."""
    store = MongoPermalinks("mongodb://x", client=client)
    for n in range(3):
        store.create(view(n))
    new = [{"id": f"id{n}", "created": "2024-05-06T07:08:09+00:00", "doc": view(10 + n)}
           for n in range(4)]
    return store, "permalinks", new


def accounts(client):
    store = MongoAccounts("mongodb://x", client=client, hasher=FAST)
    store.add("peter", "psladmin", ["psl", "lbnl"])
    store.add("ann", "s3cret", ["upmu"])
    hashed = FAST.hash("x")
    new = [{"name": name, "tags": ["upmu"], "hash": hashed, "generation": 2,
            "created": "2024-05-06T07:08:09+00:00"} for name in ("bob", "carol", "dave")]
    return store, "accounts", new


STORES = pytest.mark.parametrize("make", [permalinks, accounts])


def ids(client, name: str) -> list:
    return sorted(d["_id"] for d in client["mr_plotter"][name].find())


class Writes:
    """Runs ``seen(step)`` after every write mongomock is asked for, as a reader running
    alongside would between two commands to the server. A write that mongomock makes of
    others (a rename with ``dropTarget`` drops, then renames) is one command: its inner
    steps are not seen."""

    WRITES = [(mongomock.collection.Collection, m) for m in (
        "insert_one", "insert_many", "delete_one", "delete_many", "update_one",
        "replace_one", "create_index", "drop", "rename")] + [
        (mongomock.database.Database, m) for m in ("create_collection", "drop_collection",
                                                   "rename_collection")]

    def __init__(self, monkeypatch, seen) -> None:
        self.depth = 0
        for cls, name in self.WRITES:
            monkeypatch.setattr(cls, name, self._wrap(getattr(cls, name), name, seen))

    def _wrap(self, method, name, seen):
        def write(*args, **kwargs):
            self.depth += 1
            try:
                out = method(*args, **kwargs)
            finally:
                self.depth -= 1
            if not self.depth:
                seen(name)
            return out
        return write


@STORES
def test_a_reader_during_a_replace_sees_the_old_records_or_the_new(make, monkeypatch):
    client = mongomock.MongoClient()
    store, name, new = make(client)
    old = ids(client, name)
    wanted = sorted(r.get("id") or r.get("name") for r in new)
    seen = []
    Writes(monkeypatch, lambda step: seen.append((step, ids(client, name))))
    assert store.replace_all(new) == len(new)
    assert ids(client, name) == wanted
    assert seen and all(got in (old, wanted) for _, got in seen), seen
    assert client["mr_plotter"].list_collection_names() == [name]


@STORES
def test_a_failed_replace_leaves_the_old_records_and_nothing_else(make, monkeypatch):
    client = mongomock.MongoClient()
    store, name, new = make(client)
    before = list(store.records())

    def lost(*args, **kwargs):
        raise AutoReconnect("connection closed")
    monkeypatch.setattr(mongomock.collection.Collection, "insert_many", lost)
    with pytest.raises(AutoReconnect):
        store.replace_all(new)
    assert list(store.records()) == before
    assert client["mr_plotter"].list_collection_names() == [name]


def test_the_collections_indexes_are_kept_and_an_empty_replace_empties_it():
    coll = mongomock.MongoClient()["db"]["things"]
    coll.insert_many([{"_id": 1, "k": "a"}, {"_id": 2, "k": "b"}])
    coll.create_index([("k", 1)], name="k_unique", unique=True)
    assert records.replace_collection(coll, [{"_id": 3, "k": "c"}, {"_id": 4, "k": "d"}]) == 2
    assert list(coll.find(sort=[("_id", 1)])) == [{"_id": 3, "k": "c"}, {"_id": 4, "k": "d"}]
    info = coll.index_information()
    assert info["k_unique"]["key"] == [("k", 1)] and info["k_unique"]["unique"] is True
    assert records.replace_collection(coll, []) == 0
    assert coll.count_documents({}) == 0 and "k_unique" in coll.index_information()
    assert coll.database.list_collection_names() == ["things"]


def test_documents_the_indexes_refuse_leave_the_collection_as_it_was():
    coll = mongomock.MongoClient()["db"]["things"]
    coll.insert_one({"_id": 1, "k": "a"})
    coll.create_index([("k", 1)], unique=True)
    with pytest.raises(Exception, match="(?i)duplicate key"):
        records.replace_collection(coll, [{"_id": 2, "k": "x"}, {"_id": 3, "k": "x"}])
    assert list(coll.find()) == [{"_id": 1, "k": "a"}]
    assert coll.database.list_collection_names() == ["things"]


@pytest.mark.skipif(not REAL_MONGO, reason="a real MongoDB server: set QSS_TEST_MONGO_URL="
                    "mongodb://HOST:PORT (a scratch database is made and dropped)")
def test_a_replace_on_a_real_server():
    import pymongo
    from pymongo.errors import DuplicateKeyError
    client = pymongo.MongoClient(REAL_MONGO, serverSelectionTimeoutMS=5000)
    name = f"qss_test_{uuid.uuid4().hex[:12]}"
    try:
        coll = client[name]["things"]
        coll.insert_many([{"_id": 1, "k": "a"}, {"_id": 2, "k": "b"}])
        coll.create_index([("k", 1)], name="k_unique", unique=True)
        assert records.replace_collection(coll, [{"_id": 3, "k": "c"}]) == 1
        assert list(coll.find()) == [{"_id": 3, "k": "c"}]
        assert coll.index_information()["k_unique"]["unique"] is True
        with pytest.raises(DuplicateKeyError):
            records.replace_collection(coll, [{"_id": 4, "k": "x"}, {"_id": 5, "k": "x"}])
        assert list(coll.find()) == [{"_id": 3, "k": "c"}]
        assert records.replace_collection(coll, []) == 0
        assert coll.count_documents({}) == 0
        assert client[name].list_collection_names() == ["things"]
        store = MongoPermalinks(REAL_MONGO, client=client, database=name)
        assert store.replace_all([{"id": "p1", "created": "2024-05-06T07:08:09+00:00",
                                   "doc": view(1)}]) == 1
        assert [r["id"] for r in store.records()] == ["p1"]
    finally:
        client.drop_database(name)
        client.close()
