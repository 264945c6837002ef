"""Backup and restore throughput of ``qss-get --backup`` / ``--restore`` (issue 8's figure).

    .venv/bin/python bench/bench_backup.py [--gb 2] [--dir DIR]

Builds an appliance under a temporary ``--root`` (in DIR, default the system's temporary
directory): the default ``qss.ini``, a real qss-btrdb data directory (``tsdb.Store``,
19 streams of 120 Hz points) and a real SQLite queue of one-minute extended ``.dat`` files
from :class:`qss.generator.UpmuSimulator`, about half of ``--gb`` each. Then runs the
same library functions as the command, :func:`installer.backup.backup` into
``DIR/dest`` and :func:`installer.backup.restore` (with ``--yes``) from it, and prints
MB/s for each: bytes of the backup over the wall time of the whole call, which includes
the free-space check, the copy (SQLite snapshots for the queue and the store's
database), writing the SHA-256 manifest and reading every file back to verify it
(restore: checking the backup first, copying, and verifying the restored files). As
under ``--root`` there are no services to stop. Finally checks that the restored data
directory and queue hold exactly what was backed up (every row of the SQLite files),
and deletes the temporary directory. ``--gb 0.2`` is a quick run.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import os
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from installer import backup as backup_lib
from installer.environment import Environment
from installer.hooks import DataTools
from qss.generator import UpmuSimulator
from qss.naming import device_path
from qss.queue import open_queue
from qss.settings import render_default_ini
from tsdb import Store

SERIAL = "P3001276"
START_S = 1_700_000_000
RATE_NS = 8_333_333          # 120 Hz
STREAMS = 19
BATCH = 2_000_000            # points per insert


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def make_root(top: Path) -> Path:
    root = top / "root"
    for d in ("etc/qss", "ssd/data", "ssd/srv", "home/manager"):
        (root / d).mkdir(parents=True)
    (root / "etc/qss/qss.ini").write_text(render_default_ini())
    (root / "home/manager/upmuconfig.ini").write_text(
        f"[10.0.0.5]\n%serial_number = {SERIAL}\n%alias = bench\n%extended = true\n")
    shutil.copy(root / "home/manager/upmuconfig.ini", root / "home/manager/backupconfig.ini")
    return root


def fill_queue(root: Path, nbytes: int) -> tuple[int, float]:
    """Simulated one-minute files into the queue until it holds ``nbytes``."""
    sim = UpmuSimulator(SERIAL, seed=1, extended=True)
    started = time.perf_counter()
    n = total = 0
    with open_queue(f"sqlite:///{root}/ssd/srv/queue.db") as q:
        while total < nbytes:
            first = START_S + 60 * n
            data = sim.file_bytes(first)
            name = device_path(SERIAL, dt.datetime.fromtimestamp(first, dt.timezone.utc))
            q.put(SERIAL, name, data)
            total += len(data)
            n += 1
    return n, time.perf_counter() - started


def fill_store(root: Path, nbytes: int) -> tuple[int, float]:
    """19 streams of noisy 120 Hz points (6 to 8 bytes a point once stored) until the
    data directory holds about ``nbytes``."""
    rng = np.random.default_rng(2)
    started = time.perf_counter()
    points = 0
    uuids = [uuid.uuid4() for _ in range(STREAMS)]
    with Store(root / "ssd/data", durable=False) as s:
        for i, u in enumerate(uuids):
            s.create(u, "upmu/bench", {"name": f"S{i:02d}"}, {})
        k = 0
        while k % STREAMS or _du(root / "ssd/data") < nbytes:
            u = uuids[k % STREAMS]
            offset = (k // STREAMS) * BATCH
            t = (np.arange(BATCH, dtype=np.int64) + offset) * RATE_NS + START_S * 10**9
            s.insert(u, t, 230.0 + rng.standard_normal(BATCH))
            points += BATCH
            k += 1
    return points, time.perf_counter() - started


def _sqlite_sum(path: Path) -> str:
    """SHA-256 of every row of every table: the database's contents (a snapshot made with
    SQLite's backup API has the same pages, but not the same header bytes)."""
    h = hashlib.sha256()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                  "ORDER BY name"):
            h.update(name.encode())
            for row in db.execute(f'SELECT * FROM "{name}"'):
                h.update(repr([c if not isinstance(c, bytes) else hashlib.sha256(c).digest()
                               for c in row]).encode())
    finally:
        db.close()
    return h.hexdigest()


def _tree_sums(*dirs: Path) -> dict[str, str]:
    """Per file below ``dirs``: its contents' SHA-256 (SQLite: of its rows)."""
    out = {}
    for d in dirs:
        for p in sorted(d.rglob("*")):
            if p.is_file() and not p.name.endswith((".lock", "-wal", "-shm")):
                with open(p, "rb") as f:
                    sqlite = f.read(16) == b"SQLite format 3\0"
                out[str(p)] = _sqlite_sum(p) if sqlite else hashlib.sha256(
                    p.read_bytes()).hexdigest()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gb", type=float, default=2.0,
                    help="size of the data set in GB (10^9 bytes), half queue, half "
                         "store (default 2; 0.2 for a quick run)")
    ap.add_argument("--dir", default=None,
                    help="where the temporary root and backup go (default: the system's "
                         "temporary directory); it needs about 3 x --gb free")
    args = ap.parse_args(argv)
    top = Path(tempfile.mkdtemp(prefix="bench-backup-", dir=args.dir))
    try:
        root = make_root(top)
        half = int(args.gb * 1e9 / 2)
        files, qs = fill_queue(root, half)
        points, ss = fill_store(root, half)
        data = root / "ssd"
        print(f"data set under {root}: queue {files:,} files "
              f"({_du(data / 'srv') / 1e9:.2f} GB, filled in {qs:.0f} s), store "
              f"{points / 1e6:,.0f} M points ({_du(data / 'data') / 1e9:.2f} GB, filled "
              f"in {ss:.0f} s)", flush=True)
        before = _tree_sums(data / "data", data / "srv")
        dest = top / "dest"
        dest.mkdir()
        out = io.StringIO()
        env = Environment(root=root, stdin=io.StringIO(), stdout=out, stderr=sys.stderr,
                          run=lambda argv: (127, "no system tools in the benchmark"))
        tools = DataTools()          # under --root: no services to stop

        started = time.perf_counter()
        folder = backup_lib.backup(env, tools, str(dest))
        b_s = time.perf_counter() - started
        size = _du(folder)

        started = time.perf_counter()
        backup_lib.restore(env, tools, str(folder), assume_yes=True)
        r_s = time.perf_counter() - started

        after = _tree_sums(data / "data", data / "srv")
        same = after == before
        for line in out.getvalue().splitlines():
            print(f"  | {line}")
        print(f"backup : {size / 1e9:.2f} GB in {b_s:.1f} s = {size / b_s / 1e6:.0f} MB/s "
              f"(copy + manifest + read-back verification)")
        print(f"restore: {size / 1e9:.2f} GB in {r_s:.1f} s = {size / r_s / 1e6:.0f} MB/s "
              f"(manifest check + copy + verification)")
        print(f"restored data directory and queue identical to the originals: "
              f"{'yes' if same else 'NO'}")
        return 0 if same else 1
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
