"""The account console of manual ch. 11 (``accounts.py``, ``qss-accounts``): its commands
as functions, completion, the prompt_toolkit shell on a pipe, ``-c`` and scripts, and a
few runs in a real pseudo-terminal."""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from plotter_accounts.app import open_history, run_interactive
from plotter_accounts.cli import run_script
from plotter_accounts.commands import Console, execute, redact
from plotter_accounts.completion import complete
from qss.accounts import SqliteAccounts

from pty_support import PtyProgram, pexpect

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def console(tmp_path):
    store = SqliteAccounts(str(tmp_path / "plotter.db"))
    yield Console(store)
    store.close()


def texts(console, line):
    return [(r.text, r.ok) for r in execute(console, line)]


def test_the_manuals_adduser_then_list_help_and_exit(console):
    assert texts(console, "adduser peter psladmin psl lbnl pge") == [
        ("added user peter with tags psl lbnl pge", True)]
    assert console.store.check("peter", "psladmin").tags == ("psl", "lbnl", "pge")
    assert texts(console, "list") == [("USER   TAGS\npeter  psl lbnl pge", True)]
    (help_text, ok), = texts(console, "help")
    assert ok and help_text.startswith("Usage:\n   adduser USER [PASSWORD TAG...]")
    assert "adduser peter psladmin psl lbnl pge" in help_text
    for name in ("deluser", "passwd", "addtags", "rmtags", "list", "help", "exit"):
        assert re.search(rf"^   {name}\b", help_text, re.M), name
    assert [r.exit for r in execute(console, "exit")] == [True]


@pytest.mark.parametrize("line,error", [
    ("adduser peter psladmin", "at least one tag is required"),
    ("adduser peter", "cannot ask for a password without a terminal"),
    ("adduser", "usage: adduser USER PASSWORD TAG..."),
    ("adduser bad/name pw psl", "bad user name 'bad/name'"),
    ("adduser ann pw bad/tag", "bad tag 'bad/tag'"),
    ("adduser ann pw upmu", "user 'ann' already exists"),
    ("deluser ghost", "no user 'ghost'"),
    ("passwd ghost pw", "no user 'ghost'"),
    ("addtags ann", "usage: addtags USER TAG..."),
    ("rmtags ann upmu", "user 'ann' must keep at least one tag"),
    ("rmtags ann psl", "user 'ann' has no tag 'psl'"),
    ("frobnicate", "no command 'frobnicate'; help lists them"),
    ("adduser 'ann", "cannot read the line"),
])
def test_mistakes_are_one_line_errors_and_change_nothing(console, line, error):
    console.store.add("ann", "annpass", ["upmu"])
    (text, ok), = texts(console, line)
    assert not ok and text.startswith("error: ") and error in text and "\n" not in text
    assert [(a.name, a.tags) for a in console.store.list()] == [("ann", ("upmu",))]


def test_tags_passwords_and_deletion(console):
    texts(console, "adduser ann annpass upmu")
    assert texts(console, "addtags ann lbnl psl; rmtags ann upmu") == [
        ("ann now has tags upmu lbnl psl", True), ("ann now has tags lbnl psl", True)]
    assert texts(console, "passwd ann other") == [("changed the password of ann", True)]
    assert console.store.check("ann", "other") and not console.store.check("ann", "annpass")
    assert texts(console, "deluser ann; list") == [
        ("deleted user ann", True),
        ("no users yet (adduser adds one); everyone sees what tagconfig.json calls public",
         True)]


def test_passwords_never_reach_the_history():
    assert redact("adduser peter psladmin psl lbnl") == "adduser peter ******** psl lbnl"
    assert redact("passwd peter s3cret; list") == "passwd peter ********; list"
    assert redact("passwd peter") == "passwd peter" and redact("list") == "list"


def test_completion_of_commands_users_and_tags():
    users, tags = ["peter", "paula"], ["lbnl", "psl", "public"]
    assert complete("del", users, tags) == [("deluser", 3)]
    assert complete("deluser p", users, tags) == [("paula", 1), ("peter", 1)]
    assert complete("addtags peter p", users, tags) == [("psl", 1), ("public", 1)]
    assert complete("addtags peter psl ", users, tags) == [("lbnl", 0), ("public", 0)]
    assert complete("adduser new pw l", users, tags) == [("lbnl", 1)]
    assert complete("adduser ", users, tags) == []          # a new name: nothing to offer
    assert complete("list; he", users, tags) == [("help", 2)]
    assert complete("deluser peter ", users, tags) == []


def test_the_shell_asks_for_the_password_twice(console):
    out: list[str] = []
    with create_pipe_input() as inp:
        inp.send_text("adduser peter\rpsladmin\rpsladmin\rpsl lbnl pge\r"
                      "passwd peter\rone\rtwo\r"
                      "list\rexit\r")
        with create_app_session(input=inp, output=DummyOutput()):
            status = run_interactive(console, "test", lambda: [], input=inp,
                                     output=DummyOutput(), history=InMemoryHistory(),
                                     write=out.append)
    assert status == 0
    assert out[1:] == ["added user peter with tags psl lbnl pge",
                       "error: the two passwords differ; nothing changed",
                       "USER   TAGS\npeter  psl lbnl pge"]
    assert console.store.check("peter", "psladmin")


