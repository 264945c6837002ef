"""sync2q and BTrDB starting together, as after ``supervisorctl start all`` (or ``restart
all``, or a boot): supervisord starts btrdb first (priorities), but starts every program
at once, so sync2q may find nothing listening yet. It waits with one short line, says
so again at most once a minute, and goes on once BTrDB answers.
"""
from __future__ import annotations

import datetime as dt
import getpass
import grp
import logging
import os

import grpc
import pytest
from btrdb import exceptions as bx

from installer import files
from installer.components import Layout, programs, qss_files
from qss.btrdbclient import BtrdbOutage, describe_error
from qss.settings import QueueSettings, Settings
from test_sync2q_support import (Sync2q, device_files, reserve_port, site,  # noqa: F401
                                 start_btrdb_on)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

REFUSED = ("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:4410: "
           "Failed to connect to remote host: Connection refused")


class _Unavailable(grpc.RpcError):
    """What the client's Info call raises when nothing listens (an _InactiveRpcError)."""

    def __init__(self, details: str = REFUSED, code=grpc.StatusCode.UNAVAILABLE):
        self._details, self._code = details, code

    def code(self):
        return self._code

    def details(self):
        return self._details

    def __str__(self):
        return (f'<_InactiveRpcError of RPC that terminated with:\n\tstatus = {self._code}\n'
                f'\tdetails = "{self._details}"\n\tdebug_error_string = "UNKNOWN:Error '
                f'received from peer {{grpc_status:14, grpc_message:"{self._details}"}}"\n>')


def _client_error(rpc: grpc.RpcError) -> BaseException:
    """The client's own error, raised while handling the gRPC one (btrdb.conn.BTrDB)."""
    try:
        try:
            raise rpc
        except Exception as err:
            raise bx.BTrDBError(f"Could not connect to the database, error message: {err}")
    except bx.BTrDBError as exc:
        return exc


@pytest.mark.parametrize("exc, reason", [
    (_client_error(_Unavailable()), "connection refused"),
    (_Unavailable(), "connection refused"),
    (_client_error(_Unavailable("DNS resolution failed for nosuch:4410: C-ares status is "
                                "not ARES_SUCCESS qtype=A name=nosuch is_balancer=0: Domain "
                                "name not found")), "domain name not found"),
    (_Unavailable("Deadline Exceeded", grpc.StatusCode.DEADLINE_EXCEEDED),
     "no answer within the deadline"),
    (_Unavailable("bad", grpc.StatusCode.INTERNAL), "gRPC INTERNAL: bad"),
    (bx.BTRDBServerError("426: disk full"), "BTRDBServerError: 426: disk full"),
])
def test_a_client_error_is_one_short_reason(exc, reason):
    assert describe_error(exc) == reason


def test_waiting_for_btrdb_is_one_line_a_minute_at_most(caplog):
    now = [100.0]
    outage = BtrdbOutage(["127.0.0.1:4410"], clock=lambda: now[0])
    with caplog.at_level(logging.DEBUG, logger="qss.btrdbclient"):
        outage.succeeded()
        for _ in range(50):                    # 125 s of retries every 2.5 s
            outage.failed("connection refused", "retrying")
            now[0] += 2.5
        outage.succeeded()
        now[0] += 10
        outage.failed("connection refused", "retrying")      # another outage: said too
        now[0] += 1
        outage.succeeded()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    assert lines == [
        ("WARNING", "waiting for BTrDB at 127.0.0.1:4410 (connection refused); retrying"),
        ("WARNING", "still waiting for BTrDB at 127.0.0.1:4410 after 60 s (connection "
                    "refused); retrying"),
        ("WARNING", "still waiting for BTrDB at 127.0.0.1:4410 after 2 min (connection "
                    "refused); retrying"),
        ("INFO", "BTrDB at 127.0.0.1:4410: available again after 125.0 s (50 failed "
                 "attempts); resuming"),
        ("WARNING", "waiting for BTrDB at 127.0.0.1:4410 (connection refused); retrying"),
        ("INFO", "BTrDB at 127.0.0.1:4410: available again after 1.0 s (1 failed "
                 "attempts); resuming")]


@pytest.mark.parametrize("queue, want", [
    ("sqlite:////ssd/srv/queue.db", ["btrdb", "receiver", "sync2q", "distil", "mr-plotter",
                                     "metadata"]),
    ("mongodb://localhost:27017", ["mongo", "btrdb", "receiver", "sync2q", "distil",
                                   "mr-plotter", "metadata"]),
])
def test_supervisord_starts_btrdb_before_the_programs_that_use_it(tmp_path, queue, want):
    """supervisord's own reading of the appliance's programs: the start order, by
    priority (``start all`` and a boot start them in it; stopping is the reverse)."""
    from supervisor.options import ServerOptions
    user = getpass.getuser()
    layout = Layout(bindir="/opt/qss/current/bin", prefix=str(tmp_path), user=user,
                    group=grp.getgrgid(os.getegid()).gr_name, operator=user,
                    socket_owner=user)
    settings = Settings(queue=QueueSettings(queue))
    specs = [s for s in qss_files(settings, layout) if s.path.startswith("/etc/supervisor/")]
    list(files.apply(files.plan(specs, tmp_path), dt.datetime.now()))
    for d in ("var/log/supervisor", "var/run"):
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
    options = ServerOptions()
    options.realize(["-c", str(tmp_path / "etc/supervisor/supervisord.conf")])
    assert [g.name for g in sorted(options.process_group_configs)] == want
    assert [p.name for p in programs(settings, layout)] == want


def test_sync2q_started_before_btrdb_waits_with_one_short_line(site, tmp_path):
    port = reserve_port()
    site.add_upmu("P3400001", "early", extended=True)
    site.put("P3400001", device_files("P3400001", 2))
    btrdb = None
    try:
        with Sync2q(site.args(f"127.0.0.1:{port}")) as proc:
            proc.wait_for(r"waiting for BTrDB")
            btrdb = start_btrdb_on(tmp_path / "data", port)
            proc.wait_for(r"available again after")
            proc.wait_for(r"synced: \d+ points", n=2)
            assert proc.stop() == 0, proc.log
        waiting = [line.partition(" WARNING ")[2] for line in proc.lines
                   if " WARNING " in line]
        assert waiting == [f"waiting for BTrDB at 127.0.0.1:{port} (connection refused); "
                           f"retrying"], proc.log
        assert "_InactiveRpcError" not in proc.log and "debug_error_string" not in proc.log
        assert proc.count(rf"INFO BTrDB at 127\.0\.0\.1:{port}: available again after "
                          rf"[\d.]+ s \(\d+ failed attempts\); resuming") == 1, proc.log
    finally:
        if btrdb is not None:
            btrdb.stop()
