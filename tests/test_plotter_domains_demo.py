"""Manual ch. 10-11 end to end in the demo appliance: a uPMU moved to /lbnl and made
private in tagconfig.json, peter added with accounts.py; anonymous no longer sees it,
peter does; `supervisorctl restart metadata` and `restart all` work as printed."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from demokit.demo import Demo, choose_ports
from plotter import testing as plotter_testing

from waiting import wait_until

BIN = Path(sys.executable).parent


def collections(http, url):
    """The uPMUs' collections (domain/uPMU) the viewer sees streams of: their own and the
    derived streams under them (distil's <domain>/<uPMU>/distil/...), which move with them."""
    answer = http.get(url + "/api/streams", timeout=30)
    assert answer.status_code == 200, answer.text
    return {"/".join(s["collection"].split("/")[:2]) for s in answer.json()["streams"]}


def listing(http, url):
    """The collections, or None while the plotter cannot answer (BTrDB restarting)."""
    try:
        return collections(http, url)
    except (AssertionError, OSError):
        return None


def test_the_manuals_example_in_the_demo_appliance():
    root = Path(tempfile.mkdtemp(prefix="qss-dd-", dir="/tmp"))    # short: supervisord's socket
    demo = Demo(root)
    env = {**os.environ, "QSS_CONFIG": str(root / "etc/qss/qss.ini")}
    try:
        ports, _ = choose_ports({"receiver": 0, "grpc": 0, "http": 0, "plotter": 0})
        demo.write(ports)
        tools = root / "home/manager/mr-plotter/tools"
        assert json.loads((tools / "tagconfig.json").read_text()) == {"public": ["/upmu"]}
        assert os.access(tools / "accounts.py", os.X_OK)
        demo.start()
        assert {p.name: p.state for p in demo.programs()}["metadata"] == "RUNNING"
        demo.register(2)
        url = f"http://127.0.0.1:{ports.plotter}"
        anon = plotter_testing.client(url)
        wait_until(lambda: collections(anon, url), interval=0.3,
                   until=lambda got: got == {"upmu/upmu1", "upmu/upmu2"},
                   what="anonymous to see upmu1 and upmu2")

        # 1. upmu2's Paths to /lbnl in upmuconfig.ini, then save (manager2lite.ipy)
        cfg = root / "home/manager/upmuconfig.ini"
        cfg.write_text(cfg.read_text().replace("Path = /upmu/upmu2/", "Path = /lbnl/upmu2/"))
        done = subprocess.run([str(BIN / "upmu-adm"), "-c", "save"], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        # not public (tagconfig.json as shipped): anonymous no longer sees it
        wait_until(lambda: collections(anon, url), interval=0.3,
                   until=lambda got: got == {"upmu/upmu1"},
                   what="anonymous to see upmu1 only")

        # 2. python accounts.py: adduser peter psladmin psl lbnl pge
        done = subprocess.run(["python3", "accounts.py"], cwd=tools, env=env, text=True,
                              input="adduser peter psladmin psl lbnl pge\nexit\n",
                              capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout == "added user peter with tags psl lbnl pge\n"

        # 3. tagconfig.json: /upmu public, /lbnl for the tag lbnl; restart metadata
        (tools / "tagconfig.json").write_text(
            '{\n    "public": ["/upmu"],\n    "lbnl": ["/lbnl"]\n}\n')
        done = demo.ctl("restart", "metadata")
        assert done.returncode == 0 and "metadata: started" in done.stdout, done.stdout
        log = root / "var/log/metadata.log"
        wait_until(lambda: "domain /lbnl (upmu2): tag lbnl (peter)" in log.read_text(),
                   interval=0.3, what="metadata's report of the domain /lbnl",
                   detail=log.read_text)
        assert "domain /upmu (upmu1): public (everyone)" in log.read_text()

        # 5. anonymous sees /upmu only; peter sees /lbnl too
        peter = plotter_testing.client(url, "peter", "psladmin")
        assert collections(anon, url) == {"upmu/upmu1"}
        # the plotter took the restart in: it read tagconfig.json and the streams again
        assert "metadata reloaded" in (root / "var/log/mr-plotter.log").read_text()
        assert collections(peter, url) == {"upmu/upmu1", "lbnl/upmu2"}

        # 4. ... and restart all, as printed
        done = demo.ctl("restart", "all", timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        demo.wait_running(["btrdb", "receiver", "sync2q", "metadata", "mr-plotter"], 60)
        wait_until(lambda: _answers(url), interval=0.3, what="the plotter to answer")
        peter = plotter_testing.client(url, "peter", "psladmin")
        wait_until(lambda: listing(peter, url), interval=0.3,
                   until=lambda got: got == {"upmu/upmu1", "lbnl/upmu2"},
                   what="peter to see upmu1 and lbnl/upmu2")
        assert collections(plotter_testing.client(url), url) == {"upmu/upmu1"}
    finally:
        demo.stop()
        shutil.rmtree(root, ignore_errors=True)


def _answers(url: str) -> bool:
    import requests
    try:
        return requests.get(url + "/api/session", timeout=5).status_code == 200
    except requests.RequestException:
        return False
