"""Who may see which streams: the one place every data path asks.

A request is made by a :class:`Viewer`: a signed-in user and their tags, or the anonymous
one (:meth:`Gate.viewer` asks the sign-in, :mod:`plotter.signin`). The :class:`Gate`
resolves stream UUIDs and lists streams *for a viewer*: a handler never touches the
catalog or BTrDB stream handles except through it. The policy of manual ch. 10
(:class:`DomainPolicy`): a viewer sees the path prefixes ``tagconfig.json`` gives
``public`` and each of their tags, by whole path elements, matched against the stream's
path (``/lbnl/uPMU2/L1MAG``). A stream the viewer may not see is answered exactly as one
that does not exist (:class:`UnknownStream`), so its UUID leaks nothing.
"""
from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from qss.tagconfig import TagConfigFile, covers, prefixes_for

from .catalog import Catalog, StreamEntry

__all__ = ["ANONYMOUS", "DomainPolicy", "EveryoneSeesAll", "Gate", "NotAUuid", "Policy",
           "UnknownStream", "Viewer"]


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
    """Decides which paths (``/lbnl/uPMU2/L1MAG``, ``/lbnl/uPMU2``) a viewer may see."""

    def checker(self, viewer: Viewer) -> Callable[[str], bool]: ...


class EveryoneSeesAll:
    """Every stream is public (manual ch. 10's ``"public": ["/"]``)."""

    def checker(self, viewer: Viewer) -> Callable[[str], bool]:
        return lambda path: True


class DomainPolicy:
    """Manual ch. 10: ``public``'s prefixes and those of the viewer's tags, as
    ``tagconfig.json`` says now (its last good version while it is broken)."""

    def __init__(self, tagconfig: TagConfigFile) -> None:
        self.tagconfig = tagconfig

    def checker(self, viewer: Viewer) -> Callable[[str], bool]:
        prefixes = prefixes_for(self.tagconfig.get(), viewer.tags)
        return lambda path: any(covers(p, path) for p in prefixes)


class Gate:
    """The streams a viewer may see, and nothing else."""

    def __init__(self, catalog: Catalog, policy: Policy | None = None,
                 who: Callable[[Any], Viewer] | None = None) -> None:
        self.catalog = catalog
        self.policy = policy or EveryoneSeesAll()
        self._who = who

    def viewer(self, request: object) -> Viewer:
        """Who made ``request`` (anonymous without a sign-in)."""
        return ANONYMOUS if self._who is None else self._who(request)

    def may_see(self, viewer: Viewer, collection: str) -> bool:
        """Whether ``viewer`` may see the streams of ``collection`` (for lists that are not
        streams, such as the health panel's uPMUs)."""
        return self.policy.checker(viewer)("/" + collection.strip("/"))

    def streams(self, viewer: Viewer) -> list[StreamEntry]:
        """Every stream ``viewer`` may see, by collection and name.

        Raises:
            Exception: from the client when BTrDB is unavailable.
        """
        sees = self.policy.checker(viewer)
        return [s for s in self.catalog.streams() if sees(s.path)]

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
        if entry is not None and not self.policy.checker(viewer)(entry.path):
            # The same work as for a UUID nobody has (the catalog reads BTrDB again), so
            # not even the time taken tells a hidden stream from a missing one.
            self.catalog.find(uuidlib.UUID(int=uu.int ^ 1 << 127))
            entry = None
        if entry is None:
            raise UnknownStream(str(text))
        return entry

    def handles(self, viewer: Viewer, texts: Iterable[str]) -> list[tuple[StreamEntry, object]]:
        """``(entry, btrdb Stream)`` for each UUID, in order (see :meth:`stream`)."""
        entries: Sequence[StreamEntry] = [self.stream(viewer, t) for t in texts]
        db = self.catalog.btrdb.get()
        return [(e, db.stream_from_uuid(e.uuid)) for e in entries]
