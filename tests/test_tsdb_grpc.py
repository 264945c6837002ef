"""The gRPC service driven by the official ``btrdb`` client over real loopback gRPC."""
import uuid

import btrdb.stream
import numpy as np
import pyarrow as pa
import pytest
from btrdb.exceptions import (BadValue, BTRDBServerError, InvalidPointWidth, InvalidTagKey,
                              InvalidTimeRange, RecycledUUID, StreamNotFoundError,
                              check_proto_stat)
from btrdb.grpcinterface import btrdb_pb2 as pb
from btrdb.stream import StreamSet

from tsdb import MAXIMUM_TIME, testing

SCHEMA = pa.schema([pa.field("time", pa.timestamp("ns", tz="UTC"), nullable=False),
                    pa.field("value", pa.float64(), nullable=False)])


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    with testing.in_process(tmp_path_factory.mktemp("grpc"), durable=False,
                            chunk_points=1000) as db:
        yield db


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


def test_arrow_insert_then_every_read_path_matches_numpy(conn, monkeypatch):
    # The client's own cut, pinned: the insert below spans several RPCs of it.
    monkeypatch.setattr(btrdb.stream, "INSERT_BATCH_SIZE", 50_000)
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


def arrow_table(t, v):
    return pa.Table.from_arrays([pa.array(np.asarray(t, np.int64), pa.timestamp("ns", tz="UTC")),
                                 pa.array(np.asarray(v, np.float64))], schema=SCHEMA)


def test_windows_match_numpy_including_wide_ones(conn):
    s = make_stream(conn, "windows")
    rng = np.random.default_rng(11)
    t = np.sort(rng.integers(0, 2**40, 60_000))
    v = rng.normal(50, 5, len(t))
    s.arrow_insert(arrow_table(t, v))
    start = 12345
    for width in (10**9 + 7, 2**36, 10**11):
        end = start + 2**40 - 1
        plain = s.windows(start, end, width)
        arrow = s.arrow_windows(start, end, width)
        end -= (end - start) % width
        sel = (t >= start) & (t < end)
        keys, inv, counts = np.unique((t[sel] - start) // width, return_inverse=True,
                                      return_counts=True)
        mean = np.bincount(inv, v[sel]) / counts
        std = np.sqrt(np.bincount(inv, (v[sel] - mean[inv]) ** 2) / counts)
        assert [p.time for p, _ in plain] == (start + keys * width).tolist()
        assert [p.count for p, _ in plain] == counts.tolist()
        assert arrow["count"].to_numpy().tolist() == counts.tolist()
        np.testing.assert_allclose(arrow["mean"].to_numpy(), mean, rtol=1e-12)
        np.testing.assert_allclose(arrow["stddev"].to_numpy(), std, rtol=1e-6)


def test_changes_report_what_each_version_touched(conn):
    s = make_stream(conn, "changes")
    v1 = s.insert([(1000, 1.0), (2000, 2.0)])
    v2 = s.insert([(5 * 2**30, 3.0)])
    v3 = s.delete(0, 1500)
    ep = conn.ep
    def ranges(a, b, res=0):
        return [(r.start, r.end) for batch, _ in ep.changes(s.uuid, a, b, res) for r in batch]
    assert ranges(v1, v2) == [(5 * 2**30, 5 * 2**30 + 1)]
    assert ranges(v2, v3) == [(0, 1500)]
    assert ranges(v1 - 1, v1) == [(1000, 2001)]
    assert ranges(v1 - 1, 0, 30) == [(0, 2**30), (5 * 2**30, 6 * 2**30)]
    assert ranges(v3, v3) == []
    with pytest.raises(BTRDBServerError, match="^427: "):
        ranges(v3, v1)


