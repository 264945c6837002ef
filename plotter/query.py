"""What to ask BTrDB for a view, and the answers as columns.

A *view* is a time range ``[start, end)`` in ns drawn ``width`` pixels wide. Each stream
is read as statistical windows of ``2**pw`` ns with ``pw = floor(log2(span / width))``,
so that a window is about a pixel (at most ``2 * width`` windows), and as raw points
once a window would hold about one sample: when the windows hold no more points than
the view has pixels, the raw points (as many) say more than their statistics.
:func:`choose_pointwidth` and :func:`parse_view` are pure; :func:`read_windows` and
:func:`read_raw` call the official client (the Arrow RPCs when the server offers them).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["BadRequest", "MAX_STREAMS", "MAX_WIDTH", "MAX_TIME", "MIN_TIME", "View",
           "choose_pointwidth", "parse_view", "read_raw", "read_stream", "read_windows"]

#: BTrDB's time range (btrdb.utils.general / the server's limits).
MIN_TIME = -(16 << 56)
MAX_TIME = (48 << 56) - 1
#: Widest view in pixels: wider than any screen, small enough to bound one answer.
MAX_WIDTH = 10_000
#: Streams in one request: the page allows many at once (at least 20 in one view).
MAX_STREAMS = 64
#: Largest point width BTrDB serves (windows of 2^62 ns).
MAX_PW = 62


class BadRequest(ValueError):
    """A request the API cannot answer as asked; the message says why (a 400)."""


@dataclass(frozen=True)
class View:
    """A time range ``[start, end)`` in ns, drawn ``width`` pixels wide."""

    start: int
    end: int
    width: int

    @property
    def span(self) -> int:
        return self.end - self.start


def round_up(t: int, pw: int) -> int:
    """``t`` rounded up to a multiple of ``2**pw`` (within BTrDB's time range)."""
    return min(MAX_TIME, ((t - 1) >> pw << pw) + (1 << pw))


def choose_pointwidth(view: View) -> int:
    """``log2(span / width)`` rounded to the nearest integer, between 0 and 62: a window
    is about a pixel (0.7 to 1.4 of one), so a view gets 0.7 to 1.4 x ``width`` windows
    (plus one at each end for the alignment)."""
    per_pixel = view.span / view.width
    if per_pixel < 1.5:
        return 0
    return min(MAX_PW, int(math.floor(math.log2(per_pixel) + 0.5)))


def _int(params: Mapping[str, str], name: str, low: int, high: int,
         default: int | None = None) -> int:
    text = params.get(name)
    if text is None or text == "":
        if default is None:
            raise BadRequest(f"missing parameter {name!r}")
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"parameter {name!r} must be an integer, not {text!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"parameter {name!r} = {value} is out of range ({low} to {high})")
    return value


def parse_view(params: Mapping[str, str], default_width: int | None = None) -> View:
    """The view of ``start``, ``end`` (ns) and ``width`` (pixels) parameters.

    Raises:
        BadRequest: a missing or malformed parameter, an end not after the start, or a
            value out of bounds.
    """
    start = _int(params, "start", MIN_TIME, MAX_TIME)
    end = _int(params, "end", MIN_TIME, MAX_TIME)
    if end <= start:
        raise BadRequest(f"end ({end}) must be after start ({start})")
    width = _int(params, "width", 1, MAX_WIDTH, default_width)
    return View(start, end, width)


def parse_pointwidth(params: Mapping[str, str]) -> int | None:
    """An explicit ``pw`` parameter (0-62), or None (choose by the view).

    Raises:
        BadRequest: not an integer from 0 to 62.
    """
    if params.get("pw") in (None, ""):
        return None
    return _int(params, "pw", 0, MAX_PW)


# -- reading through the official client ----------------------------------------------

def read_windows(stream, start: int, end: int, pw: int) -> dict[str, np.ndarray]:
    """The windows of ``2**pw`` ns starting in ``[start, end)`` (start rounded down to a
    window), as columns ``times`` (int64 ns), ``min``, ``mean``, ``max`` (float64) and
    ``count`` (int64). Empty windows are absent (a gap)."""
    db = stream._btrdb
    if db._ARROW_ENABLED:
        tables = [t for t, _ in db.ep.arrowAlignedWindows(stream.uuid, start, end, pw, 0)]
        if tables:
            import pyarrow as pa
            table = pa.concat_tables(tables)
            return {
                "times": table.column("time").cast("int64").to_numpy(),
                "min": table.column("min").to_numpy(),
                "mean": table.column("mean").to_numpy(),
                "max": table.column("max").to_numpy(),
                "count": table.column("count").cast("int64").to_numpy(),
            }
        return _empty_windows()
    points = [p for p, _ in stream.aligned_windows(start, end, pw)]
    if not points:
        return _empty_windows()
    return {
        "times": np.array([p.time for p in points], dtype=np.int64),
        "min": np.array([p.min for p in points], dtype=np.float64),
        "mean": np.array([p.mean for p in points], dtype=np.float64),
        "max": np.array([p.max for p in points], dtype=np.float64),
        "count": np.array([p.count for p in points], dtype=np.int64),
    }


def _empty_windows() -> dict[str, np.ndarray]:
    f = np.empty(0, np.float64)
    return {"times": np.empty(0, np.int64), "min": f, "mean": f, "max": f,
            "count": np.empty(0, np.int64)}


def read_raw(stream, start: int, end: int) -> dict[str, np.ndarray]:
    """The raw points in ``[start, end)`` as columns ``times`` (int64 ns) and ``values``."""
    db = stream._btrdb
    if db._ARROW_ENABLED:
        tables = [t for t, _ in db.ep.arrowRawValues(stream.uuid, start, end, 0)]
        if tables:
            import pyarrow as pa
            table = pa.concat_tables(tables)
            return {"times": table.column("time").cast("int64").to_numpy(),
                    "values": table.column("value").to_numpy()}
        return {"times": np.empty(0, np.int64), "values": np.empty(0, np.float64)}
    points = [p for p, _ in stream.values(start, end)]
    return {"times": np.array([p.time for p in points], dtype=np.int64),
            "values": np.array([p.value for p in points], dtype=np.float64)}


def compact(answer: dict, view: View) -> dict:
    """The page's form of :func:`read_stream`'s answer: values as float32 (what a screen
    can show; JSON writes them in about 8 characters), times as the differences between
    consecutive times in whole units of ``unit``, the first from ``t0`` (windows:
    ``unit`` = 2^pw, ``t0`` = the view's start rounded down to a window, so the
    differences are 1 but at gaps; raw: ``unit`` = 1 ns, ``t0`` = the view's start).
    About a third of the exact answer's size, and it compresses well; scripts get exact
    values by default."""
    if answer["kind"] == "windows":
        unit = 1 << answer["pw"]
        t0 = view.start >> answer["pw"] << answer["pw"]
        keys = ("min", "mean", "max")
    else:
        unit, t0, keys = 1, view.start, ("values",)
    out = {k: v for k, v in answer.items() if k not in keys and k != "times"}
    out["t0"], out["unit"] = t0, unit
    out["times"] = np.diff((answer["times"] - t0) // unit, prepend=0)
    for k in keys:
        out[k] = answer[k].astype(np.float32)
    return out


def read_stream(stream, view: View, pw: int | None = None) -> dict:
    """One stream over ``view``: ``{"kind": "windows", "pw": pw, times, min, mean, max,
    count}`` or, when the windows hold no more points than the view has pixels,
    ``{"kind": "raw", "pw": None, times, values}``. An explicit ``pw`` is always
    answered with windows."""
    chosen = choose_pointwidth(view) if pw is None else pw
    # BTrDB rounds both ends down to a window: round the end up, so that the window holding
    # the view's last points (the newest data, in a view of all of it) is there too.
    windows = read_windows(stream, view.start, round_up(view.end, chosen), chosen)
    if pw is None and int(windows["count"].sum()) <= view.width:
        return {"kind": "raw", "pw": None, **read_raw(stream, view.start, view.end)}
    return {"kind": "windows", "pw": chosen, **windows}
