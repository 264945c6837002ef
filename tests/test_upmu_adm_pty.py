"""The real shell in a pseudo-terminal (pexpect), as an operator over SSH meets it: a
pinned 24x100 terminal, a temporary HOME, and the screen log shown when a test fails.

Keys are sent the way a person types: after Tab, the test waits for the completion to
appear before pressing Enter (prompt_toolkit completes asynchronously).
"""
from __future__ import annotations

import datetime as dt
import io
import os
import re
import sys
import termios
from pathlib import Path

import pytest

from qss.generator import write_tree
from qss.upmuconfig import UpmuList

from test_upmu_adm_commands import ORIGINAL
from waiting import wait_until

pexpect = pytest.importorskip("pexpect")

_ESCAPES = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\r")


class Shell:
    """upmu-adm in a pty; every wait names what it waited for and shows the screen log."""

    def __init__(self, tmp_path: Path, cfg: Path, btrdb: str, *args: str):
        settings = tmp_path / "qss.ini"
        settings.write_text("")
        env = {**os.environ, "HOME": str(tmp_path), "QSS_CONFIG": str(settings),
               "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1"}
        self.log = io.BytesIO()
        self.child = pexpect.spawn(
            sys.executable, ["-m", "upmu_adm", "--upmuconfig", str(cfg), "--backupconfig",
                             str(cfg.with_name("backupconfig.ini")), "--queue",
                             f"sqlite:///{tmp_path}/queue.db", "--btrdb", btrdb, *args],
            env=env, dimensions=(24, 100), timeout=5, cwd=str(tmp_path))
        self.child.logfile_read = self.log
        self.prompt()

    def screen(self) -> str:
        return _ESCAPES.sub(b"", self.log.getvalue()).decode("utf-8", "replace")

    def expect(self, text: str) -> None:
        try:
            self.child.expect_exact(text)
        except (pexpect.TIMEOUT, pexpect.EOF) as exc:
            raise AssertionError(f"waited for {text!r} ({type(exc).__name__}); screen "
                                 f"log:\n{self.screen()}") from None

    def prompt(self) -> None:
        # The prompt's trailing space is drawn as a cursor move, so match without it.
        self.expect("upmu-adm>")
        self.wait_raw()

    def wait_raw(self, timeout: float = 10.0) -> None:
        """Wait until the shell reads keys one by one (a prompt is active). Between two
        prompts the terminal is in line mode, where a Ctrl+D typed on an empty line is
        an end-of-file marker and never reaches the next prompt."""
        wait_until(lambda: not termios.tcgetattr(self.child.child_fd)[3] & termios.ICANON,
                   timeout=timeout, interval=0.01, what="a prompt reading keys one by one",
                   detail=lambda: f"screen log:\n{self.screen()}")

    def line(self, text: str) -> None:
        self.child.send(text + "\r")

    def exit_status(self) -> int:
        self.expect(pexpect.EOF)
        self.child.close()
        return self.child.exitstatus

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "upmuconfig.ini"
    path.write_text(ORIGINAL)
    return path


@pytest.fixture
def sh(tmp_path, cfg, server):
    shell = Shell(tmp_path, cfg, server.grpc)
    yield shell
    shell.close()


def test_add_list_save_then_ctrl_c_is_a_clean_exit(sh, cfg, tmp_path):
    sh.line("add 10.0.0.5 P3001234 u1 true")
    sh.expect("Added u1 (10.0.0.5, P3001234) in extended mode")
    sh.prompt()
    sh.line("list")
    sh.expect("10.0.0.5      P3001234  u1     extended  19       never")
    sh.expect("3 uPMUs")
    sh.expect("1 unsaved change - type save to apply")
    sh.prompt()
    sh.line("save")
    sh.expect(f"Saved {cfg}:")
    sh.expect("no restart is needed.")
    sh.prompt()
    sh.child.sendcontrol("c")
    sh.expect("Clean exit - no unsaved changes")
    assert sh.exit_status() == 0
    assert UpmuList.load(str(cfg)).find("u1").extended
    history = (tmp_path / ".upmu_adm_history").read_text()
    assert "+add 10.0.0.5 P3001234 u1 true\n" in history and "+save\n" in history


def test_ctrl_c_with_unsaved_changes_asks_before_discarding(sh, cfg):
    sh.line("rem uPMU2")
    sh.expect("Remove uPMU2 (192.168.1.25, P3112234) from the uPMU list?")
    sh.expect("[y/N]")
    sh.line("y")
    # When an earlier test's save created uPMU2's streams in the shared BTrDB, rem also
    # offers to delete them (a typed yes); decline.
    if sh.child.expect_exact(["(type yes to confirm)", "Removed uPMU2"]) == 0:
        sh.line("")
        sh.expect("Removed uPMU2")
    sh.prompt()
    sh.child.sendcontrol("c")
    sh.expect("Not saved: removed uPMU2 (192.168.1.25, P3112234).")
    sh.expect("Discard 1 unsaved change and exit?")
    sh.line("y")
    sh.expect("Abort - Not saving changes...")
    assert sh.exit_status() == 0
    assert cfg.read_text() == ORIGINAL


def test_ctrl_c_with_text_clears_the_line_and_ctrl_d_exits(sh):
    sh.child.send("add 10.0.0.5 P3001234 u1")
    sh.expect("u1")
    sh.child.sendcontrol("c")
    sh.expect("u1")   # the cancelled line drawn once more as it is left
    sh.prompt()       # then a new, empty prompt
    sh.child.sendcontrol("d")
    sh.expect("Clean exit - no unsaved changes")
    assert sh.exit_status() == 0
    assert "Added" not in sh.screen()


def test_tab_completes_commands_aliases_and_modes(sh, cfg):
    sh.child.send("sete\t")
    sh.expect("xt")
    sh.child.send(" uPMU\t")         # two aliases: the menu lists both
    sh.expect("uPMU2")
    sh.child.send("1 t\t")           # typing on narrows to uPMU1
    sh.expect("rue")
    sh.line("")
    sh.expect("Switched uPMU1 (192.168.1.24, P3112233) to extended mode")
    sh.prompt()
    sh.line("save; exit")
    sh.expect("Clean exit - no unsaved changes")
    assert sh.exit_status() == 0
    assert UpmuList.load(str(cfg)).find("uPMU1").extended


def test_importdat_shows_a_progress_bar_then_the_summary(sh, tmp_path):
    write_tree(tmp_path / "in", "P3112234", dt.datetime(2015, 12, 18, 8), 2, extended=True,
               seconds_per_file=5)
    sh.line(f"importdat {tmp_path}/in --recursive")
    sh.expect("Importing:")                       # tqdm's bar, on the terminal
    sh.expect("queued           24 files (")
    sh.prompt()
    sh.line("exit")
    assert sh.exit_status() == 0
