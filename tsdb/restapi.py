"""BTrDB v3's HTTP API (port 9000) over :class:`tsdb.Store`, as the uPMU manual uses it,
without sockets (sans-IO, as h11 does it).

How this works. :meth:`RestApi.handle` takes one request as the HTTP layer parsed it
(method, request target, body bytes, Content-Type) and returns a :class:`Response`:
status, headers and a body that is bytes or, for answers that may be large, an iterator
of byte strings produced as the client reads. :func:`body_length` vets a declared
Content-Length before the body is read, and :meth:`RestApi.log_entry` names an answer for
the request log. Nothing here opens a socket, starts a thread or knows about
``http.server``: :mod:`tsdb.rest` is the HTTP adapter that moves the bytes.

Shapes, messages and rounding follow BTrDB v3's ``httpinterface`` (reference/btrdb-v3-rest.md):
errors are HTTP 400 with the message as plain text; JSON is Go's (compact, keys in struct
order, a trailing newline, floats in Go's shortest form); JSON request keys match
case-insensitively and only the first JSON value of a body is read. Choices where v3 was
unhelpful, documented in docs/btrdb-server.md:

- a stream that does not exist in ``/directcsv`` is a 400 (v3 hung the request);
- a query string wrapped in double quotes (as the manual's Windows example sets
  ``PARAMS="..."``) is accepted without them;
- requests that would produce more than :data:`MAX_WINDOWS` windows per stream, or
  bodies over :data:`MAX_BODY` bytes, are refused with 400/413 instead of exhausting
  memory (v3 had no limit);
- inserting over HTTP (``/data/add``, ``/data/legacyadd``) is not offered: data arrive
  through sync2q and the gRPC API, and port 9000 is often opened to a LAN.
"""
from __future__ import annotations

import dataclasses
import decimal
import json
import time
import urllib.parse
import uuid as uuidlib
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from .errors import MAXIMUM_TIME, MINIMUM_TIME, NoSuchPoint, StreamNotFound, TsdbError
from .reqlog import FAILED, OK, REFUSED
from .store import Store, Windows

#: Most rows one answer may have when rows are due for empty windows too (``win`` on
#: /data, gap rows of /directcsv): 10 M rows is about 0.5 GB of text.
MAX_WINDOWS = 10_000_000
#: Largest request body: the JSON bodies of this API are a few hundred bytes.
MAX_BODY = 1 << 20
#: Windows per slice when answers are produced piecewise.
_PIECE = 1 << 18
_UNITS = {"": 1_000_000, "ms": 1_000_000, "ns": 1, "us": 1_000, "s": 1_000_000_000}
_INT64 = (-(1 << 63), (1 << 63) - 1)
_TEXT = "text/plain; charset=utf-8"  # what Go's content sniffing gives v3's answers


