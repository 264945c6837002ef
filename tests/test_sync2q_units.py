"""sync2q's parts: backoff and outage lines, error sorting, preparing files, quarantine,
reloading upmuconfig.ini, stream metadata against a real server, the RawPoint path, a
refused uPMU, a refused file, and the command line."""
from __future__ import annotations

import datetime as dt
import logging
import os
import re
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import grpc
import numpy as np
import pyarrow as pa
import pytest
from btrdb import exceptions as bx

from qss import dat
from qss.btrdbclient import Backoff, Btrdb, ErrorKind, Outage, arrow_table, classify
from qss.generator import UpmuSimulator
from qss.queue import QueuedFile
from qss.streammeta import StreamConflict, StreamRegistry, specs_of
from qss.upmuconfig import UpmuList
from sync2q import Batch, ConfigWatcher, Options, Quarantine, Worker, prepare
from sync2q.cli import build_parser
from test_sync2q_support import (ROOT, START, connect, device_files, expected, read_stream,
                                 server, site)  # noqa: F401 - fixtures

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def queued(name: str = "/root/upmu_data/P1_2015-12-18-08-14-00.dat", size: int = 10,
           when: dt.datetime = WHEN, serial: str = "P1") -> QueuedFile:
    return QueuedFile(serial, name, size, when, 0)


def upmu(extended: bool, text: str = ""):
    ul = UpmuList.parse(text)
    return ul.add("10.0.0.1", "P1", "unit", extended=extended)


# -- backoff, outages, errors ------------------------------------------------------------

