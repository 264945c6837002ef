"""The offline archives: names, the manifest, verification and safe extraction.

An archive ``qss-<kind>-<version>.tar.gz`` (kind ``install``, ``update`` or ``packages``)
holds one folder ``qss-<kind>-<version>/`` with ``MANIFEST.json`` and the members it
lists: ``wheels/*.whl`` (the suite and every Python dependency, for ``pip install
--no-index``), ``debs/<package>/*.deb`` (a Debian package and what it needs),
``templates/...`` (the configuration templates). The manifest names the kind, the
version, when it was made, the Python and platform the wheels are for, the Debian
packages, and the SHA-256 and size of every other member.

Nothing is trusted before it is checked: :func:`verify` reads the whole archive once and
writes nothing; it refuses any member that is not a plain file or folder inside the
archive's own folder (absolute names, ``..``, links, devices), any member the manifest
does not list, any listed member that is missing, and any whose bytes differ, naming the
member. :func:`extract` then writes only the members it verified, hashing them again as
it writes (the file could have changed between the two reads), into a new folder.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from packaging.version import InvalidVersion, Version

from .files import DeployError

KINDS = ("install", "update", "packages")
MANIFEST = "MANIFEST.json"
FORMAT = 1
_NAME = re.compile(r"^qss-(install|update|packages)-(.+)\.tar\.gz$")
_CHUNK = 1 << 20


class ArchiveError(DeployError):
    """An archive that cannot be used; the message names the archive and the problem."""


def archive_name(kind: str, version: str) -> str:
    """``qss-<kind>-<version>.tar.gz``."""
    return f"qss-{kind}-{version}.tar.gz"


def parse_name(name: str) -> tuple[str, Version] | None:
    """(kind, version) of an archive's file name, or None when it is not one."""
    m = _NAME.match(name)
    if not m:
        return None
    try:
        return m.group(1), Version(m.group(2))
    except InvalidVersion:
        return None


@dataclass(frozen=True)
class Package:
    """A Debian package in an archive: its ``.deb`` files (the package first, then what
    it needs that a minimal Debian/Ubuntu server may lack)."""

    name: str
    required: bool
    description: str
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Manifest:
    """What an archive says it holds (``MANIFEST.json``)."""

    kind: str
    version: str
    created: str
    python: str = ""           # e.g. cp311: the wheels' interpreter
    platform: str = ""         # e.g. linux-x86_64
    requirement: str = ""      # what pip installs: qss==<version>
    packages: dict[str, Package] = field(default_factory=dict)
    members: dict[str, tuple[str, int]] = field(default_factory=dict)  # path: (sha256, size)

    @property
    def folder(self) -> str:
        """The archive's one top folder."""
        return f"qss-{self.kind}-{self.version}"

    def to_json(self) -> str:
        """The manifest as written into the archive (sorted, so builds are reproducible)."""
        doc = {
            "format": FORMAT, "kind": self.kind, "version": self.version,
            "created": self.created, "python": self.python, "platform": self.platform,
            "requirement": self.requirement,
            "packages": {n: {"required": p.required, "description": p.description,
                             "files": list(p.files)}
                         for n, p in sorted(self.packages.items())},
            "members": {m: {"sha256": h, "size": s}
                        for m, (h, s) in sorted(self.members.items())},
        }
        return json.dumps(doc, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: bytes, where: str) -> Manifest:
        """Parse a manifest; :class:`ArchiveError` naming ``where`` when it is not one."""
        try:
            doc = json.loads(text)
            if doc.get("format") != FORMAT:
                raise ArchiveError(f"{where}: {MANIFEST} has format {doc.get('format')!r}, "
                                   f"this qss-get reads format {FORMAT}: use a newer qss-get")
            kind, version = doc["kind"], doc["version"]
            if kind not in KINDS:
                raise ValueError(f"kind {kind!r}")
            Version(version)
            members = {str(m): (str(v["sha256"]), int(v["size"]))
                       for m, v in doc["members"].items()}
            packages = {str(n): Package(str(n), bool(p["required"]), str(p["description"]),
                                        tuple(str(f) for f in p["files"]))
                        for n, p in doc.get("packages", {}).items()}
            return cls(kind, version, str(doc["created"]), str(doc.get("python", "")),
                       str(doc.get("platform", "")), str(doc.get("requirement", "")),
                       packages, members)
        except ArchiveError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, InvalidVersion) as exc:
            raise ArchiveError(f"{where}: {MANIFEST} is not a valid manifest ({exc})") from None


