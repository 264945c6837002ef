"""The storage engine end to end: data, statistics, versions and metadata vs numpy."""
import uuid

import numpy as np
import pytest

from tsdb import MAXIMUM_TIME, MINIMUM_TIME, MergePolicy, Store, errors

# Small chunks so that tests cross many chunk boundaries and splits.
CHUNK = 200


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "data", durable=False, chunk_points=CHUNK)
    yield s
    s.close()


def new_stream(store, name="s", collection="test/c"):
    u = uuid.uuid4()
    store.create(u, collection, {"name": name}, {})
    return u


def ref_windows(t, v, keys):
    """numpy reference per distinct key: key, count, min, mean, max, population std."""
    out = [(k, (x := v[keys == k]).size, x.min(), x.mean(), x.max(), x.std())
           for k in np.unique(keys)]
    return [np.array(c) for c in zip(*out)] if out else [np.empty(0)] * 6


def assert_windows(w, times, ref):
    k, c, mn, mean, mx, sd = ref
    assert w.time.tolist() == times.tolist()
    assert w.count.tolist() == c.astype(int).tolist()
    assert np.array_equal(w.min, mn) and np.array_equal(w.max, mx)
    np.testing.assert_allclose(w.mean, mean, rtol=1e-10)
    np.testing.assert_allclose(w.stddev, sd, rtol=1e-6, atol=1e-9)


@pytest.fixture
def loaded(store):
    """A stream with dense data over 2^41 ns plus sparse data far out, inserted out of
    order in several batches."""
    rng = np.random.default_rng(7)
    dense = rng.integers(-(2**40), 2**40, 20_000)
    sparse = rng.integers(-(2**55), 2**56, 300)
    t = np.concatenate([dense, sparse])
    v = 7200 + rng.normal(0, 0.3, len(t)).astype(np.float32).astype(np.float64)
    u = new_stream(store)
    for part in np.array_split(rng.permutation(len(t)), 7):
        store.insert(u, t[part], v[part])
    order = np.argsort(t, kind="stable")
    return store, u, t[order], v[order]


def test_raw_returns_everything_sorted(loaded):
    store, u, t, v = loaded
    rt, rv, ver = store.raw(u, MINIMUM_TIME, MAXIMUM_TIME - 1)
    assert ver == 17  # created at 10, seven inserts
    assert np.array_equal(rt, t)
    # Equal timestamps (random collisions) may differ in order; compare as multisets.
    assert np.array_equal(np.sort(rv), np.sort(v))
    assert store.count(u) == len(t)


def test_raw_bounds_are_inclusive_start_exclusive_end(loaded):
    store, u, t, v = loaded
    for a, b in [(t[100], t[5000]), (t[100] + 1, t[5000] + 1), (t[0], t[0] + 1),
                 (t[-1], MAXIMUM_TIME - 1)]:
        rt, _, _ = store.raw(u, int(a), int(b))
        assert rt.tolist() == t[(t >= a) & (t < b)].tolist()


@pytest.mark.parametrize("pw", [0, 7, 20, 29, 30, 31, 33, 34, 36, 39, 42, 46, 51, 58, 60])
def test_aligned_windows_match_numpy(loaded, pw):
    store, u, t, v = loaded
    rng = np.random.default_rng(pw)
    for start, end in [(-(2**41), 2**41), (int(rng.integers(-(2**40), 0)),
                                          int(rng.integers(1, 2**40))),
                       (MINIMUM_TIME, MAXIMUM_TIME)]:
        if pw < 20 and end - start > 2**38:
            start, end = -(2**30), 2**30  # keep the raw path's reference small
        w, _ = store.aligned_windows(u, start, end, pw)
        mask = (1 << pw) - 1
        s, e = start & ~mask, end & ~mask
        sel = (t >= s) & (t < e)
        ref = ref_windows(t[sel], v[sel], t[sel] >> pw)
        assert_windows(w, ref[0].astype(np.int64) << pw, ref)


def test_aligned_window_example_from_the_client_docs(store):
    u = new_stream(store)
    t = 1500000000000000000 + np.arange(10) * 100_000_000
    store.insert(u, t, np.arange(1.0, 11.0))
    w, _ = store.aligned_windows(u, 1500000000000000000, 1500000001000000000, 28)
    assert w.time.tolist() == [1499999999814008832, 1500000000082444288,
                               1500000000350879744, 1500000000619315200]
    assert w.count.sum() == 9  # the point at .9 s is at or after the aligned end


