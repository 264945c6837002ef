"""The plotter's JSON API against a real qss-btrdb, data inserted through the official
client: every value the API gives equals the client's own answer for the same query."""
from __future__ import annotations

import csv
import io
import socket
import time
import uuid as uuidlib

import numpy as np
import pytest
import requests

from plotter import testing as plotter_testing
from plotter.query import MAX_STREAMS, MAX_WIDTH, round_up
from qss.btrdbclient import connect
from tsdb import testing

T0 = 1_450_426_497_000_000_000          # 2015-12-18 08:14:57 UTC
RATE = 120
MINUTES = 10
GAP = (T0 + 240 * 10**9, T0 + 300 * 10**9)    # a minute without data in L1MAG


def samples(seconds: int, start: int = T0) -> np.ndarray:
    return start + np.round(np.arange(seconds * RATE) * (1e9 / RATE)).astype(np.int64)


@pytest.fixture(scope="module")
def db(server):
    conn = connect(server.grpc)
    yield conn
    conn._qss_channel.close()


@pytest.fixture(scope="module")
def streams(db):
    """Three streams as upmu-adm save writes them: two of uPMU1 (one with a gap), one of
    a uPMU in another domain, and one without data."""
    made = {}
    specs = [("upmu/uPMU1", "L1MAG", "V"), ("upmu/uPMU1", "C1MAG", "A"),
             ("lbnl/uPMU2", "FREQ_L1_1S", "Hz"), ("upmu/uPMU3", "L1ANG", "deg")]
    for collection, name, unit in specs:
        u = uuidlib.uuid4()
        made[name] = db.create(u, collection, {"name": name, "unit": unit},
                               {"Metadata/Instrument/SerialNumber": "P3001276"})
    t = samples(MINUTES * 60)
    keep = (t < GAP[0]) | (t >= GAP[1])
    rng = np.random.default_rng(7)
    for name, base in (("L1MAG", 7200.0), ("C1MAG", 110.0), ("FREQ_L1_1S", 60.0)):
        values = base + rng.normal(0, base / 100, len(t))
        tt, vv = (t[keep], values[keep]) if name == "L1MAG" else (t, values)
        made[name].insert(list(zip(tt.tolist(), vv.tolist())))
        made[name].flush()
    return made


def get(plotter, path, **params):
    return requests.get(plotter.url + path, params=params, timeout=30)


def windows_of(stream, start, end, pw):
    """The client's windows overlapping [start, end) (BTrDB rounds the end down)."""
    return [p for p, _ in stream.aligned_windows(start, round_up(end, pw), pw)]


# -- the stream tree and info ----------------------------------------------------------

def test_the_tree_lists_every_stream_by_collection_with_name_and_unit(plotter, streams):
    body = get(plotter, "/api/streams").json()
    listed = {s["uuid"]: s for s in body["streams"]}
    for name, stream in streams.items():
        s = listed[str(stream.uuid)]
        assert (s["collection"], s["name"], s["unit"]) == (stream.collection, name,
                                                           stream.unit)
        assert s["path"] == f"/{stream.collection}/{name}"
    tops = [node["name"] for node in body["tree"]]
    assert tops == ["lbnl", "upmu"]
    upmu = body["tree"][1]
    assert [c["name"] for c in upmu["children"]] == ["uPMU1", "uPMU3"]
    assert sorted(s["name"] for s in upmu["children"][0]["streams"]) == ["C1MAG", "L1MAG"]


def test_info_equals_the_clients_answers(plotter, streams):
    stream = streams["L1MAG"]
    info = get(plotter, f"/api/streams/{stream.uuid}").json()
    first, _ = stream.earliest()
    last, _ = stream.latest()
    assert info["uuid"] == str(stream.uuid)
    assert (info["first"], info["last"]) == (first.time, last.time)
    assert info["count"] == stream.count(precise=True) == len(samples(MINUTES * 60)) - 60 * RATE
    assert info["tags"] == stream.tags(refresh=True)
    assert info["annotations"]["Metadata/Instrument/SerialNumber"] == \
        stream.annotations()[0]["Metadata/Instrument/SerialNumber"]
    assert info["version"] == stream.version()
    # manual 17.1: the curl example against port 9000 with this UUID
    assert f"UUID={stream.uuid}" in info["curl"] and ":9000" in info["curl"]
    assert "/q/bracket" in info["curl"]


def test_info_of_a_stream_without_data(plotter, streams):
    info = get(plotter, f"/api/streams/{streams['L1ANG'].uuid}").json()
    assert (info["first"], info["last"], info["count"]) == (None, None, 0)


