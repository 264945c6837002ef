"""Permalink documents and stores, without a server (the API tests use them through it)."""
from __future__ import annotations

import mongomock
import pytest

from plotter.permalinks import (MongoPermalinks, PermalinkError, SqlitePermalinks, check_id,
                                open_permalinks, resolve, validate, visible_view)

U1, U2 = "f0896731-0e43-4ed5-a97f-19266d8e732c", "0b7e0a4e-4a47-4c45-9f3a-0d0f5bcb5a11"


def doc(**window):
    return {"streams": [U1, U2], "window": window or {"kind": "fixed", "start": 1, "end": 2}}


def test_a_valid_document_is_normalised():
    out = validate({**doc(kind="now", span=60_000_000_000, extra=1), "zone": "Europe/Berlin",
                    "view": {"colors": {U1: "#ff0000"}}, "other": 1})
    assert out == {"streams": [U1, U2], "window": {"kind": "now", "span": 60_000_000_000},
                   "zone": "Europe/Berlin", "view": {"colors": {U1: "#ff0000"}}}
    assert validate({"streams": [U1.upper()], "window": {"kind": "last", "span": 5}}) == {
        "streams": [U1], "window": {"kind": "last", "span": 5}, "zone": "UTC", "view": {}}


@pytest.mark.parametrize("bad,message", [
    ([], "a permalink is a JSON object"),
    ({"window": {"kind": "now", "span": 1}}, "'streams' must be a list of 1 to 64"),
    ({"streams": [U1] * 65, "window": {"kind": "now", "span": 1}}, "1 to 64"),
    ({"streams": ["nope"], "window": {"kind": "now", "span": 1}}, "must hold stream UUIDs"),
    (doc(kind="yesterday"), "'kind' is one of fixed, now, last"),
    (doc(kind="fixed", start=5, end=5), "window end (5) must be after its start (5)"),
    (doc(kind="fixed", start="0", end=5), "window 'start' must be an integer"),
    (doc(kind="now", span=0), "window 'span' must be more than 0 ns"),
    (doc(kind="last", span=True), "window 'span' must be an integer"),
    ({**doc(), "zone": ""}, "'zone' must be a time zone name"),
    ({**doc(), "view": []}, "'view' must be an object"),
    ({**doc(), "view": {"x": "y" * 40_000}}, "at most 32,000 bytes"),
    ({**doc(), "view": {"colors": {U1: "#f00", "0b7e0a4e-0000-4c45-9f3a-0d0f5bcb5a11": 1}}},
     "'view.colors' names '0b7e0a4e-0000-4c45-9f3a-0d0f5bcb5a11', not one of the"),
    ({**doc(), "view": {"hidden": ["nope"]}}, "'view.hidden' names 'nope', not one of"),
    ({**doc(), "view": {"streamAxes": {"x": "axis 1"}}}, "'view.streamAxes' names 'x'"),
    ({**doc(), "view": {"hidden": U1}}, "'view.hidden' must be a list of stream UUIDs"),
    ({**doc(), "view": {"colors": []}}, "'view.colors' must be an object keyed by stream"),
])
def test_bad_documents_are_refused_with_the_reason(bad, message):
    with pytest.raises(PermalinkError) as exc:
        validate(bad)
    assert message in str(exc.value)


def test_a_views_stream_keys_are_normalised():
    out = validate({**doc(), "view": {"colors": {U1.upper(): "#f00"}, "hidden": [U2.upper()],
                                      "streamAxes": {U2: "axis 1"}, "axes": {"V": {}}}})
    assert out["view"] == {"colors": {U1: "#f00"}, "hidden": [U2],
                           "streamAxes": {U2: "axis 1"}, "axes": {"V": {}}}


def test_a_reader_gets_only_the_view_of_the_streams_they_see():
    view = {"colors": {U1: "#f00", U2: "#0f0"}, "hidden": [U1, U2],
            "streamAxes": {U2: "axis 1"}, "cursors": [U2],
            "axes": {"V": {"label": "volts"}, "A": {"label": "amps"},
                     "axis 1": {"label": "secret"}}}
    assert visible_view(view, [(U1, "V")]) == {"colors": {U1: "#f00"}, "hidden": [U1],
                                               "streamAxes": {},
                                               "axes": {"V": {"label": "volts"}}}
    assert visible_view(view, [(U2, "A")])["axes"] == {"axis 1": {"label": "secret"}}
    assert visible_view(view, []) == {"colors": {}, "hidden": [], "streamAxes": {},
                                      "axes": {}}
    assert visible_view({}, [(U1, "V")]) == {} and visible_view(None, []) == {}


@pytest.mark.parametrize("pid", ["abc", "a" * 33, "abc/../x", "abc def", "", None])
def test_malformed_ids(pid):
    with pytest.raises(PermalinkError, match="malformed permalink id"):
        check_id(pid)


def test_windows_resolve_fixed_now_and_last():
    assert resolve({"kind": "fixed", "start": 10, "end": 20}, 1000, lambda: 500) == (10, 20)
    assert resolve({"kind": "now", "span": 100}, 1000, lambda: 500) == (900, 1000)
    assert resolve({"kind": "last", "span": 100}, 1000, lambda: 500) == (401, 501)
    assert resolve({"kind": "last", "span": 100}, 1000, lambda: None) == (900, 1000)


def test_sqlite_store_keeps_permalinks_across_reopening(tmp_path):
    store = open_permalinks(f"sqlite:///{tmp_path}/queue.db", "/nowhere")
    assert isinstance(store, SqlitePermalinks) and store.path == f"{tmp_path}/plotter.db"
    d = validate(doc())
    ids = {store.create(d) for _ in range(50)}
    assert len(ids) == 50 and all(check_id(i) for i in ids)
    store.close()
    again = SqlitePermalinks(f"{tmp_path}/plotter.db")
    assert all(again.get(i) == d for i in ids) and again.get("missing1") is None
    again.close()


def test_mongodb_store_uses_mr_plotter_permalinks():
    client = mongomock.MongoClient()
    store = MongoPermalinks("mongodb://x", client=client)
    d = validate(doc(kind="now", span=3))
    pid = store.create(d)
    assert store.get(pid) == d and store.get("missing1") is None
    stored = client["mr_plotter"]["permalinks"].find_one({"_id": pid})
    assert stored["doc"] == d and "created" in stored
