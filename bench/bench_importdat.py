"""How fast upmu-adm's importdat queues files into the embedded (SQLite) queue.

    .venv/bin/python bench/bench_importdat.py [--files N] [--dir DIR]

Writes N (default 1,000) one-minute extended-mode files of one uPMU with the realistic
generator (551,520 bytes each, as a device lays them out), then runs the real command,
``importdat DIR --recursive``, through the shell's registry into a new queue: every file
is read, checked with qss.dat.parse and stored durably. Prints files/s and MB/s for that
first import, and for running the same import again (every file already queued: read
and compared, not parsed). The issue's figure is the first line. Files and queue go in a
temporary directory under DIR (default: the system's), deleted afterwards; the queue's
fsyncs make the storage under DIR part of what is measured.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import tempfile
import time
from pathlib import Path

from qss.generator import write_tree
from upmu_adm import REGISTRY, Services, ShellState

SERIAL = "P3001234"
START = dt.datetime(2015, 12, 18, 8, 0, tzinfo=dt.timezone.utc)
UPMUCONFIG = f"""\
[10.0.0.5]
%serial_number = {SERIAL}
%alias = bench
%extended = true
"""


def run_import(state: ShellState, directory: Path) -> tuple[float, str]:
    started = time.perf_counter()
    (reply,) = list(REGISTRY.execute(state, f"importdat {directory} --recursive"))
    seconds = time.perf_counter() - started
    if not reply.ok:
        raise SystemExit(f"importdat failed:\n{reply.text}")
    return seconds, reply.text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1000, help="files to import (default 1000)")
    ap.add_argument("--dir", default=None, help="where to put the files and the queue "
                                                "(default: the system's temporary directory)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_importdat_", dir=args.dir))
    try:
        t0 = time.perf_counter()
        paths = write_tree(work / "src", SERIAL, START, args.files, extended=True)
        nbytes = sum(p.stat().st_size for p in paths)
        print(f"generated {len(paths):,} extended files, {nbytes / 1e6:,.1f} MB, in "
              f"{time.perf_counter() - t0:.1f} s (not timed below)")
        cfg = work / "upmuconfig.ini"
        cfg.write_text(UPMUCONFIG)
        state = ShellState.load(str(cfg), str(work / "backupconfig.ini"),
                                Services(queue_url=f"sqlite:///{work}/queue.db"))
        with state.services:
            first, text = run_import(state, work / "src")
            queued = text.splitlines()[1].split()
            again, _ = run_import(state, work / "src")
        # The queue file, its WAL and its data segments (queue.db.data/).
        db = sum(p.stat().st_size for p in work.glob("queue.db*") if p.is_file())
        db += sum(p.stat().st_size for p in work.glob("queue.db.data/*"))
        print(f"CPUs: {os.cpu_count()}; files and queue in {work.parent}")
        print(f"importdat, new files:     {len(paths) / first:7.1f} files/s  "
              f"{nbytes / first / 1e6:6.1f} MB/s  ({first:.1f} s; {' '.join(queued)})")
        print(f"importdat, already there: {len(paths) / again:7.1f} files/s  "
              f"{nbytes / again / 1e6:6.1f} MB/s  ({again:.1f} s)")
        print(f"queue size: {db / 1e6:,.1f} MB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
