"""qss-sync2q's command line: refusals an operator can act on, and a failed thread."""
from __future__ import annotations

import os
import subprocess
import sys

from test_sync2q_support import ROOT, device_files, server, site  # noqa: F401 - fixtures


def test_once_with_a_broken_upmu_list_fails_and_says_nothing_was_synced(tmp_path):
    ini = tmp_path / "upmuconfig.ini"
    ini.write_text("[192.168.1.24]\n%serial_number = P3112233\n[[L1MAG\nuuid = x\n")
    srv = tmp_path / "srv"
    srv.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "sync2q", "--config", os.devnull, "--once",
         "--upmuconfig", str(ini), "--queue", f"sqlite:///{srv}/queue.db",
         "--btrdb", "127.0.0.1:9", "--srv", str(srv)],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    err = proc.stderr.strip().splitlines()[-1]
    assert err.startswith("qss-sync2q: error: ") and str(ini) in err
    assert "line 3" in err and err.endswith("; nothing was synced")


# A sync2q whose marker thread fails on its first file (a stand-in for any bug in a
# worker thread): the command runs as the console script does, through qss.cli.run.
_CRASHING = """\
import sys
import sync2q.worker
def broken(self, batch, work):
    raise RuntimeError("simulated bug in the marker")
sync2q.worker.Worker._mark = broken
from sync2q.cli import entry
sys.argv[0] = "qss-sync2q"
entry()
"""


def test_once_fails_with_one_line_when_a_worker_thread_fails(server, site):
    files = device_files("P3700090", 2)
    site.add_upmu("P3700090", "crash")
    site.put("P3700090", files)
    env = {k: v for k, v in os.environ.items() if k not in ("QSS_CONFIG", "MONGO_ADDR")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-c", _CRASHING, *site.args(server.grpc, "--once")],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert proc.returncode == 1, (proc.stdout[-2000:], proc.stderr)
    assert proc.stderr == (
        "qss-sync2q: error: sync2q-marker failed: RuntimeError: simulated bug in the marker "
        "(a bug: the log has the traceback); files not marked synced stay in the queue and "
        "are synced next time\n")
    assert "sync2q-marker failed; stopping" in proc.stdout   # the traceback is logged
    assert "Traceback" in proc.stdout
    assert site.unsynced("P3700090") == [name for name, _ in files]
