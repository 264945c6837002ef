"""Who may see which streams: the one place every data path asks.

A request is made by a :class:`Viewer` (today always the anonymous one). The
:class:`Gate` resolves stream UUIDs and lists streams *for a viewer*: a handler never
touches the catalog or BTrDB stream handles except through it, so the accounts and
domains of manual ch. 10-11 (issue 19) change :class:`Policy` and :meth:`Gate.viewer`
and nothing else. A stream the viewer may not see is answered exactly as one that does
not exist (:class:`UnknownStream`), so its UUID leaks nothing.
"""
from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .catalog import Catalog, StreamEntry

__all__ = ["ANONYMOUS", "EveryoneSeesAll", "Gate", "NotAUuid", "Policy", "UnknownStream",
           "Viewer"]


@dataclass(frozen=True)
class Viewer:
    """Who asks: a signed-in user and their tags, or nobody (``user`` None)."""

    user: str | None = None
    tags: frozenset[str] = frozenset()


ANONYMOUS = Viewer()


class UnknownStream(LookupError):
    """No stream with this UUID that the viewer may see."""

    def __init__(self, text: str) -> None:
        super().__init__(f"no stream {text!r}")


class NotAUuid(ValueError):
    """A stream named by something that is not a UUID (a 400)."""


class Policy(Protocol):
    """Decides whether a viewer may see the streams under a collection path."""

    def may_see(self, viewer: Viewer, collection: str) -> bool: ...


class EveryoneSeesAll:
    """Today's policy: every stream is public (manual ch. 10's ``"public": ["/"]``)."""

    def may_see(self, viewer: Viewer, collection: str) -> bool:
        return True


class Gate:
    """The streams a viewer may see, and nothing else."""

    def __init__(self, catalog: Catalog, policy: Policy | None = None) -> None:
        self.catalog = catalog
        self.policy = policy or EveryoneSeesAll()

    def viewer(self, request: object) -> Viewer:
        """Who made ``request`` (today: everyone is anonymous)."""
        return ANONYMOUS

    def may_see(self, viewer: Viewer, collection: str) -> bool:
        """Whether ``viewer`` may see the streams of ``collection`` (for lists that are not
        streams, such as the health panel's uPMUs)."""
        return self.policy.may_see(viewer, collection)

    def streams(self, viewer: Viewer) -> list[StreamEntry]:
        """Every stream ``viewer`` may see, by collection and name.

        Raises:
            Exception: from the client when BTrDB is unavailable.
        """
        return [s for s in self.catalog.streams() if self.policy.may_see(viewer, s.collection)]

    def stream(self, viewer: Viewer, text: str) -> StreamEntry:
        """The stream with UUID ``text``, if ``viewer`` may see it.

        Raises:
            NotAUuid: ``text`` is not a UUID.
            UnknownStream: no such stream, or one the viewer may not see.
        """
        try:
            uu = uuidlib.UUID(text)
        except (ValueError, TypeError, AttributeError):
            raise NotAUuid(f"{text!r} is not a stream UUID (e.g. "
                           f"f0896731-0e43-4ed5-a97f-19266d8e732c)") from None
        entry = self.catalog.find(uu)
        if entry is None or not self.policy.may_see(viewer, entry.collection):
            raise UnknownStream(str(text))
        return entry

    def handles(self, viewer: Viewer, texts: Iterable[str]) -> list[tuple[StreamEntry, object]]:
        """``(entry, btrdb Stream)`` for each UUID, in order (see :meth:`stream`)."""
        entries: Sequence[StreamEntry] = [self.stream(viewer, t) for t in texts]
        db = self.catalog.btrdb.get()
        return [(e, db.stream_from_uuid(e.uuid)) for e in entries]
