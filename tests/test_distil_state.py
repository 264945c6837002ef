"""qss-distil's state store, the same contract in SQLite (``distil.db`` beside the queue)
and in MongoDB (beside a MongoDB queue; mongomock, and a real server when
``QSS_TEST_MONGO_URL`` is set): state and requests taken in one step, failures and
successes, backlogs, which instances are active; and the engine keeping outputs current
on a MongoDB state, then a restarted engine going on from it without recomputing."""
from __future__ import annotations

import os
import socket
import uuid

import pytest

from distil import catalog
from distil.engine import Engine, Options
from qss.btrdbclient import Btrdb
from qss.distilstate import (Backlog, InstanceState, SqliteState, StateError, describe,
                             location, open_state, read_statuses)
from qss.distilstate.mongo import MongoState
from qss.settings import DistilSettings, QueueSettings, Settings

from distil_support import S, T0, create_streams, put, read, records, upmu_list

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
REAL_MONGO = os.environ.get("QSS_TEST_MONGO_URL")


@pytest.fixture(params=["sqlite", "mongomock", "mongodb"])
def make_store(request, tmp_path):
    """A function opening the store again (the same database each time)."""
    kind = request.param
    opened = []
    if kind == "sqlite":
        def make():
            opened.append(SqliteState(str(tmp_path / "distil.db")))
            return opened[-1]
    elif kind == "mongomock":
        import mongomock
        client = mongomock.MongoClient()
        client.close = lambda: None       # reopened below: the same in-memory server

        def make():
            opened.append(MongoState(client=client))
            return opened[-1]
    else:
        if not REAL_MONGO:
            pytest.skip("a real MongoDB server: set QSS_TEST_MONGO_URL=mongodb://HOST:PORT "
                        "(a scratch database is made and dropped)")
        name = f"qss_distil_test_{uuid.uuid4().hex[:12]}"

        def make():
            opened.append(MongoState(REAL_MONGO, database=name))
            return opened[-1]
    yield make
    if kind == "mongodb":
        import pymongo
        pymongo.MongoClient(REAL_MONGO).drop_database(name)
    for store in opened:
        store.close()


def test_state_and_requests_survive_a_reopen_and_are_taken_together(make_store):
    store = make_store()
    assert store.load("a") == InstanceState() and store.names() == []
    big = (-(16 << 56), (48 << 56) - 1)            # BTrDB's whole time range, int64
    store.request("a", (5 * S, 6 * S))
    store.request("b", (1, 2))
    store.request("a", big)
    got = store.requests("a")
    assert [r for _, r in got] == [(5 * S, 6 * S), big]
    st = InstanceState("frequency v1 L1ANG=x", {"u1": 2**62, "u2": 7}, [big])
    store.save("a", st, taken=(got[0][0],))
    store.close()
    again = make_store()
    assert again.load("a") == st and again.names() == ["a"]
    assert [r for _, r in again.requests("a")] == [big]
    assert [r for _, r in again.requests("b")] == [(1, 2)]
    assert again.forget("a") is True and again.forget("a") is False
    assert again.load("a") == InstanceState()


def test_status_counts_failures_in_a_row_and_backlogs(make_store):
    store = make_store()
    assert store.status("x") is None
    assert store.failed("x", "boom", now=10.0) == 1
    assert store.failed("x", "boom again", now=11.0) == 2
    s = store.status("x")
    assert (s.failures, s.error, s.error_at, s.points) == (2, "boom again", 11.0, 0)
    store.succeeded("x", 100, now=12.0)
    store.succeeded("x", 20, now=13.0)
    s = store.status("x")
    assert (s.failures, s.error, s.ok_at, s.points) == (0, None, 13.0, 120)
    store.measured("x", Backlog(5000, 3 * S, 17, 14.0))
    assert store.status("x").backlog == Backlog(5000, 3 * S, 17, 14.0)
    assert store.status("x").points == 120          # measuring keeps the rest
    store.activate({"x", "y"})
    store.activate({"y", "z"})
    active = {s.name: s.active for s in store.statuses()}
    assert active == {"x": False, "y": True, "z": True}
    assert [s.name for s in store.statuses()] == ["x", "y", "z"]


