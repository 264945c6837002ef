"""qss-btrdb: the embedded BTrDB-compatible server (v5 gRPC API and v3 REST API).

Runs in the foreground under supervisor (program ``btrdb``), logs to standard output,
and on SIGTERM or SIGINT stops taking requests, lets the ones in flight finish, and
closes the database. An unusable data directory or address is one line on standard
error and exit status 1, never a traceback.
"""
from __future__ import annotations

import argparse
import faulthandler
import gc
import logging
import os
import signal
import socket
import sqlite3
import sys
import threading
from collections.abc import Sequence
from concurrent import futures
from pathlib import Path

from qss import lockfile, malloc
from qss.cli import CommandError, ExitStatus, add_traceback_argument, load_settings, run
from qss.settings import HostPort, add_settings_arguments

from . import db as dbmod
from .errors import StorageFailure, TsdbError
from .reqlog import RequestLog
from .store import Store

log = logging.getLogger("tsdb.server")

LOCK_FILE = "qss-btrdb.lock"
#: Seconds in-flight requests get to finish after SIGTERM (supervisor's stopwaitsecs
#: defaults to 10, after which it sends SIGKILL; inserts are durable either way).
GRACE = 8.0
#: The range of --summary: a shorter interval floods the log (and spins), a longer one
#: than a day is no summary (and an infinite one overflows threading's timeout).
MIN_SUMMARY, MAX_SUMMARY = 1.0, 86400.0

_DESCRIPTION = """\
The embedded BTrDB-compatible server of the MicroPMU Quickstart Server: BTrDB's v5 gRPC
API (what the official btrdb client and sync2q speak) and BTrDB v3's REST API (the
manual's curl examples), over one data directory.
"""
_EPILOG = """\
examples:
  qss-btrdb                                   # settings from /etc/qss/qss.ini
  qss-btrdb --data /ssd/data --grpc 127.0.0.1:4410 --http 0.0.0.0:9000

A port of 0 picks a free port; the log line "serving ..." names the ports bound.

exit status:
  0  stopped by SIGTERM or SIGINT
  1  the data directory or an address is unusable (the reason is printed)
  2  invalid command line or settings
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of qss-btrdb (also used by the help-text tests)."""
    p = argparse.ArgumentParser(prog="qss-btrdb", description=_DESCRIPTION, epilog=_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_settings_arguments(p, "data", "grpc", "http")
    p.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error"],
                   help="debug logs every request; info (the default) logs changes to "
                        "streams, refused requests and a summary per request class every "
                        "--summary seconds")
    p.add_argument("--summary", type=float, default=60.0, metavar="SECONDS",
                   help="interval of the per-request-class summary lines, from "
                        f"{MIN_SUMMARY:g} to {MAX_SUMMARY:g} (default 60)")
    p.add_argument("--no-fsync", action="store_true",
                   help="commit without fsync (synchronous=NORMAL): acknowledged writes "
                        "survive a crash of the server but not a power loss; faster")
    add_traceback_argument(p)
    return p


# ---- the data directory ---------------------------------------------------------------

def open_data_dir(path: str, durable: bool = True) -> tuple[Store, int]:
    """Open (creating if needed) the store in ``path`` and lock it for this process.

    Returns the store and the lock's file descriptor (closing it releases the lock).
    Raises CommandError with a one-line reason when the directory cannot be used.
    """
    d = Path(path)
    what = f"data directory {path!r}"
    if d.exists() and not d.is_dir():
        raise CommandError(f"{what} is not a directory")
    if not d.exists():
        if not d.parent.is_dir():
            raise CommandError(f"{what} cannot be created: {str(d.parent)!r} does not "
                               f"exist (is the data disk mounted?)")
        try:
            d.mkdir()
        except OSError as exc:
            raise CommandError(f"{what} cannot be created: {exc.strerror}") from None
        log.info("created %s", what)
    try:
        lock = lockfile.hold(d / LOCK_FILE)
    except lockfile.LockError as exc:
        if exc.step == "held":
            raise CommandError(f"{what} is in use by another qss-btrdb (pid {exc.holder})"
                               ) from None
        if exc.step == "lock":
            raise CommandError(f"{what}: cannot lock: {exc.strerror}") from None
        raise CommandError(f"{what} is not writable: {exc.strerror}") from None
    except OSError as exc:      # recording the pid
        raise CommandError(f"{what} is not writable: {exc.strerror}") from None
    try:
        store = Store(d, durable=durable)
        store.db.conn().execute("SELECT count(*) FROM streams").fetchone()
    except (OSError, sqlite3.Error, TsdbError) as exc:
        os.close(lock)
        raise CommandError(_unusable(what, d, exc)) from None
    return store, lock


def _unusable(what: str, d: Path, exc: Exception) -> str:
    if isinstance(exc, OSError):
        return f"{what} is not writable: {exc.strerror}"
    if isinstance(exc, sqlite3.Error) and exc.sqlite_errorcode & 0xFF in (8, 14, 23):
        # READONLY, CANTOPEN, AUTH
        return f"{what} is not writable: cannot open {dbmod.FILENAME} ({exc})"
    if isinstance(exc, (sqlite3.Error, StorageFailure)):
        return (f"{what}: {dbmod.FILENAME} is not a usable database ({exc}); move it "
                f"aside and restore a backup, or start with an empty directory")
    return f"{what}: {exc}"


# ---- the server -----------------------------------------------------------------------

class BtrdbServer:
    """Both APIs over one store: bind in the constructor, :meth:`start`, :meth:`stop`."""

    def __init__(self, store: Store, grpc_addr: HostPort, http_addr: HostPort,
                 requests: RequestLog | None = None, workers: int = 8):
        # Imported here: the official client's package is slow to import and logs a note
        # while importing, neither of which a refusal of the data directory should wait for.
        logging.getLogger("numexpr.utils").setLevel(logging.WARNING)
        from . import grpc_service, rest
        self._rest = rest
        self.store = store
        self.requests = requests or RequestLog()
        self._executor = futures.ThreadPoolExecutor(max_workers=workers,
                                                    thread_name_prefix="btrdb-grpc")
        try:
            _check_bindable(grpc_addr)  # gRPC's core would print its own lines first
            self.grpc, self.grpc_port = grpc_service.make_server(
                store, str(grpc_addr), requests=self.requests, executor=self._executor)
        except OSError as exc:
            self._executor.shutdown()
            reason = exc.strerror or str(exc).rpartition(": ")[2]
            raise CommandError(f"gRPC address {str(grpc_addr)!r}: cannot listen: {reason}"
                               ) from None
        try:
            self.http, self.http_port = rest.make_server(store, http_addr.host,
                                                         http_addr.port, self.requests)
        except OSError as exc:
            self.grpc.stop(None)
            self._executor.shutdown()
            raise CommandError(f"REST address {str(http_addr)!r}: cannot listen: "
                               f"{exc.strerror or exc}") from None
        self.grpc_host, self.http_host = grpc_addr.host, http_addr.host
        self._http_thread: threading.Thread | None = None

    def start(self) -> None:
        self.grpc.start()
        self._http_thread = self._rest.serve_in_thread(self.http)

    def stop(self, grace: float = GRACE) -> None:
        """Refuse new requests, give those in flight ``grace`` seconds, then return."""
        done = self.grpc.stop(grace)
        self.http.stop()
        done.wait()
        self._executor.shutdown(wait=True)


def _check_bindable(addr: HostPort) -> None:
    """Raise OSError if nothing could listen on ``addr`` (in use, not a local address)."""
    if addr.port == 0:
        return
    for family, kind, proto, _, sockaddr in socket.getaddrinfo(
            addr.host, addr.port, type=socket.SOCK_STREAM):
        with socket.socket(family, kind, proto) as sock:
            # As gRPC does: a port in TIME_WAIT after a restart is free to use.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
        return


def _configure_logging(level: str) -> None:
    # btrdb.exceptions calls logging.basicConfig on import; force our own handler.
    logging.basicConfig(stream=sys.stdout, force=True, level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _hostport(text: str | None) -> tuple[str | None, bool]:
    """Settings accept ports 1-65535; port 0 ("any free port", for tests) is let through
    by validating the address with port 1 and restoring 0 afterwards."""
    if text is not None and text.strip().endswith(":0"):
        return text.strip()[:-2] + ":1", True
    return text, False


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    if not MIN_SUMMARY <= args.summary <= MAX_SUMMARY:
        raise CommandError(f"--summary must be a number of seconds from {MIN_SUMMARY:g} to "
                           f"{MAX_SUMMARY:g}, not {args.summary:g}", ExitStatus.USAGE)
    args.grpc, grpc_any = _hostport(args.grpc)
    args.http, http_any = _hostport(args.http)
    settings = load_settings(args)
    _configure_logging(args.log_level)
    for warning in settings.warnings:
        log.warning("%s", warning)
    grpc_addr, http_addr = settings.store.grpc, settings.store.http
    if grpc_any:
        grpc_addr = HostPort(grpc_addr.host, 0)
    if http_any:
        http_addr = HostPort(http_addr.host, 0)

    malloc.keep_large_buffers()  # before the first insert's buffers (qss/malloc.py)
    store, lock = open_data_dir(settings.paths.data, durable=not args.no_fsync)
    try:
        server = BtrdbServer(store, grpc_addr, http_addr)
        stop = threading.Event()
        received: list[int] = []

        def on_signal(signum, _frame):
            received.append(signum)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        # kill -USR1 <pid> writes every thread's stack to the log (for support).
        faulthandler.register(signal.SIGUSR1, file=sys.stdout, all_threads=True)
        # Every module is loaded and the store open: leave their objects out of the
        # cyclic garbage collector's full passes, which walked them all (4-5 % of the
        # server's CPU in a sync2q drain, py-spy).
        gc.freeze()
        server.start()
        log.info("serving gRPC on %s, REST on %s, data %s%s",
                 HostPort(server.grpc_host, server.grpc_port),
                 HostPort(server.http_host, server.http_port), settings.paths.data,
                 " (no fsync)" if args.no_fsync else "")
        while not stop.wait(args.summary):
            server.requests.log_summary()
        log.info("stopping (%s): finishing requests in flight",
                 signal.Signals(received[0]).name)
        server.stop()
        server.requests.log_summary()
    finally:
        store.close()
        os.close(lock)
    log.info("stopped")
    return ExitStatus.OK


def entry() -> None:
    """Console entry point ``qss-btrdb``."""
    sys.exit(run(main, prog="qss-btrdb"))


if __name__ == "__main__":
    entry()
