"""Rebasers: how a distillate's input points are laid out before it sees them.

- :func:`passthrough` hands the points over as stored.
- :func:`pad_snap` puts every input on one grid of ``hz`` ticks a second: each point
  moves to its nearest tick, of two points on one tick the nearer stays (the later on a
  tie), and a tick without a point holds NaN. Ticks are absolute (second ``s``, tick
  ``k`` is at ``s + round(k / hz)`` s), so a chunk of any bounds sees the same grid, all
  inputs share it, and "one second ago" is exactly ``hz`` samples back.

A uPMU's sample ``i`` of a second is at ``round(i × 8.333333 ms)`` (the file's float32
interval), within 40 ns of tick ``i`` of ``pad_snap(120)``.
"""
from __future__ import annotations

import numpy as np

SECOND = 1_000_000_000


class Rebaser:
    """Lays out one input's points read over [start, end).

    ``margin_ns``: how far a point may move; the engine reads that much more on each
    side, so a tick inside the range always sees every point that snaps to it.
    ``aligned``: every input comes out on the same times.
    """

    margin_ns = 0
    aligned = False

    def rebase(self, t: np.ndarray, v: np.ndarray, start: int, end: int
               ) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class Passthrough(Rebaser):
    """The points as stored."""

    def rebase(self, t, v, start, end):
        return t, v

    def describe(self) -> str:
        return "passthrough"


class PadSnap(Rebaser):
    """Snap to ``hz`` ticks a second, drop duplicates, fill holes with NaN."""

    aligned = True

    def __init__(self, hz: int) -> None:
        if not isinstance(hz, int) or not 1 <= hz <= SECOND:
            raise ValueError(f"pad_snap needs a whole number of ticks a second, not {hz!r}")
        self.hz = hz
        self.margin_ns = -(-SECOND // hz)
        self._last: tuple | None = None
        self._places_last: tuple | None = None

    def describe(self) -> str:
        return f"pad_snap({self.hz})"

    def tick_of(self, t: np.ndarray) -> np.ndarray:
        """The global index (second × hz + tick) of the tick nearest each time."""
        t = np.asarray(t, np.int64)
        s, frac = np.divmod(t, SECOND)
        return s * self.hz + (frac * self.hz + SECOND // 2) // SECOND

    def time_of(self, g: np.ndarray) -> np.ndarray:
        """The time of global tick indices."""
        s, k = np.divmod(np.asarray(g, np.int64), self.hz)
        return s * SECOND + (k * SECOND + self.hz // 2) // self.hz

    def grid(self, start: int, end: int) -> np.ndarray:
        """Global indices of the ticks in [start, end)."""
        first, stop = self.tick_of(np.array([start, end]))
        first += self.time_of(first) < start
        stop += self.time_of(stop) < end
        return np.arange(first, max(first, stop), dtype=np.int64)

    def _grid_times(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """The grid of [start, end) and its times; the last one is kept, as every input
        of a chunk is rebased on the same grid."""
        cached = self._last
        if cached is not None and cached[0] == (start, end):
            return cached[1], cached[2]
        g = self.grid(start, end)
        times = self.time_of(g)
        times.flags.writeable = False       # shared by the inputs' Series
        self._last = ((start, end), g, times)
        return g, times

    def _places(self, t: np.ndarray, g: np.ndarray) -> tuple:
        """Where the points at times ``t`` go on grid ``g``: (mask of the points on the
        grid or None for all, which of those to keep or None for all, their positions in
        the grid: a slice when they fill a run of ticks, the usual case). The last answer
        is kept: a uPMU's streams share their times, so the inputs of a chunk usually ask
        the same question."""
        cached = self._places_last
        if cached is not None and cached[1] is g and (
                cached[0] is t or np.array_equal(cached[0], t)):
            return cached[2]
        tick = self.tick_of(t)
        inside = (tick >= g[0]) & (tick <= g[-1])
        tick, tt = tick[inside], t[inside]
        if len(tick) < 2 or bool(np.all(tick[1:] > tick[:-1])):
            # The usual case (a uPMU's samples, in time order): one point a tick.
            keep = None
        else:
            dist = np.abs(tt - self.time_of(tick))
            order = np.lexsort((-tt, dist, tick))    # per tick: nearest, then latest
            first = np.r_[True, tick[order][1:] != tick[order][:-1]]
            keep = order[first]
            tick = tick[keep]
        at = tick - g[0]
        if keep is None and len(at) and at[-1] - at[0] == len(at) - 1:
            at = slice(int(at[0]), int(at[-1]) + 1)   # one point on every tick of a run
        places = (None if inside.all() else inside, keep, at)
        self._places_last = (t, g, places)
        return places

    def rebase(self, t, v, start, end):
        g, times = self._grid_times(start, end)
        if not (len(g) and len(t)):
            return times, np.full(len(g), np.nan)
        inside, keep, at = self._places(t, g)
        vv = v if inside is None else v[inside]
        vv = vv if keep is None else vv[keep]
        if isinstance(at, slice) and at == slice(0, len(g)):
            return times, np.array(vv, np.float64)     # no hole: a copy (writable)
        out = np.full(len(g), np.nan)
        out[at] = vv
        return times, out


def passthrough() -> Passthrough:
    """The points as stored (DISTIL's default rebaser)."""
    return Passthrough()


def pad_snap(hz: int) -> PadSnap:
    """Every input on one grid of ``hz`` ticks a second (see the module docstring)."""
    return PadSnap(hz)
