"""Building the offline archives from a checkout (``python -m installer build``).

The suite's wheel is built from a copy of the checkout with the version set, so the
working tree is never touched. The Python dependencies are exactly the versions this
environment runs (and was tested with), as wheels for this interpreter and platform,
fetched by ``pip download`` from ``--wheelhouse`` (offline) or the package index. Debian
packages come from ``--debs DIR``, one folder per package (``DIR/apcupsd/*.deb``: the
package and what it needs; fill them with ``apt-get download``).

Reproducible: members are sorted, owned by root, dated ``SOURCE_DATE_EPOCH`` (default:
the checkout's last commit), and the gzip header carries no name or time, so the same
checkout and wheels give the same bytes.
"""
from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from .archive import KINDS, MANIFEST, Manifest, Package, archive_name
from .files import DeployError

DIST = "qss"
TEMPLATES = Path(__file__).with_name("templates")
_VERSION_LINE = re.compile(r'^__version__ = "[^"]*"$', re.M)

#: The Debian packages qss-get knows (manual ch. 14): name -> (required, what it is for).
CATALOGUE: dict[str, tuple[bool, str]] = {
    "supervisor": (True, "runs and restarts the services btrdb, receiver and sync2q"),
    "shorewall": (True, "the firewall (qss-get --config shorewall)"),
    "python3-venv": (True, "the Python environments each version of the suite runs in"),
    "apcupsd": (False, "shuts the server down cleanly on a UPS's battery (--ups)"),
    "mongodb": (False, "a MongoDB queue, as on the fielded appliances ([queue] url)"),
}


class BuildError(DeployError):
    """An archive that cannot be built; the message says why."""


def python_tag() -> str:
    """The interpreter the wheels are for, e.g. ``cp311``."""
    return f"cp{sys.version_info.major}{sys.version_info.minor}"


def platform_tag() -> str:
    """The platform the wheels are for, e.g. ``linux-x86_64``."""
    return sysconfig.get_platform()


def dependency_pins(dist: str = DIST) -> list[str]:
    """``name==version`` of every distribution ``dist`` needs at run time, as installed
    in this environment (its extras excluded), sorted."""
    env = default_environment()
    pins: dict[str, str] = {}

    def walk(name: str) -> None:
        d = metadata.distribution(name)
        key = canonicalize_name(d.metadata["Name"])
        if key in pins:
            return
        pins[key] = d.version
        for text in d.requires or []:
            req = Requirement(text)
            if req.marker and not req.marker.evaluate({**env, "extra": ""}):
                continue
            walk(req.name)

    try:
        walk(dist)
    except metadata.PackageNotFoundError as exc:
        raise BuildError(f"{exc.args[0]} is not installed in this environment: install the "
                         f"suite first (./dev setup)") from None
    pins.pop(canonicalize_name(dist))
    return sorted(f"{n}=={v}" for n, v in pins.items())


