"""``qss-distil`` as the appliance runs it, on a qss.ini: the operator's own distillates
dropped into the folder ``[distil] distillates`` names (the manual's worked example,
against an independent numpy computation), a failing one beside the built-ins (they
finish; the log and the status name it; it is retried with growing delays; fixed, it
recovers), and uPMUs added, renamed and removed in ``upmuconfig.ini`` while it runs,
each picked up within seconds."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from distil.catalog import builtin_instances, upmu_instance
from qss.btrdbclient import Btrdb
from qss.distilstate import read_statuses
from qss.upmuconfig import UpmuList

from distil_support import S, T0, by_sample, create_streams, put, read, records, upmu_list
from waiting import wait_until

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
ROOT = Path(__file__).resolve().parent.parent
MANUAL = ROOT / "docs/manual/17-derived-streams.md"
#: Picked up "within seconds": the service polls every 0.2 s here; this allows a loaded
#: machine (the figures measured are in the failure messages).
WITHIN_S = 20

BROKEN = '''
from distil import Distillate

class Broken(Distillate):
    name = "broken"
    inputs = ("L1MAG",)
    outputs = {"OUT": "V"}

    def process(self, inputs, outputs):
        {body}

PER_UPMU = [Broken]
'''


def manual_example() -> str:
    """The distillate file of the manual's chapter 17, as printed."""
    text = MANUAL.read_text(encoding="utf-8")
    m = re.search(r"<!-- file: /home/manager/distillates/unbalance\.py -->\n"
                  r"(?:<!--[^\n]*-->\n)*```python\n(.*?)```", text, re.S)
    assert m, "the manual's worked example is missing"
    return m.group(1)


