"""qss-get --rollback takes the newer version's folder away only once the services run
from the older one (it used to remove it first, from under the running services: what
they wrote meanwhile, a compiled kernel's cache say, kept it)."""
import io
from pathlib import Path

from installer import update, versions
from installer.environment import Environment
from installer.hooks import DataTools
from qss.status import Program


class _Services:
    """Records what existed of the newer version when the services were restarted."""

    def __init__(self, newer: Path, writes: bool):
        self.newer, self.writes, self.seen = newer, writes, None

    def restart_all(self):
        self.seen = self.newer.exists()
        if self.writes:  # a service of the newer version still writing as it stops
            (self.newer / "lib" / "late-cache-file").write_text("x")


def _setup(tmp_path: Path, writes: bool):
    root = tmp_path / "root"
    env = Environment(root=root, stdin=io.StringIO(), stdout=io.StringIO(),
                      stderr=io.StringIO(), bindir=versions.BINDIR)
    for v in ("1.0.0", "1.1.0"):
        (versions.version_dir(env, v) / "lib").mkdir(parents=True)
    versions.set_link(env, "current", "1.1.0")
    versions.set_link(env, "previous", "1.0.0")
    services = _Services(versions.version_dir(env, "1.1.0"), writes)
    tools = DataTools(services=services,
                      programs=lambda: [Program("btrdb", "RUNNING", "pid 1, uptime 0:00:01")])
    return env, tools, services


def test_the_newer_version_goes_after_the_services_restart(tmp_path):
    env, tools, services = _setup(tmp_path, writes=True)
    assert update.rollback(env, tools, assume_yes=True)
    assert services.seen is True               # still there while they restarted
    assert not versions.version_dir(env, "1.1.0").exists()
    assert versions.current(env) == "1.0.0" and versions.previous(env) is None
    out = env.stdout.getvalue()
    assert "Rolled back the MicroPMU Quickstart Server from 1.1.0 to 1.0.0." in out


def test_what_cannot_be_removed_is_named(tmp_path, monkeypatch):
    env, tools, _ = _setup(tmp_path, writes=False)
    monkeypatch.setattr(update.shutil, "rmtree", lambda *a, **k: None)  # as if held
    assert update.rollback(env, tools, assume_yes=True)
    folder = versions.version_dir(env, "1.1.0")
    assert f"could not remove all of {folder}: remove it with sudo rm -r {folder}" in \
        env.stdout.getvalue() + env.stderr.getvalue()
