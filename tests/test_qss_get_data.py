"""qss-get's data actions as an operator runs them: --indexes, --newdb, --data-import,
--backup/--restore and --mount-ddrive, into a temporary root with injected services and
disk probes, real SQLite queues and real qss-btrdb data directories."""
from __future__ import annotations

import dataclasses
import datetime as dt
import io
import os
import re
import sqlite3
from pathlib import Path

import mongomock
import pytest

from installer.environment import Environment
from installer.hooks import DataTools, Unreachable
from qss.cli import run
from installer.cli import main
from qss.queue import open_queue
from qss.queue.mongo import MongoQueue
from qss.settings import load_settings, render_default_ini

from test_queue_interface import _teach_mongomock_binary_size  # tests/ is on sys.path

NOW = dt.datetime(2024, 5, 6, 7, 8, 9)


def _no_tools(argv):
    raise AssertionError(f"a test ran a system tool: {argv}")


DataEnv = Environment  # data_tools carries the data actions' hooks (services, probes)


class FakeServices:
    """supervisorctl as tests want it: records calls; can be unreachable or failing."""

    def __init__(self, unreachable: bool = False):
        self.calls: list[str] = []
        self.unreachable = unreachable

    def _do(self, verb):
        self.calls.append(verb)
        if self.unreachable:
            raise Unreachable(f"supervisorctl {verb} all: unix:///var/run/supervisor.sock "
                              f"no such file")

    def stop_all(self):
        self._do("stop")

    def start_all(self):
        self._do("start")

    def reachable(self):
        return not self.unreachable


def make_root(tmp_path: Path, ini: str | None = None) -> Path:
    root = tmp_path / "root"
    for d in ("etc/qss", "ssd/data", "ssd/srv", "home/manager"):
        (root / d).mkdir(parents=True)
    (root / "etc/qss/qss.ini").write_text(ini or render_default_ini())
    (root / "home/manager/upmuconfig.ini").write_text("[P3001276]\nip = 10.0.0.5\n")
    (root / "home/manager/backupconfig.ini").write_text("[P3001276]\nip = 10.0.0.5\n")
    return root


def make_env(root: Path, stdin: str = "", services=None, **tools) -> DataEnv:
    return DataEnv(root=root, stdin=io.StringIO(stdin), stdout=io.StringIO(),
                   stderr=io.StringIO(), clock=lambda: NOW, run=_no_tools,
                   euid=lambda: 0, data_tools=DataTools(services=services, **tools))


def qss_get(env: Environment, *args: str, capsys=None) -> tuple[int, str]:
    """Run qss-get in-process as its console script does; (status, standard output)."""
    status = run(lambda argv: main(argv, env), [*args, "--root", str(env.root)],
                 prog="qss-get")
    return status, env.stdout.getvalue()


def queue_path(root: Path) -> Path:
    return root / "ssd/srv/queue.db"


def fill_queue(root: Path, n: int = 3) -> None:
    with open_queue(f"sqlite:///{queue_path(root)}") as q:
        for i in range(n):
            q.put("P3001276", f"/root/upmu_data/P3001276_2024-01-01-00-0{i}-00.dat",
                  bytes([i]) * 1000)


# -- --indexes ---------------------------------------------------------------------------

def test_indexes_sqlite_reports_what_it_created_then_that_all_exist(tmp_path):
    root = make_root(tmp_path)
    fill_queue(root)
    with sqlite3.connect(queue_path(root)) as db:
        db.execute("DROP INDEX received_files_sync")
    status, out = qss_get(make_env(root), "--indexes")
    assert status == 0
    assert out == ("created   index received_files_sync\n")
    status, out = qss_get(make_env(root), "--indexes")
    assert (status, out) == (0, f"all indexes of the queue sqlite:///{queue_path(root)} "
                                f"exist; nothing to do\n")


