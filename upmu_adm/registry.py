"""The shell's command registry, and the driver that runs a line of commands.

How this works: a command is a function ``(state, args) -> Reply``. It never prints and
never asks; when it needs the operator's consent it returns a :class:`Reply` carrying a
:class:`Confirm` (the question, and what to do on yes and on no), and the driver,
:meth:`Registry.execute`, asks through a callable it is given. So every command runs in
tests without a terminal, and the same driver serves the prompt_toolkit shell (which asks
on the terminal), ``-c`` and piped scripts (which answer from ``--yes`` or refuse).

A line holds one or more commands separated by ``;``; ``#`` starts a comment. After a
failed command the rest of the line is not run (``add ...; save`` must not save half).
"""
from __future__ import annotations

import difflib
import shlex
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["BOOL", "COMMAND", "Command", "Confirm", "Registry", "Reply", "UPMU", "fail",
           "ok", "split_commands"]

# What an argument position completes to (see upmu_adm.completion).
UPMU = "upmu"          # a known uPMU's IP address, serial number or alias
BOOL = "bool"          # true / false
COMMAND = "command"    # a command name

#: Asks the operator a yes/no question; None where nobody can be asked.
ConfirmFn = Callable[[str], bool]


@dataclass(frozen=True)
class Confirm:
    """A question for the operator, and the command's continuation for each answer.

    ``question`` may start with lines of details; its last line is the question."""

    question: str
    yes: Callable[[], Reply]
    no: Callable[[], Reply]


@dataclass(frozen=True)
class Reply:
    """What a command says. ``ok`` False makes scripts exit non-zero; ``exit`` ends the
    shell; ``confirm`` asks first (the driver resolves it into a further Reply)."""

    text: str = ""
    ok: bool = True
    confirm: Confirm | None = None
    exit: bool = False


def ok(text: str = "", **kw: Any) -> Reply:
    """A successful reply."""
    return Reply(text, True, **kw)


def fail(text: str, **kw: Any) -> Reply:
    """A failed reply; the rest of the line is not run."""
    return Reply(text, False, **kw)


class _State(Protocol):
    def refresh(self) -> str | None: ...


Handler = Callable[[Any, Sequence[str]], Reply]


@dataclass(frozen=True)
class Command:
    """A registered command. ``usage`` is the synopsis (``add IPADDR SERIAL ALIAS
    [ext]``); ``help`` is the operator's text, its first line the summary."""

    name: str
    func: Handler = field(repr=False)
    usage: str
    help: str
    aliases: tuple[str, ...] = ()
    # Per argument position: UPMU, BOOL, COMMAND or None (nothing to complete).
    complete: tuple[str | None, ...] = ()
    min_args: int = 0
    max_args: int = 0

    @property
    def synopsis(self) -> str:
        """The usage with the aliases: ``exit | quit``."""
        return " | ".join((self.usage, *self.aliases))

    @property
    def summary(self) -> str:
        """The first line of the help text."""
        return self.help.strip().splitlines()[0]

    def usage_error(self, reason: str = "") -> Reply:
        """``add: missing ALIAS; usage: add IPADDR SERIAL ALIAS [ext]`` and the help hint."""
        why = f"{self.name}: {reason}; " if reason else ""
        return fail(f"{why}usage: {self.usage}  (help {self.name} for details)")


def _arity(usage: str) -> tuple[int, int]:
    """Required and maximum argument counts from a synopsis: ``[x]`` is optional."""
    words = usage.split()[1:]
    required = sum(1 for w in words if not w.startswith("["))
    return required, len(words)


class Registry:
    """Commands by name and alias (case-insensitive), in registration order."""

    def __init__(self) -> None:
        self._commands: list[Command] = []
        self._by_name: dict[str, Command] = {}

    def command(self, name: str, *, usage: str, help: str, aliases: Sequence[str] = (),
                complete: Sequence[str | None] = (), min_args: int | None = None,
                max_args: int | None = None) -> Callable[[Handler], Handler]:
        """Register the decorated function as command ``name``.

        The argument counts are read from ``usage`` unless given. Raises ValueError on
        a name or alias registered twice (a programming error).
        """
        low, high = _arity(usage)

        def register(func: Handler) -> Handler:
            cmd = Command(name, func, usage, help.strip(), tuple(aliases), tuple(complete),
                          low if min_args is None else min_args,
                          high if max_args is None else max_args)
            for key in (name, *aliases):
                if key.lower() in self._by_name:
                    raise ValueError(f"command name {key!r} registered twice")
                self._by_name[key.lower()] = cmd
            self._commands.append(cmd)
            return func

        return register

    def __iter__(self) -> Iterator[Command]:
        return iter(self._commands)

    def get(self, name: str) -> Command | None:
        """The command with this name or alias, or None."""
        return self._by_name.get(name.lower())

    def names(self) -> list[str]:
        """Every name and alias, in registration order."""
        return [n for c in self._commands for n in (c.name, *c.aliases)]

    def run(self, state: Any, words: Sequence[str]) -> Reply:
        """Run one command, given as its words (name first). Unknown commands and wrong
        argument counts are failed replies, not exceptions."""
        name, args = words[0], list(words[1:])
        cmd = self.get(name)
        if cmd is None:
            close = difflib.get_close_matches(name.lower(), self.names(), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            return fail(f"unknown command {name!r}; {hint}(type help for the list)")
        if len(args) < cmd.min_args:
            missing = cmd.usage.split()[1 + len(args)].strip("[]")
            return cmd.usage_error(f"missing {missing}")
        if len(args) > cmd.max_args:
            return cmd.usage_error(f"unexpected {args[cmd.max_args]!r}")
        return cmd.func(state, args)

    def execute(self, state: _State, line: str,
                confirm: ConfirmFn | None = None) -> Iterator[Reply]:
        """Run every command of a line, yielding one resolved Reply per command.

        Questions are put to ``confirm``; with None (no terminal), a question is a
        failed reply telling the operator about ``--yes``. Stops after a failure (with
        a reply naming what was not run) or an exit.
        """
        try:
            commands = split_commands(line)
        except ValueError as exc:
            yield fail(f"cannot read the line: {exc}; nothing was run")
            return
        if not commands:
            return
        note = state.refresh()
        if note:
            yield ok(note)
        for i, words in enumerate(commands):
            reply = self.run(state, words)
            while reply.confirm is not None:
                question = reply.confirm.question
                if confirm is None:
                    reply = fail(f"{question} [y/N] not asked: standard input is not a "
                                 f"terminal; run upmu-adm with --yes to answer yes")
                else:
                    reply = reply.confirm.yes() if confirm(question) else reply.confirm.no()
            yield reply
            if reply.exit:
                return
            if not reply.ok:
                rest = "; ".join(" ".join(w) for w in commands[i + 1:])
                if rest:
                    yield fail(f"not run: {rest}")
                return


def split_commands(line: str) -> list[list[str]]:
    """Commands of a line as word lists: ``;`` separates commands and ``#`` at the start
    of a word starts a comment, both outside quotes; words are split as a POSIX shell
    would.

    Raises:
        ValueError: an unterminated quote.
    """
    segments: list[str] = []
    buf: list[str] = []
    quote = ""
    for ch in line:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == ";":
            segments.append("".join(buf))
            buf = []
            continue
        elif ch == "#" and (not buf or buf[-1].isspace()):
            break
        buf.append(ch)
    if quote:
        raise ValueError(f"no closing quotation mark ({quote})")
    segments.append("".join(buf))
    return [words for seg in segments if (words := shlex.split(seg))]