# -- windows and raw points ------------------------------------------------------------

@pytest.mark.parametrize("span_s,width", [(600, 1600), (600, 300), (30, 800)])
def test_windows_equal_the_clients_aligned_windows(plotter, streams, span_s, width):
    stream = streams["C1MAG"]
    start, end = T0 + 10**9, T0 + 10**9 + span_s * 10**9
    body = get(plotter, "/api/data", uuid=str(stream.uuid), start=start, end=end,
               width=width).json()
    answer = body["streams"][0]
    assert answer["kind"] == "windows"
    pw = answer["pw"]
    # a window is about a pixel: log2 of ns per pixel, rounded
    assert 2**(pw - 0.5) <= (end - start) / width < 2**(pw + 0.5)
    assert len(answer["times"]) <= 1.5 * width + 2
    want = windows_of(stream, start, end, pw)
    assert answer["times"] == [p.time for p in want]
    assert answer["min"] == [p.min for p in want]
    assert answer["mean"] == [p.mean for p in want]
    assert answer["max"] == [p.max for p in want]
    assert answer["count"] == [p.count for p in want]


def test_the_pages_compact_form_is_the_same_data_in_float32(plotter, streams):
    stream = streams["L1MAG"]
    start, end = T0 + 3 * 10**9, T0 + 400 * 10**9
    params = {"uuid": str(stream.uuid), "start": start, "end": end, "width": 700}
    exact = get(plotter, "/api/data", **params).json()["streams"][0]
    small = get(plotter, "/api/data", compact=1, **params).json()["streams"][0]
    pw = exact["pw"]
    assert (small["kind"], small["pw"], small["unit"]) == ("windows", pw, 2**pw)
    assert small["t0"] == start >> pw << pw
    assert [small["t0"] + i * small["unit"] for i in np.cumsum(small["times"]).tolist()] == \
        exact["times"]
    # consecutive windows differ by 1, except across the minute without data
    jumps = [d for d in small["times"][1:] if d != 1]
    assert len(jumps) == 1 and jumps[0] * 2**pw >= GAP[1] - GAP[0] - 2**(pw + 1)
    for k in ("min", "mean", "max"):
        assert np.array_equal(np.array(small[k], np.float32), np.array(exact[k], np.float32))
    assert small["count"] == exact["count"]
    raw = get(plotter, "/api/data", compact=1, **{**params, "end": start + 10**9}).json()
    raw = raw["streams"][0]
    want = [p for p, _ in stream.values(start, start + 10**9)]
    assert (raw["kind"], raw["unit"], raw["t0"]) == ("raw", 1, start)
    assert [start + i for i in np.cumsum(raw["times"]).tolist()] == [p.time for p in want]
    assert np.array_equal(np.array(raw["values"], np.float32),
                          np.array([p.value for p in want], np.float32))


def test_a_narrow_view_gets_the_raw_points(plotter, streams):
    stream = streams["L1MAG"]
    start, end = T0 + 5 * 10**9, T0 + 6 * 10**9         # 120 samples over 1600 px
    answer = get(plotter, "/api/data", uuid=str(stream.uuid), start=start, end=end,
                 width=1600).json()["streams"][0]
    assert (answer["kind"], answer["pw"]) == ("raw", None)
    want = [p for p, _ in stream.values(start, end)]
    assert len(want) == RATE
    assert answer["times"] == [p.time for p in want]
    assert answer["values"] == [p.value for p in want]


def test_a_gap_has_no_windows(plotter, streams):
    stream = streams["L1MAG"]
    answer = get(plotter, "/api/data", uuid=str(stream.uuid), start=T0,
                 end=T0 + MINUTES * 60 * 10**9, width=600).json()["streams"][0]
    pw = answer["pw"]
    inside = [t for t in answer["times"] if GAP[0] <= t and t + 2**pw <= GAP[1]]
    assert inside == []
    steps = np.diff(answer["times"])
    assert steps.max() >= GAP[1] - GAP[0] - 2**(pw + 1)   # the page draws this as a gap
    assert np.all(steps[steps != steps.max()] == 2**pw)


