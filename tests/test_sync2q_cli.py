"""qss-sync2q's command line: refusals an operator can act on."""
from __future__ import annotations

import os
import subprocess
import sys


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
