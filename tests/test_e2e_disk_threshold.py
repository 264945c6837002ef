"""The receiver's disk threshold, end to end: with ``[receiver] max_disk_percent`` below
the data disk's current use, the appliance refuses every file (four zero bytes) and the
simulated uPMUs keep theirs and retry; once the threshold is raised (qss.ini, then
``supervisorctl restart receiver``: the receiver reads qss.ini at start) they get
through, and every point of every file is in BTrDB exactly once.
"""
from __future__ import annotations

import psutil
import pytest

from appliance_support import Appliance, Push, check_exactly_once


def test_over_the_disk_threshold_devices_keep_their_files_until_it_is_raised():
    with Appliance(2, receiver={"max_disk_percent": "1"}) as app:
        used = psutil.disk_usage(str(app.root / "ssd/srv")).percent
        if used < 1:
            pytest.skip(f"the disk is only {used}% full: cannot be over a 1% threshold")
        push = Push(tuple(app.serials), files=10, file_seconds=10)
        sim = app.sim(push, "--retry", "0.2", "--duration", "240")
        refused = sim.wait_until(lambda t: t.get("refused", 0) >= 6, "6 refusals")
        assert refused["acknowledged"] == 0 and refused["waiting"] == 20
        assert app.queued(app.serials) == {s: (0, 0) for s in app.serials}
        log = app.demo.log("receiver").read_text()
        assert "at or above the limit of 1%" in log, log[-2000:]

        app.set_ini("receiver", "max_disk_percent", "100")
        app.restart("receiver")
        code, summary = sim.finish(timeout=240)
        assert code == 0 and summary["stopped"] == "every file acknowledged", summary
        by_serial = {d["serial"]: d for d in summary["devices"]}
        assert all(d["refused"] >= 1 and d["acknowledged"] == 10 and d["waiting"] == 0
                   for d in by_serial.values()), by_serial
        acked = {s: d["acknowledged"] for s, d in by_serial.items()}
        app.wait_synced(acked, timeout=120)
        assert check_exactly_once(app, push, acked) == {
            "files": 20, "points": 20 * push.points_per_file()}
    assert app.leftovers == [], f"processes left after shutdown: {app.leftovers}"
