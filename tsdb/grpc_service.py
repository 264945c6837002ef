"""BTrDB v5 gRPC service over :class:`tsdb.Store`, from the official client's stubs.

Using ``btrdb.grpcinterface.btrdb_pb2_grpc`` (the client's own generated code) means the
wire format cannot drift from what the client speaks. Errors travel in-band in each
response's ``stat`` (code, msg) with gRPC status OK, as the real server does; streaming
RPCs always send at least one message (reference/btrdb-v5.md §0).
"""
from __future__ import annotations

import functools
import logging
import sqlite3
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
import numpy as np
from btrdb.grpcinterface import btrdb_pb2 as pb
from btrdb.grpcinterface import btrdb_pb2_grpc as pb_grpc

from . import arrowio, wire
from .errors import NotSupported, TsdbError, WrongArgs, storage_error
from .merge import MergePolicy
from .meta import StreamInfo
from .multi import multi_values
from .reqlog import OK, RequestLog, outcome
from .store import Store, Windows

log = logging.getLogger("tsdb.grpc")

#: Reported server version: the client enables its Arrow paths for major 5, minor >= 30.
VERSION = (5, 30)
RAW_BATCH = 5000         # points per message on the non-Arrow paths, as v4
ARROW_BATCH = 200_000    # rows per Arrow message
CHANGES_BATCH = 1000
RAW_PIECE = 1 << 20      # points read from the store at a time


def _uuid(raw: bytes) -> uuidlib.UUID:
    if len(raw) != 16:
        raise WrongArgs(f"malformed uuid ({len(raw)} bytes, expected 16)")
    return uuidlib.UUID(bytes=raw)


def _engine_error(exc: Exception) -> TsdbError | None:
    """The engine error an exception stands for; None for a bug."""
    if isinstance(exc, TsdbError):
        return exc
    if isinstance(exc, sqlite3.Error):
        return storage_error(exc)  # disk full, I/O error, damaged file
    return None


def _stat(exc: Exception) -> pb.Status:
    err = _engine_error(exc)
    if err is not None:
        return pb.Status(code=err.code, msg=err.message)
    return pb.Status(code=500, msg=f"internal error: {type(exc).__name__}: {exc}")


_call = threading.local()  # the running handler's item count (points, windows, ...)


def _items(n: int) -> None:
    """Tell the request log how many items (points, windows, streams) this call moved."""
    _call.items = getattr(_call, "items", 0) + int(n)


def _detail(request) -> str:
    raw = getattr(request, "uuid", b"")
    return str(uuidlib.UUID(bytes=raw)) if isinstance(raw, bytes) and len(raw) == 16 else ""


def _finish(self, name: str, request, started: float, stat: pb.Status | None,
            exc: Exception | None) -> None:
    request = getattr(_call, "request", None) or request   # as the handler decoded it
    if exc is not None and _engine_error(exc) is None:
        log.error("%s failed", name, exc_info=exc)
    self.requests.record("grpc", name, outcome(stat.code) if stat is not None else OK,
                         time.perf_counter() - started, getattr(_call, "items", 0),
                         _detail(request), stat.msg if stat is not None else "")


def _unary(response_type: type) -> Callable:
    """Turn engine errors into ``stat`` of a unary response, and log the call."""
    def wrap(fn):
        @functools.wraps(fn)
        def handler(self, request, context):
            _call.items, _call.request, started = 0, None, time.perf_counter()
            try:
                resp = fn(self, request, context)
            except Exception as exc:  # noqa: BLE001 - every error goes back in stat
                stat = _stat(exc)
                _finish(self, fn.__name__, request, started, stat, exc)
                return response_type(stat=stat)
            _finish(self, fn.__name__, request, started, None, None)
            return resp
        return handler
    return wrap


def _streaming(response_type: type) -> Callable:
    """Same for streaming responses; an error ends the stream with one stat message."""
    def wrap(fn):
        @functools.wraps(fn)
        def handler(self, request, context):
            _call.items, _call.request, started = 0, None, time.perf_counter()
            try:
                yield from fn(self, request, context)
            except Exception as exc:  # noqa: BLE001
                stat = _stat(exc)
                _finish(self, fn.__name__, request, started, stat, exc)
                yield response_type(stat=stat)
                return
            _finish(self, fn.__name__, request, started, None, None)
        return handler
    return wrap


