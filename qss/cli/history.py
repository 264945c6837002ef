"""Command history for the suite's shells (upmu-adm, the account console): a file kept
across sessions that never stops a shell. A history file that cannot be written (a full
disk, a read-only home, a directory in its place) costs one warning and the history of
that session, never a traceback."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from prompt_toolkit.history import FileHistory, History, InMemoryHistory

__all__ = ["SafeFileHistory", "open_history"]


class SafeFileHistory(FileHistory):
    """FileHistory that turns write errors into one warning, reads what it can of a
    damaged file, and passes each line through ``redact`` (e.g. hiding passwords) before
    it is kept."""

    def __init__(self, filename: str, warn: Callable[[str], None], prog: str,
                 redact: Callable[[str], str] | None = None) -> None:
        super().__init__(filename)
        self._warn, self._prog, self._redact = warn, prog, redact
        self._failed = False

    def append_string(self, string: str) -> None:
        super().append_string(self._redact(string) if self._redact else string)

    def store_string(self, string: str) -> None:
        if self._failed:
            return
        try:
            super().store_string(string)
        except OSError as exc:
            self._failed = True
            self._warn(f"{self._prog}: warning: cannot write history file "
                       f"{self.filename!r} ({exc.strerror or exc}); history is off for "
                       f"the rest of this session")

    def load_history_strings(self) -> Iterable[str]:
        try:
            yield from list(super().load_history_strings())
        except (OSError, UnicodeDecodeError):
            return


def open_history(path: str, warn: Callable[[str], None], prog: str,
                 redact: Callable[[str], str] | None = None) -> History:
    """History kept in ``path`` (``~`` expanded) across sessions; in memory only, with a
    warning, when the file cannot be written."""
    full = os.path.expanduser(path)
    try:
        with open(full, "ab"):
            pass
    except OSError as exc:
        warn(f"{prog}: warning: cannot write history file {full!r} "
             f"({exc.strerror or exc}); history is off for this session")
        return InMemoryHistory()
    return SafeFileHistory(full, warn, prog, redact)
