"""The plotter's speed: views of 6 streams, 1,600 px wide, over 1 min .. 30 days.

    .venv/bin/python bench/bench_plotter.py [--days 30] [--views 30] [--browser]

Data: one simulated uPMU's day at 120 Hz (qss.generator through the real .dat codec);
L1MAG repeated over ``--days`` days, five more streams (L2MAG, L3MAG, C1MAG, C2MAG,
C3MAG) over the last day, inserted into the embedded BTrDB with the official client.
Each view asks ``/api/data`` for the 6 streams at a random position inside the data (the
last day for spans up to a day), as the page does, over loopback HTTP with gzip.

Prints one line per span: server time per view p50 and p95 (the request's wall time on
loopback: routing, BTrDB through the client, JSON, gzip), the most points one stream got
(goal <= 2 x width), the answer's compressed size (goal <= 150 KB), and what it chose
(pw or raw); then a summary line against the goals (p95 < 50 ms at every span).
``--browser`` adds headless chromium figures: first paint of a 6-stream view from
opening the page, and redraw after a pan with the data in the page and with a round trip.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import requests  # noqa: E402
from _data import upmu_streams  # noqa: E402

from plotter import testing as plotter_testing  # noqa: E402
from qss.btrdbclient import connect  # noqa: E402
from qss.streams import EXTENDED_STREAMS  # noqa: E402
from tsdb import testing  # noqa: E402

START = 1_700_000_000                 # 2023-11-14 22:13:20 UTC, whole seconds
WIDTH = 1600
SPANS = [("1 min", 60), ("1 h", 3600), ("1 day", 86400), ("7 days", 7 * 86400),
         ("30 days", 30 * 86400)]
STREAMS = [("L1MAG", "V"), ("L2MAG", "V"), ("L3MAG", "V"), ("C1MAG", "A"), ("C2MAG", "A"),
           ("C3MAG", "A")]
SCHEMA = pa.schema([pa.field("time", pa.timestamp("ns", tz="UTC"), nullable=False),
                    pa.field("value", pa.float64(), nullable=False)])


def table(t, v):
    return pa.Table.from_arrays([pa.array(t, SCHEMA.field("time").type), pa.array(v)],
                                schema=SCHEMA)


def generated_day(cache: str | None) -> tuple[np.ndarray, np.ndarray]:
    """A day of the 19 streams, from ``cache`` (.npz) when it exists (generating takes
    minutes), else generated (and saved there when given)."""
    if cache and os.path.exists(cache):
        with np.load(cache) as z:
            return z["t"], z["v"]
    t0 = time.perf_counter()
    day_t, day_v = upmu_streams(START, 86400)
    print(f"generated a day of 19 streams at 120 Hz in {time.perf_counter() - t0:.0f} s",
          flush=True)
    if cache:
        np.savez(cache, t=day_t, v=day_v)
    return day_t, day_v


def load(db, days: int, cache: str | None = None) -> tuple[list[str], int, int]:
    """Insert the data; returns the 6 UUIDs and the last day's [start, end) in ns."""
    day_t, day_v = generated_day(cache)
    t0 = time.perf_counter()
    uuids = []
    last = (days - 1) * 86400 * 10**9
    for i, (name, unit) in enumerate(STREAMS):
        s = db.create(uuid.uuid4(), "bench/uPMU1", {"name": name, "unit": unit}, {})
        row = EXTENDED_STREAMS.index(name)
        for d in range(days if i == 0 else 1):
            shift = d * 86400 * 10**9 if i == 0 else last
            s.arrow_insert(table(day_t + shift, day_v[row]))
        s.flush()
        uuids.append(str(s.uuid))
    points = len(day_t) * (days + len(STREAMS) - 1)
    print(f"inserted {points / 1e6:.0f} M points in {time.perf_counter() - t0:.0f} s "
          f"(L1MAG over {days} days, 5 more streams over the last day)", flush=True)
    return uuids, int(day_t[0]) + last, int(day_t[-1]) + last + 1


def percentile(values, p):
    return float(np.percentile(np.array(values), p))