def find_archive(path: str | os.PathLike, kind: str) -> Path:
    """The archive of ``kind`` to use: ``path`` itself when it is a file, else the newest
    version (not the newest file) of ``qss-<kind>-*.tar.gz`` in the folder ``path``.

    Raises:
        ArchiveError: no such file or folder, a file of another kind, or none in the folder.
    """
    p = Path(path)
    if p.is_file():
        parsed = parse_name(p.name)
        if parsed and parsed[0] != kind:
            raise ArchiveError(f"{p}: a qss-{parsed[0]} archive; this needs a "
                               f"qss-{kind}-X.Y.Z.tar.gz")
        return p
    if not p.is_dir():
        raise ArchiveError(f"{p}: no such file or folder (give the folder holding "
                           f"qss-{kind}-X.Y.Z.tar.gz, e.g. the USB drive at /mnt)")
    found = [(parsed[1], child) for child in p.iterdir()
             if (parsed := parse_name(child.name)) and parsed[0] == kind and child.is_file()]
    if not found:
        others = sorted(c.name for c in p.iterdir() if parse_name(c.name))
        hint = f" (it holds {', '.join(others)})" if others else ""
        raise ArchiveError(f"no qss-{kind}-*.tar.gz in {p}{hint}")
    return max(found)[1]


def _member_path(info: tarfile.TarInfo, where: str) -> PurePosixPath:
    """The member's name, checked: relative, no ``..``, a plain file or folder."""
    name = info.name
    pure = PurePosixPath(name)
    if name.startswith("/") or pure.is_absolute():
        raise ArchiveError(f"{where}: member {name!r} has an absolute path: refused")
    if ".." in pure.parts:
        raise ArchiveError(f"{where}: member {name!r} leaves the archive's folder (..): "
                           f"refused")
    if info.issym() or info.islnk():
        raise ArchiveError(f"{where}: member {name!r} is a link (to {info.linkname!r}): "
                           f"refused")
    if not (info.isfile() or info.isdir()):
        raise ArchiveError(f"{where}: member {name!r} is not a plain file or folder: refused")
    return pure


@contextlib.contextmanager
def _reading(archive: Path) -> Iterator[None]:
    """Damaged or cut-short data, wherever it shows up, as one :class:`ArchiveError`."""
    try:
        yield
    except (tarfile.TarError, EOFError, OSError, UnicodeError, zlib.error) as exc:
        # gzip raises BadGzipFile (an OSError), EOFError or zlib.error on damaged data.
        raise ArchiveError(f"{archive.name}: not a readable .tar.gz, damaged or cut short "
                           f"({exc})") from None


def _members(archive: Path) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo, str]]:
    """Each member with its path inside the archive's folder ('' for the folder itself).
    Callers iterate inside :func:`_reading`."""
    where = archive.name
    with tarfile.open(archive, "r:gz") as tar:
        top: str | None = None
        for info in tar:
            pure = _member_path(info, where)
            if top is None:
                top = pure.parts[0]
            if pure.parts[0] != top:
                raise ArchiveError(f"{where}: member {info.name!r} is outside the folder "
                                   f"{top}/: refused")
            yield tar, info, "/".join(pure.parts[1:])


def _hash(stream) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    while chunk := stream.read(_CHUNK):
        h.update(chunk)
        n += len(chunk)
    return h.hexdigest(), n


