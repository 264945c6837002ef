"""qss-sim: simulated uPMUs pushing realistic .dat files to a receiver (simulator.devices)."""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import re
import signal
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from qss import generator
from qss.cli import CommandError, ExitStatus, add_traceback_argument, iso_time, positive_int, run

from . import devices as simulator

PROG = "qss-sim"
_SERIAL = re.compile(r"^[A-Za-z0-9]{1,32}$")

_DESCRIPTION = """\
Simulated micro-PMUs pushing realistic .dat files (qss-dat gen's data: a 60 Hz circuit
with wandering frequency, rotating phase angles, a daily load) to a receiver over the
real push protocol, as the device's transfer agent does: one file at a time in name
order, each kept until the server acknowledges it. A refused file (failure reply) is
kept and sent again every --retry seconds; after a lost connection the device
reconnects every --reconnect seconds and resends the unanswered file under a new
send_id (the server stores it once).

Each device makes a file every --interval seconds holding the --file-seconds of data
after the previous file's (both 60 by default, so the data keeps pace with the clock).
With --backlog HOURS a device was offline: it starts with those hours of files waiting
and pushes them first, oldest first, one every --gap seconds, then goes on live.
--fast makes every file at once and pushes them back to back: data then runs ahead of
the clock (sync2q rejects records dated more than a day ahead).

It prints a line when a device's state changes (connected, refused, connection lost),
a progress line every --progress seconds, and a summary at the end: files made,
messages sent, acknowledged, refused, unanswered, and files still waiting on the
devices. SIGTERM or Ctrl+C stops it (a reply in flight is awaited a few seconds).
"""
_EPILOG = """\
examples:
  qss-sim --serial P3001276                         one device, a file a minute, forever
  qss-sim --devices 3 --serial-base P3000001 --backlog 2
                                  three devices back from two hours offline
  qss-sim --devices 10 --fast --files 100 --json    push 1,000 files as fast as accepted
  qss-sim --port 11883 --extended --site pv --minutes 30
  qss-sim --serial P3000001 --serial P3000002 --duration 600 --retry 2

  Devices must be in the server's uPMU list (upmu-adm -c "add 10.0.0.5 P3000001 u1
  true; save"), or every file is refused and kept.

--json:
  one JSON object per line: {"event": "progress", ...} every --progress seconds and
  {"event": "summary", "devices": [...], "totals": {...}, "stopped": ...} at the end;
  counters: made, sent, acknowledged, refused, unanswered, waiting, connects,
  connect_failures, and reply_ms {count, p50, p99, max}: the time from a message
  going out to its reply (a histogram's bucket edges, at most 9 % high). State-change
  lines are not printed.

exit status:
  0  every file of --files/--minutes acknowledged, or stopped by --duration, SIGTERM
     or Ctrl+C (files still waiting are in the summary)
  1  --duration ended a run of --files/--minutes with files not acknowledged
  2  invalid command line
"""


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (the usage is in --help)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(ExitStatus.USAGE, f"{self.prog}: error: {message} (see {self.prog} "
                                    f"--help)\n")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1e9:
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1e9:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {text!r}")
    return value



def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port (1 to 65535), got {text!r}")
    return value


def _serial(text: str) -> str:
    if not _SERIAL.match(text):
        raise argparse.ArgumentTypeError(
            f"invalid serial {text!r}: letters and digits, at most 32 (e.g. P3001276)")
    return text



