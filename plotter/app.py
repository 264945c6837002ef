"""The web application: the JSON API of docs/plotter-api.md and the page that uses it.

Starlette on uvicorn. BTrDB calls are blocking (the official client over gRPC) and run in
worker threads; every stream a request names is resolved by :class:`~plotter.access.Gate`
for the request's viewer. Errors are JSON ``{"error": "..."}``: 400 for bad input, 404
for an unknown (or unseen) stream, 503 while BTrDB is unreachable (the connection is
dropped and reopened by the next request, so the page recovers by itself), 500 with the
traceback in the log for anything else. Never a traceback to the browser.
"""
from __future__ import annotations

import datetime as dt
import gzip
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import grpc
import orjson
from btrdb.exceptions import BTrDBError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from qss.btrdbclient import Btrdb, ErrorKind, classify, describe_error
from qss.settings import Settings
from qss.status import disk_usage

from . import csvexport
from qss.tagconfig import TagConfigFile

from .access import DomainPolicy, Gate, NotAUuid, UnknownStream
from .catalog import Catalog, tree
from .health import health, make_probes
from .metadata import ReloadStamp, reload_stamp_path
from .permalinks import (MAX_DOC_BYTES, PermalinkError, Permalinks, check_id, open_permalinks,
                         resolve, validate, visible_view)
from .query import (MAX_STREAMS, BadRequest, compact, parse_pointwidth, parse_view,
                    read_stream)
from .signin import AccountsUnavailable, Busy, CsrfGuard, SignIn, routes_handlers

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
#: The manual's 17.1 message under the data usage gauge (ch. 16).
NOT_ACCEPTING = "No longer accepting new data"


class JSON(Response):
    """A JSON answer; numpy arrays as lists, NaN as null."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


class PermalinksUnavailable(Exception):
    """The permalink store cannot be opened (a 503)."""


class Plotter:
    """The application's state: settings, the BTrDB connection and the gate."""

    def __init__(self, settings: Settings, btrdb: Btrdb | None = None,
                 gate: Gate | None = None,
                 usage: Callable[[str], Any] = disk_usage,
                 signin: SignIn | None = None) -> None:
        self.settings = settings
        self.btrdb = btrdb or Btrdb([str(e) for e in settings.btrdb.endpoints], deadline=10.0)
        self.tagconfig = TagConfigFile(settings.plotter.tagconfig)
        self.signin = signin or SignIn(settings.queue.url, settings.paths.srv, self.tagconfig,
                                       idle=settings.plotter.idle_minutes * 60,
                                       https=settings.plotter.https)
        self.reloads = ReloadStamp(reload_stamp_path(settings), self.reload)
        self.gate = gate or Gate(Catalog(self.btrdb), DomainPolicy(self.tagconfig),
                                 who=self.viewer)
        self.usage_probe = usage
        self._permalinks: Permalinks | None = None
        self._permalinks_lock = threading.Lock()
        self.probes = make_probes(settings.queue.url, settings.paths.srv,
                                  settings.receiver.max_disk_percent)
        self._probes_lock = threading.Lock()

    def permalinks(self) -> Permalinks:
        """The permalink store, opened on first use (a plotter whose store is unusable
        still plots).

        Raises:
            PermalinksUnavailable: it cannot be opened.
        """
        with self._permalinks_lock:
            if self._permalinks is None:
                try:
                    self._permalinks = open_permalinks(self.settings.queue.url,
                                                       self.settings.paths.srv)
                except Exception as exc:  # noqa: BLE001 - any backend's failure to open
                    raise PermalinksUnavailable(f"permalinks unavailable: {exc}") from exc
            return self._permalinks

    def viewer(self, request: Request):
        """Who made ``request`` (the gate asks); first takes in a ``restart metadata``."""
        self.reloads.check()
        return self.signin.viewer(request)

    def reload(self) -> None:
        """Read ``tagconfig.json`` and the stream list again now (``supervisorctl restart
        metadata`` asks for it through the reload stamp)."""
        log.info("metadata reloaded: tagconfig.json and the stream list are read again")
        self.tagconfig.invalidate()
        self.gate.catalog.expire()

    def close(self) -> None:
        self.btrdb.close()
        self.probes.close()
        self.signin.close()
        if self._permalinks is not None:
            self._permalinks.close()

    async def viewer_of(self, request: Request):
        """Who made ``request``, found in a worker thread: the account store may be
        MongoDB (a blocking query, seconds while it is down), never on the event loop."""
        return await self.call(self.gate.viewer, request)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking BTrDB call in a worker thread."""
        return await anyio.to_thread.run_sync(fn, *args)


def _uuids(request: Request) -> list[str]:
    uuids = [u for value in request.query_params.getlist("uuid") for u in value.split(",") if u]
    if not uuids:
        raise BadRequest("missing parameter 'uuid' (one or more stream UUIDs)")
    if len(uuids) > MAX_STREAMS:
        raise BadRequest(f"too many streams: {len(uuids)} (at most {MAX_STREAMS} at once)")
    return uuids


# -- handlers --------------------------------------------------------------------------

async def index(request: Request) -> Response:
    page = STATIC / "index.html"
    if not page.exists():
        return Response("The plotter's page is not built: run ./dev setup (npm ci && npm run "
                        "build in plotter/frontend)\n", status_code=503,
                        media_type="text/plain")
    return FileResponse(page, headers={"Cache-Control": "no-cache"})


async def streams(request: Request) -> Response:
    app: Plotter = request.app.state.plotter
    viewer = await app.viewer_of(request)
    entries = await app.call(app.gate.streams, viewer)
    return JSON({"streams": [e.brief() for e in entries], "tree": tree(entries)})


async def stream_info(request: Request) -> Response:
    app: Plotter = request.app.state.plotter
    viewer = await app.viewer_of(request)

    def info() -> dict:
        entry, stream = app.gate.handles(viewer, [request.path_params["uuid"]])[0]
        first, last = stream.earliest(), stream.latest()
        count = 0
        if first is not None:
            count = sum(p.count for p, _ in stream.aligned_windows(
                first[0].time >> 50 << 50, (last[0].time >> 50 << 50) + (1 << 50), 50))
        version = stream.version()
        return {**entry.brief(), "tags": entry.tags, "annotations": entry.annotations,
                "property_version": entry.property_version, "version": version,
                "first": None if first is None else first[0].time,
                "last": None if last is None else last[0].time, "count": count,
                "curl": curl_example(request, str(entry.uuid),
                                     None if first is None else first[0].time,
                                     None if last is None else last[0].time)}
    return JSON(await app.call(info))


def curl_example(request: Request, uuid: str, first: int | None, last: int | None) -> str:
    """The manual's 17.1 bracket and statistical queries against port 9000 for ``uuid``."""
    host = request.url.hostname or "127.0.0.1"
    server = f"http://{host}:{request.app.state.plotter.settings.store.http.port}"
    start, end = (first, last + 1) if first is not None else (0, 1)
    return (f"SERVER={server}\nUUID={uuid}\n"
            f"curl -X POST $SERVER/q/bracket -d '{{\"UUIDS\": [\"'$UUID'\"]}}'\n"
            f"curl \"$SERVER/data/uuid/$UUID?starttime={start}&endtime={end}"
            f"&unitoftime=ns&pw=36\"")


