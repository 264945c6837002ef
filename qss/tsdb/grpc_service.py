"""BTrDB v5 gRPC service over :class:`qss.tsdb.Store`, from the official client's stubs.

Using ``btrdb.grpcinterface.btrdb_pb2_grpc`` (the client's own generated code) means the
wire format cannot drift from what the client speaks. Errors travel in-band in each
response's ``stat`` (code, msg) with gRPC status OK, as the real server does; streaming
RPCs always send at least one message (reference/btrdb-v5.md §0).
"""
from __future__ import annotations

import functools
import logging
import uuid as uuidlib
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
import numpy as np
from btrdb.grpcinterface import btrdb_pb2 as pb
from btrdb.grpcinterface import btrdb_pb2_grpc as pb_grpc

from . import arrowio
from .errors import TsdbError, WrongArgs
from .merge import MergePolicy
from .meta import StreamInfo
from .store import Store, Windows

log = logging.getLogger("qss.tsdb.grpc")

#: Reported server version: the client enables its Arrow paths for major 5, minor >= 30.
VERSION = (5, 30)
RAW_BATCH = 5000         # points per message on the non-Arrow paths, as v4
ARROW_BATCH = 200_000    # rows per Arrow message
CHANGES_BATCH = 1000


def _uuid(raw: bytes) -> uuidlib.UUID:
    if len(raw) != 16:
        raise WrongArgs(f"malformed uuid ({len(raw)} bytes, expected 16)")
    return uuidlib.UUID(bytes=raw)


def _stat(exc: Exception) -> pb.Status:
    if isinstance(exc, TsdbError):
        return pb.Status(code=exc.code, msg=exc.message)
    log.exception("internal error")
    return pb.Status(code=500, msg=f"internal error: {type(exc).__name__}: {exc}")


def _unary(response_type: type) -> Callable:
    """Turn engine errors into ``stat`` of a unary response."""
    def wrap(fn):
        @functools.wraps(fn)
        def handler(self, request, context):
            try:
                return fn(self, request, context)
            except Exception as exc:  # noqa: BLE001 - every error goes back in stat
                if not isinstance(exc, TsdbError):
                    log.exception("%s failed", fn.__name__)
                return response_type(stat=_stat(exc))
        return handler
    return wrap


def _streaming(response_type: type) -> Callable:
    """Same for streaming responses; an error ends the stream with one stat message."""
    def wrap(fn):
        @functools.wraps(fn)
        def handler(self, request, context):
            try:
                yield from fn(self, request, context)
            except Exception as exc:  # noqa: BLE001
                if not isinstance(exc, TsdbError):
                    log.exception("%s failed", fn.__name__)
                yield response_type(stat=_stat(exc))
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

    def __init__(self, store: Store):
        self.store = store

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
        # ``sync`` needs nothing extra: every insert is committed before it returns.
        version = self.store.insert(_uuid(request.uuid), t, v, policy)
        return pb.InsertResponse(versionMajor=version, versionMinor=0)

    @_unary(pb.InsertResponse)
    def Insert(self, request, context):
        n = len(request.values)
        t = np.fromiter((p.time for p in request.values), np.int64, n)
        v = np.fromiter((p.value for p in request.values), np.float64, n)
        return self._insert(request, t, v)

    @_unary(pb.InsertResponse)
    def ArrowInsert(self, request, context):
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
    @_streaming(pb.RawValuesResponse)
    def RawValues(self, request, context):
        t, v, ver = self.store.raw(_uuid(request.uuid), request.start, request.end,
                                   request.versionMajor)
        for lo in range(0, max(len(t), 1), RAW_BATCH):
            pts = [pb.RawPoint(time=a, value=b)
                   for a, b in zip(t[lo:lo + RAW_BATCH].tolist(), v[lo:lo + RAW_BATCH].tolist())]
            yield pb.RawValuesResponse(versionMajor=ver, values=pts)

    @_streaming(pb.ArrowRawValuesResponse)
    def ArrowRawValues(self, request, context):
        template = arrowio.read_template(request.templateBytes)
        t, v, ver = self.store.raw(_uuid(request.uuid), request.start, request.end,
                                   request.versionMajor)
        for lo in range(0, max(len(t), 1), ARROW_BATCH):
            table = arrowio.points_table(t[lo:lo + ARROW_BATCH], v[lo:lo + ARROW_BATCH])
            yield pb.ArrowRawValuesResponse(
                versionMajor=ver, arrowBytes=arrowio.encode(arrowio.apply_template(table,
                                                                                   template)))

    def _stat_stream(self, w: Windows, ver: int, response_type) -> Iterator:
        for lo in range(0, max(len(w), 1), RAW_BATCH):
            yield response_type(versionMajor=ver,
                                values=_stat_points(w, lo, min(lo + RAW_BATCH, len(w))))

    def _arrow_stat_stream(self, w: Windows, ver: int, response_type) -> Iterator:
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
        for lo in range(0, max(len(starts), 1), CHANGES_BATCH):
            ranges = [pb.ChangedRange(start=a, end=b) for a, b in
                      zip(starts[lo:lo + CHANGES_BATCH].tolist(),
                          ends[lo:lo + CHANGES_BATCH].tolist())]
            yield pb.ChangesResponse(versionMajor=ver, ranges=ranges)


def make_server(store: Store, address: str = "127.0.0.1:4410", workers: int = 8
                ) -> tuple[grpc.Server, int]:
    """A started-later gRPC server bound to ``address``; returns it and the bound port
    (useful with port 0). Call ``start()`` and, to stop, ``stop(grace)``."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers,
                                                    thread_name_prefix="btrdb-grpc"),
                         options=[("grpc.max_receive_message_length", -1),
                                  ("grpc.max_send_message_length", -1)])
    pb_grpc.add_BTrDBServicer_to_server(BTrDBServicer(store), server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return server, port
