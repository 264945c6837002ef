"""qss-get --status (--watch) and --clean-synced, into a temporary root with injected
disk and supervisor probes, a fixed clock and a sleep that never waits: the report is
upmu-adm status's, the clean-up is clean_synced's."""
from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest

from installer.environment import Environment
from qss.naming import device_path
from qss.distilstate import Backlog, SqliteState
from qss.queue import open_queue
from qss.status import CLEAR, DiskUsage, ProbeError, Program
from upmu_adm import Services, ShellState

from test_qss_get_data import make_env, make_root, qss_get, queue_path
from test_upmu_adm_commands import ORIGINAL, U1, U2
from test_upmu_adm_data import one

NOW = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)


def disk(path: str) -> DiskUsage:
    return DiskUsage(1_000_000_000_000, 420_000_000_000, 580_000_000_000, 42.0)


def programs() -> list[Program]:
    return [Program("btrdb", "RUNNING", "pid 10, uptime 1:00:00"),
            Program("receiver", "RUNNING", "pid 11, uptime 1:00:00"),
            Program("sync2q", "RUNNING", "pid 12, uptime 1:00:00")]


def put(root: Path, serial: str, minute: int, size: int = 1000, synced: bool = False,
        received: dt.datetime = NOW - dt.timedelta(minutes=3)) -> None:
    with open_queue(f"sqlite:///{queue_path(root)}") as q:
        name = device_path(serial, dt.datetime(2024, 5, 6, 6, minute, tzinfo=dt.timezone.utc))
        q.put(serial, name, bytes([minute]) * size, time_received=received)
        if synced:
            q.mark_synced(q.get(serial, name))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = make_root(tmp_path)
    (root / "home/manager/upmuconfig.ini").write_text(ORIGINAL)
    put(root, "P3112234", 0, synced=True)
    put(root, "P3112234", 1, size=2000)
    put(root, "P3009999", 2, size=500)
    return root


def env_for(root: Path, stdin: str = "", **tools) -> Environment:
    env = make_env(root, stdin, disk_usage=tools.pop("disk_usage", disk),
                   programs=tools.pop("programs", programs), **tools)
    env.clock = lambda: NOW
    return env


class Ticks:
    """env.sleep for --watch: records the waits, runs ``between`` after each, and is
    Ctrl+C after ``stop_after`` waits."""

    def __init__(self, stop_after: int, between=lambda n: None):
        self.waits: list[float] = []
        self.stop_after = stop_after
        self.between = between

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if len(self.waits) >= self.stop_after:
            raise KeyboardInterrupt
        self.between(len(self.waits))


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


# -- --status ------------------------------------------------------------------------------

def test_status_is_upmu_adms_status_report_with_a_header(root):
    status, out = qss_get(env_for(root), "--status")
    assert status == 0
    adm = adm_status(root)
    lines = out.splitlines()
    assert lines[0] == "MicroPMU Quickstart Server status at 2024-05-06 07:08:09 UTC"
    assert lines[1:] == adm.splitlines()
    assert lines[1:] == [
        "UPMU                            LAST RECEIVED (UTC)  AGO    UNSYNCED BACKLOG    "
        "QUEUED",
        "------------------------------  -------------------  -----  ------------------  "
        "------------------",
        f"{U1}  never                       none                none",
        f"{U2}  2024-05-06 07:05:09  3 min  1 file (2 KB)       2 files (3 KB)",
        "P3009999 (not in the list)      2024-05-06 07:05:09  3 min  1 file (500 bytes)  "
        "1 file (500 bytes)",
        f"Queue sqlite:///{queue_path(root)}: 3 files (3.5 KB), 2 files (2.5 KB) not "
        f"synced yet",
        "Derived streams: none yet (qss-distil has not run: sudo supervisorctl status "
        "distil)",
        f"Data drive ({root}/ssd/srv): 42.0 % used, 580 GB free of 1 TB; the receiver "
        f"refuses files from 98 %",
        "Supervisor programs:",
        "  PROGRAM   STATE    DETAILS",
        "  --------  -------  ----------------------",
        "  btrdb     RUNNING  pid 10, uptime 1:00:00",
        "  receiver  RUNNING  pid 11, uptime 1:00:00",
        "  sync2q    RUNNING  pid 12, uptime 1:00:00"]


def adm_status(root: Path) -> str:
    """upmu-adm status on the same appliance (its distil state beside the queue)."""
    upmuconfig = root / "home/manager/upmuconfig.ini"
    with Services(queue_url=f"sqlite:///{queue_path(root)}", srv=str(root / "ssd/srv"),
                  distil_state=str(root / "ssd/srv/distil.db"), disk_usage=disk,
                  supervisor=programs, now=lambda: NOW) as svc:
        st = ShellState.load(str(upmuconfig), str(root / "home/manager/b.ini"), svc)
        return one(st, "status").text