def test_tags_collection_and_annotations_update_with_property_versions(conn):
    s = make_stream(conn, "tagged", "qss/tags-a", {"site": "lab"})
    s.update(tags={"unit": "A"}, collection="qss/tags-b")
    fresh = conn.stream_from_uuid(s.uuid)
    fresh.refresh_metadata()
    assert fresh.collection == "qss/tags-b"
    assert fresh.tags() == {"name": "tagged", "unit": "A", "ingress": ""}
    assert fresh.annotations()[1] > 1
    assert "qss/tags-a" not in conn.list_collections("qss/tags")
    assert [x.uuid for x in conn.streams_in_collection("qss/tags-b")] == [s.uuid]
    fresh.update(annotations={"phase": "A"}, replace=True)
    assert conn.stream_from_uuid(s.uuid).annotations()[0] == {"phase": "A"}
    with pytest.raises(InvalidTagKey):
        fresh.update(tags={"colour": "red"})
    stale = conn.stream_from_uuid(s.uuid)
    stale._property_version = 1
    stale._tags, stale._annotations = fresh.tags(), {"phase": "A"}
    with pytest.raises(BTRDBServerError, match="^423: "):
        stale.update(annotations={"phase": "B"})


def test_obliterate_removes_the_stream_for_good(conn):
    s = make_stream(conn, "doomed")
    s.insert([(10, 1.0)])
    s.obliterate()
    assert not conn.stream_from_uuid(s.uuid).exists()
    with pytest.raises(StreamNotFoundError):
        s.values(0, 100)
    with pytest.raises(RecycledUUID):
        conn.create(s.uuid, "qss/test", tags={"name": "again"})
    with pytest.raises(StreamNotFoundError):
        s.obliterate()


def test_arrow_multi_values_join_and_snap(conn):
    a, b = make_stream(conn, "ma"), make_stream(conn, "mb")
    sec = 10**9
    a.insert([(1 * sec, 1.0), (2 * sec, 2.0), (3 * sec, 3.0)])
    b.insert([(2 * sec, 20.0), (int(2.5 * sec), 25.0), (4 * sec, 40.0)])
    ss = StreamSet([a, b]).filter(start=1, end=5 * sec)  # the client drops start=0
    table = ss.arrow_values()
    assert table.column_names == ["time", str(a.uuid), str(b.uuid)]
    assert table["time"].cast(pa.int64()).to_pylist() == [sec, 2 * sec, int(2.5 * sec),
                                                         3 * sec, 4 * sec]
    nan = float("nan")
    got = [[x if x == x else nan for x in table[str(u)].to_pylist()] for u in (a.uuid, b.uuid)]
    np.testing.assert_equal(got, [[1.0, 2.0, nan, 3.0, nan], [nan, 20.0, 25.0, nan, 40.0]])
    # Snapped to 1 Hz: b's point at 2.5 s rounds up to 3 s (a tie rounds up).
    snapped = StreamSet([a, b]).filter(start=1, end=5 * sec, sampling_frequency=1)
    t2 = snapped.arrow_values()
    assert t2["time"].cast(pa.int64()).to_pylist() == [sec, 2 * sec, 3 * sec, 4 * sec]
    assert t2[str(b.uuid)].to_pylist()[2] == 25.0


def test_bad_requests_give_the_clients_exceptions_and_the_server_stays_up(conn):
    s = make_stream(conn, "bad")
    s.insert([(10, 1.0), (20, 2.0)])
    ep = conn.ep
    unknown = uuid.uuid4()
    with pytest.raises(StreamNotFoundError):
        conn.stream_from_uuid(unknown).arrow_values(0, 10)
    with pytest.raises(StreamNotFoundError):
        conn.stream_from_uuid(unknown).insert([(1, 1.0)])
    with pytest.raises(InvalidTimeRange):
        s.arrow_values(100, 10)
    with pytest.raises(InvalidTimeRange):
        s.windows(100, 10, 5)
    with pytest.raises(InvalidTimeRange):
        s.insert([(MAXIMUM_TIME, 1.0)])
    with pytest.raises(InvalidPointWidth):
        s.arrow_aligned_windows(0, 100, 99)
    with pytest.raises(InvalidPointWidth):
        s.windows(0, 100, 0)
    with pytest.raises(BadValue):
        s.insert([(30, float("nan"))])
    with pytest.raises(BTRDBServerError, match="^421: malformed Arrow payload"):
        check(ep.stub.ArrowInsert(pb.ArrowInsertParams(uuid=s.uuid.bytes,
                                                       arrowBytes=b"not arrow at all")))
    with pytest.raises(BTRDBServerError, match="^421: malformed uuid"):
        check(ep.stub.Flush(pb.FlushParams(uuid=b"short")))
    assert [p.value for p, _ in s.values(0, 100)] == [1.0, 2.0]  # still serving


