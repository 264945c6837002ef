"""Request accounting shared by the gRPC and REST adapters: what gets logged, and when.

Levels, chosen so that a healthy appliance logs a few lines a minute:

- DEBUG: every request, with its size and duration (``--log-level debug``);
- INFO: changes to the set of streams (create, obliterate, delete, tags, annotations),
  refused requests (bad input: the client gets the message too), and every
  ``interval`` seconds one summary line per request class that was used;
- ERROR: failures of the server itself (disk full, I/O errors, bugs), with the traceback
  of a bug.

Codes 401 (no such point) and 404 (no such stream) answer ordinary questions
(``earliest()`` of an empty stream, ``exists()``) and are not counted as refusals.
"""
from __future__ import annotations

import dataclasses
import logging
import threading

#: Requests that change which streams exist or what they are: logged one by one at INFO.
STRUCTURAL = frozenset({"Create", "Obliterate", "Delete", "SetStreamTags",
                        "SetStreamAnnotations"})
OK, REFUSED, FAILED = "ok", "refused", "failed"


def outcome(code: int) -> str:
    """The outcome of a request answered with BTrDB status ``code``: 401 (no such point)
    and 404 (no such stream) answer ordinary questions; 426 (disk full) and 5xx are the
    server's failures; other codes refuse bad input."""
    if code in (0, 401, 404):
        return OK
    if code == 426 or code >= 500:
        return FAILED
    return REFUSED


@dataclasses.dataclass
class _Class:
    requests: int = 0
    refused: int = 0
    failed: int = 0
    items: int = 0
    seconds: float = 0.0
    slowest: float = 0.0


class RequestLog:
    """Counts requests per class ("grpc ArrowInsert", "http GET /data/uuid") and logs them."""

    def __init__(self, logger: logging.Logger | None = None):
        self.log = logger or logging.getLogger("tsdb.requests")
        self._lock = threading.Lock()
        self._classes: dict[str, _Class] = {}

    def record(self, api: str, name: str, outcome: str, seconds: float, items: int = 0,
               detail: str = "", message: str = "") -> None:
        """Account for one finished request; ``outcome`` is OK, REFUSED or FAILED."""
        key = f"{api} {name}"
        with self._lock:
            c = self._classes.setdefault(key, _Class())
            c.requests += 1
            c.refused += outcome == REFUSED
            c.failed += outcome == FAILED
            c.items += items
            c.seconds += seconds
            c.slowest = max(c.slowest, seconds)
        what = f"{key} {detail}".rstrip()
        if outcome == FAILED:
            self.log.error("%s failed: %s", what, message)
        elif outcome == REFUSED:
            self.log.info("%s refused: %s", what, message)
        elif name in STRUCTURAL:
            self.log.info("%s", what)
        elif self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("%s: %d items, %.1f ms", what, items, seconds * 1e3)

    def summary(self) -> list[str]:
        """One line per request class seen since the last summary (and reset)."""
        with self._lock:
            classes, self._classes = self._classes, {}
        lines = []
        for key in sorted(classes):
            c = classes[key]
            extra = f", {c.items:,} items" if c.items else ""
            bad = "".join(f", {n} {what}" for n, what in ((c.refused, "refused"),
                                                          (c.failed, "failed")) if n)
            lines.append(f"{key}: {c.requests} requests{extra}{bad}, mean "
                         f"{c.seconds / c.requests * 1e3:.1f} ms, slowest "
                         f"{c.slowest * 1e3:.1f} ms")
        return lines

    def log_summary(self) -> None:
        for line in self.summary():
            self.log.info("%s", line)
