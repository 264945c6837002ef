"""The model: a distillate (what to compute) and an instance (on which streams).

A **distillate** subclasses :class:`Distillate`: it names its input and output roles,
says how much data around a changed range it needs (``lead_ns`` before, ``trail_ns``
after), how its inputs are laid out (``rebaser``), and computes in :meth:`process`
over numpy arrays. Raising ``version`` makes the engine recompute everything.
``output_precision`` says how its outputs are stored: ``"float64"`` (the default) as
computed, ``"float32"`` rounded to the nearest float32 (see :class:`Distillate`).

Its contract, which lets the engine recompute any range in any chunks and get what a
computation from scratch would give:

- the output at time ``t`` depends only on the inputs in [t - lead_ns, t + trail_ns];
- without input points in that span there is no output at ``t`` (NaN outputs are
  dropped, so a NaN-filled hole of ``pad_snap`` yields nothing by itself);
- the same inputs give the same outputs.

An **instance** binds a distillate to input streams (by UUID, found from a collection
path when configured so) and to an output collection, under a unique name; its output
streams are ``<collection>/<output role>``, with UUIDs derived from the instance name,
so a restart or another machine finds the same streams.
"""
from __future__ import annotations

import dataclasses
import uuid as uuidlib
from typing import ClassVar

import numpy as np

from .rebase import Rebaser, passthrough

#: Namespace of output stream UUIDs: uuid5(NAMESPACE, "<instance>/<output>").
NAMESPACE = uuidlib.UUID("0b7d5e0c-64f5-4c1e-9d63-5d2f1a0c2b21")


@dataclasses.dataclass(frozen=True)
class Series:
    """One input as the distillate sees it: int64 ns times and float64 values (NaN
    where ``pad_snap`` found no point)."""

    t: np.ndarray
    v: np.ndarray

    def __len__(self) -> int:
        return len(self.t)


