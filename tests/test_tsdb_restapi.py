"""The v3 REST API without a server: :class:`tsdb.restapi.RestApi` called directly with a
request's method, target and body, its answers checked as the bytes a client would get.
tests/test_tsdb_rest.py checks the same API over HTTP against a real qss-btrdb."""
import json
import uuid

import numpy as np
import pytest

from tsdb import Store
from tsdb.reqlog import FAILED, OK, REFUSED
from tsdb.restapi import MAX_BODY, BadRequest, Response, RestApi, body_length

UUID = uuid.UUID("f0896731-0e43-4ed5-a97f-19266d8e732c")
EMPTY = uuid.UUID("2b3d36a4-1d2b-4b55-9b38-0b0f2a0c1e11")     # exists, no points
MISSING = uuid.UUID("5c1a8d2e-0000-4000-8000-000000000000")   # does not exist
T0 = 1_477_100_329_040_881_700
# Ten points 250 ms apart; values with exact binary forms and one Go prints in e-notation.
T = T0 + np.arange(10, dtype=np.int64) * 250_000_000
V = np.array([7200.5, -0.25, 1e-7, 3.0, 0.0, 1e21, 2.5, -7.75, 42.0, 0.5])
TEXT = {"Content-Type": "text/plain; charset=utf-8"}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with Store(tmp_path_factory.mktemp("restapi") / "data", durable=False) as store:
        store.create(UUID, "unit/P1", {"name": "C1ANG"}, {})
        store.insert(UUID, T, V)
        store.create(EMPTY, "unit/P1", {"name": "EMPTY"}, {})
        yield RestApi(store)


def body_of(resp: Response) -> bytes:
    """The whole body, as the HTTP adapter would send it (chunked or not)."""
    return resp.body if isinstance(resp.body, bytes) else b"".join(resp.body)


def test_bracket_answers_go_json_with_missing_streams_as_minus_one(api):
    resp = api.handle("POST", "/q/bracket",
                      b'{"uuids": ["%s", "%s"]} trailing values are ignored'
                      % (str(MISSING).encode(), str(UUID).encode()))
    assert (resp.status, resp.headers, resp.items) == (200, TEXT, 2)
    assert body_of(resp) == (b'{"Brackets":[[-1,-1],[%d,%d]],"Merged":[%d,%d]}\n'
                             % (T[0], T[-1], T[0], T[-1]))


def test_raw_data_query_streams_readings_as_go_prints_them(api):
    _, _, version = api.store.raw(UUID, int(T[0]), int(T[-1]) + 1)
    # End exclusive: the last point is left out.
    resp = api.handle("GET", f"/data/uuid/{UUID}?starttime={T[0]}&endtime={T[-1]}"
                             "&unitoftime=ns")
    assert (resp.status, resp.headers) == (200, TEXT)
    assert not isinstance(resp.body, bytes)  # produced as the client reads
    readings = ("[%d,7200.5],[%d,-0.25],[%d,1e-7],[%d,3],[%d,0],[%d,1e+21],[%d,2.5],"
                "[%d,-7.75],[%d,42]" % tuple(T[:9].tolist()))
    assert body_of(resp) == (f'[{{"uuid":"{UUID}","Readings":[{readings}],'
                             f'"version":{version},"Properties":{{"UnitofTime":"ns"}}}}]\n'
                             ).encode()
    assert resp.items == 9  # counted as the body was produced


def test_statistical_data_query_gives_windows_in_ms_and_ns(api):
    pw = 30  # ~1.07 s windows: the ten points fall in three or four of them
    resp = api.handle("GET", f"/data/uuid/{UUID}?starttime={T[0] - (1 << pw)}"
                             f"&endtime={T[-1] + (1 << pw)}&unitoftime=ns&pw={pw}")
    assert resp.status == 200
    [doc] = json.loads(body_of(resp))
    keys, first, counts = np.unique(T >> pw, return_index=True, return_counts=True)
    assert [r[0] * 10**6 + r[1] for r in doc["XReadings"]] == (keys << pw).tolist()
    assert [r[5] for r in doc["XReadings"]] == counts.tolist()
    ends = np.r_[first[1:], len(T)]
    assert [r[2] for r in doc["XReadings"]] == [V[a:b].min() for a, b in zip(first, ends)]
    assert [r[4] for r in doc["XReadings"]] == [V[a:b].max() for a, b in zip(first, ends)]


@pytest.mark.parametrize("method, target, body, status, message", [
    ("GET", f"/data/uuid/{UUID}?starttime=20&endtime=10", b"", 400,
     b"end time <= start time"),
    ("GET", f"/data/uuid/{UUID}?starttime=1&endtime=2&unitoftime=ns&pw=63", b"", 400,
     b"bad point width: out of acceptable range"),
    ("GET", f"/data/uuid/{MISSING}?starttime=1&endtime=2", b"", 400,
     b"query error: No such stream"),
    ("GET", "/data/uuid/not-a-uuid?starttime=1&endtime=2", b"", 400, b"malformed uuid"),
    ("POST", "/q/bracket", b"[1]", 400, b"bad request"),
    ("POST", "/q/bracket", b'{"UUIDS": ["%s"]}' % str(EMPTY).encode(), 400,
     b"Bad query: No such point"),
    ("POST", "/directcsv", b'{"UUIDS": ["%s"], "Labels": ["x"], "StartTime": 1, '
     b'"EndTime": 2}' % str(MISSING).encode(), 400,
     b"Stream %s does not exist" % str(MISSING).encode()),
    ("GET", "/nothing/here", b"", 404, b"404 page not found\n"),
])
def test_refusals_are_one_plain_text_line(api, method, target, body, status, message):
    resp = api.handle(method, target, body)
    assert (resp.status, resp.headers, resp.body) == (status, TEXT, message)


def test_wrong_method_names_the_allowed_one(api):
    resp = api.handle("GET", "/q/bracket")
    assert (resp.status, resp.body) == (405, b"Method Not Allowed\n")
    assert resp.headers == {"Allow": "POST", **TEXT}


def test_body_length_is_checked_before_the_body_is_read():
    assert body_length(None) == body_length("") == 0
    assert body_length(str(MAX_BODY)) == MAX_BODY
    for bad in ("-1", "ten"):
        with pytest.raises(BadRequest, match="^bad Content-Length$") as info:
            body_length(bad)
        assert info.value.status == 400
    with pytest.raises(BadRequest) as info:
        body_length(str(MAX_BODY + 1))
    assert info.value.status == 413
    assert str(info.value) == f"request body of {MAX_BODY + 1} bytes is too large " \
                              f"(limit {MAX_BODY})"


def test_log_entry_classes_and_outcomes(api):
    assert api.log_entry("GET", f"/data/uuid/{UUID}?starttime=1", 200) == \
        ("GET /data/uuid/", OK, str(UUID))
    assert api.log_entry("POST", "/q/bracket", 400, "bad request") == \
        ("POST /q/bracket", REFUSED, "")
    # A streamed answer cut short after its 200, and a bug's 500, are the server's failures.
    assert api.log_entry("POST", "/directcsv", 200, "answer cut short: boom")[1] == FAILED
    assert api.log_entry("GET", "/status", 500, "internal error: KeyError")[1] == FAILED
    assert api.log_entry("GET", "/x" * 150 + "?a=1", 404, "404 page not found") == \
        ("GET (unknown path)", REFUSED, ("/x" * 150)[:200])
