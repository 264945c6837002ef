"""The real ``qss-receiver`` process: SIGKILL mid-transfer and restart, SIGTERM, errors.

The test holds the listening socket (127.0.0.1, a free port) and hands it to each
receiver process (``--listen-fd``), so a restarted receiver serves the same address and
devices that connect while none runs wait in the backlog, as with socket activation.
"""
from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

from qss.generator import UpmuSimulator
from qss.queue import open_queue
from simulator.devices import Device, Plan, device_files, run_blocking
from receiver_support import ROOT, Receiver
from sim_upmu import START, serial_of, write_upmus
from waiting import wait_until


def devices_for(serials: list[str], count: int) -> list[Device]:
    """Devices pushing ``count`` files each (those of :func:`device_files`) back to back,
    resending and reconnecting after 50 ms."""
    plan = Plan(first=START, interval=None, count=count)
    return [Device(s, plan, sim=UpmuSimulator(s, extended=True), gap=0, retry=0.05,
                   reconnect=0.05) for s in serials]


def failures(device: Device) -> int:
    return device.stats.refused + device.stats.unanswered + device.stats.connect_failures


def test_sigkill_mid_transfers_then_restart_keeps_exactly_one_copy(tmp_path, listener):
    devices_n, files_n = 8, 12
    serials = [serial_of(i) for i in range(devices_n)]
    write_upmus(str(tmp_path / "upmuconfig.ini"), serials)
    files = {s: device_files(s, files_n) for s in serials}
    expected = {(s, path): data for s, fs in files.items() for path, data in fs}

    receiver = Receiver(tmp_path, listener)
    receivers = [receiver]
    devices = devices_for(serials, files_n)
    deadline = time.monotonic() + 40
    threads = [threading.Thread(target=run_blocking,
                                args=(devices, *listener.getsockname(), 40))]
    try:
        for t in threads:
            t.start()
        wait_until(lambda: sum(len(d.acknowledged) for d in devices),
                   until=lambda acknowledged: acknowledged >= 25,
                   timeout=deadline - time.monotonic(), interval=0.005,
                   what="25 files acknowledged before the kill")
        receiver.proc.kill()                       # SIGKILL, transfers in flight
        assert receiver.stop() == -signal.SIGKILL
        acknowledged = {(d.serial, p) for d in devices for p in d.acknowledged}

        # Before any resend: every acknowledged file is there, and whatever is stored is whole.
        check = sqlite3.connect(tmp_path / "queue.db")
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        check.close()
        with open_queue(f"sqlite:///{tmp_path}/queue.db") as queue:
            stored = {(s, f.name): f for s in serials for f in queue.files(s)}
            assert acknowledged <= set(stored)
            for key, file in stored.items():
                assert bytes(queue.read(file)) == expected[key], key
        assert len(acknowledged) < len(expected)   # the kill really was mid-run
        print(f"at the kill: {len(acknowledged)} acknowledged, {len(stored)} stored")

        receiver = Receiver(tmp_path, listener)
        receivers.append(receiver)
        for t in threads:
            t.join(max(0.1, deadline - time.monotonic()))
        assert all(d.finished() for d in devices), [d.stats for d in devices]
    finally:
        for t in threads:
            t.join(0.1)
        for r in receivers:
            r.stop(signal.SIGKILL)

    with open_queue(f"sqlite:///{tmp_path}/queue.db") as queue:
        for s in serials:
            stored = list(queue.files(s))
            assert [f.name for f in stored] == [p for p, _ in files[s]]   # each exactly once
            for file in stored:
                assert bytes(queue.read(file)) == expected[(s, file.name)]
    assert sum(failures(d) for d in devices) > 0   # devices did have to resend


def test_sigterm_exits_cleanly(tmp_path, listener):
    write_upmus(str(tmp_path / "upmuconfig.ini"), [serial_of(0)])
    receiver = Receiver(tmp_path, listener)
    try:
        assert receiver.ready.wait(15), receiver.log
        device, = devices_for([serial_of(0)], 2)
        run_blocking([device], *listener.getsockname(), 15)
        assert device.finished()
    finally:
        code = receiver.stop(signal.SIGTERM)
    assert code == 0, receiver.log
    log = receiver.log
    assert "Received /root/upmu_data/2015/Month_12/Day_18/Hour_08/P3000000_2015-12-18-08-14-57" \
           ".dat: serial number is P3000000 (u0), length is 551520" in log
    assert log.rstrip().endswith("INFO receiver stopped")


def run_receiver(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MONGO_ADDR", "QSS_CONFIG")}
    env["PYTHONPATH"] = ROOT
    return subprocess.run([sys.executable, "-m", "receiver.server", "--config", os.devnull,
                           *args], capture_output=True, text=True, env=env, timeout=30)


def test_operator_errors_are_one_line(tmp_path):
    done = run_receiver("--queue", "sqlite:////nonexistent-qss-dir/queue.db")
    assert done.returncode == 1
    assert done.stderr == ("qss-receiver: error: queue sqlite:////nonexistent-qss-dir/queue.db: "
                           "directory /nonexistent-qss-dir does not exist; mount the data drive "
                           "or create the directory\n")
    done = run_receiver("--stall-timeout", "0")
    assert (done.returncode, done.stderr) == (
        2, "qss-receiver: error: --stall-timeout must be more than 0 seconds\n")
    done = run_receiver("--listen", "127.0.0.1:99999")
    assert done.returncode == 2
    assert done.stderr.startswith("qss-receiver: error: --listen '127.0.0.1:99999': port must")


def test_an_unusable_listening_socket_hints_at_another_receiver_only_when_in_use(tmp_path):
    common = ("--queue", f"sqlite:///{tmp_path / 'queue.db'}", "--srv", str(tmp_path),
              "--upmuconfig", str(tmp_path / "upmuconfig.ini"))
    done = run_receiver(*common, "--listen-fd", "99")
    assert (done.returncode, done.stderr) == (
        1, "qss-receiver: error: cannot listen on file descriptor 99: Bad file descriptor\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_receiver(*common, "--listen", f"127.0.0.1:{port}")
    assert done.returncode == 1
    assert done.stderr.startswith(f"qss-receiver: error: cannot listen on 127.0.0.1:{port}: ")
    assert done.stderr.endswith("; is another receiver running?\n")
