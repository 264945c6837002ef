"""The console's commands: one function each, taking the console and the words after the
command's name and returning the reply's text; a refusal raises :class:`Refusal`.

Passwords: ``adduser USER PASSWORD TAG...`` as the manual prints it, or ``adduser USER``,
which asks for the password twice without echo and then for the tags; ``passwd USER``
asks the same way. Without a terminal nothing can be asked: the password must be on the
line.
"""
from __future__ import annotations

import shlex
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from qss.accounts import AccountError, AccountStore

try:
    from pymongo.errors import PyMongoError
except ImportError:             # pragma: no cover - pymongo is a dependency
    PyMongoError = sqlite3.Error  # type: ignore[misc,assignment]

#: The appliance's fix for a plotter.db the console cannot write (manual ch. 16).
TMPFILES_FIX = "sudo systemd-tmpfiles --create /etc/tmpfiles.d/qss.conf"

__all__ = ["COMMANDS", "Command", "Console", "Refusal", "Reply", "execute", "redact",
           "store_failure"]

#: ask(prompt, secret) -> the answer, or None when nobody can be asked (a script).
Ask = Callable[[str, bool], "str | None"]


class Refusal(Exception):
    """A command refused; the message is one line."""


@dataclass
class Console:
    """What the commands act on."""

    store: AccountStore
    ask: Ask = lambda prompt, secret: None


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    summary: str
    run: Callable[[Console, Sequence[str]], str]
    #: what each argument completes to: "user", "tag", "command" or None
    complete: tuple[str | None, ...] = ()
    #: indexes of the words that are passwords (kept out of the history)
    secret: tuple[int, ...] = ()


@dataclass(frozen=True)
class Reply:
    text: str
    ok: bool = True
    exit: bool = False


COMMANDS: dict[str, Command] = {}


def command(name: str, usage: str, summary: str, complete: tuple = (),
            secret: tuple[int, ...] = ()):
    def register(fn: Callable[[Console, Sequence[str]], str]):
        COMMANDS[name] = Command(name, usage, summary, fn, complete, secret)
        return fn
    return register


def _ask_password(console: Console, user: str) -> str:
    first = console.ask(f"Password for {user}: ", True)
    if first is None:
        raise Refusal("cannot ask for a password without a terminal; give it on the line "
                      "(see help)")
    if not first:
        raise Refusal("the password must not be empty; nothing changed")
    if console.ask(f"Password for {user} again: ", True) != first:
        raise Refusal("the two passwords differ; nothing changed")
    return first


@command("adduser", "adduser USER [PASSWORD TAG...]",
         "add a user with a password and tags (asked without them)",
         complete=(None, None, "tag"), secret=(1,))
def cmd_adduser(console: Console, args: Sequence[str]) -> str:
    if not args:
        raise Refusal("usage: adduser USER PASSWORD TAG...  (e.g. adduser peter psladmin "
                      "psl lbnl pge), or adduser USER to be asked for the password")
    user = args[0]
    if len(args) == 1:
        if console.store.get(user) is not None:
            raise Refusal(f"user {user!r} already exists (passwd changes a password, "
                          f"addtags adds tags)")
        password = _ask_password(console, user)
        tags = (console.ask("Tags (at least one, separated by spaces): ", False) or "").split()
    else:
        password, tags = args[1], list(args[2:])
    account = console.store.add(user, password, tags)
    return f"added user {account.name} with tags {' '.join(account.tags)}"


@command("deluser", "deluser USER", "delete a user", complete=("user",))
def cmd_deluser(console: Console, args: Sequence[str]) -> str:
    if len(args) != 1:
        raise Refusal("usage: deluser USER")
    console.store.delete(args[0])
    return f"deleted user {args[0]}"


@command("passwd", "passwd USER [PASSWORD]",
         "set a user's password (asked without it); signs them out",
         complete=("user",), secret=(1,))
def cmd_passwd(console: Console, args: Sequence[str]) -> str:
    if len(args) not in (1, 2):
        raise Refusal("usage: passwd USER [PASSWORD]")
    user = args[0]
    if len(args) == 1:
        if console.store.get(user) is None:
            raise Refusal(f"no user {user!r} (list shows the users)")
        password = _ask_password(console, user)
    else:
        password = args[1]
    console.store.set_password(user, password)
    return f"changed the password of {user}"


@command("addtags", "addtags USER TAG...", "give a user more tags",
         complete=("user", "tag"))
