"""The demo's library (demokit.demo, behind ``./dev demo``): the whole appliance in a temporary
folder under a real supervisord, with simulated uPMUs registered through upmu-adm; points
arrive in BTrDB (read with the official client), and stopping leaves no process behind.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import uuid
from pathlib import Path

import pytest

from demokit.demo import Demo, choose_ports, first_stream
from distil.distillate import NAMESPACE
from qss.naming import parse_dat_filename
from qss.queue import open_queue
from qss.upmuconfig import UpmuList
from test_sync2q_support import connect
from waiting import wait_until

PROGRAMS = ["btrdb", "receiver", "sync2q", "distil", "upmu1", "upmu2"]
POINTS_PER_FILE = 60 * 120


def starts_of(names: list[str]) -> list[int]:
    """The start (unix seconds) of each named file."""
    return [int(parse_dat_filename(n.rsplit("/", 1)[1])[1].timestamp()) for n in names]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _synced(demo: Demo, serials: list[str], files: int) -> dict[str, list[str]] | None:
    """Names of each serial's queued files once every serial has at least ``files`` and
    none is waiting for sync2q; else None."""
    with open_queue(f"sqlite:///{demo.root}/ssd/srv/queue.db") as q:
        stats = q.stats()
        if any(s not in stats or stats[s].files < files or stats[s].unsynced_files
               for s in serials):
            return None
        return {s: [f.name for f in q.files(s)] for s in serials}


@pytest.fixture
def demo():
    # A short path: supervisord's socket path must fit in 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="qss-demo-", dir="/tmp"))
    d = Demo(root)
    pids: set[int] = set()
    d.pids = pids
    try:
        yield d
    finally:
        d.stop()
        for pid in pids:            # only what this demo's supervisord started
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(root, ignore_errors=True)


def test_the_demo_brings_the_appliance_up_and_points_arrive_in_btrdb(demo):
    ports, notes = choose_ports({"receiver": 0, "grpc": 0, "http": 0})
    assert notes == []
    demo.write(ports)
    demo.start()
    serials = demo.register(2)
    assert serials == ["P3000001", "P3000002"]
    upmus = {u.serial: u for u in UpmuList.load(str(demo.root / "home/manager/upmuconfig.ini"))}
    assert sorted(upmus) == serials and all(u.extended for u in upmus.values())
    # Six minutes of backlog each, a file every 0.2 s, then a file a minute.
    demo.add_devices(serials, backlog_hours=0.1, extra=["--gap", "0.2"])
    programs = {p.name: p for p in demo.programs()}
    assert {n: programs[n].state for n in PROGRAMS} == {n: "RUNNING" for n in PROGRAMS}
    supervisord_pid = int(demo.ctl("pid").stdout)
    demo.pids.update(int(m[1]) for p in programs.values()
                     if (m := re.match(r"pid (\d+)", p.description)))

    names = wait_until(lambda: _synced(demo, serials, 6), timeout=120, interval=0.5,
                       what="the backlog to arrive and sync", detail=demo.status_text)

    # Every point of every synced file is in BTrDB exactly once (official client).
    db = connect(f"127.0.0.1:{ports.grpc}")
    for serial in serials:
        starts = starts_of(names[serial])
        assert starts == sorted(starts) and len(set(starts)) == len(starts)
        for stream in ("L1MAG", "FREQ_L1_C37"):
            s = db.stream_from_uuid(upmus[serial].streams[stream].uuid)
            counted = s.count(starts[0] * 10**9, (starts[-1] + 60) * 10**9, precise=True)
            assert counted == len(starts) * POINTS_PER_FILE, (serial, stream)
    # Its own first file: each device is a process of its own whose backlog ends at its
    # own start, so the two devices' files may be a second or more apart (under load).
    first = starts_of(names["P3000001"])[0]
    values = db.stream_from_uuid(upmus["P3000001"].streams["L1MAG"].uuid).values(
        first * 10**9, (first + 1) * 10**9)
    assert len(values) == 120 and all(6500 < p.value < 7700 for p, _ in values)

    # Derived streams follow within seconds: every tick of the synced files has its
    # frequency (but the first second, which has no second before it) and its power.
    def derived():
        out = {}
        for serial in serials:
            first, end = starts_of(names[serial])[0] * 10**9, (starts_of(names[serial])[-1]
                                                                + 60) * 10**9
            for name, role in (("frequency", "FREQ_L1"), ("power", "P")):
                uu = uuid.uuid5(NAMESPACE, f"{name}/{serial}/{role}")
                try:
                    out[serial, role] = db.stream_from_uuid(uu).count(first, end,
                                                                      precise=True)
                except Exception:       # not created yet
                    out[serial, role] = 0
        return out
    want = {(s, r): len(names[s]) * POINTS_PER_FILE - (120 if r == "FREQ_L1" else 0)
            for s in serials for r in ("FREQ_L1", "P")}
    wait_until(derived, until=lambda got: got == want, timeout=60, interval=0.5,
               what="frequency and power of every synced file", detail=lambda: (
                   f"{derived()}\n{demo.log('distil').read_text()[-3000:]}"))
    collection = db.stream_from_uuid(uuid.uuid5(NAMESPACE, "frequency/P3000001/FREQ_L1"))
    assert collection.collection == "upmu/upmu1/distil/frequency"

    text = demo.status_text()
    assert "upmu1 (127.0.0.11, P3000001)" in text and "RUNNING" in text
    assert first_stream(demo)[0] == "upmu1"
    assert demo.log("receiver").exists() and "Received /root/upmu_data/" in \
        demo.log("receiver").read_text()

    assert demo.stop() is True
    assert not demo.running() and not _alive(supervisord_pid)
    assert [pid for pid in demo.pids if _alive(pid)] == []
    assert demo.stop() is False


def test_status_of_a_stopped_demo_says_so_and_how_to_start_it(tmp_path, capsys):
    from demokit.demo import main
    demo = Demo(tmp_path / "demo")
    demo.write(choose_ports({"receiver": 0, "grpc": 0, "http": 0})[0])   # never started
    for argv in (["status"], ["status", "--watch", "0.2", "--for", "2"]):
        assert main(["--dir", str(demo.root), *argv]) == 1
        assert capsys.readouterr().out == (f"The demo in {demo.root} is stopped (its data "
                                           f"stays there); start it with: ./dev demo\n")


def test_a_status_watch_ends_when_the_demo_is_stopped(tmp_path, capsys, monkeypatch):
    from demokit.demo import main
    demo = Demo(tmp_path / "demo")
    demo.write(choose_ports({"receiver": 0, "grpc": 0, "http": 0})[0])
    answers = iter([True, True, False])          # up, up, then ./dev demo stop
    monkeypatch.setattr(Demo, "running", lambda self: next(answers))
    monkeypatch.setattr(Demo, "status_text", lambda self: "the report")
    # --for: a watch that does not end by itself is stopped (and fails) after 5 s.
    assert main(["--dir", str(demo.root), "status", "--watch", "0.01", "--for", "5"]) == 1
    assert capsys.readouterr().out == (f"the report\n\nthe report\nThe demo in {demo.root} "
                                       f"is stopped (its data stays there); start it with: "
                                       f"./dev demo\n")