def test_several_streams_in_one_request_and_an_explicit_point_width(plotter, streams):
    uuids = [str(streams[n].uuid) for n in ("L1MAG", "C1MAG", "FREQ_L1_1S", "L1ANG")]
    body = get(plotter, "/api/data", uuid=uuids, start=T0, end=T0 + 60 * 10**9,
               width=100, pw=30).json()
    assert [s["uuid"] for s in body["streams"]] == uuids
    for s, name in zip(body["streams"], ("L1MAG", "C1MAG", "FREQ_L1_1S", "L1ANG")):
        assert (s["kind"], s["pw"]) == ("windows", 30)
        want = windows_of(streams[name], T0, T0 + 60 * 10**9, 30)
        assert s["mean"] == [p.mean for p in want]
    assert body["streams"][3]["times"] == []


def test_bracket_gives_first_and_last_points(plotter, streams):
    body = get(plotter, "/api/bracket", uuid=[str(streams["L1MAG"].uuid),
                                               str(streams["L1ANG"].uuid)]).json()
    first, _ = streams["L1MAG"].earliest()
    last, _ = streams["L1MAG"].latest()
    assert (body["first"], body["last"]) == (first.time, last.time)
    assert body["streams"][1] == {"uuid": str(streams["L1ANG"].uuid), "first": None,
                                  "last": None}


# -- CSV -------------------------------------------------------------------------------

def read_csv(text):
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], rows[1:]


def test_raw_csv_equals_the_clients_values_over_several_chunks(plotter, streams):
    a, b = streams["L1MAG"], streams["FREQ_L1_1S"]
    start, end = T0 + 200 * 10**9, T0 + 560 * 10**9     # across the gap, > 1 chunk (5 min)
    r = get(plotter, "/api/csv", uuid=[str(a.uuid), str(b.uuid)], start=start, end=end,
            raw=1)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers.get("transfer-encoding") == "chunked"      # streamed, not held whole
    header, rows = read_csv(r.text)
    assert header == ["time_ns", "time",
                      "/upmu/uPMU1/L1MAG mean", "/upmu/uPMU1/L1MAG min",
                      "/upmu/uPMU1/L1MAG max", "/upmu/uPMU1/L1MAG count",
                      "/lbnl/uPMU2/FREQ_L1_1S mean", "/lbnl/uPMU2/FREQ_L1_1S min",
                      "/lbnl/uPMU2/FREQ_L1_1S max", "/lbnl/uPMU2/FREQ_L1_1S count"]
    want_a = {p.time: p.value for p, _ in a.values(start, end)}
    want_b = {p.time: p.value for p, _ in b.values(start, end)}
    assert [int(r[0]) for r in rows] == sorted(set(want_a) | set(want_b))
    for row in rows:
        t = int(row[0])
        assert (float(row[2]) if row[2] else None) == want_a.get(t)
        assert float(row[6]) == want_b[t] and row[9] == "1"
    assert rows[0][1] == "2015-12-18T08:18:17.000000000Z"
    assert sum(1 for r in rows if not r[2]) == 60 * RATE          # the gap: empty cells


def test_windowed_csv_equals_the_clients_windows(plotter, streams):
    s = streams["C1MAG"]
    start, end = T0, T0 + MINUTES * 60 * 10**9
    r = get(plotter, "/api/csv", uuid=str(s.uuid), start=start, end=end, pw=33)
    header, rows = read_csv(r.text)
    want = windows_of(s, start, end, 33)
    assert [int(r[0]) for r in rows] == [p.time for p in want]
    assert [(float(r[2]), float(r[3]), float(r[4]), int(r[5])) for r in rows] == \
        [(p.mean, p.min, p.max, p.count) for p in want]


# -- bad input -------------------------------------------------------------------------

def good(streams):
    return {"uuid": str(streams["L1MAG"].uuid), "start": T0, "end": T0 + 10**9,
            "width": 100}


@pytest.mark.parametrize("change,status,message", [
    ({"uuid": str(uuidlib.UUID(int=1))}, 404, "no stream '00000000-0000-0000-0000-000000000001'"),
    ({"uuid": "L1MAG"}, 400, "'L1MAG' is not a stream UUID"),
    ({"end": T0 - 1}, 400, f"end ({T0 - 1}) must be after start ({T0})"),
    ({"width": 0}, 400, f"parameter 'width' = 0 is out of range (1 to {MAX_WIDTH})"),
    ({"width": MAX_WIDTH + 1}, 400, "parameter 'width'"),
    ({"start": -(17 << 56)}, 400, "parameter 'start'"),
    ({"end": 48 << 56}, 400, "parameter 'end'"),
    ({"start": "yesterday"}, 400, "parameter 'start' must be an integer, not 'yesterday'"),
    ({"pw": 63}, 400, "parameter 'pw' = 63 is out of range (0 to 62)"),
    ({"uuid": ",".join([str(uuidlib.uuid4())] * (MAX_STREAMS + 1))}, 400,
     f"too many streams: {MAX_STREAMS + 1} (at most {MAX_STREAMS} at once)"),
    ({"uuid": ""}, 400, "missing parameter 'uuid'"),
])
def test_bad_input_is_a_4xx_with_a_json_message(plotter, streams, change, status, message):
    r = get(plotter, "/api/data", **{**good(streams), **change})
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    assert message in r.json()["error"]


