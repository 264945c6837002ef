"""The chunk codec alone: encode and decode ns per point and bytes per point on real chunks.

    .venv/bin/python bench/tsdb_codec.py [--minutes 20] [--repeat 7] [--tree DIR]

Data: ``--minutes`` of one simulated extended uPMU (:mod:`qss.generator` through the real
``.dat`` encoder and parser: sync2q's float32-exact values), cut into chunks of
``tsdb.chunks.CHUNK_POINTS`` points with one version each, as an insert writes them; and
distil's ``power``/``frequency`` outputs computed from its phasors (P, Q, S, DPF of phase
1 and FREQ), once rounded to float32 (what distil stores) and once as float64. Also the
level-30 statistics blocks of the sync2q streams (``tsdb.levels.encode_block``).

``--tree`` imports ``tsdb`` from another checkout (to compare builds on the same data in
the same sitting). Each figure is the best of ``--repeat`` passes over all chunks of a set.
"""
from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=20.0,
                    help="minutes of one uPMU's data to encode (default 20)")
    ap.add_argument("--repeat", type=int, default=7,
                    help="passes over every chunk; the best is reported (default 7)")
    ap.add_argument("--tree", default=os.path.dirname(HERE),
                    help="checkout whose tsdb is measured (default: this one)")
    return ap.parse_args(argv)


# Parsed before the imports below, which --tree redirects; imported (tests check that every
# benchmark imports), the defaults.
ARGS = _args() if __name__ == "__main__" else _args([])
sys.path.insert(0, os.path.abspath(ARGS.tree))
sys.path.insert(1, HERE)

import numpy as np  # noqa: E402

from _data import upmu_streams  # noqa: E402
from bench_dat import best_of  # noqa: E402
from qss.streams import EXTENDED_STREAMS  # noqa: E402
from tsdb import chunks, kernels, levels  # noqa: E402

START = 1_500_000_000


def datasets(minutes: float) -> dict[str, list[np.ndarray]]:
    """Value columns by set name."""
    t, vals = upmu_streams(START, int(minutes * 60))
    col = dict(zip(EXTENDED_STREAMS, vals))
    s = col["L1MAG"] * col["C1MAG"]
    phi = np.radians(col["L1ANG"] - col["C1ANG"])
    a = col["L1ANG"]
    freq = np.full(len(a), 60.0)
    freq[120:] = 60 + ((a[120:] - a[:-120] + 180) % 360 - 180) / 360
    outs = [s * np.cos(phi), s * np.sin(phi), s, np.cos(phi), freq]
    return t, {"sync2q f32 (19 streams)": list(vals),
               "distil f32 (P Q S DPF FREQ)": [o.astype(np.float32).astype(np.float64)
                                               for o in outs],
               "distil f64 (P Q S DPF FREQ)": outs}


def each(fn, items) -> None:
    """fn over items, keeping no result (as the server: a kept result would add page
    faults for fresh memory to every pass)."""
    for x in items:
        fn(x)


def best(fn, repeat: int) -> float:
    """The fastest of ``repeat`` timings after one warm-up call (compiling, caches)."""
    fn()
    return best_of(fn, repeat)


def main() -> None:
    t, sets = datasets(ARGS.minutes)
    n = chunks.CHUNK_POINTS
    print(f"# tree {os.path.abspath(ARGS.tree)}; {len(t):,} points a stream,"
          f" {n}-point chunks, best of {ARGS.repeat}")
    for name, columns in sets.items():
        pieces = [chunks.Points(t[i:i + n], v[i:i + n], np.full(len(t[i:i + n]), 7, np.int64))
                  for v in columns for i in range(0, len(t), n)]
        points = sum(len(p) for p in pieces)
        blobs = [chunks.encode(p) for p in pieces]
        enc = best(lambda: each(chunks.encode, pieces), ARGS.repeat)
        dec = best(lambda: each(chunks.decode, blobs), ARGS.repeat)
        size = sum(len(b) for b in blobs)
        print(f"{name:28s} encode {enc / points * 1e9:5.2f} ns/pt  decode"
              f" {dec / points * 1e9:5.2f} ns/pt  {size / points:5.3f} B/pt")
    # Level-30 statistics blocks of the sync2q streams (one block of 1024 windows each).
    blocks = []
    for v in sets["sync2q f32 (19 streams)"]:
        s = kernels.keyed_stats(t >> levels.LEVEL0, v)
        w0 = s[0][0] >> levels.BLOCK_BITS
        blocks.append((w0, levels.st.Stats(*s)))
    records = sum(len(s) for _, s in blocks)
    blobs = [levels.encode_block(levels.LEVEL0, b, s) for b, s in blocks]
    enc = best(lambda: each(lambda bs: levels.encode_block(levels.LEVEL0, *bs), blocks),
               ARGS.repeat)
    dec = best(lambda: each(lambda bx: levels.decode_block(*bx),
                            [(b, x) for (b, _), x in zip(blocks, blobs)]), ARGS.repeat)
    print(f"{'statistics level 30':28s} encode {enc / records * 1e9:5.0f} ns/rec decode"
          f" {dec / records * 1e9:5.0f} ns/rec {sum(map(len, blobs)) / records:6.2f} B/rec")


if __name__ == "__main__":
    main()
