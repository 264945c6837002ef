"""What upmu-adm shows and does with the queue beyond files: list's columns, rem's offer
to delete queued files (carried out by save), status with injected probes, completion
of directories, queued serials and years, and the supervisorctl probe."""
from __future__ import annotations

import datetime as dt
import io
import sys
from pathlib import Path

import pytest

from qss.naming import device_path
from upmu_adm import REGISTRY, Services, ShellState, complete
from upmu_adm.app import sources_for
from upmu_adm.cli import run_script
from upmu_adm.completion import directories
from upmu_adm.services import DiskUsage, ProbeError, Program, supervisor_programs

from test_upmu_adm_commands import ORIGINAL, U1, U2
from test_upmu_adm_data import Asker, one

NOW = dt.datetime(2015, 12, 18, 9, 0, tzinfo=dt.timezone.utc)
PUSHED = dt.datetime(2015, 12, 18, 8, 57, 30, tzinfo=dt.timezone.utc)
KEPT = "its data stored in BTrDB is kept (this version of upmu-adm cannot delete stored data)"


def disk(percent: float):
    return lambda path: DiskUsage(1_000_000_000_000, int(percent * 1e10),
                                  int((100 - percent) * 1e10), percent)


def programs():
    return [Program("btrdb", "RUNNING", "pid 10, uptime 1:00:00"),
            Program("receiver", "RUNNING", "pid 11, uptime 1:00:00"),
            Program("sync2q", "FATAL", "Exited too quickly (process log may have details)")]


@pytest.fixture
def state(tmp_path: Path):
    cfg = tmp_path / "upmuconfig.ini"
    cfg.write_text(ORIGINAL)
    svc = Services(queue_url=f"sqlite:///{tmp_path}/queue.db", srv=str(tmp_path),
                   disk_usage=disk(42.0), supervisor=programs, now=lambda: NOW,
                   cwd=lambda: str(tmp_path))
    st = ShellState.load(str(cfg), str(tmp_path / "backupconfig.ini"), svc)
    yield st
    st.close()


@pytest.fixture
def queue(state):
    q = state.services.queue()
    q.put("P3112234", device_path("P3112234", NOW - dt.timedelta(hours=1)), b"a" * 1000,
          time_received=PUSHED - dt.timedelta(minutes=1))
    q.put("P3112234", device_path("P3112234", NOW - dt.timedelta(minutes=59)), b"b" * 2000,
          time_received=PUSHED)
    q.mark_synced(next(iter(q.files("P3112234"))))
    q.put("P3009999", device_path("P3009999", NOW), b"c" * 500, time_received=PUSHED)
    return q


# -- list ----------------------------------------------------------------------------------

def test_list_shows_last_file_received_and_the_unsynced_backlog(state, queue):
    assert one(state, "list").text == (
        "IP            SERIAL    ALIAS  MODE      STREAMS  LAST FILE RECEIVED    "
        "UNSYNCED BACKLOG\n"
        "------------  --------  -----  --------  -------  --------------------  "
        "----------------\n"
        "192.168.1.24  P3112233  uPMU1  base      13       never                 none\n"
        "192.168.1.25  P3112234  uPMU2  extended  19       2015-12-18 08:57 UTC  "
        "1 file (2 KB)\n"
        f"2 uPMUs in {state.path}\n"
        "Queued files of serial numbers not in the list: P3009999 1 file (500 bytes), 1 "
        "unsynced (delete them with delbackup SERIAL all)")


def test_list_without_a_queue_shows_the_table_and_says_why(tmp_path):
    cfg = tmp_path / "u.ini"
    cfg.write_text(ORIGINAL)
    st = ShellState.load(str(cfg), str(tmp_path / "b.ini"),
                         Services(queue_url=f"sqlite:///{tmp_path}/nodrive/queue.db"))
    lines = one(st, "list").text.splitlines()
    assert lines[0].split() == ["IP", "SERIAL", "ALIAS", "MODE", "STREAMS"]
    assert lines[-1] == (f"(last file received and backlog not shown: queue "
                         f"sqlite:///{tmp_path}/nodrive/queue.db: directory "
                         f"{tmp_path}/nodrive does not exist; mount the data drive or "
                         f"create the directory)")


# -- rem -----------------------------------------------------------------------------------

