"""qss-get -i, -u and --rollback with real archives built from this checkout.

One story, in order, because each step costs a real Python environment (~25 s): install
1.0.0 into a temporary root; a real supervisord runs the installed qss-btrdb through
/opt/qss/current; an update whose restarted service does not come up rolls back by
itself; the same update then succeeds and the service runs from the new version; an
update with a broken wheel fails and leaves the running version untouched; --rollback
goes back, configuration files and service included.

The dependencies' wheels come from .venv/wheelhouse (``./dev setup`` fills it), so no
test reaches the network.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from installer.build import build
from installer.environment import Environment, run_tool
from installer.hooks import DataTools, Supervisor
from qss.cli import run
from installer.cli import main
from qss.status import supervisor_programs

from archive_support import make_deb, read_members, snapshot, write_members
from test_sync2q_support import reserve_port
from waiting import wait_until

REPO = Path(__file__).resolve().parent.parent
WHEELHOUSE = Path(os.environ.get("QSS_WHEELHOUSE", REPO / ".venv" / "wheelhouse"))


def _say(_line: str) -> None:
    pass


@pytest.fixture(scope="module")
def usb(tmp_path_factory) -> Path:
    """The USB drive: install 1.0.0 (with apcupsd), updates 1.1.0 and a broken 1.2.0."""
    if not any(WHEELHOUSE.glob("*.whl")):
        pytest.fail(f"no wheels in {WHEELHOUSE}: run ./dev setup (it fetches them once)")
    work = tmp_path_factory.mktemp("usb")
    (work / "debs" / "apcupsd").mkdir(parents=True)
    make_deb(work / "debs" / "apcupsd", "apcupsd")
    drive = work / "drive"
    build("install", "1.0.0", drive, wheelhouse=WHEELHOUSE, debs=work / "debs", say=_say)
    build("update", "1.1.0", drive, wheelhouse=WHEELHOUSE, say=_say)
    good = build("update", "1.2.0", work / "tmp", wheelhouse=WHEELHOUSE, say=_say)
    # On another drive: a folder's newest update is the one taken.
    (work / "other-drive").mkdir()
    _break_wheel(good, work / "other-drive" / good.name)
    return drive


def _break_wheel(src: Path, dst: Path) -> None:
    """A copy of ``src`` whose suite wheel is garbage, with a manifest that agrees, so it
    passes the check and fails only when pip installs it."""
    import hashlib
    members = read_members(src)
    junk = b"this is not a zip file\n" * 100
    wheel = next(i.name for i, _ in members if "/wheels/qss-" in i.name)
    rel = wheel.split("/", 1)[1]
    out = []
    for info, data in members:
        if info.name == wheel:
            data = junk
        elif info.name.endswith("/MANIFEST.json"):
            doc = json.loads(data)
            doc["members"][rel] = {"sha256": hashlib.sha256(junk).hexdigest(),
                                   "size": len(junk)}
            data = (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()
        out.append((info, data))
    write_members(dst, out)


class Services:
    """A real supervisord running the installed qss-btrdb as the appliance names it:
    through /opt/qss/current/bin under the root."""

    def __init__(self, tmp: Path, root: Path):
        self.tmp, self.root = tmp, root
        self.conf = tmp / "supervisord.conf"
        self.data = tmp / "btrdb-data"
        self.data.mkdir()
        (tmp / "qss.ini").write_text("")
        self.ctl = (sys.executable, "-m", "supervisor.supervisorctl", "-c", str(self.conf))
        self.conf.write_text(textwrap.dedent(f"""\
            [unix_http_server]
            file={tmp}/supervisor.sock
            [supervisord]
            logfile={tmp}/supervisord.log
            pidfile={tmp}/supervisord.pid
            childlogdir={tmp}
            [rpcinterface:supervisor]
            supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
            [supervisorctl]
            serverurl=unix://{tmp}/supervisor.sock
            [program:btrdb]
            command={root}/opt/qss/current/bin/qss-btrdb --config {tmp}/qss.ini --data {self.data} --grpc 127.0.0.1:{reserve_port()} --http 127.0.0.1:{reserve_port()}
            startsecs=2
            startretries=0
            stopsignal=TERM
            stopwaitsecs=20
            redirect_stderr=true
            stdout_logfile={tmp}/btrdb.log
            """))

    def start(self) -> None:
        subprocess.run([sys.executable, "-m", "supervisor.supervisord", "-c", str(self.conf)],
                       check=True, timeout=30)
        self.wait_running()

    def programs(self):
        return supervisor_programs(self.ctl + ("status",))

    def wait_running(self, timeout: float = 60) -> None:
        def states():
            try:
                return [p.state for p in self.programs()]
            except Exception as exc:   # supervisord not answering yet
                return f"no status: {exc}"
        wait_until(states, until=lambda got: got == ["RUNNING"], timeout=timeout,
                   interval=0.3, what="btrdb RUNNING", detail=self.log)

    def tools(self) -> DataTools:
        return DataTools(services=Supervisor(run_tool, command=self.ctl[0],
                                             options=self.ctl[1:]),
                         programs=self.programs)

    def python_of_btrdb(self) -> str:
        """The interpreter the running qss-btrdb was started with (its version's)."""
        pid = int(self.programs()[0].description.split("pid ", 1)[1].split(",")[0])
        return psutil.Process(pid).cmdline()[0]

    def log(self) -> str:
        path = self.tmp / "btrdb.log"
        return path.read_text()[-2000:] if path.exists() else "(no log)"

    def stop(self) -> None:
        subprocess.run([*self.ctl, "shutdown"], capture_output=True, timeout=60)
        pid_file = self.tmp / "supervisord.pid"
        wait_until(lambda: not pid_file.exists(), timeout=30, interval=0.2,
                   what=f"supervisord to exit (its pid file {pid_file} gone)")


def _stable(snap: dict[str, tuple]) -> dict[str, tuple]:
    """A snapshot without what changes legitimately meanwhile: the running service's
    compiled-code cache, qss-get's lock file and folders' times (its staging folder
    comes and goes)."""
    return {k: (mode, size, None if stat.S_ISDIR(mode) else mtime, target)
            for k, (mode, size, mtime, target) in snap.items()
            if "__pycache__" not in k and ".qss-get.lock" not in k}


def _qss_get(argv: list[str], capsys, env: Environment | None = None) -> tuple[int, str]:
    code = run(lambda a: main(a, env), argv, prog="qss-get")
    out, err = capsys.readouterr()
    return code, out + err


def _version_of(root: Path) -> str:
    proc = subprocess.run([str(root / "usr/local/bin/qss-get"), "--version"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _etc(root: Path) -> dict[str, bytes]:
    """The configuration files under the root (not the backups qss-get leaves)."""
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted((root / "etc").rglob("*"))
            if p.is_file() and ".qss-bak-" not in p.name}


def test_install_update_rollback_with_real_archives(usb, tmp_path, capsys):
    root = tmp_path / "root"
    root.mkdir()

    # -- fresh install ------------------------------------------------------------------
    code, out = _qss_get(["-i", str(usb), "--ups", "--yes", "--root", str(root),
                          "--interface", "eth0"], capsys)
    assert code == 0, out
    assert "members match the manifest of install 1.0.0" in out
    assert "Installed the MicroPMU Quickstart Server 1.0.0." in out
    assert _version_of(root) == "MicroPMU Quickstart Server 1.0.0"
    assert os.readlink(root / "opt/qss/current") == "versions/1.0.0"
    assert (root / "usr/share/doc/apcupsd/QSS-TEST").exists()       # --ups: the package
    conf = (root / "etc/supervisor/conf.d/qss.conf").read_text()
    assert "command=/opt/qss/current/bin/qss-btrdb --config /etc/qss/qss.ini" in conf
    assert "address 172.16.1.100" in (root / "etc/network/interfaces").read_text()
    for folder in ("ssd/data", "ssd/srv", "var/log"):
        assert (root / folder).is_dir()
    # Every command of the suite, linked to follow current.
    assert os.readlink(root / "usr/local/bin/upmu-adm") == "../../../opt/qss/current/bin/upmu-adm"
    # A second install is refused: that is what -u is for.
    code, out = _qss_get(["-i", str(usb), "--yes", "--root", str(root)], capsys)
    assert code == 1 and "1.0.0 is installed already: update it with qss-get -u" in out

    (tmp_path / "sv").mkdir()
    services = Services(tmp_path / "sv", root)
    services.start()
    try:
        assert "/opt/qss/versions/1.0.0/bin/python" in services.python_of_btrdb()
        env = replace(Environment(), data_tools=services.tools())
        etc_before = _etc(root)

        # -- an update whose service does not come up goes back by itself ----------------
        shutil.rmtree(services.data)
        services.data.write_text("not a folder: qss-btrdb refuses to start\n")
        code, out = _qss_get(["-u", str(usb), "--root", str(root)], capsys, env)
        assert code == 1, out
        # supervisorctl's restart itself reports the program that did not start.
        assert "update to 1.1.0 failed: " in out and "btrdb: ERROR (spawn error)" in out
        assert "rolled back, 1.0.0 is in use" in out
        assert os.readlink(root / "opt/qss/current") == "versions/1.0.0"
        assert not (root / "opt/qss/versions/1.1.0").exists()
        assert _version_of(root) == "MicroPMU Quickstart Server 1.0.0"
        assert _etc(root) == etc_before

        # -- the same update, now that the service can start ------------------------------
        services.data.unlink()
        services.data.mkdir()
        subprocess.run([*services.ctl, "start", "btrdb"], capture_output=True, timeout=60)
        services.wait_running()
        # A file in an older format: the new version brings it to its own (re-rendered,
        # the old one backed up), and a rollback puts the old one back.
        qss_conf = root / "etc/supervisor/conf.d/qss.conf"
        qss_conf.write_text("; as an older version wrote it\n" + qss_conf.read_text())
        etc_before = _etc(root)
        code, out = _qss_get(["-u", str(usb), "--root", str(root)], capsys, env)
        assert code == 0, out
        assert "replaced  " + str(qss_conf) in out
        assert not qss_conf.read_text().startswith("; as an older version")
        assert "Updated the MicroPMU Quickstart Server from 1.0.0 to 1.1.0." in out
        assert "btrdb RUNNING" in out
        assert _version_of(root) == "MicroPMU Quickstart Server 1.1.0"
        assert os.readlink(root / "opt/qss/previous") == "versions/1.0.0"
        assert "/opt/qss/versions/1.1.0/bin/python" in services.python_of_btrdb()

        # -- an update that cannot be installed leaves everything as it was ---------------
        before = snapshot(root)
        pid_before = services.programs()[0].description
        broken = usb.parent / "other-drive" / "qss-update-1.2.0.tar.gz"
        code, out = _qss_get(["-u", str(broken), "--root", str(root)], capsys, env)
        assert code == 1, out
        assert "update to 1.2.0 failed: installing the wheels for 1.2.0 failed" in out
        assert "rolled back, 1.1.0 is in use" in out
        assert _version_of(root) == "MicroPMU Quickstart Server 1.1.0"
        assert _stable(snapshot(root)) == _stable(before)
        assert services.programs()[0].description.split(",")[0] == pid_before.split(",")[0]

        # -- an older archive is not an update -------------------------------------------
        code, out = _qss_get(["-u", str(usb / "qss-update-1.1.0.tar.gz"), "--root",
                              str(root)], capsys, env)
        assert code == 0 and "1.1.0 is installed and in use already: nothing to do" in out

        # -- rollback on request ---------------------------------------------------------
        code, out = _qss_get(["--rollback", "--yes", "--root", str(root)], capsys, env)
        assert code == 0, out
        assert "Rolled back the MicroPMU Quickstart Server from 1.1.0 to 1.0.0." in out
        assert _version_of(root) == "MicroPMU Quickstart Server 1.0.0"
        assert not (root / "opt/qss/versions/1.1.0").exists()
        assert "/opt/qss/versions/1.0.0/bin/python" in services.python_of_btrdb()
        assert f"restored  /etc/supervisor/conf.d/qss.conf" in out
        assert _etc(root) == etc_before
        code, out = _qss_get(["--rollback", "--yes", "--root", str(root)], capsys, env)
        assert code == 1 and "nothing to roll back to: no previous version" in out
    finally:
        services.stop()


def test_archives_are_reproducible_from_a_checkout(usb, tmp_path):
    again = build("update", "1.1.0", tmp_path, wheelhouse=WHEELHOUSE, say=_say)
    assert again.read_bytes() == (usb / "qss-update-1.1.0.tar.gz").read_bytes()
