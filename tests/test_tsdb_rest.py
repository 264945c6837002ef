"""The v3 REST API (port 9000) of a real qss-btrdb process, as the manual's appendix 17.1
uses it, checked with requests and, where curl and jq exist, with the manual's commands."""
import csv
import io
import json
import shutil
import subprocess
import uuid

import numpy as np
import pytest
import requests

from tsdb import Store
from tsdb.rest import go_float
from tsdb.testing import running

# The manual's stream, times and point widths (appendix 17.1.2.2.2).
UUID = "f0896731-0e43-4ed5-a97f-19266d8e732c"
STIME, ETIME = 1477100329040881700, 1477186729034743600            # statistical example
RAW_STIME, RAW_ETIME = 1474321947545300000, 1474326345591810000    # raw example
EMPTY = "2b3d36a4-1d2b-4b55-9b38-0b0f2a0c1e11"                      # exists, no points
MISSING = "5c1a8d2e-0000-4000-8000-000000000000"                   # does not exist

# One point a second over two days from STIME, and over the raw example's hour.
T_STAT = STIME + np.arange(0, 2 * 86400, dtype=np.int64) * 10**9
T_RAW = RAW_STIME - 10**9 + np.arange(0, 75 * 60, dtype=np.int64) * 10**9
T = np.concatenate([T_RAW, T_STAT])
V = np.round(7200 + 50 * np.sin(np.arange(len(T)) / 300.0), 3)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("rest") / "data"
    with Store(data, durable=False) as s:
        s.create(uuid.UUID(UUID), "manual/P1", {"name": "C1ANG", "unit": "deg"}, {})
        s.insert(uuid.UUID(UUID), T, V)
        s.create(uuid.UUID(EMPTY), "manual/P1", {"name": "EMPTY"}, {})
    with running(data, "--no-fsync") as srv:
        yield srv
    assert srv.proc.returncode == 0, srv.log()


def get(server, path, **params):
    return requests.get(server.http + path, params=params, timeout=30)


def post(server, path, body):
    return requests.post(server.http + path, data=body, timeout=30)


def expected_windows(start, end, pw):
    mask = (1 << pw) - 1
    sel = (T >= (start & ~mask)) & (T < (end & ~mask))
    keys, inv, counts = np.unique(T[sel] >> pw, return_inverse=True, return_counts=True)
    v = V[sel]
    return (keys << pw, np.minimum.reduceat(v, np.r_[0, np.cumsum(counts)[:-1]]),
            np.bincount(inv, v) / counts, np.maximum.reduceat(v, np.r_[0, np.cumsum(counts)[:-1]]),
            counts)


def test_status_is_ok(server):
    r = get(server, "/status")
    assert (r.status_code, r.content) == (200, b"OK")


def test_bracket_gives_first_and_last_point(server):
    r = post(server, "/q/bracket", json.dumps({"UUIDS": [UUID]}))
    assert r.status_code == 200 and r.text.endswith("\n")
    assert r.json() == {"Brackets": [[int(T[0]), int(T[-1])]], "Merged": [int(T[0]), int(T[-1])]}
    # Several streams, one missing: [-1, -1] for it, Merged over the others.
    r = post(server, "/q/bracket", '{"uuids": ["%s", "%s"]}' % (MISSING, UUID))
    assert r.json()["Brackets"] == [[-1, -1], [int(T[0]), int(T[-1])]]


def test_statistical_query_matches_the_manual_and_numpy(server):
    r = get(server, f"/data/uuid/{UUID}", starttime=STIME, endtime=ETIME, unitoftime="ns",
            pw=46)
    assert r.status_code == 200
    [doc] = r.json()
    assert list(doc) == ["uuid", "XReadings", "version"] and doc["uuid"] == UUID
    # The manual's output: two windows starting at 1477039940289 ms + 167360 ns and
    # 1477110309033 ms + 345024 ns.
    assert [x[:2] for x in doc["XReadings"]] == [[1477039940289, 167360],
                                                 [1477110309033, 345024]]
    times, mn, mean, mx, count = expected_windows(STIME, ETIME, 46)
    got = np.array(doc["XReadings"], dtype=object)
    assert [a * 10**6 + b for a, b in got[:, :2]] == times.tolist()
    assert got[:, 2].tolist() == mn.tolist() and got[:, 4].tolist() == mx.tolist()
    np.testing.assert_allclose(got[:, 3].astype(float), mean, rtol=1e-12)
    assert got[:, 5].tolist() == count.tolist()


