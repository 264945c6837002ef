"""qss-get -i, -u, -p and --rollback: install, update and go back, from offline archives.

Every flow checks the whole archive before it changes anything (:func:`archive.verify`),
then works in a staging folder under ``/opt/qss`` that is removed at the end, whatever
happens. An update builds the new version beside the running one
(:mod:`installer.versions`), saves the configuration files it may change, lets the new
version migrate them, switches ``current`` in one step and restarts the services; a
failure at any step after the switch puts the files and the switch back and restarts
the old version, so the operator is left with a working appliance and one line saying
what failed.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from packaging.version import Version

from qss import lockfile

from . import packages, versions
from .archive import ArchiveError, Manifest, extract, find_archive, verify
from .build import CATALOGUE, platform_tag, python_tag
from .components import QSS_INI, Layout, component_files
from .configure import target_settings
from .environment import Environment
from .files import DeployError, target_path
from .hooks import DataTools
from .services import confirm

#: How long the restarted services have to reach RUNNING before the update is undone.
HEALTH_TIMEOUT = 60.0


def _stamp(env: Environment) -> str:
    return env.clock().strftime("%Y%m%dT%H%M%S")


def _step(env: Environment, text: str) -> float:
    env.say(text)
    return time.monotonic()


def _check_platform(manifest: Manifest, archive: Path) -> None:
    if manifest.python and manifest.python != python_tag():
        raise ArchiveError(f"{archive.name}: made for Python {manifest.python} on "
                           f"{manifest.platform}; this machine runs {python_tag()} on "
                           f"{platform_tag()}: use the archive made for it")
    if manifest.platform and manifest.platform != platform_tag():
        raise ArchiveError(f"{archive.name}: made for {manifest.platform}; this machine is "
                           f"{platform_tag()}: use the archive made for it")


def checked(env: Environment, path: str | None, kind: str) -> tuple[Path, Manifest]:
    """Find and verify the archive of ``kind`` (``path`` or the current directory)."""
    archive = find_archive(path or os.getcwd(), kind)
    env.say(f"checking {archive} ...")
    manifest = verify(archive, kind)
    if kind != "packages":
        _check_platform(manifest, archive)
    env.say(f"  {len(manifest.members)} members match the manifest of {kind} "
            f"{manifest.version} (made {manifest.created})")
    return archive, manifest


def _require_root(env: Environment, what: str) -> None:
    if env.live and env.euid() != 0:
        raise DeployError(f"{what} changes the system: run it with sudo (or under a folder "
                          f"with --root DIR)")


@contextlib.contextmanager
def _locked(env: Environment) -> Iterator[None]:
    home = versions.home(env)
    home.mkdir(parents=True, exist_ok=True)
    try:
        fd = lockfile.hold(home / ".qss-get.lock")
    except lockfile.LockError as exc:
        raise DeployError(f"another qss-get is installing ({exc}): wait for it to "
                          f"finish") from None
    try:
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def _staging(env: Environment, archive: Path, manifest: Manifest) -> Iterator[Path]:
    """The archive's verified members in a folder removed afterwards."""
    folder = versions.home(env) / f".staging-{manifest.kind}-{manifest.version}"
    shutil.rmtree(folder, ignore_errors=True)     # a leftover of a cut
    try:
        env.say(f"extracting {archive.name} ...")
        yield extract(archive, manifest, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- configuration saved for a rollback ---------------------------------------------------

def _config_paths(env: Environment) -> list[str]:
    """The files an update may change: qss.ini and the qss component's files."""
    settings = target_settings(env)
    specs = component_files(("qss",), settings, Layout(bindir=versions.BINDIR), None, True)
    return sorted({QSS_INI, *(s.path for s in specs)})


def save_config(env: Environment, version: str, since: str) -> None:
    """Copy the files an update may change into ``versions/<version>/.qss-update``."""
    where = versions.version_dir(env, version) / versions.UPDATE_DIR
    shutil.rmtree(where, ignore_errors=True)
    (where / "files").mkdir(parents=True)
    present = {}
    for path in _config_paths(env):
        src = target_path(env.root, path)
        present[path] = src.is_file()
        if src.is_file():
            dst = where / "files" / path.lstrip("/")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    (where / "update.json").write_text(json.dumps(
        {"from": since, "to": version, "when": env.clock().isoformat(timespec="seconds"),
         "files": present}, indent=1, sort_keys=True) + "\n")


def restore_config(env: Environment, version: str) -> list[str]:
    """Put back the files saved when ``version`` was installed by an update; returns the
    paths restored (nothing when it was not installed by an update)."""
    where = versions.version_dir(env, version) / versions.UPDATE_DIR
    try:
        record = json.loads((where / "update.json").read_text())
    except (OSError, ValueError):
        return []
    restored = []
    for path, was_there in sorted(record["files"].items()):
        dst = target_path(env.root, path)
        if was_there:
            src = where / "files" / path.lstrip("/")
            if dst.is_file() and dst.read_bytes() == src.read_bytes():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(dst.name + ".qss-restore")
            shutil.copy2(src, tmp)
            os.replace(tmp, dst)
            restored.append(path)
        elif dst.exists():
            dst.unlink()
            restored.append(path)
    return restored


# -- services ---------------------------------------------------------------------------

def restart_services(env: Environment, tools: DataTools) -> None:
    """Restart the services and wait until each is RUNNING (not under ``--root``).

    Raises:
        DeployError: they could not be restarted, or one is not running in time.
    """
    if tools.services is None:
        env.say("services not restarted: not this machine's (--root)")
        return
    env.say("restarting the services ...")
    tools.services.restart_all()
    deadline = time.monotonic() + HEALTH_TIMEOUT
    while True:
        try:
            programs = tools.programs()
        except Exception as exc:       # ProbeError and friends: supervisor not answering
            programs, problem = [], str(exc)
        else:
            problem = ", ".join(f"{p.name} {p.state}" for p in programs
                                if p.state != "RUNNING")
        if programs and not problem:
            env.say("  " + ", ".join(f"{p.name} RUNNING" for p in programs))
            return
        if time.monotonic() >= deadline:
            raise DeployError(f"after the restart: {problem or 'no programs'} "
                              f"(see /var/log/<program>.log)")
        env.sleep(1.0)


# -- the actions --------------------------------------------------------------------------

def update(env: Environment, tools: DataTools, path: str | None) -> None:
    """``qss-get -u [PATH]``: see the module's docstring."""
    _require_root(env, "qss-get -u")
    archive, manifest = checked(env, path, "update")
    old, new = versions.current(env), manifest.version
    if old is None:
        raise DeployError(f"no Quickstart Server installed by qss-get under "
                          f"{'/' + versions.HOME}: install it first (qss-get -i PATH)")
    if Version(new) == Version(old):
        env.say(f"{new} is installed and in use already: nothing to do")
        return
    if Version(new) < Version(old):
        raise DeployError(f"{archive.name} holds {new}, older than {old} in use; to go "
                          f"back to the version before this one: qss-get --rollback")
    with _locked(env), _staging(env, archive, manifest) as staging:
        began = _step(env, f"installing {new} beside {old} ...")
        try:
            folder = versions.create(env, new, staging / "wheels", manifest.requirement,
                                     env.python, env.run_long)
        except DeployError as exc:
            raise DeployError(f"update to {new} failed: {exc}; rolled back, {old} is in "
                              f"use (nothing of it was changed)") from None
        env.say(f"  {folder} ready ({time.monotonic() - began:.0f} s)")
        save_config(env, new, old)
        switched, prior = False, versions.previous(env)
        try:
            env.say("bringing the configuration to the new version ...")
            code, out = env.run_long([str(folder / "bin" / "python"), "-m",
                                      "installer.migrate", "--root", str(env.root),
                                      "--from", old])
            for line in out.splitlines():
                env.say(f"  {line}")
            if code != 0:
                raise DeployError(f"the configuration could not be migrated (exit status "
                                  f"{code})")
            versions.mark_complete(env, new)
            versions.set_link(env, "previous", old)
            versions.set_link(env, "current", new)
            switched = True
            env.say(f"switched /{versions.HOME}/current to {new}")
            for line in versions.link_commands(env, versions.console_scripts(folder),
                                               _stamp(env)):
                env.say(line)
            restart_services(env, tools)
        except BaseException as exc:
            _undo_update(env, tools, old, new, prior, switched)
            if isinstance(exc, DeployError):
                raise DeployError(f"update to {new} failed: {exc}; rolled back, {old} is "
                                  f"in use") from None
            raise
    removed = versions.prune(env, keep=(new, old))
    if removed:
        env.say(f"removed older versions: {', '.join(removed)}")
    env.say(f"Updated the MicroPMU Quickstart Server from {old} to {new}. "
            f"To go back: sudo qss-get --rollback")


def _undo_update(env: Environment, tools: DataTools, old: str, new: str,
                 prior: str | None, switched: bool) -> None:
    env.say(f"rolling back to {old} ...")
    for path in restore_config(env, new):
        env.say(f"  restored {path}")
    if switched:
        versions.set_link(env, "current", old)
        versions.set_link(env, "previous", prior)
        versions.link_commands(env, versions.console_scripts(versions.version_dir(env, old)),
                               _stamp(env))
        try:
            restart_services(env, tools)
        except DeployError as exc:
            env.warn(f"{old} restored, but {exc}")
    _remove_version(env, new)


def _remove_version(env: Environment, version: str) -> None:
    """Remove a version's folder that nothing runs from any more; warn if some of it
    stays (the next update of that version replaces it anyway)."""
    folder = versions.version_dir(env, version)
    shutil.rmtree(folder, ignore_errors=True)
    if folder.exists():
        env.warn(f"could not remove all of {folder}: remove it with sudo rm -r {folder}")


def rollback(env: Environment, tools: DataTools, assume_yes: bool) -> bool:
    """``qss-get --rollback``: back to the previous version; False when cancelled."""
    _require_root(env, "qss-get --rollback")
    cur, prev = versions.current(env), versions.previous(env)
    if cur is None or prev is None:
        raise DeployError(f"nothing to roll back to: {'no previous version' if cur else 'no version'}"
                          f" under /{versions.HOME} (a rollback goes back one update)")
    if not confirm(env, f"Go back from {cur} to {prev} and restart the services? [y/N] ",
                   assume_yes):
        return False
    with _locked(env):
        for path in restore_config(env, cur):
            env.say(f"restored  {path}")
        versions.set_link(env, "current", prev)
        versions.set_link(env, "previous", None)
        for line in versions.link_commands(
                env, versions.console_scripts(versions.version_dir(env, prev)), _stamp(env)):
            env.say(line)
        env.say(f"switched /{versions.HOME}/current to {prev}")
        # Removed only once the services run from the previous version: removing it first
        # pulled files from under the running ones (and whatever they wrote meanwhile, a
        # compiled kernel's cache say, kept the folder).
        restart_services(env, tools)
        _remove_version(env, cur)
    env.say(f"Rolled back the MicroPMU Quickstart Server from {cur} to {prev}. "
            f"To update again: sudo qss-get -u PATH")
    return True


def install(env: Environment, tools: DataTools, path: str | None, *, all_: bool,
            ups: bool, assume_yes: bool, interface: str | None) -> None:
    """``qss-get -i [PATH] [-a] [--ups]``: a fresh install (see the module's docstring)."""
    _require_root(env, "qss-get -i")
    archive, manifest = checked(env, path, "install")
    cur = versions.current(env)
    if cur is not None:
        raise DeployError(f"{cur} is installed already: update it with qss-get -u PATH "
                          f"(a qss-update archive)")
    names = [n for n, p in manifest.packages.items() if p.required]
    if all_:
        names = list(manifest.packages)
    if ups:
        if "apcupsd" not in manifest.packages:
            raise DeployError(f"--ups: {archive.name} holds no apcupsd package")
        names.append("apcupsd")
    names = packages.choose(manifest, names, all_=False)
    missing = [n for n, (required, _) in CATALOGUE.items()
               if required and n not in manifest.packages
               and packages.installed_version(env, n) is None]
    new = manifest.version
    with _locked(env), _staging(env, archive, manifest) as staging:
        if names:
            _step(env, f"installing packages: {', '.join(names)} ...")
            packages.install(env, staging, manifest, names)
        for name in missing:
            env.warn(f"package {name} is needed and neither installed nor in "
                     f"{archive.name}: install it (qss-get -p PATH {name})")
        began = _step(env, f"installing the Quickstart Server {new} ...")
        folder = versions.create(env, new, staging / "wheels", manifest.requirement,
                                 env.python, env.run_long)
        versions.mark_complete(env, new)
        versions.set_link(env, "current", new)
        for line in versions.link_commands(env, versions.console_scripts(folder),
                                           _stamp(env)):
            env.say(line)
        env.say(f"  {folder} ready ({time.monotonic() - began:.0f} s)")
    env.say("writing the default configuration (qss-get --config all) ...")
    argv = [str(folder / "bin" / "qss-get"), "--config", "all", "--yes",
            "--root", str(env.root)]
    if interface:
        argv += ["--interface", interface]
    code, out = env.run_long(argv)
    for line in out.splitlines():
        env.say(f"  {line}")
    if code != 0:
        raise DeployError(f"{new} is installed, but writing its configuration failed (exit "
                          f"status {code}): fix the cause and run: sudo qss-get --config all")
    _data_dirs(env)
    if env.live:
        code, out = env.run(["systemctl", "enable", "supervisor"])
        if code != 0:
            env.warn(f"systemctl enable supervisor failed: {out}")
    env.say(f"Installed the MicroPMU Quickstart Server {new}.")
    if env.live and not assume_yes:
        env.stdout.write("Press Enter to reboot now and finish the installation "
                         "(Ctrl+C: reboot later with sudo reboot) ")
        env.stdout.flush()
        if env.stdin.readline().endswith("\n"):
            env.run(["systemctl", "reboot"])
    elif env.live:
        env.say("Reboot to finish the installation: sudo reboot")


def _data_dirs(env: Environment) -> None:
    """/ssd/data, /ssd/srv and the logs' folder under a ``--root`` (on the appliance
    systemd-tmpfiles makes them, owned by the service user)."""
    if env.live:
        return
    settings = target_settings(env)
    for path in (settings.paths.data, settings.paths.srv, "/var/log"):
        target_path(env.root, path).mkdir(parents=True, exist_ok=True)


def install_packages(env: Environment, path_and_names: list[str], all_: bool) -> None:
    """``qss-get -p [PATH] PKG... [-a]``."""
    _require_root(env, "qss-get -p")
    path, names = split_path(path_and_names)
    if not names and not all_:
        raise DeployError("name the packages to install (qss-get -p [PATH] PKG...) or give "
                          "-a for all of them; 'qss-get -p PATH -a' lists an archive's")
    archive, manifest = checked(env, path, "packages")
    chosen = packages.choose(manifest, names, all_)
    before = {n: packages.installed_version(env, n) for n in chosen}
    with _locked(env), _staging(env, archive, manifest) as staging:
        _step(env, f"installing {', '.join(chosen)} ...")
        packages.install(env, staging, manifest, chosen)
    for n in chosen:
        now = packages.installed_version(env, n)
        was = f"was {before[n]}" if before[n] else "new"
        env.say(f"  {n} {now or '?'} ({was})")
    env.say(f"Done: {len(chosen)} package{'s' if len(chosen) != 1 else ''} installed from "
            f"{archive.name}.")


def split_path(items: list[str]) -> tuple[str | None, list[str]]:
    """The manual's ``-p [archive path] packages...``: the first item is the path when it
    names a file or folder (or looks like one), else every item is a package name."""
    if items and (os.path.exists(items[0]) or "/" in items[0]
                  or items[0].endswith(".tar.gz")):
        return items[0], items[1:]
    return None, list(items)


