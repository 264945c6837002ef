"""qss-dat: look inside uPMU `.dat` files, export them as CSV, or generate realistic ones."""
from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import numpy as np
from tqdm import tqdm

from qss import dat, generator, naming
from qss.cli import CommandError, ExitStatus, add_traceback_argument, iso_time, positive_int, run
from qss.streams import EXTENDED_STREAMS, UNITS

# Skips caused by damage to the file, as opposed to what devices do (records dated 2000
# before GPS lock, repeated seconds): only these make `info` and `csv` exit non-zero.
_DAMAGE = {"truncated", "interval", "timestamp"}

_DESCRIPTION = """\
Inspect, export and generate uPMU .dat files (one-second records of 120 samples on
13 base or 19 extended streams; see docs/dat-format.md).
"""
_EPILOG = """\
examples:
  qss-dat info /home/manager/upmu_data_import/P3001276_2015-12-18-08-14-57.dat
  qss-dat csv P3001276_2015-12-18-08-14-57.dat -o minute.csv
  qss-dat gen --serial P3001276 --start 2015-12-18T08:00:00Z --minutes 60 --extended /tmp/sim

exit status:
  0  every file read cleanly (records dated before GPS lock or repeated seconds are
     reported but are normal device behaviour)
  1  a file could not be read, holds no usable record, or is damaged (truncated or
     corrupt records were skipped); each problem is named on standard error
  2  invalid command line
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of qss-dat (also used by the help-text tests)."""
    p = argparse.ArgumentParser(
        prog="qss-dat", description=_DESCRIPTION, epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_traceback_argument(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    info = sub.add_parser(
        "info", help="summarise files: records, time range, skipped records, stream statistics",
        description="For each FILE: size, records (base and extended), time range of the "
                    "samples, samples per stream, every skipped record with its reason, and "
                    "min/mean/max of every stream present.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    info.add_argument("files", nargs="+", metavar="FILE", type=Path, help=".dat file(s)")
    info.add_argument("-b", "--brief", action="store_true",
                      help="one line per file (records, time range, points, skipped) and "
                           "a total line")
    _add_window_arguments(info)

    csv = sub.add_parser(
        "csv", help="write one CSV row per sample",
        description="Write one row per sample: time_ns (UTC nanoseconds since the epoch), "
                    "then one column per stream present in the file, in stream order, at "
                    "full float precision; a cell is empty where a base record lacks an "
                    "extended stream. Skipped records are reported on standard error.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    csv.add_argument("file", metavar="FILE", type=Path, help=".dat file")
    csv.add_argument("-o", "--output", metavar="OUT", type=Path,
                     help="write to OUT instead of standard output")
    _add_window_arguments(csv)

    gen = sub.add_parser(
        "gen", help="generate realistic files of a simulated uPMU",
        description="Generate MINUTES of a simulated uPMU's data (a 60 Hz distribution "
                    "circuit: wandering frequency, rotating phase angles, drifting voltages, "
                    "a daily load) as the device writes it: OUTDIR/upmu_data/YYYY/Month_MM/"
                    "Day_DD/Hour_HH/SERIAL_YYYY-MM-DD-HH-MM-SS.dat (directly under OUTDIR "
                    "when OUTDIR is itself named upmu_data). The same seed, serial, site and "
                    "time always give the same bytes.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    gen.add_argument("--serial", required=True,
                     help="device serial number, e.g. P3001276 (letters and digits)")
    gen.add_argument("--start", required=True, type=iso_time, metavar="ISO8601",
                     help="UTC time of the first sample, e.g. 2015-12-18T08:14:57Z "
                          "(a time without a zone is taken as UTC)")
    gen.add_argument("--minutes", required=True, type=positive_int, metavar="N",
                     help="minutes of data to generate")
    gen.add_argument("--extended", action="store_true",
                     help="write extended records (19 streams, ~552 KB a minute) instead "
                          "of base ones (13 streams, ~379 KB a minute)")
    gen.add_argument("--seed", type=int, default=0, metavar="K",
                     help="random seed (default 0)")
    gen.add_argument("--site", choices=sorted(generator.SITES), default="feeder",
                     help="what the uPMU measures: a 12 kV-class feeder (default), a "
                          "substation, a building's low-voltage bus, or a small PV array")
    gen.add_argument("--seconds-per-file", type=positive_int, default=60, metavar="S",
                     help="seconds per file: 60 (default) or 120 as older firmware wrote")
    gen.add_argument("outdir", metavar="OUTDIR", type=Path, help="where to write the files")
    for command in (info, csv, gen):    # also after the command: qss-dat csv F --traceback
        add_traceback_argument(command, default=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str]) -> int:
    """Entry point without exception mapping (see :func:`entry`)."""
    args = build_parser().parse_args(argv)
    return {"info": cmd_info, "csv": cmd_csv, "gen": cmd_gen}[args.command](args)


def entry() -> int:
    """Console-script entry point."""
    return run(main, prog="qss-dat")


# --------------------------------------------------------------------------- commands

def cmd_info(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    window = _window(args)
    status = ExitStatus.OK
    files = points = 0
    for path in args.files:
        parsed = _read(path, window)
        if parsed is None:
            status = ExitStatus.ERROR
            continue
        if args.brief:
            out.write(format_brief(path, parsed))
        else:
            out.write(("\n" if files else "") + format_info(path, parsed))
        files += 1
        points += parsed.points
        if _report_skipped(path, parsed):
            status = ExitStatus.ERROR
    if args.brief and len(args.files) > 1:
        out.write(f"{files} of {len(args.files)} files readable, {points:,} points\n")
    return status


def cmd_csv(args: argparse.Namespace) -> int:
    parsed = _read(args.file, _window(args))
    if parsed is None:
        return ExitStatus.ERROR
    damaged = _report_skipped(args.file, parsed)
    if args.output is None:
        write_csv(parsed, sys.stdout)
    else:
        with open(args.output, "w", encoding="ascii", newline="") as fh:
            write_csv(parsed, fh)
    return ExitStatus.ERROR if damaged else ExitStatus.OK


def cmd_gen(args: argparse.Namespace) -> int:
    if not args.serial.isalnum() or not args.serial.isascii():
        raise CommandError(f"invalid serial {args.serial!r}: use letters and digits only, "
                           f"e.g. P3001276", ExitStatus.USAGE)
    if not naming.looks_like_psl_serial(args.serial):
        print(f"qss-dat: warning: serial {args.serial!r} does not look like a PSL serial "
              f"(P and seven digits)", file=sys.stderr)
    count = -(-args.minutes * 60 // args.seconds_per_file)
    with tqdm(total=count, unit="file", desc="generating", disable=None, leave=False) as bar:
        paths = generator.write_tree(
            args.outdir, args.serial, args.start, args.minutes, extended=args.extended,
            seed=args.seed, site=args.site, seconds_per_file=args.seconds_per_file,
            progress=bar.update)
    total = sum(p.stat().st_size for p in paths)
    root = paths[0].parents[4] if paths else args.outdir
    kind = "extended" if args.extended else "base"
    print(f"wrote {len(paths)} {kind} files ({total:,} bytes) of uPMU {args.serial} "
          f"under {root}")
    return ExitStatus.OK


# --------------------------------------------------------------------------- library

def format_info(path: Path, parsed: dat.DatFile) -> str:
    """The `info` report of one parsed file."""
    lines = [str(path)]
    add = lines.append
    add(f"  size      {parsed.size:,} bytes")
    base = parsed.record_count - parsed.extended_records
    add(f"  records   {parsed.record_count} ({parsed.extended_records} extended, {base} base)")
    if len(parsed.times):
        first, last = int(parsed.times.min()), int(parsed.times.max())
        add(f"  time      {_ns(first)} .. {_ns(last)} UTC")
    add(f"  samples   {len(parsed.times):,} per base stream ({parsed.points:,} points)")
    if parsed.skipped:
        add(f"  skipped   {len(parsed.skipped)}")
        for s in parsed.skipped:
            add(f"    {s}")
    else:
        add("  skipped   none")
    if len(parsed.times):
        add(f"  {'stream':<12} {'unit':<7} {'min':>16} {'mean':>16} {'max':>16}")
        with np.errstate(all="ignore"):
            for name, _, v in parsed.iter_streams():
                add(f"  {name:<12} {UNITS[name]:<7} {np.nanmin(v):>16.4f} "
                    f"{np.nanmean(v):>16.4f} {np.nanmax(v):>16.4f}")
    return "\n".join(lines) + "\n"


def format_brief(path: Path, parsed: dat.DatFile) -> str:
    """The one-line `info --brief` report of one parsed file."""
    span = (f"{_ns(int(parsed.times.min()))[:19]} .. {_ns(int(parsed.times.max()))[11:22]}"
            if len(parsed.times) else "no samples")
    skipped = dat.summarize_skipped(parsed.skipped) if parsed.skipped else "ok"
    return (f"{path.name}  {parsed.record_count:>3} records ({parsed.extended_records} ext)  "
            f"{span}  {parsed.points:>9,} points  {skipped}\n")


def write_csv(parsed: dat.DatFile, out: TextIO) -> None:
    """Write the samples of a parsed file as CSV (see ``qss-dat csv --help``)."""
    names = parsed.streams
    out.write(",".join(("time_ns", *names)) + "\n")
    n_base = len(names) if not parsed.extended_records else EXTENDED_STREAMS.index("FUND_W")
    cols = [parsed.times.tolist()] + [parsed.values[r].tolist() for r in range(len(names))]
    ext = parsed.extended.tolist()
    fmt = float.__repr__  # shortest text that reads back as the same float64
    for i, row in enumerate(zip(*cols)):
        cells = [str(row[0])] + [fmt(v) for v in row[1:1 + n_base]]
        if n_base < len(names):
            cells += [fmt(v) for v in row[1 + n_base:]] if ext[i] else [""] * (len(names) - n_base)
        out.write(",".join(cells) + "\n")


# --------------------------------------------------------------------------- helpers

def _read(path: Path, window: dat.DateWindow) -> dat.DatFile | None:
    """Parse a file; on failure print one line naming it and the problem, return None."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        print(f"qss-dat: error: {path}: {exc.strerror or exc}", file=sys.stderr)
        return None
    parsed = dat.parse(data, window)
    if parsed.error:
        print(f"qss-dat: error: {path}: {parsed.error}", file=sys.stderr)
        return None
    return parsed


def _report_skipped(path: Path, parsed: dat.DatFile) -> bool:
    """Warn about skipped records; True when some were skipped because of damage."""
    if not parsed.skipped:
        return False
    damaged = any(s.kind in _DAMAGE for s in parsed.skipped)
    level = "error" if damaged else "warning"
    print(f"qss-dat: {level}: {path}: {dat.summarize_skipped(parsed.skipped)}", file=sys.stderr)
    return damaged


def _add_window_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--earliest", type=iso_time, metavar="ISO8601",
                   help="skip records dated before this UTC time (default 2010-01-01)")
    p.add_argument("--latest", type=iso_time, metavar="ISO8601",
                   help="skip records dated after this UTC time (default: a day from now)")


def _window(args: argparse.Namespace) -> dat.DateWindow:
    default = dat.DateWindow.default()
    start = default.start_ns if args.earliest is None else _to_ns(args.earliest)
    end = default.end_ns if args.latest is None else _to_ns(args.latest) + 1
    return dat.DateWindow(start, end)




def _to_ns(when: dt.datetime) -> int:
    return int(when.timestamp()) * dat.NS_PER_S + when.microsecond * 1000


def _ns(ns: int) -> str:
    secs, frac = divmod(ns, dat.NS_PER_S)
    return f"{dt.datetime.fromtimestamp(secs, dt.timezone.utc):%Y-%m-%d %H:%M:%S}.{frac:09d}"
