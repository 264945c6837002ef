"""Tab completion as a pure function of the text before the cursor.

The first word of a command completes to command names; later words to what the
command declares for that position (:data:`~upmu_adm.registry.UPMU`: the IP addresses,
serial numbers and aliases of the uPMUs in the working list; ``BOOL``: true/false;
``COMMAND``: command names; any other string: its ``|``-separated words). Matching
ignores case, as ``find`` does. The prompt_toolkit adapter lives in :mod:`upmu_adm.app`.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from qss.upmuconfig import Upmu

from .registry import BOOL, COMMAND, UPMU, Registry

__all__ = ["Candidate", "complete"]


@dataclass(frozen=True)
class Candidate:
    """A completion: ``text`` replaces the last ``replace`` characters before the cursor;
    ``meta`` says what it is (shown beside it in the menu)."""

    text: str
    replace: int
    meta: str = ""


def complete(text: str, registry: Registry, upmus: Iterable[Upmu]) -> list[Candidate]:
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
        options = _options(kind, registry, upmus)
    folded = word.casefold()
    seen: set[str] = set()
    out = []
    for option, meta in options:
        if option.casefold().startswith(folded) and option not in seen:
            seen.add(option)
            out.append(Candidate(option, len(word), meta))
    return out


def _options(kind: str | None, registry: Registry,
             upmus: Iterable[Upmu]) -> list[tuple[str, str]]:
    if kind is None:
        return []
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
