"""The v5 ``Changes`` RPC, as distil relies on it: between any two versions it reports
every time where the stream's points differ (inserted, replaced, deleted), and little
else, through the official client over loopback gRPC.
"""
import uuid

import numpy as np
import pytest

from tsdb import testing

S = 10**9
T0 = 1_450_000_000 * S          # 2015-12-13
T2000 = 946_684_800 * S


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    with testing.in_process(tmp_path_factory.mktemp("changes"), durable=False,
                            chunk_points=2000) as db:
        yield db


def ranges(db, stream, since, to=0, resolution=0):
    """[(start, end)] and the version they lead to."""
    out, version = [], None
    for batch, version in db.ep.changes(stream.uuid, since, to, resolution):
        out += [(r.start, r.end) for r in batch]
    return out, version


def covered(t, spans):
    t = np.asarray(t, np.int64)
    hit = np.zeros(len(t), bool)
    for a, b in spans:
        hit |= (t >= a) & (t < b)
    return hit


def insert(stream, t, v):
    return stream.insert(list(zip(np.asarray(t).tolist(), np.asarray(v, float).tolist())),
                         merge="replace")


def test_a_reimported_hour_reports_that_hour_only(conn):
    s = conn.create(uuid.uuid4(), "changes/day", tags={"name": "L1MAG", "unit": "V"})
    t = T0 + np.arange(0, 6 * 3600 * 10) * (S // 10)        # 6 h at 10 Hz
    for lo in range(0, len(t), 600):                           # a file a minute
        v_day = insert(s, t[lo:lo + 600], np.sin(t[lo:lo + 600] / S))
    hour = (t >= T0 + 2 * 3600 * S) & (t < T0 + 3 * 3600 * S)
    v_hour = insert(s, t[hour], np.cos(t[hour] / S))
    spans, to = ranges(conn, s, v_day)
    assert to == v_hour
    assert covered(t[hour], spans).all()
    assert not covered(t[~hour], spans).any()
    assert spans[0][0] == t[hour][0] and spans[-1][1] == t[hour][-1] + 1


def test_delete_then_reinsert_is_reported_and_far_points_stay_apart(conn):
    s = conn.create(uuid.uuid4(), "changes/del", tags={"name": "L1ANG", "unit": "deg"})
    # A batch with a record dated 2000 among 2015 data: two small ranges, not 15 years.
    v1 = insert(s, [T2000, T2000 + S // 2, T0, T0 + S], [1, 2, 3, 4])
    assert ranges(conn, s, v1 - 1) == ([(T2000, T2000 + S // 2 + 1), (T0, T0 + S + 1)], v1)
    v2 = s.delete(T0 + S // 2, T0 + 2 * S)
    assert ranges(conn, s, v1) == ([(T0 + S // 2, T0 + 2 * S)], v2)
    v3 = insert(s, [T0 + S], [5])                              # re-insert what was deleted
    assert ranges(conn, s, v2) == ([(T0 + S, T0 + S + 1)], v3)
    # Across all three versions: merged, sorted, nothing lost.
    assert ranges(conn, s, v1) == ([(T0 + S // 2, T0 + 2 * S)], v3)
    assert ranges(conn, s, v3) == ([], v3)
    assert ranges(conn, s, v1 - 1, v1, 30)[0] == [
        (T2000 >> 30 << 30, ((T2000 >> 30) + 1) << 30),
        (T0 >> 30 << 30, (((T0 + S) >> 30) + 1) << 30)]


def test_random_edits_every_difference_between_versions_is_reported(conn):
    """A model of the stream at every version; for each pair of versions, every time
    whose point differs lies in a reported range, and every range touches only times
    some edit in between touched."""
    rng = np.random.default_rng(21)
    s = conn.create(uuid.uuid4(), "changes/random", tags={"name": "x", "unit": "V"})
    model: dict[int, float] = {}
    states, touched = {}, {}                 # version -> model copy / (lo, hi) of edit
    version = s.version()
    states[version] = dict(model)
    for _ in range(40):
        if rng.random() < 0.3 and model:
            a = int(rng.integers(0, 4000)) * 10**7 + T0
            b = a + int(rng.integers(1, 800)) * 10**7
            version = s.delete(a, b)
            for k in [k for k in model if a <= k < b]:
                del model[k]
            touched[version] = (a, b)
        else:
            start = int(rng.integers(0, 4000))
            t = T0 + (start + np.unique(rng.integers(0, 600, rng.integers(1, 300)))) * 10**7
            v = rng.integers(0, 3, len(t)).astype(float)
            version = insert(s, t, v)
            model.update(zip(t.tolist(), v.tolist()))
            touched[version] = (int(t[0]), int(t[-1]) + 1)
        states[version] = dict(model)
    versions = sorted(states)
    for i, a in enumerate(versions):
        for b in versions[i + 1::3]:
            spans, to = ranges(conn, s, a, b)
            assert to == b
            old, new = states[a], states[b]
            differ = [k for k in old.keys() | new.keys() if old.get(k) != new.get(k)]
            assert covered(differ, spans).all(), (a, b)
            edits = [touched[v] for v in versions if a < v <= b]
            for lo, hi in spans:
                assert any(lo < e_hi and hi > e_lo for e_lo, e_hi in edits), (a, b, lo, hi)
            assert all(x[1] < y[0] for x, y in zip(spans, spans[1:]))  # sorted, merged
