"""Which appliance qss-get's data actions work on (installer.appliance): ``$QSS_CONFIG``
and ``--settings`` as every command of the suite reads its settings, ``--root`` never
doubling a path already inside the root (the demo's qss.ini names absolute paths), a
settings file given to ``--config`` pointed at ``--settings``, an unknown option named
even without an action, and a refusal before the question (``--newdb``, ``--restore``).

The appliances here are folders laid out as the demo's is (absolute paths in their
qss.ini); the services and the disk probes are injected, the queues are real SQLite.
"""
from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path

import pytest

from installer.cli import main
from installer.environment import Environment
from installer.hooks import DataTools
from qss.cli import ExitStatus, run
from qss.queue import open_queue

NOW = dt.datetime(2024, 5, 6, 7, 8, 9)
ACTIONS_LINE = ("choose an action: -i, -u, -p, --rollback, --config, --backup, --restore, "
                "--data-import, --indexes, --mount-ddrive, --newdb, --status, "
                "--clean-synced, --version or --help")


def _no_tools(argv):
    raise AssertionError(f"a test ran a system tool: {argv}")


class Services:
    """supervisorctl as a test wants it: records calls; answers or not."""

    def __init__(self, answers: bool = True):
        self.answers = answers
        self.calls: list[str] = []

    def reachable(self):
        self.calls.append("reachable")
        return self.answers

    def stop_all(self):
        self.calls.append("stop")

    def start_all(self):
        self.calls.append("start")


def demo_like(folder: Path) -> Path:
    """An appliance in ``folder`` as the demo lays it out: its qss.ini names absolute
    paths inside the folder. Returns the qss.ini."""
    for d in ("etc/qss", "ssd/data", "ssd/srv", "home/manager"):
        (folder / d).mkdir(parents=True, exist_ok=True)
    ini = folder / "etc/qss/qss.ini"
    ini.write_text(f"[paths]\nupmuconfig = {folder}/home/manager/upmuconfig.ini\n"
                   f"backupconfig = {folder}/home/manager/backupconfig.ini\n"
                   f"data = {folder}/ssd/data\nsrv = {folder}/ssd/srv\n"
                   f"[queue]\nurl = sqlite:///{folder}/ssd/srv/queue.db\n")
    (folder / "home/manager/upmuconfig.ini").write_text("")
    with open_queue(f"sqlite:///{folder}/ssd/srv/queue.db") as q:
        q.put("P3001276", "/root/upmu_data/P3001276_2024-01-01-00-00-00.dat", b"x" * 100)
    return ini


def make_env(stdin: str = "", environ: dict | None = None, services=None) -> Environment:
    return Environment(stdin=io.StringIO(stdin), stdout=io.StringIO(), stderr=io.StringIO(),
                       clock=lambda: NOW, run=_no_tools, environ=environ or {},
                       data_tools=DataTools(services=services))


def qss_get(env: Environment, *args: str) -> tuple[int, str]:
    """qss-get in-process as its console script runs it: (status, standard output)."""
    return run(lambda argv: main(argv, env), list(args), prog="qss-get"), \
        env.stdout.getvalue()


# -- which appliance ----------------------------------------------------------------------

def test_data_actions_read_QSS_CONFIG_as_every_command_does(tmp_path):
    ini = demo_like(tmp_path / "demo")
    env = make_env(environ={"QSS_CONFIG": str(ini)})
    assert qss_get(env, "--indexes") == (
        0, f"all indexes of the queue sqlite:///{tmp_path}/demo/ssd/srv/queue.db exist; "
           f"nothing to do\n")


def test_settings_names_the_file_and_wins_over_QSS_CONFIG(tmp_path, monkeypatch):
    demo_like(tmp_path / "demo")
    monkeypatch.chdir(tmp_path)
    env = make_env(environ={"QSS_CONFIG": str(tmp_path / "elsewhere.ini")})
    assert qss_get(env, "--indexes", "--settings", "demo/etc/qss/qss.ini") == (
        0, f"all indexes of the queue sqlite:///{tmp_path}/demo/ssd/srv/queue.db exist; "
           f"nothing to do\n")


def test_root_never_prefixes_a_path_already_inside_it(tmp_path, capsys):
    demo_like(tmp_path / "demo")
    (tmp_path / "demo/ssd/srv/queue.db").unlink()
    # Under --root the machine's $QSS_CONFIG is not that root's: ignored.
    env = make_env(environ={"QSS_CONFIG": str(tmp_path / "elsewhere.ini")})
    status, out = qss_get(env, "--indexes", "--root", str(tmp_path / "demo"))
    assert (status, out) == (1, "")
    assert capsys.readouterr().err == (
        f"qss-get: error: no queue at {tmp_path}/demo/ssd/srv/queue.db ([queue] url); "
        f"nothing to index (is the data drive mounted?)\n")


def test_backup_on_QSS_CONFIG_keeps_that_settings_file(tmp_path):
    ini = demo_like(tmp_path / "demo")
    (tmp_path / "usb").mkdir()
    env = make_env(environ={"QSS_CONFIG": str(ini)})
    env.data_tools.disk_free = lambda path: 10**12
    status, out = qss_get(env, "--backup", str(tmp_path / "usb"))
    assert status == 0, env.stderr.getvalue()
    backup = tmp_path / "usb/qss-backup-20240506T070809"
    assert (backup / "config/qss.ini").read_bytes() == ini.read_bytes()
    listed = sorted(line.split("  ")[1] for line in
                    (backup / "MANIFEST.sha256").read_text().splitlines())
    # The queue's one file lives in a data segment beside queue.db, which goes with it.
    assert listed[:3] == ["config/qss.ini", "config/upmuconfig.ini", "srv/queue.db"]
    assert len(listed) == 4 and re.fullmatch(r"srv/queue\.db\.data/[^/]+\.seg", listed[3])


