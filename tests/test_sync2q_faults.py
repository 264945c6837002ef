"""sync2q under faults, real processes on loopback: SIGTERM and SIGKILL mid-run, BTrDB
going away and coming back, damaged files, and upmuconfig.ini changing while it runs."""
from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tsdb import testing
from qss.upmuconfig import UpmuList
from sync2q.batch import BATCH_SAMPLES
from test_sync2q_support import (ROOT, Sync2q, connect, device_files, expected, read_stream,
                                 run_once, server, site,  # noqa: F401 - fixtures
                                 start_btrdb_on)
from waiting import wait_until

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

EXT = 9192          # bytes of an extended record
SAMPLES = 60 * 120  # samples per stream of a one-minute file
SYNCED = r"synced: \d+ points"
RATE = r"INFO rate: \d+ files"


def counts(db, upmu) -> dict[str, int]:
    return {name: db.stream_from_uuid(info.uuid).count() for name, info in upmu.streams.items()}


def test_sigterm_finishes_the_batch_and_sigkill_leaves_no_duplicates(server, site):
    # Four batches: SIGTERM after the first files leaves the batches in flight (two)
    # to finish and at least one never started.
    files = device_files("P3200001", 4 * (BATCH_SAMPLES // SAMPLES))
    site.add_upmu("P3200001", "kill", extended=True)
    site.put("P3200001", files)
    db = connect(server.grpc)

    # SIGTERM: the batch being inserted is finished and marked; nothing else is in.
    with Sync2q(site.args(server.grpc)) as proc:
        proc.wait_for(SYNCED, n=6)
        assert proc.stop(signal.SIGTERM) == 0, proc.log
    assert proc.count(r"INFO stopped: \d+ files") == 1, proc.log
    synced = len(files) - len(site.unsynced("P3200001"))
    assert 6 <= synced < len(files), proc.log
    upmu = site.upmu("P3200001")
    assert set(counts(db, upmu).values()) == {synced * SAMPLES}

    # SIGKILL mid-insert, then a restart: every point once.
    with Sync2q(site.args(server.grpc)) as proc:
        proc.wait_for(SYNCED, n=1)
        proc.kill()
    assert site.unsynced("P3200001"), "the run finished before SIGKILL; queue more files"
    run_once(site, server.grpc)
    assert site.unsynced("P3200001") == []
    assert set(counts(db, upmu).values()) == {len(files) * SAMPLES}
    want = expected([d for _, d in files], names={"L1MAG", "FUND_W"})
    for name in ("L1MAG", "FUND_W"):
        t, v = read_stream(db, upmu.streams[name].uuid)
        np.testing.assert_array_equal(t, want[name][0])
        np.testing.assert_array_equal(v, want[name][1])


def test_btrdb_going_away_and_coming_back_loses_and_doubles_nothing(site, tmp_path):
    data = tmp_path / "btrdb-data"
    btrdb = testing.start(data)
    port = btrdb.grpc_port
    first = device_files("P3300001", 12)
    later = device_files("P3300001", 12, start=1450426440 + 12 * 60)
    site.add_upmu("P3300001", "outage", extended=True)
    site.put("P3300001", first)
    try:
        with Sync2q(site.args(btrdb.grpc, "--rate-interval", "0.5")) as proc:
            proc.wait_for(SYNCED, n=1)
            btrdb.stop()                              # down while sync2q works
            site.put("P3300001", later)
            proc.wait_for(r"WARNING waiting for BTrDB at 127\.0\.0\.1:\d+ \(")
            # Two rate lines after that (a whole interval of retries, backing off): the
            # second one shows that sync2q kept going and synced nothing meanwhile.
            before = proc.count(RATE)
            proc.wait_for(RATE, n=before + 2)
            assert [line for line in proc.lines if re.search(RATE, line)][before + 1] \
                .partition("INFO ")[2].startswith("rate: 0 files, 0 points"), proc.log
            assert site.unsynced("P3300001")
            btrdb = start_btrdb_on(data, port)        # back on the port sync2q knows
            proc.wait_for(r"available again after [\d.]+ s \(\d+ failed attempts\)")
            wait_until(lambda: site.unsynced("P3300001"), until=lambda left: not left,
                       what="every file synced", detail=lambda: proc.log)
            assert proc.stop() == 0, proc.log
        # One line when it went down, one when it came back: not one per attempt.
        assert proc.count(r"waiting for BTrDB") == 1, proc.log
        assert proc.count(r"available again") == 1, proc.log
        assert proc.count(r"INFO rate: \d+ files, \d+ points in [\d.]+ s = [\d.]+ files/s, "
                          r"[\d.]+ M points/s \(insert busy \d+%\)") >= 2, proc.log
        db = connect(btrdb.grpc)
        upmu = site.upmu("P3300001")
        assert set(counts(db, upmu).values()) == {24 * SAMPLES}
        want = expected([d for _, d in first + later], names={"C3ANG"})
        t, v = read_stream(db, upmu.streams["C3ANG"].uuid)
        np.testing.assert_array_equal(t, want["C3ANG"][0])
        np.testing.assert_array_equal(v, want["C3ANG"][1])
    finally:
        btrdb.stop()


def test_a_wiped_database_gets_its_streams_and_every_file_again(site, tmp_path):
    first = device_files("P3310001", 3)
    site.add_upmu("P3310001", "wiped", extended=True)
    site.put("P3310001", first)
    btrdb = testing.start(tmp_path / "old")
    port = btrdb.grpc_port
    try:
        with Sync2q(site.args(btrdb.grpc)) as proc:
            proc.wait_for(SYNCED, n=3)
            # qss-get's "new database": stop, start on an empty data directory, and raise
            # ytagbase so every queued file is synced again. sync2q sat idle meanwhile, so
            # its channel reconnects without an error: the first insert finds the streams
            # gone.
            btrdb.stop()
            btrdb = start_btrdb_on(tmp_path / "new", port)
            site.queue.resync_all()
            proc.wait_for(SYNCED, n=6)
            assert proc.count(r"a stream is missing in BTrDB .*creating its streams again") \
                == 1
            assert proc.count(r"19 streams created in collection 'upmu/wiped'") == 2, proc.log
            db = connect(btrdb.grpc)
            assert set(counts(db, site.upmu("P3310001")).values()) == {3 * SAMPLES}
            # SIGTERM while BTrDB is down: out at once, not after the backoff.
            btrdb.stop()
            site.put("P3310001", device_files("P3310001", 1, start=1450426440 + 600))
            proc.wait_for(r"waiting for BTrDB")
            started = time.monotonic()
            assert proc.stop() == 0
            assert time.monotonic() - started < 5, proc.log
        assert proc.count(r"INFO stopped: 6 files") == 1, proc.log   # 3, twice
    finally:
        btrdb.stop()


def _set_years(data: bytearray, records: range, year: int) -> None:
    for k in records:
        struct.pack_into("<i", data, k * EXT + 4, year)


def test_damaged_files_keep_their_good_records_and_unusable_ones_are_quarantined(server, site):
    files = device_files("P3400001", 8)
    names = [n for n, _ in files]
    good = files[0][1]
    truncated = files[1][1][:30 * EXT + 5000]
    garbage = np.random.default_rng(7).bytes(len(good))
    all_2000 = bytearray(files[3][1])
    _set_years(all_2000, range(60), 2000)
    some_2000 = bytearray(files[4][1])
    _set_years(some_2000, range(10), 2000)           # before GPS lock
    with_nan = bytearray(files[5][1])
    for i in range(10):
        struct.pack_into("<f", with_nan, 3 * EXT + 508 + i * 8 + 4, float("nan"))
    repeated = bytearray(files[6][1])
    repeated[5 * EXT + 4:5 * EXT + 28] = repeated[4 * EXT + 4:4 * EXT + 28]   # time shift
    contents = [good, truncated, garbage, bytes(all_2000), bytes(some_2000), bytes(with_nan),
                bytes(repeated), b""]
    site.add_upmu("P3400001", "damaged", extended=True)
    site.put("P3400001", list(zip(names, contents)))

    first = run_once(site, server.grpc)
    db = connect(server.grpc)
    upmu = site.upmu("P3400001")
    want = expected(contents)
    for name, info in upmu.streams.items():
        t, v = read_stream(db, info.uuid)
        np.testing.assert_array_equal(t, want[name][0], err_msg=name)
        np.testing.assert_array_equal(v, want[name][1], err_msg=name)
    assert db.stream_from_uuid(upmu.streams["L2MAG"].uuid).count() == (
        60 + 30 + 50 + 60 + 59) * 120
    assert db.stream_from_uuid(upmu.streams["L1MAG"].uuid).count() == (
        60 + 30 + 50 + 60 + 59) * 120 - 10

    def lines(name: str) -> list[str]:
        return [line for line in first.lines if name in line and "synced:" not in line]
    # One line per file about what was skipped, naming the file and the uPMU.
    assert len(lines(names[1])) == 1 and "WARNING" in lines(names[1])[0]
    assert "1 record skipped: truncated extended record" in lines(names[1])[0]
    assert len(lines(names[4])) == 1 and "INFO" in lines(names[4])[0]
    assert "10 records skipped: 10 x implausible date 2000-" in lines(names[4])[0]
    assert "10 NaN or infinite values not stored" in lines(names[5])[0]
    assert "time shift" in lines(names[6])[0]
    assert all("uPMU damaged (10.9.0.1, P3400001)" in lines(n)[0] for n in names[1:])
    # Files with no usable record: quarantined, with their reason, and still queued.
    quarantined = {names[2]: "no usable record", names[3]: "no usable record (60 records "
                   "skipped: 60 x implausible date 2000-", names[7]: "empty file"}
    for name, reason in quarantined.items():
        assert len(lines(name)) == 1 and "ERROR" in lines(name)[0], first.log
        assert f"quarantined ({reason}" in lines(name)[0]
    assert site.unsynced("P3400001") == sorted(quarantined)
    assert first.count(SYNCED) == 5

    listing = _cli(site, "--quarantined")
    assert listing.returncode == 0
    rows = [line.split("\t") for line in listing.stdout.splitlines()]
    assert sorted(r[1] for r in rows) == sorted(quarantined)
    assert all(r[0] == "P3400001" for r in rows)
    assert "3 quarantined files" in listing.stderr

    # Not tried again by the next run ...
    second = run_once(site, server.grpc)
    assert second.count("quarantined") == 1 and second.count(r"drained: 0 files") == 1
    # ... until an operator releases them.
    released = _cli(site, "--requeue", names[7].rsplit("/", 1)[1])
    assert released.returncode == 0 and released.stdout == f"released P3400001 {names[7]}\n"
    assert _cli(site, "--requeue", "all").stdout.count("released") == 2
    missing = _cli(site, "--requeue", "P3400001_2030-01-01-00-00-00.dat")
    assert missing.returncode == 1
    assert missing.stderr == ("qss-sync2q: error: no quarantined file matches "
                              "'P3400001_2030-01-01-00-00-00.dat' (see qss-sync2q "
                              "--quarantined)\n")
    third = run_once(site, server.grpc)
    assert third.count(r"ERROR .* quarantined \(") == 3, third.log


def _cli(site, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("QSS_CONFIG", "MONGO_ADDR")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "sync2q", "--config", str(site.config),
                           "--queue", site.url, *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=60)


def test_upmuconfig_changes_are_applied_while_running(server, site):
    a_files = device_files("P3500001", 2)
    b_files = device_files("P3500002", 2, extended=False)
    site.add_upmu("P3500001", "cfg-a", extended=True)
    site.put("P3500001", a_files)
    site.put("P3500002", b_files)                     # not in the list yet
    with Sync2q(site.args(server.grpc)) as proc:
        proc.wait_for(SYNCED, n=2)
        proc.wait_for(r"WARNING uPMU P3500002: not in .*upmuconfig.ini; its queued files "
                      r"wait until it is added")
        assert site.unsynced("P3500002") == [n for n, _ in b_files]

        # Added: synced without a restart.
        site.add_upmu("P3500002", "cfg-b", extended=False)
        proc.wait_for(r"uPMU cfg-b \(.*\): added \(base")
        wait_until(lambda: site.unsynced("P3500002"), until=lambda left: not left,
                   what="the new uPMU's files synced", detail=lambda: proc.log)

        # Metadata changed: annotations updated in BTrDB, other annotations kept.
        db = connect(server.grpc)
        a = site.upmu("P3500001")
        stream = db.stream_from_uuid(a.streams["L1MAG"].uuid)
        stream.refresh_metadata()
        stream.update(annotations={"distil/owner": "someone"}, encoder=None)
        text = Path(site.upmuconfig).read_text()
        text = text.replace("SerialNumber = P3500001",
                            "SerialNumber = P3500001\n            Location = Berkeley", 1)
        _replace(site.upmuconfig, text)
        proc.wait_for(r"uPMU cfg-a \(.*\): changed; streams are checked again")
        proc.wait_for(r"uPMU cfg-a \(.*\): 19 streams with annotations updated "
                      r"\(Metadata/Instrument/Location set\): L1MAG, .*, FREQ_L1_C37$")
        stream.refresh_metadata()
        assert stream.annotations()[0] == {
            "Metadata/Instrument/SerialNumber": "P3500001",
            "Metadata/Instrument/Location": "Berkeley",
            "Properties/UnitofMeasure": "V", "distil/owner": "someone"}

        # Removed: its new files wait in the queue.
        with UpmuList.edit(site.upmuconfig) as ul:
            ul.remove("cfg-a")
        proc.wait_for(r"uPMU cfg-a \(.*\): removed; its queued files wait")
        more = device_files("P3500001", 1, start=1450426440 + 600)
        site.put("P3500001", more)
        # The list touched is read again, and the next pass over the queue logs that the
        # new file waits: proof that sync2q looked at it and left it.
        waits = r"WARNING uPMU P3500001: not in .*upmuconfig.ini; its queued files wait"
        seen = proc.count(waits)
        mtime = os.stat(site.upmuconfig).st_mtime_ns + 10**9
        os.utime(site.upmuconfig, ns=(mtime, mtime))
        proc.wait_for(waits, n=seen + 1)
        assert site.unsynced("P3500001") == [more[0][0]]
        assert proc.stop() == 0, proc.log


def _replace(path: str, text: str) -> None:
    """Rewrite a file as editors do: a new file renamed over the old one."""
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    assert re.search("Location", Path(path).read_text())
