"""The .dat format: parser and writer (architecture §4).

Test records are packed here with `struct`, independently of the production dtypes, so a
mistake in the layout cannot hide on both sides.
"""
from __future__ import annotations

import calendar
import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qss import dat
from qss.streams import BASE_STREAMS, EXTENDED_ONLY_STREAMS, EXTENDED_STREAMS

NS = 1_000_000_000
WINDOW = dat.DateWindow(calendar.timegm((2010, 1, 1, 0, 0, 0)) * NS,
                        calendar.timegm((2030, 1, 1, 0, 0, 0)) * NS)
INTERVAL = struct.unpack("<f", struct.pack("<f", 1000 / 120))[0]  # as float32 stores it


def pack_record(when, *, ext=False, interval=INTERVAL, status=None, phasors=None,
                extra=None, pll=(1, 2, 3, 4), gps=(1, 2, 3, 4, 5, 6, 7)) -> bytes:
    """One record, by the book: architecture §4, field by field.

    ``phasors[c]`` is a list of 120 (angle, mag) pairs for channel c (L1..C3).
    """
    if status is None:
        status = [0x20 if ext else 0] * 120
    if phasors is None:
        phasors = [[(float(c * 10 + i % 7), 7000.0 + c + i) for i in range(120)]
                   for c in range(6)]
    out = struct.pack("<f6i", interval, *when) + struct.pack("<120i", *status)
    for ch in phasors:
        out += b"".join(struct.pack("<ff", a, m) for a, m in ch)
    out += struct.pack("<4I", *pll) + struct.pack("<7f", *gps)
    assert len(out) == 6312
    if ext:
        if extra is None:
            extra = [[60.0 + k + i / 1000 for i in range(120)] for k in range(6)]
        out += b"".join(struct.pack("<120f", *arr) for arr in extra)
        assert len(out) == 9192
    return out


def when(second_offset: int, base=(2015, 12, 18, 8, 14, 57)):
    t = calendar.timegm(base) + second_offset
    return list(__import__("time").gmtime(t)[:6])


def epoch(fields) -> int:
    return calendar.timegm(tuple(fields))


def expected_times(fields, interval=INTERVAL, n=120):
    return [epoch(fields) * NS + round(i * interval * 1e6) for i in range(n)]


# --------------------------------------------------------------------------- layout

def test_record_sizes_and_file_sizes_match_the_manual():
    assert dat.BASE_RECORD.itemsize == 6312
    assert dat.EXTENDED_RECORD.itemsize == 9192
    base = b"".join(pack_record(when(i)) for i in range(60))
    ext = b"".join(pack_record(when(i), ext=True) for i in range(60))
    assert len(base) == 378_720 and len(ext) == 551_520
    assert len(dat.encode_records(dat.empty_records(60))) == 378_720
    recs = dat.empty_records(60, extended=True)
    recs["status"] = 0x20
    assert len(dat.encode_records(recs)) == 551_520


def test_fields_decode_to_the_right_streams_and_times():
    phasors = [[(float(c), 100.0 * c + i) for i in range(120)] for c in range(6)]
    status = [0] * 118 + [4, 8]
    extra = [[1000.0 * (k + 1) + i for i in range(120)] for k in range(6)]
    data = pack_record(when(0), status=status, phasors=phasors) + \
        pack_record(when(1), ext=True, phasors=phasors, extra=extra,
                    status=[0x20] * 120)
    f = dat.parse(data, WINDOW)
    assert f.skipped == () and f.error is None
    assert (f.record_count, f.extended_records) == (2, 1)
    assert f.streams == EXTENDED_STREAMS
    t, v = f.stream("L1MAG")
    assert t.tolist() == expected_times(when(0)) + expected_times(when(1))
    assert v.tolist() == [float(i) for i in range(120)] * 2
    assert f.stream("C3ANG")[1].tolist() == [5.0] * 240
    assert f.stream("C2MAG")[1][:3].tolist() == [400.0, 401.0, 402.0]
    assert f.stream("LSTATE")[1].tolist() == [0.0] * 118 + [4.0, 8.0] + [32.0] * 120
    # Extended-only streams exist only for the extended record.
    t, v = f.stream("FREQ_L1_C37")
    assert t.tolist() == expected_times(when(1))
    assert v.tolist() == [6000.0 + i for i in range(120)]
    assert f.stream("FUND_W")[1][0] == 1000.0
    assert f.points == 240 * 13 + 120 * 6
    assert [name for name, *_ in f.iter_streams()] == list(EXTENDED_STREAMS)