def build_parser() -> argparse.ArgumentParser:
    """The argument parser of qss-sim (also used by the help-text tests)."""
    p = _Parser(prog=PROG, description=_DESCRIPTION, epilog=_EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    target = p.add_argument_group("where to push")
    target.add_argument("--host", default=simulator.DEFAULT_HOST,
                        help="the receiver's address (default %(default)s)")
    target.add_argument("--port", type=_port, default=simulator.DEFAULT_PORT,
                        help="the receiver's port (default %(default)s)")

    devices = p.add_argument_group("devices")
    devices.add_argument("--devices", type=positive_int, metavar="N",
                         help="how many devices (default 1, or as many as --serial)")
    devices.add_argument("--serial-base", type=_serial, default="P3000001", metavar="SERIAL",
                         help="the first device's serial; the others count up from it "
                              "(default %(default)s)")
    devices.add_argument("--serial", type=_serial, action="append", metavar="SERIAL",
                         help="a device's serial, instead of --serial-base (repeat for "
                              "several)")
    kind = devices.add_mutually_exclusive_group()
    kind.add_argument("--extended", dest="extended", action="store_true", default=True,
                      help="extended records: 19 streams, ~552 KB a minute (default)")
    kind.add_argument("--base", dest="extended", action="store_false",
                      help="base records: 13 streams, ~379 KB a minute")
    devices.add_argument("--site", choices=sorted(generator.SITES), default="feeder",
                         help="what the devices measure (default %(default)s)")
    devices.add_argument("--seed", type=int, default=0, metavar="K",
                         help="random seed of the data (default 0); each serial's data "
                              "differs anyway")

    pace = p.add_argument_group("files and pace")
    pace.add_argument("--interval", type=_positive_float, default=None, metavar="S",
                      help="seconds between a device's live files (default: --file-seconds, "
                           "so data keeps pace with the clock)")
    pace.add_argument("--file-seconds", type=positive_int, default=simulator.FILE_SECONDS,
                      metavar="S", help="seconds of data per file (default %(default)s; "
                                        "older firmware: 120)")
    pace.add_argument("--fast", action="store_true",
                      help="every file at once, pushed back to back (no --gap): as fast as "
                           "the server accepts")
    pace.add_argument("--backlog", type=_non_negative_float, default=0.0, metavar="HOURS",
                      help="hours the devices were offline: their files wait and go first, "
                           "in name order (default 0)")
    pace.add_argument("--start", type=iso_time, metavar="ISO8601",
                      help="time of the first file's first sample (default: now minus "
                           "--backlog), e.g. 2015-12-18T08:14:57Z")
    pace.add_argument("--gap", type=_non_negative_float, default=simulator.GAP_SECONDS,
                      metavar="S", help="pause after each acknowledged file (default "
                                        "%(default)g, as the device; 0 with --fast)")

    stop = p.add_argument_group("when to stop (default: never; SIGTERM or Ctrl+C)")
    count = stop.add_mutually_exclusive_group()
    count.add_argument("--files", type=positive_int, metavar="N",
                       help="each device stops once its first N files (backlog included) "
                            "are acknowledged")
    count.add_argument("--minutes", type=positive_int, metavar="N",
                       help="as --files, for N minutes of data")
    stop.add_argument("--duration", type=_positive_float, metavar="S",
                      help="stop after S seconds whatever is left")

    faults = p.add_argument_group("failures")
    faults.add_argument("--retry", type=_positive_float, default=simulator.RETRY_SECONDS,
                        metavar="S", help="seconds before resending a refused file "
                                          "(default %(default)g)")
    faults.add_argument("--reconnect", type=_positive_float,
                        default=simulator.RECONNECT_SECONDS, metavar="S",
                        help="seconds between connection attempts (default %(default)g)")
    faults.add_argument("--timeout", type=_positive_float, default=simulator.TIMEOUT_SECONDS,
                        metavar="S", help="give up a connection silent this long (default "
                                          "%(default)g)")

    out = p.add_argument_group("output")
    out.add_argument("--progress", type=_positive_float, default=10.0, metavar="S",
                     help="a progress line every S seconds (default %(default)g)")
    out.add_argument("--json", action="store_true",
                     help="progress and summary as JSON lines (see below)")
    add_traceback_argument(out)
    return p


def make_devices(args: argparse.Namespace, now_epoch: float) -> list[simulator.Device]:
    """The devices the parsed arguments describe.

    Raises:
        CommandError: the serials or counts do not fit together (exit status 2).
    """
    if args.serial:
        if args.devices is not None and args.devices != len(args.serial):
            raise CommandError(f"--devices {args.devices} but {len(args.serial)} --serial "
                               f"given; give one or the other", ExitStatus.USAGE)
        serials = list(args.serial)
    else:
        try:
            serials = simulator.serial_range(args.serial_base, args.devices or 1)
        except ValueError as exc:
            raise CommandError(f"--serial-base: {exc}", ExitStatus.USAGE) from None
    if len({s.casefold() for s in serials}) != len(serials):
        raise CommandError(f"a serial is given twice: {serials}", ExitStatus.USAGE)
    count = args.files
    if args.minutes is not None:
        count = -(-args.minutes * 60 // args.file_seconds)
    interval = None if args.fast else (args.interval or float(args.file_seconds))
    first = int(args.start.timestamp()) if args.start else None
    plan = simulator.plan_from_now(now_epoch, backlog_hours=args.backlog,
                                   file_seconds=args.file_seconds, interval=interval,
                                   count=count, first=first)
    gap = 0.0 if args.fast else args.gap
    return [simulator.Device(s, plan, gap=gap, retry=args.retry, reconnect=args.reconnect,
                             sim=generator.UpmuSimulator(s, seed=args.seed, site=args.site,
                                                         extended=args.extended))
            for s in serials]


class Reporter:
    """Progress lines and the summary, as text or JSON lines, on ``out``."""

    def __init__(self, devices: list[simulator.Device], as_json: bool, out: TextIO,
                 started: float) -> None:
        self.devices, self.as_json, self.out, self.started = devices, as_json, out, started

    def _emit(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def event(self, serial: str, line: str) -> None:
        """A device's state change (text mode only)."""
        if not self.as_json:
            self._emit(f"uPMU {serial}: {line}")

    def progress(self, now: float) -> None:
        """One progress line."""
        t = simulator.totals(self.devices)
        elapsed = round(now - self.started, 1)
        if self.as_json:
            self._emit(json.dumps({"event": "progress", "elapsed": elapsed, "totals": t}))
        else:
            self._emit(f"{elapsed:.0f} s: {_counts(t)}")

    def summary(self, now: float, stopped: str) -> None:
        """The final summary: per device and in total."""
        t = simulator.totals(self.devices)
        elapsed = round(now - self.started, 1)
        if self.as_json:
            self._emit(json.dumps({"event": "summary", "elapsed": elapsed, "stopped": stopped,
                                   "devices": [d.stats.as_dict() for d in self.devices],
                                   "totals": t}))
            return
        self._emit(f"{PROG}: stopped ({stopped}) after {elapsed:.1f} s")
        for d in self.devices:
            self._emit(f"  uPMU {d.serial}: {_counts(d.stats.as_dict())}")
        if len(self.devices) > 1:
            self._emit(f"  {len(self.devices)} devices: {_counts(t)}")


def _counts(c: dict) -> str:
    line = (f"{c['made']:,} made, {c['sent']:,} sent, {c['acknowledged']:,} acknowledged, "
            f"{c['refused']:,} refused, {c['unanswered']:,} unanswered, "
            f"{c['waiting']:,} waiting")
    if c["connect_failures"]:
        line += f"; {c['connect_failures']:,} failed connection attempts"
    return line


async def _run(args: argparse.Namespace, devices: list[simulator.Device],
               reporter: Reporter) -> str:
    """Run until done, --duration, or a signal; return why it stopped."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    why = {"reason": "every file acknowledged"}

    def stop_for(reason: str) -> None:
        if not stop.is_set():
            why["reason"] = reason
            stop.set()

    for sig, name in ((signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "Ctrl+C")):
        loop.add_signal_handler(sig, stop_for, name)
    if args.duration:
        loop.call_later(args.duration, stop_for, f"--duration {args.duration:g}")

    async def ticker() -> None:
        while True:
            await asyncio.sleep(args.progress)
            reporter.progress(loop.time())

    ticks = asyncio.ensure_future(ticker())
    try:
        await simulator.simulate(devices, args.host, args.port, stop, timeout=args.timeout,
                                 notify=reporter.event)
    finally:
        ticks.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return why["reason"]


def main(argv: Sequence[str]) -> int:
    """Entry point without exception mapping (see :func:`entry`)."""
    args = build_parser().parse_args(argv)
    devices = make_devices(args, time.time())
    reporter = Reporter(devices, args.json, sys.stdout, time.monotonic())
    if not args.json:
        plan = devices[0].plan
        when = dt.datetime.fromtimestamp(plan.first, dt.timezone.utc)
        pace = ("all at once" if plan.interval is None else f"live every {plan.interval:g} s")
        print(f"{PROG}: {len(devices)} device(s) ({', '.join(d.serial for d in devices[:5])}"
              f"{', ...' if len(devices) > 5 else ''}) pushing to {args.host}:{args.port}: "
              f"{plan.backlog:,} backlog file(s) from {when:%Y-%m-%d %H:%M:%S} UTC, then "
              f"{pace}, {plan.file_seconds} s of data a file"
              f"{'' if plan.count is None else f', {plan.count:,} file(s) each'}", flush=True)
    # asyncio's clock is time.monotonic, so the reporter and the loop agree.
    stopped = asyncio.run(_run(args, devices, reporter))
    reporter.summary(time.monotonic(), stopped)
    counted = args.files is not None or args.minutes is not None
    if counted and stopped.startswith("--duration") and not all(d.finished() for d in devices):
        return ExitStatus.ERROR
    return ExitStatus.OK


def entry() -> None:
    """Console-script entry point ``qss-sim``."""
    sys.exit(run(main, prog=PROG))


if __name__ == "__main__":
    entry()