@pytest.mark.parametrize("width", [1, 1000, 2**30 + 7, 10**11, 2**44])
def test_windows_match_numpy(loaded, width):
    store, u, t, v = loaded
    start = -(2**40) + 12345
    end = start + (2**41 if width > 1 else 10**6)
    w, _ = store.windows(u, start, end, width)
    end -= (end - start) % width
    sel = (t >= start) & (t < end)
    keys = (t[sel] - start) // width
    ref = ref_windows(t[sel], v[sel], keys)
    assert_windows(w, start + ref[0].astype(np.int64) * width, ref)


def test_nearest(loaded):
    store, u, t, v = loaded
    for probe in [int(t[0]) - 5, int(t[10]), int(t[10]) + 1, int(t[-1])]:
        nt, _, _ = store.nearest(u, probe, backward=False)
        assert nt == t[t >= probe][0]
    for probe in [int(t[10]), int(t[10]) + 1, int(t[-1]) + 1, MAXIMUM_TIME - 1]:
        nt, _, _ = store.nearest(u, probe, backward=True)
        assert nt == t[t < probe][-1]
    with pytest.raises(errors.NoSuchPoint):
        store.nearest(u, int(t[-1]) + 1, backward=False)
    with pytest.raises(errors.NoSuchPoint):
        store.nearest(u, int(t[0]), backward=True)


def test_delete_range_updates_raw_and_every_statistics_level(loaded):
    store, u, t, v = loaded
    a, b = -(2**39) + 999, 2**38 + 5  # not aligned to anything
    before = store.info(u).version
    assert store.delete(u, a, b) == before + 1
    keep = (t < a) | (t >= b)
    rt, _, _ = store.raw(u, MINIMUM_TIME, MAXIMUM_TIME - 1)
    assert np.array_equal(rt, t[keep])
    for pw in (30, 34, 38, 42, 60):
        w, _ = store.aligned_windows(u, MINIMUM_TIME, MAXIMUM_TIME, pw)
        ref = ref_windows(t[keep], v[keep], t[keep] >> pw)
        assert_windows(w, ref[0].astype(np.int64) << pw, ref)
    # Deleting everything leaves nothing behind at any level.
    store.delete(u, MINIMUM_TIME, MAXIMUM_TIME - 1)
    assert store.count(u) == 0
    assert store.db.conn().execute("SELECT count(*) FROM stats").fetchone()[0] == 0
    assert store.db.conn().execute("SELECT count(*) FROM chunks").fetchone()[0] == 0


@pytest.mark.parametrize("policy", list(MergePolicy))
def test_merge_policies_against_stored_points_and_statistics(store, policy):
    u = new_stream(store)
    base = 2**40
    t1 = base + np.arange(0, 1000, 2) * 10**6          # even ms
    store.insert(u, t1, np.full(len(t1), 1.0))
    t2 = base + np.arange(500, 1500, 5) * 10**6         # overlaps every 10 ms
    v2 = np.where(np.arange(len(t2)) % 2 == 0, 1.0, 2.0)  # some equal, some differing
    store.insert(u, t2, v2, policy)
    rt, rv, _ = store.raw(u, base, base + 2 * 10**9)
    old = dict(zip(t1.tolist(), [1.0] * len(t1)))
    pairs = [(x, 1.0) for x in t1.tolist()]
    for x, y in zip(t2.tolist(), v2.tolist()):
        if x not in old or policy == MergePolicy.NEVER:
            pairs.append((x, y))
        elif policy == MergePolicy.EQUAL and old[x] != y:
            pairs.append((x, y))
        elif policy == MergePolicy.REPLACE:
            pairs.remove((x, old[x]))
            pairs.append((x, y))
    assert sorted(zip(rt.tolist(), rv.tolist())) == sorted(pairs)
    et = np.array(sorted(pairs))[:, 0].astype(np.int64)
    ev = np.array(sorted(pairs))[:, 1]
    w, _ = store.aligned_windows(u, base, base + 2**33, 30)
    ref = ref_windows(et, ev, et >> 30)
    assert_windows(w, ref[0].astype(np.int64) << 30, ref)


def test_replace_twice_is_idempotent(store):
    u = new_stream(store)
    t = np.arange(5000) * 8_333_333
    v = np.sin(t / 1e9)
    store.insert(u, t, v, MergePolicy.REPLACE)
    store.insert(u, t, v, MergePolicy.REPLACE)
    rt, rv, _ = store.raw(u, 0, 10**12)
    assert np.array_equal(rt, t) and np.array_equal(rv, v)
    assert store.count(u) == len(t)


