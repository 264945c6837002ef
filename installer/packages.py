"""Debian packages from an archive: which to install, and installing them.

On the appliance (``/``) apt-get installs the archive's ``.deb`` files, resolving what
they need among themselves and what is installed, never downloading (a closed network);
the operator's changed configuration files are kept (``--force-confold``). Under
``--root DIR`` dpkg installs into DIR's own package database (``dpkg --root``), so a
folder can be prepared as an image without touching this machine.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .archive import Manifest
from .environment import Environment
from .files import DeployError


class UnknownPackage(DeployError):
    """A package name the archive does not hold; the message lists the ones it does."""


def choose(manifest: Manifest, names: Iterable[str], all_: bool) -> list[str]:
    """The packages to install: ``names`` (checked against the archive) or, with
    ``all_``, every package of the archive; in the archive's order, required first.

    Raises:
        UnknownPackage: a name the archive does not hold.
    """
    names = list(dict.fromkeys(names))
    known = sorted(manifest.packages, key=lambda n: (not manifest.packages[n].required, n))
    unknown = [n for n in names if n not in manifest.packages]
    if unknown:
        listing = "; ".join(
            f"{n} ({'required' if manifest.packages[n].required else 'optional'}: "
            f"{manifest.packages[n].description})" for n in known) or "none"
        raise UnknownPackage(f"no package {', '.join(repr(n) for n in unknown)} in "
                             f"qss-packages-{manifest.version}; it holds: {listing}")
    if all_:
        return known
    return [n for n in known if n in names]


def installed_version(env: Environment, name: str) -> str | None:
    """The installed version of Debian package ``name`` on the target, or None."""
    argv = ["dpkg-query", "-W", "-f=${Status}|${Version}", name]
    if not env.live:
        argv.insert(1, f"--admindir={env.root / 'var/lib/dpkg'}")
    code, out = env.run(argv)
    if code != 0:
        return None
    status, _, version = out.strip().partition("|")
    return version if status.endswith(" installed") else None


def _dpkg_admindir(root: Path) -> None:
    """The files dpkg needs in a root that has no package database yet."""
    admin = root / "var/lib/dpkg"
    for d in ("updates", "info", "triggers"):
        (admin / d).mkdir(parents=True, exist_ok=True)
    for f in ("status", "available"):
        (admin / f).touch(exist_ok=True)


def install(env: Environment, folder: Path, manifest: Manifest, names: list[str]) -> None:
    """Install the packages ``names`` from the extracted archive in ``folder``.

    Raises:
        DeployError: apt-get or dpkg failed; its last lines are in the message.
    """
    files = [str(folder / f) for n in names for f in manifest.packages[n].files]
    if not files:
        return
    if env.live:
        argv = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y",
                "--no-download", "-o", "Dpkg::Options::=--force-confold", *files]
    else:
        _dpkg_admindir(env.root)
        argv = ["dpkg", f"--root={env.root}", "--force-confold", "-i", *files]
        if env.euid() != 0:
            argv.insert(2, "--force-not-root")
    code, out = env.run(argv)
    if code != 0:
        tail = " | ".join(line.strip() for line in out.strip().splitlines()[-3:])
        raise DeployError(f"installing {', '.join(names)} failed ({argv[0] if argv[0] != 'env' else 'apt-get'} exit status "
                          f"{code}): {tail}")
