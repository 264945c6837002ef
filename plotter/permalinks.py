"""Permalinks: a view of the page stored on the server under a short id.

A permalink holds the streams, the window, the time zone and the page's own view state
(axes, colours, cursors) as the page sends it. Its window is one of the original
plotter's three kinds:

- ``fixed``: ``start`` and ``end`` (ns);
- ``now``: the last ``span`` ns before the moment it is opened;
- ``last``: the last ``span`` ns before the streams' newest point.

:func:`validate` checks a document sans IO; :func:`resolve` turns a window into a range.
Stored in the appliance's database, as the queue (:mod:`qss.permalinks`, shared with
``qss-get --backup``/``--restore``): embedded SQLite by default (the file ``plotter.db``
beside the SQLite queue), MongoDB (database ``mr_plotter``, collection ``permalinks``,
documents ``{_id, created, doc}``) when the queue is MongoDB.
"""
from __future__ import annotations

import json
import re
import uuid as uuidlib
from collections.abc import Callable

from qss.permalinks import (MongoPermalinks, Permalinks, SqlitePermalinks, new_id,
                            open_permalinks)

__all__ = ["ID", "MAX_DOC_BYTES", "MongoPermalinks", "PermalinkError", "Permalinks",
           "SqlitePermalinks", "new_id", "open_permalinks", "resolve", "validate",
           "visible_view"]

ID = re.compile(r"[A-Za-z0-9_-]{6,32}\Z")
#: A document's size as stored: a view of 64 streams with axes and colours is ~10 KB.
MAX_DOC_BYTES = 32_000
MAX_STREAMS = 64
KINDS = ("fixed", "now", "last")


class PermalinkError(ValueError):
    """A permalink document or id the API refuses; the message says why (a 400)."""


def check_id(text: str) -> str:
    """``text`` if it has a permalink id's form.

    Raises:
        PermalinkError: malformed (6-32 letters, digits, ``-`` or ``_``).
    """
    if not isinstance(text, str) or not ID.match(text):
        raise PermalinkError(f"malformed permalink id {text!r} (6 to 32 letters, digits, "
                             f"- or _)")
    return text


#: The page's view keys (share.js): by stream UUID, a list of UUIDs, by axis id.
BY_STREAM = ("colors", "streamAxes")


def _stream_of(key: object, streams: list[str], where: str) -> str:
    try:
        u = str(uuidlib.UUID(key))      # type: ignore[arg-type]
    except (ValueError, TypeError, AttributeError):
        u = None
    if u not in streams:
        raise PermalinkError(f"'view.{where}' names {str(key)[:40]!r}, not one of the "
                             f"permalink's streams")
    return u


def _checked_view(view: dict, streams: list[str]) -> dict:
    """``view`` with its stream keys checked against ``streams`` and normalised: a view
    must not say anything about a stream the permalink does not hold."""
    out = dict(view)
    for key in BY_STREAM:
        if key in out:
            if not isinstance(out[key], dict):
                raise PermalinkError(f"'view.{key}' must be an object keyed by stream UUID")
            out[key] = {_stream_of(k, streams, key): v for k, v in out[key].items()}
    if "hidden" in out:
        if not isinstance(out["hidden"], list):
            raise PermalinkError("'view.hidden' must be a list of stream UUIDs")
        out["hidden"] = [_stream_of(u, streams, "hidden") for u in out["hidden"]]
    if "axes" in out and not isinstance(out["axes"], dict):
        raise PermalinkError("'view.axes' must be an object keyed by axis")
    return out


def visible_view(view: object, shown: list[tuple[str, str]]) -> dict:
    """What a viewer may read of a stored ``view``: only the streams ``shown`` (UUID and
    unit pairs, the ones they may see) in colours, hidden and stream axes, only the axes
    those streams use (an axis is named by its unit or by the user), nothing else."""
    if not isinstance(view, dict):
        return {}
    uuids = {u for u, _ in shown}
    out: dict = {}
    for key in BY_STREAM:
        if isinstance(view.get(key), dict):
            out[key] = {k: v for k, v in view[key].items() if k in uuids}
    if isinstance(view.get("hidden"), list):
        out["hidden"] = [u for u in view["hidden"] if u in uuids]
    if isinstance(view.get("axes"), dict):
        placed = out.get("streamAxes", {})
        used = {placed.get(u) or unit or "(none)" for u, unit in shown}   # legend.js axisOf
        out["axes"] = {k: v for k, v in view["axes"].items() if k in used}
    return out


def _int(doc: dict, key: str) -> int:
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise PermalinkError(f"window {key!r} must be an integer number of ns, not {value!r}")
    return value


def validate(doc: object) -> dict:
    """The permalink document ``doc`` (parsed JSON), checked and normalised.

    Raises:
        PermalinkError: what is wrong with it.
    """
    if not isinstance(doc, dict):
        raise PermalinkError("a permalink is a JSON object")
    streams = doc.get("streams")
    if not isinstance(streams, list) or not streams or len(streams) > MAX_STREAMS:
        raise PermalinkError(f"'streams' must be a list of 1 to {MAX_STREAMS} stream UUIDs")
    try:
        streams = [str(uuidlib.UUID(s)) for s in streams]
    except (ValueError, TypeError, AttributeError):
        raise PermalinkError("'streams' must hold stream UUIDs") from None
    window = doc.get("window")
    if not isinstance(window, dict) or window.get("kind") not in KINDS:
        raise PermalinkError(f"'window' must be an object whose 'kind' is one of "
                             f"{', '.join(KINDS)}")
    if window["kind"] == "fixed":
        start, end = _int(window, "start"), _int(window, "end")
        if end <= start:
            raise PermalinkError(f"window end ({end}) must be after its start ({start})")
        window = {"kind": "fixed", "start": start, "end": end}
    else:
        span = _int(window, "span")
        if span <= 0:
            raise PermalinkError("window 'span' must be more than 0 ns")
        window = {"kind": window["kind"], "span": span}
    zone = doc.get("zone", "UTC")
    if not isinstance(zone, str) or not 0 < len(zone) <= 64:
        raise PermalinkError("'zone' must be a time zone name such as UTC or Europe/Berlin")
    view = doc.get("view", {})
    if not isinstance(view, dict):
        raise PermalinkError("'view' must be an object (the page's axes, colours, cursors)")
    view = _checked_view(view, streams)
    out = {"streams": streams, "window": window, "zone": zone, "view": view}
    if len(json.dumps(out)) > MAX_DOC_BYTES:
        raise PermalinkError(f"a permalink may hold at most {MAX_DOC_BYTES:,} bytes")
    return out


def resolve(window: dict, now_ns: int, newest: Callable[[], int | None]) -> tuple[int, int]:
    """The range ``[start, end)`` a window means when opened at ``now_ns``; ``newest``
    gives the streams' newest point (for ``last``; None: no data, then as ``now``)."""
    if window["kind"] == "fixed":
        return window["start"], window["end"]
    end = now_ns
    if window["kind"] == "last":
        last = newest()
        if last is not None:
            end = last + 1
    return end - window["span"], end