def test_sample_times_follow_the_original_convention():
    # i * interval, not (i + 1) / 120 s: the first sample is at the second itself.
    f = dat.parse(pack_record(when(0)), WINDOW)
    t = f.times - epoch(when(0)) * NS
    assert t[0] == 0
    assert t[1] == round(INTERVAL * 1e6) == 8_333_333
    assert t[119] == round(119 * INTERVAL * 1e6)


def test_base_only_file_has_thirteen_streams_and_no_extended_data():
    f = dat.parse(b"".join(pack_record(when(i)) for i in range(3)), WINDOW)
    assert f.streams == BASE_STREAMS and f.values.shape == (13, 360)
    t, v = f.stream("FUND_W")
    assert len(t) == len(v) == 0
    with pytest.raises(KeyError):
        f.stream("NOPE")


def test_record_kind_is_decided_per_record_in_a_mixed_file():
    kinds = [False, True, True, False, True, False, False, True]
    data = b"".join(pack_record(when(i), ext=k) for i, k in enumerate(kinds))
    raw = dat.split_records(data)
    assert raw.extended.tolist() == kinds
    f = dat.parse(data, WINDOW)
    assert f.record_count == 8 and f.extended_records == 4
    assert f.extended.reshape(8, 120)[:, 0].tolist() == kinds
    assert len(f.stream("FUND_VA")[0]) == 4 * 120


def test_base_file_whose_length_is_also_a_multiple_of_extended_size():
    # 383 base records are exactly as long as 263 extended ones.
    assert 383 * 6312 == 263 * 9192
    data = b"".join(pack_record(when(i)) for i in range(383))
    f = dat.parse(data, WINDOW)
    assert (f.record_count, f.extended_records, f.skipped) == (383, 0, ())


def test_a_single_status_word_makes_a_record_extended():
    status = [0] * 120
    status[77] = 0x80
    f = dat.parse(pack_record(when(0), ext=True, status=status), WINDOW)
    assert f.extended_records == 1 and f.skipped == ()


def test_fewer_samples_per_second_come_from_the_interval():
    interval = struct.unpack("<f", struct.pack("<f", 1000 / 60))[0]
    data = pack_record(when(0), interval=interval) + pack_record(when(1))
    f = dat.parse(data, WINDOW)
    assert len(f.times) == 60 + 120
    assert f.times[:60].tolist() == expected_times(when(0), interval, 60)
    assert f.stream("L1MAG")[1][:60].tolist() == [7000.0 + i for i in range(60)]


# --------------------------------------------------------------------------- damage

def test_truncated_last_record_is_skipped_and_the_rest_kept():
    data = b"".join(pack_record(when(i), ext=True) for i in range(3))
    f = dat.parse(data[:-100], WINDOW)
    assert f.record_count == 2
    assert [(s.index, s.offset, s.kind) for s in f.skipped] == [(2, 2 * 9192, "truncated")]
    assert "9092 of 9192 bytes" in f.skipped[0].reason


def test_truncation_at_every_offset_of_a_record_never_crashes():
    base, ext = pack_record(when(0)), pack_record(when(1), ext=True)
    # base + ext cuts through every offset of both kinds of record; ext + base at the
    # interesting places only, to keep the suite fast.
    cases = [(base, ext, range(len(base) + len(ext) + 1)),
             (ext, base, [0, 1, 507, 508, 9191, 9192, 9193, 9192 + 508, 9192 + 6311, 15504])]
    for first, second, cuts in cases:
        data = first + second
        for cut in cuts:
            f = dat.parse(data[:cut], WINDOW)
            whole = (cut >= len(first)) + (cut == len(data))
            assert f.record_count == whole, cut
            tail = cut - len(first) * (cut >= len(first))
            if cut == len(data) or tail == 0:
                assert f.skipped == ()
            else:
                assert [s.kind for s in f.skipped] == ["truncated"], cut
            if cut == 0:
                assert f.error == "empty file"
            elif whole == 0:
                assert f.error.startswith("no usable record (1 record skipped: truncated")


