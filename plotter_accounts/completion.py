"""Tab completion as a pure function of the text before the cursor: command names first,
then what the command declares for each position (users, tags, command names)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from .commands import COMMANDS, Command

__all__ = ["complete"]


def complete(text: str, users: Iterable[str], tags: Iterable[str],
             commands: Mapping[str, Command] = COMMANDS) -> list[tuple[str, int]]:
    """``(candidate, characters it replaces)`` for the word being typed at the end of
    ``text``; the last kind a command declares repeats (``addtags USER TAG TAG...``)."""
    segment = text.rsplit(";", 1)[-1]
    words = segment.split()
    if segment and not segment[-1].isspace() and words:
        word, position = words[-1], len(words) - 1
    else:
        word, position = "", len(words)
    if position == 0:
        options: Iterable[str] = commands
    else:
        c = commands.get(words[0])
        if c is None or not c.complete:
            return []
        kinds = c.complete
        kind = kinds[position - 1] if position - 1 < len(kinds) else kinds[-1]
        if position - 1 >= len(kinds) and c.name in ("deluser", "passwd", "help"):
            return []
        typed = set(words[1:position])
        options = {"user": list(users), "tag": [t for t in tags if t not in typed],
                   "command": list(commands)}.get(kind or "", [])
    return [(o, len(word)) for o in sorted(set(options)) if o.startswith(word)]
