"""The demo runs the plotter too (supervisor program mr-plotter, the appliance's program
block): the simulated uPMU's streams are listed and its data can be plotted within
seconds of the demo starting."""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import requests

from demokit.demo import Demo, choose_ports
from installer.components import Layout, plotter_program, program_block


def test_the_plotters_program_starts_as_root_and_serves_as_the_service_user():
    block = program_block(plotter_program(Layout()), Layout(), "/var/log")
    assert block.startswith("[program:mr-plotter]\n")
    assert ("command=/usr/local/bin/qss-plotter --config /etc/qss/qss.ini --user qss\n"
            "user=root\n") in block
    assert "stdout_logfile=/var/log/mr-plotter.log\n" in block


def test_the_demo_serves_the_plotter_with_the_simulated_upmus_data():
    root = Path(tempfile.mkdtemp(prefix="qss-pd-", dir="/tmp"))   # short: supervisord's socket
    demo = Demo(root)
    try:
        ports, _ = choose_ports({"receiver": 0, "grpc": 0, "http": 0, "plotter": 0})
        assert ports.plotter
        demo.write(ports)
        assert f"listen = 127.0.0.1:{ports.plotter}\n" in demo.ini.read_text()
        demo.start()
        assert {p.name: p.state for p in demo.programs()}["mr-plotter"] == "RUNNING"
        url = f"http://127.0.0.1:{ports.plotter}"
        assert requests.get(url + "/", timeout=10).status_code == 200
        demo.register(1)
        started = time.monotonic()
        demo.add_devices(["P3000001"], backlog_hours=0.05, extra=["--gap", "0.2"])
        tree = requests.get(url + "/api/streams", timeout=10).json()
        l1mag = [s for s in tree["streams"] if s["path"] == "/upmu/upmu1/L1MAG"]
        assert len(l1mag) == 1 and l1mag[0]["unit"] == "V"
        while True:             # data on screen within seconds
            b = requests.get(url + "/api/bracket", params={"uuid": l1mag[0]["uuid"]},
                             timeout=10).json()
            if b["last"] is not None:
                break
            assert time.monotonic() - started < 60, "no data in the plotter after 60 s"
            time.sleep(0.5)
        d = requests.get(url + "/api/data", params={
            "uuid": l1mag[0]["uuid"], "start": b["first"], "end": b["last"] + 1,
            "width": 800}, timeout=10).json()["streams"][0]
        assert sum(d["count"] if d["kind"] == "windows" else [1] * len(d["times"])) > 0
        # the health panel: the uPMU's last file, and supervisor's programs (asked through
        # the supervisord that runs the plotter)
        h = requests.get(url + "/api/health", timeout=30).json()
        assert [u["serial"] for u in h["upmus"]] == ["P3000001"]
        assert h["upmus"][0]["last_received"] is not None
        states = {p["name"]: p["state"] for p in h["programs"]}
        assert {n: states.get(n) for n in ("btrdb", "receiver", "sync2q", "mr-plotter",
                                           "upmu1")} == dict.fromkeys(
            ("btrdb", "receiver", "sync2q", "mr-plotter", "upmu1"), "RUNNING")
    finally:
        demo.stop()
        shutil.rmtree(root, ignore_errors=True)
