"""Once insert returns, the points survive SIGKILL of the process: exactly once each."""
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import numpy as np

from qss.tsdb import MAXIMUM_TIME, MINIMUM_TIME, Store

BATCH = 5000

CHILD = textwrap.dedent("""
    import sys, uuid
    import numpy as np
    from qss.tsdb import Store
    store = Store(sys.argv[1], chunk_points=4096)
    u = uuid.UUID(sys.argv[2])
    batch = 0
    while True:
        # Batches interleave in time (even/odd 2^30 windows), so later batches merge
        # into chunks and statistics blocks that earlier ones wrote.
        t = (np.arange({n}) * 10**6 + (batch // 2) * {n} * 10**6 * 2 + (batch % 2) * 10**6 // 2)
        store.insert(u, t.astype(np.int64), np.full({n}, float(batch)))
        print(batch, flush=True)  # acknowledged
        batch += 1
""").format(n=BATCH)


def test_acknowledged_points_survive_sigkill_exactly_once(tmp_path):
    u = uuid.uuid4()
    with Store(tmp_path) as s:
        s.create(u, "durability", {"name": "x"}, {})
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), str(u)],
                             stdout=subprocess.PIPE, text=True, env=env)
    acked = -1
    try:
        deadline = time.monotonic() + 30
        while acked < 40 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            acked = int(line)
        os.kill(child.pid, signal.SIGKILL)  # mid-insert, most likely
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert acked >= 40, "child did not get going"
    with Store(tmp_path) as s:
        t, v, version = s.raw(u, MINIMUM_TIME, MAXIMUM_TIME - 1)
        counts = np.bincount(v.astype(np.int64))
        # Every acknowledged batch is there exactly once; the one in flight at the kill
        # is there whole or not at all (one transaction).
        assert np.all(counts[:acked + 1] == BATCH)
        assert len(counts) <= acked + 2 and counts[acked + 1:].tolist() in ([], [BATCH])
        assert version == 10 + len(counts)
        assert len(np.unique(t)) == len(t)
        assert s.count(u) == len(t)  # statistics agree with the raw data