async def bracket(request: Request) -> Response:
    app: Plotter = request.app.state.plotter
    uuids = _uuids(request)
    viewer = await app.viewer_of(request)

    def read() -> dict:
        out = []
        for entry, stream in app.gate.handles(viewer, uuids):
            first, last = stream.earliest(), stream.latest()
            out.append({"uuid": str(entry.uuid),
                        "first": None if first is None else first[0].time,
                        "last": None if last is None else last[0].time})
        firsts = [s["first"] for s in out if s["first"] is not None]
        lasts = [s["last"] for s in out if s["last"] is not None]
        return {"streams": out, "first": min(firsts, default=None),
                "last": max(lasts, default=None)}
    return JSON(await app.call(read))


#: Threads one view's BTrDB reads run in. The reads of a view are shared among them in
#: turn, each thread reading its streams one after the other: the official client and
#: the embedded server both pay for every call in flight at once (their gRPC threads
#: contend for each one's interpreter lock), so 6 streams read 2 at a time take less
#: time and less CPU in both processes than 6 at once (bench/bench_plotter.py, 1 h:
#: see docs/plotter-api.md).
READERS = 2


async def data(request: Request) -> Response:
    app: Plotter = request.app.state.plotter
    params = request.query_params
    uuids = _uuids(request)
    view = parse_view(params)
    pw = parse_pointwidth(params)
    small = params.get("compact", "") in ("1", "true", "yes")

    def resolve() -> list:
        # Who asks and what they may see, in one trip to a worker thread (see viewer_of).
        return app.gate.handles(app.gate.viewer(request), uuids)
    handles = await app.call(resolve)
    answers: list[dict | None] = [None] * len(handles)

    def read(first: int) -> None:
        for i in range(first, len(handles), READERS):
            entry, stream = handles[i]
            answer = read_stream(stream, view, pw)
            if small:
                answer = compact(answer, view)
            answers[i] = {"uuid": str(entry.uuid), **answer}
    try:
        async with anyio.create_task_group() as tg:
            for first in range(min(READERS, len(handles))):
                tg.start_soon(app.call, read, first)
    except BaseExceptionGroup as group:
        raise group.exceptions[0] from None     # one answer for the request: the first
    return await compressed(request, {"start": view.start, "end": view.end,
                                       "width": view.width, "streams": answers})