def test_rem_offers_to_delete_queued_files_and_save_deletes_them(state, queue):
    asker = Asker(answers=[True, True])
    reply = one(state, "rem uPMU2", asker)
    offer = asker.asked[1]
    assert (offer.word, offer.unattended) == ("yes", False)
    assert offer.question == (
        f"{U2} has 2 files (3 KB) queued.\n"
        f"WARNING: 1 file (2 KB) of them are not synced to BTrDB yet: deleting them loses "
        f"their data.\n"
        f"Either way {KEPT}.\n"
        f"Delete its queued files when you save the removal?")
    assert reply.text == (f"Removed {U2} - not saved yet; type save to apply.\n"
                          f"Its queued files will be deleted when you save; {KEPT}")
    assert len(list(queue.files("P3112234"))) == 2            # nothing deleted yet
    saved = one(state, "save")
    assert saved.ok
    assert saved.text.splitlines()[-1] == (f"Deleted the queued files of {U2}: 2 files "
                                           f"(3 KB); {KEPT}.")
    assert queue.serials() == ["P3009999"]
    assert one(state, "save").text == "Nothing to save - no unsaved changes"


def test_rem_without_yes_keeps_the_files(state, queue):
    reply = one(state, "rem uPMU2", Asker(answers=[True, False]))
    assert reply.text.endswith(f"Its queued files (2 files, 3 KB) are kept; {KEPT}")
    one(state, "save")
    assert len(list(queue.files("P3112234"))) == 2


def test_rem_then_add_again_keeps_the_files(state, queue):
    one(state, "rem uPMU2", Asker(answers=[True, True]))
    one(state, "add 192.168.1.99 P3112234 again true")
    saved = one(state, "save")
    assert "Kept the queued files of P3112234: it is in the uPMU list again" in saved.text
    assert len(list(queue.files("P3112234"))) == 2


def test_reload_discards_a_pending_deletion(state, queue):
    one(state, "rem uPMU2", Asker(answers=[True, True]))
    assert state.purges == {"P3112234": U2}
    one(state, "reload", Asker(answers=[True]))
    assert not state.purges
    assert "Deleted" not in one(state, "save").text
    assert len(list(queue.files("P3112234"))) == 2


def test_rem_of_a_upmu_without_files(state, queue):
    reply = one(state, "rem uPMU1", Asker(answers=[True]))
    assert reply.text == (f"Removed {U1} - not saved yet; type save to apply.\n"
                          f"It has no queued files; {KEPT}")


def test_yes_in_a_script_never_deletes_queued_files(state, queue):
    out, err = io.StringIO(), io.StringIO()
    assert run_script(state, ["rem uPMU2; save"], out=out, err=err, assume_yes=True) == 0
    assert ("Delete its queued files when you save the removal? (type yes to confirm) no "
            "(--yes does not answer this; type it in the shell)") in out.getvalue()
    assert len(list(queue.files("P3112234"))) == 2
    assert "Deleted" not in out.getvalue()


# -- status --------------------------------------------------------------------------------

def test_status_shows_flow_disk_and_programs(state, queue):
    assert one(state, "status").text.splitlines() == [
        "UPMU                            LAST RECEIVED (UTC)  AGO    UNSYNCED BACKLOG    "
        "QUEUED",
        "------------------------------  -------------------  -----  ------------------  "
        "------------------",
        f"{U1}  never                       none                none",
        f"{U2}  2015-12-18 08:57:30  2 min  1 file (2 KB)       2 files (3 KB)",
        "P3009999 (not in the list)      2015-12-18 08:57:30  2 min  1 file (500 bytes)  "
        "1 file (500 bytes)",
        f"Queue {queue.url}: 3 files (3.5 KB), 2 files (2.5 KB) not synced yet",
        f"Data drive ({state.services.srv}): 42.0 % used, 580 GB free of 1 TB; the "
        f"receiver refuses files from 98 %",
        "Supervisor programs:",
        "  PROGRAM   STATE    DETAILS",
        "  --------  -------  -------------------------------------------------",
        "  btrdb     RUNNING  pid 10, uptime 1:00:00",
        "  receiver  RUNNING  pid 11, uptime 1:00:00",
        "  sync2q    FATAL    Exited too quickly (process log may have details)",
        "warning: not running: sync2q; sudo supervisorctl tail sync2q shows why"]


@pytest.mark.parametrize("percent, line", [
    (98.0, "WARNING: the data drive is FULL: the receiver is refusing files (the uPMUs "
           "keep them and retry); free space with clean_synced"),
    (94.0, "warning: the data drive is nearly full; free space with clean_synced"),
])
def test_status_warns_about_a_full_disk(state, queue, percent, line):
    state.services.disk_usage = disk(percent)
    assert line in one(state, "status").text.splitlines()