#: What ``Distillate.output_precision`` may say.
PRECISIONS = ("float64", "float32")


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`.

    Raises:
        ValueError: it is not.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"output_precision {precision!r} is not one of "
                         f"{', '.join(map(repr, PRECISIONS))}")
    return precision


def round_to_float32(v: np.ndarray) -> np.ndarray:
    """Finite float64 values rounded to the nearest float32 (as float64). A value beyond
    float32's range (|v| > 3.4e38) is kept as it is rather than made infinite: an
    infinite output would be dropped like a NaN."""
    with np.errstate(over="ignore"):
        r = v.astype(np.float32)
    out = r.astype(np.float64)
    inf = np.isinf(r)
    return np.where(inf, v, out) if inf.any() else out


class Outputs:
    """Where :meth:`Distillate.process` puts its results: ``outputs.add(role, t, v)``,
    as many times as it likes, in any order. ``precision`` (the distillate's
    ``output_precision``) is applied to the values :meth:`points` gives: the one place
    where every output leaves for BTrDB."""

    def __init__(self, roles, precision: str = "float64") -> None:
        self._parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {r: [] for r in roles}
        self._seen: tuple[np.ndarray, bool] | None = None
        self._float32 = check_precision(precision) == "float32"

    def add(self, role: str, t, v) -> None:
        """Add points (times in ns, values) to the output ``role``.

        Raises:
            KeyError: the distillate has no such output.
            ValueError: times and values differ in length.
        """
        if role not in self._parts:
            raise KeyError(f"no output {role!r} (outputs: {', '.join(self._parts)})")
        t, v = np.asarray(t, np.int64), np.asarray(v, np.float64)
        t = t if t.ndim == 1 else t.ravel()       # the same array: see _ascending
        v = v if v.ndim == 1 else v.ravel()
        if t.shape != v.shape:
            raise ValueError(f"output {role!r}: {len(t)} times but {len(v)} values")
        self._parts[role].append((t, v))

    def points(self, role: str, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """The finite points of ``role`` in [start, end), sorted, one per time (the
        last added wins), their values rounded to float32 if that is the precision."""
        t, v = self._points(role, start, end)
        return (t, round_to_float32(v)) if self._float32 else (t, v)

    def _points(self, role: str, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        parts = self._parts[role]
        if not parts:
            return np.empty(0, np.int64), np.empty(0)
        if len(parts) == 1 and self._ascending(parts[0][0]):
            # The usual case (one part, in time order, often the times every output of
            # the chunk shares): a slice, and a copy only where values are not finite.
            t, v = parts[0]
            lo, hi = np.searchsorted(t, (start, end))
            t, v = t[lo:hi], v[lo:hi]
            finite = np.isfinite(v)
            return (t, v) if finite.all() else (t[finite], v[finite])
        t = np.concatenate([p[0] for p in parts])
        v = np.concatenate([p[1] for p in parts])
        keep = (t >= start) & (t < end) & np.isfinite(v)
        t, v = t[keep], v[keep]
        if len(t) < 2 or bool(np.all(t[1:] > t[:-1])):
            return t, v
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
        last = np.r_[t[1:] != t[:-1], True]
        return t[last], v[last]

    def _ascending(self, t: np.ndarray) -> bool:
        """Whether ``t`` is strictly increasing (the last array asked is remembered:
        outputs of a chunk usually share their times)."""
        seen = self._seen
        if seen is not None and seen[0] is t:
            return seen[1]
        answer = len(t) < 2 or bool(np.all(t[1:] > t[:-1]))
        self._seen = (t, answer)
        return answer


class Distillate:
    """Base class of distillates (see the module docstring)."""

    #: Registered name, e.g. ``frequency``; an instance's outputs go under it.
    name: ClassVar[str] = ""
    #: Raise it when the computation changes: every instance recomputes everything.
    version: ClassVar[int] = 1
    #: Input roles, in order.
    inputs: ClassVar[tuple[str, ...]] = ()
    #: Output roles and their units.
    outputs: ClassVar[dict[str, str]] = {}
    lead_ns: ClassVar[int] = 0
    trail_ns: ClassVar[int] = 0
    rebaser: ClassVar[Rebaser] = passthrough()
    #: How the outputs are stored: ``"float64"``, as computed (the default: the engine
    #: cannot know what a distillate computes from, nor whether 7 significant digits
    #: are enough for it, e.g. an energy counter), or ``"float32"``, each value rounded
    #: to the nearest float32 (relative error at most 6e-8; NaN still means no point).
    #: The built-ins that compute from uPMU channels, which are float32 already, say
    #: float32: the server stores a float32-exact value in half the bytes and CPU.
    #: Changing it does not recompute stored outputs: raise ``version`` for that.
    output_precision: ClassVar[str] = "float64"

    def process(self, inputs: dict[str, Series], outputs: Outputs) -> None:
        """Compute outputs from ``inputs`` (role -> :class:`Series`) into ``outputs``."""
        raise NotImplementedError

    def describe(self) -> str:
        """``frequency v1``, for messages and annotations."""
        return f"{self.name} v{self.version}"


@dataclasses.dataclass(frozen=True)
class Input:
    """An input stream: by UUID, or by collection path (``upmu/uPMU1/L1ANG``) to be
    looked up in BTrDB."""

    path: str
    uuid: uuidlib.UUID | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class Instance:
    """A distillate bound to streams under a unique name."""

    name: str
    distillate: Distillate
    inputs: dict[str, Input]
    collection: str                       # where the outputs go
    tags: dict[str, str] = dataclasses.field(default_factory=dict)   # extra annotations

    def __post_init__(self) -> None:
        missing = set(self.distillate.inputs) - set(self.inputs)
        extra = set(self.inputs) - set(self.distillate.inputs)
        if missing or extra:
            raise ValueError(f"instance {self.name}: inputs {sorted(self.inputs)} do not "
                             f"match {self.distillate.name}'s {list(self.distillate.inputs)}")
        try:
            check_precision(self.distillate.output_precision)
        except ValueError as exc:
            raise ValueError(f"instance {self.name}: {self.distillate.name}'s {exc}") from None

    def output_uuid(self, role: str) -> uuidlib.UUID:
        return uuidlib.uuid5(NAMESPACE, f"{self.name}/{role}")

    def output_path(self, role: str) -> str:
        return f"{self.collection}/{role}"

    @property
    def key(self) -> tuple:
        """What identifies the computation: a change of it recomputes everything."""
        return (self.name, type(self.distillate).__qualname__, self.distillate.name,
                self.distillate.version,
                tuple(sorted((r, i.path, str(i.uuid)) for r, i in self.inputs.items())))

    def __eq__(self, other) -> bool:
        return isinstance(other, Instance) and (self.key, self.collection, self.tags) == (
            other.key, other.collection, other.tags)

    def __hash__(self) -> int:
        return hash(self.key)