async def compressed(request: Request, content: Any) -> Response:
    """A JSON answer gzipped in a worker thread (level 1: a 6-stream view in ~4 ms rather
    than the middleware's ~40 ms on the event loop, a few percent larger) when the client
    accepts it."""
    app: Plotter = request.app.state.plotter
    if "gzip" not in request.headers.get("accept-encoding", ""):
        return JSON(content)

    def render() -> bytes:
        return gzip.compress(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), 1)
    return Response(await app.call(render), media_type="application/json",
                    headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})


async def csv(request: Request) -> Response:
    app: Plotter = request.app.state.plotter
    params = request.query_params
    uuids = _uuids(request)
    view = parse_view(params, default_width=1)
    pw = parse_pointwidth(params)
    raw = params.get("raw", "") in ("1", "true", "yes")
    if raw and pw is not None:
        raise BadRequest("give either raw=1 or pw=N, not both")
    if not raw and pw is None:
        if "width" not in params:
            raise BadRequest("give raw=1, pw=N (windows of 2^N ns) or width=PIXELS")
        from .query import choose_pointwidth
        pw = choose_pointwidth(view)
    viewer = await app.viewer_of(request)
    handles = await app.call(app.gate.handles, viewer, uuids)
    entries = [e for e, _ in handles]
    streams_ = [s for _, s in handles]
    # The first chunk is read before the answer starts, so an unreachable BTrDB is still
    # a 503 rather than a cut-off file.
    chunks = csvexport.chunks(view.start, view.end, pw)
    first = await app.call(csvexport.read_chunk, streams_, next(chunks), pw)

    async def body() -> AsyncIterator[bytes]:
        yield csvexport.header(entries).encode()
        yield csvexport.rows(first, len(entries)).encode()
        for start, end in chunks:
            part = await app.call(csvexport.read_chunk, streams_, (start, end), pw)
            yield csvexport.rows(part, len(entries)).encode()
    name = f"plotter-{dt.datetime.fromtimestamp(view.start / 1e9, dt.timezone.utc):%Y%m%dT%H%M%SZ}.csv"
    return StreamingResponse(body(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _newest(handles) -> int | None:
    """The newest point of the streams of ``handles`` (None: none has data)."""
    lasts = [p[0].time for _, s in handles if (p := s.latest()) is not None]
    return max(lasts, default=None)


async def create_permalink(request: Request) -> Response:
    app: Plotter = request.app.state.plotter
    body = await request.body()
    if len(body) > MAX_DOC_BYTES:
        raise BadRequest(f"a permalink may hold at most {MAX_DOC_BYTES:,} bytes")
    try:
        doc = validate(orjson.loads(body))
    except orjson.JSONDecodeError:
        raise BadRequest("the body must be a JSON permalink document") from None
    viewer = await app.viewer_of(request)

    def store() -> str:
        for u in doc["streams"]:
            app.gate.stream(viewer, u)          # only streams the viewer may see
        return app.permalinks().create(doc)
    pid = await app.call(store)
    return JSON({"id": pid, "url": f"/?p={pid}"}, status_code=201)


async def read_permalink(request: Request) -> Response:
    app: Plotter = request.app.state.plotter
    pid = check_id(request.path_params["pid"])
    viewer = await app.viewer_of(request)

    def read() -> dict:
        doc = app.permalinks().get(pid)
        if doc is None:
            raise UnknownPermalink(f"no permalink {pid!r}")
        handles = []
        for u in doc["streams"]:                # a permalink shows what its viewer may see
            try:
                handles += app.gate.handles(viewer, [u])
            except UnknownStream:
                continue
        start, end = resolve(doc["window"], time.time_ns(), lambda: _newest(handles))
        shown = [(str(e.uuid), e.unit) for e, _ in handles]
        return {"id": pid, **doc, "streams": [u for u, _ in shown],
                "view": visible_view(doc.get("view"), shown), "start": start, "end": end}
    return JSON(await app.call(read))


class UnknownPermalink(LookupError):
    """No permalink with this id (a 404)."""


async def health_report(request: Request) -> Response:
    app: Plotter = request.app.state.plotter
    viewer = await app.viewer_of(request)

    def read() -> dict:
        with app._probes_lock:      # one queue connection, one report at a time
            return health(app.probes, app.settings.paths.upmuconfig,
                          lambda c: app.gate.may_see(viewer, c))
    return JSON(await app.call(read))


async def usage(request: Request) -> Response:
    app: Plotter = request.app.state.plotter
    limit = app.settings.receiver.max_disk_percent
    # What the receiver measures before it accepts a file: the SQLite queue's folder, or
    # [paths] srv (a MongoDB queue); on the appliance the data drive holds both.
    queue_db = app.settings.queue.sqlite_path
    path = os.path.dirname(queue_db) if queue_db else app.settings.paths.srv
    try:
        u = await app.call(app.usage_probe, path)
    except Exception as exc:  # noqa: BLE001 - the page shows why, the rest still works
        return JSON({"path": path, "limit_percent": limit, "percent": None,
                     "accepting": None, "message": f"cannot tell: {exc}"})
    accepting = u.percent < limit
    return JSON({"path": path, "limit_percent": limit, "percent": round(u.percent, 2),
                 "used": u.used, "total": u.total, "accepting": accepting,
                 "message": None if accepting else NOT_ACCEPTING})


# -- errors ----------------------------------------------------------------------------

async def bad_request(request: Request, exc: Exception) -> Response:
    return JSON({"error": str(exc)}, status_code=400)


async def unknown_stream(request: Request, exc: Exception) -> Response:
    return JSON({"error": str(exc)}, status_code=404)


async def unavailable(request: Request, exc: Exception) -> Response:
    log.warning("%s", exc)
    return JSON({"error": str(exc)}, status_code=503)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSON({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def btrdb_failure(request: Request, exc: Exception) -> Response:
    """A failure of the official client, by what it means (an unreachable BTrDB is a 503
    and the connection is reopened by the next request)."""
    app: Plotter = request.app.state.plotter
    kind = classify(exc)
    if kind is ErrorKind.UNAVAILABLE:
        app.btrdb.reset()
        log.warning("%s: unreachable (%s)", app.btrdb.what, describe_error(exc))
        return JSON({"error": f"database unreachable: {describe_error(exc)}"},
                    status_code=503, headers={"Retry-After": "2"})
    if kind is ErrorKind.STREAM_MISSING:
        return JSON({"error": "no such stream"}, status_code=404)
    return JSON({"error": describe_error(exc)}, status_code=400)


async def failure(request: Request, exc: Exception) -> Response:
    """Anything else: a 500 whose traceback goes to the log, not to the browser."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSON({"error": f"internal error ({type(exc).__name__}); see the plotter's log"},
                status_code=500)


def create_app(plotter: Plotter) -> Starlette:
    """The ASGI application serving ``plotter``."""
    routes = [
        Route("/", index),
        Route("/login", index),                 # the page, its sign-in dialog open
        Route("/api/streams", streams),
        Route("/api/streams/{uuid}", stream_info),
        Route("/api/bracket", bracket),
        Route("/api/data", data),
        Route("/api/csv", csv),
        Route("/api/usage", usage),
        Route("/api/health", health_report),
        Route("/api/permalinks", create_permalink, methods=["POST"]),
        Route("/api/permalinks/{pid}", read_permalink),
        *(Route(path, handler, methods=methods)
          for path, (handler, methods) in routes_handlers().items()),
    ]
    if STATIC.is_dir():
        routes.append(Mount("/static", StaticFiles(directory=STATIC), name="static"))
    app = Starlette(routes=routes,
                    # Level 9 (the default) took 200 ms for a 6-stream view; 5: a tenth of that,
                    # a few percent larger.
                    middleware=[Middleware(CsrfGuard, signin_of=lambda: plotter.signin),
                                Middleware(GZipMiddleware, minimum_size=1024,
                                           compresslevel=5)],
                    exception_handlers={BadRequest: bad_request, NotAUuid: bad_request,
                                        PermalinkError: bad_request,
                                        UnknownStream: unknown_stream,
                                        UnknownPermalink: unknown_stream,
                                        PermalinksUnavailable: unavailable,
                                        AccountsUnavailable: unavailable,
                                        Busy: unavailable,
                                        HTTPException: http_error, BTrDBError: btrdb_failure,
                                        grpc.RpcError: btrdb_failure, Exception: failure})
    app.state.plotter = plotter
    return app