def test_status_when_probes_cannot_tell(tmp_path):
    def unreachable():
        raise ProbeError("unix:///var/run/supervisor.sock no such file")

    def no_disk(path):
        raise ProbeError(f"cannot measure {path}: No such file or directory")

    cfg = tmp_path / "u.ini"
    cfg.write_text(ORIGINAL)
    st = ShellState.load(str(cfg), str(tmp_path / "b.ini"), Services(
        queue_url=f"sqlite:///{tmp_path}/x/q.db", srv="/nowhere", disk_usage=no_disk,
        supervisor=unreachable))
    assert one(st, "status").text.splitlines() == [
        f"Queue: cannot be read: queue sqlite:///{tmp_path}/x/q.db: directory {tmp_path}/x "
        f"does not exist; mount the data drive or create the directory",
        "Data drive: cannot measure /nowhere: No such file or directory",
        "Supervisor: not reachable (unix:///var/run/supervisor.sock no such file); sudo "
        "supervisorctl status shows the programs"]


def test_supervisor_probe_reads_supervisorctl_output():
    fake = (sys.executable, "-c", "print('btrdb    RUNNING   pid 1, uptime 0:00:05');"
                                  "print('sync2q   STOPPED   Not started'); raise "
                                  "SystemExit(3)")
    assert supervisor_programs(fake) == [Program("btrdb", "RUNNING", "pid 1, uptime 0:00:05"),
                                         Program("sync2q", "STOPPED", "Not started")]
    down = (sys.executable, "-c", "print('unix:///run/supervisor.sock refused connection');"
                                  "raise SystemExit(4)")
    with pytest.raises(ProbeError, match=r"^unix:///run/supervisor.sock refused connection$"):
        supervisor_programs(down)
    with pytest.raises(ProbeError, match="is not installed"):
        supervisor_programs(("no-such-supervisorctl-here", "status"))


# -- completion ----------------------------------------------------------------------------

def texts(line: str, st) -> list[str]:
    return [c.text for c in complete(line, REGISTRY, st.upmus, sources_for(st))]


def test_completion_of_directories(state, tmp_path):
    for d in ("media/external", "media/extra", "media/.hidden"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "media/file.dat").write_bytes(b"")
    assert texts("importdat med", state) == ["media/"]
    assert texts("importdat media/ex", state) == ["media/external/", "media/extra/"]
    assert texts(f"exportdat {tmp_path}/media/", state) == [f"{tmp_path}/media/external/",
                                                             f"{tmp_path}/media/extra/"]
    assert texts("importdat media/.", state) == ["media/.hidden/"]
    assert directories("x/", cwd="/nonexistent") == []


def test_completion_after_the_directory_of_importdat(state):
    assert texts("importdat d ", state)[-1] == "--recursive"
    assert texts("importdat d uPMU1 --r", state) == ["--recursive"]


def test_completion_of_queued_serials_and_years(state, queue):
    assert "P3009999" in texts("delbackup ", state)
    assert texts("delbackup P30", state) == ["P3009999"]
    assert texts("delbackup uPMU2 ", state) == ["2015", "all"]
    assert texts("exportdat d p3009999 2", state) == ["2015"]
    assert texts("delbackup uPMU1 ", state) == ["all"]


def test_completion_does_not_retry_a_queue_that_failed(tmp_path):
    opened = []

    def failing(url):
        opened.append(url)
        from qss.queue import QueueError
        raise QueueError("down")

    cfg = tmp_path / "u.ini"
    cfg.write_text(ORIGINAL)
    st = ShellState.load(str(cfg), str(tmp_path / "b.ini"),
                         Services(queue_url="sqlite:////x/q.db", open_queue=failing))
    assert texts("delbackup P3", st) == ["P3112233", "P3112234"]
    assert texts("delbackup P3", st) == ["P3112233", "P3112234"]
    assert len(opened) == 1


def test_the_queue_is_closed_with_the_state(tmp_path):
    closed = []

    class FakeQueue:
        url = "fake://"

        def stats(self):
            return {}

        def close(self):
            closed.append(True)

    cfg = tmp_path / "u.ini"
    cfg.write_text(ORIGINAL)
    st = ShellState.load(str(cfg), str(tmp_path / "b.ini"),
                         Services(queue_url="fake://", open_queue=lambda url: FakeQueue()))
    one(st, "list")
    st.close()
    st.close()
    assert closed == [True]
