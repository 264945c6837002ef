"""Configuration migration during an update, and its undoing when a later step fails.

The update's orchestration runs here with the version's Python environment replaced by
a small folder (building a real one is test_qss_get_update.py's job, ~25 s each): what
matters is the order of saving, migrating, switching and putting back.
"""
from __future__ import annotations

import io
import os
import stat
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from installer import update, versions
from installer.build import build
from installer.environment import Environment, run_tool
from installer.files import DeployError
from installer.migrate import Migration, migrate, pending

from archive_support import snapshot


def _env(root: Path) -> Environment:
    return Environment(root=root, stdin=io.StringIO(), stdout=io.StringIO(),
                       stderr=io.StringIO(), bindir=versions.BINDIR)


def test_pending_steps_are_those_newer_than_the_old_version_in_order():
    steps = [Migration("1.10.0", "c", lambda e: []), Migration("1.2.0", "a", lambda e: []),
             Migration("1.9.0", "b", lambda e: [])]
    assert [m.description for m in pending("1.2.0", steps)] == ["b", "c"]
    assert [m.description for m in pending("0.1.0", steps)] == ["a", "b", "c"]
    assert pending("1.10.0", steps) == []


def test_migrate_runs_the_steps_then_renders_the_qss_component(tmp_path):
    env = _env(tmp_path)
    ran = []

    def rename_key(e: Environment) -> list[str]:
        ran.append(e.root)
        return ["/etc/qss/qss.ini: [old] key renamed"]

    assert migrate(env, "0.1.0", [Migration("0.2.0", "rename a key", rename_key)])
    out = env.stdout.getvalue()
    assert ran == [tmp_path]
    assert "migrating for 0.2.0: rename a key\n  /etc/qss/qss.ini: [old] key renamed" in out
    conf = (tmp_path / "etc/supervisor/conf.d/qss.conf").read_text()
    assert "command=/opt/qss/current/bin/qss-btrdb --config /etc/qss/qss.ini" in conf
    # Twice: nothing more to do (an update may be retried).
    env2 = _env(tmp_path)
    assert migrate(env2, "0.1.0", [])
    assert "nothing to do" in env2.stdout.getvalue()


def _fake_version(folder: Path, migrate_fails: bool) -> None:
    """A version folder whose python is this one (the real migration runs), or one that
    fails."""
    (folder / "bin").mkdir(parents=True)
    py = folder / "bin" / "python"
    py.write_text("#!/bin/sh\necho 'migration failed: pretend'\nexit 1\n" if migrate_fails
                  else f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    py.chmod(py.stat().st_mode | stat.S_IXUSR)
    (folder / versions.INCOMPLETE).write_text("")


@pytest.fixture(scope="module")
def small_update(tmp_path_factory):
    """A real update archive 2.0.0 (dependencies' wheels not needed: creation is faked)."""
    out = tmp_path_factory.mktemp("usb")
    empty = tmp_path_factory.mktemp("wheelhouse")
    # An empty wheelhouse cannot satisfy the pins: build the suite's wheel only.
    from installer import build as build_module
    original = build_module.fetch_wheels
    build_module.fetch_wheels = lambda dest, wheelhouse=None: []
    try:
        return build("update", "2.0.0", out, wheelhouse=empty, say=lambda _: None)
    finally:
        build_module.fetch_wheels = original


def _installed_1(root: Path) -> None:
    """Version 1.0.0 in place as qss-get -i leaves it (its environment faked)."""
    _fake_version(versions.version_dir(_env(root), "1.0.0"), False)
    versions.mark_complete(_env(root), "1.0.0")
    versions.set_link(_env(root), "current", "1.0.0")
    migrate(_env(root), "0.0.1", [])


@pytest.mark.parametrize("fails_at", ["migrate", "restart"])
def test_a_failure_after_saving_the_configuration_puts_everything_back(
        small_update, tmp_path, monkeypatch, fails_at):
    root = tmp_path / "root"
    _installed_1(root)
    conf = root / "etc/supervisor/conf.d/qss.conf"
    conf.write_text("; an operator's hand edit that the new version would replace\n"
                    + conf.read_text())
    before = snapshot(root)

    def fake_create(env, version, wheels, requirement, python, run):
        folder = versions.version_dir(env, version)
        _fake_version(folder, fails_at == "migrate")
        return folder

    class Services:
        restarts = 0

        def restart_all(self):
            Services.restarts += 1
            if Services.restarts == 1:
                raise DeployError("supervisorctl restart all failed: btrdb: ERROR (spawn error)")

    monkeypatch.setattr(versions, "create", fake_create)
    from installer.hooks import DataTools
    from qss.status import Program
    tools = DataTools(services=Services(),
                      programs=lambda: [Program("btrdb", "RUNNING", "pid 1, uptime 0:00:05")])
    env = replace(_env(root), run_long=lambda argv: run_tool(argv, combined=True))
    with pytest.raises(DeployError) as info:
        update.update(env, tools, str(small_update))
    message = str(info.value)
    assert message.startswith("update to 2.0.0 failed: ")
    assert message.endswith("rolled back, 1.0.0 is in use")
    if fails_at == "migrate":
        assert "the configuration could not be migrated (exit status 1)" in message
        assert Services.restarts == 0
    else:
        assert "btrdb: ERROR (spawn error)" in message
        assert Services.restarts == 2        # the new version's, then the old one's again
        out = env.stdout.getvalue()
        assert "  replaced  " in out and "conf.d/qss.conf" in out     # by the migration
        assert "restored /etc/supervisor/conf.d/qss.conf" in out
    assert os.readlink(root / "opt/qss/current") == "versions/1.0.0"
    assert not (root / "opt/qss/previous").exists()
    after = snapshot(root)
    # Exactly as before but for the lock file and the folders' and links' times; a migration that
    # replaced qss.conf leaves its backup beside it (the restored file is the old one).
    strip = (lambda snap: {k: (m, s, None if stat.S_ISDIR(m) or stat.S_ISLNK(m) else t, l)
                           for k, (m, s, t, l) in snap.items()
                           if ".qss-get.lock" not in k and ".qss-bak-" not in k})
    assert strip(after) == strip(before)
    assert conf.read_text().startswith("; an operator's hand edit")


def test_update_refuses_without_an_installed_version(small_update, tmp_path):
    env = _env(tmp_path)
    with pytest.raises(DeployError, match="no Quickstart Server installed by qss-get"):
        update.update(env, update.DataTools(), str(small_update))
    assert list(tmp_path.iterdir()) == []


def test_update_refuses_an_archive_for_another_python(small_update, tmp_path, monkeypatch):
    _installed_1(tmp_path)
    monkeypatch.setattr(update, "python_tag", lambda: "cp399")
    with pytest.raises(DeployError, match="made for Python cp3.* this machine runs cp399"):
        update.update(_env(tmp_path), update.DataTools(), str(small_update))


def test_live_update_needs_root(small_update):
    env = replace(_env(Path("/")), euid=lambda: 1000)
    with pytest.raises(DeployError, match="run it with sudo"):
        update.update(env, update.DataTools(), str(small_update))