def test_the_history_file_keeps_lines_without_passwords(tmp_path):
    h = open_history(str(tmp_path / "h"), print)
    h.append_string("adduser peter psladmin psl")
    assert "psladmin" not in (tmp_path / "h").read_text()
    assert "+adduser peter ******** psl" in (tmp_path / "h").read_text()


def test_scripts_stop_at_the_first_error(console):
    out, err = io.StringIO(), io.StringIO()
    status = run_script(console, ["adduser a pw t\n", "# a comment\n", "deluser ghost\n",
                                  "adduser b pw t\n"], out, err)
    assert status == 1 and out.getvalue() == "added user a with tags t\n"
    assert err.getvalue() == "error: no user 'ghost' (list shows the users)\n"
    assert console.store.get("b") is None


def cli(tmp_path, *args, stdin=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "plotter_accounts", "--config", os.devnull,
                           "--queue", f"sqlite:///{tmp_path}/queue.db", "--tagconfig",
                           str(tmp_path / "tagconfig.json"), *args], input=stdin,
                          capture_output=True, text=True, timeout=60, env=env)


def test_the_command_line_with_c_and_standard_input(tmp_path):
    done = cli(tmp_path, "-c", "adduser peter psladmin psl lbnl pge; list")
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout == ("added user peter with tags psl lbnl pge\n"
                           "USER   TAGS\npeter  psl lbnl pge\n")
    done = cli(tmp_path, stdin="adduser peter x y\n")
    assert done.returncode == 1 and done.stderr == (
        "error: user 'peter' already exists (passwd changes a password, addtags adds tags)\n")
    done = cli(tmp_path, "--queue", "sqlite:////nonexistent/dir/queue.db", "-c", "list")
    assert done.returncode == 1 and done.stderr.startswith(
        "qss-accounts: error: cannot open the accounts (/nonexistent/dir/plotter.db): ")
    assert done.stderr.count("\n") == 1


# -- a real terminal -------------------------------------------------------------------

class Terminal(PtyProgram):
    """The console (``argv``) in a pty, importing this checkout's code."""

    def __init__(self, tmp_path: Path, argv: list[str]):
        super().__init__(argv, {"PYTHONPATH": str(ROOT), "HOME": str(tmp_path),
                                "QSS_CONFIG": os.devnull}, tmp_path, timeout=10)

    def ready(self, prompt: str = "accounts>") -> None:
        self.expect(prompt)
        self.wait_raw()


@pytest.fixture
def term(tmp_path):
    t = Terminal(tmp_path, [sys.executable, "-m", "plotter_accounts", "--queue",
                            f"sqlite:///{tmp_path}/queue.db", "--tagconfig",
                            str(tmp_path / "tagconfig.json")])
    (tmp_path / "tagconfig.json").write_text('{"public": ["/upmu"], "lbnl": ["/lbnl"]}')
    yield t
    t.close()


def test_in_a_terminal_the_password_is_not_echoed_and_not_kept(term, tmp_path):
    term.expect("Mr. Plotter account access control console")
    term.ready()
    term.line("adduser peter")
    term.ready("Password for peter:")
    term.line("s3cret-pw")
    term.ready("Password for peter again:")
    term.line("s3cret-pw")
    term.ready("Tags (at least one")
    term.line("psl lbnl pge")
    term.expect("added user peter with tags psl lbnl pge")
    term.ready()
    term.line("passwd peter hunter22")
    term.expect("changed the password of peter")
    term.ready()
    term.line("exit")
    term.child.expect(pexpect.EOF)
    term.child.close()
    assert term.child.exitstatus == 0
    assert "s3cret-pw" not in term.screen() and "*" in term.screen()
    history = (tmp_path / ".qss_accounts_history").read_text()
    assert "+passwd peter ********" in history and "hunter22" not in history
    store = SqliteAccounts(str(tmp_path / "plotter.db"))
    assert store.check("peter", "hunter22").tags == ("psl", "lbnl", "pge")
    store.close()


def test_in_a_terminal_tab_completes_commands_and_tags(term, tmp_path):
    term.ready()
    term.line("adduser ann annpass upmu")
    term.expect("added user ann")
    term.ready()
    term.child.send("addt")
    term.child.send("\t")
    term.expect("ags")                         # the rest of addtags, drawn after Tab
    term.child.send(" ann lb")
    term.child.send("\t")
    term.expect("nl")                          # lbnl, from tagconfig.json
    term.line("")
    term.expect("ann now has tags upmu lbnl")
    term.ready()
    term.child.sendcontrol("d")
    term.child.expect(pexpect.EOF)
    term.child.close()
    assert term.child.exitstatus == 0


def test_a_store_that_cannot_be_written_is_one_line_naming_the_file_and_the_fix(tmp_path):
    import sqlite3

    class ReadOnly(SqliteAccounts):
        def _insert(self, *args):
            raise sqlite3.OperationalError("attempt to write a readonly database")
    store = ReadOnly(str(tmp_path / "plotter.db"))
    try:
        assert texts(Console(store), "adduser peter psladmin psl; list") == [
            (f"error: the accounts in {tmp_path}/plotter.db cannot be used: attempt to write "
             f"a readonly database (its owner or mode is wrong; on the appliance: sudo "
             f"systemd-tmpfiles --create /etc/tmpfiles.d/qss.conf)", False)]
    finally:
        store.close()