def check(response):
    check_proto_stat(response.stat)
    return response


def _arrow_payload(t, v) -> bytes:
    table = pa.table({"time": pa.array(t, pa.timestamp("ns", tz="UTC")), "value": v})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write(table)
    return sink.getvalue().to_pybytes()


# 172,800 points: a payload over 2 MiB, whose 4-byte length leaves it unaligned in the
# request (the copied path); 1000 points: read in place.
@pytest.mark.parametrize("sync, policy, rounding, n", [
    (False, 3, False, 1000), (True, 1, True, 1000), (False, 0, False, 1000),
    (False, 2, False, 172_800)])
def test_arrow_insert_requests_are_read_as_the_generated_class_reads_them(sync, policy,
                                                                          rounding, n):
    from tsdb import arrowio, wire
    t = np.arange(n, dtype=np.int64) * 8_333_333 + 1_450_000_000 * 10**9
    v = np.random.default_rng(1).normal(size=n)
    u = uuid.uuid4().bytes
    msg = pb.ArrowInsertParams(uuid=u, sync=sync, merge_policy=policy,
                               arrowBytes=_arrow_payload(t, v))
    if rounding:
        msg.rounding.bits = 7
    raw = msg.SerializeToString()
    got = wire.parse_arrow_insert(raw)
    assert (got.uuid, got.sync, got.merge_policy, got.arrowBytes) == \
        (msg.uuid, msg.sync, msg.merge_policy, msg.arrowBytes)
    # Unknown fields of every wire type are skipped; a repeated field's last value counts.
    extra = bytes([0x30, 0x05, 0x39, *range(8), 0x45, *range(4), 0x52, 0x02, 0xAA, 0xBB,
                   0x18, 0x02])
    assert wire.parse_arrow_insert(raw + extra).merge_policy == 2
    tt, vv = arrowio.decode_points(got.arrowBytes)
    np.testing.assert_array_equal(tt, t)
    np.testing.assert_array_equal(vv, v)
    assert tt.flags.aligned and vv.flags.aligned   # what the compiled kernels take


@pytest.mark.parametrize("raw", [b"\x0a\x10abc", b"\x28\xff\xff", b"\x0b", b"\x00\x01",
                                 b"\x39\x01\x02"])
def test_a_malformed_arrow_insert_request_is_wrong_args(raw):
    from tsdb import wire
    from tsdb.errors import WrongArgs
    with pytest.raises(WrongArgs):
        wire.parse_arrow_insert(raw)


def test_the_server_reads_arrow_inserts_from_their_bytes(conn, monkeypatch):
    from tsdb import wire
    seen = []
    real = wire.parse_arrow_insert
    monkeypatch.setattr(wire, "parse_arrow_insert", lambda raw: seen.append(len(raw)) or
                        real(raw))
    s = make_stream(conn, "wire")
    t = np.arange(500, dtype=np.int64) * 10**6 + 1_500_000_000 * 10**9
    s.arrow_insert(pa.table({"time": pa.array(t, pa.timestamp("ns", tz="UTC")),
                             "value": np.ones(500)}), merge="replace")
    assert len(seen) == 1 and s.count() == 500
