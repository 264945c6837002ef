"""The distil engine against a real qss-btrdb through the official client: every built-in
against an independent numpy computation on generator data with a hole, a repeated
second, a record dated 2000 and a late file; outputs always equal a recomputation from
scratch in one chunk; a re-imported hour changes its outputs (plus lead and trail) and
nothing else; a failing distillate never stops the others."""
import dataclasses
import logging

import numpy as np
import pytest

from distil import builtins, catalog
from distil.distillate import Distillate, Input, Instance
from distil.engine import Engine, Options
from distil.state import SqliteStore
from qss import dat
from qss.btrdbclient import Btrdb
from qss.generator import INTERVAL_MS

from distil_support import (S, T0, assert_float32_of, by_sample, create_streams,
                            expected_frequency, expected_frequency_1s, expected_power,
                            expected_state_changes, float32_exact, put, read, records,
                            tick_time, upmu_list)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
T2000 = 946_684_800


@pytest.fixture(scope="module")
def btrdb(server):
    b = Btrdb([server.grpc])
    yield b
    b.close()


def engine(btrdb, tmp_path, name="state", chunk_s=120):
    return Engine(btrdb, SqliteStore(str(tmp_path / f"{name}.db")),
                  Options(chunk_ns=chunk_s * S, slice_s=0.5))


def scratch_copy(inst: Instance) -> Instance:
    """The same computation under another name, so its outputs are other streams."""
    return dataclasses.replace(inst, name=f"scratch/{inst.name}",
                               collection=f"scratch/{inst.collection}")


def outputs(db, inst):
    return {role: read(db, inst.output_uuid(role)) for role in inst.distillate.outputs}


def assert_same_as_scratch(btrdb, tmp_path, instances, tag):
    """A fresh engine computing everything in one-day chunks gives the very same points."""
    fresh = engine(btrdb, tmp_path, f"scratch-{tag}", chunk_s=86400)
    copies = [dataclasses.replace(scratch_copy(i), name=f"{tag}/{i.name}",
                                  collection=f"{tag}/{i.collection}") for i in instances]
    fresh.set_instances(copies)
    fresh.catch_up(timeout=300)
    db = btrdb.get()
    for inst, copy in zip(instances, copies):
        ours, theirs = outputs(db, inst), outputs(db, copy)
        for role in ours:
            np.testing.assert_array_equal(ours[role][0], theirs[role][0], f"{inst.name} {role}")
            np.testing.assert_array_equal(ours[role][1], theirs[role][1], f"{inst.name} {role}")
    fresh.state.close()


def check_builtins(db, u, insts):
    l1ang = read(db, u.streams["L1ANG"].uuid)
    lstate = read(db, u.streams["LSTATE"].uuid)
    phasors = {n: read(db, u.streams[n].uuid) for n in builtins.Power.inputs}
    out = {i.distillate.name: outputs(db, i) for i in insts}

    # Stored rounded to float32 (output_precision): the same operations in the same
    # order give the float32 nearest to the numpy value exactly; sums in another order
    # (frequency-1s) or hypot against sqrt (power's S, DPF) within their old tolerance.
    t, f = expected_frequency(*l1ang)
    got = out["frequency"]["FREQ_L1"]
    np.testing.assert_array_equal(got[0], t)
    assert_float32_of(got[1], f, msg="FREQ_L1")

    t, f = expected_frequency_1s(*l1ang)
    got = out["frequency-1s"]["FREQ_L1_1S"]
    np.testing.assert_array_equal(got[0], t)
    assert_float32_of(got[1], f, 1e-11, "FREQ_L1_1S")

    # A copy of the status words, as they are (float64: an int32 may not fit a float32).
    t, v = expected_state_changes(*lstate)
    np.testing.assert_array_equal(out["state-changes"]["LSTATE_CHANGES"][0], t)
    np.testing.assert_array_equal(out["state-changes"]["LSTATE_CHANGES"][1], v)

    for role, (t, v) in expected_power(phasors).items():
        np.testing.assert_array_equal(out["power"][role][0], t, role)
        assert_float32_of(out["power"][role][1], v, 1e-12 * np.abs(v), role)
    for role, (t, v) in out["power"].items():       # the per-phase ones too
        assert float32_exact(v), role
    return out


