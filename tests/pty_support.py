"""A program in a real pseudo-terminal (pexpect), as an operator over SSH meets it: a
pinned 24x100 terminal, and the screen log shown whenever a wait fails. The shells' pty
tests use it (test_upmu_adm_pty.py, test_accounts_console.py); importing it skips a
module where pexpect is not installed."""
from __future__ import annotations

import io
import os
import re
import termios

import pytest

from waiting import wait_until

pexpect = pytest.importorskip("pexpect")

_ESCAPES = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\r")


class PtyProgram:
    """``argv`` in a 24x100 pseudo-terminal with the environment plus ``env``, in ``cwd``;
    every wait names what it waited for and shows the screen log."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd, timeout: float) -> None:
        self.log = io.BytesIO()
        self.child = pexpect.spawn(
            argv[0], argv[1:], env={**os.environ, "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1",
                                    **env},
            dimensions=(24, 100), timeout=timeout, cwd=str(cwd))
        self.child.logfile_read = self.log

    def screen(self) -> str:
        """What the program has drawn, without escape sequences."""
        return _ESCAPES.sub(b"", self.log.getvalue()).decode("utf-8", "replace")

    def expect(self, text) -> None:
        try:
            self.child.expect_exact(text)
        except (pexpect.TIMEOUT, pexpect.EOF) as exc:
            raise AssertionError(f"waited for {text!r} ({type(exc).__name__}); screen "
                                 f"log:\n{self.screen()}") from None

    def wait_raw(self, timeout: float = 10.0) -> None:
        """Wait until the program reads keys one by one (a prompt is active). Between two
        prompts the terminal is in line mode, where a Ctrl+D typed on an empty line is
        an end-of-file marker and never reaches the next prompt."""
        wait_until(lambda: not termios.tcgetattr(self.child.child_fd)[3] & termios.ICANON,
                   timeout=timeout, interval=0.01, what="a prompt reading keys one by one",
                   detail=lambda: f"screen log:\n{self.screen()}")

    def line(self, text: str) -> None:
        self.child.send(text + "\r")

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)
