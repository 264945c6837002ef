"""The uPMU list as sync2q sees it, reloaded while running when ``upmuconfig.ini`` changes.

:meth:`ConfigWatcher.poll` compares the file's fingerprint (inode, mtime, size) with the
one of the list last loaded and reloads it under the writers' shared ``flock``
(:meth:`qss.upmuconfig.UpmuList.load`). A file that cannot be read or parsed (an
operator's half-finished edit) is one error line per version of the file, and the last
good list stays in force.
"""
from __future__ import annotations

import dataclasses
import logging

from qss.upmuconfig import Upmu, UpmuConfigError, UpmuList, fingerprint

log = logging.getLogger("sync2q")

_UNREAD = object()


@dataclasses.dataclass(frozen=True)
class Change:
    """uPMUs added, removed and changed by a reload (changed: the new snapshot)."""

    added: tuple[Upmu, ...]
    removed: tuple[Upmu, ...]
    changed: tuple[Upmu, ...]


class ConfigWatcher:
    """Holds the current uPMUs of ``path``, by serial number ignoring case."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.upmus: dict[str, Upmu] = {}
        self._loaded = _UNREAD      # fingerprint of what self.upmus came from
        self._refused = _UNREAD     # fingerprint of the last version that failed to load

    def by_serial(self, serial: str) -> Upmu | None:
        """The uPMU of a queue serial (ignoring case, as the receiver matches it)."""
        return self.upmus.get(serial.casefold())

    def poll(self) -> Change | None:
        """Reload if the file changed; return what changed (None: nothing to do)."""
        try:
            current = fingerprint(self.path)
        except OSError as exc:
            current = ("error", str(exc))
        if current == self._loaded or current == self._refused:
            return None
        try:
            upmus = UpmuList.load(self.path)
        except UpmuConfigError as exc:
            self._refused = current
            # The message names the file and the line.
            log.error("%s; keeping the %d uPMUs loaded before", " ".join(str(exc).split()),
                      len(self.upmus))
            return None
        self._loaded, self._refused = upmus.fingerprint, _UNREAD
        for problem in upmus.problems:
            log.warning("%s", problem)
        new = {u.serial.casefold(): u for u in upmus.upmus}
        old = self.upmus
        change = Change(
            added=tuple(u for k, u in new.items() if k not in old),
            removed=tuple(u for k, u in old.items() if k not in new),
            changed=tuple(u for k, u in new.items() if k in old and old[k] != u))
        self.upmus = new
        if old or change.added:
            log.info("%s: %d uPMUs (%d added, %d removed, %d changed)", self.path, len(new),
                     len(change.added), len(change.removed), len(change.changed))
        for u in change.added:
            log.info("uPMU %s: added (%s, %d streams with uuids)", u.describe(),
                     "extended" if u.extended else "base", len(u.streams))
        for u in change.removed:
            log.info("uPMU %s: removed; its queued files wait until it is added again",
                     u.describe())
        for u in change.changed:
            before = old[u.serial.casefold()]
            mode = ("" if before.extended == u.extended else
                    f", now {'extended' if u.extended else 'base'}")
            log.info("uPMU %s: changed%s; streams are checked again", u.describe(), mode)
        return change
