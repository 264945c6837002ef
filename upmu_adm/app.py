"""The interactive shell: prompt_toolkit reads a line, the registry runs it, we print.

Keys: Ctrl+C with text on the line clears it (as in bash); on an empty line it leaves
the shell the way ``exit`` does, because the manual tells operators to press Ctrl+C to
exit and to expect "clean exit - no unsaved changes". With unsaved changes ``exit``
asks before discarding them; Ctrl+C or Ctrl+D at that question answers no. Ctrl+D on an
empty line exits too. When the terminal goes away (input closed), unsaved changes are
discarded, since nobody is left to ask.
"""
from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterable

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion, WordCompleter
from prompt_toolkit.document import Document
from prompt_toolkit.history import History
from prompt_toolkit.input import Input
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.output import Output

from qss.cli import history as shell_history
from qss.naming import parse_dat_filename
from qss.queue import QueueError
from qss.upmuconfig import UpmuListError

from .commands import REGISTRY
from .completion import Sources, complete, directories
from .registry import Choice, Confirm, Registry, is_yes, prompt_suffix
from .state import ShellState
from .views import count

__all__ = ["HISTORY_FILE", "ShellCompleter", "open_history", "run_interactive",
           "sources_for"]

PROMPT = "upmu-adm> "
HISTORY_FILE = "~/.upmu_adm_history"


class _LineCancelled(Exception):
    """Ctrl+C with text on the line: drop the line, prompt again."""


class ShellCompleter(Completer):
    """prompt_toolkit adapter over :func:`upmu_adm.completion.complete`."""

    def __init__(self, state: ShellState, registry: Registry = REGISTRY):
        self.state = state
        self.registry = registry
        self.sources = sources_for(state)

    def get_completions(self, document: Document,
                        complete_event: CompleteEvent) -> Iterable[Completion]:
        for c in complete(document.text_before_cursor, self.registry, self.state.upmus,
                          self.sources):
            yield Completion(c.text, start_position=-c.replace, display_meta=c.meta)


def sources_for(state: ShellState) -> Sources:
    """Completion sources over the file system and the queue. The queue is asked only
    when it opens (once it failed, completion stops trying); errors give nothing."""
    svc = state.services

    def serials() -> list[str]:
        queue = svc.queue_for_completion()
        try:
            return queue.serials() if queue is not None else []
        except QueueError:
            return []

    def years(key: str) -> list[str]:
        queue = svc.queue_for_completion()
        if queue is None:
            return []
        try:
            serial = state.upmus.find(key).serial
        except UpmuListError:
            serial = key
        try:
            folded = {s.casefold(): s for s in queue.serials()}
            first = next(iter(queue.files(folded.get(serial.casefold(), serial),
                                          page_size=1)), None)
        except QueueError:
            return []
        parsed = parse_dat_filename(first.name.rsplit("/", 1)[-1]) if first else None
        if parsed is None:
            return []
        return [str(y) for y in range(svc.now().year, parsed[1].year - 1, -1)]

    return Sources(dirs=lambda word: directories(word, svc.cwd()), serials=serials,
                   years=years)


def open_history(path: str = HISTORY_FILE,
                 warn: Callable[[str], None] | None = None) -> History:
    """History kept in ``path`` across sessions; in memory only (with a warning) when the
    file cannot be written."""
    return shell_history.open_history(
        path, warn or (lambda text: print(text, file=sys.stderr)), "upmu-adm")


def _key_bindings() -> KeyBindings:
    kb = KeyBindings()

    @kb.add("c-c")
    def _ctrl_c(event: KeyPressEvent) -> None:
        # Added after prompt_toolkit's own Ctrl+C binding, so this one wins.
        exc = _LineCancelled if event.current_buffer.text else KeyboardInterrupt
        event.app.exit(exception=exc, style="class:aborting")

    return kb


def run_interactive(state: ShellState, *, registry: Registry = REGISTRY,
                    input: Input | None = None, output: Output | None = None,
                    history: History | None = None,
                    write: Callable[[str], None] | None = None,
                    show_traceback: bool = False) -> int:
    """Run the shell until the operator leaves; return the exit status.

    ``input``, ``output`` and ``history`` default to the terminal and
    ``~/.upmu_adm_history``; ``write`` prints a reply (default: standard output).
    Tests pass a pipe input, a DummyOutput, an InMemoryHistory and a list's append.
    An internal error (a bug) is one line and the shell goes on; ``show_traceback``
    (``--traceback``) writes the traceback before it.
    """
    write = write or print
    session: PromptSession[str] = PromptSession(
        PROMPT, history=history if history is not None else open_history(warn=write),
        completer=ShellCompleter(state, registry), complete_while_typing=False,
        key_bindings=_key_bindings(), input=input, output=output)
    # Answers are not commands: a separate session keeps them out of the history.
    asker: PromptSession[str] = PromptSession(input=input, output=output)

    def ask(question: str, suffix: str, completer: Completer | None = None) -> str:
        # Details go above; the prompt itself stays one short line.
        *details, question = question.split("\n")
        if details:
            write("\n".join(details))
        try:
            return asker.prompt(f"{question} {suffix} ", completer=completer)
        except (KeyboardInterrupt, EOFError):
            return ""

    def confirm(c: Confirm) -> bool:
        return is_yes(c, ask(c.question, prompt_suffix(c)))

    def choose(c: Choice) -> str | None:
        *details, question = c.question.split("\n")
        write("\n".join(details + [f"  {d}" for _, d in c.options]
                        + ["(Tab completes; Enter alone cancels)"]))
        completer = WordCompleter([v for v, _ in c.options], meta_dict=dict(c.options),
                                  ignore_case=True)
        return ask(question, "", completer).strip() or None

    write(_banner(state))
    while True:
        try:
            line = session.prompt()
        except _LineCancelled:
            continue
        except (KeyboardInterrupt, EOFError):
            if session.input.closed:
                return _input_closed(state, write)
            line = "exit"
        try:
            for reply in registry.execute(state, line, confirm, choose):
                if reply.text:
                    write(reply.text)
                if reply.exit:
                    return 0
        except KeyboardInterrupt:
            write("Interrupted")
        except Exception as exc:  # noqa: BLE001 - keep the shell (and unsaved edits) alive
            if show_traceback:
                write(traceback.format_exc().rstrip("\n"))
            write(f"internal error: {type(exc).__name__}: {exc} (please report it; the "
                  f"shell and your unsaved changes are still here)")


def _input_closed(state: ShellState, write: Callable[[str], None]) -> int:
    if state.unsaved:
        write("Abort - Not saving changes... (the terminal closed)")
        return 1
    write("Clean exit - no unsaved changes")
    return 0


def _banner(state: ShellState) -> str:
    lines = [f"upmu-adm: {count(len(state.upmus), 'uPMU')} in {state.path}. Type help "
             f"for the commands; Ctrl+C on an empty line or exit leaves."]
    lines += [f"warning: {p}" for p in state.upmus.problems]
    return "\n".join(lines)