def test_unknown_paths_and_missing_parameters(plotter, streams):
    r = get(plotter, "/api/nothing")
    assert r.status_code == 404 and r.json() == {"error": "Not Found"}
    r = get(plotter, "/api/streams/not-a-uuid")
    assert r.status_code == 400 and "is not a stream UUID" in r.json()["error"]
    r = get(plotter, "/api/csv", uuid=str(streams["L1MAG"].uuid), start=T0, end=T0 + 1)
    assert r.status_code == 400 and "raw=1" in r.json()["error"]
    r = get(plotter, "/api/data", uuid=str(streams["L1MAG"].uuid), end=T0 + 1, width=3)
    assert r.status_code == 400 and r.json()["error"] == "missing parameter 'start'"


# -- the data usage gauge --------------------------------------------------------------

def test_usage_says_no_longer_accepting_at_the_receivers_threshold(server, tmp_path):
    for limit, accepting in (("100", True), ("1", False)):
        p = plotter_testing.start(server.grpc, tmp_path, "--max-disk-percent", limit,
                                  log_path=tmp_path / f"plotter-{limit}.log")
        try:
            u = get(p, "/api/usage").json()
        finally:
            p.stop()
        assert u["limit_percent"] == float(limit) and u["accepting"] is accepting
        assert u["message"] == (None if accepting else "No longer accepting new data")
        assert 0 < u["percent"] <= 100 and u["path"] == str(tmp_path)


# -- BTrDB down and back ---------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_btrdb_stopped_is_a_503_and_the_plotter_recovers_by_itself(tmp_path):
    port = free_port()
    data = tmp_path / "data"
    btrdb = testing.start(data, "--grpc", f"127.0.0.1:{port}")
    try:
        conn = connect(btrdb.grpc)
        s = conn.create(uuidlib.uuid4(), "upmu/uPMU9", {"name": "L1MAG", "unit": "V"}, {})
        t = samples(10)
        s.insert(list(zip(t.tolist(), [1.0] * len(t))))
        s.flush()
        conn._qss_channel.close()
        p = plotter_testing.start(btrdb.grpc, tmp_path, log_path=tmp_path / "plotter.log")
        try:
            query = {"uuid": str(s.uuid), "start": T0, "end": T0 + 10 * 10**9, "width": 50}
            before = get(p, "/api/data", **query)
            assert before.status_code == 200 and before.json()["streams"][0]["count"]
            btrdb.stop()
            for path in ("/api/data", "/api/streams", f"/api/streams/{s.uuid}"):
                r = get(p, path, **query)
                assert r.status_code == 503, (path, r.text)
                assert r.json()["error"].startswith("database unreachable")
            assert p.proc.poll() is None
            btrdb = testing.start(data, "--grpc", f"127.0.0.1:{port}")
            r = get(p, "/api/data", **query)
            assert r.status_code == 200 and r.json() == before.json()
        finally:
            p.stop()
        assert "Traceback" not in p.log()
    finally:
        btrdb.stop()


# -- permalinks ------------------------------------------------------------------------

def post(plotter, path, body):
    """A POST as the page sends it (with the CSRF token)."""
    return plotter_testing.client(plotter.url).post(
        plotter.url + path, data=body if isinstance(body, bytes) else None,
        json=None if isinstance(body, bytes) else body, timeout=30)


def test_a_permalink_round_trip_for_each_kind_of_window(plotter, streams):
    a, b = str(streams["L1MAG"].uuid), str(streams["C1MAG"].uuid)
    last, _ = streams["L1MAG"].latest()
    for window, want in (({"kind": "fixed", "start": T0, "end": T0 + 10**9}, (T0, T0 + 10**9)),
                         ({"kind": "last", "span": 60 * 10**9},
                          (last.time + 1 - 60 * 10**9, last.time + 1))):
        r = post(plotter, "/api/permalinks", {"streams": [a, b], "window": window,
                                              "zone": "Europe/Berlin",
                                              "view": {"colors": {a: "#123456"}}})
        assert r.status_code == 201
        made = r.json()
        assert made["url"] == f"/?p={made['id']}"
        got = get(plotter, f"/api/permalinks/{made['id']}").json()
        assert got["streams"] == [a, b] and (got["start"], got["end"]) == want
        assert got["zone"] == "Europe/Berlin" and got["view"] == {"colors": {a: "#123456"}}
        assert got["window"] == window
    r = post(plotter, "/api/permalinks", {"streams": [a], "window": {"kind": "now",
                                                                     "span": 10**9}})
    got = get(plotter, f"/api/permalinks/{r.json()['id']}").json()
    assert got["end"] - got["start"] == 10**9
    assert abs(got["end"] - time.time_ns()) < 60 * 10**9


