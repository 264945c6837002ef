"""The whole appliance under load and under faults: the figures for issue 10's closing note.

    .venv/bin/python bench/bench_appliance.py [--devices 100] [--duration 120] [--interval 10]
                                              [--fault-devices 4] [--kills 15] [--seed N]
                                              [--skip-load] [--skip-faults]

Each scenario brings the appliance up as the demo does (``demokit.demo.Demo``: btrdb,
receiver and sync2q under a real supervisord in a folder under /tmp, loopback only),
registers the devices with ``upmu-adm -c "add ...; save"`` and pushes with a real
``qss-sim`` (``tests/appliance_support.py`` has the machinery, shared with the
end-to-end suites). Prints:

1. **load**: ``--devices`` simulated uPMUs, each pushing a one-minute extended file
   (551,520 bytes, 136,800 points) every ``--interval`` seconds for ``--duration``
   seconds. Files/s accepted (acknowledged over the push), points/s synced (every
   point of the run over the push's start to the moment sync2q had synced the last
   file), reply latency p50/p99/max (qss-sim: message out to its reply, histogram
   buckets 9 % wide), refusals and lost connections, the unsynced backlog, and the peak
   resident memory (RSS, psutil every second) of btrdb, receiver, sync2q and qss-sim.
   Then the exactly-once check (queue byte for byte; counts of every stream; times and
   values of P3000001's streams).
2. **faults**: ``--fault-devices`` uPMUs push a 10 s file every 0.1 s each while
   ``--kills`` SIGKILLs hit btrdb, receiver and sync2q in turn at random moments
   (``--seed``), each restarted by supervisord; then the exactly-once check over every
   point of every file. Prints the kills, the files, and the result.

The machine is shared (2 cores): figures vary with what else runs; the load average is
printed with them.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from appliance_support import Appliance, run_faults, run_load  # noqa: E402


def _say(line: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {line}", flush=True)


def load(args: argparse.Namespace) -> bool:
    print(f"== load: {args.devices} devices, a one-minute extended file every "
          f"{args.interval:g} s each, for {args.duration:g} s", flush=True)
    t0 = time.monotonic()
    with Appliance(args.devices) as app:
        _say(f"appliance up and {args.devices} uPMUs registered in "
             f"{time.monotonic() - t0:.1f} s")
        try:
            f, rss = run_load(app, duration=args.duration, interval=args.interval, log=_say)
        except AssertionError as exc:
            print(f"load run FAILED: {exc}")
            return False
    r = f["reply_ms"]
    print(f"files accepted:        {f['files_acknowledged']:,} in {f['duration_s']:g} s = "
          f"{f['files_per_s_accepted']:g} files/s ({f['refused']} refused, "
          f"{f['unanswered']} unanswered, {f['connect_failures']} failed connects, "
          f"{f['waiting_at_end']} waiting on the devices at the end)")
    print(f"points synced:         {f['points_synced']:,} = {f['points_per_s_synced']:,.0f} "
          f"points/s (push start to last file synced; drained "
          f"{f['drained_after_push_s']:g} s after the push ended)")
    print(f"unsynced backlog:      at most {f['unsynced_max_during_push']} files during the "
          f"push, {f['unsynced_at_push_end']} at its end")
    print(f"reply latency:         p50 {r['p50']} ms, p99 {r['p99']} ms, max {r['max']} ms "
          f"({r['count']:,} replies)")
    print("peak RSS:              " + ", ".join(f"{k} {v:g} MB"
                                               for k, v in f["peak_rss_mb"].items()))
    cuts = [0, rss.duration / 3, 2 * rss.duration / 3, float("inf")]
    print("RSS peak by third:     " + "; ".join(
        f"{k} " + "/".join(f"{rss.peak(k, cuts[i], cuts[i + 1]) / 2**20:.0f}"
                           for i in range(3)) + " MB" for k in sorted(rss.samples)))
    print(f"exactly once:          ok ({f['files_checked']:,} files)")
    print(f"load average:          {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
          flush=True)
    if app.leftovers:
        print(f"processes left after shutdown: {app.leftovers}")
        return False
    return True


def faults(args: argparse.Namespace) -> bool:
    print(f"== faults: {args.fault_devices} devices, a 10 s extended file every 0.1 s each, "
          f"{args.kills} SIGKILLs (seed {args.seed})", flush=True)
    with Appliance(args.fault_devices) as app:
        try:
            f = run_faults(app, interval=0.1, kills=args.kills, seed=args.seed,
                           pause=(0.3, 4.0), log=_say)
            result = "ok: every point of every acknowledged file once, nothing else"
        except AssertionError as exc:
            f, result = None, f"FAILED: {exc}"
    if f is None:
        print(f"exactly once:          {result}")
        return False
    print(f"kills:                 {f['kills']} ("
          + ", ".join(f"{k} {v}" for k, v in f["by_program"].items()) + "), each restarted "
          "by supervisord")
    print(f"files:                 {f['files_acknowledged']:,} acknowledged, "
          f"{f['files_checked']:,} queued and checked ({f['points_checked']:,} points); "
          f"{f['resends']} resends after {f['unanswered']} unanswered messages")
    print(f"exactly once:          {result}")
    print(f"load average:          {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
          flush=True)
    return not app.leftovers


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=100, help="load: simulated uPMUs (100)")
    p.add_argument("--duration", type=float, default=120.0, help="load: seconds (120)")
    p.add_argument("--interval", type=float, default=10.0,
                   help="load: seconds between a device's files (10)")
    p.add_argument("--fault-devices", type=int, default=4, help="faults: uPMUs (4)")
    p.add_argument("--kills", type=int, default=15, help="faults: SIGKILLs (15)")
    p.add_argument("--seed", type=int, default=20151219, help="faults: random seed")
    p.add_argument("--skip-load", action="store_true")
    p.add_argument("--skip-faults", action="store_true")
    args = p.parse_args()
    ok = True
    if not args.skip_load:
        ok = load(args) and ok
    if not args.skip_faults:
        ok = faults(args) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