def test_builtins_match_numpy_through_holes_repeats_old_records_and_late_files(
        server, btrdb, tmp_path):
    ul = upmu_list("P3000001")
    u = ul.upmus[0]
    create_streams(btrdb, u)
    db = btrdb.get()
    for minute in (0, 1, 2, 4, 5):                       # minute 3 comes late
        put(db, u, records(u.serial, T0 + 60 * minute, 60))
    again = records(u.serial, T0 + 400, 1)                # second 370 sent twice,
    dat.set_record_times(again, T0 + 370, INTERVAL_MS)    # the second copy different
    put(db, u, again)
    put(db, u, records(u.serial, T2000, 2))               # a record dated 2000

    eng = engine(btrdb, tmp_path)
    insts = catalog.builtin_instances(ul.upmus, builtins.DEFAULT_ON)
    assert sorted(i.name for i in insts) == sorted(f"{n}/P3000001" for n in builtins.DEFAULT_ON)
    eng.set_instances(insts)
    eng.catch_up(timeout=300)
    out = check_builtins(db, u, insts)
    freq = out["frequency"]["FREQ_L1"]
    assert (freq[0] < (T0 + 1) * S).sum() > 0 and (freq[0] // S == T2000 + 1).sum() == 120
    # The hole: no frequency in minute 3, nor in the first second of minute 4.
    assert not ((freq[0] >= (T0 + 180) * S) & (freq[0] < (T0 + 241) * S)).any()
    assert_same_as_scratch(btrdb, tmp_path, insts, "a")

    put(db, u, records(u.serial, T0 + 180, 60))           # the late file
    eng.catch_up(timeout=300)
    out = check_builtins(db, u, insts)
    freq = out["frequency"]["FREQ_L1"]
    assert ((freq[0] >= (T0 + 180) * S) & (freq[0] < (T0 + 241) * S)).sum() == 61 * 120
    assert_same_as_scratch(btrdb, tmp_path, insts, "b")

    # Against the uPMU's own FREQ_L1_1S and FUND_*: how close (docs/distil-design.md).
    ft, fv = out["frequency-1s"]["FREQ_L1_1S"]
    ut, uv = read(db, u.streams["FREQ_L1_1S"].uuid)
    at_second = dict(zip((ut[ut % S == 0] // S).tolist(), uv[ut % S == 0].tolist()))
    diffs = np.array([v - at_second[t // S] for t, v in zip(ft.tolist(), fv.tolist())
                      if t // S in at_second])
    # The 1-s mean of a 1-s angle difference weighs [s-1, s+1) as a triangle; the uPMU
    # averages the second itself: they agree within a few mHz (1.7 mHz here).
    rms = float(np.sqrt(np.mean(diffs ** 2)))
    print(f"frequency-1s - FREQ_L1_1S: max {np.abs(diffs).max():.2e} Hz, rms {rms:.2e} Hz")
    assert len(diffs) > 300 and np.abs(diffs).max() < 3e-3 and rms < 1e-3
    pt, pv = out["power"]["P"]
    wt, wv = read(db, u.streams["FUND_W"].uuid)
    wt = tick_time(wt // S, np.rint((wt % S) / (S / 120)).astype(np.int64))  # on the ticks
    common, a, b = np.intersect1d(pt, wt, return_indices=True)
    assert len(common) > 40000
    rel = np.abs(pv[a] - wv[b]) / np.abs(wv[b])
    print(f"P - FUND_W: max {rel.max():.2e}, rms {np.sqrt(np.mean(rel ** 2)):.2e} relative")
    np.testing.assert_allclose(pv[a], wv[b], rtol=1e-5)


def test_a_reimported_hour_changes_its_outputs_plus_lead_and_trail_and_nothing_else(
        btrdb, tmp_path):
    ul = upmu_list("P3000002", first=2)
    u = ul.upmus[0]
    create_streams(btrdb, u)
    db = btrdb.get()
    for m in range(0, 12):                                   # two hours, 10-minute files
        put(db, u, records(u.serial, T0 + 600 * m, 600, extended=False))
    eng = engine(btrdb, tmp_path, chunk_s=900)
    insts = catalog.builtin_instances(ul.upmus, ["frequency", "state-changes"])
    eng.set_instances(insts)
    eng.catch_up(timeout=300)
    before = {i.name: (outputs(db, i), btrdbio_version(db, i)) for i in insts}
    # Re-import the second hour's L1ANG with changed values.
    t, v = read(db, u.streams["L1ANG"].uuid, (T0 + 3600) * S, (T0 + 7200) * S)
    db.stream_from_uuid(u.streams["L1ANG"].uuid).insert(
        list(zip(t.tolist(), (v + 0.5).tolist())), merge="replace")
    eng.catch_up(timeout=300)
    freq = builtins_inst(insts, "frequency")
    (t0, v0), (t1, v1) = before[freq.name][0]["FREQ_L1"], outputs(db, freq)["FREQ_L1"]
    np.testing.assert_array_equal(t0, t1)
    changed = t0[v0 != v1]
    # The first second of the hour sees the step; the second after the hour sees it
    # undone (lead 1 s); nothing before the hour or later changes.
    assert changed.min() >= (T0 + 3600) * S and changed.max() < (T0 + 7201) * S
    assert ((t0 >= (T0 + 3600) * S) & (t0 < (T0 + 3601) * S) & (v0 != v1)).sum() == 120
    assert not (((t0 < (T0 + 3600) * S) | (t0 >= (T0 + 7201) * S)) & (v0 != v1)).any()
    # state-changes did not read L1ANG: its outputs' version did not move.
    sc = builtins_inst(insts, "state-changes")
    assert btrdbio_version(db, sc) == before[sc.name][1]


def builtins_inst(insts, name):
    return next(i for i in insts if i.distillate.name == name)


def btrdbio_version(db, inst):
    return {r: db.stream_from_uuid(inst.output_uuid(r)).version()
            for r in inst.distillate.outputs}


class Broken(Distillate):
    name = "broken"
    inputs = ("in",)
    outputs = {"out": ""}

    def process(self, inputs, outputs):
        raise ZeroDivisionError("on purpose")


def test_a_failing_distillate_is_named_and_retried_and_the_others_finish(
        btrdb, tmp_path, caplog):
    ul = upmu_list("P3000003", first=3)
    u = ul.upmus[0]
    create_streams(btrdb, u)
    db = btrdb.get()
    put(db, u, records(u.serial, T0, 30, extended=False))
    eng = engine(btrdb, tmp_path)
    broken = Instance(f"broken/{u.serial}", Broken(), {"in": Input("upmu/uPMU3/L1MAG")},
                      "upmu/uPMU3/distil/broken")     # bound by path, looked up in BTrDB
    good = catalog.builtin_instances(ul.upmus, ["frequency"])
    eng.set_instances([broken] + good)
    caplog.set_level(logging.ERROR, "distil")
    with pytest.raises(TimeoutError):
        eng.catch_up(timeout=5)
    assert len(read(db, good[0].output_uuid("FREQ_L1"))[0]) == 29 * 120
    status = eng.state.status(broken.name)
    assert status.failures >= 1 and "ZeroDivisionError: on purpose" in status.error
    assert eng.state.status(good[0].name).failures == 0
    line = next(r.getMessage() for r in caplog.records if "broken" in r.getMessage())
    assert line.startswith("instance broken/P3000003: broken v1 failed over [2015-12-13T")
    assert "ZeroDivisionError: on purpose (failure 1 in a row; retrying in" in line


class BrokenAfter(Distillate):
    """A copy that fails once its input reaches 15 s into the data."""
    name = "broken-after"
    inputs = ("in",)
    outputs = {"out": ""}

    def process(self, inputs, outputs):
        if inputs["in"].t[-1] >= (T0 + 15) * S:
            raise ZeroDivisionError("on purpose")
        outputs.add("out", inputs["in"].t, inputs["in"].v)


@pytest.mark.parametrize("ahead", [True, False])
def test_a_chunk_failing_while_the_one_before_is_written_leaves_that_one_done(
        btrdb, tmp_path, ahead):
    """Chunks of 10 s: the one from 10 s fails while (ahead) or after the one before is
    written. That one is written, flushed and struck from what is owed; the failing one
    writes nothing and is named."""
    ul = upmu_list(f"P30000{61 + ahead}", first=61 + ahead)
    u = ul.upmus[0]
    create_streams(btrdb, u)
    db = btrdb.get()
    put(db, u, records(u.serial, T0, 30, extended=False))
    eng = Engine(btrdb, SqliteStore(str(tmp_path / "state.db")),
                 Options(chunk_ns=10 * S, slice_s=60, ahead=ahead))
    inst = Instance(f"broken-after/{u.serial}", BrokenAfter(),
                    {"in": Input(f"upmu/{u.alias}/L1MAG")}, f"upmu/{u.alias}/distil/b")
    eng.set_instances([inst])
    assert eng.turn(inst)                             # still owes: it failed
    got = read(db, inst.output_uuid("out"))
    want = read(db, u.streams["L1MAG"].uuid, T0 * S, (T0 + 10) * S)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert eng.state.load(inst.name).pending[0][0] == (T0 + 10) * S
    status = eng.state.status(inst.name)
    assert status.failures == 1 and "ZeroDivisionError: on purpose" in status.error
    assert "failed over [2015-12-13T" in status.error and ":10.000Z, " in status.error


def test_angle_difference_between_two_upmus_matches_numpy(btrdb, tmp_path):
    """``[distil] angle_differences = uPMU81:P3000082``: A's L1ANG minus B's, wrapped,
    at every sample both have: B misses a second and has a late file; A has a record
    dated 2000 that B lacks."""
    ul = upmu_list("P3000081", "P3000082", first=81)
    a, b = ul.upmus
    for u in (a, b):
        create_streams(btrdb, u)
    db = btrdb.get()
    put(db, a, records(a.serial, T0, 40))
    put(db, a, records(a.serial, T2000, 2))
    theirs = records(b.serial, T0, 40)
    put(db, b, np.delete(theirs[:30], 12))                  # second 12 missing
    insts, problems = catalog.angle_difference_instances(ul.upmus, [("uPMU81", "P3000082")])
    assert problems == [] and [i.name for i in insts] == \
        ["angle-difference/P3000081-P3000082/L1ANG"]
    inst = insts[0]
    assert inst.collection == "upmu/uPMU81/distil/angle-difference/uPMU82/L1ANG"
    eng = engine(btrdb, tmp_path)
    eng.set_instances(insts)
    eng.catch_up(timeout=120)
    put(db, b, theirs[30:])                                 # B's late file
    eng.catch_up(timeout=120)

    def expected():
        pa = by_sample(*read(db, a.streams["L1ANG"].uuid))
        pb = by_sample(*read(db, b.streams["L1ANG"].uuid))
        keys = sorted(k for k in pa if k in pb)
        return (np.array([tick_time(s, i) for s, i in keys], np.int64),
                np.array([(pa[k] - pb[k] + 180) % 360 - 180 for k in keys]))

    t, d = expected()
    assert len(t) == 39 * 120 and not any(x // S == T0 + 12 for x in t)
    got = read(db, inst.output_uuid("ANGLE_DIFF"))
    np.testing.assert_array_equal(got[0], t)
    assert_float32_of(got[1], d, msg="ANGLE_DIFF")      # the same operations: exact
    assert np.all((got[1] >= -180) & (got[1] < 180))
    assert_same_as_scratch(btrdb, tmp_path, insts, "angles")


def test_an_input_whose_version_went_back_is_computed_again(btrdb, tmp_path, caplog):
    """After ``qss-get --newdb`` or a restore, an input's version is below the one the
    state consumed: Changes since then says nothing, so the engine owes everything."""
    ul = upmu_list("P3000093", first=93)
    u = ul.upmus[0]
    create_streams(btrdb, u)
    db = btrdb.get()
    put(db, u, records(u.serial, T0, 20))
    eng = engine(btrdb, tmp_path)
    inst = catalog.builtin_instances(ul.upmus, ["frequency"])[0]
    eng.set_instances([inst])
    eng.catch_up(timeout=60)
    out = inst.output_uuid("FREQ_L1")
    db.stream_from_uuid(out).delete(T0 * S, (T0 + 20) * S)       # as a new database would
    st = eng.state.load(inst.name)
    key = str(u.streams["L1ANG"].uuid)
    st.consumed[key] += 10**6                                     # the old database's
    eng.state.save(inst.name, st)
    caplog.set_level(logging.INFO, "distil")
    eng.catch_up(timeout=60)
    assert len(read(db, out)[0]) == 19 * 120
    assert any("consumed (a new database?); computing everything" in r.getMessage()
               for r in caplog.records)
    assert eng.state.load(inst.name).consumed[key] < st.consumed[key]


def test_an_output_chunk_goes_in_one_rpc_without_changing_the_client(btrdb, monkeypatch):
    """A 600 s chunk of a 120 Hz output (72,000 points, over the client's 50,000) is one
    Arrow insert, and btrdb.stream.INSERT_BATCH_SIZE stays as the client has it: other
    users of the client in the process are not changed."""
    import uuid

    from btrdb import stream as client_stream

    from distil import btrdbio
    db = btrdb.get()
    uu = uuid.uuid4()
    db.create(uu, "scratch/distil/rpc", {"name": "X", "unit": "Hz"})
    t = T0 * S + np.arange(72_000, dtype=np.int64) * (S // 120)
    v = np.linspace(59.9, 60.1, len(t))
    calls = []
    real = db.ep.arrowInsertValues
    monkeypatch.setattr(db.ep, "arrowInsertValues",
                        lambda **kw: calls.append(kw["values"].num_rows) or real(**kw))
    btrdbio.replace(db, uu, int(t[0]), int(t[-1]) + 1, t, v)
    assert calls == [72_000]
    got = read(db, uu)
    np.testing.assert_array_equal(got[0], t)
    np.testing.assert_array_equal(got[1], v)
    assert client_stream.INSERT_BATCH_SIZE == 50_000


def test_a_chunk_flushes_the_outputs_it_wrote_before_it_is_struck_and_no_others(
        btrdb, tmp_path, monkeypatch):
    """Durability: an output written in a chunk is flushed before the chunk is struck
    from what is owed; the chunks before the first input point and after the last
    write nothing, and flush nothing."""
    from distil import btrdbio
    ul = upmu_list("P3000095", first=95)
    u = ul.upmus[0]
    create_streams(btrdb, u)
    put(btrdb.get(), u, records(u.serial, T0, 30, extended=False))
    eng = engine(btrdb, tmp_path)                        # chunks of 120 s
    inst = catalog.builtin_instances(ul.upmus, ["frequency"])[0]
    calls = []
    replace, flush, save = btrdbio.replace, btrdbio.flush, eng.state.save

    def replacing(db, uu, a, b, t, v, delete=True):
        calls.append(("write", len(t) > 0 or delete))
        return replace(db, uu, a, b, t, v, delete=delete)
    monkeypatch.setattr(btrdbio, "replace", replacing)
    monkeypatch.setattr(btrdbio, "flush", lambda db, uu: calls.append(("flush",)) or
                        flush(db, uu))
    monkeypatch.setattr(eng.state, "save", lambda *a, **k: calls.append(("save",)) or
                        save(*a, **k))
    eng.set_instances([inst])
    eng.catch_up(timeout=60)
    assert calls == [("save",),                           # a new instance owes everything
                     ("write", False), ("save",),         # up to the first input point
                     ("write", True), ("flush",), ("save",),    # the 30 s of data
                     ("write", False), ("save",)]         # after the last: to the end
    assert len(read(btrdb.get(), inst.output_uuid("FREQ_L1"))[0]) == 29 * 120
