"""``qss-sync2q``: moves queued ``.dat`` files into BTrDB (supervisor program ``sync2q``).

Runs in the foreground and logs to standard output (supervisor keeps the log); SIGTERM
or SIGINT finishes the batch being inserted, marks its files synced, and exits 0 (a
second signal exits at once; nothing is lost either way, the files not marked are
synced again).
"""
from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import threading
from collections.abc import Sequence

from qss import lockfile, malloc
from qss.cli import (CommandError, ExitStatus, add_traceback_argument, install_stop_signals,
                     load_settings, run)
from qss.queue import QueueError, open_queue
from qss.settings import add_settings_arguments
from qss.upmuconfig import UpmuConfigError, UpmuList

from . import clientimport
from .config import ConfigWatcher
from qss.btrdbclient import Btrdb
from .quarantine import FILENAME, Quarantine, QuarantineError
from .worker import Options, Worker, WorkerFailed

log = logging.getLogger("sync2q")

LOCK_FILE = "sync2q.lock"

_DESCRIPTION = """\
Move the files the receiver queued into BTrDB: for every uPMU in upmuconfig.ini, make
sure its streams exist with the right metadata, then parse its unsynced files in name
order, insert every stream (merge policy REPLACE, so nothing is ever stored twice), and
mark each file synced once all of its points are in. Changes to upmuconfig.ini are
picked up while running. Files with no usable record are quarantined: they stay in the
queue unsynced and are listed by --quarantined.
"""
_EPILOG = """\
examples:
  qss-sync2q                          # the service: settings from /etc/qss/qss.ini
  qss-sync2q --once                   # drain the queue (e.g. after importdat), then exit
  qss-sync2q --quarantined            # files set aside, with the reason
  qss-sync2q --requeue P3001276_2015-12-18-08-14-57.dat   # try a file again
  qss-sync2q --requeue P3001276       # ... or all of a uPMU's, or: --requeue all

exit status:
  0  stopped by SIGTERM or SIGINT, or (--once) the queue is drained
  1  the queue or the quarantine registry cannot be used, another sync2q works on the
     same queue, one of its threads failed (a bug; the log has the traceback), or
     (--once) files of a uPMU whose streams BTrDB refuses were left in the queue (the
     log says why)
  2  invalid command line or settings
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of qss-sync2q (also used by the help-text tests)."""
    p = argparse.ArgumentParser(prog="qss-sync2q", description=_DESCRIPTION, epilog=_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_settings_arguments(p, "queue", "btrdb", "upmuconfig", "srv")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true",
                      help="sync everything queued, then exit (for imports and tests); "
                           "waits for BTrDB if it is down")
    mode.add_argument("--quarantined", action="store_true",
                      help="list quarantined files (serial, name, size, since, reason) and "
                           "exit")
    mode.add_argument("--requeue", metavar="KEY",
                      help="release quarantined files for another try and exit: KEY is a "
                           "file name (full device path or just SERIAL_TIME.dat), a serial "
                           "number (all its files), or 'all'")
    p.add_argument("--rate-interval", type=float, default=60.0, metavar="SECONDS",
                   help="seconds between rate lines in the log (default 60)")
    p.add_argument("--insert-threads", type=int, default=2, metavar="N",
                   help="streams inserted at a time (default 2, for the 2-core appliance)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="info (the default) logs one line per file synced")
    add_traceback_argument(p)
    return p


def _configure_logging(level: str) -> None:
    # btrdb.exceptions calls logging.basicConfig when imported (a no-op once ours is
    # in place, and ours forces itself over it), and numexpr (through pandas) logs a
    # note at import: keep that one quiet.
    logging.getLogger("numexpr.utils").setLevel(logging.WARNING)
    logging.basicConfig(stream=sys.stdout, force=True, level=level.upper(),
                        format="%(asctime)s %(levelname)s %(message)s")


def _import_client() -> threading.Thread:
    """Import the official client (without what sync2q never uses of it: see
    :mod:`sync2q.clientimport`) on a thread, so that the reader reads and parses the
    first files meanwhile; the writer waits for the import when it first connects."""
    logging.getLogger("numexpr.utils").setLevel(logging.WARNING)

    def run() -> None:
        try:
            clientimport.import_client()
        except Exception:  # noqa: BLE001 - the error shows where the client is used
            pass
        # Every module is loaded: leave their objects out of the cyclic garbage
        # collector's full passes, which walked them all (4 % of sync2q's CPU in a
        # drain, perf).
        gc.freeze()
    thread = threading.Thread(target=run, name="sync2q-import", daemon=True)
    thread.start()
    return thread


def _lock(directory: str) -> int:
    """Hold ``sync2q.lock`` in ``directory`` for as long as this process runs: two workers
    on one queue would insert every file twice (harmless with REPLACE, but twice the work).

    Raises:
        CommandError: another sync2q holds it, or the file cannot be opened.
    """
    path = os.path.join(directory, LOCK_FILE)
    try:
        return lockfile.hold(path)
    except lockfile.LockError as exc:
        if exc.step == "open":
            raise CommandError(f"cannot open {path}: {exc.strerror}") from None
        raise CommandError(f"another sync2q (pid {exc.holder}) is working on this "
                           f"queue; stop it first (sudo supervisorctl stop sync2q)") from None


def _quarantine(queue, settings) -> Quarantine:
    directory = queue.storage_dir or settings.paths.srv
    try:
        return Quarantine.beside(directory)
    except QuarantineError as exc:
        raise CommandError(f"{exc} (the quarantine registry {FILENAME} lives in the "
                           f"queue's directory, or [paths] srv for MongoDB)") from None


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    if not args.rate_interval > 0:
        raise CommandError(f"--rate-interval must be a positive number of seconds, not "
                           f"{args.rate_interval!r}", ExitStatus.USAGE)
    if not 1 <= args.insert_threads <= 16:
        raise CommandError(f"--insert-threads must be 1 to 16, not {args.insert_threads}",
                           ExitStatus.USAGE)
    settings = load_settings(args)
    for warning in settings.warnings:
        print(f"qss-sync2q: warning: {warning}", file=sys.stderr)
    malloc.keep_large_buffers()  # Arrow payloads of megabytes per call (qss/malloc.py)
    try:
        queue = open_queue(settings.queue.url)
    except QueueError as exc:
        raise CommandError(str(exc)) from None
    quarantine = importing = None
    try:
        quarantine = _quarantine(queue, settings)
        if args.quarantined or args.requeue:
            return _manage(quarantine, queue, args)
        _lock(os.path.dirname(quarantine.path))
        if args.once:
            # The daemon keeps waiting for a broken list to be fixed; a one-off drain
            # must not report success having synced nothing.
            try:
                UpmuList.load(settings.paths.upmuconfig)
            except UpmuConfigError as exc:
                raise CommandError(f"{' '.join(str(exc).split())}; nothing was synced") from None
        importing = _import_client()
        _configure_logging(args.log_level)
        btrdb = Btrdb([str(e) for e in settings.btrdb.endpoints],
                      apikey=os.environ.get("BTRDB_API_KEY") or None)
        worker = Worker(queue, ConfigWatcher(settings.paths.upmuconfig), btrdb, quarantine,
                        Options(once=args.once, rate_interval=args.rate_interval,
                                insert_threads=args.insert_threads))
        install_stop_signals(worker.stop, log, "finishing the batch being inserted, then exiting",
                             "exiting now (files not marked synced are synced again next time)")
        try:
            return worker.run()
        except WorkerFailed as exc:
            raise CommandError(str(exc)) from None
        finally:
            btrdb.close()
    finally:
        if importing is not None:
            importing.join()  # never leave an import running into interpreter exit
        if quarantine is not None:
            quarantine.close()
        queue.close()


def _manage(quarantine: Quarantine, queue, args) -> int:
    if args.quarantined:
        entries = quarantine.entries()
        for e in entries:
            gone = "" if queue.get(e.serial, e.name) else " (no longer queued)"
            print(f"{e.serial}\t{e.name}\t{e.size}\t{e.since}\t{e.reason}{gone}")
        print(f"{len(entries)} quarantined files", file=sys.stderr)
        return ExitStatus.OK
    released = quarantine.release(args.requeue)
    if not released:
        raise CommandError(f"no quarantined file matches {args.requeue!r} (see "
                           f"qss-sync2q --quarantined)")
    for e in released:
        print(f"released {e.serial} {e.name}")
    print(f"{len(released)} files released; a running sync2q tries them within seconds, "
          f"or run qss-sync2q --once", file=sys.stderr)
    return ExitStatus.OK


def entry() -> None:
    """Console-script entry point (``qss-sync2q``)."""
    sys.exit(run(main, prog="qss-sync2q"))
