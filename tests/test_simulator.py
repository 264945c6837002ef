"""qss-sim: the device's decisions as plain logic, and the real command against a real
``qss-receiver`` on loopback (refusals, then acceptance; the receiver killed and
restarted while devices push).
"""
from __future__ import annotations

import json
import os
import queue as queue_mod
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from qss.generator import UpmuSimulator
from qss.queue import open_queue
from simulator.devices import (FINISHED, Connect, Device, Outcome, Plan, ReplyTimes, Send, Wait,
                           device_files, next_send_id, plan_from_now, serial_range, totals)
from qss.protocol import FAILURE_REPLY, encode_reply
from sim_upmu import START, write_upmus
from test_sync2q_support import reserve_port
from waiting import wait_until

BIN = Path(sys.executable).parent
QSS_SIM = BIN / "qss-sim"
QSS_RECEIVER = BIN / "qss-receiver"


# -- the logic ---------------------------------------------------------------------------

def test_send_ids_count_from_one_and_wrap_before_the_maximum():
    assert next_send_id(0) == 1
    assert next_send_id(41) == 42
    assert next_send_id(0xFFFF_FFFE) == 1


def test_serial_ranges_keep_the_width_of_the_digits():
    assert serial_range("P3000009", 3) == ["P3000009", "P3000010", "P3000011"]
    with pytest.raises(ValueError, match="does not end in digits"):
        serial_range("PX", 2)
    with pytest.raises(ValueError, match="overflow"):
        serial_range("P9", 2)


def test_a_backlog_ends_now_and_live_files_keep_pace_with_the_clock():
    plan = plan_from_now(1_000_000.0, backlog_hours=1)
    assert (plan.backlog, plan.first) == (60, 1_000_000 - 3600)
    assert plan.made_by(0) == 60 and plan.made_by(59.9) == 60 and plan.made_by(60) == 61
    # live file 60 holds the minute after "now" and exists once that minute is over
    assert plan.start_of(60) == 1_000_000 and plan.due_after(60) == 60
    fast = Plan(first=0, interval=None, count=5)
    assert fast.made_by(0) == 5 and fast.due_after(4) == 0


def _device(**plan) -> Device:
    options = dict(first=START, interval=None, count=3)
    options.update(plan)
    return Device("P3000001", Plan(**options), gap=1.0, retry=5.0, reconnect=10.0)


def _send(device: Device, now: float) -> Send:
    step = device.next_step(now)
    assert isinstance(step, Send), step
    return step


def test_files_go_oldest_first_each_after_the_previous_reply_and_a_gap():
    d = _device()
    assert d.next_step(0.0) == Connect()
    d.connected_at(0.0)
    first = _send(d, 0.0)
    assert (first.file.index, first.send_id) == (0, 1)
    assert first.file.path == ("/root/upmu_data/2015/Month_12/Day_18/Hour_08/"
                               "P3000001_2015-12-18-08-14-57.dat")
    with pytest.raises(RuntimeError, match="awaits its reply"):
        d.next_step(0.1)
    assert d.replied(encode_reply(1), 0.5) is Outcome.ACKNOWLEDGED
    assert d.next_step(0.6) == Wait(1.5)                    # the device's pause
    second = _send(d, 1.5)
    assert (second.file.index, second.send_id) == (1, 2)
    assert second.file.path > first.file.path               # name order is time order
    d.replied(encode_reply(2), 2.0)
    third = _send(d, 3.0)
    d.replied(encode_reply(third.send_id), 3.5)
    assert d.next_step(9.0) is FINISHED and d.finished()
    assert d.acknowledged == [d.file(i).path for i in range(3)]
    assert (d.stats.sent, d.stats.acknowledged, d.stats.waiting) == (3, 3, 0)