def test_empty_file():
    f = dat.parse(b"", WINDOW)
    assert f.record_count == 0 and f.error == "empty file" and f.points == 0


@pytest.mark.parametrize("interval", [0.0, -8.3, float("nan"), float("inf"), 1e-30, 3e38, 2000.0])
def test_impossible_interval_skips_only_that_record(interval):
    data = pack_record(when(0)) + pack_record(when(1), interval=interval) + pack_record(when(2))
    f = dat.parse(data, WINDOW)
    assert f.record_count == 2
    assert [(s.index, s.kind) for s in f.skipped] == [(1, "interval")]
    assert "invalid sample interval" in f.skipped[0].reason


@pytest.mark.parametrize("fields", [
    (2015, 13, 1, 0, 0, 0), (2015, 2, 29, 0, 0, 0), (2016, 4, 31, 0, 0, 0),
    (2015, 1, 1, 24, 0, 0), (2015, 1, 1, 0, 60, 0), (2015, 1, 1, 0, 0, 60),
    (0, 1, 1, 0, 0, 0), (2**31 - 1, 1, 1, 0, 0, 0), (-5, -5, -5, -5, -5, -5),
])
def test_impossible_timestamp_skips_only_that_record(fields):
    data = pack_record(when(0)) + pack_record(list(fields)) + pack_record(when(2))
    f = dat.parse(data, WINDOW)
    assert f.record_count == 2
    assert [(s.index, s.kind) for s in f.skipped] == [(1, "timestamp")]


def test_leap_day_is_a_valid_date():
    f = dat.parse(pack_record([2016, 2, 29, 23, 59, 59]), WINDOW)
    assert f.record_count == 1
    assert f.times[0] == epoch([2016, 2, 29, 23, 59, 59]) * NS


def test_records_dated_before_gps_lock_are_skipped_with_their_date():
    data = b"".join(pack_record([2000, 1, 1, 0, 0, i]) for i in range(3))
    data += b"".join(pack_record(when(i)) for i in range(3))
    f = dat.parse(data, WINDOW)
    assert f.record_count == 3
    assert [s.kind for s in f.skipped] == ["date"] * 3
    assert "implausible date 2000-01-01 00:00:00 UTC (outside 2010-01-01 00:00:00" in \
        f.skipped[0].reason
    assert f.times[0] == epoch(when(0)) * NS


def test_default_window_has_no_hard_coded_upper_year():
    now = calendar.timegm((2041, 6, 1, 0, 0, 0)) * NS
    window = dat.DateWindow.default(now_ns=now)
    ok = dat.parse(pack_record([2041, 6, 1, 23, 0, 0]), window)
    assert ok.record_count == 1
    late = dat.parse(pack_record([2041, 6, 2, 0, 0, 1]), window)
    assert [s.kind for s in late.skipped] == ["date"]
    early = dat.parse(pack_record([2009, 12, 31, 23, 59, 59]), window)
    assert [s.kind for s in early.skipped] == ["date"]


def test_repeated_second_keeps_the_first_and_says_so():
    status = [8] * 120  # LSTATE "time shift"
    first = pack_record(when(1))
    again = pack_record(when(1), status=status, phasors=[[(0.0, 1.0)] * 120] * 6)
    data = pack_record(when(0)) + first + again + pack_record(when(2))
    f = dat.parse(data, WINDOW)
    assert f.record_count == 3
    assert [(s.index, s.kind) for s in f.skipped] == [(2, "repeat")]
    assert "of record 1 (time shift)" in f.skipped[0].reason
    assert len(np.unique(f.times)) == len(f.times) == 360
    assert 1.0 not in f.stream("L1MAG")[1][120:240]


