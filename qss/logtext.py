"""Text made safe for a log line: from the network (:func:`escape`, used everywhere) and
URLs that may hold a password (:func:`without_password`).

A uPMU's serial and path, and anything else a sender chooses, reach the receiver's log.
:func:`escape` keeps ordinary text as it is and escapes what could start a line, move the
cursor or fake quoting, so every event stays exactly one line and reads the same
wherever the value appears (inside quotes or not).
"""
from __future__ import annotations

import re

__all__ = ["escape", "without_password"]

# Quotes are escaped too: a value shown as '...' cannot close its quotes early.
_SPECIAL = {"\\": "\\\\", "'": "\\'", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str) -> str:
    """``text`` with backslashes, quotes and every non-printable character (line breaks,
    terminal escape sequences, Unicode line separators, ...) written as Python escapes:
    ``'P3\\nFAKE'`` gives ``P3\\nFAKE`` on one line. Printable text comes back unchanged."""
    if text.isprintable() and not any(c in text for c in "\\'\""):
        return text
    out = []
    for char in text:
        special = _SPECIAL.get(char)
        if special is not None:
            out.append(special)
        elif char.isprintable():
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else
                       f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def without_password(url: str) -> str:
    """A MongoDB URL for messages, without its user and password:
    ``mongodb://qss:secret@db:27017/?x=1`` gives ``mongodb://db:27017/?x=1``; other text
    comes back unchanged."""
    # Up to the last "@" before the options: a password with an unescaped "/" or "@"
    # (pymongo refuses it, and the refusal is printed) must not show either.
    return re.sub(r"^(mongodb(?:\+srv)?://)[^?]*@", r"\1", url)