def test_indexes_mongodb_creates_the_missing_ones(tmp_path):
    _teach_mongomock_binary_size()
    root = make_root(tmp_path, render_default_ini().replace(
        "url = sqlite:////ssd/srv/queue.db", "url = mongodb://localhost:27017"))
    client = mongomock.MongoClient()
    opener = lambda url: MongoQueue(url, client=client)   # noqa: E731
    status, out = qss_get(make_env(root, open_queue=opener), "--indexes")
    assert status == 0
    assert out.startswith("created   index received_files.")
    status, out = qss_get(make_env(root, open_queue=opener), "--indexes")
    assert out == ("all indexes of the queue mongodb://localhost:27017 exist; nothing to "
                   "do\n")


def test_indexes_refuses_a_missing_queue_in_one_line(tmp_path, capsys):
    root = make_root(tmp_path)
    status, out = qss_get(make_env(root), "--indexes")
    assert status == 1 and out == ""
    assert capsys.readouterr().err == (
        f"qss-get: error: no queue at {queue_path(root)} ([queue] url); nothing to index "
        f"(is the data drive mounted?)\n")
    assert not queue_path(root).exists()


# -- --newdb -----------------------------------------------------------------------------

def make_store(root: Path, points: int = 1000):
    """A real BTrDB data directory with one stream; returns its uuid and times."""
    import uuid

    import numpy as np

    from tsdb import Store
    u = uuid.uuid4()
    t = np.arange(points, dtype=np.int64) * 10**6 + 1_700_000_000 * 10**9
    with Store(root / "ssd/data", durable=False) as s:
        s.create(u, "sunshine/P3001276", {"name": "L1MAG"}, {})
        s.insert(u, t, np.arange(points, dtype=float))
    return u, t


@pytest.mark.parametrize("answer", ["n\n", "yes\n", "\n", ""])
def test_newdb_anything_but_y_cancels_and_changes_nothing(tmp_path, answer, capsys):
    root = make_root(tmp_path)
    fill_queue(root)
    make_store(root)
    before = sorted(p.name for p in root.rglob("*"))
    services = FakeServices()
    env = make_env(root, answer, services)
    status, out = qss_get(env, "--newdb")
    assert status == 1
    assert out.splitlines()[-1] == ("cancelled: nothing was deleted (answer y or Y to go "
                                    "ahead; scripts use --yes)")
    assert "Delete the database and create a new one? [y/N] " in out
    assert sorted(p.name for p in root.rglob("*")) == before
    assert services.calls == []


@pytest.mark.parametrize("answer", ["y\n", "Y\n"])
def test_newdb_y_deletes_both_and_keeps_the_uPMU_lists(tmp_path, answer):
    root = make_root(tmp_path)
    fill_queue(root)
    make_store(root)
    lists = {p: p.read_bytes() for p in (root / "home/manager").iterdir()}
    services = FakeServices()
    status, out = qss_get(make_env(root, answer, services), "--newdb")
    assert status == 0, out
    assert services.calls == ["stop", "start"]
    assert "stopped   the services (supervisorctl stop all)" in out
    assert "started   the services (supervisorctl start all)" in out
    assert f"deleted   {root}/ssd/data/* (" in out
    assert [p.name for p in (root / "ssd/data").iterdir()] == ["qss-btrdb.lock"]
    with open_queue(f"sqlite:///{queue_path(root)}") as q:
        assert q.serials() == []
    assert {p: p.read_bytes() for p in (root / "home/manager").iterdir()} == lists
    assert "upmuconfig.ini was kept" in out.splitlines()[-1]


def test_newdb_yes_answers_for_scripts(tmp_path):
    root = make_root(tmp_path)
    fill_queue(root)
    status, out = qss_get(make_env(root, "", FakeServices()), "--newdb", "--yes")
    assert status == 0
    assert "[y/N] y (--yes)\n" in out