def test_damage_in_one_record_does_not_stop_the_others():
    recs = [pack_record(when(i), ext=i % 2 == 0) for i in range(10)]
    recs[3] = pack_record([2000, 1, 1, 0, 0, 0])
    recs[5] = pack_record(when(5), interval=0.0, ext=False)
    f = dat.parse(b"".join(recs), WINDOW)
    assert f.record_count == 8
    assert sorted(s.kind for s in f.skipped) == ["date", "interval"]
    assert "2 records skipped" in dat.summarize_skipped(f.skipped)


def test_whole_file_of_garbage_reports_instead_of_raising():
    rng = np.random.default_rng(7)
    data = rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    f = dat.parse(data, WINDOW)
    assert f.record_count == 0
    assert f.error.startswith("no usable record (")
    assert all(s.kind in dat.SKIP_KINDS for s in f.skipped)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=30_000))
def test_arbitrary_bytes_never_crash_the_parser(data):
    f = dat.parse(data, WINDOW)
    assert len(f.times) == f.values.shape[1] == len(f.extended)
    assert f.record_count >= 0
    if f.record_count == 0:
        assert f.error
    offsets = [s.offset for s in f.skipped]
    assert all(0 <= o < max(len(data), 1) for o in offsets)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(-2**31, 2**31 - 1), st.integers(0, 119))
def test_absurd_header_values_are_reported(raw_interval, year, word):
    interval = struct.unpack("<f", struct.pack("<I", raw_interval))[0]
    status = [0] * 120
    status[word] = 0xE0
    rec = pack_record([year, 1, 1, 0, 0, 0], ext=True, interval=interval, status=status)
    f = dat.parse(rec + pack_record(when(0)), WINDOW)
    assert f.record_count in (1, 2)
    assert f.record_count + len(f.skipped) == 2


# --------------------------------------------------------------------------- round trips

finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
any32 = st.floats(width=32)


@st.composite
def record_sets(draw):
    k = draw(st.integers(1, 6))
    kinds = draw(st.lists(st.booleans(), min_size=k, max_size=k))
    seconds = draw(st.lists(st.integers(epoch((2010, 1, 1, 0, 0, 0)),
                                        epoch((2029, 12, 31, 0, 0, 0))),
                            min_size=k, max_size=k, unique=True))
    recs = dat.empty_records(k, extended=True)
    dat.set_record_times(recs, np.array(seconds))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    special = draw(st.lists(any32, min_size=1, max_size=8))

    def values(shape):
        v = rng.standard_normal(shape).astype(np.float32) * np.float32(10.0 ** rng.integers(-3, 7))
        flat = v.reshape(-1)
        flat[rng.integers(0, flat.size, len(special))] = special
        return v

    for ch in ("L1", "L2", "L3", "C1", "C2", "C3"):
        recs[ch]["mag"] = values((k, 120))
        recs[ch]["angle"] = values((k, 120))
    status = rng.integers(-2**31, 2**31, (k, 120), dtype=np.int64).astype(np.int32)
    status[~np.array(kinds)] &= ~np.int32(0xE0)
    for i in np.flatnonzero(kinds):
        if not np.any(status[i] & 0xE0):
            status[i, rng.integers(0, 120)] |= 0x40
    recs["status"] = status
    for name in EXTENDED_ONLY_STREAMS:
        recs[name] = np.where(np.array(kinds)[:, None], values((k, 120)), 0)
    recs["pll"] = rng.integers(0, 2**32, (k, 4), dtype=np.uint64).astype(np.uint32)
    recs["gps"] = values((k, 7))
    return recs, kinds


