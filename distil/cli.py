"""``qss-distil``: derived streams kept current (supervisor program ``distil``).

``qss-distil`` (or ``qss-distil serve``) is the service: it runs in the foreground,
logs to standard output, and on SIGTERM or SIGINT finishes the chunk it is writing and
exits 0 (killed, it redoes that chunk when started again). ``list``, ``run`` and
``reset`` are for operators and work beside a running service.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from qss import lockfile, malloc
from qss.btrdbclient import Btrdb, describe_error
from qss.cli import (CommandError, ExitStatus, add_traceback_argument, install_stop_signals,
                     iso_time, load_settings, run)
from qss.settings import add_settings_arguments
from qss.upmuconfig import UpmuConfigError, UpmuList

from .engine import EVERYTHING, Engine, Options, describe_range
from .ranges import MAXIMUM_TIME, MINIMUM_TIME
from .service import Catalog, instances_for, state_path
from .state import StateError, describe, open_state
from .userdir import load_folder

log = logging.getLogger("distil")

LOCK_FILE = "distil.lock"
SECOND = 1_000_000_000

_DESCRIPTION = """\
Keep derived streams current: for every uPMU in upmuconfig.ini, the built-in
distillates of [distil] builtins (frequency, frequency-1s, power, state-changes), the
angle differences of [distil] angle_differences and your own distillates from the
[distil] distillates folder recompute their outputs wherever their inputs changed,
late or re-imported data included.
"""
_EPILOG = """\
commands:
  serve                   the service (the default): keep every instance current
  list                    instances, their inputs and outputs, how far behind each is
  run NAME --from T --to T    recompute a range of one instance now
  reset NAME|all          recompute everything of an instance (asks for confirmation)

examples:
  qss-distil list
  qss-distil run frequency/P3001276 --from 2015-12-18T08:00Z --to 2015-12-18T09:00Z
  qss-distil reset power/P3001276 --yes

exit status:
  0  done (serve: stopped by SIGTERM or SIGINT)
  1  BTrDB or the state database cannot be used, no such instance, another qss-distil
     serves the same state, or (run) the instance failed
  2  invalid command line or settings
