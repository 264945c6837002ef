"""Putting configuration files in place: compare, back up, replace atomically.

A :class:`FileSpec` is what a file should hold; :func:`plan` compares each with what is
under the root prefix now and says what would happen (:class:`Outcome`); :func:`apply`
does it. Nothing is ever lost: a file that differs is copied to
``<file>.qss-bak-<timestamp>`` before it is replaced, and each file is replaced
atomically (temporary file, fsync, rename, fsync of the directory), so after a crash a
file is either the old one or the new one. Backup names end in neither ``.conf`` nor
anything else the services read their directories for, so no service picks one up.
"""
from __future__ import annotations

import datetime as dt
import difflib
import enum
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath


class DeployError(Exception):
    """A configuration that cannot be written; the message is one line naming the
    object, the reason and the fix."""


class Cancelled(DeployError):
    """The operator did not answer yes (to replacing files, deleting the data, restoring
    a backup); nothing was changed. The message says so and how to go ahead."""


class Outcome(enum.Enum):
    """What happens to a file (the word is what the operator reads)."""

    CREATE = "created"
    UNCHANGED = "unchanged"
    REPLACE = "replaced"
    KEEP = "kept"


@dataclass(frozen=True)
class FileSpec:
    """A configuration file as it should be on the target system.

    ``path`` is absolute on the target (``/etc/shorewall/rules``); ``keep_existing``
    marks a file that belongs to the operator once it exists (``qss.ini``): it is
    written when missing and never replaced.
    """

    path: str
    text: str
    component: str
    mode: int = 0o644
    keep_existing: bool = False

    def __post_init__(self) -> None:
        if not PurePosixPath(self.path).is_absolute() or ".." in PurePosixPath(self.path).parts:
            raise ValueError(f"FileSpec path must be absolute and plain: {self.path!r}")


@dataclass(frozen=True)
class Change:
    """One file's comparison with the target, and after :func:`apply` its backup."""

    spec: FileSpec
    target: Path                 # where the file is on this machine: root / spec.path
    outcome: Outcome
    current: bytes | None        # what the target holds now (None: missing)
    backup: Path | None = None

    @property
    def new(self) -> bytes:
        return self.spec.text.encode("utf-8")

    def diff(self) -> str:
        """Unified diff from the current file to the new one ("" when nothing changes)."""
        if self.outcome not in (Outcome.REPLACE, Outcome.CREATE):
            return ""
        old = (self.current or b"").decode("utf-8", "replace").splitlines(keepends=True)
        new = self.spec.text.splitlines(keepends=True)
        lines = difflib.unified_diff(old, new, f"{self.target} (now)",
                                     f"{self.target} (qss-get)")
        return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def target_path(root: Path, path: str) -> Path:
    """Where ``path`` of the target system is under the root prefix ``root``."""
    return root / path.lstrip("/")


def plan(specs: Iterable[FileSpec], root: Path) -> list[Change]:
    """Compare each spec with the file under ``root``; nothing is written.

    Raises:
        DeployError: a target that is a directory or cannot be read.
    """
    changes = []
    for spec in specs:
        target = target_path(root, spec.path)
        try:
            current: bytes | None = target.read_bytes()
        except FileNotFoundError:
            current = None
        except IsADirectoryError:
            raise DeployError(f"{target}: is a directory, not a file; move it away and "
                              f"run again") from None
        except OSError as exc:
            raise DeployError(f"{target}: cannot read: {exc.strerror or exc}") from None
        if current is None:
            outcome = Outcome.CREATE
        elif current == spec.text.encode("utf-8"):
            outcome = Outcome.UNCHANGED
        elif spec.keep_existing:
            outcome = Outcome.KEEP
        else:
            outcome = Outcome.REPLACE
        changes.append(Change(spec, target, outcome, current))
    return changes


def apply(changes: Iterable[Change], now: dt.datetime) -> Iterator[Change]:
    """Write every created or replaced file, backing up each replaced one first.

    Yields each change as it is done (with ``backup`` set for replaced files), so the
    caller can report progress; a failure stops at the file that failed, and every
    file before it is complete.

    Raises:
        DeployError: naming the file that could not be written or backed up.
    """
    stamp = now.strftime("%Y%m%dT%H%M%S")
    for change in changes:
        if change.outcome is Outcome.REPLACE:
            backup = _backup(change.target, change.current or b"", stamp)
            _write(change.target, change.new, change.spec.mode)
            yield replace(change, backup=backup)
        elif change.outcome is Outcome.CREATE:
            _write(change.target, change.new, change.spec.mode)
            yield change
        else:
            yield change


def atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` (permissions ``mode``) so that readers see the old
    or the new file, never a mix, even after a crash. Creates missing parent
    directories (0755).

    Raises:
        OSError: the old file is then untouched.
    """
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".qss-tmp", dir=path.parent)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _write(target: Path, data: bytes, mode: int) -> None:
    try:
        atomic_write(target, data, mode)
    except OSError as exc:
        hint = "; run it with sudo" if isinstance(exc, PermissionError) else ""
        raise DeployError(f"{target}: cannot write: {exc.strerror or exc}{hint}") from None


def _backup(target: Path, data: bytes, stamp: str) -> Path:
    """Copy the current contents to a new ``<target>.qss-bak-<stamp>[-N]`` (same mode)."""
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except OSError:
        mode = 0o644
    for n in range(1000):
        backup = target.with_name(f"{target.name}.qss-bak-{stamp}" + (f"-{n}" if n else ""))
        if not backup.exists() and not backup.is_symlink():
            break
    else:  # pragma: no cover - a thousand backups in one second
        raise DeployError(f"{target}: too many backups named {target.name}.qss-bak-{stamp}*")
    try:
        atomic_write(backup, data, mode)
    except OSError as exc:
        hint = "; run it with sudo" if isinstance(exc, PermissionError) else ""
        raise DeployError(f"{backup}: cannot back up {target}: {exc.strerror or exc}"
                          f"{hint}; nothing replaced") from None
    return backup