def verify(archive: str | os.PathLike, kind: str | None = None) -> Manifest:
    """Check every member of ``archive`` against its manifest; write nothing.

    Raises:
        ArchiveError: naming the member or the problem (see the module's docstring), or
            an archive of another kind than ``kind``.
    """
    archive = Path(archive)
    where = archive.name
    manifest_bytes: bytes | None = None
    seen: dict[str, tuple[str, int]] = {}
    top = ""
    with _reading(archive):
        for tar, info, rel in _members(archive):
            top = PurePosixPath(info.name).parts[0]
            if not rel or info.isdir():
                continue
            if rel in seen or (rel == MANIFEST and manifest_bytes is not None):
                raise ArchiveError(f"{where}: member {info.name!r} appears twice: refused")
            f = tar.extractfile(info)
            assert f is not None   # a regular file
            if rel == MANIFEST:
                manifest_bytes = f.read(4 << 20)
                continue
            seen[rel] = _hash(f)
    if manifest_bytes is None:
        raise ArchiveError(f"{where}: no {MANIFEST}: not a Quickstart Server archive, or "
                           f"damaged")
    manifest = Manifest.from_json(manifest_bytes, where)
    if top != manifest.folder:
        raise ArchiveError(f"{where}: its folder is {top}/, its manifest says "
                           f"{manifest.folder}/: refused")
    if kind and manifest.kind != kind:
        raise ArchiveError(f"{where}: a qss-{manifest.kind} archive; this needs "
                           f"qss-{kind}-X.Y.Z.tar.gz")
    extra = sorted(set(seen) - set(manifest.members))
    if extra:
        raise ArchiveError(f"{where}: member {top}/{extra[0]} is not in the manifest "
                           f"(added after the archive was made?): refused")
    missing = sorted(set(manifest.members) - set(seen))
    if missing:
        raise ArchiveError(f"{where}: member {top}/{missing[0]} is in the manifest but "
                           f"missing: refused")
    for rel, (digest, size) in sorted(seen.items()):
        want_digest, want_size = manifest.members[rel]
        if (digest, size) != (want_digest, want_size):
            raise ArchiveError(f"{where}: member {top}/{rel} differs from the manifest "
                               f"(SHA-256 {digest[:12]}..., {size} bytes; expected "
                               f"{want_digest[:12]}..., {want_size}): altered or damaged, "
                               f"refused")
    for pkg in manifest.packages.values():
        for f in pkg.files:
            if f not in manifest.members:
                raise ArchiveError(f"{where}: package {pkg.name} names {f}, which the "
                                   f"archive does not hold")
    return manifest


def extract(archive: str | os.PathLike, manifest: Manifest, dest: Path) -> Path:
    """Write the verified members of ``archive`` into the new folder ``dest``.

    Each file is created exclusively (never through an existing name or link), only the
    manifest's members are written, and each is hashed again as it is written.

    Raises:
        ArchiveError: the archive changed since :func:`verify`; ``dest`` is left for the
            caller to remove.
    """
    archive = Path(archive)
    dest.mkdir(parents=True)
    written: set[str] = set()
    with _reading(archive):
        for tar, info, rel in _members(archive):
            if not rel or info.isdir():
                continue
            if rel == MANIFEST:
                want = None
            elif rel in manifest.members:
                want = manifest.members[rel]
            else:
                raise ArchiveError(f"{archive.name}: member {info.name!r} appeared after the "
                                   f"check: the archive changed while being read; refused")
            target = dest.joinpath(*PurePosixPath(rel).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(info)
            assert src is not None
            h, n = hashlib.sha256(), 0
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                             0o644)
                with os.fdopen(fd, "wb") as out:
                    while chunk := src.read(_CHUNK):
                        h.update(chunk)
                        n += len(chunk)
                        out.write(chunk)
            except OSError as exc:
                if exc.filename is None and exc.errno is None:
                    raise                # the archive's own damage: _reading says so
                raise DeployError(f"cannot write {target}: {exc.strerror or exc} (free "
                                  f"some space, or check the folder)") from None
            if want is not None and (h.hexdigest(), n) != want:
                raise ArchiveError(f"{archive.name}: member {info.name} changed while being "
                                   f"read: refused")
            written.add(rel)
    missing = sorted(set(manifest.members) - written)
    if missing:
        raise ArchiveError(f"{archive.name}: member {missing[0]} vanished after the check: "
                           f"the archive changed while being read; refused")
    return dest
