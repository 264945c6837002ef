"""The gRPC service driven by the official ``btrdb`` client over real loopback gRPC."""
import uuid

import numpy as np
import pyarrow as pa
import pytest
from btrdb.conn import BTrDB, Connection
from btrdb.endpoint import Endpoint
from btrdb.exceptions import InvalidPointWidth, InvalidTimeRange, StreamNotFoundError

from qss.tsdb import Store
from qss.tsdb.grpc_service import make_server

SCHEMA = pa.schema([pa.field("time", pa.timestamp("ns", tz="UTC"), nullable=False),
                    pa.field("value", pa.float64(), nullable=False)])


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("grpc"), durable=False, chunk_points=1000)
    server, port = make_server(store, "127.0.0.1:0")
    server.start()
    # What btrdb.connect() does, keeping the channel so that teardown can close it.
    channel = Connection(f"127.0.0.1:{port}").channel
    db = BTrDB(Endpoint(channel))
    yield db
    db._executor.shutdown()
    channel.close()
    server.stop(0).wait()
    store.close()


def make_stream(conn, name, collection="qss/test", annotations=None):
    return conn.create(uuid.uuid4(), collection, tags={"name": name, "unit": "V"},
                       annotations=annotations or {})


def test_info_enables_arrow(conn):
    info = conn.info()
    assert info["majorVersion"] == 5 and info["minorVersion"] >= 30
    assert conn._ARROW_ENABLED


def test_create_describe_and_find(conn):
    s = make_stream(conn, "L1MAG", "qss/meta", {"site": "lab"})
    assert s.exists()
    again = conn.stream_from_uuid(s.uuid)
    again.refresh_metadata()
    assert again.collection == "qss/meta" and again.name == "L1MAG" and again.unit == "V"
    assert again.annotations()[0] == {"site": "lab"}
    assert "qss/meta" in conn.list_collections("qss")
    assert [x.uuid for x in conn.streams_in_collection("qss/meta")] == [s.uuid]
    assert conn.streams("qss/meta/L1MAG")[0].uuid == s.uuid
    s.update(annotations={"site": "field"})
    assert conn.stream_from_uuid(s.uuid).annotations()[0] == {"site": "field"}
    assert not conn.stream_from_uuid(uuid.uuid4()).exists()


def test_arrow_insert_then_every_read_path_matches_numpy(conn):
    s = make_stream(conn, "values")
    rng = np.random.default_rng(3)
    t = 1_500_000_000 * 10**9 + np.sort(rng.choice(10**7, 120_000, replace=False)) * 10**5
    v = 7200 + rng.normal(0, 0.5, len(t))
    version = s.arrow_insert(pa.Table.from_arrays([pa.array(t, pa.timestamp("ns", tz="UTC")),
                                                   pa.array(v)], schema=SCHEMA))
    assert version == s.version() == 13  # three 50,000-point calls after creation at 10
    start, end = int(t[1000]), int(t[100_000])
    table = s.arrow_values(start, end)
    assert table.schema.equals(SCHEMA)
    sel = (t >= start) & (t < end)
    assert np.array_equal(table["time"].cast(pa.int64()).to_numpy(), t[sel])
    assert np.array_equal(table["value"].to_numpy(), v[sel])
    pts = s.values(start, start + 10**8)
    assert [p.time for p, _ in pts] == t[(t >= start) & (t < start + 10**8)].tolist()
    for pw in (20, 30, 36, 40):
        aw = s.arrow_aligned_windows(int(t[0]), int(t[-1]), pw)
        plain = s.aligned_windows(int(t[0]), int(t[-1]), pw)
        mask = (1 << pw) - 1
        sel = (t >= (int(t[0]) & ~mask)) & (t < (int(t[-1]) & ~mask))
        keys = t[sel] >> pw
        _, inv, counts = np.unique(keys, return_inverse=True, return_counts=True)
        mean = np.bincount(inv, v[sel]) / counts
        std = np.sqrt(np.bincount(inv, (v[sel] - mean[inv]) ** 2) / counts)
        assert aw["count"].to_numpy().tolist() == counts.tolist()
        assert [p.count for p, _ in plain] == counts.tolist()
        np.testing.assert_allclose(aw["mean"].to_numpy(), mean, rtol=1e-12)
        np.testing.assert_allclose(aw["stddev"].to_numpy(), std, rtol=1e-6)
        assert [p.stddev for p, _ in plain] == aw["stddev"].to_numpy().tolist()
    w = s.arrow_windows(int(t[0]), int(t[0]) + 10**10, 10**9)
    assert w["count"].to_numpy().sum() == ((t >= t[0]) & (t < t[0] + 10**10)).sum()
    assert s.count() == len(t)
    assert s.earliest()[0].time == t[0] and s.latest()[0].time == t[-1]
    assert s.nearest(int(t[5]) + 1, version=0)[0].time == t[6]
    s.delete(int(t[0]), int(t[10]))
    assert s.count() == len(t) - 10


@pytest.mark.parametrize("merge,expect", [
    ("never", [(100, 0), (105, 1), (110, 2), (110, 3), (120, 4)]),
    ("equal", [(100, 0), (105, 1), (110, 2), (110, 3), (120, 4)]),
    ("retain", [(100, 0), (105, 1), (110, 2), (120, 4)]),
    ("replace", [(100, 0), (105, 1), (110, 3), (120, 4)]),
])
def test_duplicate_timestamps_per_merge_policy(conn, merge, expect):
    # The client's own integration test, test_arrow_insert_duplicate_timestamps.
    s = make_stream(conn, f"dup-{merge}")
    table = pa.Table.from_arrays([pa.array([100, 105, 110, 110, 120],
                                           pa.timestamp("ns", tz="UTC")),
                                  pa.array([0.0, 1, 2, 3, 4])], schema=SCHEMA)
    s.arrow_insert(table, merge=merge)
    got = s.arrow_values(0, 200)
    assert list(zip(got["time"].cast(pa.int64()).to_pylist(), got["value"].to_pylist())) \
        == expect


def test_errors_map_to_client_exceptions(conn):
    s = make_stream(conn, "errors")
    s.insert([(10, 1.0), (20, 2.0)])
    with pytest.raises(InvalidPointWidth):
        s.aligned_windows(0, 100, 64)
    with pytest.raises(InvalidTimeRange):
        s.values(100, 10)
    with pytest.raises(StreamNotFoundError):
        conn.stream_from_uuid(uuid.uuid4()).values(0, 10)
    assert [p.value for p, _ in s.values(0, 100)] == [1.0, 2.0]  # still serving