def test_permalink_errors(plotter, streams):
    r = get(plotter, "/api/permalinks/not/ok")
    assert r.status_code == 404
    r = get(plotter, "/api/permalinks/bad!id")
    assert r.status_code == 400 and "malformed permalink id 'bad!id'" in r.json()["error"]
    r = get(plotter, "/api/permalinks/AAAAAAAAAAA")
    assert r.status_code == 404 and r.json() == {"error": "no permalink 'AAAAAAAAAAA'"}
    r = post(plotter, "/api/permalinks", b"{not json")
    assert r.status_code == 400 and "JSON permalink document" in r.json()["error"]
    r = post(plotter, "/api/permalinks", {"streams": [str(uuidlib.UUID(int=5))],
                                          "window": {"kind": "now", "span": 1}})
    assert r.status_code == 404 and "no stream" in r.json()["error"]
    r = post(plotter, "/api/permalinks", {"streams": [str(streams["L1MAG"].uuid)],
                                          "window": {"kind": "fixed", "start": 2, "end": 1}})
    assert r.status_code == 400 and "must be after its start" in r.json()["error"]
    r = requests.get(plotter.url + "/api/permalinks", timeout=10)
    assert r.status_code == 405


def test_permalinks_live_in_sqlite_beside_the_queue_across_restarts(server, streams, tmp_path):
    a = str(streams["L1MAG"].uuid)
    p = plotter_testing.start(server.grpc, tmp_path, log_path=tmp_path / "one.log")
    try:
        pid = post(p, "/api/permalinks", {"streams": [a], "window": {
            "kind": "fixed", "start": T0, "end": T0 + 5}}).json()["id"]
    finally:
        p.stop()
    assert (tmp_path / "plotter.db").exists()
    p = plotter_testing.start(server.grpc, tmp_path, log_path=tmp_path / "two.log")
    try:
        assert get(p, f"/api/permalinks/{pid}").json()["streams"] == [a]
    finally:
        p.stop()


# -- the health panel ------------------------------------------------------------------

def test_health_per_upmu_from_the_queue_and_quarantine(server, tmp_path):
    from qss.queue import open_queue
    from qss.upmuconfig import UpmuList
    from sync2q.quarantine import Quarantine
    cfg = tmp_path / "upmuconfig.ini"
    upmus = UpmuList.load(str(cfg))
    upmus.add("10.0.0.5", "P3001276", "uPMU1")
    upmus.add("10.0.0.6", "P3001277", "uPMU2")
    upmus.save(str(cfg))
    queue_url = f"sqlite:///{tmp_path}/queue.db"
    with open_queue(queue_url) as q:
        q.put("P3001276", "a.dat", b"x" * 100)
        q.put("P3001276", "b.dat", b"y" * 50)
        files = list(q.files("P3001276"))
        q.mark_synced(files[0])
    qu = Quarantine.beside(str(tmp_path))
    qu.add(files[1], "no usable record")
    p = plotter_testing.start(server.grpc, tmp_path, "--upmuconfig", str(cfg),
                              log_path=tmp_path / "plotter.log")
    try:
        h = get(p, "/api/health").json()
    finally:
        p.stop()
    one, two = h["upmus"]
    assert (one["alias"], one["serial"], one["ip"], one["collection"]) == \
        ("uPMU1", "P3001276", "10.0.0.5", "upmu/uPMU1")
    assert (one["queued_files"], one["unsynced_files"], one["unsynced_bytes"],
            one["quarantined"]) == (2, 1, 50, 1)
    assert one["last_received"] is not None and 0 <= one["seconds_ago"] < 120
    assert (two["alias"], two["last_received"], two["queued_files"], two["quarantined"]) == \
        ("uPMU2", None, 0, 0)
    # not run by supervisord here: the programs are unknown, and the report says why
    assert h["programs"] == [] and h["programs_error"]
