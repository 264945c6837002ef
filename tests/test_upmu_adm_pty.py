"""The real shell in a pseudo-terminal (pexpect), as an operator over SSH meets it: a
pinned 24x100 terminal, a temporary HOME, and the screen log shown when a test fails.

Keys are sent the way a person types: after Tab, the test waits for the completion to
appear before pressing Enter (prompt_toolkit completes asynchronously).
"""
from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pytest

from qss.generator import write_tree
from qss.upmuconfig import UpmuList

from pty_support import PtyProgram, pexpect
from test_upmu_adm_commands import ORIGINAL


class Shell(PtyProgram):
    """upmu-adm in a pty."""

    def __init__(self, tmp_path: Path, cfg: Path, btrdb: str, *args: str):
        settings = tmp_path / "qss.ini"
        settings.write_text("")
        super().__init__(
            [sys.executable, "-m", "upmu_adm", "--upmuconfig", str(cfg), "--backupconfig",
             str(cfg.with_name("backupconfig.ini")), "--queue",
             f"sqlite:///{tmp_path}/queue.db", "--btrdb", btrdb, *args],
            {"HOME": str(tmp_path), "QSS_CONFIG": str(settings)}, tmp_path, timeout=5)
        self.prompt()

    def prompt(self) -> None:
        # The prompt's trailing space is drawn as a cursor move, so match without it.
        self.expect("upmu-adm>")
        self.wait_raw()

    def exit_status(self) -> int:
        self.expect(pexpect.EOF)
        self.child.close()
        return self.child.exitstatus


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