def test_a_refused_file_is_kept_and_sent_again_after_the_retry_delay():
    d = _device()
    d.next_step(0.0)
    d.connected_at(0.0)
    step = _send(d, 0.0)
    assert d.replied(FAILURE_REPLY, 1.0) is Outcome.REFUSED and d.refusing
    assert d.next_step(2.0) == Wait(6.0)
    again = _send(d, 6.0)
    assert again.file == step.file and again.send_id == step.send_id + 1
    assert d.replied(encode_reply(again.send_id), 6.5) is Outcome.ACKNOWLEDGED
    assert not d.refusing
    assert (d.stats.refused, d.stats.acknowledged, d.stats.waiting) == (1, 1, 2)


def test_a_lost_connection_means_reconnect_later_and_resend_the_unanswered_file():
    d = _device()
    d.next_step(0.0)
    d.connect_failed(0.0)                               # the server is down
    assert d.next_step(1.0) == Wait(10.0)
    assert d.next_step(10.0) == Connect()
    d.connected_at(10.0)
    step = _send(d, 10.0)
    d.connection_lost(11.0)                             # no reply: the file stays
    assert not d.connected and d.next_step(12.0) == Wait(21.0)
    assert d.next_step(21.0) == Connect()
    d.connected_at(21.0)
    again = _send(d, 21.0)
    assert again.file == step.file and again.send_id == step.send_id + 1
    assert (d.stats.unanswered, d.stats.connect_failures, d.stats.connects) == (1, 1, 2)


def test_a_reply_with_another_send_id_drops_the_connection():
    d = _device()
    d.next_step(0.0)
    d.connected_at(0.0)
    _send(d, 0.0)
    assert d.replied(encode_reply(99), 0.1) is Outcome.BAD_REPLY
    assert not d.connected and d.stats.acknowledged == 0
    assert d.next_step(0.2) == Wait(10.1)


def test_after_its_backlog_a_device_waits_for_its_next_live_file():
    d = _device(backlog=1, interval=60.0, count=None)
    d.next_step(100.0)                                  # the device starts at 100
    d.connected_at(100.0)
    _send(d, 100.0)
    d.replied(encode_reply(1), 100.2)
    assert d.next_step(101.2) == Wait(160.0)            # live file 1 exists at 100 + 60
    assert d.stats.made == 1
    assert _send(d, 160.0).file.index == 1 and d.stats.made == 2


def test_reply_latencies_are_counted_from_the_send_to_the_reply():
    d = _device(count=4)
    d.next_step(0.0)
    d.connected_at(0.0)
    _send(d, 0.0)
    d.replied(encode_reply(1), 0.25)                    # 250 ms after next_step's Send
    _send(d, 10.0)
    d.replied(FAILURE_REPLY, 12.0, sent=11.0)           # a refusal counts: 1 s after sent
    _send(d, 20.0)
    d.connection_lost(30.0)                             # no reply: nothing to count
    assert d.stats.reply_times.count == 2 and d.stats.reply_times.max == 1.0
    ms = d.stats.as_dict()["reply_ms"]
    assert ms["count"] == 2 and ms["max"] == 1000.0
    assert 250.0 <= ms["p50"] <= 250.0 * 2 ** (1 / 8) and ms["p99"] == 1000.0
    other = _device()
    other.next_step(0.0)
    other.connected_at(0.0)
    _send(other, 0.0)
    other.replied(encode_reply(1), 3.0)
    both = totals([d, other])
    assert both["reply_ms"]["count"] == 3 and both["reply_ms"]["max"] == 3000.0
    assert (both["sent"], both["acknowledged"], both["refused"]) == (4, 2, 1)


def test_reply_time_quantiles_are_within_a_bucket_of_the_truth():
    times = ReplyTimes()
    assert times.quantile(0.99) is None and times.as_dict()["p99"] is None
    for i in range(1, 1001):                            # 1 ms .. 1 s
        times.add(i / 1000)
    times.add(0.0)                                      # below the first bucket's edge
    for q, true in ((0.5, 0.5), (0.99, 0.99)):
        assert true * 0.999 <= times.quantile(q) <= true * 2 ** (1 / 8) * 1.001
    assert times.quantile(1.0) == 1.0 and times.count == 1001
    assert len(times.buckets) < 100                     # bounded: log buckets


