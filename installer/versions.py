"""The installed versions of the suite: one Python environment per version, one switch.

::

    /opt/qss/versions/1.4.0/     a virtual environment holding the suite 1.4.0
    /opt/qss/versions/1.5.0/
    /opt/qss/current  -> versions/1.5.0      what runs (supervisord's commands name
                                             /opt/qss/current/bin/...)
    /opt/qss/previous -> versions/1.4.0      what qss-get --rollback goes back to
    /usr/local/bin/qss-get -> ../../../opt/qss/current/bin/qss-get   (each command)

A new version is built beside the running one and only then made current, by renaming a
new symlink over ``current``: one atomic step, so a power cut leaves either version
whole. A version's folder holds ``.incomplete`` until it is complete; one left by a cut
is removed by the next run. Links are relative so that a tree made under ``--root`` is
valid where it lands.
"""
from __future__ import annotations

import configparser
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from qss.fsync import fsync_dir

from .environment import Environment
from .files import DeployError

HOME = "opt/qss"
BINDIR = "/opt/qss/current/bin"     # the commands as the appliance names them
LINKDIR = "usr/local/bin"
INCOMPLETE = ".incomplete"
UPDATE_DIR = ".qss-update"          # inside a version: how it was installed, for rollback
#: The suite's distribution: its console scripts, read from the installed version's own
#: metadata, are linked into /usr/local/bin (a new command appears with its version).
DIST = "qss"


def home(env: Environment) -> Path:
    """``/opt/qss`` under the root."""
    return env.root / HOME


def version_dir(env: Environment, version: str) -> Path:
    """``/opt/qss/versions/<version>`` under the root."""
    return home(env) / "versions" / version


def _link_target(link: Path) -> str | None:
    try:
        return os.readlink(link)
    except OSError:
        return None


def linked_version(env: Environment, name: str) -> str | None:
    """The version ``/opt/qss/<name>`` (current or previous) points at, if it is whole."""
    target = _link_target(home(env) / name)
    if not target:
        return None
    version = Path(target).name
    folder = version_dir(env, version)
    if not folder.is_dir() or (folder / INCOMPLETE).exists():
        return None
    return version


def current(env: Environment) -> str | None:
    """The version that runs, or None (not installed this way)."""
    return linked_version(env, "current")


def previous(env: Environment) -> str | None:
    """The version ``--rollback`` goes back to, or None."""
    return linked_version(env, "previous")


def set_link(env: Environment, name: str, version: str | None) -> None:
    """Point ``/opt/qss/<name>`` at ``versions/<version>`` (None: remove it) atomically."""
    link = home(env) / name
    if version is None:
        try:
            link.unlink()
        except FileNotFoundError:
            pass
        return
    tmp = link.with_name(f".{name}.new")
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    os.symlink(f"versions/{version}", tmp)
    os.replace(tmp, link)
    fsync_dir(link.parent)


Runner = Callable[[Sequence[str]], tuple[int, str]]


def create(env: Environment, version: str, wheels: Path, requirement: str,
           python: str, run: Runner) -> Path:
    """Build ``versions/<version>``: a virtual environment from ``python`` with
    ``requirement`` installed from ``wheels`` only (no network). Marked incomplete until
    its own ``qss-get --version`` answers with ``version``.

    Raises:
        DeployError: naming the step that failed; the folder is removed.
    """
    folder = version_dir(env, version)
    if folder.exists():
        if current(env) == version or previous(env) == version:
            raise DeployError(f"{folder} is in use (current or previous); not replaced")
        shutil.rmtree(folder)      # a leftover of a cut or failed attempt
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        steps = [
            ("creating the Python environment", [python, "-m", "venv", str(folder)]),
            ("installing the wheels", [str(folder / "bin" / "python"), "-m", "pip", "install",
                                       "--no-index", "--find-links", str(wheels),
                                       "--disable-pip-version-check", "--no-input",
                                       "--quiet", requirement]),
        ]
        for what, argv in steps:
            code, out = run(argv)
            if code != 0:
                raise DeployError(f"{what} for {version} failed (exit status {code}): "
                                  f"{_last_lines(out)}")
            # Not a usable version until the end (a folder without it left by a cut is
            # never linked, and the next attempt replaces it).
            (folder / INCOMPLETE).write_text("being installed by qss-get\n")
        code, out = run([str(folder / "bin" / "qss-get"), "--version"])
        if code != 0 or not out.strip().endswith(f" {version}"):
            raise DeployError(f"the new version's qss-get --version answered "
                              f"{_last_lines(out)!r} (exit status {code}), not {version}")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def mark_complete(env: Environment, version: str) -> None:
    """Remove the version's ``.incomplete`` marker."""
    try:
        (version_dir(env, version) / INCOMPLETE).unlink()
    except FileNotFoundError:
        pass


def _last_lines(text: str, n: int = 3) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:]) or "no message"


def console_scripts(folder: Path) -> list[str]:
    """The suite's console scripts as the version in ``folder`` declares them."""
    names: set[str] = set()
    for ep in folder.glob(f"lib/python*/site-packages/{DIST}-*.dist-info/entry_points.txt"):
        cp = configparser.ConfigParser()
        cp.read(ep, encoding="utf-8")
        if cp.has_section("console_scripts"):
            names.update(cp.options("console_scripts"))
    return sorted(names)


def link_commands(env: Environment, names: Sequence[str], stamp: str) -> list[str]:
    """``/usr/local/bin/<name>`` -> ``/opt/qss/current/bin/<name>`` for each name, so the
    commands follow ``current``. A file already there that is not such a link is moved to
    ``<name>.qss-bak-<stamp>`` (said in the returned lines)."""
    lines: list[str] = []
    if not names:
        return lines
    linkdir = env.root / LINKDIR
    linkdir.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(home(env) / "current" / "bin", linkdir)
    for name in names:
        link = linkdir / name
        want = f"{rel}/{name}"
        if _link_target(link) == want:
            continue
        if link.exists() or link.is_symlink():
            if not (link.is_symlink() and "opt/qss/" in (_link_target(link) or "")):
                backup = link.with_name(f"{name}.qss-bak-{stamp}")
                os.replace(link, backup)
                lines.append(f"moved     /{LINKDIR}/{name} to {backup.name} (a command of "
                             f"the same name that was not the suite's)")
        tmp = link.with_name(f".{name}.qss-new")
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        os.symlink(want, tmp)
        os.replace(tmp, link)
    return lines


def prune(env: Environment, keep: Sequence[str | None]) -> list[str]:
    """Remove every version folder but those in ``keep``; returns the versions removed."""
    removed = []
    versions = home(env) / "versions"
    if not versions.is_dir():
        return removed
    for folder in sorted(versions.iterdir()):
        if folder.is_dir() and folder.name not in keep:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed
