"""The HTTP adapter of BTrDB v3's REST API (port 9000): :mod:`tsdb.restapi` behind the
standard library's ``ThreadingHTTPServer``.

How this works. A thread per connection reads a request (HTTP/1.1, keep-alive), checks its
Content-Length with :func:`~tsdb.restapi.body_length`, hands method, target, body and
Content-Type to :meth:`RestApi.handle`, and writes the :class:`~tsdb.restapi.Response`:
bytes with a Content-Length, an iterator as chunks of about 64 KiB. Everything a client
sees apart from the framing, the ``Date`` header, the 500 of a bug and ``http.server``'s
own answers to requests it cannot parse is decided in :mod:`tsdb.restapi`. Four
read-only endpoints on a LAN need no framework, and the standard library adds no
dependency to the appliance. :class:`RestServer` keeps the connections it serves so that
:meth:`RestServer.stop` can close idle ones and wait for answers in flight.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .errors import TsdbError
from .reqlog import RequestLog
from .restapi import (MAX_BODY, MAX_WINDOWS, BadRequest, Response, RestApi, body_length,
                      error_response, go_float)
from .store import Store

# The API's names, importable from here as they were before the sans-IO split.
__all__ = ["RestServer", "make_server", "serve_in_thread", "RestApi", "Response",
           "BadRequest", "go_float", "MAX_BODY", "MAX_WINDOWS"]

log = logging.getLogger("tsdb.rest")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "qss-btrdb"
    sys_version = ""
    timeout = 60  # seconds a client may take to send its request

    busy = False  # answering a request (as opposed to waiting for the next one)

    def setup(self) -> None:
        super().setup()
        self.server.track(self, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self, False)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    def do_PUT(self) -> None:  # noqa: N802
        self._serve()

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve()

    def _serve(self) -> None:
        self.busy = True
        try:
            self._answer()
        finally:
            self.busy = False
            if self.server.stopping:
                self.close_connection = True

    def _answer(self) -> None:
        started = time.perf_counter()
        api: RestApi = self.server.api
        try:
            n = body_length(self.headers.get("Content-Length"))
        except BadRequest as exc:  # the body is not read: the connection cannot go on
            self._simple(exc.status, str(exc), started)
            return
        body = self.rfile.read(n) if n else b""
        try:
            resp = api.handle(self.command, self.path, body,
                              self.headers.get("Content-Type", ""))
        except Exception as exc:  # noqa: BLE001 - a bug must not take the server down
            log.error("%s %s failed", self.command, self.path, exc_info=exc)
            self._simple(500, f"internal error: {type(exc).__name__}", started)
            return
        self._send(resp, started)

    def _simple(self, status: int, message: str, started: float) -> None:
        self._send(error_response(status, message), started)
        self.close_connection = True

    def _send(self, resp: Response, started: float) -> None:
        self.send_response_only(resp.status)
        self.send_header("Date", self.date_time_string())
        if self.server.stopping:
            self.send_header("Connection", "close")
        for k, v in resp.headers.items():
            self.send_header(k, v)
        error = ""
        if isinstance(resp.body, bytes):
            self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(resp.body)
            if resp.status >= 400:
                error = resp.body.decode("utf-8", "replace").strip()
        else:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                buf = []
                size = 0
                for part in resp.body:
                    buf.append(part)
                    size += len(part)
                    if size >= 1 << 16:
                        self._chunk(b"".join(buf))
                        buf, size = [], 0
                self._chunk(b"".join(buf))
                self.wfile.write(b"0\r\n\r\n")
            except OSError as exc:  # the client went away
                error = f"answer cut short: {exc}"
                self.close_connection = True
            except Exception as exc:  # noqa: BLE001 - headers are gone: cut the answer short
                if not isinstance(exc, TsdbError):
                    log.error("%s %s failed", self.command, self.path, exc_info=exc)
                error = f"answer cut short: {exc}"
                self.close_connection = True
        name, result, detail = self.server.api.log_entry(self.command, self.path,
                                                         resp.status, error)
        self.server.requests.record("http", name, result, time.perf_counter() - started,
                                    resp.items, detail, error)

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's name
        log.debug("%s %s", self.address_string(), format % args)


class RestServer(ThreadingHTTPServer):
    """The HTTP server: one thread per connection; :meth:`server_close` waits for them."""

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: RestApi, requests: RequestLog):
        self.api = api
        self.requests = requests
        self.stopping = False
        self._handlers: set[_Handler] = set()
        self._handlers_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def track(self, handler: _Handler, alive: bool) -> None:
        with self._handlers_lock:
            (self._handlers.add if alive else self._handlers.discard)(handler)

    def stop(self) -> None:
        """Stop accepting, close idle keep-alive connections, let requests being answered
        finish (their connections close afterwards), and wait for them."""
        self.stopping = True
        self.shutdown()
        with self._handlers_lock:
            idle = [h for h in self._handlers if not h.busy]
        for h in idle:
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server_close()


def make_server(store: Store, host: str = "127.0.0.1", port: int = 9000,
                requests: RequestLog | None = None) -> tuple[RestServer, int]:
    """A bound (not yet serving) REST server and its port (useful with port 0). Serve
    with ``serve_forever()`` on a thread; stop with ``shutdown()`` then ``server_close()``.

    Raises:
        OSError: the address cannot be bound.
    """
    server = RestServer((host, port), RestApi(store), requests or RequestLog())
    return server, server.server_address[1]


def serve_in_thread(server: RestServer) -> threading.Thread:
    """Start ``serve_forever`` on a named thread and return it."""
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), name="btrdb-http",
                              daemon=True)
    thread.start()
    return thread