class BadRequest(Exception):
    """A request refused with HTTP 400 (or ``status``) and a one-line message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclasses.dataclass
class Response:
    """One answer: the HTTP layer sends ``headers`` as given, then ``body`` with a
    Content-Length if it is bytes, or chunked as the iterator yields it otherwise."""

    status: int
    body: bytes | Iterable[bytes]
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    items: int = 0  # points or windows, for the request log; streamed bodies count up


def error_response(status: int, message: str) -> Response:
    """A refusal as v3 sends it: ``message`` as plain text, no trailing newline."""
    return Response(status, message.encode(), {"Content-Type": _TEXT})


def body_length(content_length: str | None) -> int:
    """The body size a request declares, checked before anything is read.

    Raises:
        BadRequest: the header is not a non-negative integer (400), or the body would be
            over :data:`MAX_BODY` (413); the HTTP layer answers and closes the connection.
    """
    try:
        n = int(content_length) if content_length else 0
        if n < 0:
            raise ValueError
    except ValueError:
        raise BadRequest("bad Content-Length") from None
    if n > MAX_BODY:
        raise BadRequest(f"request body of {n} bytes is too large (limit {MAX_BODY})", 413)
    return n


# ---- v3 parsing rules -----------------------------------------------------------------

def _go_parse_int(text: str, lo: int, hi: int) -> tuple[int | None, str]:
    """Go's strconv.ParseInt as v3's parseInt used it: the range check comes first and
    sees 0 for malformed input and the clamped value for overflow."""
    s = text[1:] if text[:1] in "+-" else text
    ok = s.isascii() and s.isdigit()
    value = int(text) if ok else 0
    value = min(max(value, _INT64[0]), _INT64[1])
    if value < lo or value >= hi:
        return None, "out of acceptable range"
    if not ok:
        return None, "malformed"
    return value, ""


def _int_param(form: dict[str, str], name: str, lo: int, hi: int, what: str) -> int:
    value, msg = _go_parse_int(form.get(name, ""), lo, hi)
    if value is None:
        raise BadRequest(f"{what}: {msg}")
    return value


def _divisor(unit: str) -> int:
    try:
        return _UNITS[unit]
    except KeyError:
        raise BadRequest("unitoftime must be 'ns', 'ms', 'us' or 's'") from None


def _scale(value: int, divisor: int, which: str) -> int:
    # Go's int64 division truncates toward zero.
    lo, hi = -(-MINIMUM_TIME // divisor), MAXIMUM_TIME // divisor
    if value >= hi or value <= lo:
        raise BadRequest(f"{which} time out of bounds")
    return value * divisor


def _parse_uuid(text: str, message: str = "malformed uuid") -> uuidlib.UUID:
    try:
        return uuidlib.UUID(text)
    except (ValueError, TypeError, AttributeError):
        raise BadRequest(message) from None


def _v3_message(err: TsdbError) -> str:
    if isinstance(err, StreamNotFound):
        return "No such stream"
    if isinstance(err, NoSuchPoint):
        return "No such point"
    return err.message


def _json_body(body: bytes, fields: dict[str, type]) -> dict[str, object]:
    """Go's json.Decoder.Decode into a struct: the first JSON value of the body, keys
    matched case-insensitively to ``fields`` (name -> type), others ignored.

    Raises BadRequest("bad request") for anything Go would not decode."""
    try:
        text = body.decode("utf-8")
        obj, _ = json.JSONDecoder().raw_decode(text.lstrip(" \t\r\n"))
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("bad request") from None
    if not isinstance(obj, dict):
        raise BadRequest("bad request")
    out: dict[str, object] = {}
    lower = {k.lower(): k for k in fields}
    for key, value in obj.items():
        name = key if key in fields else lower.get(key.lower())
        if name is None or value is None:
            continue
        kind = fields[name]
        if kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool) \
                and _INT64[0] <= value <= _INT64[1]
        elif kind is str:
            ok = isinstance(value, str)
        else:  # list of str
            ok = isinstance(value, list) and all(isinstance(x, str) or x is None
                                                 for x in value)
            value = ["" if x is None else x for x in value] if ok else value
        if not ok:
            raise BadRequest("bad request")
        out[name] = value
    return out


# ---- Go output formats ----------------------------------------------------------------

def go_float(x: float) -> str:
    """A float64 as Go's encoding/json writes it: shortest round-trip digits, fixed
    notation for 1e-6 <= |x| < 1e21, exponent notation (``1e-7``, ``1e+21``) outside."""
    r = repr(x)
    if "e" not in r:
        return r[:-2] if r.endswith(".0") else r
    a = abs(x)
    if a < 1e-6 or a >= 1e21:
        mant, _, exp = r.partition("e")
        mant = mant[:-2] if mant.endswith(".0") else mant
        return f"{mant}e{exp[0]}{exp[1:].lstrip('0') or '0'}"
    return format(decimal.Decimal(r), "f")


def _fmt_floats(a: np.ndarray) -> list[str]:
    return [go_float(x) for x in a.tolist()]


def _trunc_div(t: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Go's int64 ``t / d`` and ``t % d`` (truncating toward zero)."""
    q = t // d
    r = t - q * d
    fix = (t < 0) & (r != 0)
    return q + fix, r - fix * d


def _local_time(t: int) -> str:
    """Go's ``time.Unix(0, t).Format("2006-01-02 15:04:05.000")`` in local time."""
    sec, ns = divmod(t, 1_000_000_000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(sec)) + f".{ns // 1_000_000:03d}"


# ---- the API --------------------------------------------------------------------------

