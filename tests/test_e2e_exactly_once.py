"""End to end: simulated uPMUs push over the real protocol into the whole appliance
(btrdb, receiver, sync2q under a real supervisord, registered with upmu-adm), and every
point of every acknowledged file is in BTrDB exactly once, read through the official
client and compared with what qss.dat parses from the devices' files.
"""
from __future__ import annotations

import pytest

from appliance_support import Appliance, Push, check_exactly_once


@pytest.fixture
def appliance(request):
    devices = getattr(request, "param", 4)
    with Appliance(devices) as app:
        yield app
    assert app.leftovers == [], f"processes left after shutdown: {app.leftovers}"


def test_every_point_of_every_acknowledged_file_is_in_btrdb_exactly_once(appliance):
    # 4 devices x 75 files of 10 s (extended), back to back: 300 files, 6.84 M points.
    push = Push(tuple(appliance.serials), files=75, file_seconds=10)
    sim = appliance.sim(push, "--duration", "240")
    code, summary = sim.finish(timeout=300)
    totals = summary["totals"]
    assert code == 0 and summary["stopped"] == "every file acknowledged", summary
    assert (totals["acknowledged"], totals["waiting"], totals["refused"]) == (300, 0, 0)
    assert totals["reply_ms"]["count"] == totals["sent"] == 300      # no resend needed
    acked = {d["serial"]: d["acknowledged"] for d in summary["devices"]}
    appliance.wait_synced(acked, timeout=240)
    checked = check_exactly_once(appliance, push, acked)
    assert checked == {"files": 300, "points": 300 * push.points_per_file()}