def test_the_state_goes_beside_the_queue():
    assert location(Settings(queue=QueueSettings("sqlite:////ssd/srv/queue.db"))) == \
        "/ssd/srv/distil.db"
    mongo = Settings(queue=QueueSettings("mongodb://u:pw@localhost:27017"))
    assert location(mongo) == "mongodb://u:pw@localhost:27017"
    assert isinstance(open_state(location(mongo)), MongoState)   # connects lazily
    mine = Settings(queue=mongo.queue, distil=DistilSettings(state="/var/lib/d.db"))
    assert location(mine) == "/var/lib/d.db"
    srv = Settings(queue=QueueSettings("mongodb+srv://u:pw@cluster.example.org/"))
    assert location(srv) == "mongodb+srv://u:pw@cluster.example.org/"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mongodb_passwords_stay_out_of_messages():
    # The status report (qss-get --status, upmu-adm status) prints these messages.
    url = (f"mongodb://ann:s3cret@127.0.0.1:{_closed_port()}/"
           f"?serverSelectionTimeoutMS=200")
    with pytest.raises(StateError) as down:
        read_statuses(url)
    assert "s3cret" not in str(down.value) and "ann" not in str(down.value)
    assert "127.0.0.1" in str(down.value)
    store = MongoState(url)
    assert "s3cret" not in store.location and "127.0.0.1" in store.location
    store.close()
    with pytest.raises(StateError) as invalid:
        open_state("mongodb://ann:s3cret@127.0.0.1:99999/")
    assert "s3cret" not in str(invalid.value) and "invalid MongoDB URL" in str(invalid.value)
    # Unescaped characters in the password: nothing of it shows either.
    for bad in ("mongodb://ann:s3/cret@h/", "mongodb://ann:s3@cret@h/",
                "mongodb+srv://ann:s3cret@h/?w=1"):
        assert "cret" not in describe(bad) and "h/" in describe(bad)


def test_the_status_report_reads_without_creating(tmp_path):
    path = tmp_path / "distil.db"
    assert read_statuses(str(path)) is None and not path.exists()
    store = SqliteState(str(path))
    store.measured("frequency/P1", Backlog(0, 0, None, 5.0))
    store.close()
    assert [s.name for s in read_statuses(str(path))] == ["frequency/P1"]


# -- the engine on a MongoDB state -----------------------------------------------------

@pytest.fixture(scope="module")
def btrdb(server):
    b = Btrdb([server.grpc])
    yield b
    b.close()


@pytest.fixture(params=["mongomock", "mongodb"])
def mongo(request):
    """(client, database name); the client outlives the stores closing it."""
    if request.param == "mongomock":
        import mongomock
        client = mongomock.MongoClient()
        client.close = lambda: None
        yield client, "qss_distil"
        return
    if not REAL_MONGO:
        pytest.skip("a real MongoDB server: set QSS_TEST_MONGO_URL=mongodb://HOST:PORT "
                    "(a scratch database is made and dropped)")
    import pymongo
    client = pymongo.MongoClient(REAL_MONGO)
    close, client.close = client.close, lambda: None
    name = f"qss_distil_test_{uuid.uuid4().hex[:12]}"
    yield client, name
    client.drop_database(name)
    close()


def test_the_engine_keeps_its_state_in_mongodb_and_a_restart_goes_on(btrdb, mongo):
    client, name = mongo
    ul = upmu_list("P3000041", first=41)
    u = ul.upmus[0]
    create_streams(btrdb, u)
    db = btrdb.get()
    put(db, u, records(u.serial, T0, 20))
    inst = catalog.builtin_instances(ul.upmus, ["frequency"])[0]
    eng = Engine(btrdb, MongoState(client=client, database=name),
                 Options(chunk_ns=5 * S, slice_s=0.5))
    eng.set_instances([inst])
    eng.catch_up(timeout=60)
    out = inst.output_uuid("FREQ_L1")
    assert len(read(db, out)[0]) == 19 * 120
    version = db.stream_from_uuid(out).version()
    st = client[name].instances.find_one({"_id": inst.name})
    assert st["pending"] == [] and set(st["consumed"]) == {str(u.streams["L1ANG"].uuid)}
    status = client[name].status.find_one({"_id": inst.name})
    assert status["failures"] == 0 and status["points"] == 19 * 120
    assert status["owed_points"] == 0 and status["active"] is True

    # A new engine on the same state owes nothing: the outputs are not rewritten ...
    again = Engine(btrdb, MongoState(client=client, database=name), Options(chunk_ns=5 * S))
    again.set_instances([inst])
    again.catch_up(timeout=60)
    assert db.stream_from_uuid(out).version() == version
    # ... until new data arrive; then only they (plus a second of lead) are computed.
    put(db, u, records(u.serial, T0 + 20, 10))
    again.catch_up(timeout=60)
    t, _ = read(db, out)
    assert len(t) == 29 * 120 and t[0] == T0 * S + S and t[-1] < (T0 + 30) * S