def test_contents_are_the_generators_files():
    d = Device("P3000001", Plan(first=START, interval=None, count=2),
               sim=UpmuSimulator("P3000001", extended=True))
    assert [(d.file(i).path, d.content(d.file(i))) for i in range(2)] == \
        device_files("P3000001", 2)


# -- the command -------------------------------------------------------------------------

def _sim(*args: str, **popen) -> subprocess.Popen:
    if not QSS_SIM.exists():
        pytest.fail(f"{QSS_SIM} is missing: pip install -e . (setup.py lists qss-sim)")
    return subprocess.Popen([str(QSS_SIM), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def test_help_explains_with_examples_and_exit_statuses():
    done = subprocess.run([str(QSS_SIM), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for text in ("examples:", "--backlog HOURS", "--fast", "exit status:", "--json",
                 "upmu-adm -c"):
        assert text in done.stdout


@pytest.mark.parametrize("args, message", [
    (["--port", "0"], "argument --port: expected a TCP port (1 to 65535), got '0' "
                      "(see qss-sim --help)"),
    (["--serial", "P3/1"], "argument --serial: invalid serial 'P3/1': letters and digits, at "
                           "most 32 (e.g. P3001276) (see qss-sim --help)"),
    (["--devices", "2", "--serial", "P3000001"],
     "--devices 2 but 1 --serial given; give one or the other"),
    (["--files", "2", "--minutes", "3"],
     "argument --minutes: not allowed with argument --files (see qss-sim --help)"),
])
def test_usage_errors_are_one_line_and_exit_2(args, message):
    done = subprocess.run([str(QSS_SIM), *args], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"qss-sim: error: {message}\n")


class ReceiverProcess:
    """A real ``qss-receiver`` on 127.0.0.1:``port`` with its queue in ``tmp``."""

    def __init__(self, tmp: Path, port: int) -> None:
        (tmp / "qss.ini").touch()
        env = {k: v for k, v in os.environ.items() if k not in ("MONGO_ADDR", "QSS_CONFIG")}
        self.log_path = tmp / f"receiver-{time.monotonic_ns()}.log"
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [str(QSS_RECEIVER), "--config", str(tmp / "qss.ini"),
                 "--queue", f"sqlite:///{tmp}/queue.db", "--upmuconfig",
                 str(tmp / "upmuconfig.ini"), "--listen", f"127.0.0.1:{port}"],
                stdout=log, stderr=subprocess.STDOUT, env=env)

        def listening() -> bool:
            assert self.proc.poll() is None, f"the receiver exited:\n{self.log()}"
            return "Listening on" in self.log()
        try:
            wait_until(listening, timeout=30, what="the receiver listening", detail=self.log)
        except BaseException:
            self.stop(signal.SIGKILL)
            raise

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(30)


class SimProcess:
    """``qss-sim --json`` with its progress read in a thread."""

    def __init__(self, *args: str) -> None:
        self.proc = _sim("--json", "--progress", "0.1", *args)
        self.events: queue_mod.Queue = queue_mod.Queue()
        self.lines: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def wait_until(self, check, what: str, timeout: float = 60.0) -> dict:
        """The first progress or summary event for which ``check(totals)`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue_mod.Empty:
                pytest.fail(f"qss-sim never reported {what}; last: {self.lines[-1:]}")
            self.lines.append(event)
            if check(event["totals"]):
                return event
            assert event["event"] != "summary", f"qss-sim ended before {what}: {event}"

    def finish(self, timeout: float = 90.0) -> tuple[int, dict]:
        """Exit status and the summary."""
        code = self.proc.wait(timeout)
        self._reader.join(10)
        while not self.events.empty():
            self.lines.append(self.events.get())
        return code, self.lines[-1]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _queued(tmp: Path, serial: str) -> list[str]:
    if not (tmp / "queue.db").exists():
        return []
    with open_queue(f"sqlite:///{tmp}/queue.db") as q:
        return [f.name for f in q.files(serial)]


def _check_queue_holds_exactly(tmp: Path, serials: list[str], count: int) -> None:
    with open_queue(f"sqlite:///{tmp}/queue.db") as q:
        for serial in serials:
            expected = device_files(serial, count)
            stored = list(q.files(serial))
            assert [f.name for f in stored] == [path for path, _ in expected]   # once each
            for file, (_, data) in zip(stored, expected):
                assert bytes(q.read(file)) == data


def test_an_unknown_serial_is_refused_and_kept_until_it_is_added(tmp_path):
    write_upmus(str(tmp_path / "upmuconfig.ini"), ["P3000001"])
    port = reserve_port()
    receiver = ReceiverProcess(tmp_path, port)
    sim = SimProcess("--port", str(port), "--serial", "P3000001", "--serial", "P3000002",
                     "--fast", "--files", "4", "--retry", "0.2", "--reconnect", "0.2",
                     "--start", "2015-12-18T08:14:57Z", "--duration", "120")
    try:
        sim.wait_until(lambda t: t["acknowledged"] == 4 and t["refused"] >= 3,
                       "P3000001's files acknowledged and P3000002's refused again and again")
        assert _queued(tmp_path, "P3000002") == []
        assert sim.proc.poll() is None                      # P3000002 keeps its files
        write_upmus(str(tmp_path / "upmuconfig.ini"), ["P3000002"])   # as upmu-adm save
        code, summary = sim.finish()
    finally:
        sim.kill()
        receiver.stop()
    assert code == 0, summary
    assert summary["event"] == "summary" and summary["stopped"] == "every file acknowledged"
    by_serial = {d["serial"]: d for d in summary["devices"]}
    assert by_serial["P3000001"]["refused"] == 0
    assert by_serial["P3000002"]["refused"] >= 3
    assert by_serial["P3000002"]["acknowledged"] == 4 and by_serial["P3000002"]["waiting"] == 0
    assert "unknown serial 'P3000002'" in receiver.log()
    _check_queue_holds_exactly(tmp_path, ["P3000001", "P3000002"], 4)


def test_after_the_receiver_is_killed_and_restarted_nothing_is_lost_or_doubled(tmp_path):
    serials, files_n = ["P3000001", "P3000002"], 30
    write_upmus(str(tmp_path / "upmuconfig.ini"), serials)
    port = reserve_port()
    receivers = [ReceiverProcess(tmp_path, port)]
    # Paced (a file every 50 ms each): the run cannot be over before the kill.
    sim = SimProcess("--port", str(port), "--serial-base", "P3000001", "--devices", "2",
                     "--interval", "0.05", "--gap", "0", "--files", str(files_n),
                     "--reconnect", "0.2", "--start", "2015-12-18T08:14:57Z",
                     "--duration", "120")
    try:
        sim.wait_until(lambda t: t["acknowledged"] >= 6, "6 files acknowledged")
        receivers[0].stop(signal.SIGKILL)
        down = sim.wait_until(lambda t: t["connect_failures"] >= 1,
                              "a failed connection attempt while the receiver is down")
        assert down["totals"]["acknowledged"] < 2 * files_n      # killed mid-run
        receivers.append(ReceiverProcess(tmp_path, port))
        code, summary = sim.finish()
    finally:
        sim.kill()
        for r in receivers:
            r.stop(signal.SIGKILL)
    assert code == 0, summary
    totals = summary["totals"]
    assert (totals["acknowledged"], totals["waiting"]) == (2 * files_n, 0), totals
    assert totals["connects"] >= 4                 # each device connected again
    _check_queue_holds_exactly(tmp_path, serials, files_n)