class RestApi:
    """The v3 endpoints over a store; :meth:`handle` is the only entry point."""

    def __init__(self, store: Store, max_windows: int = MAX_WINDOWS):
        self.store = store
        self.max_windows = max_windows
        self._routes: dict[str, dict[str, Callable]] = {
            "/status": {"GET": self.status},
            "/q/bracket": {"POST": self.bracket},
            "/data/uuid/": {"GET": self.data},
            "/csv/uuid/": {"GET": self.csv},
            "/q/nearest/": {"GET": self.nearest},
            "/directcsv": {"POST": self.directcsv},
            "/wrappedcsv": {"POST": self.wrappedcsv},
        }

    def route(self, path: str) -> tuple[str, str] | None:
        """(route name, path argument) for a path, or None."""
        for prefix in self._routes:
            if prefix.endswith("/"):
                if path.startswith(prefix) and "/" not in path[len(prefix):] \
                        and path != prefix:
                    return prefix, urllib.parse.unquote(path[len(prefix):])
            elif path == prefix:
                return prefix, ""
        return None

    def handle(self, method: str, target: str, body: bytes = b"",
               content_type: str = "") -> Response:
        """Answer one request. Never raises for a bad request or a store error."""
        path, _, query = target.partition("?")
        found = self.route(path)
        if found is None:
            return Response(404, b"404 page not found\n", {"Content-Type": _TEXT})
        name, arg = found
        handler = self._routes[name].get(method)
        if handler is None:
            allow = ", ".join(self._routes[name])
            return Response(405, b"Method Not Allowed\n", {"Allow": allow,
                                                         "Content-Type": _TEXT})
        # The manual's Windows example sets PARAMS="..." with the quotes; accept them.
        query = query.strip('"')
        if query.startswith("%22") and query.endswith("%22"):
            query = query[3:-3]
        form = {k: v[0] for k, v in urllib.parse.parse_qs(query, keep_blank_values=True
                                                          ).items()}
        if name == "/wrappedcsv" and content_type.startswith(
                "application/x-www-form-urlencoded"):
            for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace"),
                                              keep_blank_values=True).items():
                form.setdefault(k, v[0])
        try:
            return handler(arg=arg, form=form, body=body)
        except BadRequest as exc:
            return error_response(exc.status, str(exc))

    def log_entry(self, method: str, target: str, status: int, error: str = ""
                  ) -> tuple[str, str, str]:
        """(request class, outcome, detail) under which the request log records an answer
        with ``status``; ``error`` is the refusal's text or why a streamed answer was cut
        short (a 200 cut short is the server's failure, as is any 5xx)."""
        path = target.partition("?")[0]
        route = self.route(path)
        name = f"{method} {route[0] if route else '(unknown path)'}"
        if error and status < 400 or status >= 500:
            result = FAILED
        else:
            result = REFUSED if status >= 400 else OK
        detail = route[1] if route else path[:200]
        return name, result, detail

    # -- endpoints ------------------------------------------------------------------
    def status(self, **_) -> Response:
        return Response(200, b"OK", {"Content-Type": _TEXT})

    def _range(self, form: dict[str, str]) -> tuple[int, int, int, int]:
        """(start ns, end ns, version, divisor) from starttime/endtime/ver/unitoftime."""
        st = _int_param(form, "starttime", MINIMUM_TIME, MAXIMUM_TIME, "bad start time")
        et = _int_param(form, "endtime", MINIMUM_TIME, MAXIMUM_TIME, "bad end time")
        if et <= st:
            raise BadRequest("end time <= start time")
        ver = _int_param({"ver": form.get("ver") or "0"}, "ver", 0, _INT64[1],
                         "malformed version")
        divisor = _divisor(form.get("unitoftime", ""))
        return _scale(st, divisor, "start"), _scale(et, divisor, "end"), ver, divisor

    def data(self, arg: str, form: dict[str, str], **_) -> Response:
        u = _parse_uuid(arg)
        st, et, ver, divisor = self._range(form)
        pws, wins = form.get("pw", ""), form.get("win", "")
        if pws and wins:
            raise BadRequest("cannot have pointwidth and window")
        if pws or wins:
            if pws:
                pw = _int_param(form, "pw", 0, 63, "bad point width")
            else:
                win = _int_param(form, "win", 1, _INT64[1], "bad window width")
            if divisor != 1:
                raise BadRequest("statistical results require unitoftime=ns")
            try:
                parts = (self.store.aligned_pieces(u, st, et, pw, ver, _PIECE) if pws
                         else self._window_parts(u, st, et, win, ver))
            except TsdbError as exc:
                raise BadRequest(f"query error: {_v3_message(exc)}") from None
            return self._stat_json(u, parts)
        try:
            pieces = self.store.raw_pieces(u, st, et, ver, _PIECE)
            t, v, version = next(pieces)
        except TsdbError as exc:
            raise BadRequest(f"query error: {_v3_message(exc)}") from None
        unit = json.dumps(form.get("unitoftime", ""))
        resp = Response(200, b"", {"Content-Type": _TEXT})

        def body() -> Iterator[bytes]:
            nonlocal t, v
            yield f'[{{"uuid":"{u}","Readings":['.encode()
            sep = ""
            while True:
                if len(t):
                    q, _ = _trunc_div(t, divisor)
                    yield (sep + ",".join(f"[{a},{b}]" for a, b in
                                          zip(q.tolist(), _fmt_floats(v)))).encode()
                    sep = ","
                    resp.items += len(t)
                nxt = next(pieces, None)
                if nxt is None:
                    break
                t, v, _ = nxt
            yield f'],"version":{version},"Properties":{{"UnitofTime":{unit}}}}}]\n'.encode()

        resp.body = body()
        return resp

    def _check_windows(self, n: int) -> None:
        if n > self.max_windows:
            raise BadRequest(f"that query would give {n:,} rows per stream (limit "
                             f"{self.max_windows:,}); ask for wider windows or a shorter "
                             f"range")

    def _window_parts(self, u: uuidlib.UUID, st: int, et: int, win: int, ver: int
                      ) -> Iterator[tuple[Windows, int]]:
        """Unaligned windows with v3's blank records for empty ones."""
        n = (et - st) // win
        self._check_windows(n)
        w, version = self.store.windows(u, st, et, win, 0, ver)
        times = st + np.arange(n, dtype=np.int64) * win
        idx = np.searchsorted(times, w.time)
        full = Windows(times, np.zeros(n), np.zeros(n), np.zeros(n),
                       np.zeros(n, np.uint64), np.zeros(n))
        for name in ("min", "mean", "max", "count", "stddev"):
            getattr(full, name)[idx] = getattr(w, name)
        return iter([(full, version)])

    def _stat_json(self, u: uuidlib.UUID, parts: Iterator[tuple[Windows, int]]) -> Response:
        first = next(parts)
        resp = Response(200, b"", {"Content-Type": _TEXT})

        def body() -> Iterator[bytes]:
            yield f'[{{"uuid":"{u}","XReadings":['.encode()
            sep, version = "", first[1]
            for w, _ in _chain(first, parts):
                if not len(w):
                    continue
                ms, ns = _trunc_div(w.time, 1_000_000)
                rows = zip(ms.tolist(), ns.tolist(), _fmt_floats(w.min), _fmt_floats(w.mean),
                           _fmt_floats(w.max), w.count.tolist())
                yield (sep + ",".join(f"[{a},{b},{c},{d},{e},{f}]" for a, b, c, d, e, f
                                      in rows)).encode()
                sep = ","
                resp.items += len(w)
            yield f'],"version":{version}}}]\n'.encode()

        resp.body = body()
        return resp

    def bracket(self, body: bytes, **_) -> Response:
        req = _json_body(body, {"UUIDS": list})
        uuids = req.get("UUIDS") or []
        if not uuids:
            raise BadRequest("no uuids")
        brackets, starts, ends = [], [], []
        for text in uuids:
            u = _parse_uuid(text)
            try:
                first = self.store.nearest(u, MINIMUM_TIME + 1, backward=False)[0]
                last = self.store.nearest(u, MAXIMUM_TIME - 1, backward=True)[0]
            except StreamNotFound:
                brackets.append([-1, -1])
                continue
            except TsdbError as exc:
                raise BadRequest(f"Bad query: {_v3_message(exc)}") from None
            brackets.append([first, last])
            starts.append(first)
            ends.append(last)
        if not starts:
            raise BadRequest("Bad query: none of those streams exist")
        out = {"Brackets": brackets, "Merged": [min(starts), max(ends)]}
        return Response(200, (json.dumps(out, separators=(",", ":")) + "\n").encode(),
                        {"Content-Type": _TEXT}, items=len(uuids))

    def nearest(self, arg: str, form: dict[str, str], **_) -> Response:
        u = _parse_uuid(arg)
        t = _int_param(form, "time", MINIMUM_TIME, MAXIMUM_TIME, "bad time")
        try:
            pt, val, _ = self.store.nearest(u, t, backward=bool(form.get("backwards")))
        except TsdbError as exc:
            raise BadRequest(f"Bad query: {_v3_message(exc)}") from None
        return Response(200, f"[{pt}, {val:f}]".encode(), {"Content-Type": _TEXT}, items=1)

    def csv(self, arg: str, form: dict[str, str], **_) -> Response:
        u = _parse_uuid(arg)
        st, et, ver, divisor = self._range(form)
        pw = 0
        if form.get("pw", ""):
            pw = _int_param(form, "pw", 0, 63, "bad point width")
            if divisor != 1:
                raise BadRequest("statistical results require unitoftime=ns")
        try:
            parts = self.store.aligned_pieces(u, st, et, pw, ver, _PIECE)
        except TsdbError as exc:
            raise BadRequest(f"query error: {_v3_message(exc)}") from None
        resp = Response(200, b"", {"Content-Type": _TEXT})

        def body() -> Iterator[bytes]:
            yield b"Time[ns],Mean,Min,Max,Count\n"
            try:
                for w, _ in parts:
                    resp.items += len(w)
                    yield "".join(f"{a},{b:f},{c:f},{d:f},{e}\n" for a, b, c, d, e in
                                  zip(w.time.tolist(), w.mean.tolist(), w.min.tolist(),
                                      w.max.tolist(), w.count.tolist())).encode()
            except TsdbError as exc:
                yield f"!ABORT ERROR: {_v3_message(exc)}".encode()

        resp.body = body()
        return resp

    def wrappedcsv(self, form: dict[str, str], **_) -> Response:
        return self.directcsv(body=form.get("body", "").encode("utf-8"))

    def directcsv(self, body: bytes, **_) -> Response:
        req = _json_body(body, {"UUIDS": list, "Labels": list, "StartTime": int,
                                "EndTime": int, "UnitofTime": str, "PointWidth": int})
        uuids, labels = req.get("UUIDS", []), req.get("Labels", [])
        if len(uuids) != len(labels):
            raise BadRequest("UUIDS and Labels must be the same length")
        ids = [_parse_uuid(text, f"UUID {i} is malformed") for i, text in enumerate(uuids)]
        divisor = _divisor(req.get("UnitofTime", ""))
        st = _scale(req.get("StartTime", 0), divisor, "start")
        et = _scale(req.get("EndTime", 0), divisor, "end")
        pw = req.get("PointWidth", 0)
        if not 0 <= pw < 63:
            raise BadRequest("PointWidth must be between 0 and 63")
        mask = (1 << pw) - 1
        s0, e0 = st & ~mask, et & ~mask
        # Rows run from s0 to the last window holding data: bound them before answering.
        last = None
        for u in ids:
            try:
                t = self.store.nearest(u, min(max(e0, MINIMUM_TIME + 1), MAXIMUM_TIME - 1),
                                       backward=True)[0]
                last = t if last is None else max(last, t)
            except StreamNotFound:
                raise BadRequest(f"Stream {u} does not exist") from None
            except NoSuchPoint:
                pass
        if last is not None and last >= s0:
            self._check_windows(((last & ~mask) - s0 >> pw) + 1)
        header = "Time[ns],Time" + "".join(f",{x}(cnt),{x}(min),{x}(mean),{x}(max)"
                                           for x in labels) + "\n"
        try:
            streams = [_flat(self.store.aligned_pieces(u, s0, e0, pw, 0, _PIECE)) if s0 < e0
                       else iter(()) for u in ids]
        except TsdbError as exc:
            raise BadRequest(f"query error: {_v3_message(exc)}") from None
        resp = Response(200, b"", {"Content-Type": _TEXT, "Content-Disposition":
                                   'attachment; filename="quasar_results.csv"'})

        def body() -> Iterator[bytes]:
            yield header.encode()
            step, cursor = 1 << pw, s0  # cursor: time of the next row
            heads = [next(it, None) for it in streams]
            out: list[str] = []
            while True:
                live = [h[0] for h in heads if h is not None]
                if not live:
                    break
                t = min(live)
                if t > cursor:  # gap rows, only ever before a data row
                    yield "".join(out).encode()
                    out = []
                    yield from _gap_rows(cursor, t, step)
                row = [f"{t},{_local_time(t)}"]
                for i, h in enumerate(heads):
                    if h is not None and h[0] == t:
                        row.append(f",{h[4]},{h[1]:f},{h[2]:f},{h[3]:f}")
                        heads[i] = next(streams[i], None)
                    else:
                        row.append(",,,,")
                out.append("".join(row) + "\n")
                resp.items += 1
                cursor = t + step
                if len(out) >= 4096:
                    yield "".join(out).encode()
                    out = []
            yield "".join(out).encode()

        resp.body = body()
        return resp


def _flat(pieces: Iterator[tuple[Windows, int]]) -> Iterator[tuple[int, float, float, float,
                                                                    int]]:
    """(time, min, mean, max, count) of each window, piece after piece."""
    for w, _ in pieces:
        yield from zip(w.time.tolist(), w.min.tolist(), w.mean.tolist(), w.max.tolist(),
                       w.count.tolist())


def _chain(first, rest):
    yield first
    yield from rest


def _gap_rows(t0: int, t1: int, step: int) -> Iterator[bytes]:
    """/directcsv's bare rows for window times t0 <= t < t1 where no stream has data."""
    batch = step * 8192
    for lo in range(t0, t1, batch):
        yield "".join(f"{t},{_local_time(t)}\n"
                      for t in range(lo, min(lo + batch, t1), step)).encode()