def test_status_shows_how_far_behind_each_derived_stream_is_and_which_fail(root):
    state = SqliteState(str(root / "ssd/srv/distil.db"))
    at = NOW.timestamp() - 3
    state.activate({"frequency/P3112234", "power/P3112234", "mine/P3112234",
                    "frequency/P3000001"})
    state.activate({"frequency/P3112234", "power/P3112234", "mine/P3112234"})  # one gone
    state.succeeded("frequency/P3112234", 7200, now=at)
    state.measured("frequency/P3112234", Backlog(0, 0, None, at))
    state.measured("power/P3112234", Backlog(1_728_000, 125 * 10**9, 1, at))
    state.failed("mine/P3112234", "instance mine/P3112234: mine v1 failed over [2024-05-06"
                 "T06:00:00.000Z, 2024-05-06T06:10:00.000Z): ZeroDivisionError: division "
                 "by zero", now=at)
    state.failed("mine/P3112234", "the same again", now=at)
    state.measured("mine/P3112234", Backlog(86_400, 12 * 10**9, 1, at - 600))
    state.close()
    status, out = qss_get(env_for(root), "--status")
    assert status == 0
    lines = out.splitlines()
    assert lines[1:] == adm_status(root).splitlines()
    start = lines.index("Derived streams (qss-distil): 3 instances, 1 current, 1 catching "
                        "up, 1 failing")
    assert lines[start + 1:start + 8] == [
        "  INSTANCE            BEHIND   POINTS OWED  STATE                 MEASURED AGO",
        "  ------------------  -------  -----------  --------------------  ------------",
        "  frequency/P3112234  current  0            ok                    3 s",
        "  mine/P3112234       12 s     86,400       FAILING (2 in a row)  10 min",
        "  power/P3112234      2 min    1,728,000    catching up           3 s",
        "FAILING: mine/P3112234: the same again",
        "warning: no fresh figures for 1 instance(s) for over 120 s: is qss-distil "
        "running? (sudo supervisorctl status distil)"]
    assert lines[start + 8].startswith("Data drive (")


def test_status_without_a_queue_or_supervisor_says_why_and_creates_nothing(tmp_path):
    root = make_root(tmp_path)

    def unreachable():
        raise ProbeError("unix:///var/run/supervisor.sock no such file")
    status, out = qss_get(env_for(root, programs=unreachable), "--status")
    assert status == 0
    assert out.splitlines()[1:] == [
        f"Queue: cannot be read: no queue at {queue_path(root)} ([queue] url; is the data "
        f"drive mounted?)",
        "Derived streams: none yet (qss-distil has not run: sudo supervisorctl status "
        "distil)",
        f"Data drive ({root}/ssd/srv): 42.0 % used, 580 GB free of 1 TB; the receiver "
        f"refuses files from 98 %",
        "Supervisor: not reachable (unix:///var/run/supervisor.sock no such file); sudo "
        "supervisorctl status shows the programs"]
    assert not queue_path(root).exists() and not (root / "ssd/srv/distil.db").exists()


def test_status_under_root_does_not_ask_this_machines_supervisor(root):
    env = Environment(root=root, stdin=io.StringIO(), stdout=io.StringIO(),
                      stderr=io.StringIO(), clock=lambda: NOW)
    status, out = qss_get(env, "--status")
    assert status == 0
    assert out.splitlines()[-1].startswith("Supervisor: not reachable (not asked under "
                                           "--root")


def test_watch_refreshes_until_ctrl_c_and_shows_data_arriving(root):
    def arrive(n):
        put(root, "P3112233", 10 + n, size=1000, received=NOW)
    env = env_for(root)
    env.sleep = ticks = Ticks(stop_after=3, between=arrive)
    status, out = qss_get(env, "--status", "--watch", "5")
    assert status == 0 and ticks.waits == [5.0, 5.0, 5.0]
    reports = out.rstrip("\n").split("\n\n")
    assert len(reports) == 3 and CLEAR not in out
    assert all(r.startswith("MicroPMU Quickstart Server status at 2024-05-06 07:08:09 UTC, "
                            "every 5 s (Ctrl+C stops)\n") for r in reports)
    backlog = [next(line for line in r.splitlines() if line.startswith(U1))
               for r in reports]
    assert "none" in backlog[0]
    assert "1 file (1 KB)" in backlog[1] and "2 files (2 KB)" in backlog[2]