def test_backoff_doubles_up_to_the_cap_with_jitter_and_never_near_zero():
    low = Backoff(first=0.5, cap=8.0, rng=lambda: 0.0)
    assert [low.next() for _ in range(7)] == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    high = Backoff(first=0.5, cap=8.0, rng=lambda: 1.0)
    assert [high.next() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    high.reset()
    assert high.next() == 0.5


def test_an_outage_is_one_line_down_and_one_line_back(caplog):
    now = [100.0]
    outage = Outage("BTrDB 127.0.0.1:4410", clock=lambda: now[0])
    with caplog.at_level(logging.DEBUG, logger="qss.btrdbclient"):
        outage.succeeded()
        for _ in range(3):
            outage.failed("gRPC UNAVAILABLE: connection refused", "files wait in the queue")
            now[0] += 2.5
        outage.succeeded()
        outage.succeeded()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    assert lines == [
        ("WARNING", "BTrDB 127.0.0.1:4410: unavailable (gRPC UNAVAILABLE: connection "
                    "refused); files wait in the queue"),
        ("INFO", "BTrDB 127.0.0.1:4410: available again after 7.5 s (3 failed attempts); "
                 "resuming")]


class _Rpc(grpc.RpcError):
    def code(self):
        return grpc.StatusCode.UNAVAILABLE

    def details(self):
        return "failed to connect to all addresses"


@pytest.mark.parametrize("exc, kind", [
    (bx.StreamNotFoundError("x"), ErrorKind.STREAM_MISSING),
    (bx.BadValue("insert contains NaN values"), ErrorKind.REFUSED),
    (bx.InvalidTimeRange("x"), ErrorKind.REFUSED),
    (bx.AmbiguousStream("x"), ErrorKind.REFUSED),
    (bx.RecycledUUID("x"), ErrorKind.REFUSED),
    (bx.BTRDBServerError("426: disk full"), ErrorKind.UNAVAILABLE),
    (bx.BTrDBError("Could not connect to the database"), ErrorKind.UNAVAILABLE),
    (bx.PermissionDenied("invalid api key"), ErrorKind.UNAVAILABLE),
    (_Rpc(), ErrorKind.UNAVAILABLE),
    (OSError("boom"), ErrorKind.UNAVAILABLE),
])
def test_client_errors_are_sorted_into_wait_recreate_or_refuse(exc, kind):
    assert classify(exc) is kind


def test_btrdb_tries_each_endpoint_in_turn():
    opened = []

    def opener(endpoint, apikey, deadline):
        opened.append(endpoint)
        if endpoint == "a:1":
            raise bx.BTrDBError("Could not connect to the database")

        class Db:
            _ARROW_ENABLED = True
        return Db()
    conn = Btrdb(["a:1", "b:2"], opener=opener)
    db = conn.get()
    assert conn.endpoint == "b:2" and conn.get() is db and opened == ["a:1", "b:2"]
    conn.reset(db)                  # b failed: start over with the endpoint after it
    conn.get()
    assert opened == ["a:1", "b:2", "a:1", "b:2"]
    assert Btrdb(["x:1"], arrow=False, opener=opener).get()._ARROW_ENABLED is False


# -- preparing files ---------------------------------------------------------------------

def test_extended_data_of_a_base_upmu_keeps_what_has_uuids_and_says_so_once():
    data = UpmuSimulator("P1", extended=True).file_bytes(START)
    unit = upmu(extended=False)
    work = prepare(queued(size=len(data)), data, unit, specs_of(unit))
    assert sorted(work.streams) == sorted(unit.streams) and len(work.streams) == 13
    assert work.points == 13 * 7200 and work.samples == 7200 and work.warn
    assert work.notes == ["6 streams not stored (FUND_W, FUND_VAR, FUND_VA, FUND_DPF, "
                          "FREQ_L1_1S, FREQ_L1_C37): no stream with a uuid in "
                          "upmuconfig.ini (the uPMU is configured as base; upmu-adm "
                          "setext makes it extended)"]


def test_nan_values_are_left_out_and_counted():
    data = bytearray(UpmuSimulator("P1", extended=False).file_bytes(START))
    np.frombuffer(data, "<f4", 4, 6312 * 2 + 508 + 4)[:] = np.nan   # L1 angle and magnitude
    unit = upmu(extended=False)
    work = prepare(queued(), bytes(data), unit, specs_of(unit))
    assert len(work.streams["L1MAG"][0]) == 7200 - 2
    assert len(work.streams["L1ANG"][0]) == 7200 - 2
    assert work.notes == ["4 NaN or infinite values not stored (BTrDB refuses them)"]


def test_a_file_without_a_usable_record_gives_its_reason():
    unit = upmu(extended=True)
    assert prepare(queued(), b"", unit, specs_of(unit)) == "empty file"
    reason = prepare(queued(), b"\x01" * 100, unit, specs_of(unit))
    assert reason.startswith("no usable record (1 record skipped: truncated record")


def test_a_batch_concatenates_its_files_in_order_and_splits_into_single_files():
    unit = upmu(extended=False)
    sim = UpmuSimulator("P1")
    works = [prepare(queued(f"/f{i}"), sim.file_bytes(START + 60 * i), unit, specs_of(unit))
             for i in range(3)]
    batch = Batch("P1", unit, specs_of(unit), works)
    t, v = batch.stream_points("C2ANG")
    assert len(t) == 3 * 7200 and np.all(np.diff(t) > 0)
    assert v.tolist() == [x for w in works for x in w.streams["C2ANG"][1].tolist()]
    assert batch.stream_names() == list(unit.active_streams)
    assert [b.files for b in batch.split()] == [[w] for w in works]
    # The streams share their files' times, and so one joined array.
    t2, v2 = batch.stream_points("L1MAG")
    assert t2 is t and v2.tolist() == [x for w in works
                                       for x in w.streams["L1MAG"][1].tolist()]


def test_an_extended_file_gives_every_stream_the_same_times_without_copies():
    unit = upmu(extended=True)
    data = UpmuSimulator("P1", extended=True).file_bytes(START)
    parsed = dat.parse(data)
    work = prepare(queued(size=len(data)), data, unit, specs_of(unit))
    assert len(work.streams) == 19
    for name, (t, v) in work.streams.items():
        assert np.array_equal(t, parsed.times)
        assert v.tolist() == parsed.stream(name)[1].tolist()
    assert len({id(t) for t, _ in work.streams.values()}) == 1


# -- quarantine --------------------------------------------------------------------------

def test_quarantine_is_shared_and_released_by_name_serial_or_all(tmp_path):
    worker_side = Quarantine.beside(str(tmp_path))
    operator_side = Quarantine.beside(str(tmp_path))
    a = queued("/root/upmu_data/2015/P1_2015-12-18-08-14-00.dat")
    b = queued("/root/upmu_data/2015/P1_2015-12-18-08-15-00.dat")
    c = queued("/root/upmu_data/2015/P2_2015-12-18-08-14-00.dat", serial="P2")
    for f in (a, b, c):
        worker_side.add(f, "empty file")
    assert worker_side.holds(a) and not operator_side.holds(a)
    assert operator_side.refresh() and operator_side.holds(a)
    # New contents under the same name (the queue replaced it): a fresh try.
    assert not worker_side.holds(queued(a.name, size=11, when=WHEN + dt.timedelta(seconds=1)))
    assert [e.name for e in operator_side.release("P1_2015-12-18-08-14-00.dat")] == [a.name]
    assert worker_side.refresh() and not worker_side.holds(a) and worker_side.holds(b)
    assert operator_side.release("_") == []            # LIKE wildcards are literal
    assert [e.name for e in operator_side.release("p2")] == [c.name]
    assert [e.reason for e in operator_side.entries()] == ["empty file"]
    assert [e.name for e in operator_side.release("all")] == [b.name]
    assert operator_side.entries() == []
    worker_side.close()
    operator_side.close()


# -- upmuconfig.ini ----------------------------------------------------------------------

def test_config_changes_are_picked_up_and_a_broken_file_keeps_the_last_good_list(
        tmp_path, caplog):
    path = str(tmp_path / "upmuconfig.ini")
    watcher = ConfigWatcher(path)
    assert watcher.poll().added == () and watcher.poll() is None
    with UpmuList.edit(path) as ul:
        ul.add("10.0.0.1", "P3000001", "one", extended=True)
    change = watcher.poll()
    assert [u.serial for u in change.added] == ["P3000001"] and watcher.poll() is None
    assert watcher.by_serial("p3000001").alias == "one"
    with UpmuList.edit(path) as ul:
        ul.set_extended("one", False)
        ul.add("10.0.0.2", "P3000002", "two")
    change = watcher.poll()
    assert [u.serial for u in change.changed] == ["P3000001"]
    assert [u.serial for u in change.added] == ["P3000002"]
    good = Path(path).read_text()
    with open(path, "w") as f:
        f.write(good + "\n[[[broken\n")
    with caplog.at_level(logging.ERROR, logger="sync2q"):
        assert watcher.poll() is None and watcher.poll() is None
    assert len(caplog.records) == 1 and "keeping the 2 uPMUs loaded before" in caplog.text
    with open(path, "w") as f:
        f.write(good.replace("[10.0.0.2]", "[10.0.0.3]"))
    change = watcher.poll()
    assert change is not None and [u.ip for u in change.changed] == ["10.0.0.3"]


# -- against a real server ---------------------------------------------------------------

def test_streams_get_their_metadata_and_keep_other_annotations(server, tmp_path):
    path = str(tmp_path / "upmuconfig.ini")
    with UpmuList.edit(path) as ul:
        ul.add("10.0.0.1", "P3600001", "meta", extended=False)
    unit = UpmuList.load(path).by_serial("P3600001")
    conn = Btrdb([server.grpc])
    registry = StreamRegistry(conn)
    registry.ensure(unit, specs_of(unit))
    db = connect(server.grpc)
    stream = db.stream_from_uuid(unit.streams["C1MAG"].uuid)
    stream.refresh_metadata()
    assert (stream.collection, stream.tags()["name"], stream.tags()["unit"]) == (
        "upmu/meta", "C1MAG", "A")
    stream.update(annotations={"distil/owner": "someone", "Metadata/Stale": "x"},
                  encoder=None)
    # The operator moves the streams and adds metadata; values are kept as raw text.
    text = Path(path).read_text().replace("/upmu/meta/", "/site2/meta/").replace(
        "SerialNumber = P3600001", "SerialNumber = P3600001\n            Rating = 1.0")
    with open(path, "w") as f:
        f.write(text)
    unit = UpmuList.load(path).by_serial("P3600001")
    registry.ensure(unit, specs_of(unit))
    stream.refresh_metadata()
    assert stream.collection == "site2/meta" and stream.tags()["name"] == "C1MAG"
    _, _, _, annotations, _ = db.ep.streamInfo(stream.uuid, False, True)
    assert annotations == {"Metadata/Instrument/SerialNumber": "P3600001",
                           "Metadata/Instrument/Rating": "1.0",
                           "Properties/UnitofMeasure": "A", "distil/owner": "someone"}
    # Checked once per metadata: the next ensure makes no call that changes anything.
    version = db.ep.streamInfo(stream.uuid, False, True)[1]
    registry.ensure(unit, specs_of(unit))
    assert db.ep.streamInfo(stream.uuid, False, True)[1] == version
    conn.close()


def test_a_new_upmus_streams_are_made_together_and_one_refused_stream_stops_none_else(
        server, tmp_path, caplog):
    path = str(tmp_path / "upmuconfig.ini")
    with UpmuList.edit(path) as ul:
        ul.add("10.0.0.1", "P3600002", "together", extended=True)
    unit = UpmuList.load(path).by_serial("P3600002")
    specs = specs_of(unit)
    db = connect(server.grpc)
    # Someone else's stream already has the collection and name of one of ours.
    db.create(uuid.uuid4(), "upmu/together", {"name": "L2ANG", "unit": "deg"})
    conn = Btrdb([server.grpc])
    registry = StreamRegistry(conn)
    with caplog.at_level(logging.INFO, logger="qss.streammeta"), \
            pytest.raises(StreamConflict, match=r"stream L2ANG \(.*cannot be created"):
        registry.ensure(unit, specs)
    names = list(specs)
    others = [n for n in names if n != "L2ANG"]
    for name in others:      # every other stream was made, with its metadata
        stream = db.stream_from_uuid(specs[name].uuid)
        stream.refresh_metadata()
        assert (stream.collection, stream.tags()["name"]) == ("upmu/together", name)
    # One line for what was done, the streams in their order.
    created = [r.getMessage() for r in caplog.records if "created" in r.getMessage()]
    assert created == [f"uPMU {unit.describe()}: {len(others)} streams created in "
                       f"collection 'upmu/together': {', '.join(others)}"]
    handles = registry.ensure(unit, specs, others)
    assert list(handles) == others and all(h.uuid == specs[n].uuid
                                           for n, h in handles.items())
    conn.close()


def test_an_outage_while_making_streams_drops_the_ones_not_started(tmp_path):
    """A BTrDB that accepts but does not answer must cost one call's wait, not one per
    round of 8: the first failure that is not a refusal ends ensure() at once."""
    path = str(tmp_path / "upmuconfig.ini")
    with UpmuList.edit(path) as ul:
        ul.add("10.0.0.1", "P3600003", "outage", extended=True)
    unit = UpmuList.load(path).by_serial("P3600003")
    specs = specs_of(unit)
    release = threading.Event()
    calls = []
    lock = threading.Lock()

    class Endpoint:
        def streamInfo(self, uuid, *_):
            with lock:
                calls.append(uuid)
                first = len(calls) == 1
            if not first:
                release.wait(30)         # a call that hangs until the test lets it go
            raise ConnectionError("BTrDB went away")

    class Db:
        ep = Endpoint()

    class Conn:
        generation = 1

        def get(self):
            return Db()

    try:
        with pytest.raises(ConnectionError, match="went away"):
            StreamRegistry(Conn()).ensure(unit, specs)
        # 8 at a time: the first round, and at most the one the failed call's thread took
        # before the rest were dropped; the hanging calls were not waited for.
        assert not release.is_set() and len(calls) <= 9 < len(specs)
    finally:
        release.set()


def test_arrow_tables_view_the_arrays_in_the_clients_schema():
    t = np.arange(1_000, dtype=np.int64) * 8_333_333 + 1_450_426_440 * 10**9
    v = np.linspace(-1, 1, 1_000)
    table = arrow_table(t, v)
    assert table.schema == pa.schema([
        pa.field("time", pa.timestamp("ns", tz="UTC"), nullable=False),
        pa.field("value", pa.float64(), nullable=False)])
    assert np.shares_memory(np.frombuffer(table.column(0).chunk(0).buffers()[1], np.int64), t)
    assert table.column(0).to_numpy().view(np.int64).tolist() == t.tolist()
    # Strided or other-typed arrays are copied into what the client sends.
    half = arrow_table(t[::2], v[::2].astype(np.float32))
    assert half.column(0).to_numpy().view(np.int64).tolist() == t[::2].tolist()
    assert half.column(1).to_numpy().tolist() == v[::2].astype(np.float32).tolist()
    assert half.slice(100, 50).column(1).to_numpy().tolist() == \
        v[::2].astype(np.float32)[100:150].tolist()
    with pytest.raises(ValueError, match="1000 times but 999 values"):
        arrow_table(t, v[1:])
    with pytest.raises(TypeError):       # float times are refused, never truncated
        arrow_table(t + 0.5, v)


def test_the_rawpoint_path_inserts_the_same_points(server, site):
    files = device_files("P3700001", 1, extended=False)
    site.add_upmu("P3700001", "raw", extended=False)
    site.put("P3700001", files)
    conn = Btrdb([server.grpc], arrow=False)
    worker = Worker(site.queue, ConfigWatcher(site.upmuconfig), conn,
                    Quarantine.beside(str(site.dir)), Options(once=True, poll=0.05))
    assert worker.run() == 0
    worker.quarantine.close()
    assert not conn.arrow and worker.stats.files == 1 and site.unsynced("P3700001") == []
    db = connect(server.grpc)
    want = expected([files[0][1]])
    for name, info in site.upmu("P3700001").streams.items():
        t, v = read_stream(db, info.uuid)
        np.testing.assert_array_equal(t, want[name][0])
        np.testing.assert_array_equal(v, want[name][1])
    conn.close()


def test_files_are_marked_synced_only_after_each_stream_is_inserted_and_flushed(
        server, site, monkeypatch):
    """The client inserts without BTrDB's sync flag: only a flush says the points are
    on disk, so it comes between every stream's insert and the files' marking. A batch
    goes in as one RPC per stream, even past the client's 50,000 points (without
    changing the client's process-wide cut), and its streams are flushed after all of
    its inserts (one fsync of the server for all)."""
    import btrdb.stream
    from btrdb.endpoint import Endpoint
    from btrdb.stream import Stream

    events, rpcs, lock = [], [], threading.Lock()

    def recording(kind, real):
        def wrapper(self, *args, **kwargs):
            result = real(self, *args, **kwargs)
            with lock:
                events.append((kind, self.uuid))
            return result
        return wrapper

    def rpc(self, uu, values, policy):
        result = real_rpc(self, uu, values, policy)
        with lock:
            rpcs.append((uu, values.num_rows))
            events.append(("insert", uu))
        return result

    real_rpc = Endpoint.arrowInsertValues
    monkeypatch.setattr(Stream, "flush", recording("flush", Stream.flush))
    monkeypatch.setattr(Endpoint, "arrowInsertValues", rpc)
    files = device_files("P3700002", 8)      # 57,600 samples per stream: one batch
    site.add_upmu("P3700002", "flushed")
    site.put("P3700002", files)
    real_mark = site.queue.mark_synced

    def mark(file):
        with lock:
            events.append(("marked", file.name))
        return real_mark(file)

    monkeypatch.setattr(site.queue, "mark_synced", mark)
    conn = Btrdb([server.grpc])
    worker = Worker(site.queue, ConfigWatcher(site.upmuconfig), conn,
                    Quarantine.beside(str(site.dir)), Options(once=True, poll=0.05))
    assert worker.run() == 0
    worker.quarantine.close()
    conn.close()
    marks = [i for i, (kind, _) in enumerate(events) if kind == "marked"]
    assert len(marks) == 8 and site.unsynced("P3700002") == []
    streams = {info.uuid for info in site.upmu("P3700002").streams.values()}
    assert len(streams) == 19
    for u in streams:  # one batch: one insert, then one flush, before any marking
        assert [kind for kind, x in events[:marks[0]] if x == u] == ["insert", "flush"]
        assert all(x != u for _, x in events[marks[0]:])
    kinds = [kind for kind, _ in events[:marks[0]]]
    assert kinds == ["insert"] * 19 + ["flush"] * 19
    assert sorted(rpcs) == sorted((u, 8 * 7200) for u in streams)
    assert btrdb.stream.INSERT_BATCH_SIZE == 50_000   # other users of the client unchanged


def test_a_upmu_whose_streams_btrdb_refuses_waits_and_once_says_so(server, site, caplog):
    site.add_upmu("P3800001", "clash", extended=False)
    site.put("P3800001", device_files("P3800001", 2, extended=False))
    # Someone else's stream already has the collection and name of one of ours.
    connect(server.grpc).create(uuid.uuid4(), "upmu/clash", {"name": "L2ANG", "unit": "deg"})
    conn = Btrdb([server.grpc])
    worker = Worker(site.queue, ConfigWatcher(site.upmuconfig), conn,
                    Quarantine.beside(str(site.dir)), Options(once=True, poll=0.05))
    with caplog.at_level(logging.INFO, logger="sync2q"):
        assert worker.run() == 1
    worker.quarantine.close()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2, errors
    assert errors[0].startswith("uPMU clash (10.9.0.1, P3800001): stream L2ANG (")
    assert "cannot be created: AmbiguousStream" in errors[0]
    assert "its files wait in the queue until upmuconfig.ini is fixed" in errors[0]
    assert len(site.unsynced("P3800001")) == 2
    conn.close()


def test_a_file_whose_data_btrdb_refuses_is_found_in_its_batch_and_quarantined(
        server, site, caplog):
    """BTrDB refuses points after 2079 (InvalidTimeRange): the batch is split, its other
    files are synced and the refused one is quarantined, still unsynced."""
    good = device_files("P3800002", 2, extended=False)
    late = device_files("P3800002", 1, extended=False, start=4102444800)   # 2100-01-01
    site.add_upmu("P3800002", "late", extended=False)
    site.put("P3800002", good + late)
    window = dat.DateWindow(0, 4200000000 * 10**9)       # lets 2100 through to BTrDB
    conn = Btrdb([server.grpc])
    worker = Worker(site.queue, ConfigWatcher(site.upmuconfig), conn,
                    Quarantine.beside(str(site.dir)),
                    Options(once=True, poll=0.05, window=window))
    with caplog.at_level(logging.INFO, logger="sync2q"):
        assert worker.run() == 0
    entries = worker.quarantine.entries()
    worker.quarantine.close()
    conn.close()
    refusals = [m for r in caplog.records
                for m in re.findall(r"BTrDB refused a batch of (\d+) files", r.getMessage())]
    assert refusals == ["3", "1"]           # the batch, then the one file of it refused
    assert [(e.name, e.reason.split(": ")[0]) for e in entries] == \
        [(late[0][0], "BTrDB refused its data")]
    assert "InvalidTimeRange" in entries[0].reason
    assert site.unsynced("P3800002") == [late[0][0]] and worker.stats.files == 2
    db = connect(server.grpc)
    want = expected([d for _, d in good])
    for name, info in site.upmu("P3800002").streams.items():
        t, v = read_stream(db, info.uuid)
        np.testing.assert_array_equal(t, want[name][0], err_msg=name)
        np.testing.assert_array_equal(v, want[name][1], err_msg=name)


def test_a_file_whose_contents_are_missing_is_quarantined_and_the_others_sync(
        server, site, caplog):
    """A row whose data segment is gone (a damaged disk, a bad restore) cannot be read:
    that file is quarantined, still unsynced, and the uPMU's other files are synced; the
    worker does not take it for a queue outage and stall every uPMU behind it."""
    import sqlite3
    files = device_files("P3800003", 3, extended=False)
    site.add_upmu("P3800003", "damaged", extended=False)
    site.put("P3800003", files)
    with sqlite3.connect(site.dir / "queue.db") as db:
        db.execute("UPDATE received_files SET segment = 's-gone-0.seg' WHERE name = ?",
                   (files[1][0],))
    conn = Btrdb([server.grpc])
    worker = Worker(site.queue, ConfigWatcher(site.upmuconfig), conn,
                    Quarantine.beside(str(site.dir)), Options(once=True, poll=0.05))
    result = []
    thread = threading.Thread(target=lambda: result.append(worker.run()), daemon=True)
    with caplog.at_level(logging.INFO, logger="sync2q"):
        thread.start()
        thread.join(30)
        if thread.is_alive():
            worker.stop()
            thread.join(30)
    entries = worker.quarantine.entries()
    worker.quarantine.close()
    conn.close()
    assert result == [0]
    assert [(e.name, e.reason) for e in entries] == [
        (files[1][0], "cannot be read: its data file s-gone-0.seg is missing or short")]
    assert site.unsynced("P3800003") == [files[1][0]] and worker.stats.files == 2
    assert not [r for r in caplog.records if "waiting for it" in r.getMessage()]


# -- the command line --------------------------------------------------------------------

def test_every_option_has_help():
    for action in build_parser()._actions:
        assert action.help, action.dest


@pytest.mark.parametrize("args, status, message", [
    (["--insert-threads", "0"], 2, "qss-sync2q: error: --insert-threads must be 1 to 16, "
                                   "not 0\n"),
    (["--rate-interval", "0"], 2, "qss-sync2q: error: --rate-interval must be a positive "
                                  "number of seconds, not 0.0\n"),
    (["--queue", "sqlite:////nonexistent/q.db"], 1,
     "qss-sync2q: error: queue sqlite:////nonexistent/q.db: directory /nonexistent does not "
     "exist; mount the data drive or create the directory\n"),
])
def test_bad_invocations_are_one_line_and_a_status(args, status, message):
    env = {k: v for k, v in os.environ.items() if k not in ("QSS_CONFIG", "MONGO_ADDR")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-m", "sync2q", "--config", os.devnull, *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert (done.returncode, done.stderr) == (status, message)


def test_a_second_sync2q_on_the_same_queue_is_refused(site):
    from sync2q.cli import _lock
    fd = _lock(str(site.dir))
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("QSS_CONFIG", "MONGO_ADDR")}
        env["PYTHONPATH"] = str(ROOT)
        done = subprocess.run([sys.executable, "-m", "sync2q", *site.args("127.0.0.1:1"),
                               "--once"], capture_output=True, text=True, env=env, cwd=ROOT,
                              timeout=60)
    finally:
        os.close(fd)
    assert (done.returncode, done.stderr) == (1, (
        f"qss-sync2q: error: another sync2q (pid {os.getpid()}) is working on this queue; "
        f"stop it first (sudo supervisorctl stop sync2q)\n"))


_IMPORT_CLIENT = """\
import sys
from sync2q import clientimport
if sys.argv[1] == "strict":      # a client that reads more of pandas at import
    clientimport._PANDAS_AT_IMPORT = frozenset()
btrdb = clientimport.import_client()
import btrdb.transformers as tr
print("pandas" in sys.modules, sys.modules["polars"] is None)
import pandas
print(tr.pd.DataFrame is pandas.DataFrame, "pandas" in sys.modules)
"""


@pytest.mark.parametrize("mode, pandas_at_import", [("normal", False), ("strict", True)])
def test_the_client_is_imported_without_pandas_until_it_is_used(mode, pandas_at_import):
    """sync2q's start-up leaves out polars and defers pandas (sync2q.clientimport); the
    client's conversions still find the real pandas, and a client that needs more of
    pandas at import gets it."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", _IMPORT_CLIENT, mode], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(pandas_at_import), "True", "True", "True"]
