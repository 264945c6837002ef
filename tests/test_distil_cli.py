"""``qss-distil`` as a process: SIGKILLed at seeded random moments during a backlog, it
ends with outputs equal to a recomputation from scratch and no duplicate timestamps;
``list``, ``run`` and ``reset`` for operators."""
import dataclasses
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from distil import catalog
from distil.engine import Engine, Options
from distil.state import SqliteStore
from qss.btrdbclient import Btrdb

from distil_support import S, T0, create_streams, put, read, records, upmu_list
from waiting import wait_until

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
ROOT = Path(__file__).resolve().parent.parent
BUILTINS = "frequency,power,state-changes"


@pytest.fixture(scope="module")
def appliance(server, tmp_path_factory):
    """A uPMU with 20 minutes of base data in BTrDB, and the flags of qss-distil."""
    home = tmp_path_factory.mktemp("distil")
    ul = upmu_list("P3000009", extended=False)
    ul.save(str(home / "upmuconfig.ini"))
    u = ul.upmus[0]
    btrdb = Btrdb([server.grpc])
    create_streams(btrdb, u)
    for minute in range(0, 20, 5):
        put(btrdb.get(), u, records(u.serial, T0 + 60 * minute, 300, extended=False))
    flags = ["--config", os.devnull, "--btrdb", server.grpc, "--upmuconfig",
             str(home / "upmuconfig.ini"), "--state", str(home / "distil.db"),
             "--builtins", BUILTINS, "--poll-interval", "0.2", "--chunk", "60"]
    yield btrdb, u, ul, flags, home
    btrdb.close()


def distil(*args, **kw):
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    return subprocess.run([sys.executable, "-m", "distil", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120, **kw)


def start(flags, log: Path):
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    return subprocess.Popen([sys.executable, "-m", "distil", "serve", *flags],
                            stdout=open(log, "a"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def caught_up(state_path, names) -> bool:
    st = SqliteStore(state_path)
    try:
        return all(st.load(n).signature and not st.load(n).pending and not st.requests(n)
                   for n in names)
    finally:
        st.close()


def test_sigkill_at_random_moments_then_outputs_equal_a_recomputation(appliance, tmp_path):
    btrdb, u, ul, flags, home = appliance
    insts = catalog.builtin_instances(ul.upmus, BUILTINS.split(","))
    log = tmp_path / "distil.log"
    rng = random.Random(2121)
    for _ in range(4):
        proc = start(flags, log)
        time.sleep(rng.uniform(1.0, 4.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    starts = log.read_text().count("qss-distil: state in")   # killed ones may have none
    proc = start(flags, log)
    try:
        def done() -> bool:
            assert proc.poll() is None, log.read_text()
            return caught_up(str(home / "distil.db"), [i.name for i in insts])
        wait_until(done, timeout=300, interval=0.5, what="qss-distil caught up",
                   detail=log.read_text)
    finally:
        # A SIGTERM is a clean stop once the service has said it started.
        wait_until(lambda: log.read_text().count("qss-distil: state in") > starts
                   or proc.poll() is not None, what="qss-distil's start line")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    assert "Traceback" not in log.read_text()
    scratch = Engine(btrdb, SqliteStore(str(tmp_path / "scratch.db")),
                     Options(chunk_ns=86400 * S))
    copies = [dataclasses.replace(i, name=f"kill/{i.name}", collection=f"kill/{i.collection}")
              for i in insts]
    scratch.set_instances(copies)
    scratch.catch_up(timeout=300)
    db = btrdb.get()
    for inst, copy in zip(insts, copies):
        for role in inst.distillate.outputs:
            t, v = read(db, inst.output_uuid(role))
            t2, v2 = read(db, copy.output_uuid(role))
            assert len(t) and (np.diff(t) > 0).all()
            np.testing.assert_array_equal(t, t2, f"{inst.name} {role}")
            np.testing.assert_array_equal(v, v2, f"{inst.name} {role}")


def test_list_run_and_reset(appliance):
    btrdb, u, ul, flags, home = appliance
    done = distil("list", *flags)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and done.stderr.endswith("3 instances\n")
    freq = next(line for line in lines if line.startswith("frequency/P3000009\t"))
    assert "frequency v1\tL1ANG=upmu/uPMU1/L1ANG\t-> upmu/uPMU1/distil/frequency/{FREQ_L1}" \
        in freq
    assert freq.endswith("\tcurrent") or "points behind" in freq

    # The running service's instances (as serve records them); run must not hide the
    # others from the status report.
    names = {"frequency/P3000009", "power/P3000009", "state-changes/P3000009"}
    st = SqliteStore(str(home / "distil.db"))
    st.activate(names)
    st.close()
    run = distil("run", "frequency/P3000009", "--from", "2015-12-13T10:05:00Z",
                 "--to", "2015-12-13T10:06:00Z", *flags)
    assert run.returncode == 0, run.stderr
    assert run.stdout == ("recomputed frequency/P3000009 over [2015-12-13T10:05:00.000Z, "
                          "2015-12-13T10:06:00.000Z)\n")
    st = SqliteStore(str(home / "distil.db"))
    assert {s.name for s in st.statuses() if s.active} == names
    st.close()

    no = distil("reset", "power/P3000009", *flags, stdin=subprocess.DEVNULL)
    assert (no.returncode, no.stderr) == (
        1, "qss-distil: error: not reset (confirm with yes, or give --yes)\n")
    yes = distil("reset", "power/P3000009", "--yes", *flags)
    assert yes.returncode == 0 and yes.stdout.startswith("reset 1 instances")
    listed = distil("list", *flags).stdout
    power = next(line for line in listed.splitlines() if line.startswith("power/"))
    assert "points behind" in power and "of data, from 2015-12-13T10:00:00" in power

    unknown = distil("run", "nope", "--from", "2015-12-13T10:05:00Z", "--to",
                     "2015-12-13T10:06:00Z", *flags)
    assert (unknown.returncode, unknown.stderr) == (
        1, "qss-distil: error: no instance 'nope' (see qss-distil list)\n")


def test_the_command_leaves_the_btrdb_client_as_it_is(appliance, capsys):
    # In-process: the client's batch size is process-wide; qss-distil sends its larger
    # Arrow inserts without raising it (qss.btrdbclient.arrow_insert).
    import btrdb.stream
    from distil.cli import main
    *_, flags, home = appliance
    assert main(["list", *flags]) == 0
    assert "3 instances" in capsys.readouterr().err
    assert btrdb.stream.INSERT_BATCH_SIZE == 50_000