@pytest.mark.parametrize("pw", [20, 30, 33, 36, 40])
def test_statistical_query_at_many_point_widths(server, pw):
    start, end = int(T_STAT[1000]) + 12345, int(T_STAT[90_000])
    r = get(server, f"/data/uuid/{UUID}", starttime=start, endtime=end, unitoftime="ns", pw=pw)
    rows = r.json()[0]["XReadings"]
    times, mn, mean, mx, count = expected_windows(start, end, pw)
    assert [a * 10**6 + b for a, b, *_ in rows] == times.tolist()
    assert [x[5] for x in rows] == count.tolist()
    np.testing.assert_allclose([x[3] for x in rows], mean, rtol=1e-12)


def test_raw_query_in_ns_and_default_ms(server):
    r = get(server, f"/data/uuid/{UUID}", starttime=RAW_STIME, endtime=RAW_ETIME,
            unitoftime="ns")
    [doc] = r.json()
    assert list(doc) == ["uuid", "Readings", "version", "Properties"]
    assert doc["Properties"] == {"UnitofTime": "ns"}
    sel = (T >= RAW_STIME) & (T < RAW_ETIME)
    assert [p[0] for p in doc["Readings"]] == T[sel].tolist()
    assert [p[1] for p in doc["Readings"]] == V[sel].tolist()
    # No unitoftime: milliseconds in and out, and UnitofTime "" echoed.
    r = get(server, f"/data/uuid/{UUID}", starttime=RAW_STIME // 10**6,
            endtime=RAW_ETIME // 10**6)
    doc = r.json()[0]
    assert doc["Properties"] == {"UnitofTime": ""}
    sel = (T >= RAW_STIME // 10**6 * 10**6) & (T < RAW_ETIME // 10**6 * 10**6)
    assert [p[0] for p in doc["Readings"]] == (T[sel] // 10**6).tolist()


def test_raw_query_boundaries_are_start_inclusive_end_exclusive(server):
    a, b = int(T_RAW[10]), int(T_RAW[20])
    r = get(server, f"/data/uuid/{UUID}", starttime=a, endtime=b, unitoftime="ns")
    assert [p[0] for p in r.json()[0]["Readings"]] == T_RAW[10:20].tolist()


def test_window_query_emits_blank_records(server):
    start = int(T_RAW[-1]) - 5 * 10**9
    r = get(server, f"/data/uuid/{UUID}", starttime=start, endtime=start + 20 * 10**9,
            unitoftime="ns", win=4 * 10**9)
    rows = r.json()[0]["XReadings"]
    assert [x[5] for x in rows] == [4, 2, 0, 0, 0]
    assert rows[-1][2:5] == [0, 0, 0]


def test_directcsv_matches_the_manual_format(server):
    body = {"UUIDS": [UUID, EMPTY], "Labels": ["C1ANG", "EMPTY"], "StartTime": STIME,
            "EndTime": ETIME, "UnitofTime": "ns", "PointWidth": 40}
    r = post(server, "/directcsv", json.dumps(body))
    assert r.status_code == 200
    assert r.headers["Content-Disposition"] == 'attachment; filename="quasar_results.csv"'
    lines = r.text.split("\n")
    assert lines[0] == ("Time[ns],Time,C1ANG(cnt),C1ANG(min),C1ANG(mean),C1ANG(max),"
                        "EMPTY(cnt),EMPTY(min),EMPTY(mean),EMPTY(max)")
    assert lines[-1] == ""  # every line ends with \n
    times, mn, mean, mx, count = expected_windows(STIME, ETIME, 40)
    rows = list(csv.reader(io.StringIO("\n".join(lines[1:]))))
    assert [int(x[0]) for x in rows] == times.tolist()
    assert all(len(x[1]) == 23 for x in rows)  # 2016-10-22 01:40:13.428 (local time)
    assert [int(x[2]) for x in rows] == count.tolist()
    assert [x[3] for x in rows] == [f"{m:f}" for m in mn]
    assert [x[6:] for x in rows] == [[""] * 4] * len(rows)


def test_directcsv_writes_gap_rows_between_windows_only(server):
    # pw=30 from before the raw hour's end into the gap until the two days start.
    st = int(T_RAW[-1]) - 3 * 2**30
    body = {"UUIDS": [UUID], "Labels": ["A"], "StartTime": st, "EndTime": st + 8 * 2**30,
            "UnitofTime": "ns", "PointWidth": 30}
    rows = post(server, "/directcsv", json.dumps(body)).text.split("\n")[1:-1]
    assert 3 <= len(rows) <= 4 and all(r.count(",") == 5 for r in rows)  # no trailing gaps
    body["StartTime"] = st = int(T_STAT[0]) - 3 * 2**30
    body["EndTime"] = st + 8 * 2**30
    rows = post(server, "/directcsv", json.dumps(body)).text.split("\n")[1:-1]
    assert [r.count(",") for r in rows] == [1, 1, 1, 5, 5, 5, 5, 5]


def test_wrappedcsv_takes_the_json_in_a_form_field(server):
    body = {"UUIDS": [UUID], "Labels": ["A"], "StartTime": STIME, "EndTime": ETIME,
            "UnitofTime": "ns", "PointWidth": 46}
    r = requests.post(server.http + "/wrappedcsv", data={"body": json.dumps(body)}, timeout=30)
    assert r.status_code == 200 and len(r.text.split("\n")) == 4


def test_nearest_and_single_stream_csv(server):
    r = get(server, f"/q/nearest/{UUID}", time=int(T[5]) + 1)
    assert r.text == f"[{T[6]}, {V[6]:f}]"
    r = get(server, f"/q/nearest/{UUID}", time=int(T[5]) + 1, backwards="true")
    assert r.text == f"[{T[5]}, {V[5]:f}]"
    r = get(server, f"/csv/uuid/{UUID}", starttime=STIME, endtime=ETIME, unitoftime="ns",
            pw=46)
    assert r.text.split("\n")[0] == "Time[ns],Mean,Min,Max,Count"
    assert len(r.text.split("\n")) == 4


@pytest.mark.parametrize("method,path,params,body,status,message", [
    ("GET", f"/data/uuid/{UUID}", {"starttime": 10, "endtime": 5}, None, 400,
     "end time <= start time"),
    ("GET", f"/data/uuid/{UUID}", {"starttime": "x", "endtime": 5}, None, 400,
     "bad start time: malformed"),
    ("GET", f"/data/uuid/{UUID}", {"starttime": 1, "endtime": 10**30}, None, 400,
     "bad end time: out of acceptable range"),
    ("GET", f"/data/uuid/{UUID}", {"starttime": 1, "endtime": 5, "unitoftime": "h"}, None,
     400, "unitoftime must be 'ns', 'ms', 'us' or 's'"),
    ("GET", f"/data/uuid/{UUID}", {"starttime": 1, "endtime": 5, "pw": 63}, None, 400,
     "bad point width: out of acceptable range"),
    ("GET", f"/data/uuid/{UUID}", {"starttime": 1, "endtime": 5, "pw": 30}, None, 400,
     "statistical results require unitoftime=ns"),
    ("GET", f"/data/uuid/{UUID}", {"starttime": 1, "endtime": 5, "pw": 3, "win": 4}, None,
     400, "cannot have pointwidth and window"),
    ("GET", f"/data/uuid/{UUID}", {"starttime": 1, "endtime": 2**60, "unitoftime": "ns",
                                   "win": 2**20}, None, 400,
     "that query would give 1,099,511,627,775 rows per stream (limit 10,000,000); ask for "
     "wider windows or a shorter range"),
    ("POST", "/directcsv", None, f'{{"UUIDS": ["{UUID}"], "Labels": ["x"], "StartTime": 1, '
     f'"EndTime": {2**61}, "UnitofTime": "ns", "PointWidth": 1}}', 400,
     f"that query would give {int(T[-1]) // 2 + 1:,} rows per stream (limit 10,000,000); "
     "ask for wider windows or a shorter range"),  # rows up to the last point
    ("GET", "/data/uuid/not-a-uuid", {"starttime": 1, "endtime": 5}, None, 400,
     "malformed uuid"),
    ("GET", f"/data/uuid/{MISSING}", {"starttime": 1, "endtime": 5}, None, 400,
     "query error: No such stream"),
    ("POST", "/q/bracket", None, "{not json", 400, "bad request"),
    ("POST", "/q/bracket", None, '{"UUIDS": []}', 400, "no uuids"),
    ("POST", "/q/bracket", None, f'{{"UUIDS": ["{MISSING}"]}}', 400,
     "Bad query: none of those streams exist"),
    ("POST", "/q/bracket", None, f'{{"UUIDS": ["{EMPTY}"]}}', 400,
     "Bad query: No such point"),
    ("POST", "/directcsv", None, '{"UUIDS": ["a"], "Labels": []}', 400,
     "UUIDS and Labels must be the same length"),
    ("POST", "/directcsv", None, '{"UUIDS": ["a"], "Labels": ["x"]}', 400,
     "UUID 0 is malformed"),
    ("POST", "/directcsv", None, f'{{"UUIDS": ["{UUID}"], "Labels": ["x"], "PointWidth": 63}}',
     400, "PointWidth must be between 0 and 63"),
    ("POST", "/directcsv", None, f'{{"UUIDS": ["{MISSING}"], "Labels": ["x"], '
     f'"StartTime": 1, "EndTime": 2, "PointWidth": 30}}', 400,
     f"Stream {MISSING} does not exist"),
    ("GET", "/q/bracket", None, None, 405, "Method Not Allowed\n"),
    ("GET", "/nothing/here", None, None, 404, "404 page not found\n"),
    ("POST", "/q/bracket", None, "x" * (2 << 20), 413,
     "request body of 2097152 bytes is too large (limit 1048576)"),
])
def test_bad_requests_get_a_one_line_message_and_the_server_stays_up(
        server, method, path, params, body, status, message):
    r = requests.request(method, server.http + path, params=params, data=body, timeout=30)
    assert (r.status_code, r.text) == (status, message)
    assert get(server, "/status").text == "OK"


def test_windows_style_quoted_query_string_is_accepted(server):
    # set PARAMS="starttime=...&pw=46" keeps the quotes in the variable.
    q = f'"starttime={STIME}&endtime={ETIME}&unitoftime=ns&pw=46"'
    r = requests.get(f"{server.http}/data/uuid/{UUID}?{q}", timeout=30)
    assert len(r.json()[0]["XReadings"]) == 2


def test_go_float_format():
    assert [go_float(x) for x in (2.0, -0.0, 0.1, 1e-7, 1.5e-5, 1e21, 1.5e16, 7200.125)] \
        == ["2", "-0", "0.1", "1e-7", "0.000015", "1e+21", "15000000000000000", "7200.125"]


# ---- the manual's commands, through bash, curl and jq ---------------------------------
# Appendix 17.1 as printed, with only what a reader must fix: typographic quotes and the
# OCR's line-end marks restored, the comments inside the directcsv JSON (which bash
# cannot parse) left out, and PARAMS for the statistical query taken from the Windows
# example (the Linux line is missing from the page).
MANUAL = r"""
set -e
SERVER={server}
UUID={uuid}
curl -s $SERVER/status > status.txt
curl -X POST $SERVER/q/bracket -d '{{"UUIDS": ["'$UUID'"]}}' | jq > bracket.json
STIME=1477100329040881700
ETIME=1477186729034743600
PW=46 # returns data in 1 day intervals
PARAMS="starttime=$STIME&endtime=$ETIME&unitoftime=ns&pw=$PW"
curl -X GET "$SERVER/data/uuid/$UUID?$PARAMS" | jq > stat.json
curl -X GET "$SERVER/data/uuid/$UUID?$PARAMS" | jq .[0].XReadings[][5] > counts.txt
curl -X POST $SERVER/directcsv -d '{{
        "UUIDS":["'$UUID'"],
        "Labels": ["ClANG"],
        "StartTime": '"$STIME"',
        "EndTime": '"$ETIME"',
        "UnitofTime": "ns",
        "PointWidth": 46
}}' > file.csv
STIME=1474321947545300000 # 9/19/16 2:52:28 PM
ETIME=1474326345591810000 # 9/19/16 4:05:46 PM
PARAMS="starttime=$STIME&endtime=$ETIME&unitoftime=ns"
curl -X GET "$SERVER/data/uuid/$UUID?$PARAMS" > data.json
"""


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq") and shutil.which("bash")),
                    reason="needs bash, curl and jq")
def test_manual_curl_examples_as_printed(server, tmp_path):
    # The manual's SERVER has the http:// scheme; its Windows example omits it.
    script = MANUAL.format(server=server.http.replace("http://", ""), uuid=UUID)
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "status.txt").read_text() == "OK"
    bracket = json.loads((tmp_path / "bracket.json").read_text())
    assert bracket["Brackets"] == [[int(T[0]), int(T[-1])]]
    stat = json.loads((tmp_path / "stat.json").read_text())
    assert [x[:2] for x in stat[0]["XReadings"]] == [[1477039940289, 167360],
                                                     [1477110309033, 345024]]
    counts = [int(x) for x in (tmp_path / "counts.txt").read_text().split()]
    assert counts == [x[5] for x in stat[0]["XReadings"]]
    lines = (tmp_path / "file.csv").read_text().split("\n")
    assert lines[0] == "Time[ns],Time,ClANG(cnt),ClANG(min),ClANG(mean),ClANG(max)"
    assert [int(x.split(",")[2]) for x in lines[1:-1]] == counts
    raw = json.loads((tmp_path / "data.json").read_text())
    sel = (T >= 1474321947545300000) & (T < 1474326345591810000)
    assert len(raw[0]["Readings"]) == sel.sum()


def test_big_raw_answer_streams(server):
    # Two days of points at 1 Hz in the default unit: streamed in chunks, complete JSON.
    r = get(server, f"/data/uuid/{UUID}", starttime=int(T[0]) // 10**6,
            endtime=int(T[-1]) // 10**6 + 1)
    assert r.headers.get("Transfer-Encoding") == "chunked"
    assert len(r.json()[0]["Readings"]) == len(T)
