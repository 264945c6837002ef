"""What qss-distil keeps between runs, whatever holds it: per instance its signature,
the input versions consumed and the ranges still owed (:class:`InstanceState`), its
status and backlog (:class:`Status`, what ``qss-distil list`` and the status report
show), and the ranges operators asked to recompute (requests).

Backends: :mod:`.sqlite` (``distil.db`` beside the SQLite queue, the default) and
:mod:`.mongo` (beside a MongoDB queue). Every update of an instance's work is atomic,
so a kill leaves either the state before a chunk or the state after it.
"""
from __future__ import annotations

import abc
import dataclasses

from qss.logtext import without_password

#: A time range [start, end) in ns.
Range = tuple[int, int]


class StateError(Exception):
    """The state store cannot be used; the message is one line."""


def describe(where: str) -> str:
    """``where`` for messages: a MongoDB URL without its user and password."""
    return without_password(where)


@dataclasses.dataclass
class InstanceState:
    signature: str = ""
    consumed: dict[str, int] = dataclasses.field(default_factory=dict)
    pending: list[Range] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Backlog:
    """How far behind an instance is, as the engine last measured it."""

    points: int = 0             # input points in the ranges owed (about: statistics)
    lag_ns: int = 0             # newest input point minus the oldest owed one; 0: current
    oldest_ns: int | None = None   # the oldest owed input point
    at: float | None = None     # when measured (unix time)


@dataclasses.dataclass(frozen=True)
class Status:
    name: str
    ok_at: float | None         # last chunk done or nothing owed (unix time)
    error: str | None           # the last failure, cleared by a success
    error_at: float | None
    failures: int               # failures in a row
    points: int                 # output points written, all time
    active: bool = True         # among the instances the service runs now
    backlog: Backlog = Backlog()


class StateStore(abc.ABC):
    """The engine's state; safe to share between threads."""

    location: str

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def names(self) -> list[str]:
        """Every instance with saved work, sorted."""

    @abc.abstractmethod
    def load(self, name: str) -> InstanceState:
        """The instance's state (empty for an instance never seen)."""

    @abc.abstractmethod
    def save(self, name: str, state: InstanceState, taken: tuple[int, ...] = ()) -> None:
        """Replace the instance's state, durably; the requests ``taken`` (ids) are gone
        in the same transaction."""

    @abc.abstractmethod
    def request(self, name: str, r: Range) -> None:
        """Ask the engine (this process's or a running service's) to recompute ``r``."""

    @abc.abstractmethod
    def requests(self, name: str) -> list[tuple[int, Range]]:
        """(id, range) of the instance's requests not yet taken."""

    @abc.abstractmethod
    def forget(self, name: str) -> bool:
        """Drop the instance's state: its next pass recomputes everything. Returns
        whether there was any."""

    # -- status -------------------------------------------------------------------
    @abc.abstractmethod
    def succeeded(self, name: str, points: int = 0, now: float | None = None) -> None:
        """A chunk done (``points`` written) or nothing owed: clears the failures."""

    @abc.abstractmethod
    def failed(self, name: str, error: str, now: float | None = None) -> int:
        """Record a failure; returns the failures in a row."""

    @abc.abstractmethod
    def measured(self, name: str, backlog: Backlog) -> None:
        """Record the instance's backlog."""

    @abc.abstractmethod
    def activate(self, names: set[str]) -> None:
        """These instances are the ones running now (the others keep their state and
        outputs, and leave the status report)."""

    @abc.abstractmethod
    def status(self, name: str) -> Status | None: ...

    @abc.abstractmethod
    def statuses(self) -> list[Status]:
        """Every instance's status, sorted by name."""
