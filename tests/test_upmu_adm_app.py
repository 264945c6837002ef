"""The prompt_toolkit shell driven through a pipe input with a DummyOutput (no terminal):
lines, Ctrl+C and Ctrl+D, questions, history, and the completer adapter."""
from __future__ import annotations

from pathlib import Path

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, InMemoryHistory
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from qss.upmuconfig import UpmuList
from upmu_adm import ShellState
from upmu_adm.app import ShellCompleter, open_history, run_interactive

from test_upmu_adm_commands import ORIGINAL

CTRL_C, CTRL_D = "\x03", "\x04"


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "upmuconfig.ini"
    path.write_text(ORIGINAL)
    return path


def shell(cfg: Path, *keys: str, close: bool = False,
          history=None) -> tuple[int, list[str]]:
    """Type ``keys`` into the shell; returns its exit status and what it printed."""
    state = ShellState.load(str(cfg), str(cfg.with_name("backupconfig.ini")))
    out: list[str] = []
    with create_pipe_input() as inp:
        inp.send_text("".join(keys))
        if close:
            inp.close()
        status = run_interactive(state, input=inp, output=DummyOutput(),
                                 history=history or InMemoryHistory(), write=out.append)
    return status, out


def test_add_list_save_and_a_clean_exit_with_ctrl_c(cfg):
    status, out = shell(cfg, "add 10.0.0.5 P3001234 u1 true\r", "list\r", "save\r", CTRL_C)
    assert status == 0
    assert out[0] == (f"upmu-adm: 2 uPMUs in {cfg}. Type help for the commands; Ctrl+C on "
                      f"an empty line or exit leaves.")
    assert out[1].startswith("Added u1 (10.0.0.5, P3001234) in extended mode")
    assert "10.0.0.5      P3001234  u1     extended  19       added" in out[2]
    assert out[3].startswith(f"Saved {cfg}:")
    assert out[-1] == "Clean exit - no unsaved changes"
    assert UpmuList.load(str(cfg)).find("u1").extended


def test_ctrl_c_with_text_clears_the_line_without_running_it(cfg):
    status, out = shell(cfg, "add 10.0.0.5 P3001234 u1", CTRL_C, "list\r", CTRL_D)
    assert status == 0
    assert not any("Added" in line for line in out)
    assert "u1 " not in out[1]
    assert out[-1] == "Clean exit - no unsaved changes"


def test_ctrl_c_with_unsaved_changes_asks_and_no_keeps_the_shell(cfg):
    status, out = shell(cfg, "add 10.0.0.5 P3001234 u1\r", CTRL_C, "n\r", "exit\r", "y\r")
    assert status == 0
    assert out[2:] == [
        "Not saved: added u1 (10.0.0.5, P3001234), base mode, 13 streams.",
        "Not exiting; type save to keep your changes, exit to leave",
        "Not saved: added u1 (10.0.0.5, P3001234), base mode, 13 streams.",
        "Abort - Not saving changes..."]
    assert cfg.read_text() == ORIGINAL


def test_ctrl_c_or_ctrl_d_at_the_question_answers_no(cfg):
    status, out = shell(cfg, "add 10.0.0.5 P3001234 u1\r", CTRL_D, CTRL_C, CTRL_C, CTRL_D,
                        "quit\r", "yes\r")
    assert status == 0
    assert out.count("Not exiting; type save to keep your changes, exit to leave") == 2
    assert out[-1] == "Abort - Not saving changes..."


def test_ctrl_d_on_an_empty_line_exits_cleanly(cfg):
    status, out = shell(cfg, CTRL_D)
    assert (status, out[1:]) == (0, ["Clean exit - no unsaved changes"])


def test_a_closed_terminal_discards_unsaved_changes(cfg):
    status, out = shell(cfg, "add 10.0.0.5 P3001234 u1\r", close=True)
    assert (status, out[-1]) == (1, "Abort - Not saving changes... (the terminal closed)")
    assert cfg.read_text() == ORIGINAL
    assert shell(cfg, "list\r", close=True)[0] == 0


def test_rem_asks_on_the_terminal(cfg):
    status, out = shell(cfg, "rem uPMU2\r", "y\r", "save\r", "exit\r")
    assert out[1].startswith("Removed uPMU2 (192.168.1.25, P3112234)")
    assert [u.alias for u in UpmuList.load(str(cfg))] == ["uPMU1"]
    assert out[-1] == "Clean exit - no unsaved changes"


def test_failures_are_printed_and_the_shell_goes_on(cfg):
    status, out = shell(cfg, "add 300.1.1.1 P3001234 u1\r", "bogus\r", "exit\r")
    assert status == 0
    assert out[1].startswith("add: invalid IP address '300.1.1.1'")
    assert out[2].startswith("unknown command 'bogus'")


def test_history_is_kept_in_a_file(cfg, tmp_path):
    path = tmp_path / "history"
    shell(cfg, "list\r", "help\r", CTRL_D, history=FileHistory(str(path)))
    assert list(FileHistory(str(path)).load_history_strings()) == ["help", "list"]


def test_history_degrades_to_memory_with_a_warning_when_unwritable(tmp_path):
    (tmp_path / "hist").mkdir()
    warnings: list[str] = []
    history = open_history(str(tmp_path / "hist"), warn=warnings.append)
    assert isinstance(history, InMemoryHistory)
    assert warnings == [f"upmu-adm: warning: cannot write history file "
                        f"'{tmp_path / 'hist'}' (Is a directory); history is off for this "
                        f"session"]


def test_history_file_that_fails_later_warns_once(tmp_path, cfg):
    path = tmp_path / "history"
    warnings: list[str] = []
    history = open_history(str(path), warn=warnings.append)
    path.unlink()
    path.mkdir()                                 # now every write fails
    shell(cfg, "list\r", "help\r", CTRL_D, history=history)
    assert len(warnings) == 1 and "history is off for the rest" in warnings[0]


def test_completer_adapter(cfg):
    state = ShellState.load(str(cfg), str(cfg.with_name("b.ini")))
    completer = ShellCompleter(state)
    got = [(c.text, c.start_position, c.display_meta_text)
           for c in completer.get_completions(Document("setext up"), CompleteEvent())]
    assert got == [("uPMU1", -2, "uPMU1 (192.168.1.24, P3112233)"),
                   ("uPMU2", -2, "uPMU2 (192.168.1.25, P3112234)")]