"""


#: Freed memory qss-distil keeps for reuse (glibc's trim threshold; qss/malloc.py).
DISTIL_TRIM_THRESHOLD = 32 << 20
#: malloc arenas: the engine's threads (computing ahead, writers, readers) would each
#: get one, keeping its own freed memory: a power catch-up's client memory rose by
#: ~190 MB with the default, ~112 MB with 2 (docs/distil-design.md).
DISTIL_ARENAS = 2


def keep_memory() -> bool:
    """qss-distil's allocator settings (qss/malloc.py), for the service and the
    benchmark: megabyte Arrow payloads reused, not returned and faulted in again."""
    return malloc.keep_large_buffers(trim_threshold=DISTIL_TRIM_THRESHOLD,
                                     arenas=DISTIL_ARENAS)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qss-distil", description=_DESCRIPTION, epilog=_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_settings_arguments(p, "queue", "btrdb", "upmuconfig", "srv", "builtins",
                           "angle_differences", "poll_interval", "state", "distillates")
    p.add_argument("command", nargs="?", default="serve",
                   choices=["serve", "list", "run", "reset"], help="what to do (default serve)")
    p.add_argument("name", nargs="?", help="an instance name (run, reset), e.g. "
                                           "frequency/P3001276; reset takes 'all' too")
    p.add_argument("--from", dest="start", type=iso_time, metavar="TIME",
                   help="run: the start of the range (ISO 8601, UTC unless it says)")
    p.add_argument("--to", dest="end", type=iso_time, metavar="TIME",
                   help="run: the end of the range (exclusive)")
    p.add_argument("--yes", action="store_true", help="reset: do not ask for confirmation")
    p.add_argument("--chunk", type=float, default=Options.chunk_ns / SECOND,
                   metavar="SECONDS", help="at most this much output time per chunk "
                   f"(default {Options.chunk_ns // SECOND})")
    p.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error"])
    add_traceback_argument(p)
    return p


def _configure_logging(level: str) -> None:
    logging.getLogger("numexpr.utils").setLevel(logging.WARNING)
    importlib.import_module("btrdb")   # it calls logging.basicConfig when imported
    logging.basicConfig(stream=sys.stdout, force=True, level=level.upper(),
                        format="%(asctime)s %(levelname)s %(message)s")


def _ns(when: dt.datetime) -> int:
    delta = when - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return (delta.days * 86400 + delta.seconds) * SECOND + delta.microseconds * 1000


def _instances(settings):
    try:
        upmus = list(UpmuList.load(settings.paths.upmuconfig).upmus)
    except UpmuConfigError as exc:
        raise CommandError(" ".join(str(exc).split())) from None
    modules, problems = (load_folder(settings.distil.distillates)
                         if settings.distil.distillates else ([], []))
    try:
        instances, more = instances_for(settings, upmus, modules)
    except ValueError as exc:
        raise CommandError(f"[distil] builtins: {exc}", ExitStatus.USAGE) from None
    for line in problems + more:
        print(f"qss-distil: warning: {line}", file=sys.stderr)
    return {i.name: i for i in instances}


def _find(instances, name):
    if not name:
        raise CommandError("name an instance (see qss-distil list)", ExitStatus.USAGE)
    if name not in instances:
        raise CommandError(f"no instance {name!r} (see qss-distil list)")
    return instances[name]


def _human(ns: int) -> str:
    s = ns / SECOND
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s / size:.1f} {unit}"
    return f"{s:.1f} s"


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    if not args.chunk > 0:
        raise CommandError(f"--chunk must be a positive number of seconds, not {args.chunk!r}",
                           ExitStatus.USAGE)
    settings = load_settings(args)
    for warning in settings.warnings:
        print(f"qss-distil: warning: {warning}", file=sys.stderr)
    # Arrow payloads of megabytes per call, read and written (qss/malloc.py): a power
    # catch-up's client CPU fell by about a fifth. 32 MB of freed memory kept, not 256:
    # the peak while catching up rose by ~30 MB instead of ~70 (docs/distil-design.md).
    keep_memory()
    path = state_path(settings)
    try:
        state = open_state(path)
    except StateError as exc:
        raise CommandError(str(exc)) from None
    btrdb = Btrdb([str(e) for e in settings.btrdb.endpoints],
                  apikey=os.environ.get("BTRDB_API_KEY") or None)
    engine = Engine(btrdb, state, Options(chunk_ns=int(args.chunk * SECOND)))
    try:
        if args.command == "serve":
            return _serve(engine, settings, path, args)
        instances = _instances(settings)
        if args.command == "list":
            return _list(engine, instances)
        if args.command == "run":
            return _run(engine, instances, path, settings, args)
        return _reset(engine, instances, args)
    finally:
        btrdb.close()
        state.close()


def _lock(path: str, srv: str) -> int:
    # Beside an SQLite state; in [paths] srv for a MongoDB one (one service a machine).
    folder = srv if "://" in path else (os.path.dirname(path) or ".")
    lock = os.path.join(folder, LOCK_FILE)
    try:
        return lockfile.hold(lock)
    except lockfile.LockError as exc:
        if exc.step == "held":
            raise CommandError(f"another qss-distil (pid {exc.holder}) serves {describe(path)}; stop "
                               f"it first (sudo supervisorctl stop distil)") from None
        raise CommandError(f"cannot open {lock}: {exc.strerror}") from None


def _serve(engine: Engine, settings, path: str, args) -> int:
    _lock(path, settings.paths.srv)
    _configure_logging(args.log_level)
    # Before the first line: once it is logged, a SIGTERM is a clean stop.
    install_stop_signals(engine.stop, log, "finishing the chunk being written, then exiting")
    log.info("qss-distil: state in %s, BTrDB %s", describe(path), engine.btrdb.endpoint)
    catalog = Catalog(settings)
    engine.serve(settings.distil.poll_interval, catalog.poll)
    log.info("qss-distil: stopped")
    return ExitStatus.OK


def _list(engine: Engine, instances) -> int:
    for name, inst in sorted(instances.items()):
        inputs = ", ".join(f"{r}={i.path}" for r, i in inst.inputs.items())
        outputs = ", ".join(inst.distillate.outputs)
        try:
            b = engine.backlog(inst)
            behind = (f"{b.points} points behind, {_human(b.lag_ns)} of data, from "
                      f"{describe_range((b.oldest_ns, b.oldest_ns))[1:25]}"
                      if b.oldest_ns is not None else "current")
        except Exception as exc:  # noqa: BLE001 - one line per instance, go on
            behind = f"unknown ({describe_error(exc)})"
        status = engine.state.status(name)
        failing = (f"; FAILING ({status.failures} in a row): {status.error}"
                   if status and status.failures else "")
        print(f"{name}\t{inst.distillate.describe()}\t{inputs}\t-> {inst.collection}/"
              f"{{{outputs}}}\t{behind}{failing}")
    print(f"{len(instances)} instances", file=sys.stderr)
    return ExitStatus.OK


def _run(engine: Engine, instances, path: str, settings, args) -> int:
    inst = _find(instances, args.name)
    if args.start is None or args.end is None:
        raise CommandError("run needs --from and --to", ExitStatus.USAGE)
    r = (max(_ns(args.start), MINIMUM_TIME), min(_ns(args.end), MAXIMUM_TIME - 1))
    if r[0] >= r[1]:
        raise CommandError("--from must be before --to", ExitStatus.USAGE)
    engine.request(inst, r)
    try:
        fd = _lock(path, settings.paths.srv)
    except CommandError:
        print(f"asked the running qss-distil to recompute {inst.name} over "
              f"{describe_range(r)}; it does within seconds")
        return ExitStatus.OK
    try:
        engine.set_instances([inst], activate=False)   # the others stay in the report
        while engine.turn(inst):
            if inst.name in engine._waiting:
                raise CommandError(f"instance {inst.name}: {engine._waiting[inst.name]}")
            status = engine.state.status(inst.name)
            if status and status.failures:
                raise CommandError(f"{status.error}")
    finally:
        os.close(fd)
    print(f"recomputed {inst.name} over {describe_range(r)}")
    return ExitStatus.OK


def _reset(engine: Engine, instances, args) -> int:
    names = sorted(instances) if args.name == "all" else [_find(instances, args.name).name]
    if not args.yes:
        what = "every instance" if args.name == "all" else names[0]
        answer = input(f"recompute all outputs of {what} ({len(names)} instances)? "
                       f"type yes: ") if sys.stdin.isatty() else ""
        if answer.strip() != "yes":
            raise CommandError("not reset (confirm with yes, or give --yes)")
    for name in names:
        engine.request(instances[name], EVERYTHING)
    print(f"reset {len(names)} instances; qss-distil recomputes them (qss-distil list "
          f"shows how far it is)")
    return ExitStatus.OK


def entry() -> None:
    """Console-script entry point (``qss-distil``)."""
    sys.exit(run(main, prog="qss-distil"))