class Service:
    """qss-distil serve on a qss.ini of its own, logging to a file."""

    def __init__(self, home: Path, grpc: str, builtins: str = "frequency") -> None:
        self.home = home
        self.folder = home / "distillates"
        self.folder.mkdir(exist_ok=True)
        self.upmuconfig = home / "upmuconfig.ini"
        self.ini = home / "qss.ini"
        self.ini.write_text(
            f"[paths]\nupmuconfig = {self.upmuconfig}\nsrv = {home}\n"
            f"[queue]\nurl = sqlite:///{home}/queue.db\n"
            f"[btrdb]\nendpoints = {grpc}\n"
            f"[distil]\nbuiltins = {builtins}\npoll_interval = 0.2\n"
            f"distillates = {self.folder}\n")
        self.log = home / "distil.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}"
                                          f"{os.environ.get('PYTHONPATH', '')}")
        env.pop("QSS_CONFIG", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "distil", "--config", str(self.ini), "--chunk", "60"],
            stdout=open(self.log, "a"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        wait_until(lambda: "qss-distil: state in" in self.text() or self.proc.poll()
                   is not None, what="qss-distil's start line", detail=self.text)

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def statuses(self) -> dict:
        assert self.proc.poll() is None, self.text()
        return {s.name: s for s in read_statuses(str(self.home / "distil.db")) or []}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            assert self.proc.wait(30) == 0, self.text()
        assert "Traceback" not in self.text(), self.text()


@pytest.fixture(scope="module")
def btrdb(server):
    b = Btrdb([server.grpc])
    yield b
    b.close()


@pytest.fixture
def service(server, tmp_path):
    s = Service(tmp_path, server.grpc)
    yield s
    if s.proc is not None and s.proc.poll() is None:
        s.proc.kill()
        s.proc.wait()


def count(db, uuid) -> int:
    try:
        return len(read(db, uuid)[0])
    except Exception:           # not created yet
        return 0


def test_the_manuals_distillate_dropped_in_the_folder_runs_and_a_failing_one_is_retried(
        btrdb, service):
    ul = upmu_list("P3000061", first=61)
    ul.save(str(service.upmuconfig))
    u = ul.upmus[0]
    create_streams(btrdb, u)
    db = btrdb.get()
    put(db, u, records(u.serial, T0, 30))
    (service.folder / "broken.py").write_text(BROKEN.replace("{body}", "raise ZeroDivisionError"
                                                                 "('on purpose')"))
    service.start()
    freq = builtin_instances(ul.upmus, ["frequency"])[0]

    # Dropped in while it runs: picked up without a restart.
    (service.folder / "unbalance.py").write_text(manual_example())
    dropped = time.monotonic()
    namespace: dict = {"__name__": "unbalance"}
    exec(compile(manual_example(), "unbalance.py", "exec"), namespace)
    mine = upmu_instance(u, namespace["VoltageUnbalance"]())
    assert mine.name == "voltage-unbalance/P3000061"
    assert mine.collection == "upmu/uPMU61/distil/voltage-unbalance"
    wait_until(lambda: (count(db, mine.output_uuid("VUNB")), count(db, freq.output_uuid(
        "FREQ_L1"))), until=lambda n: n == (30 * 120, 29 * 120), timeout=60,
        what="the manual's distillate and frequency computed", detail=service.text)
    took = time.monotonic() - dropped
    assert took < WITHIN_S, f"{took:.1f} s after the file was dropped in"

    # Against plain numpy, sample by sample (no rebaser, no engine).
    mags = [by_sample(*read(db, u.streams[f"L{p}MAG"].uuid)) for p in "123"]
    keys = sorted(k for k in mags[0] if k in mags[1] and k in mags[2])
    v = np.array([[m[k] for k in keys] for m in mags])
    want = 100 * np.abs(v - v.mean(axis=0)).max(axis=0) / v.mean(axis=0)
    t, got = read(db, mine.output_uuid("VUNB"))
    assert [(int(x) // S, round((int(x) % S) / (S / 120))) for x in t] == keys
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    # A distillate of the operator's stores float64 by default (output_precision),
    # not rounded to float32 as the built-ins are.
    assert (got != got.astype(np.float32)).mean() > 0.9
    info = db.stream_from_uuid(mine.output_uuid("VUNB"))
    assert (info.collection, info.name, info.unit) == (
        "upmu/uPMU61/distil/voltage-unbalance", "VUNB", "%")

    # The failing one: named in the log with its range and error, FAILING in the status,
    # retried with growing delays; the built-ins and the manual's finished regardless.
    wait_until(service.statuses, until=lambda s: s.get("broken/P3000061") and
               s["broken/P3000061"].failures >= 4, timeout=60, what="four failed tries",
               detail=service.text)
    st = service.statuses()
    assert "ZeroDivisionError: on purpose" in st["broken/P3000061"].error
    for name in (freq.name, mine.name):
        assert st[name].failures == 0 and st[name].backlog.oldest_ns is None, st[name]
    lines = [x for x in service.text().splitlines() if "instance broken/P3000061" in x
             and " ERROR " in x]
    assert lines[0].split(" ERROR ", 1)[1].startswith(
        "instance broken/P3000061: broken v1 failed over [2015-12-13T10:00:00.000Z, ")
    delays = [float(re.search(r"failure (\d+) in a row; retrying in ([\d.]+) s\)$", x)[2])
              for x in lines]
    assert len(delays) >= 4
    # Capped exponential, jittered into the upper half: 0.5-1 s, 1-2 s, 2-4 s, 4-8 s.
    for k, d in enumerate(delays[:4]):
        assert 2 ** k / 2 <= d <= 2 ** k, delays

    # Fixed and saved: the next try uses the new code and succeeds.
    (service.folder / "broken.py").write_text(
        BROKEN.replace("{body}", 'outputs.add("OUT", inputs["L1MAG"].t, inputs["L1MAG"].v)'))
    wait_until(service.statuses, until=lambda s: s["broken/P3000061"].failures == 0
               and s["broken/P3000061"].backlog.at is not None
               and s["broken/P3000061"].backlog.oldest_ns is None,
               timeout=60, what="the fixed distillate to recover", detail=service.text)
    assert "distillates folder" in service.text()
    service.stop()


def test_upmus_added_renamed_and_removed_are_picked_up_within_seconds(btrdb, service):
    ul = upmu_list("P3000071", first=71)
    ul.save(str(service.upmuconfig))
    a = ul.upmus[0]
    db = btrdb.get()
    create_streams(btrdb, a)
    put(db, a, records(a.serial, T0, 10))
    service.start()
    fa = builtin_instances([a], ["frequency"])[0]
    wait_until(lambda: count(db, fa.output_uuid("FREQ_L1")), until=lambda n: n == 9 * 120,
               timeout=60, what="frequency of the first uPMU", detail=service.text)

    # Added: its streams exist and hold data, then upmuconfig.ini names it.
    with_b = UpmuList.load(str(service.upmuconfig))
    b = with_b.add("10.0.0.72", "P3000072", "uPMU72", extended=True)
    create_streams(btrdb, b)
    put(db, b, records(b.serial, T0, 10))
    with_b.save(str(service.upmuconfig))
    added = time.monotonic()
    fb = builtin_instances([b], ["frequency"])[0]
    wait_until(lambda: count(db, fb.output_uuid("FREQ_L1")), until=lambda n: n == 9 * 120,
               timeout=60, what="frequency of the added uPMU", detail=service.text)
    assert time.monotonic() - added < WITHIN_S

    # Renamed (alias uPMU71 -> feeder71, as upmu-adm's rename writes it): the outputs
    # move to the new collection; nothing is recomputed (same instance, same inputs).
    before = read(db, fa.output_uuid("FREQ_L1"))
    text = service.upmuconfig.read_text()
    service.upmuconfig.write_text(text.replace("uPMU71", "feeder71"))
    renamed = time.monotonic()
    out = db.stream_from_uuid(fa.output_uuid("FREQ_L1"))
    wait_until(lambda: (out.refresh_metadata(), out.collection)[1],
               until=lambda c: c == "upmu/feeder71/distil/frequency", timeout=60,
               what="the outputs to move", detail=service.text)
    assert time.monotonic() - renamed < WITHIN_S
    after = read(db, fa.output_uuid("FREQ_L1"))
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    assert service.text().count("instance frequency/P3000071: new instance; computing "
                                "everything") == 1
    assert "distillate or inputs changed" not in service.text()

    # Removed: dropped from the instances (and the status report); outputs stay.
    gone = UpmuList.load(str(service.upmuconfig))
    gone.remove("P3000072")
    gone.save(str(service.upmuconfig))
    removed = time.monotonic()
    wait_until(service.statuses, until=lambda s: not s[fb.name].active, timeout=60,
               what="the removed uPMU's instance to be dropped", detail=service.text)
    assert time.monotonic() - removed < WITHIN_S
    assert "instance frequency/P3000072: dropped (its outputs and state stay)" in \
        service.text()
    assert service.statuses()[fa.name].active
    assert count(db, fb.output_uuid("FREQ_L1")) == 9 * 120
    service.stop()
