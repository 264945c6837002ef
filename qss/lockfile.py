"""One process at a time: an exclusive, non-blocking ``flock`` on a lock file.

qss-btrdb holds one in its data directory and sync2q one beside its queue for as long as
they run; ``qss-get`` takes the same locks to prove both are stopped. The holder records
its pid in the file, so a refusal can name it.
"""
from __future__ import annotations

import errno
import fcntl
import os


class LockError(Exception):
    """The lock was not taken; nothing is left open.

    ``step`` says what failed: ``"open"`` (the file cannot be opened or created),
    ``"held"`` (another process holds the lock) or ``"lock"`` (flock itself failed);
    after either, ``holder`` is the pid the file records, or ``"?"``. ``strerror`` is
    the system's reason.
    Each caller words the one-line message for its operator.
    """

    def __init__(self, path: str | os.PathLike, step: str, strerror: str = "",
                 holder: str = ""):
        self.path, self.step, self.strerror, self.holder = str(path), step, strerror, holder
        reason = f"held by pid {holder}" if step == "held" else f"cannot {step}: {strerror}"
        super().__init__(f"{self.path}: {reason}")


def hold(path: str | os.PathLike, *, mode: int = 0o644, record_pid: bool = True) -> int:
    """Open (creating with ``mode``) ``path`` and take its exclusive flock without waiting.

    Returns the file descriptor: the lock is held until it is closed (or the process
    ends). With ``record_pid`` this process's pid replaces the file's content; an OSError
    doing so is raised as it is, after closing the descriptor.

    Raises:
        LockError: the file cannot be opened, or the lock is held or cannot be taken.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
    except OSError as exc:
        raise LockError(path, "open", exc.strerror or str(exc)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise LockError(path, "held", holder=holder) from None
        raise LockError(path, "lock", exc.strerror or str(exc), holder) from None
    if record_pid:
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            os.close(fd)
            raise
    return fd