def cmd_addtags(console: Console, args: Sequence[str]) -> str:
    if len(args) < 2:
        raise Refusal("usage: addtags USER TAG... (at least one tag)")
    account = console.store.add_tags(args[0], args[1:])
    return f"{account.name} now has tags {' '.join(account.tags)}"


@command("rmtags", "rmtags USER TAG...", "take tags from a user (one must be left)",
         complete=("user", "tag"))
def cmd_rmtags(console: Console, args: Sequence[str]) -> str:
    if len(args) < 2:
        raise Refusal("usage: rmtags USER TAG... (at least one tag)")
    account = console.store.remove_tags(args[0], args[1:])
    return f"{account.name} now has tags {' '.join(account.tags)}"


@command("list", "list", "the users and their tags")
def cmd_list(console: Console, args: Sequence[str]) -> str:
    if args:
        raise Refusal("usage: list")
    accounts = console.store.list()
    if not accounts:
        return "no users yet (adduser adds one); everyone sees what tagconfig.json calls public"
    width = max(len("USER"), *(len(a.name) for a in accounts))
    lines = [f"{'USER':<{width}}  TAGS"]
    lines += [f"{a.name:<{width}}  {' '.join(a.tags)}" for a in accounts]
    return "\n".join(lines)


_HELP_TAIL = """\
Example (manual ch. 11): adduser peter psladmin psl lbnl pge
Every user sees what tagconfig.json calls "public" (/home/manager/mr-plotter/tools),
plus the path prefixes it gives each of their tags; changes apply to the web site at once."""


@command("help", "help [COMMAND]", "this list, or one command's usage",
         complete=("command",))
def cmd_help(console: Console, args: Sequence[str]) -> str:
    if args:
        c = COMMANDS.get(args[0])
        if c is None:
            raise Refusal(f"no command {args[0]!r}; help lists them")
        return f"Usage:\n   {c.usage}\n{c.summary}"
    width = max(len(c.usage) for c in COMMANDS.values())
    lines = ["Usage:"] + [f"   {c.usage:<{width}}  {c.summary}" for c in COMMANDS.values()]
    return "\n".join(lines + [_HELP_TAIL])


@command("exit", "exit", "leave the console (Ctrl+D too)")
def cmd_exit(console: Console, args: Sequence[str]) -> str:
    return ""


def split(line: str) -> list[list[str]]:
    """The commands of ``line`` (``;`` separates them; quotes as in a shell).

    Raises:
        Refusal: unbalanced quotes.
    """
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";")
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        words = list(lexer)
    except ValueError as exc:
        raise Refusal(f"cannot read the line: {exc}") from None
    out: list[list[str]] = [[]]
    for w in words:
        if w and set(w) == {";"}:
            out.append([])
        else:
            out[-1].append(w)
    return [c for c in out if c]


def execute(console: Console, line: str) -> list[Reply]:
    """Run every command of ``line``; stops at the first refusal or at ``exit``."""
    if line.lstrip().startswith("#"):
        return []
    try:
        commands = split(line)
    except Refusal as exc:
        return [Reply(f"error: {exc}", ok=False)]
    replies = []
    for words in commands:
        c = COMMANDS.get(words[0])
        if c is None:
            replies.append(Reply(f"error: no command {words[0]!r}; help lists them",
                                 ok=False))
            break
        if c.name == "exit":
            replies.append(Reply("", exit=True))
            break
        try:
            replies.append(Reply(c.run(console, words[1:])))
        except (Refusal, AccountError) as exc:
            replies.append(Reply(f"error: {exc}", ok=False))
            break
        except (sqlite3.Error, PyMongoError) as exc:
            replies.append(Reply(f"error: {store_failure(console.store, exc)}", ok=False))
            break
    return replies


def store_failure(store: AccountStore, exc: Exception) -> str:
    """One line for a store that cannot be read or written: where, why, and the fix."""
    path = getattr(store, "path", None)
    if path is None:
        return f"the accounts in MongoDB (mr_plotter.accounts) cannot be used: {exc}"
    text = f"the accounts in {path} cannot be used: {exc}"
    if "readonly" in str(exc) or "unable to open" in str(exc):
        text += f" (its owner or mode is wrong; on the appliance: {TMPFILES_FIX})"
    return text


def redact(line: str) -> str:
    """``line`` as the history keeps it: passwords written as ``********``."""
    try:
        commands = split(line)
    except Refusal:
        return line
    out = []
    for words in commands:
        c = COMMANDS.get(words[0])
        for i in (c.secret if c else ()):
            if i + 1 < len(words):
                words[i + 1] = "********"
        out.append(" ".join(shlex.quote(w) if w != "********" else w for w in words))
    return "; ".join(out)
