"""The shell's state: the uPMU list being edited, the file it came from, pending edits.

Edits go to a working copy in memory (``upmus``); ``saved`` is the file as upmu-adm last
read or wrote it, and ``fingerprint`` what the file looked like then. Unsaved changes are
the difference between the two. Each edit is also logged (:class:`Edit`) so that, when
someone changed the file by hand in the meantime, ``save merge`` can apply the same
edits on top of the file as it is now instead of overwriting it.

Besides the list, the state carries :class:`~upmu_adm.services.Services` (the queue and
the probes the data commands use) and the queued files to delete when a removal is
saved (``purges``, serial -> the uPMU as described when removed), and where ``save``
applies the streams' metadata (``btrdb``; None: no BTrDB step, for library use and the
tests of the list commands). The streams to delete from BTrDB when a removal is saved
are ``drops`` (asked for at ``rem``; forgotten, like ``purges``, by ``reload``); those a
save could not delete because BTrDB failed are ``pending_drops``, kept (through reloads
too: the removal is saved) until a later save deletes them; leaving the shell forgets
them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

from qss.upmuconfig import (Fingerprint, UpmuConfigError, UpmuDiff, UpmuList,
                            UpmuNotFoundError, diff, fingerprint)

from .metadata import BtrdbMetadata
from .services import Services
from .views import count, unsaved_summary

__all__ = ["Edit", "ShellState", "StreamDrop"]


@dataclass(frozen=True)
class StreamDrop:
    """A removed uPMU's streams to delete from BTrDB: (stream name, UUID) pairs."""

    described: str                # the uPMU as described when removed
    streams: tuple[tuple[str, UUID], ...]

    @property
    def uuids(self) -> tuple[UUID, ...]:
        return tuple(u for _, u in self.streams)

    def only(self, uuids) -> StreamDrop:
        """The same, keeping the streams whose UUIDs are in ``uuids``."""
        keep = set(uuids)
        return StreamDrop(self.described, tuple(s for s in self.streams if s[1] in keep))


@dataclass(frozen=True)
class Edit:
    """One edit as the operator made it, replayable on another copy of the list."""

    op: str                       # "add", "rem" or "setext"
    args: tuple
    line: str                     # as the operator would type it, for messages

    def apply(self, upmus: UpmuList) -> None:
        """Make the edit on ``upmus``. A removal of a uPMU that is already gone is done.

        Raises:
            UpmuListError: the edit cannot be made on this list (the message says why).
        """
        if self.op == "add":
            upmus.add(*self.args)
        elif self.op == "rem":
            try:
                upmus.remove(*self.args)
            except UpmuNotFoundError:
                pass        # someone removed it by hand: what the operator wanted
        elif self.op == "setext":
            upmus.set_extended(*self.args)
        else:
            raise ValueError(f"unknown edit {self.op!r}")


@dataclass
class ShellState:
    """What the shell works on. Create it with :meth:`load`."""

    path: str
    backup_path: str
    saved: UpmuList
    fingerprint: Fingerprint | None
    upmus: UpmuList = field(init=False)
    edits: list[Edit] = field(default_factory=list)
    services: Services = field(default_factory=Services)
    # Serial -> description: delete its queued files when its removal is saved (rem).
    purges: dict[str, str] = field(default_factory=dict)
    # IP -> streams to delete from BTrDB when its removal is saved (rem).
    drops: dict[str, StreamDrop] = field(default_factory=dict)
    # IP -> streams a save could not delete from BTrDB yet (retried by every save).
    pending_drops: dict[str, StreamDrop] = field(default_factory=dict)
    # Where save applies the streams' metadata; None: no BTrDB step.
    btrdb: BtrdbMetadata | None = None
    # The on-disk fingerprint already reported as a concurrent change (report once).
    _noted: Fingerprint | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.upmus = _copy(self.saved, self.path)

    @classmethod
    def load(cls, path: str, backup_path: str, services: Services | None = None,
             btrdb: BtrdbMetadata | None = None) -> ShellState:
        """Read ``upmuconfig.ini`` (missing: an empty list).

        Raises:
            UpmuConfigError: the file cannot be read or parsed.
        """
        saved = UpmuList.load(path)
        return cls(path, backup_path, saved, saved.fingerprint,
                   services=services or Services(), btrdb=btrdb)

    def close(self) -> None:
        """Release the queue, if a command opened it."""
        self.services.close()

    # -- unsaved changes -----------------------------------------------------------------

    @property
    def unsaved(self) -> bool:
        """True when the working copy differs from the file as last read or written."""
        return self.upmus.render() != self.saved.render()

    def pending(self) -> UpmuDiff:
        """uPMUs added, removed and changed since the file was last read or written."""
        return diff(self.saved, self.upmus)

    def describe_unsaved(self) -> tuple[str, str]:
        """(``2 unsaved changes``, ``added ...; removed ...``) for messages."""
        return unsaved_summary(self.pending(), self.saved, self.upmus)

    def record(self, edit: Edit) -> None:
        """Log an edit already made on :attr:`upmus` (for ``save merge``)."""
        self.edits.append(edit)

    def reset(self, saved: UpmuList, fp: Fingerprint | None) -> None:
        """Start again from ``saved`` (just read or written): no unsaved changes."""
        self.saved = saved
        self.fingerprint = fp
        self.upmus = _copy(saved, self.path)
        self.edits.clear()
        self.purges.clear()
        self.drops.clear()
        self._noted = None

    def reload(self) -> None:
        """Read the file again, discarding unsaved changes.

        Raises:
            UpmuConfigError: as :meth:`load`; the state is then unchanged.
        """
        saved = UpmuList.load(self.path)
        self.reset(saved, saved.fingerprint)

    # -- changes made by others ----------------------------------------------------------

    def refresh(self) -> str | None:
        """Notice a change to the file made by someone else since it was read.

        Without unsaved changes the file is read again; with them, the operator is told
        once that ``save`` will offer to merge. Returns a note for the operator, or None
        when nothing changed.
        """
        now = fingerprint(self.path)
        if now == self.fingerprint or now == self._noted:
            return None
        if not self.unsaved:
            try:
                self.reload()
            except UpmuConfigError as exc:
                self._noted = now
                return (f"warning: {self.path} changed on disk but cannot be read ({exc}); "
                        f"still showing the list as read before")
            problems = "".join(f"\nwarning: {p}" for p in self.upmus.problems)
            return (f"note: {self.path} changed on disk; read it again "
                    f"({count(len(self.upmus), 'uPMU')}){problems}")
        self._noted = now
        return (f"note: {self.path} changed on disk since upmu-adm read it; save will "
                f"offer to merge your unsaved changes into it or to reload it")


def _copy(upmus: UpmuList, path: str) -> UpmuList:
    """An independent copy, so that edits never touch the saved snapshot."""
    return UpmuList.parse(upmus.render(), path)
