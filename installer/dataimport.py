"""``qss-get --data-import [PATH]`` (manual ch. 4.2): gather a uPMU's ``.dat`` files from
its ``upmu_data`` tree into one flat folder, ``upmu_data_import`` beside it, for
upmu-adm's ``importdat``.

Never overwrites, never loses a byte:

- A file is moved. On one file system that is a hard link to the new name (which fails
  rather than replace an existing file) and an unlink of the old one; where links are
  not supported (FAT32 drives) a rename after checking the name is free. Across file
  systems it is a copy to a temporary name, fsync, a byte-for-byte comparison with the
  source, the link to the final name, and only then the unlink of the source.
- A name already in ``upmu_data_import`` with the same bytes: the source is a duplicate
  and is removed (its bytes are in the import folder, compared byte for byte), so a
  second run, or a run after an interruption, finishes the job.
- A name already there with other bytes: both are kept, the newcomer as
  ``<name>.conflict-<N>.dat``. Such names carry no serial and time for importdat, which
  then asks whose they are; the summary says so.
"""
from __future__ import annotations

import errno
import filecmp
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from qss.fsync import fsync_dir

from .environment import Environment
from .files import DeployError
from .services import plural

SOURCE = "upmu_data"
TARGET = "upmu_data_import"
_CHUNK = 1 << 20


@dataclass
class ImportResult:
    """What one run did; ``conflicts`` maps a source to the distinct name it got."""

    source: Path
    target: Path
    moved: int = 0
    duplicates: int = 0
    conflicts: dict[Path, Path] = field(default_factory=dict)
    skipped: list[Path] = field(default_factory=list)   # symlinks: never followed


def find_source(path: Path) -> Path:
    """``path`` itself when it is named ``upmu_data``, else ``path/upmu_data``.

    Raises:
        DeployError: neither is a directory.
    """
    if path.name == SOURCE and path.is_dir():
        return path
    if (path / SOURCE).is_dir():
        return path / SOURCE
    if not path.is_dir():
        raise DeployError(f"{path}: no such directory")
    raise DeployError(f"no folder {SOURCE} in {path}; run it where {SOURCE} is, or name "
                      f"the folder: qss-get --data-import /media/external")


def _copy_verified(src: Path, dst: Path) -> None:
    """Copy ``src`` to the new name ``dst`` (never replacing it) through a temporary
    file that is fsync'ed and compared with the source first.

    Raises:
        FileExistsError: ``dst`` appeared meanwhile; OSError: copying failed (the
            source is untouched, the temporary file removed).
    """
    tmp = dst.with_name(f".{dst.name}.qss-tmp")
    try:
        with open(src, "rb") as fin, open(tmp, "xb") as fout:
            while chunk := fin.read(_CHUNK):
                fout.write(chunk)
            fout.flush()
            os.fsync(fout.fileno())
        if not filecmp.cmp(src, tmp, shallow=False):
            raise OSError(errno.EIO, f"the copy of {src} differs from it after writing")
        _place(tmp, dst, same_fs=True)
    finally:
        if tmp.exists():
            tmp.unlink()


def _place(src: Path, dst: Path, same_fs: bool) -> None:
    """Give ``src`` the new name ``dst`` on the same file system, never replacing."""
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
            raise
        if dst.exists():      # no hard links (FAT32): rename, having checked the name
            raise FileExistsError(errno.EEXIST, "exists", str(dst)) from None
        os.rename(src, dst)
        return
    os.unlink(src)


def _move(src: Path, dst: Path) -> None:
    if src.stat().st_dev == dst.parent.stat().st_dev:
        _place(src, dst, same_fs=True)
    else:
        _copy_verified(src, dst)
        os.unlink(src)


def _same_bytes(a: Path, b: Path) -> bool:
    return os.path.samefile(a, b) or filecmp.cmp(a, b, shallow=False)


def gather(source: Path) -> ImportResult:
    """Move every ``.dat`` beneath ``source`` into ``source``'s sibling folder
    ``upmu_data_import`` (created if missing).

    Raises:
        DeployError: nothing to import, or a file that cannot be moved (the files
            before it are moved, and the message says how many).
    """
    target = source.parent / TARGET
    result = ImportResult(source, target)
    found: list[Path] = []
    for dirpath, dirnames, names in os.walk(source):
        dirnames.sort()
        for name in sorted(names):
            if name.lower().endswith(".dat"):
                path = Path(dirpath, name)
                (result.skipped if path.is_symlink() else found).append(path)
    if not found:
        raise DeployError(f"no .dat files beneath {source}; nothing to import")
    try:
        target.mkdir(exist_ok=True)
    except OSError as exc:
        raise DeployError(f"cannot create {target}: {exc.strerror}") from None
    for src in found:
        try:
            _gather_one(src, target, result)
        except OSError as exc:
            raise DeployError(
                f"cannot move {src} to {target}: {exc.strerror or exc} (moved "
                f"{plural(result.moved, 'file')} before it; run again once fixed: files "
                f"already moved are not moved twice)") from None
    fsync_dir(target)
    return result


def _gather_one(src: Path, target: Path, result: ImportResult) -> None:
    stem, suffix = src.name[:-4], src.name[-4:]
    candidates = [target / src.name]
    n = 1
    while True:
        dst = candidates[-1]
        if not dst.exists():
            break
        if _same_bytes(src, dst):
            if not os.path.samefile(src, dst):
                os.unlink(src)
            result.duplicates += 1
            return
        candidates.append(target / f"{stem}.conflict-{n}{suffix}")
        n += 1
    _move(src, dst)
    if len(candidates) > 1:
        result.conflicts[src] = dst
    result.moved += 1


def data_import(env: Environment, path: str | None) -> ImportResult:
    """``--data-import``: gather, then say what happened and what to run next.

    Raises:
        DeployError: as :func:`find_source` and :func:`gather`.
    """
    source = find_source(Path(os.path.abspath(path or os.getcwd())))
    result = gather(source)
    env.say(f"moved     {plural(result.moved, '.dat file')} from {source} into "
            f"{result.target}")
    if result.duplicates:
        env.say(f"removed   {plural(result.duplicates, 'duplicate')} from {source}: "
                f"{result.target} holds the same bytes under the same name")
    if result.conflicts:
        first_src, first_dst = next(iter(result.conflicts.items()))
        env.warn(f"{plural(len(result.conflicts), 'file')} differ from a file of the same "
                 f"name and were kept under a new name (e.g. {first_src} as "
                 f"{first_dst.name}); importdat cannot tell their uPMU and time from such "
                 f"names and asks: check them first")
    if result.skipped:
        env.warn(f"{plural(len(result.skipped), 'symbolic link')} to .dat files left in "
                 f"place (e.g. {result.skipped[0]}); copy their targets by hand")
    command = f"importdat {shlex.quote(str(result.target))}"
    env.say(f"next: in upmu-adm, run: {command}   (or: upmu-adm -c {shlex.quote(command)})")
    return result