def bench_api(url: str, uuids: list[str], first: int, day: tuple[int, int], days: int,
              views: int, rng: random.Random) -> list[dict]:
    out = []
    session = requests.Session()
    end_all = day[1]
    for label, seconds in SPANS:
        if seconds > days * 86400:
            continue
        span = seconds * 10**9
        lo = day[0] if seconds <= 86400 else first
        times, sizes, most, chose = [], [], 0, set()
        for _ in range(views + 2):
            start = rng.randrange(lo, max(lo + 1, end_all - span))
            params = {"uuid": uuids, "start": start, "end": start + span, "width": WIDTH,
                      "compact": 1}
            t0 = time.perf_counter()
            r = session.get(url + "/api/data", params=params,
                            headers={"Accept-Encoding": "gzip"})
            elapsed = time.perf_counter() - t0
            r.raise_for_status()
            body = r.json()
            times.append(elapsed * 1e3)
            sizes.append(int(r.headers.get("content-length") or len(r.content)))
            for s in body["streams"]:
                most = max(most, len(s["times"]))
                chose.add("raw" if s["kind"] == "raw" else f"pw {s['pw']}")
        times, sizes = times[2:], sizes[2:]             # the first two warm up
        row = {"span": label, "p50": percentile(times, 50), "p95": percentile(times, 95),
               "points": most, "kb": max(sizes) / 1000, "chose": ", ".join(sorted(chose))}
        out.append(row)
        print(f"{label:>8}: server p50 {row['p50']:6.1f} ms, p95 {row['p95']:6.1f} ms; "
              f"most points per stream {most:5d} (goal <= {2 * WIDTH}); answer <= "
              f"{row['kb']:6.1f} KB gzip (goal <= 150); {row['chose']}", flush=True)
    return out


def bench_browser(url: str, uuids: list[str], day: tuple[int, int]) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1900,1000", "--force-device-scale-factor=1"):
        o.add_argument(a)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
    try:
        d.set_script_timeout(60)
        firsts = []
        for _ in range(5):
            d.get("about:blank")     # the same URL with a # part alone would not reload
            d.get(f"{url}/#s={','.join(uuids)}&start={day[0]}&end={day[1]}")
            ms = None
            deadline = time.monotonic() + 30
            while ms is None and time.monotonic() < deadline:
                ms = d.execute_script("return window.plotter && window.plotter.stats.firstPaint")
                time.sleep(0.02)
            firsts.append(ms)
        cached, fetched = [], []
        for i in range(20):
            # a pan to a new place (round trip), then back (data in the page)
            fetched.append(d.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "window.plotter.timeNavigation(arguments[0]).then(done);", 0.25 + i * 0.01))
            cached.append(d.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "window.plotter.timeBack().then(done);"))
        print(f" browser: first paint of 6 streams p50 {percentile(firsts, 50):.0f} ms, max "
              f"{max(firsts):.0f} ms (goal < 1000); redraw with the data in the page p95 "
              f"{percentile(cached, 95):.1f} ms (goal < 100); with a round trip p95 "
              f"{percentile(fetched, 95):.0f} ms (goal < 250)", flush=True)
    finally:
        d.quit()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=30, help="days of L1MAG (default 30)")
    ap.add_argument("--views", type=int, default=30, help="views per span (default 30)")
    ap.add_argument("--browser", action="store_true", help="also the browser figures")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data-cache", metavar="FILE.npz",
                    help="keep the generated day here and reuse it on the next run")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="plotter-bench-"))
    server = testing.start(tmp / "data", "--no-fsync", log_path=tmp / "btrdb.log",
                           timeout=180)
    try:
        db = connect(server.grpc)
        uuids, day0, day1 = load(db, args.days, args.data_cache)
        first = START * 10**9
        db._qss_channel.close()
        p = plotter_testing.start(server.grpc, tmp, log_path=tmp / "plotter.log")
        try:
            rows = bench_api(p.url, uuids, first, (day0, day1), args.days, args.views,
                             random.Random(args.seed))
            if args.browser:
                bench_browser(p.url, uuids, (day0, day1))
        finally:
            p.stop()
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)     # 1.5 GB of BTrDB data at 30 days
    worst = max(rows, key=lambda r: r["p95"])
    ok = all(r["p95"] < 50 for r in rows)
    print(f"summary: 6 streams x {WIDTH} px, {len(rows)} spans, {args.views} views each "
          f"(cpus {os.cpu_count()}): worst p95 {worst['p95']:.1f} ms at {worst['span']} "
          f"(goal < 50: {'met' if ok else 'NOT met'}); most points per stream "
          f"{max(r['points'] for r in rows)} (goal <= {2 * WIDTH}); largest answer "
          f"{max(r['kb'] for r in rows):.0f} KB gzip (goal <= 150)")


if __name__ == "__main__":
    main()