def _pip(args: list[str], what: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise BuildError(f"{what} failed (pip exit status {proc.returncode}):\n{tail}")


def fetch_wheels(dest: Path, wheelhouse: Path | None = None) -> list[Path]:
    """Put a wheel of every pinned dependency in ``dest`` (``pip download``, binary only,
    for this interpreter); from ``wheelhouse`` alone when given, else the index."""
    dest.mkdir(parents=True, exist_ok=True)
    source = (["--no-index", "--find-links", str(wheelhouse)] if wheelhouse else [])
    _pip(["download", "--quiet", "--disable-pip-version-check", "--only-binary", ":all:",
          "--no-deps", "-d", str(dest), *source, *dependency_pins()],
         f"fetching the dependencies' wheels{' from ' + str(wheelhouse) if wheelhouse else ''}")
    return sorted(dest.glob("*.whl"))


#: Built files that git ignores but the wheel ships: the plotter's page (npm, ./dev setup).
BUILT = ("plotter/static",)


def source_files(checkout: Path) -> list[Path]:
    """The checkout's files to build from: git's tracked and untracked-but-not-ignored
    files and the :data:`BUILT` ones, or (no git) everything but virtual environments,
    caches and build output."""
    proc = subprocess.run(["git", "-C", str(checkout), "ls-files", "-z", "--cached",
                           "--others", "--exclude-standard"], capture_output=True)
    if proc.returncode == 0:
        names = [n for n in proc.stdout.decode().split("\0") if n]
        names += [str(p.relative_to(checkout)) for d in BUILT
                  for p in sorted((checkout / d).glob("*")) if p.is_file()]
        return sorted({Path(n) for n in names if (checkout / n).is_file()})
    skip = {".git", ".venv", "__pycache__", "build", "dist", ".pytest_cache", ".hypothesis"}
    return sorted(p.relative_to(checkout) for p in checkout.rglob("*")
                  if p.is_file() and not skip & set(p.relative_to(checkout).parts)
                  and not p.name.endswith(".egg-info"))


def source_date_epoch(checkout: Path) -> int:
    """``$SOURCE_DATE_EPOCH``, else the checkout's last commit time, else now."""
    if os.environ.get("SOURCE_DATE_EPOCH", "").isdigit():
        return int(os.environ["SOURCE_DATE_EPOCH"])
    proc = subprocess.run(["git", "-C", str(checkout), "log", "-1", "--format=%ct"],
                          capture_output=True, text=True)
    out = proc.stdout.strip()
    return int(out) if proc.returncode == 0 and out.isdigit() else int(dt.datetime.now().timestamp())


def build_suite_wheel(checkout: Path, version: str, dest: Path, epoch: int) -> Path:
    """Build the suite's wheel at ``version`` from a copy of ``checkout`` into ``dest``."""
    with tempfile.TemporaryDirectory(prefix="qss-build-") as tmp:
        src = Path(tmp) / "src"
        for rel in source_files(checkout):
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(checkout / rel, src / rel)
        init = src / "qss" / "__init__.py"
        if not init.is_file():
            raise BuildError(f"{checkout}: not a checkout of the suite (no qss/__init__.py)")
        text, n = _VERSION_LINE.subn(f'__version__ = "{version}"', init.read_text())
        if n != 1:
            raise BuildError(f"{init}: no __version__ line to set")
        init.write_text(text)
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--no-build-isolation", "-w", str(dest), str(src)],
            capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
            raise BuildError(f"building the suite's wheel failed:\n{tail}")
    wheels = [w for w in dest.glob("*.whl")
              if parse_wheel_filename(w.name)[0] == DIST
              and parse_wheel_filename(w.name)[1] == Version(version)]
    if len(wheels) != 1:
        raise BuildError(f"building the suite's wheel gave {len(wheels)} wheels of {version}")
    return wheels[0]


def debian_packages(debs: Path | None) -> dict[str, list[Path]]:
    """``debs/<package>/*.deb`` for the packages of :data:`CATALOGUE` found there, each
    list with the package's own .deb first."""
    found: dict[str, list[Path]] = {}
    if debs is None:
        return found
    if not debs.is_dir():
        raise BuildError(f"--debs {debs}: no such folder")
    for name in CATALOGUE:
        files = sorted((debs / name).glob("*.deb"))
        if files:
            own = [f for f in files if f.name.startswith(f"{name}_")]
            found[name] = own + [f for f in files if f not in own]
    unknown = sorted(p.name for p in debs.iterdir() if p.is_dir() and p.name not in CATALOGUE)
    if unknown:
        raise BuildError(f"--debs {debs}: unknown package folder(s) {', '.join(unknown)} "
                         f"(known: {', '.join(CATALOGUE)})")
    return found


@dataclass
class _Member:
    name: str          # inside the archive's folder
    data: bytes | None = None
    path: Path | None = None

    def open(self):
        return io.BytesIO(self.data) if self.data is not None else open(self.path, "rb")


def _sha256(m: _Member) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    with m.open() as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def write_archive(out: Path, manifest: Manifest, members: list[_Member], epoch: int) -> None:
    """Write the archive reproducibly: sorted members, fixed owner and time, plain gzip
    header; atomically (a ``.partial`` file renamed when complete)."""
    folder = manifest.folder
    partial = out.with_name(out.name + ".partial")
    entries = [_Member(MANIFEST, data=manifest.to_json().encode())] + sorted(
        members, key=lambda m: m.name)
    dirs = sorted({"/".join(m.name.split("/")[:i]) for m in entries
                   for i in range(1, m.name.count("/") + 1)})

    def info(name: str, size: int = 0, isdir: bool = False) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(f"{folder}/{name}" if name else folder)
        ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = epoch, 0, 0, "root", "root"
        ti.type = tarfile.DIRTYPE if isdir else tarfile.REGTYPE
        ti.mode = 0o755 if isdir else 0o644
        ti.size = size
        return ti

    with open(partial, "wb") as raw:
        # Wheels and .debs are compressed already: a fast level costs nothing in size.
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=epoch,
                           compresslevel=3) as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                tar.addfile(info("", isdir=True))
                for d in dirs:
                    tar.addfile(info(d, isdir=True))
                for m in entries:
                    size = len(m.data) if m.data is not None else m.path.stat().st_size
                    with m.open() as f:
                        tar.addfile(info(m.name, size), f)
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(partial, out)


