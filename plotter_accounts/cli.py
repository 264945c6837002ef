"""``qss-accounts`` (and ``accounts.py`` in /home/manager/mr-plotter/tools, which runs it):
the plotter's accounts, manual ch. 11.

On a terminal it is the interactive console; ``-c "CMD; CMD"`` and commands on standard
input when it is not a terminal run without asking anything: replies to standard output,
errors to standard error, the first error stops the run and the exit status is 1.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from typing import TextIO

from qss.accounts import open_accounts, plotter_db_path
from qss.cli import CommandError, ExitStatus, add_traceback_argument, load_settings, run
from qss.settings import add_settings_arguments
from qss.tagconfig import TagConfigFile

from .commands import COMMANDS, Console, execute

__all__ = ["build_parser", "entry", "main", "run_script"]

PROG = "qss-accounts"


def build_parser() -> argparse.ArgumentParser:
    commands = "\n".join(f"  {c.usage:<46} {c.summary}" for c in COMMANDS.values())
    p = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The plotter's user accounts (manual ch. 11): who may sign in to the "
                    "web site and which domain tags they see. An interactive console on a "
                    "terminal; with -c, or commands on standard input, it runs them and "
                    "exits.",
        epilog=f"commands:\n{commands}\n\nexamples:\n"
               f"  cd /home/manager/mr-plotter/tools && python accounts.py\n"
               f'  qss-accounts < users.txt     (commands with passwords: never with -c, '
               f'which shows them in ps and the shell history)\n'
               f'  qss-accounts -c "addtags peter upmu; list"\n\n'
               f"files:\n  plotter.db beside the SQLite queue, or MongoDB mr_plotter.accounts "
               f"when the queue is MongoDB\n  ~/.qss_accounts_history (passwords written as "
               f"********)\n\nexit status:\n  0  every command succeeded\n"
               f"  1  a command failed, or the accounts cannot be opened\n"
               f"  2  invalid command line or settings")
    p.add_argument("-c", "--command", metavar="COMMANDS", dest="commands",
                   help='run COMMANDS ("addtags peter upmu; list"), then exit; no passwords '
                        'here: the command line shows in ps and the shell history')
    add_traceback_argument(p)
    add_settings_arguments(p, "queue", "srv", "tagconfig")
    return p


def run_script(console: Console, lines: Iterable[str], out: TextIO, err: TextIO) -> int:
    """Run commands without a terminal; the first error stops them (exit status 1)."""
    for line in lines:
        for reply in execute(console, line):
            if reply.text:
                (out if reply.ok else err).write(reply.text + "\n")
            if not reply.ok:
                return int(ExitStatus.ERROR)
            if reply.exit:
                return int(ExitStatus.OK)
    return int(ExitStatus.OK)


def main(argv: Sequence[str]) -> int:
    """Entry point without exception mapping (see :func:`entry`).

    Raises:
        CommandError: the accounts cannot be opened.
    """
    args = build_parser().parse_args(argv)
    settings = load_settings(args)
    url = settings.queue.url
    where = ("MongoDB mr_plotter.accounts" if url.startswith("mongodb")
             else plotter_db_path(url, settings.paths.srv))
    try:
        store = open_accounts(url, settings.paths.srv)
    except Exception as exc:  # noqa: BLE001 - any backend's failure to open, one line
        raise CommandError(f"cannot open the accounts ({where}): {exc}") from None
    tagconfig = TagConfigFile(settings.plotter.tagconfig, period=0)
    try:
        console = Console(store)
        if args.commands is not None:
            return run_script(console, [args.commands], sys.stdout, sys.stderr)
        if not sys.stdin.isatty():
            return run_script(console, sys.stdin, sys.stdout, sys.stderr)
        from .app import run_interactive      # prompt_toolkit only with a terminal
        return run_interactive(console, where, lambda: tagconfig.get().keys())
    finally:
        store.close()


def entry() -> None:
    """Console script ``qss-accounts``."""
    sys.exit(run(main, prog=PROG))