def test_newdb_refuses_while_btrdb_runs_and_supervisor_is_unreachable(tmp_path, capsys):
    from tsdb.testing import running
    root = make_root(tmp_path)
    fill_queue(root)
    make_store(root)
    services = FakeServices(unreachable=True)
    with running(root / "ssd/data") as server:
        status, out = qss_get(make_env(root, "y\n", services), "--newdb")
        pid = server.proc.pid
    err = capsys.readouterr().err
    assert status == 1
    assert err.splitlines() == [
        f"qss-get: error: the BTrDB server (qss-btrdb) is still running (pid {pid} holds "
        f"{root}/ssd/data/qss-btrdb.lock): stop it first (sudo supervisorctl stop all); "
        f"nothing was changed"]
    assert out == ""                      # checked first: no question asked in vain
    assert (root / "ssd/data/btrdb.sqlite3").exists()
    with open_queue(f"sqlite:///{queue_path(root)}") as q:
        assert q.serials() == ["P3001276"]
    assert services.calls == []           # nothing stopped, nothing to start


def test_newdb_goes_ahead_when_supervisor_is_unreachable_but_nothing_runs(tmp_path):
    root = make_root(tmp_path)
    fill_queue(root)
    env = make_env(root, "y\n", FakeServices(unreachable=True))
    status, out = qss_get(env, "--newdb")
    assert status == 0
    assert "supervisor is not reachable" in env.stderr.getvalue()
    assert "started" not in out


def test_newdb_refuses_a_missing_data_directory(tmp_path, capsys):
    root = make_root(tmp_path)
    (root / "ssd/data").rmdir()
    status, _ = qss_get(make_env(root, "y\n", FakeServices()), "--newdb")
    assert status == 1
    assert capsys.readouterr().err == (
        f"qss-get: error: BTrDB data directory {root}/ssd/data does not exist (is the data "
        f"drive mounted?); nothing was changed\n")


# -- --data-import -----------------------------------------------------------------------

