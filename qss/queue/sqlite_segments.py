"""The SQLite queue's data files: each file's contents written once, outside the WAL
(:class:`Segments`; the module docstring of :mod:`qss.queue.sqlite` tells the layout).

A directory next to the queue file (``queue.db.data``) holds two kinds of files:

- segments, ``s-<time>-<random>.seg``: the contents of the files of one group commit
  after another, appended by one process and fdatasynced before the metadata rows that
  point into them (segment, offset, size) are committed. A uPMU's files at 10 devices
  cost one 0.55 MB write each instead of two (the WAL, then the checkpoint).
- uploads in progress, ``u-<time>-<random>.part``: a file arriving in pieces, appended
  as they come; its commit fdatasyncs it and renames it into a segment of its own.

Ownership is an ``flock``: the process appending to a segment (or writing a part) holds
an exclusive lock on it, so any other process that can take the lock knows that nobody
will add to the file again (its writer finished or died; the kernel drops the lock of a
killed process). Only such files are truncated or deleted. A segment no committed row
points into is deleted (a crash between the data's fsync and the metadata's commit, or
every file in it deleted); the tail past the last file a row points to is cut off.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import time
from collections.abc import Callable

from ..fsync import fsync_dir

__all__ = ["Part", "Segments", "data_dir"]

SEGMENT_BYTES = 64 << 20   # a writer starts a new segment past this size
_CHUNK = 1 << 20           # compare and copy in pieces of this size
SEG_SUFFIX = ".seg"
PART_SUFFIX = ".part"


def data_dir(queue_path: str) -> str:
    """The directory of the queue's data files, beside ``queue_path``."""
    return queue_path + ".data"


def _new_name(prefix: str, suffix: str) -> str:
    return f"{prefix}-{time.time_ns():x}-{secrets.token_hex(4)}{suffix}"


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _write_all(fd: int, view: memoryview, offset: int) -> None:
    done = 0
    while done < view.nbytes:
        done += os.pwrite(fd, view[done:done + (64 << 20)], offset + done)


