"""How fast the .dat format goes: parse and write rates, single core.

    .venv/bin/python bench/bench_dat.py [--files N]

Prints, for extended, base and mixed files from the realistic generator: ms per file,
files/s, million points/s and MB/s for `qss.dat.parse`, and the same for
`qss.dat.encode_records` (the writer) and for the generator itself. Goal (issue 2):
parse >= 50 million points/s, a 552 KB extended file in under 3 ms.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from qss import dat, generator

START = 1450426497  # 2015-12-18 08:14:57 UTC


def best_of(fn, repeat: int = 5) -> float:
    """The fastest of ``repeat`` timings of ``fn()``, in seconds (least disturbed run)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def report(label: str, seconds: float, files: int, points: int, nbytes: int) -> None:
    print(f"  {label:<30} {seconds / files * 1e3:7.3f} ms/file  {files / seconds:8.0f} files/s  "
          f"{points / seconds / 1e6:7.1f} Mpoints/s  {nbytes / seconds / 1e6:7.0f} MB/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100, help="files per kind (default 100)")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # single core
    n = args.files
    window = dat.DateWindow.default()
    print(f"qss.dat on {n} one-minute files per kind, single core, best of 5")

    for kind in ("extended", "base", "mixed"):
        sim = generator.UpmuSimulator("P3001276", seed=1, extended=kind != "base")
        t0 = time.perf_counter()
        records = [sim.records(START + 60 * i, 60) for i in range(n)]
        gen_s = time.perf_counter() - t0
        if kind == "mixed":
            for r in records:
                r["status"][1::2] &= ~generator.EXTENDED_STATUS_BIT
        blobs = [dat.encode_records(r) for r in records]
        nbytes = sum(map(len, blobs))
        points = sum(dat.parse(b, window).points for b in blobs)
        print(f"{kind}: {nbytes / n:,.0f} bytes and {points / n:,.0f} points per file")
        report("parse", best_of(lambda: [dat.parse(b, window) for b in blobs]),
               n, points, nbytes)
        report("write (encode_records)", best_of(lambda: [dat.encode_records(r) for r in records]),
               n, points, nbytes)
        if kind != "mixed":
            report("generate (UpmuSimulator)", gen_s, n, points, nbytes)
    # The heart of it, for the record: all-extended fast path on one file.
    blob = dat.encode_records(generator.UpmuSimulator("P1", extended=True).records(START, 60))
    one = best_of(lambda: dat.parse(blob, window), repeat=200)
    print(f"one 552 KB extended file: {one * 1e3:.3f} ms "
          f"({dat.parse(blob, window).points / one / 1e6:.0f} Mpoints/s); goal < 3 ms")
    assert np.isfinite(one)


if __name__ == "__main__":
    main()
