"""The interactive console: prompt_toolkit reads a line, :func:`~.commands.execute` runs
it, we print. Passwords are asked without echo; the history (``~/.qss_accounts_history``)
keeps lines with their passwords written as ``********``. Ctrl+C clears the line,
Ctrl+D on an empty line (or ``exit``) leaves."""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterable

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import History
from prompt_toolkit.input import Input
from prompt_toolkit.output import Output

from qss.cli import history as shell_history

from .commands import Console, execute, redact
from .completion import complete

__all__ = ["HISTORY_FILE", "PROMPT", "run_interactive"]

PROMPT = "accounts> "
HISTORY_FILE = "~/.qss_accounts_history"
BANNER = ("Mr. Plotter account access control console ({where}). Type help for the "
          "commands; exit or Ctrl+D leaves.")


class _Completer(Completer):
    def __init__(self, console: Console, tags: Callable[[], Iterable[str]]) -> None:
        self.console, self.tags = console, tags

    def get_completions(self, document: Document, complete_event: CompleteEvent):
        try:
            accounts = self.console.store.list()
            tags = {*self.tags(), *(t for a in accounts for t in a.tags)}
        except Exception:  # noqa: BLE001 - completion never breaks the line
            accounts, tags = [], set()
        for text, replace in complete(document.text_before_cursor,
                                      [a.name for a in accounts], tags):
            yield Completion(text, start_position=-replace)


def open_history(path: str = HISTORY_FILE,
                 warn: Callable[[str], None] = print) -> History:
    """The console's history file, never holding a password (:func:`redact`), or history
    in memory (with a warning) when it cannot be written."""
    return shell_history.open_history(path, warn, "qss-accounts", redact)


def run_interactive(console: Console, where: str, tags: Callable[[], Iterable[str]],
                    *, input: Input | None = None, output: Output | None = None,
                    history: History | None = None,
                    write: Callable[[str], None] | None = None) -> int:
    """Run the console until the operator leaves; return the exit status (0)."""
    write = write or print
    session: PromptSession[str] = PromptSession(
        PROMPT, history=history if history is not None else open_history(warn=write),
        completer=_Completer(console, tags), complete_while_typing=False,
        input=input, output=output)
    asker: PromptSession[str] = PromptSession(input=input, output=output)

    def ask(prompt: str, secret: bool) -> str | None:
        try:
            return asker.prompt(prompt, is_password=secret)
        except (KeyboardInterrupt, EOFError):
            return ""
    console.ask = ask
    write(BANNER.format(where=where))
    while True:
        try:
            line = session.prompt()
        except KeyboardInterrupt:
            continue
        except EOFError:
            return 0
        try:
            replies = execute(console, line)
        except Exception as exc:  # noqa: BLE001 - a broken store: say it, keep the console
            write(f"error: {type(exc).__name__}: {exc}")
            continue
        for reply in replies:
            if reply.text:
                write(reply.text)
            if reply.exit:
                return 0


def stderr_write(text: str) -> None:
    print(text, file=sys.stderr)