class Part:
    """An upload's data file while it arrives (locked by this process)."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.size = 0

    def write(self, view: memoryview) -> None:
        """Append ``view`` (not yet durable)."""
        _write_all(self.fd, view, self.size)
        self.size += view.nbytes

    def close(self, *, delete: bool) -> None:
        """Close it (and delete it when asked). Idempotent."""
        if self.fd < 0:
            return
        if delete:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = -1


class Segments:
    """The data files of the queue file ``queue_path`` (see the module docstring).

    Not thread-safe for writing: the queue appends under its own lock.
    """

    def __init__(self, queue_path: str) -> None:
        self.dir = data_dir(queue_path)
        self._queue_path = queue_path
        self._parent = os.path.dirname(queue_path)
        self._fd = -1            # the segment this process appends to
        self._name = ""
        self._end = 0
        self._start = 0          # where the last append began

    # -- writing ----------------------------------------------------------------------

    def _ensure_dir(self) -> None:
        if os.path.isdir(self.dir):
            return
        with contextlib.suppress(FileExistsError):
            # The queue file's directory's mode (e.g. 2770: group qss may write), so the
            # operator's upmu-adm and the services can both add and delete files here.
            os.mkdir(self.dir, 0o700)
            mode = os.stat(self._parent).st_mode & 0o7777
            os.chmod(self.dir, mode | 0o700)
            fsync_dir(self._parent)

    def _file_mode(self) -> int | None:
        """The queue file's permission bits (None: unknown)."""
        try:
            return os.stat(self._queue_path).st_mode & 0o666
        except OSError:
            return None

    def _create(self, prefix: str, suffix: str) -> tuple[str, int]:
        """A new file of ours, locked, whose name is known to be ours (a sweep in another
        process may have deleted it between its creation and our lock), with the queue
        file's mode: as SQLite does for -wal and -shm, so that the writer's umask (an
        operator's 022 or 077) does not lock the services out of what it wrote."""
        self._ensure_dir()
        mode = self._file_mode()
        while True:
            name = _new_name(prefix, suffix)
            path = os.path.join(self.dir, name)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            if _try_lock(fd):
                if mode is not None:
                    with contextlib.suppress(OSError):   # a file system without modes
                        os.fchmod(fd, mode)
                with contextlib.suppress(FileNotFoundError):
                    if os.stat(path).st_ino == os.fstat(fd).st_ino:
                        return name, fd
            os.close(fd)

    def current(self) -> str | None:
        """The name of the segment this process appends to, if any."""
        return self._name or None

    def append(self, files: list[list[memoryview]]) -> tuple[str, list[int]]:
        """Write each file's pieces one after the other at the end of this process's
        segment and fdatasync it; return the segment's name and each file's offset.

        Raises:
            OSError: the write or the sync failed (e.g. ENOSPC); the segment is given up
                (its rows, if any, stay valid; its unreferenced tail is cut by a sweep).
        """
        if self._fd >= 0 and self._end >= SEGMENT_BYTES:
            self.release()
        fresh = self._fd < 0   # made by this call: no row can point into it yet
        if fresh:
            name, fd = self._create("s", SEG_SUFFIX)
            try:
                fsync_dir(self.dir)   # the name must survive a crash before any row
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.dir, name))
                os.close(fd)
                raise
            self._name, self._fd = name, fd
            self._end = self._start = 0
        offsets = []
        end = self._end
        try:
            for views in files:
                offsets.append(end)
                for view in views:
                    _write_all(self._fd, view, end)
                    end += view.nbytes
            os.fdatasync(self._fd)
        except OSError:
            # After a failed write or fsync the file's state is unknown: never append to
            # it again. Cutting what this batch wrote gives the space back at once.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._end)
                if fresh:   # else a full disk leaves an empty segment per failed put
                    os.unlink(os.path.join(self.dir, self._name))
            self.release()
            raise
        self._start, self._end = self._end, end
        return self._name, offsets

    def undo(self) -> None:
        """Cut what the last :meth:`append` wrote (its rows were not committed)."""
        if self._fd >= 0 and self._start < self._end:
            try:
                os.ftruncate(self._fd, self._start)
                self._end = self._start
            except OSError:
                self.release()

    def release(self) -> str | None:
        """Stop appending to the current segment (its lock goes); return its name."""
        name = self._name or None
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd, self._name, self._end, self._start = -1, "", 0, 0
        return name

    def open_part(self) -> Part:
        """A new upload data file, locked by this process."""
        name, fd = self._create("u", PART_SUFFIX)
        return Part(os.path.join(self.dir, name), fd)

    def seal(self, part: Part) -> str:
        """Make the upload ``part`` durable and a segment of its own (still locked by its
        descriptor until ``part.close``); return the segment's name.

        Raises:
            OSError: the sync or the rename failed.
        """
        os.fdatasync(part.fd)
        name = _new_name("s", SEG_SUFFIX)
        path = os.path.join(self.dir, name)
        os.rename(part.path, path)
        part.path = path
        fsync_dir(self.dir)
        return name

    # -- reading ----------------------------------------------------------------------

    def path(self, name: str) -> str:
        """The path of segment ``name`` (a name the queue stored, never a device's)."""
        return os.path.join(self.dir, os.path.basename(name))

    def read(self, name: str, offset: int, size: int) -> bytearray:
        """The ``size`` bytes at ``offset`` of segment ``name`` in one new buffer.

        Raises:
            FileNotFoundError: no such segment (deleted meanwhile).
            EOFError: the segment is shorter (cut meanwhile).
        """
        out = bytearray(size)
        view = memoryview(out)
        with open(self.path(name), "rb", buffering=0) as f:
            done = 0
            while done < size:
                got = os.preadv(f.fileno(), [view[done:done + _CHUNK]], offset + done)
                if not got:
                    raise EOFError(name)
                done += got
        return out

    def equals(self, name: str, offset: int, views: list[memoryview]) -> bool:
        """True when segment ``name`` holds the pieces ``views`` at ``offset``."""
        try:
            with open(self.path(name), "rb", buffering=0) as f:
                at = offset
                for view in views:
                    for start in range(0, view.nbytes, _CHUNK):
                        piece = view[start:start + _CHUNK]
                        if os.pread(f.fileno(), piece.nbytes, at) != piece:
                            return False
                        at += piece.nbytes
        except FileNotFoundError:
            return False
        return True

    def part_equals(self, part: Part, name: str | None, offset: int,
                    read_other: Callable[[int, int], bytes] | None = None) -> bool:
        """True when the upload ``part`` holds the same bytes as segment ``name`` at
        ``offset`` (or as ``read_other(at, n)`` for a file stored the old way)."""
        at = 0
        while at < part.size:
            n = min(_CHUNK, part.size - at)
            mine = os.pread(part.fd, n, at)
            if read_other is not None:
                theirs = read_other(at, n)
            else:
                try:
                    with open(self.path(name), "rb", buffering=0) as f:
                        theirs = os.pread(f.fileno(), n, offset + at)
                except FileNotFoundError:
                    return False
            if mine != theirs:
                return False
            at += n
        return True

    # -- cleaning ---------------------------------------------------------------------

    def names(self, suffix: str) -> list[str]:
        """The data files of one kind (``SEG_SUFFIX`` or ``PART_SUFFIX``)."""
        try:
            return sorted(n for n in os.listdir(self.dir) if n.endswith(suffix))
        except FileNotFoundError:
            return []

    def held(self, name: str) -> bool:
        """True when a process (this one included) holds data file ``name``."""
        try:
            fd = os.open(os.path.join(self.dir, name), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            return not _try_lock(fd)
        finally:
            os.close(fd)

    def size(self) -> int:
        """Bytes in the data files."""
        total = 0
        for name in self.names(""):
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(self.dir, name)).st_size
        return total

    def trim(self, name: str, referenced_end: Callable[[str], int | None]) -> int:
        """If no process holds segment or part ``name``: delete it when
        ``referenced_end(name)`` is None (no committed row points into it), else cut it to
        that many bytes; return the bytes given back (0 when held or gone).
        ``referenced_end`` is asked only once the lock is taken: before, the writer could
        still commit rows into it and let it go."""
        path = os.path.join(self.dir, name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            writable = True
        except FileNotFoundError:
            return 0
        except PermissionError:   # another user's file: it can still be locked and deleted
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            writable = False
        try:
            if not _try_lock(fd):
                return 0
            try:
                if os.stat(path).st_ino != os.fstat(fd).st_ino:
                    return 0
            except FileNotFoundError:   # another process deleted it while we waited
                return 0
            end = referenced_end(name)
            size = os.fstat(fd).st_size
            if end is None:
                os.unlink(path)
                return size
            if size > end and writable:
                os.ftruncate(fd, end)
                return size - end
            return 0
        finally:
            os.close(fd)