def test_versions_and_old_version_reads(store):
    u = new_stream(store)
    assert store.info(u).version == 10
    v11 = store.insert(u, [100, 200], [1.0, 2.0])
    v12 = store.insert(u, [300, 2**35], [3.0, 4.0])
    assert (v11, v12) == (11, 12)
    assert store.insert(u, [], []) == 12  # empty insert: no new version
    assert store.raw(u, 0, 1000, version=11)[0].tolist() == [100, 200]
    assert store.raw(u, 0, 1000, version=12)[0].tolist() == [100, 200, 300]
    w, ver = store.aligned_windows(u, 0, 2**40, 34, version=11)
    assert ver == 11 and w.count.tolist() == [2]
    w, ver = store.aligned_windows(u, 0, 2**40, 34)
    assert ver == 12 and w.count.tolist() == [3, 1]
    assert store.delete(u, 150, 250) == 13
    # The delete made version 11 unreadable where it deleted, not elsewhere.
    with pytest.raises(errors.VersionNotAvailable):
        store.raw(u, 0, 1000, version=11)
    assert store.raw(u, 1000, 2**36, version=11)[0].tolist() == []
    with pytest.raises(errors.VersionNotAvailable):
        store.raw(u, 0, 1000, version=99)
    starts, ends, to = store.changes(u, 10, 0, 0)
    # One range per run of adjacent level-30 windows an insert touched (the points of
    # version 12 share a chunk but not a window), merged where they overlap: [100, 201)
    # from 11 and [150, 250) from the delete.
    assert to == 13 and list(zip(starts, ends)) == [(100, 250), (300, 301),
                                                    (2**35, 2**35 + 1)]
    starts, ends, _ = store.changes(u, 12, 13, 8)
    assert list(zip(starts, ends)) == [(0, 256)]
    with pytest.raises(errors.InvalidVersions):
        store.changes(u, 13, 12)


def test_validation_errors(store):
    u = new_stream(store)
    with pytest.raises(errors.BadValue):
        store.insert(u, [1, 2], [1.0, np.nan])
    with pytest.raises(errors.BadValue):
        store.insert(u, [1], [np.inf])
    with pytest.raises(errors.InvalidTimeRange):
        store.insert(u, [MAXIMUM_TIME - 1], [1.0])
    with pytest.raises(errors.InvalidTimeRange):
        store.insert(u, [MINIMUM_TIME - 1], [1.0])
    with pytest.raises(errors.InvalidTimeRange):
        store.raw(u, 10, 10)
    with pytest.raises(errors.InvalidPointWidth):
        store.aligned_windows(u, 0, 10, 64)
    with pytest.raises(errors.InvalidPointWidth):
        store.windows(u, 0, 10, 0)
    with pytest.raises(errors.StreamNotFound):
        store.raw(uuid.uuid4(), 0, 10)
    assert store.insert(u, [MAXIMUM_TIME - 2, MINIMUM_TIME], [1.0, 2.0]) == 11
    assert len(store.aligned_windows(u, 0, 10, 30)[0]) == 0  # rounds to nothing


def test_metadata(store):
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    store.create(a, "upmu/P1", {"name": "L1MAG", "unit": "V"}, {"site": "x", "k": "1"})
    store.create(b, "upmu/P1", {"name": "L1ANG", "unit": "deg"}, {"site": "y"})
    store.create(c, "upmu/P10/", {"name": "L1MAG", "unit": "V"}, {})
    assert store.list_collections() == ["upmu/P1", "upmu/P10/"]
    assert store.list_collections("upmu/P1") == ["upmu/P1", "upmu/P10/"]
    assert store.list_collections("x") == []
    names = lambda infos: sorted(i.uuid for i in infos)  # noqa: E731
    assert names(store.lookup("upmu/P1", False)) == sorted([a, b])
    assert names(store.lookup("upmu/P1", True, {"name": "L1MAG"})) == sorted([a, c])
    assert names(store.lookup("", True, annotations={"site": None})) == sorted([a, b])
    assert names(store.lookup("upmu", True, {"unit": "V"}, {"k": "1"})) == [a]
    with pytest.raises(errors.StreamExists):
        store.create(a, "other", {"name": "z"}, {})
    with pytest.raises(errors.AmbiguousStream):
        store.create(uuid.uuid4(), "upmu/P1", {"unit": "V", "name": "L1MAG"}, {})
    with pytest.raises(errors.InvalidTagKey):
        store.create(uuid.uuid4(), "upmu/P1", {"colour": "red"}, {})
    with pytest.raises(errors.InvalidCollection):
        store.create(uuid.uuid4(), "", {"name": "q"}, {})
    info = store.info(a)
    assert info.property_version == 1 and info.annotations == {"site": "x", "k": "1"}
    assert store.set_annotations(a, 1, {"site": "z", "new": "n"}, ["k"]) == 2
    assert store.info(a).annotations == {"site": "z", "new": "n"}
    with pytest.raises(errors.PropertyVersionMismatch):
        store.set_annotations(a, 1, {"site": "w"})
    assert store.set_tags(a, 2, {"unit": "kV"}, "moved/P1") == 3
    assert store.info(a).tags == {"name": "L1MAG", "unit": "kV"}
    assert store.list_collections("moved") == ["moved/P1"]
    tags, anns = store.metadata_usage("upmu")
    assert tags == {"name": 2, "unit": 2, "ingress": 0, "distiller": 0}
    assert anns == {"site": 1}
    store.insert(b, [1, 2, 3], [1.0, 2.0, 3.0])
    store.obliterate(b)
    with pytest.raises(errors.StreamNotFound):
        store.info(b)
    with pytest.raises(errors.StreamNotFound):
        store.raw(b, 0, 10)
    with pytest.raises(errors.RecycledUUID):
        store.create(b, "again", {"name": "L1ANG"}, {})
    assert store.db.conn().execute("SELECT count(*) FROM chunks").fetchone()[0] == 0