def test_a_missing_settings_file_is_one_line(tmp_path, capsys):
    env = make_env(environ={"QSS_CONFIG": str(tmp_path / "nope.ini")})
    assert qss_get(env, "--indexes") == (1, "")
    assert capsys.readouterr().err == (f"qss-get: error: {tmp_path}/nope.ini: no such "
                                       f"settings file (named by $QSS_CONFIG)\n")
    assert qss_get(make_env(), "--status", "--settings", str(tmp_path / "nope.ini"))[0] \
        == ExitStatus.USAGE
    assert capsys.readouterr().err == (f"qss-get: error: --settings "
                                       f"'{tmp_path}/nope.ini': no such file\n")


def test_settings_goes_with_the_data_actions_only(tmp_path, capsys):
    ini = demo_like(tmp_path)
    status, _ = qss_get(make_env(), "--config", "qss", "--root", str(tmp_path),
                        "--settings", str(ini))
    assert status == ExitStatus.USAGE
    assert capsys.readouterr().err == (
        "qss-get: error: --settings goes with the data actions (--backup, --restore, "
        "--indexes, --newdb, --status, --clean-synced), not --config\n")


def test_a_settings_file_given_to_config_points_at_settings(capsys):
    assert main(["--config", "etc/qss/qss.ini"]) == ExitStatus.USAGE
    assert capsys.readouterr().err.splitlines()[1] == (
        "qss-get: error: argument --config: invalid choice: 'etc/qss/qss.ini' (choose from "
        "'qss', 'nic', 'shorewall', 'apcupsd', 'all'); a settings file goes with --settings "
        "(e.g. qss-get --status --settings etc/qss/qss.ini)")


# -- an unknown option --------------------------------------------------------------------

@pytest.mark.parametrize("argv, error", [
    (["--bogus"], f"qss-get: error: unrecognised option '--bogus'; {ACTIONS_LINE}"),
    (["--bogus=1", "-x", "--ye"],       # --ye: an abbreviation of --yes
     f"qss-get: error: unrecognised options '--bogus', '-x'; {ACTIONS_LINE}"),
])
def test_an_unknown_option_is_named_first(capsys, argv, error):
    assert main(argv) == ExitStatus.USAGE
    assert capsys.readouterr().err.splitlines() == [
        "usage: qss-get ACTION [OPTIONS]", error,
        "(run 'qss-get --help' for the actions and options)"]


# -- a refusal comes before the question ----------------------------------------------------

@pytest.mark.parametrize("action", ["--newdb", "--restore"])
def test_a_running_server_is_refused_before_the_question(tmp_path, capsys, action):
    from installer.backup import MANIFEST
    from tsdb.testing import running
    ini = demo_like(tmp_path / "demo")
    backup = tmp_path / "backup"
    (backup / "srv").mkdir(parents=True)
    (backup / "srv/x").write_text("x")
    (backup / MANIFEST).write_text(
        "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881  srv/x\n")
    services = Services(answers=False)          # supervisor cannot be asked
    env = make_env("y\n", {"QSS_CONFIG": str(ini)}, services)
    args = [action] + ([str(backup)] if action == "--restore" else [])
    with running(tmp_path / "demo/ssd/data") as server:
        status, out = qss_get(env, *args)
        pid = server.proc.pid
    assert status == 1
    assert "[y/N]" not in out
    assert capsys.readouterr().err == (
        f"qss-get: error: the BTrDB server (qss-btrdb) is still running (pid {pid} holds "
        f"{tmp_path}/demo/ssd/data/qss-btrdb.lock): stop it first (sudo supervisorctl stop "
        f"all); nothing was changed\n")
    assert services.calls == ["reachable"]
    assert env.stdin.read() == "y\n"            # the answer was never read


def test_with_supervisor_answering_the_question_comes_first(tmp_path):
    ini = demo_like(tmp_path / "demo")
    services = Services(answers=True)
    env = make_env("n\n", {"QSS_CONFIG": str(ini)}, services)
    status, out = qss_get(env, "--newdb")
    assert status == 1
    assert "Delete the database and create a new one? [y/N] n\n" in out
    assert services.calls == ["reachable"]


def test_newdb_deletes_the_queue_its_stopped_services_closed(tmp_path):
    """Stopping the services closes the queue, and SQLite removes its -wal: what was
    listed before the question is no longer all there."""
    ini = demo_like(tmp_path / "demo")
    wal = tmp_path / "demo/ssd/srv/queue.db-wal"
    wal.write_bytes(b"")

    class Closing(Services):
        def stop_all(self):
            super().stop_all()
            wal.unlink()
    services = Closing()
    env = make_env("y\n", {"QSS_CONFIG": str(ini)}, services)
    status, out = qss_get(env, "--newdb")
    assert status == 0, env.stderr.getvalue()
    assert services.calls == ["reachable", "stop", "start"]
    assert (f"deleted   queue.db, queue.db.data in {tmp_path}/demo/ssd/srv (" in out)
    with open_queue(f"sqlite:///{tmp_path}/demo/ssd/srv/queue.db") as q:
        assert q.serials() == []


@pytest.mark.parametrize("environ, chown", [({}, True), ({"QSS_CONFIG": "/x/qss.ini"}, False)])
def test_restored_files_go_to_the_service_user_only_on_the_machines_own_settings(
        environ, chown):
    """The demo's folder (its settings named by $QSS_CONFIG) keeps its owner: its services
    run as the user who started it, who may not hand files to another user."""
    from installer.services import tools_for
    env = Environment(environ=environ, run=_no_tools)
    assert tools_for(env).chown is chown
