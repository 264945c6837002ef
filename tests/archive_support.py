"""Helpers of the archive tests: real test .deb files, tampered copies of archives,
snapshots of a folder tree."""
from __future__ import annotations

import gzip
import io
import os
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

Member = tuple[tarfile.TarInfo, bytes | None]


def make_deb(folder: Path, name: str, version: str = "9.9-qsstest") -> Path:
    """A real Debian package ``name`` (dpkg-deb --build) holding one file,
    /usr/share/doc/<name>/QSS-TEST, and no maintainer scripts."""
    pkg = folder / f"{name}-pkg"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
        f"Maintainer: QSS tests <tests@localhost>\n"
        f"Description: test package named {name}\n")
    doc = pkg / "usr" / "share" / "doc" / name
    doc.mkdir(parents=True)
    (doc / "QSS-TEST").write_text(f"{name} {version}\n")
    out = folder / f"{name}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(pkg), str(out)],
                   check=True, capture_output=True)
    return out


def read_members(archive: Path) -> list[Member]:
    """Every member of a .tar.gz with its bytes (None for non-files)."""
    out: list[Member] = []
    with tarfile.open(archive, "r:gz") as tar:
        for info in tar:
            f = tar.extractfile(info) if info.isfile() else None
            out.append((info, f.read() if f else None))
    return out


def write_members(archive: Path, members: list[Member]) -> Path:
    """Write ``members`` as a .tar.gz (fast compression: tests only)."""
    with open(archive, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0,
                                                   compresslevel=1) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return archive


def tampered(src: Path, dst: Path, edit: Callable[[list[Member]], list[Member]]) -> Path:
    """A copy of archive ``src`` at ``dst`` with its members passed through ``edit``."""
    return write_members(dst, edit(read_members(src)))


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: kind, size, mtime, link target, so that any change
    to the tree shows up as a difference."""
    seen: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            target = os.readlink(p) if p.is_symlink() else None
            seen[str(p.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, target)
    return seen