def dat(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def upmu_tree(base: Path) -> Path:
    src = base / "upmu_data"
    dat(src / "2024/Month_01/Day_01/Hour_00/P3001276_2024-01-01-00-00-00.dat", b"a" * 100)
    dat(src / "2024/Month_01/Day_01/Hour_01/P3001276_2024-01-01-01-00-00.dat", b"b" * 100)
    dat(src / "P3001276_2024-01-02-00-00-00.dat", b"c")
    dat(src / "2024/notes.txt", b"not data")
    return src


def test_data_import_flattens_every_depth_and_prints_the_importdat_line(tmp_path, monkeypatch):
    src = upmu_tree(tmp_path / "home")
    monkeypatch.chdir(tmp_path / "home")
    env = make_env(tmp_path)
    status, out = qss_get(env, "--data-import")
    target = tmp_path / "home/upmu_data_import"
    assert status == 0
    assert sorted(p.name for p in target.iterdir()) == [
        "P3001276_2024-01-01-00-00-00.dat", "P3001276_2024-01-01-01-00-00.dat",
        "P3001276_2024-01-02-00-00-00.dat"]
    assert (target / "P3001276_2024-01-01-01-00-00.dat").read_bytes() == b"b" * 100
    assert [p.name for p in src.rglob("*") if p.is_file()] == ["notes.txt"]
    assert out.splitlines() == [
        f"moved     3 .dat files from {src} into {target}",
        f"next: in upmu-adm, run: importdat {target}   (or: upmu-adm -c 'importdat "
        f"{target}')"]
    assert env.stderr.getvalue() == ""


def test_data_import_same_bytes_is_a_duplicate_and_other_bytes_are_kept_both(tmp_path):
    src = upmu_tree(tmp_path)
    target = tmp_path / "upmu_data_import"
    dat(target / "P3001276_2024-01-01-00-00-00.dat", b"a" * 100)      # same bytes
    dat(target / "P3001276_2024-01-01-01-00-00.dat", b"B" * 100)      # other bytes
    # and two different files of one name inside the tree
    dat(src / "again/P3001276_2024-01-02-00-00-00.dat", b"c2")
    env = make_env(tmp_path)
    status, out = qss_get(env, "--data-import", str(tmp_path))
    assert status == 0
    files = {p.name: p.read_bytes() for p in target.iterdir()}
    assert files == {
        "P3001276_2024-01-01-00-00-00.dat": b"a" * 100,
        "P3001276_2024-01-01-01-00-00.dat": b"B" * 100,
        "P3001276_2024-01-01-01-00-00.conflict-1.dat": b"b" * 100,
        "P3001276_2024-01-02-00-00-00.dat": b"c",          # upmu_data/ itself comes first
        "P3001276_2024-01-02-00-00-00.conflict-1.dat": b"c2"}
    assert not list(src.rglob("*.dat"))
    assert out.splitlines()[:2] == [
        f"moved     3 .dat files from {src} into {target}",
        f"removed   1 duplicate from {src}: {target} holds the same bytes under the same "
        f"name"]
    assert env.stderr.getvalue().startswith(
        "qss-get: warning: 2 files differ from a file of the same name and were kept under "
        "a new name (e.g. ")
    # Run again with the same conflicting file: recognised, not a third copy.
    dat(src / "x/P3001276_2024-01-01-01-00-00.dat", b"b" * 100)
    status, out = qss_get(make_env(tmp_path), "--data-import", str(src))
    assert status == 0 and "removed   1 duplicate" in out
    assert len(list(target.iterdir())) == 5


def test_data_import_across_file_systems_copies_verifies_then_unlinks(tmp_path, monkeypatch):
    from installer import dataimport
    src = upmu_tree(tmp_path)
    real_stat = Path.stat
    # Pretend the sources are on another device: the copy path runs.
    monkeypatch.setattr(Path, "stat", lambda self, **kw: (
        os.stat_result((*real_stat(self, **kw)[:2], 999, *real_stat(self, **kw)[3:]))
        if "upmu_data_import" not in str(self) else real_stat(self, **kw)))
    copied = []
    real_copy = dataimport._copy_verified
    monkeypatch.setattr(dataimport, "_copy_verified",
                        lambda a, b: (copied.append(a.name), real_copy(a, b)))
    status, _ = qss_get(make_env(tmp_path), "--data-import", str(tmp_path))
    assert status == 0 and len(copied) == 3
    target = tmp_path / "upmu_data_import"
    assert (target / "P3001276_2024-01-01-00-00-00.dat").read_bytes() == b"a" * 100
    assert not list(src.rglob("*.dat")) and not list(target.glob(".*qss-tmp"))


def test_data_import_refusals_are_one_line(tmp_path, capsys):
    status, _ = qss_get(make_env(tmp_path), "--data-import", str(tmp_path))
    assert status == 1
    assert capsys.readouterr().err == (
        f"qss-get: error: no folder upmu_data in {tmp_path}; run it where upmu_data is, or "
        f"name the folder: qss-get --data-import /media/external\n")
    (tmp_path / "upmu_data").mkdir()
    status, _ = qss_get(make_env(tmp_path), "--data-import", str(tmp_path / "upmu_data"))
    assert status == 1
    assert capsys.readouterr().err == (f"qss-get: error: no .dat files beneath "
                                       f"{tmp_path}/upmu_data; nothing to import\n")


# -- --backup / --restore ----------------------------------------------------------------

def read_points(server, u):
    from btrdb.conn import BTrDB, Connection
    from btrdb.endpoint import Endpoint
    channel = Connection(f"127.0.0.1:{server.grpc_port}").channel
    db = BTrDB(Endpoint(channel))
    try:
        s = db.stream_from_uuid(u)
        if not s.exists():
            return None
        return [(p.time, p.value) for p, _ in s.values(0, 3 * 10**18)]
    finally:
        db._executor.shutdown()
        channel.close()


def queue_contents(root: Path) -> dict:
    with open_queue(f"sqlite:///{queue_path(root)}") as q:
        return {f.name: bytes(q.read(f)) for s in q.serials() for f in q.files(s)}


def test_backup_newdb_restore_brings_back_every_point_and_the_config_byte_for_byte(tmp_path):
    from tsdb.testing import running
    root = make_root(tmp_path)
    fill_queue(root)
    u, t = make_store(root, 5000)
    dest = tmp_path / "usb"
    dest.mkdir()
    configs = {p: p.read_bytes() for p in (root / "home/manager/upmuconfig.ini",
                                            root / "home/manager/backupconfig.ini",
                                            root / "etc/qss/qss.ini")}
    queued = queue_contents(root)
    services = FakeServices()
    # Backed up while the server runs: a consistent snapshot, no service stopped.
    with running(root / "ssd/data") as server:
        assert len(read_points(server, u)) == 5000
        status, out = qss_get(make_env(root, services=services), "--backup", str(dest))
    assert status == 0, out
    assert services.calls == []
    backup_dir = dest / "qss-backup-20240506T070809"
    assert out.splitlines()[-1].startswith(
        f"backed up 6 files (")
    assert f"into {backup_dir}, verified against MANIFEST.sha256 (" in out
    manifest = (backup_dir / "MANIFEST.sha256").read_text()
    backed_up = sorted(line.split("  ")[1] for line in manifest.splitlines())
    assert backed_up[:5] == [
        "config/backupconfig.ini", "config/qss.ini", "config/upmuconfig.ini",
        "data/btrdb.sqlite3", "srv/queue.db"]
    assert re.fullmatch(r"srv/queue\.db\.data/s-\w+-\w+\.seg", backed_up[5])  # the contents
    # A new database: nothing left.
    status, _ = qss_get(make_env(root, services=FakeServices()), "--newdb", "--yes")
    assert status == 0
    (root / "home/manager/upmuconfig.ini").write_text("[changed]\n")
    with running(root / "ssd/data") as server:
        assert read_points(server, u) is None
    assert queue_contents(root) == {}
    # Restore, then every point and file is back.
    services = FakeServices()
    env = make_env(root, "y\n", services)
    status, out = qss_get(env, "--restore", str(backup_dir))
    assert status == 0, env.stderr.getvalue()
    assert services.calls == ["stop", "start"]
    assert "Replace the database with this backup? [y/N] y\n" in out
    assert "kept      the current " in out
    with running(root / "ssd/data") as server:
        points = read_points(server, u)
    assert points == [(int(ti), float(i)) for i, ti in enumerate(t)]
    assert queue_contents(root) == queued
    for path, data in configs.items():
        assert path.read_bytes() == data, path
    assert oct((root / "ssd/data").stat().st_mode & 0o7777) == "0o2770"
    assert oct((root / "ssd/srv/queue.db").stat().st_mode & 0o7777) == "0o660"
    assert oct((root / "ssd/srv/queue.db.data").stat().st_mode & 0o7777) == "0o2770"


@pytest.fixture
def a_backup(tmp_path):
    root = make_root(tmp_path)
    fill_queue(root)
    make_store(root, 100)
    (tmp_path / "usb").mkdir()
    status, out = qss_get(make_env(root), "--backup", str(tmp_path / "usb"))
    assert status == 0, out
    return root, tmp_path / "usb/qss-backup-20240506T070809"


@pytest.mark.parametrize("damage, message", [
    (lambda b: (b / "config/upmuconfig.ini").write_text("[tampered]\n"),
     "{b}/config/upmuconfig.ini: its SHA-256 differs from MANIFEST.sha256: the file was "
     "changed or damaged; refusing to restore it, nothing was changed"),
    (lambda b: (b / "data/btrdb.sqlite3").unlink(),
     "{b}/data/btrdb.sqlite3: missing (listed in MANIFEST.sha256); refusing to restore the "
     "backup"),
    (lambda b: (b / "data/extra.bin").write_bytes(b"x"),
     "{b}/data/extra.bin: not listed in MANIFEST.sha256: the backup was changed; refusing "
     "to restore it"),
])
def test_restore_refuses_a_damaged_backup_before_touching_anything(a_backup, damage,
                                                                   message, capsys):
    root, b = a_backup
    damage(b)
    before = queue_contents(root), (root / "ssd/data/btrdb.sqlite3").read_bytes()
    services = FakeServices()
    status, out = qss_get(make_env(root, "y\n", services), "--restore", str(b))
    assert status == 1 and services.calls == []
    assert capsys.readouterr().err == f"qss-get: error: {message.format(b=b)}\n"
    assert (queue_contents(root), (root / "ssd/data/btrdb.sqlite3").read_bytes()) == before


def test_restore_cancelled_by_anything_but_y(a_backup):
    root, b = a_backup
    services = FakeServices()
    status, out = qss_get(make_env(root, "n\n", services), "--restore", str(b))
    assert status == 1 and services.calls == []
    assert out.splitlines()[-1] == ("cancelled: nothing was changed (answer y or Y to go "
                                    "ahead; scripts use --yes)")


def test_backup_refuses_a_destination_without_room_before_copying(tmp_path, capsys):
    root = make_root(tmp_path)
    fill_queue(root)
    (tmp_path / "usb").mkdir()
    status, _ = qss_get(make_env(root, disk_free=lambda p: 1000), "--backup",
                        str(tmp_path / "usb"))
    assert status == 1
    err = capsys.readouterr().err
    assert err.startswith(f"qss-get: error: {tmp_path}/usb has 1 KB free; the backup needs "
                          f"about ") and err.endswith("; nothing was copied\n")
    assert list((tmp_path / "usb").iterdir()) == []


def test_backup_refuses_a_missing_destination(tmp_path, capsys):
    root = make_root(tmp_path)
    status, _ = qss_get(make_env(root), "--backup", str(tmp_path / "nope"))
    assert status == 1
    assert capsys.readouterr().err == (
        f"qss-get: error: --backup '{tmp_path}/nope': no such directory (mount the backup "
        f"drive first, e.g. sudo mount /dev/sdc1 /mnt)\n")


# -- --mount-ddrive ----------------------------------------------------------------------

def devices(*extra):
    from installer.hooks import BlockDevice
    return lambda: [BlockDevice("/dev/sda1", "root", "1111", "ext4", ("/",)), *extra]


def test_mount_ddrive_adds_the_fstab_line_by_uuid_mounts_and_is_idempotent(tmp_path):
    from installer.hooks import BlockDevice
    root = tmp_path
    (root / "etc").mkdir()
    (root / "etc/fstab").write_text("UUID=1111 / ext4 errors=remount-ro 0 1\n")
    mounts = []
    probe = devices(BlockDevice("/dev/sdb1", "DATA", "abcd-ef", "ext4"))
    env = make_env(root, block_devices=probe, mount=lambda p: (mounts.append(p), (0, ""))[1])
    status, out = qss_get(env, "--mount-Ddrive")
    assert status == 0, env.stderr.getvalue()
    assert (root / "etc/fstab").read_text().splitlines()[-1] == (
        "UUID=abcd-ef\t/ssd\text4\tdefaults,nofail\t0\t2")
    assert (root / "ssd").is_dir() and mounts == ["/ssd"]
    assert f"added     UUID=abcd-ef /ssd (/dev/sdb1, nofail) to {root}/etc/fstab" in out
    fstab = (root / "etc/fstab").read_bytes()
    probe = devices(BlockDevice("/dev/sdb1", "DATA", "abcd-ef", "ext4", ("/ssd",)))
    env = make_env(root, block_devices=probe, mount=lambda p: 1 / 0)
    status, out = qss_get(env, "--mount-ddrive")
    assert status == 0
    assert out.splitlines() == [
        f"unchanged {root}/etc/fstab (it mounts /dev/sdb1, label DATA, at /ssd)",
        "mounted   /dev/sdb1 is already mounted at /ssd"]
    assert (root / "etc/fstab").read_bytes() == fstab


def test_mount_ddrive_without_a_DATA_drive_says_so(tmp_path, capsys):
    status, _ = qss_get(make_env(tmp_path, block_devices=devices()), "--mount-ddrive")
    assert status == 1
    assert capsys.readouterr().err == (
        "qss-get: error: no file system labeled DATA (labeled ones: /dev/sda1 (root)); "
        "plug in the data drive, or label it: sudo e2label /dev/sdX1 DATA\n")
    assert not (tmp_path / "etc/fstab").exists()


def test_mount_ddrive_keeps_an_operators_other_ssd_line(tmp_path, capsys):
    from installer.hooks import BlockDevice
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/fstab").write_text("/dev/sdc1 /ssd ext4 defaults 0 2\n")
    probe = devices(BlockDevice("/dev/sdb1", "DATA", "abcd", "ext4"))
    status, _ = qss_get(make_env(tmp_path, block_devices=probe), "--mount-ddrive")
    assert status == 1
    assert capsys.readouterr().err == (
        f"qss-get: error: {tmp_path}/etc/fstab line 1 already mounts /dev/sdc1 at /ssd; "
        f"remove that line to use /dev/sdb1 (label DATA) and run again\n")


def test_every_data_action_is_in_the_help(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--indexes", "--newdb", "--data-import [PATH]", "--backup DEST",
                 "--restore SRC", "--mount-ddrive, --mount-Ddrive"):
        assert flag in out, flag


def test_two_actions_are_a_usage_error(tmp_path, capsys):
    assert main(["--newdb", "--indexes"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: qss-get ACTION [OPTIONS]\n")
    assert "not allowed with argument" in err


def test_a_backup_survives_data_files_that_go_while_it_runs(tmp_path, monkeypatch):
    """The queue's data files come and go while the services run: an upload's part is
    renamed at its commit, a segment no row points into is deleted by another process's
    clean-up. Neither fails the backup (nor makes a traceback); the copy is whole."""
    import installer.backup as backup
    root = make_root(tmp_path)
    fill_queue(root)
    data = root / "ssd/srv/queue.db.data"
    (data / "u-1-dead.part").write_bytes(b"p" * 100)      # an upload arriving
    (data / "s-1-dead.seg").write_bytes(b"x" * 100)       # a crash's leftover
    real_sources, real_copy = backup._sources, backup._copy_plain

    def sources(paths):
        items = real_sources(paths)
        (data / "u-1-dead.part").unlink()                  # committed meanwhile
        return items

    def copy_plain(src, dst, bar):
        if src.name == "s-1-dead.seg":
            src.unlink()                                   # swept meanwhile
        return real_copy(src, dst, bar)

    monkeypatch.setattr(backup, "_sources", sources)
    monkeypatch.setattr(backup, "_copy_plain", copy_plain)
    queued = queue_contents(root)
    dest = tmp_path / "usb"
    dest.mkdir()
    status, out = qss_get(make_env(root), "--backup", str(dest))
    assert status == 0, out
    monkeypatch.undo()
    backup_dir = dest / "qss-backup-20240506T070809"
    manifest = (backup_dir / "MANIFEST.sha256").read_text()
    assert "dead" not in manifest
    status, _ = qss_get(make_env(root, services=FakeServices()), "--newdb", "--yes")
    assert status == 0 and queue_contents(root) == {}
    status, out = qss_get(make_env(root, "y\n", FakeServices()), "--restore", str(backup_dir))
    assert status == 0, out
    assert queue_contents(root) == queued and len(queued) == 3


def test_a_backup_refuses_a_queue_copy_whose_segments_were_cut_meanwhile(tmp_path):
    """Files deleted while a backup runs (their segment deleted or cut after the queue's
    snapshot) make it fail with a one-line error, never a copy missing bytes."""
    from installer.backup import _check_segments
    from installer.files import DeployError
    with open_queue(f"sqlite:///{tmp_path}/queue.db") as q:
        q.put("P1", "/a", b"a" * 1000)
        q.put("P1", "/b", b"b" * 1000)
    [segment] = (tmp_path / "queue.db.data").iterdir()
    _check_segments(tmp_path / "queue.db", tmp_path / "queue.db.data")   # whole: fine
    os.truncate(segment, 1500)
    with pytest.raises(DeployError, match=r"^the queue changed while it was copied \(files "
                                          r"deleted: s-.*\.seg is missing or short\)"):
        _check_segments(tmp_path / "queue.db", tmp_path / "queue.db.data")