def _kov(d: dict[str, str | None]) -> list[pb.KeyOptValue]:
    return [pb.KeyOptValue(key=k) if v is None else
            pb.KeyOptValue(key=k, val=pb.OptValue(value=v)) for k, v in d.items()]


def _from_kov(items) -> dict[str, str | None]:
    return {kv.key: (kv.val.value if kv.HasField("val") else None) for kv in items}


def _descriptor(info: StreamInfo) -> pb.StreamDescriptor:
    # name, unit and ingress always appear, "" when unset (client code indexes them).
    tags = {"name": "", "unit": "", "ingress": "", **info.tags}
    return pb.StreamDescriptor(uuid=info.uuid.bytes, collection=info.collection,
                               tags=_kov(tags), annotations=_kov(info.annotations),
                               propertyVersion=info.property_version)


def _stat_points(w: Windows, lo: int, hi: int) -> list[pb.StatPoint]:
    return [pb.StatPoint(time=int(w.time[i]), min=float(w.min[i]), mean=float(w.mean[i]),
                         max=float(w.max[i]), count=int(w.count[i]),
                         stddev=float(w.stddev[i])) for i in range(lo, hi)]


class BTrDBServicer(pb_grpc.BTrDBServicer):
    """The v5 RPCs; each is a thin translation to one Store call."""

    def __init__(self, store: Store, requests: RequestLog | None = None):
        self.store = store
        self.requests = requests or RequestLog()

    # ---- metadata -------------------------------------------------------------------
    @_unary(pb.InfoResponse)
    def Info(self, request, context):
        from qss import __version__
        return pb.InfoResponse(majorVersion=VERSION[0], minorVersion=VERSION[1],
                               build=f"qss-{__version__}",
                               proxy=pb.ProxyInfo(proxyEndpoints=[]))

    @_unary(pb.CreateResponse)
    def Create(self, request, context):
        self.store.create(_uuid(request.uuid), request.collection, _from_kov(request.tags),
                          _from_kov(request.annotations))
        return pb.CreateResponse()

    @_unary(pb.StreamInfoResponse)
    def StreamInfo(self, request, context):
        if request.omitVersion and request.omitDescriptor:
            raise WrongArgs("you cannot omit descriptor and version")
        info = self.store.info(_uuid(request.uuid))
        resp = pb.StreamInfoResponse()
        if not request.omitVersion:
            resp.versionMajor = info.version
        if not request.omitDescriptor:
            resp.descriptor.CopyFrom(_descriptor(info))
        return resp

    @_unary(pb.SetStreamAnnotationsResponse)
    def SetStreamAnnotations(self, request, context):
        self.store.set_annotations(_uuid(request.uuid), request.expectedPropertyVersion,
                                   _from_kov(request.changes), list(request.removals))
        return pb.SetStreamAnnotationsResponse()

    @_unary(pb.SetStreamTagsResponse)
    def SetStreamTags(self, request, context):
        self.store.set_tags(_uuid(request.uuid), request.expectedPropertyVersion,
                            _from_kov(request.tags), request.collection, list(request.remove))
        return pb.SetStreamTagsResponse()

    @_streaming(pb.ListCollectionsResponse)
    def ListCollections(self, request, context):
        yield pb.ListCollectionsResponse(collections=self.store.list_collections(request.prefix))

    @_streaming(pb.LookupStreamsResponse)
    def LookupStreams(self, request, context):
        found = self.store.lookup(request.collection, request.isCollectionPrefix,
                                  _from_kov(request.tags), _from_kov(request.annotations))
        yield pb.LookupStreamsResponse(results=[_descriptor(i) for i in found])

    @_unary(pb.MetadataUsageResponse)
    def GetMetadataUsage(self, request, context):
        tags, anns = self.store.metadata_usage(request.prefix)
        return pb.MetadataUsageResponse(
            tags=[pb.KeyCount(key=k, count=n) for k, n in tags.items()],
            annotations=[pb.KeyCount(key=k, count=n) for k, n in anns.items()])

    # ---- writes ---------------------------------------------------------------------
    def _insert(self, request, t: np.ndarray, v: np.ndarray) -> pb.InsertResponse:
        try:
            policy = MergePolicy(request.merge_policy)
        except ValueError:
            raise WrongArgs(f"unknown merge policy {request.merge_policy}") from None
        # Committed either way; ``sync`` (never set by the official client) also waits for
        # the fsync that Flush would wait for (db.py).
        _items(len(t))
        version = self.store.insert(_uuid(request.uuid), t, v, policy, sync=request.sync)
        return pb.InsertResponse(versionMajor=version, versionMinor=0)

    @_unary(pb.InsertResponse)
    def Insert(self, request, context):
        n = len(request.values)
        t = np.fromiter((p.time for p in request.values), np.int64, n)
        v = np.fromiter((p.value for p in request.values), np.float64, n)
        return self._insert(request, t, v)

    @_unary(pb.InsertResponse)
    def ArrowInsert(self, request, context):
        if isinstance(request, bytes):  # as make_server registers it: see tsdb/wire.py
            request = _call.request = wire.parse_arrow_insert(request)
        t, v = arrowio.decode_points(request.arrowBytes)
        return self._insert(request, t, v)

    @_unary(pb.DeleteResponse)
    def Delete(self, request, context):
        version = self.store.delete(_uuid(request.uuid), request.start, request.end)
        return pb.DeleteResponse(versionMajor=version)

    @_unary(pb.FlushResponse)
    def Flush(self, request, context):
        return pb.FlushResponse(versionMajor=self.store.flush(_uuid(request.uuid)))

    @_unary(pb.ObliterateResponse)
    def Obliterate(self, request, context):
        self.store.obliterate(_uuid(request.uuid))
        return pb.ObliterateResponse()

    # ---- reads ----------------------------------------------------------------------
    def _raw(self, request, batch: int) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
        """Points in messages of at most ``batch``, read piecewise (bounded memory for
        any range); always at least one, possibly empty, message."""
        pieces = self.store.raw_pieces(_uuid(request.uuid), request.start, request.end,
                                       request.versionMajor, RAW_PIECE)
        for t, v, ver in pieces:
            _items(len(t))
            for lo in range(0, max(len(t), 1), batch):
                yield t[lo:lo + batch], v[lo:lo + batch], ver

    @_streaming(pb.RawValuesResponse)
    def RawValues(self, request, context):
        for t, v, ver in self._raw(request, RAW_BATCH):
            yield pb.RawValuesResponse(versionMajor=ver, values=[
                pb.RawPoint(time=a, value=b) for a, b in zip(t.tolist(), v.tolist())])

    @_streaming(pb.ArrowRawValuesResponse)
    def ArrowRawValues(self, request, context):
        template = arrowio.read_template(request.templateBytes)
        for t, v, ver in self._raw(request, ARROW_BATCH):
            table = arrowio.apply_template(arrowio.points_table(t, v), template)
            yield pb.ArrowRawValuesResponse(versionMajor=ver,
                                            arrowBytes=arrowio.encode(table))

    @_streaming(pb.ArrowMultiValuesResponse)
    def ArrowMultiValues(self, request, context):
        uuids = [_uuid(u) for u in request.uuid]
        template = arrowio.read_template(request.templateBytes)
        slices = multi_values(self.store, uuids, list(request.versionMajor), request.start,
                              request.end, request.snapPeriodNs)
        for times, cols in slices:
            _items(len(times))
            table = arrowio.multi_table(times, cols, [str(u) for u in uuids])
            table = arrowio.apply_template(table, template)
            for lo in range(0, max(len(times), 1), ARROW_BATCH):
                yield pb.ArrowMultiValuesResponse(
                    arrowBytes=arrowio.encode(table.slice(lo, ARROW_BATCH)))

    @_streaming(pb.SQLQueryResponse)
    def SQLQuery(self, request, context):
        raise NotSupported("SQL queries of the metadata are not supported by this server; "
                           "use LookupStreams (conn.streams_in_collection)")
        yield  # a generator, like the other streaming handlers

    def Subscribe(self, request_iterator, context):
        yield pb.SubscriptionResp(stat=pb.Status(
            code=NotSupported.code, msg="subscriptions are not supported by this server"))

    def _stat_stream(self, w: Windows, ver: int, response_type) -> Iterator:
        _items(len(w))
        for lo in range(0, max(len(w), 1), RAW_BATCH):
            yield response_type(versionMajor=ver,
                                values=_stat_points(w, lo, min(lo + RAW_BATCH, len(w))))

    def _arrow_stat_stream(self, w: Windows, ver: int, response_type) -> Iterator:
        _items(len(w))
        table = arrowio.windows_table(w)
        for lo in range(0, max(len(w), 1), ARROW_BATCH):
            yield response_type(versionMajor=ver,
                                arrowBytes=arrowio.encode(table.slice(lo, ARROW_BATCH)))

    def _aligned(self, request) -> tuple[Windows, int]:
        return self.store.aligned_windows(_uuid(request.uuid), request.start, request.end,
                                          request.pointWidth, request.versionMajor)

    @_streaming(pb.AlignedWindowsResponse)
    def AlignedWindows(self, request, context):
        yield from self._stat_stream(*self._aligned(request), pb.AlignedWindowsResponse)

    @_streaming(pb.ArrowAlignedWindowsResponse)
    def ArrowAlignedWindows(self, request, context):
        yield from self._arrow_stat_stream(*self._aligned(request),
                                           pb.ArrowAlignedWindowsResponse)

    def _windows(self, request) -> tuple[Windows, int]:
        return self.store.windows(_uuid(request.uuid), request.start, request.end,
                                  request.width, request.depth, request.versionMajor)

    @_streaming(pb.WindowsResponse)
    def Windows(self, request, context):
        yield from self._stat_stream(*self._windows(request), pb.WindowsResponse)

    @_streaming(pb.ArrowWindowsResponse)
    def ArrowWindows(self, request, context):
        yield from self._arrow_stat_stream(*self._windows(request), pb.ArrowWindowsResponse)

    @_unary(pb.NearestResponse)
    def Nearest(self, request, context):
        t, v, ver = self.store.nearest(_uuid(request.uuid), request.time, request.backward,
                                       request.versionMajor)
        return pb.NearestResponse(versionMajor=ver, value=pb.RawPoint(time=t, value=v))

    @_streaming(pb.ChangesResponse)
    def Changes(self, request, context):
        starts, ends, ver = self.store.changes(_uuid(request.uuid), request.fromMajor,
                                               request.toMajor, request.resolution)
        _items(len(starts))
        for lo in range(0, max(len(starts), 1), CHANGES_BATCH):
            ranges = [pb.ChangedRange(start=a, end=b) for a, b in
                      zip(starts[lo:lo + CHANGES_BATCH].tolist(),
                          ends[lo:lo + CHANGES_BATCH].tolist())]
            yield pb.ChangesResponse(versionMajor=ver, ranges=ranges)


