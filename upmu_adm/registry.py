"""The shell's command registry, and the driver that runs a line of commands.

How this works: a command is a function ``(state, args) -> Reply``. It never prints and
never asks; when it needs the operator's consent it returns a :class:`Reply` carrying a
:class:`Confirm` (the question, and what to do on yes and on no), or a :class:`Choice`
(pick one of several, e.g. which uPMU), and the driver, :meth:`Registry.execute`, asks
through callables it is given. So every command runs in tests without a terminal, and
the same driver serves the prompt_toolkit shell (which asks on the terminal), ``-c`` and
piped scripts (which answer from ``--yes`` or refuse). When a command refuses (an
operator's mistake, a file or a queue that fails), it, a helper it calls or a
question's continuation raises :class:`Refusal` with the reply's text, and the registry
turns it into the failed reply.

A line holds one or more commands separated by ``;``; ``#`` starts a comment. After a
failed command the rest of the line is not run (``add ...; save`` must not save half).
"""
from __future__ import annotations

import difflib
import shlex
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["BOOL", "COMMAND", "DIR", "QUEUED", "YEAR", "Choice", "Command", "Confirm",
           "Refusal", "Registry", "Reply", "UPMU", "fail", "is_yes", "ok",
           "prompt_suffix", "split_commands"]

# What an argument position completes to (see upmu_adm.completion).
UPMU = "upmu"          # a known uPMU's IP address, serial number or alias
BOOL = "bool"          # true / false
COMMAND = "command"    # a command name
DIR = "dir"            # a directory
QUEUED = "queued"      # a serial with queued files, or a known uPMU
YEAR = "year"          # a year of the uPMU named by the word before


@dataclass(frozen=True)
class Confirm:
    """A question for the operator, and the command's continuation for each answer.

    ``question`` may start with lines of details; its last line is the question.
    ``word`` is what the operator must type for yes: ``y`` accepts y or yes; any other
    word (``yes`` for deleting queued files) must be typed in full. ``unattended``
    False: ``--yes`` does not answer it (scripts get ``no``), for offers to delete data
    made on the way to something else.
    """

    question: str
    yes: Callable[[], Reply]
    no: Callable[[], Reply]
    word: str = "y"
    unattended: bool = True


@dataclass(frozen=True)
class Choice:
    """Pick one of ``options`` (value, description). ``pick(value)`` continues with the
    answer as typed (the command checks it); ``cancel()`` when none is given. ``hint``
    tells a script how to avoid the question (``name the uPMU: importdat DIR SERIAL``).
    """

    question: str
    options: tuple[tuple[str, str], ...]
    pick: Callable[[str], Reply]
    cancel: Callable[[], Reply]
    hint: str = ""


@dataclass(frozen=True)
class Reply:
    """What a command says. ``ok`` False makes scripts exit non-zero; ``exit`` ends the
    shell; ``confirm`` and ``choice`` ask first (the driver resolves them into a further
    Reply)."""

    text: str = ""
    ok: bool = True
    confirm: Confirm | None = None
    exit: bool = False
    choice: Choice | None = None


#: Asks the operator a question; True for yes. None where nobody can be asked.
ConfirmFn = Callable[[Confirm], bool]
#: Asks the operator to pick; the answer, or None for no answer.
ChooseFn = Callable[[Choice], "str | None"]


def ok(text: str = "", **kw: Any) -> Reply:
    """A successful reply."""
    return Reply(text, True, **kw)


def fail(text: str, **kw: Any) -> Reply:
    """A failed reply; the rest of the line is not run."""
    return Reply(text, False, **kw)


