"""Tab completion as a pure function of the text before the cursor.

The first word of a command completes to command names; later words to what the
command declares for that position (:data:`~upmu_adm.registry.UPMU`: the IP addresses,
serial numbers and aliases of the uPMUs in the working list; ``BOOL``: true/false;
``COMMAND``: command names; ``DIR``, ``QUEUED`` and ``YEAR``: what :class:`Sources`
gives, directories, serials with queued files and the years of the uPMU named by the
word before; any other string: its ``|``-separated words; a tuple: all of its kinds).
Matching ignores case, as ``find`` does, except for directories. The prompt_toolkit
adapter, and the Sources over the file system and the queue, live in
:mod:`upmu_adm.app`.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from qss.upmuconfig import Upmu

from .registry import BOOL, COMMAND, DIR, QUEUED, UPMU, YEAR, Registry

__all__ = ["Candidate", "Sources", "complete", "directories"]


@dataclass(frozen=True)
class Sources:
    """Completions that are not in the uPMU list. ``dirs(word)``: directories the word
    may become (whole words); ``serials()``: serials with queued files; ``years(key)``:
    years of the uPMU or serial ``key``. Each must be quick and must not raise."""

    dirs: Callable[[str], list[str]] = lambda word: []
    serials: Callable[[], list[str]] = lambda: []
    years: Callable[[str], list[str]] = lambda key: []


@dataclass(frozen=True)
class Candidate:
    """A completion: ``text`` replaces the last ``replace`` characters before the cursor;
    ``meta`` says what it is (shown beside it in the menu)."""

    text: str
    replace: int
    meta: str = ""


def complete(text: str, registry: Registry, upmus: Iterable[Upmu],
             sources: Sources = Sources()) -> list[Candidate]:
    """Candidates for the word being typed at the end of ``text``."""
    segment = text.rsplit(";", 1)[-1]       # the command being typed
    words = segment.split()
    if segment and not segment[-1].isspace() and words:
        word, position = words[-1], len(words) - 1
    else:
        word, position = "", len(words)
    options: list[tuple[str, str]]
    if position == 0:
        options = [(c.name, c.summary) for c in registry]
        options += [(a, f"same as {c.name}") for c in registry for a in c.aliases]
    else:
        cmd = registry.get(words[0])
        kinds = cmd.complete if cmd is not None else ()
        kind = kinds[position - 1] if position - 1 < len(kinds) else None
        previous = words[position - 1] if position >= 2 else ""
        options = []
        for k in kind if isinstance(kind, tuple) else (kind,):
            options += _options(k, registry, upmus, sources, word, previous)
    folded = word.casefold()
    seen: set[str] = set()
    out = []
    for option, meta in options:
        match = (option.startswith(word) if meta == "directory"
                 else option.casefold().startswith(folded))
        if match and option not in seen:
            seen.add(option)
            out.append(Candidate(option, len(word), meta))
    return out


def _options(kind: str | None, registry: Registry, upmus: Iterable[Upmu],
             sources: Sources, word: str, previous: str) -> list[tuple[str, str]]:
    if kind is None:
        return []
    if kind == DIR:
        return [(d, "directory") for d in sources.dirs(word)]
    if kind == QUEUED:
        known = _options(UPMU, registry, upmus, sources, word, previous)
        return known + [(s, "queued files") for s in sources.serials()]
    if kind == YEAR:
        return [(y, "") for y in sources.years(previous)] + [("all", "every file")]
    if kind == UPMU:
        out = []
        for u in upmus:
            out += [(u.ip, u.describe()), (u.serial, u.describe())]
            if u.alias:
                out.append((u.alias, u.describe()))
        return out
    if kind == BOOL:
        return [("true", "extended mode"), ("false", "base mode")]
    if kind == COMMAND:
        return [(n, "") for n in registry.names()]
    return [(w, "") for w in kind.split("|")]


def directories(word: str, cwd: str = ".",
                scandir: Callable[[str], Iterable[os.DirEntry]] = os.scandir) -> list[str]:
    """Directories ``word`` may become: ``/media/ex`` -> ``/media/external/``. ``~`` is
    expanded for listing but kept in the result; hidden directories only when the
    word's last part starts with a dot. Never raises."""
    head, sep, prefix = word.rpartition("/")
    listed = os.path.join(cwd, os.path.expanduser(head + sep or "."))
    try:
        with scandir(listed) as entries:
            names = sorted(e.name for e in entries if _is_dir(e))
    except OSError:
        return []
    return [f"{head}{sep}{n}/" for n in names
            if n.startswith(prefix) and (prefix.startswith(".") or not n.startswith("."))]


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False
