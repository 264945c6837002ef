"""Load, end to end (slow): 100 simulated uPMUs push into the whole appliance for two
minutes. Nothing is refused (only an unknown serial or a full disk are refused, by
design, and neither applies), receiver and sync2q keep up (the devices' files do not
pile up on them, and sync2q drains what is queued), every point is in BTrDB exactly
once, and every program's memory stays bounded.
"""
from __future__ import annotations

import pytest

from appliance_support import PROGRAMS, Appliance, run_load

MB = 2**20


@pytest.mark.slow
def test_a_hundred_devices_for_two_minutes_are_taken_in_and_synced_in_bounded_memory():
    with Appliance(100) as app:
        # Each device: a real one-minute extended file (551,520 bytes) every 10 s, six
        # times a real device's pace: 10 files/s, 1.37 M points/s in all (a twentieth of
        # the receiver's and a fifth of sync2q's throughput in their benchmarks, so the
        # margin holds on a busy two-core machine).
        figures, rss = run_load(
            app, duration=120, interval=10.0)
        app.wait_running(list(PROGRAMS))
    assert app.leftovers == [], f"processes left after shutdown: {app.leftovers}"

    # Nothing refused and no connection lost: every file was taken at the first try.
    assert (figures["refused"], figures["unanswered"], figures["connect_failures"]) == \
        (0, 0, 0), figures
    # 100 devices x (120 s / 10 s) files, give or take the file each was making.
    assert figures["files_acknowledged"] >= 100 * 10, figures
    # The receiver kept up: no device has more than the file it just made waiting.
    assert figures["waiting_at_end"] <= 100, figures
    # sync2q kept up: everything queued was synced (wait_synced), exactly once.
    assert figures["files_checked"] >= figures["files_acknowledged"]

    # Memory: generous bounds that catch a leak or an unbounded buffer, not a few MB.
    # Each program is one Python process; numpy, grpc, pyarrow and the btrdb client take
    # 60-150 MB at rest. On top of that, by design:
    # - btrdb: SQLite's page cache, 64 MiB per connection (tsdb/db.py), one
    #   connection per thread: 8 gRPC workers, REST, the checkpointer (~640 MiB when all
    #   are full), the decoded statistics blocks (<= ~50 MB) and last chunks of 256
    #   streams (<= ~50 MB): about 900 MB at most; bound 1 GiB;
    # - sync2q: up to three batches of six one-minute files read ahead (3 x 6 x 19
    #   streams x 7,200 points x 16 bytes ~ 40 MB) plus two in flight: bound 400 MB;
    # - receiver: one 551,520-byte file per connection being received (100 ~ 55 MB):
    #   bound 400 MB;
    # - qss-sim: one file per device (100 x 0.55 MB): bound 400 MB.
    # Two minutes of data (1,200 files, 660 MB; 164 M points, 2.6 GB as float64 pairs)
    # kept anywhere would exceed every bound.
    bounds = {"btrdb": 1024 * MB, "receiver": 400 * MB, "sync2q": 400 * MB,
              "qss-sim": 400 * MB}
    for name, bound in bounds.items():
        assert rss.samples.get(name), f"no RSS sample of {name}"
        assert rss.peak(name) < bound, (name, figures["peak_rss_mb"])
    # And memory does not keep growing: once its pools and buffers filled up, a program's
    # last third of the run peaks at most 50 % (plus 64 MB of allocator slack) above its
    # middle third. Not for btrdb: its page caches (above) may legitimately still be
    # filling after two minutes; its bound is the check.
    third = rss.duration / 3
    for name in ("receiver", "sync2q", "qss-sim"):
        middle, last = rss.peak(name, third, 2 * third), rss.peak(name, 2 * third)
        assert last <= 1.5 * middle + 64 * MB, (name, middle / MB, last / MB)
