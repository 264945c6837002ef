"""qss-btrdb as an operator meets it: refusals, logging, SIGTERM, a full disk."""
import os
import signal
import sqlite3
import subprocess
import sys
import uuid

import grpc
import numpy as np
import pyarrow as pa
import pytest
import requests
from btrdb.conn import BTrDB, Connection
from btrdb.endpoint import Endpoint
from btrdb.exceptions import BTRDBServerError

from tsdb import Store
from tsdb.grpc_service import make_server
from tsdb.server import build_parser
from tsdb.testing import ROOT, command, running

SCHEMA = pa.schema([pa.field("time", pa.timestamp("ns", tz="UTC"), nullable=False),
                    pa.field("value", pa.float64(), nullable=False)])


def refuse(data, *extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(command(data, *extra), capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=60)
    return done.returncode, done.stderr


def client(port):
    channel = Connection(f"127.0.0.1:{port}").channel
    return BTrDB(Endpoint(channel)), channel


def close(db, channel):
    db._executor.shutdown()
    channel.close()


def test_refuses_a_data_directory_whose_parent_is_missing(tmp_path):
    data = tmp_path / "not-mounted" / "data"
    assert refuse(data) == (1, f"qss-btrdb: error: data directory '{data}' cannot be "
                               f"created: '{data.parent}' does not exist (is the data disk "
                               f"mounted?)\n")
    assert not data.parent.exists()


def test_refuses_a_file_as_data_directory(tmp_path):
    (tmp_path / "data").write_text("x")
    assert refuse(tmp_path / "data") == (
        1, f"qss-btrdb: error: data directory '{tmp_path / 'data'}' is not a directory\n")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_refuses_a_read_only_data_directory(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o555)
    assert refuse(data) == (1, f"qss-btrdb: error: data directory '{data}' is not "
                               f"writable: Permission denied\n")


def test_refuses_a_corrupt_database_file(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "btrdb.sqlite3").write_bytes(os.urandom(8192))
    assert refuse(data) == (
        1, f"qss-btrdb: error: data directory '{data}': btrdb.sqlite3 is not a usable "
           f"database (file is not a database); move it aside and restore a backup, or "
           f"start with an empty directory\n")


def test_a_running_server_keeps_its_directory_and_ports_and_stops_on_sigint(tmp_path):
    with running(tmp_path / "data") as server:
        status, err = refuse(tmp_path / "data")
        assert (status, err) == (1, f"qss-btrdb: error: data directory "
                                    f"'{tmp_path / 'data'}' is in use by another qss-btrdb "
                                    f"(pid {server.proc.pid})\n")
        status, err = refuse(tmp_path / "b", "--http", f"127.0.0.1:{server.http_port}")
        assert status == 1 and err.startswith(
            f"qss-btrdb: error: REST address '127.0.0.1:{server.http_port}': cannot listen: ")
        status, err = refuse(tmp_path / "c", "--grpc", f"127.0.0.1:{server.grpc_port}")
        assert status == 1 and err.startswith(
            f"qss-btrdb: error: gRPC address '127.0.0.1:{server.grpc_port}': cannot listen")
        assert server.stop(signal.SIGINT) == 0
    assert "stopping (SIGINT)" in server.log()


def test_bad_settings_are_a_usage_error(tmp_path):
    status, err = refuse(tmp_path / "d", "--grpc", "127.0.0.1:99999")
    assert (status, err) == (2, "qss-btrdb: error: --grpc '127.0.0.1:99999': port must be "
                                "a number from 1 to 65535, not '99999'\n")


@pytest.mark.parametrize("seconds", ["inf", "nan", "1e-9", "0", "-5", "86401"])
def test_summary_interval_out_of_range_is_a_usage_error_before_starting(tmp_path, seconds):
    status, err = refuse(tmp_path / "d", "--summary", seconds)
    assert (status, err) == (2, f"qss-btrdb: error: --summary must be a number of seconds "
                                f"from 1 to 86400, not {float(seconds):g}\n")
    assert not (tmp_path / "d").exists()


def test_every_option_has_help():
    for action in build_parser()._actions:
        assert action.help, action.dest


def test_sigterm_lets_requests_in_flight_finish_and_logs_per_request_class(tmp_path):
    data = tmp_path / "data"
    u = uuid.uuid4()
    t = np.arange(300_000, dtype=np.int64) * 10**7
    with Store(data, durable=False) as s:
        s.create(u, "ops", {"name": "x"}, {})
        s.insert(u, t, np.arange(len(t), dtype=float))
    with running(data, "--summary", "3600") as server:
        # A streamed REST answer, half read when SIGTERM arrives.
        r = requests.get(f"{server.http}/data/uuid/{u}", params={
            "starttime": 0, "endtime": int(t[-1]) + 1, "unitoftime": "ns"},
            stream=True, timeout=30)
        body = r.raw.read(1000)
        # And a streamed gRPC answer, its first message received.
        db, channel = client(server.grpc_port)
        stream = db.stream_from_uuid(u)
        responses = db.ep.rawValues(u, 0, int(t[-1]) + 1, 0)
        first = next(responses)
        server.proc.send_signal(signal.SIGTERM)
        body += r.raw.read()
        rest = list(responses)
        assert server.proc.wait(20) == 0
        close(db, channel)
    doc = __import__("json").loads(body)
    assert len(doc[0]["Readings"]) == len(t)
    assert sum(len(batch) for batch, _ in [first, *rest]) == len(t)
    log = server.log()
    assert "stopping (SIGTERM): finishing requests in flight" in log
    assert "http GET /data/uuid/: 1 requests, 300,000 items" in log
    assert "grpc RawValues: 1 requests, 300,000 items" in log
    assert "grpc Info: 2 requests" in log  # the client's connect
    assert log.rstrip().endswith("INFO tsdb.server: stopped")
    assert "Traceback" not in log
    assert stream.uuid == u


def test_disk_full_is_a_server_error_and_nothing_half_written(tmp_path):
    # The database capped at 1 MB behaves as a full disk: SQLite's SQLITE_FULL.
    store = Store(tmp_path, durable=False, max_bytes=1 << 20)
    server, port = make_server(store, "127.0.0.1:0")
    server.start()
    db, channel = client(port)
    try:
        s = db.create(uuid.uuid4(), "full", {"name": "x"}, {})
        rng = np.random.default_rng(1)
        done = 0
        with pytest.raises(BTRDBServerError, match=r"^426: disk full: the write was not "
                                                   r"stored \(free space on the data disk\)$"):
            for _ in range(100):
                t = np.arange(done, done + 50_000, dtype=np.int64) * 10**6
                s.arrow_insert(pa.Table.from_arrays(
                    [pa.array(t, SCHEMA.field("time").type), pa.array(rng.normal(size=len(t)))],
                    schema=SCHEMA))
                done += len(t)
        assert done > 0
        # Every acknowledged point is there, none of the refused call; still serving.
        assert s.count() == done
        assert s.version() == 10 + done // 50_000
        table = s.arrow_values(0, 10**15)
        assert table.num_rows == done
    finally:
        close(db, channel)
        server.stop(0).wait()
        store.close()


def test_python_m_qss_tsdb_is_the_same_command():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "tsdb", "--help"], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("usage: qss-btrdb ")


def test_store_refuses_garbage_database(tmp_path):
    (tmp_path / "btrdb.sqlite3").write_bytes(b"not a database" * 1000)
    with pytest.raises(sqlite3.DatabaseError):
        Store(tmp_path)


def test_huge_requests_are_refused_before_decoding_and_the_server_stays_up(tmp_path):
    store = Store(tmp_path, durable=False)
    server, port = make_server(store, "127.0.0.1:0", max_request_bytes=100_000)
    server.start()
    db, channel = client(port)
    try:
        s = db.create(uuid.uuid4(), "huge", {"name": "x"}, {})
        t = np.arange(50_000, dtype=np.int64)
        big = pa.Table.from_arrays([pa.array(t, SCHEMA.field("time").type),
                                    pa.array(t.astype(float))], schema=SCHEMA)
        with pytest.raises(grpc.RpcError) as err:
            s.arrow_insert(big)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        s.arrow_insert(big.slice(0, 1000))
        assert s.count() == 1000
    finally:
        close(db, channel)
        server.stop(0).wait()
        store.close()