#: Largest request accepted, bytes: the client sends 50,000 points (~0.8 MB) per call,
#: sync2q 172,800 (~2.8 MB), so this leaves a wide margin while keeping one request from
#: exhausting memory. Larger requests get gRPC's RESOURCE_EXHAUSTED before any of it is
#: decoded.
MAX_REQUEST_BYTES = 256 << 20


def make_server(store: Store, address: str = "127.0.0.1:4410", workers: int = 8, *,
                requests: RequestLog | None = None,
                executor: futures.ThreadPoolExecutor | None = None,
                max_request_bytes: int = MAX_REQUEST_BYTES) -> tuple[grpc.Server, int]:
    """A started-later gRPC server bound to ``address``; returns it and the bound port
    (useful with port 0). Call ``start()`` and, to stop, ``stop(grace)``.

    Raises:
        OSError: the address cannot be bound.
    """
    executor = executor or futures.ThreadPoolExecutor(max_workers=workers,
                                                      thread_name_prefix="btrdb-grpc")
    server = grpc.server(executor,
                         options=[("grpc.max_receive_message_length", max_request_bytes),
                                  ("grpc.max_send_message_length", -1),
                                  ("grpc.so_reuseport", 0)])
    servicer = BTrDBServicer(store, requests)
    # ArrowInsert takes its request as bytes (tsdb/wire.py); gRPC asks the handlers in
    # the order added, so this one comes before the generated ones.
    arrow_insert = grpc.unary_unary_rpc_method_handler(
        servicer.ArrowInsert,
        response_serializer=pb.InsertResponse.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "v5api.BTrDB", {"ArrowInsert": arrow_insert}),))
    pb_grpc.add_BTrDBServicer_to_server(servicer, server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpcio raises RuntimeError when it cannot bind
        raise OSError(f"cannot listen on {address}: {exc}") from None
    if port == 0:
        raise OSError(f"cannot listen on {address}: address in use or not a local address")
    return server, port