def test_watch_on_a_terminal_replaces_the_screen_and_defaults_to_2_s(root):
    env = env_for(root)
    env.stdout = Tty()
    env.sleep = ticks = Ticks(stop_after=2)
    status, _ = qss_get(env, "--status", "--watch")
    out = env.stdout.getvalue()
    assert status == 0 and ticks.waits == [2.0, 2.0]
    assert out.count(CLEAR) == 2 and out.startswith(CLEAR)


@pytest.mark.parametrize("args, message", [
    (("--version", "--watch", "5"), "qss-get: error: --watch goes with --status"),
    (("--status", "--watch", "0"), "qss-get: error: --watch 0: give the seconds"),
])
def test_watch_misuse_is_a_usage_error_in_one_line(root, capsys, args, message):
    status, out = qss_get(env_for(root), *args)
    err = capsys.readouterr().err
    assert (status, out) == (2, "")
    assert err.startswith(message) and err.count("\n") == 1


# -- --clean-synced ------------------------------------------------------------------------

def remaining(root: Path) -> dict[str, int]:
    with open_queue(f"sqlite:///{queue_path(root)}") as q:
        return {s: len(list(q.files(s))) for s in q.serials() if list(q.files(s))}


def test_clean_synced_deletes_only_synced_files_after_delete(root):
    status, out = qss_get(env_for(root, "delete\n"), "--clean-synced")
    assert status == 0
    *lines, gave = out.splitlines()
    assert lines == [
        f"Queue sqlite:///{queue_path(root)}:",
        "SERIAL    SYNCED (CAN BE DELETED)  NOT SYNCED (KEPT)",
        "P3009999  0 files                  1 file (500 bytes)",
        "P3112234  1 file (1 KB)            1 file (2 KB)",
        "1 file (1 KB) are synced: their data is stored in BTrDB, so they can be deleted; "
        "2 files (2.5 KB) not synced yet are kept.",
        "Type delete to delete them (anything else cancels): delete",
        "Deleting...",
        "Deleted 1 file (1 KB)."]
    assert gave.startswith("Gave ") and gave.endswith(" back to the file system "
                                                      f"({queue_path(root)} and its data "
                                                      f"files are now "
                                                      f"{_human(queue_size(root))}).")
    assert remaining(root) == {"P3112234": 1, "P3009999": 1}
    status, out = qss_get(env_for(root), "--clean-synced")
    assert status == 0 and out.splitlines()[-1] == (
        "No synced files to delete; 2 files (2.5 KB) not synced yet are kept.")


@pytest.mark.parametrize("answer", ["", "y\n", "yes\n", "Delete it\n"])
def test_clean_synced_anything_but_delete_deletes_nothing(root, answer):
    status, out = qss_get(env_for(root, answer), "--clean-synced")
    assert status == 1
    assert out.splitlines()[-1] == "Nothing deleted."
    assert remaining(root) == {"P3112234": 2, "P3009999": 1}


def test_clean_synced_yes_deletes_and_gives_the_space_back(tmp_path):
    root = make_root(tmp_path)
    for minute in range(40):
        put(root, "P3001276", minute, size=100_000, synced=minute < 30)
    before = queue_size(root)
    status, out = qss_get(env_for(root), "--clean-synced", "--yes")
    after = queue_size(root)
    assert status == 0
    assert "Type delete to delete them: delete (--yes)" in out
    assert "Deleted 30 files (3 MB)." in out
    assert before - after > 2_900_000           # the queue itself shrank (WAL aside)
    last = out.splitlines()[-1]
    assert last.startswith("Gave ") and last.endswith(
        f"back to the file system ({queue_path(root)} and its data files are now "
        f"{_human(after)}).")
    assert float(last.split()[1]) >= 2.9 and last.split()[2] == "MB"
    assert remaining(root) == {"P3001276": 10}


def queue_size(root: Path) -> int:
    """The queue file's size and its data segments' (the WAL aside)."""
    data = queue_path(root).with_name("queue.db.data")
    return queue_path(root).stat().st_size + sum(
        p.stat().st_size for p in (data.iterdir() if data.is_dir() else ()))


def _human(n: int) -> str:
    from installer.services import human
    return human(n)


def test_clean_synced_without_a_queue_is_one_line(tmp_path, capsys):
    root = make_root(tmp_path)
    status, out = qss_get(env_for(root), "--clean-synced", "--yes")
    assert (status, out) == (1, "")
    assert capsys.readouterr().err == (
        f"qss-get: error: no queue at {queue_path(root)} ([queue] url; is the data drive "
        f"mounted?)\n")
    assert not queue_path(root).exists()


def test_status_and_clean_synced_are_in_the_help(capsys):
    from installer.cli import main
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for text in ("--status", "--clean-synced", "--watch [SECONDS]", "upmu-adm status"):
        assert text in out