@settings(max_examples=150, deadline=None)
@given(record_sets())
def test_writer_parser_round_trip_is_exact(rs):
    recs, kinds = rs
    data = dat.encode_records(recs)
    assert len(data) == sum(9192 if k else 6312 for k in kinds)
    # Raw level: bytes -> records -> bytes is the identity.
    raw = dat.split_records(data)
    assert raw.extended.tolist() == kinds and raw.truncated is None
    assert dat.encode_records(raw.records) == data
    # Stream level: every float32 comes back as the same float64, at the spec's times.
    f = dat.parse(data, WINDOW)
    assert f.skipped == () and f.record_count == len(kinds)
    assert f.extended_records == sum(kinds)
    for row, name in enumerate(BASE_STREAMS[:-1]):
        ch, part = name[:2], "mag" if name.endswith("MAG") else "angle"
        got = f.stream(name)[1]
        want = recs[ch][part].reshape(-1).astype(np.float64)
        assert np.array_equal(got, want, equal_nan=True), name
    assert np.array_equal(f.stream("LSTATE")[1], recs["status"].reshape(-1).astype(np.float64))
    ext_idx = np.flatnonzero(kinds)
    for name in EXTENDED_ONLY_STREAMS:
        got_t, got = f.stream(name)
        want = recs[name][ext_idx].reshape(-1).astype(np.float64)
        assert np.array_equal(got, want, equal_nan=True), name
        assert len(got_t) == len(got)
    want_t = [t for r in recs for t in expected_times(r["timestamp"].tolist())]
    assert f.times.tolist() == want_t


def test_writer_refuses_wrong_dtypes_and_inconsistent_base_records():
    with pytest.raises(TypeError):
        dat.encode_records(np.zeros(3, dtype=np.float32))
    recs = dat.empty_records(1)
    recs["status"] = 0x20
    with pytest.raises(ValueError, match="EXTENDED_RECORD"):
        dat.encode_records(recs)


def test_writer_drops_extended_fields_of_records_flagged_base():
    recs = dat.empty_records(2, extended=True)
    dat.set_record_times(recs, np.array([epoch(when(0)), epoch(when(1))]))
    recs["status"][1] = 0x20
    recs["FUND_W"] = [[5.0] * 120, [6.0] * 120]
    data = dat.encode_records(recs)
    assert len(data) == 6312 + 9192
    assert data[:6312] == recs[0].tobytes()[:6312]
    assert data[6312:] == recs[1].tobytes()
    f = dat.parse(data, WINDOW)
    assert f.stream("FUND_W")[1].tolist() == [6.0] * 120


# --------------------------------------------------------------------------- time helpers

@settings(max_examples=300)
@given(st.integers(-62135596800, 253402300799))
def test_civil_conversions_agree_with_the_calendar_module(sec):
    fields = dat.seconds_to_civil(np.array([sec]))[0]
    assert list(fields) == list(__import__("time").gmtime(sec)[:6]) or sec < 0
    seconds, valid = dat.civil_to_seconds(fields[None, :])
    assert valid[0] and seconds[0] == sec


def test_date_window_is_printed_for_operators():
    assert str(WINDOW) == "2010-01-01 00:00:00 .. 2030-01-01 00:00:00 UTC"
    assert math.isclose(dat.DateWindow.default().end_ns / NS - __import__("time").time(),
                        86400, abs_tol=60)


@pytest.mark.parametrize("fields, why", [
    ((41696, 2, 164, -1526726656, 2, 10813441), "year 41696 out of range 1-9999"),
    ((2015, 13, 1, 0, 0, 0), "month 13 out of range 1-12"),
    ((2015, 2, 29, 0, 0, 0), "February 2015 has no day 29"),
    ((2016, 4, 31, 0, 0, 0), "April 2016 has no day 31"),
    ((2015, 1, 1, 0, 0, 60), "second 60 out of range 0-59"),
    ((-5, -5, -5, -5, -5, -5), "year -5 out of range 1-9999"),
])
def test_an_invalid_timestamp_is_reported_as_its_raw_fields_and_why(fields, why):
    f = dat.parse(pack_record(when(0)) + pack_record(list(fields)), WINDOW)
    assert [s.reason for s in f.skipped] == [
        f"invalid timestamp ({', '.join(map(str, fields))}): {why}"]
    assert dat.timestamp_problem(fields) == why
    assert dat.timestamp_problem((2016, 2, 29, 23, 59, 59)) is None