def build(kind: str, version: str, outdir: Path, *, checkout: Path | None = None,
          wheelhouse: Path | None = None, debs: Path | None = None,
          say: Callable[[str], None] = print) -> Path:
    """Build ``qss-<kind>-<version>.tar.gz`` in ``outdir``; returns its path.

    install: the suite's wheel, the dependencies' wheels, the Debian packages found in
    ``debs`` and the templates; update: the same without Debian packages; packages: the
    Debian packages alone (at least one).
    """
    if kind not in KINDS:
        raise BuildError(f"--kind {kind!r}: choose one of {', '.join(KINDS)}")
    try:
        if str(Version(version)) != version:
            raise ValueError
    except ValueError:
        raise BuildError(f"--version {version!r}: give a version such as 1.4.0") from None
    checkout = (checkout or Path(__file__).resolve().parent.parent)
    outdir.mkdir(parents=True, exist_ok=True)
    epoch = source_date_epoch(checkout)
    created = dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    members: list[_Member] = []
    packages: dict[str, Package] = {}
    with tempfile.TemporaryDirectory(prefix="qss-archive-") as tmp:
        requirement = ""
        if kind in ("install", "update"):
            wheels = Path(tmp) / "wheels"
            say(f"building the suite's wheel {version} from {checkout}")
            own = build_suite_wheel(checkout, version, wheels, epoch)
            say("fetching the dependencies' wheels"
                + (f" from {wheelhouse}" if wheelhouse else " from the package index"))
            fetch_wheels(wheels, wheelhouse)
            members += [_Member(f"wheels/{w.name}", path=w) for w in sorted(wheels.glob("*.whl"))]
            requirement = f"{DIST}=={version}"
            assert own.exists()
            members += [_Member(f"templates/{p.relative_to(TEMPLATES).as_posix()}", path=p)
                        for p in sorted(TEMPLATES.rglob("*")) if p.is_file()]
        if kind in ("install", "packages"):
            for name, files in debian_packages(debs).items():
                required, description = CATALOGUE[name]
                rels = [f"debs/{name}/{f.name}" for f in files]
                packages[name] = Package(name, required, description, tuple(rels))
                members += [_Member(r, path=f) for r, f in zip(rels, files)]
            if kind == "packages" and not packages:
                raise BuildError("a packages archive needs Debian packages: --debs DIR with "
                                 f"one folder per package ({', '.join(CATALOGUE)})")
        elif debs is not None:
            raise BuildError("--debs goes with --kind install or packages")
        hashes = {m.name: _sha256(m) for m in members}
        manifest = Manifest(kind, version, created, python_tag(), platform_tag(),
                            requirement, packages, hashes)
        out = outdir / archive_name(kind, version)
        write_archive(out, manifest, members, epoch)
    total = out.stat().st_size
    say(f"wrote {out} ({len(members)} members, {total / 1e6:.1f} MB)")
    return out