def test_reopen_keeps_everything(tmp_path):
    rng = np.random.default_rng(1)
    t = np.sort(rng.integers(0, 2**42, 5000))
    v = rng.normal(size=len(t))
    with Store(tmp_path, chunk_points=CHUNK) as s:
        u = new_stream(s)
        s.insert(u, t, v)
        w1, _ = s.aligned_windows(u, 0, 2**42, 36)
    with Store(tmp_path, chunk_points=CHUNK) as s:
        rt, rv, ver = s.raw(u, 0, 2**42)
        assert np.array_equal(rt, t) and np.array_equal(rv, v) and ver == 11
        w2, _ = s.aligned_windows(u, 0, 2**42, 36)
        assert np.array_equal(w1.mean, w2.mean) and np.array_equal(w1.count, w2.count)


def test_random_operations_keep_every_level_consistent(store):
    """Random inserts (every policy, overlapping) and deletes; afterwards raw data and each
    statistics level agree with a plain Python model of the stream."""
    rng = np.random.default_rng(2024)
    u = new_stream(store)
    model: list[tuple[int, float]] = []  # (time, value) in insertion order
    span = 2**44
    for step in range(40):
        if step % 5 == 4:
            a = int(rng.integers(0, span))
            b = a + int(rng.integers(1, 2**41))
            store.delete(u, a, b)
            model = [(x, y) for x, y in model if not a <= x < b]
            continue
        policy = MergePolicy(int(rng.integers(0, 4)))
        n = int(rng.integers(1, 600))
        t = rng.integers(0, span // 2**20, n) * 2**20  # coarse grid: collisions happen
        v = rng.integers(0, 4, n).astype(np.float64)
        store.insert(u, t, v, policy)
        for x, y in sorted(zip(t.tolist(), v.tolist()), key=lambda p: p[0]):
            have = [p for p in model if p[0] == x]
            if policy == MergePolicy.RETAIN and have:
                continue
            if policy == MergePolicy.EQUAL and (x, y) in have:
                continue
            if policy == MergePolicy.REPLACE:
                model = [p for p in model if p[0] != x]
            model.append((x, y))
    mt = np.array([p[0] for p in model], np.int64)
    mv = np.array([p[1] for p in model])
    order = np.argsort(mt, kind="stable")
    mt, mv = mt[order], mv[order]
    rt, rv, _ = store.raw(u, MINIMUM_TIME, MAXIMUM_TIME - 1)
    assert sorted(zip(rt.tolist(), rv.tolist())) == sorted(zip(mt.tolist(), mv.tolist()))
    for pw in (30, 34, 38, 42, 46, 50, 60):
        w, _ = store.aligned_windows(u, MINIMUM_TIME, MAXIMUM_TIME, pw)
        ref = ref_windows(mt, mv, mt >> pw)
        assert_windows(w, ref[0].astype(np.int64) << pw, ref)


@pytest.mark.parametrize("width,offset", [(2**34, 0), (10**11 + 3, 12345),
                                          (3 * 2**38 + 1, -(2**33) + 1), (2**36, 2**30)])
def test_wide_windows_from_statistics_levels_match_numpy(tmp_path, monkeypatch, width, offset):
    # 100,000 points at ~50 Hz over ~37 min: wide windows hold many chunks' worth of
    # points, so they are built from level records plus the points of cut records.
    store = Store(tmp_path / "w", durable=False, chunk_points=CHUNK)
    rng = np.random.default_rng(width % 1000)
    t = np.sort(rng.integers(0, 2**41, 100_000))
    v = 7200 + rng.normal(0, 0.3, len(t))
    u = new_stream(store)
    store.insert(u, t, v)
    used = []
    real = Store._windows_from_level
    monkeypatch.setattr(Store, "_windows_from_level",
                        lambda self, *a: used.append(a[-1]) or real(self, *a))
    start = 2**35 + offset
    end = start + 2**40 + 999
    w, _ = store.windows(u, start, end, width)
    assert used, "the statistics levels were not used"
    end -= (end - start) % width
    sel = (t >= start) & (t < end)
    keys = (t[sel] - start) // width
    ref = ref_windows(t[sel], v[sel], keys)
    assert_windows(w, start + ref[0].astype(np.int64) * width, ref)
    store.close()


@pytest.mark.parametrize("pw", [10, 30, 36, 44])
def test_pieces_add_up_to_the_whole_answer(loaded, pw):
    store, u, t, v = loaded
    start, end = -(2**40) + 999, 2**56
    pieces = list(store.raw_pieces(u, start, end, max_points=1000))
    assert len(pieces) > 5
    rt, rv, _ = store.raw(u, start, end)
    assert np.array_equal(np.concatenate([p[0] for p in pieces]), rt)
    assert np.array_equal(np.concatenate([p[1] for p in pieces]), rv)
    parts = list(store.aligned_pieces(u, start, end, pw, max_items=1000))
    whole, _ = store.aligned_windows(u, start, end, pw)
    assert np.array_equal(np.concatenate([w.time for w, _ in parts]), whole.time)
    assert np.array_equal(np.concatenate([w.count for w, _ in parts]), whole.count)
    assert np.array_equal(np.concatenate([w.min for w, _ in parts]), whole.min)


def _stored(store, u):
    """Everything an insert leaves in the database: chunk rows (decoded), statistics
    blocks of every level (decoded), change log."""
    from tsdb import chunks, levels
    conn = store.db.conn()
    sid = conn.execute("SELECT id FROM streams WHERE uuid=?", (u.bytes,)).fetchone()[0]
    rows = [(s, f, last, n, [c.tolist() for c in (p.t, p.v, p.ver)])
            for s, f, last, n, d in conn.execute(
                "SELECT start, first, last, count, data FROM chunks WHERE stream=?"
                " ORDER BY start", (sid,)) for p in [chunks.decode(d)]]
    stats = [(lv, b, [c.tolist() for c in levels.decode_block(b, d).columns()])
             for lv, b, d in conn.execute("SELECT level, block, data FROM stats WHERE"
                                          " stream=? ORDER BY level, block", (sid,))]
    log = conn.execute('SELECT version, start, "end", lossy FROM changes WHERE stream=?'
                       " ORDER BY rowid", (sid,)).fetchall()
    return rows, stats, log


@pytest.mark.parametrize("seed", range(4))
def test_appends_store_what_merging_and_recutting_stores(tmp_path, seed):
    """Batches after a stream's last point skip the merge (Store._append); the chunks,
    statistics, change log and versions must be exactly those of the merge path."""
    rng = np.random.default_rng(seed)
    batches, cur = [], 1_500_000_000 * 10**9
    for _ in range(12):
        n = int(rng.choice([1, 7, 150, 199, 200, 201, 450, 1300]))
        step = int(rng.choice([8_333_333, 200_000_000, 3_000_000_000]))
        first = cur - int(rng.integers(0, 2 * 10**9)) if rng.random() < 0.2 else \
            cur + int(rng.choice([step, 10**9, 5 * 10**9]))
        t = np.sort(first + np.arange(n, dtype=np.int64) * step + rng.integers(0, 2, n))
        batches.append((t, rng.normal(size=n), MergePolicy(int(rng.integers(0, 4)))))
        cur = max(cur, int(t[-1]))
    results = []
    for fast in (True, False):
        with Store(tmp_path / str(fast), durable=False, chunk_points=CHUNK) as s:
            if not fast:
                s._append = lambda *args: None
            u = new_stream(s)
            versions = [s.insert(u, t, v, p) for t, v, p in batches]
            results.append((versions, _stored(s, u)))
    assert results[0] == results[1]
