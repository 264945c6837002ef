"""The receiver's decisions for one file (receiver.intake), without sockets or clocks."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from qss.queue import QueueError, open_queue
from qss.upmuconfig import UpmuList
from receiver.intake import (DiskGuard, Intake, PushedFile, RefusalLog, UpmuDirectory,
                             disk_percent)
from qss.protocol import FAILURE_REPLY, encode_reply
from sim_upmu import write_upmus

PATH = "/root/upmu_data/2015/Month_12/Day_18/Hour_08/P3001276_2015-12-18-08-14-57.dat"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def message(send_id: int = 7, serial: str = "P3001276", path: str = PATH,
            data: bytes = b"contents") -> PushedFile:
    return PushedFile(send_id, path, serial, memoryview(data))


@pytest.fixture
def setup(tmp_path):
    upmuconfig = str(tmp_path / "upmuconfig.ini")
    write_upmus(upmuconfig, ["P3001276"])
    queue = open_queue(f"sqlite:///{tmp_path}/queue.db")
    usage = {"percent": 50.0}
    clock = Clock()
    disk = DiskGuard(str(tmp_path), 98.0, usage=lambda p: usage["percent"], clock=clock,
                     interval=1.0)
    intake = Intake(queue, UpmuDirectory(upmuconfig), disk, RefusalLog(60, clock))
    yield intake, queue, usage, clock, upmuconfig
    queue.close()


def test_stores_and_acknowledges_with_the_original_log_line(setup, caplog):
    intake, queue, *_ = setup
    with caplog.at_level(logging.INFO, logger="receiver"):
        assert intake.handle(message(), "10.0.0.1") == encode_reply(7)
    assert (f"Received {PATH}: serial number is P3001276 (u0), length is 8"
            in caplog.messages)
    assert bytes(queue.read(queue.get("P3001276", PATH))) == b"contents"
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="receiver"):
        assert intake.handle(message(8), "10.0.0.1") == encode_reply(8)
    assert caplog.messages == [f"Received {PATH}: serial number is P3001276 (u0), length is 8"
                               f" (already queued: acknowledged without a second copy)"]


def test_unknown_serial_is_refused_with_the_fix(setup, caplog):
    intake, queue, *_ = setup
    with caplog.at_level(logging.INFO, logger="receiver"):
        assert intake.handle(message(serial="P3009999"), "10.0.0.5") == FAILURE_REPLY
    assert caplog.messages == [
        f"uPMU 10.0.0.5 (P3009999): refused file '{PATH}' (unknown serial 'P3009999'; add it "
        f"with: upmu-adm add 10.0.0.5 P3009999 ALIAS)"]
    assert queue.serials() == []


def test_serials_match_ignoring_case_and_queue_under_the_configured_spelling(setup):
    intake, queue, *_ = setup
    assert intake.handle(message(serial="p3001276"), "10.0.0.1") == encode_reply(7)
    assert queue.serials() == ["P3001276"]


def test_disk_at_or_above_the_limit_refuses(setup, caplog):
    intake, queue, usage, clock, _ = setup
    usage["percent"] = 98.0
    clock.now += 5
    with caplog.at_level(logging.INFO, logger="receiver"):
        assert intake.handle(message(), "10.0.0.1") == FAILURE_REPLY
    assert "is 98.0% full, at or above the limit of 98%; free space, e.g. with clean_synced" \
        in caplog.text
    assert queue.serials() == []
    usage["percent"] = 97.9
    assert intake.handle(message(), "10.0.0.1") == FAILURE_REPLY   # cached for 1 s
    clock.now += 1
    assert intake.handle(message(), "10.0.0.1") == encode_reply(7)


def test_disk_measurement_failure_refuses(setup):
    intake, queue, *_ = setup

    def broken(path):
        raise OSError(5, "Input/output error")

    intake.disk = DiskGuard("/ssd/srv", 98, usage=broken)
    assert intake.handle(message(), "10.0.0.1") == FAILURE_REPLY
    assert queue.serials() == []


def test_storage_errors_refuse_and_never_raise(setup, caplog):
    intake, queue, _, clock, _ = setup

    class Failing:
        storage_dir = None

        def __init__(self, exc):
            self.exc = exc

        def put(self, *args, **kwargs):
            raise self.exc

    for exc, text in [(QueueError("queue x: disk I/O error"), "queue x: disk I/O error; the "
                       "uPMU keeps the file and retries"),
                      (ValueError("file name contains a NUL"), "cannot queue it: file name"),
                      (RuntimeError("bug"), "internal error RuntimeError: bug")]:
        intake.queue = Failing(exc)
        clock.now += 60   # past the refusal log's window
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="receiver"):
            assert intake.handle(message(), "10.0.0.1") == FAILURE_REPLY
        assert text in caplog.text


def test_refusals_are_rate_limited_per_address_and_reason(setup, caplog):
    intake, _, usage, clock, _ = setup
    with caplog.at_level(logging.WARNING, logger="receiver"):
        for _ in range(5):
            intake.handle(message(serial="P3009999"), "10.0.0.5")
            clock.now += 1
        intake.handle(message(serial="P3008888"), "10.0.0.6")     # another address: logged
        assert intake.refusals.flush() == 0                       # the window is not over
        clock.now += 55
        assert intake.refusals.flush() == 1
        assert intake.refusals.flush() == 0
        intake.handle(message(serial="P3009999"), "10.0.0.5")     # a new window
    lines = caplog.messages
    assert len(lines) == 4
    assert "10.0.0.6" in lines[1]
    assert lines[2] == lines[0] + " [4 more like it in the last 60 s]"
    assert lines[3] == lines[0]


def test_each_reason_from_one_address_is_logged(setup, caplog):
    """Seven different refusals and closes from one address within a minute: seven lines."""
    intake, _, usage, clock, _ = setup
    log = intake.refusals
    with caplog.at_level(logging.WARNING, logger="receiver"):
        intake.handle(message(serial="P3009999"), "10.0.0.5")     # unknown serial
        intake.handle(message(path="/a\0b"), "10.0.0.5")          # a name the queue refuses
        usage["percent"] = 99.0
        clock.now += 1
        intake.handle(message(), "10.0.0.5")                      # full disk
        for kind in ("send_id 0", "path too long", "closed mid-message", "stalled"):
            log.refuse("10.0.0.5", kind, f"uPMU 10.0.0.5:1000: closed the connection: {kind}")
            clock.now += 1
        for _ in range(3):                                        # repeats: counted
            intake.handle(message(serial="P3009999"), "10.0.0.5")
        assert len(caplog.messages) == 7
        clock.now += 60
        assert log.flush() == 1
    assert caplog.messages[-1].endswith("[3 more like it in the last 60 s]")


def test_a_serial_or_path_cannot_start_a_log_line(setup, caplog):
    intake, queue, _, clock, upmuconfig = setup
    forged = "P3\nFAKE INFO Received /x: serial number is P3001276\x1b[2J\u2028"
    with caplog.at_level(logging.INFO, logger="receiver"):
        assert intake.handle(message(serial=forged), "10.0.0.5") == FAILURE_REPLY
        clock.now += 60
        assert intake.handle(message(serial=forged), "10.0.0.5") == FAILURE_REPLY
        assert intake.handle(message(path="/root/a\nFAKE\r'.dat"), "10.0.0.1") == encode_reply(7)
    lines = [line for record in caplog.records for line in record.getMessage().splitlines()]
    assert len(lines) == len(caplog.records) == 3      # one line per event, nothing more
    assert all("\x1b" not in line and "\u2028" not in line for line in lines)
    shown = "P3\\nFAKE INFO Received /x: serial number is P3001276\\x1b[2J\\u2028"
    assert lines[0] == (f"uPMU 10.0.0.5 ({shown}): refused file '{PATH}' (unknown serial "
                        f"'{shown}'; add it with: upmu-adm add 10.0.0.5 {shown} ALIAS)")
    assert lines[2].startswith("Received /root/a\\nFAKE\\r\\'.dat: serial number is P3001276")


def test_the_list_is_reloaded_when_the_file_changes(setup):
    intake, queue, _, _, upmuconfig = setup
    assert intake.handle(message(serial="P3002222"), "10.0.0.2") == FAILURE_REPLY
    write_upmus(upmuconfig, ["P3002222"])
    assert intake.handle(message(serial="P3002222"), "10.0.0.2") == encode_reply(7)
    with UpmuList.edit(upmuconfig) as upmus:
        upmus.remove("P3002222")
    assert intake.handle(message(8, serial="P3002222"), "10.0.0.2") == FAILURE_REPLY


def test_a_broken_list_keeps_the_last_good_one(setup, caplog):
    intake, _, _, _, upmuconfig = setup
    path = Path(upmuconfig)
    path.write_text(path.read_text() + "\n[[[broken\n")
    with caplog.at_level(logging.ERROR, logger="receiver"):
        assert intake.handle(message(), "10.0.0.1") == encode_reply(7)
    assert "still using the uPMU list read before (1 uPMUs)" in caplog.text


def test_a_missing_list_refuses_everything(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="receiver"):
        directory = UpmuDirectory(str(tmp_path / "nope.ini"))
    assert directory.lookup("P3001276") is None
    assert "does not exist: every file will be refused" in caplog.text


def test_disk_percent_measures_the_nearest_existing_directory(tmp_path):
    percent = disk_percent(str(tmp_path / "not" / "yet"))
    assert 0 <= percent <= 100
    assert percent == disk_percent(str(tmp_path))
    assert os.path.exists(tmp_path)