class Refusal(Exception):
    """A command refuses: ``text`` is the failed reply's (one line naming the command,
    the object and the reason). Raised by a command, a helper it calls, or the
    continuation of a question; :meth:`Registry.run` and :meth:`Registry.execute` turn
    it into :func:`fail` ``(text)``, so the rest of the line is not run."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    @property
    def reply(self) -> Reply:
        return fail(self.text)


def _refused(func: Callable[..., Reply], *args: Any) -> Reply:
    """``func(*args)``, or the failed reply of the :class:`Refusal` it raises."""
    try:
        return func(*args)
    except Refusal as exc:
        return exc.reply


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
    # Per argument position: UPMU, BOOL, COMMAND..., a tuple of them, or None (nothing).
    complete: tuple[str | tuple[str, ...] | None, ...] = ()
    min_args: int = 0
    max_args: int = 0
    group: str = ""

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
    """Commands by name and alias (case-insensitive), listed by group (in the order of
    ``groups``, unknown groups last) and within a group in registration order."""

    def __init__(self, groups: Sequence[str] = ()) -> None:
        self._commands: list[Command] = []
        self._by_name: dict[str, Command] = {}
        self._groups = tuple(groups)

    def command(self, name: str, *, usage: str, help: str, aliases: Sequence[str] = (),
                complete: Sequence[str | tuple[str, ...] | None] = (),
                min_args: int | None = None, max_args: int | None = None,
                group: str = "") -> Callable[[Handler], Handler]:
        """Register the decorated function as command ``name``.

        The argument counts are read from ``usage`` unless given. Raises ValueError on
        a name or alias registered twice (a programming error).
        """
        low, high = _arity(usage)

        def register(func: Handler) -> Handler:
            cmd = Command(name, func, usage, help.strip(), tuple(aliases), tuple(complete),
                          low if min_args is None else min_args,
                          high if max_args is None else max_args, group)
            for key in (name, *aliases):
                if key.lower() in self._by_name:
                    raise ValueError(f"command name {key!r} registered twice")
                self._by_name[key.lower()] = cmd
            self._commands.append(cmd)
            return func

        return register

    def __iter__(self) -> Iterator[Command]:
        rank = {g: i for i, g in enumerate(self._groups)}
        return iter(sorted(self._commands, key=lambda c: rank.get(c.group, len(rank))))

    def groups(self) -> list[tuple[str, list[Command]]]:
        """(group, its commands) in listing order."""
        out: dict[str, list[Command]] = {}
        for cmd in self:
            out.setdefault(cmd.group, []).append(cmd)
        return list(out.items())

    def get(self, name: str) -> Command | None:
        """The command with this name or alias, or None."""
        return self._by_name.get(name.lower())

    def names(self) -> list[str]:
        """Every name and alias, in listing order."""
        return [n for c in self for n in (c.name, *c.aliases)]

    def run(self, state: Any, words: Sequence[str]) -> Reply:
        """Run one command, given as its words (name first). Unknown commands, wrong
        argument counts and refusals are failed replies, not exceptions."""
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
        return _refused(cmd.func, state, args)

    def execute(self, state: _State, line: str, confirm: ConfirmFn | None = None,
                choose: ChooseFn | None = None) -> Iterator[Reply]:
        """Run every command of a line, yielding one resolved Reply per command.

        Questions are put to ``confirm`` and choices to ``choose``; with None (no
        terminal), a question is a failed reply telling the operator about ``--yes``
        and a choice one repeating its hint. Stops after a failure (with a reply naming
        what was not run) or an exit.
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
            while reply.confirm is not None or reply.choice is not None:
                reply = _resolve(reply, confirm, choose)
            yield reply
            if reply.exit:
                return
            if not reply.ok:
                rest = "; ".join(" ".join(w) for w in commands[i + 1:])
                if rest:
                    yield fail(f"not run: {rest}")
                return


def _resolve(reply: Reply, confirm: ConfirmFn | None, choose: ChooseFn | None) -> Reply:
    """The reply after asking the one question ``reply`` carries."""
    if reply.confirm is not None:
        c = reply.confirm
        if confirm is None:
            if not c.unattended:
                return _refused(c.no)
            return fail(f"{c.question} {prompt_suffix(c)} not asked: standard input is not "
                        f"a terminal; run upmu-adm with --yes to answer yes")
        return _refused(c.yes if confirm(c) else c.no)
    c = reply.choice
    assert c is not None
    if choose is None:
        hint = f"; {c.hint}" if c.hint else ""
        question = c.question.replace("\n", " ")
        return fail(f"{question} not asked: standard input is not a terminal{hint}")
    answer = choose(c)
    return _refused(c.pick, answer) if answer else _refused(c.cancel)


def prompt_suffix(c: Confirm) -> str:
    """``[y/N]``, or ``(type yes to confirm)`` for a question that wants a word."""
    return "[y/N]" if c.word == "y" else f"(type {c.word} to confirm)"


def is_yes(c: Confirm, answer: str) -> bool:
    """Whether ``answer`` (as typed) says yes to ``c``."""
    answer = answer.strip().lower()
    return answer in ("y", "yes") if c.word == "y" else answer == c.word


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
