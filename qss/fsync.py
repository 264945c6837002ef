"""Making a folder's entries durable: after a file is created, renamed or deleted, the
folder itself must be fsynced, or a crash can forget the name although the file's
bytes were synced."""
from __future__ import annotations

import os

__all__ = ["fsync_dir"]


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync the folder ``path``, so the names made, renamed or removed in it survive a
    crash.

    Raises:
        OSError: it cannot be opened or synced.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
