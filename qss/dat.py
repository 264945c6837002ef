"""The uPMU `.dat` format: bytes in, per-stream arrays out, and back (architecture §4).

How this works
--------------
A `.dat` file is a sequence of one-second records, little-endian, with no header and no
sync marker. A base record is 6,312 bytes: the sample interval in ms (float32), the UTC
timestamp of the second (six int32: year, month, day, hour, minute, second), 120 int32
status words (the LSTATE stream), six channels (L1, L2, L3, C1, C2, C3) of 120
(angle in degrees, magnitude) float32 pairs, PLL debug (4 uint32) and GPS debug
(7 float32). An extended record (9,192 bytes) appends six float32 x 120 arrays
(FUND_W, FUND_VAR, FUND_VA, FUND_DPF, FREQ_L1_1S, FREQ_L1_C37). A record is extended
when any of its status words has a bit of 0xE0 set, so the kind of each record, and
therefore where the next one starts, is decided record by record.

:func:`split_records` finds the records. Almost every file is all-base or all-extended,
which one `np.frombuffer` over the whole buffer recognises (if every record of the
"all extended" view is flagged extended, walking record by record would find exactly
those records; likewise for base); mixed files are walked record by record, reading
only the status words. :func:`parse` then validates every record at once (interval,
calendar, plausible-date window, repeated seconds) and spreads the good ones into
per-stream float64 arrays with int64 nanosecond times.

Sample ``i`` of a record is at ``second_start_ns + round(i * interval_ms * 1e6)``, with
``interval_ms`` the record's float32 value widened to float64, and a record holds
``round(1000 / interval_ms)`` samples (120). This is the original sync service's
convention; a later ingester used ``(i + 1) / 120 s``, 8.33 ms later: we keep ours.

Damage is reported, never raised: a truncated last record, an impossible interval or
timestamp, a date outside the plausible window (records dated 2000 before GPS lock), or a
second repeated within the file (a "time shift": the first occurrence is kept) skips that
record with a :class:`SkippedRecord` and keeps the rest. A file with no good record at
all has :attr:`DatFile.error` set, for quarantine.

The writer, :func:`encode_records`, turns an array of :data:`EXTENDED_RECORD` (or
:data:`BASE_RECORD`) records into byte-exact file contents; :func:`empty_records` and
:func:`set_record_times` help fill one.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
from collections import Counter
from collections.abc import Iterator

import numpy as np

from .streams import BASE_STREAMS, CHANNELS, EXTENDED_ONLY_STREAMS, EXTENDED_STREAMS

SAMPLES_PER_RECORD = 120
#: Status bits that mark a record as extended.
EXTENDED_FLAG_MASK = 0xE0
NS_PER_S = 1_000_000_000

_PHASOR = np.dtype([("angle", "<f4"), ("mag", "<f4")])
_BASE_FIELDS = [
    ("interval_ms", "<f4"),
    ("timestamp", "<i4", (6,)),
    ("status", "<i4", (SAMPLES_PER_RECORD,)),
    *[(ch, _PHASOR, (SAMPLES_PER_RECORD,)) for ch in CHANNELS],
    ("pll", "<u4", (4,)),
    ("gps", "<f4", (7,)),
]
#: One base record (6,312 bytes).
BASE_RECORD = np.dtype(_BASE_FIELDS)
#: One extended record (9,192 bytes); extended-only fields are named after their streams.
EXTENDED_RECORD = np.dtype(
    _BASE_FIELDS + [(name, "<f4", (SAMPLES_PER_RECORD,)) for name in EXTENDED_ONLY_STREAMS])
BASE_SIZE = BASE_RECORD.itemsize
EXTENDED_SIZE = EXTENDED_RECORD.itemsize
assert (BASE_SIZE, EXTENDED_SIZE) == (6312, 9192)

# Bytes needed to tell a record's kind: interval, timestamp and the status words.
_STATUS_OFFSET = BASE_RECORD.fields["status"][1]
_KIND_PREFIX = _STATUS_OFFSET + 4 * SAMPLES_PER_RECORD

_STREAM_ROW = {name: i for i, name in enumerate(EXTENDED_STREAMS)}
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
_EPOCH_2010_NS = 1_262_304_000 * NS_PER_S


@dataclasses.dataclass(frozen=True)
class SkippedRecord:
    """A record that was not used, with why. ``kind`` is one of :data:`SKIP_KINDS`."""

    index: int   # position of the record in the file, counting from 0
    offset: int  # byte offset of the record in the file
    kind: str
    reason: str

    def __str__(self) -> str:
        return f"record {self.index} at byte {self.offset}: {self.reason}"


#: Why a record may be skipped: truncated tail, impossible sample interval, impossible
#: calendar timestamp, date outside the plausible window, second repeated in the file.
SKIP_KINDS = ("truncated", "interval", "timestamp", "date", "repeat")


@dataclasses.dataclass(frozen=True)
class DateWindow:
    """The plausible dates of a record's second: ``start_ns <= t < end_ns``."""

    start_ns: int
    end_ns: int

    @classmethod
    def default(cls, now_ns: int | None = None) -> DateWindow:
        """2010-01-01 to one day after ``now_ns`` (the system clock when None).

        There is deliberately no fixed upper year: earlier ingesters hard-coded 2020 and
        2025 and silently dropped new data.
        """
        if now_ns is None:
            now_ns = int(_dt.datetime.now(_dt.timezone.utc).timestamp() * NS_PER_S)
        return cls(_EPOCH_2010_NS, now_ns + 86_400 * NS_PER_S)

    def __str__(self) -> str:
        return f"{_format_ns(self.start_ns)} .. {_format_ns(self.end_ns)} UTC"


@dataclasses.dataclass(frozen=True)
class RawRecords:
    """Records found in a buffer, undecoded.

    ``records`` has :data:`EXTENDED_RECORD` dtype when any record is extended (base records
    then have zeros in the extended-only fields), :data:`BASE_RECORD` otherwise; it may be a
    read-only view of the caller's buffer.
    """

    records: np.ndarray
    offsets: np.ndarray   # int64 byte offset of each record
    extended: np.ndarray  # bool per record
    truncated: SkippedRecord | None  # an incomplete record at the end, if any
    size: int             # bytes in the buffer


@dataclasses.dataclass(frozen=True, eq=False)
class DatFile:
    """A parsed `.dat` file.

    ``times`` (int64 ns) holds every accepted sample in file order; ``values[row]`` (float64)
    is stream :data:`~qss.streams.EXTENDED_STREAMS` ``[row]`` at those times. ``values`` has 13
    rows when no accepted record is extended, 19 otherwise; an extended-only row is
    meaningful only where ``extended`` (per sample) is True. Use :meth:`stream` rather than
    indexing by hand.
    """

    times: np.ndarray
    values: np.ndarray
    extended: np.ndarray
    record_count: int        # accepted records
    extended_records: int    # accepted records that are extended
    skipped: tuple[SkippedRecord, ...]
    size: int

    @property
    def streams(self) -> tuple[str, ...]:
        """Names of the streams present, in stream order."""
        return EXTENDED_STREAMS if self.extended_records else BASE_STREAMS

    @property
    def points(self) -> int:
        """Number of (time, value) points over all streams."""
        ext = int(np.count_nonzero(self.extended)) if self.extended_records else 0
        return len(self.times) * len(BASE_STREAMS) + ext * len(EXTENDED_ONLY_STREAMS)

    @property
    def error(self) -> str | None:
        """Why nothing in the file is usable, or None when some record was accepted."""
        if self.record_count:
            return None
        if self.size == 0:
            return "empty file"
        return f"no usable record ({summarize_skipped(self.skipped)})"

    def stream(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(times, values) of one stream; empty arrays when the file lacks it.

        Raises:
            KeyError: ``name`` is not a uPMU stream name.
        """
        row = _STREAM_ROW[name]
        if row < len(BASE_STREAMS):
            return self.times, self.values[row]
        if row >= len(self.values):
            return self.times[:0], np.empty(0)
        if self.extended_records == self.record_count:  # every record: no copies
            return self.times, self.values[row]
        return self.times[self.extended], self.values[row][self.extended]

    def iter_streams(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """(name, times, values) for every stream present, in stream order."""
        for name in self.streams:
            yield (name, *self.stream(name))


def summarize_skipped(skipped: tuple[SkippedRecord, ...] | list[SkippedRecord]) -> str:
    """One line counting skipped records by kind, with the first reason of each kind."""
    if not skipped:
        return "no record skipped"
    counts = Counter(s.kind for s in skipped)
    first: dict[str, str] = {}  # kinds in order of first appearance
    for s in skipped:
        first.setdefault(s.kind, s.reason)
    parts = [f"{counts[k]} x {reason}" if counts[k] > 1 else reason
             for k, reason in first.items()]
    noun = "record" if len(skipped) == 1 else "records"
    return f"{len(skipped)} {noun} skipped: " + "; ".join(parts)


# --------------------------------------------------------------------------- reading

def split_records(data: bytes | bytearray | memoryview) -> RawRecords:
    """Find the base and extended records in ``data`` without decoding them.

    Never raises for damaged data: an incomplete last record is reported as ``truncated``.
    """
    size = memoryview(data).nbytes
    fast = _split_uniform(data, size)
    if fast is not None:
        return fast
    src = np.frombuffer(data, dtype=np.uint8)
    offsets: list[int] = []
    kinds: list[bool] = []
    truncated = None
    off = 0
    while off < size:
        left = size - off
        if left < _KIND_PREFIX:
            truncated = SkippedRecord(
                len(offsets), off, "truncated",
                f"truncated record: {left} bytes, too short to tell base from extended")
            break
        status = src[off + _STATUS_OFFSET: off + _KIND_PREFIX].view("<i4")
        ext = bool(np.any(status & EXTENDED_FLAG_MASK))
        need = EXTENDED_SIZE if ext else BASE_SIZE
        if left < need:
            truncated = SkippedRecord(
                len(offsets), off, "truncated",
                f"truncated {'extended' if ext else 'base'} record: {left} of {need} bytes")
            break
        offsets.append(off)
        kinds.append(ext)
        off += need
    extended = np.array(kinds, dtype=bool)
    dtype = EXTENDED_RECORD if extended.any() else BASE_RECORD
    records = np.zeros(len(offsets), dtype=dtype)
    raw = records.view(np.uint8).reshape(len(offsets), dtype.itemsize)
    # One slice copy per record: fancy indexing would build an index array eight times
    # the size of the file (600 MB for a 75 MB one).
    for i, (off, ext) in enumerate(zip(offsets, kinds)):
        need = EXTENDED_SIZE if ext else BASE_SIZE
        raw[i, :need] = src[off:off + need]
    return RawRecords(records, np.array(offsets, dtype=np.int64), extended, truncated, size)


def _split_uniform(data, size: int) -> RawRecords | None:
    """The all-extended or all-base reading of ``data``, when it is the right one."""
    for dtype, want_ext in ((EXTENDED_RECORD, True), (BASE_RECORD, False)):
        if size == 0 or size % dtype.itemsize:
            continue
        recs = np.frombuffer(data, dtype=dtype)
        flags = np.any(recs["status"] & EXTENDED_FLAG_MASK, axis=1)
        if (flags.all() if want_ext else not flags.any()):
            offs = np.arange(len(recs), dtype=np.int64) * dtype.itemsize
            return RawRecords(recs, offs, flags, None, size)
    if size == 0:
        return RawRecords(np.empty(0, BASE_RECORD), np.empty(0, np.int64),
                          np.empty(0, bool), None, 0)
    return None


def parse(data: bytes | bytearray | memoryview, window: DateWindow | None = None) -> DatFile:
    """Decode a `.dat` file into per-stream arrays (see the module docstring).

    ``window`` bounds plausible record dates; None means :meth:`DateWindow.default`.
    Damaged records are skipped and listed in :attr:`DatFile.skipped`; this never raises
    for damaged data.
    """
    if window is None:
        window = DateWindow.default()
    # Garbage may hold signalling NaNs; widening them is fine, and not worth a warning.
    with np.errstate(invalid="ignore", over="ignore"):
        return _parse(split_records(data), window)


def _parse(raw: RawRecords, window: DateWindow) -> DatFile:
    recs = raw.records
    skipped: list[SkippedRecord] = []
    keep, n_samples, second_ns = _validate(raw, window, skipped)
    if raw.truncated is not None:
        skipped.append(raw.truncated)
    skipped.sort(key=lambda s: s.index)

    if not keep.all():
        recs, second_ns, n_samples = recs[keep], second_ns[keep], n_samples[keep]
    rec_ext = raw.extended[keep]
    k = len(recs)
    intervals = recs["interval_ms"].astype(np.float64)
    offsets_ns = np.rint(np.arange(SAMPLES_PER_RECORD) * intervals[:, None] * 1e6)
    times = second_ns[:, None] + offsets_ns.astype(np.int64)
    sample_mask = None
    if k and n_samples.min() < SAMPLES_PER_RECORD:
        sample_mask = np.arange(SAMPLES_PER_RECORD) < n_samples[:, None]

    def flat(a: np.ndarray) -> np.ndarray:
        return a[sample_mask] if sample_mask is not None else a.reshape(-1)

    n_ext = int(np.count_nonzero(rec_ext))
    rows = len(EXTENDED_STREAMS) if n_ext else len(BASE_STREAMS)
    n = int(n_samples.sum()) if sample_mask is not None else k * SAMPLES_PER_RECORD
    values = np.empty((rows, n), dtype=np.float64)
    for i, ch in enumerate(CHANNELS):
        values[2 * i] = flat(recs[ch]["mag"])
        values[2 * i + 1] = flat(recs[ch]["angle"])
    values[len(BASE_STREAMS) - 1] = flat(recs["status"])
    if n_ext:
        for name in EXTENDED_ONLY_STREAMS:
            values[_STREAM_ROW[name]] = flat(recs[name])
    ext_per_sample = flat(np.broadcast_to(rec_ext[:, None], (k, SAMPLES_PER_RECORD)))
    return DatFile(flat(times), values, ext_per_sample, k, n_ext, tuple(skipped), raw.size)


def _validate(raw: RawRecords, window: DateWindow, skipped: list[SkippedRecord]):
    """Check every record at once; returns (keep mask, samples per record, second in ns)."""
    recs = raw.records
    interval = recs["interval_ms"].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        n_samples = np.where(np.isfinite(interval) & (interval > 0),
                             np.rint(1000.0 / interval), 0)
    good_interval = (n_samples >= 1) & (n_samples <= SAMPLES_PER_RECORD)
    n_samples = np.where(good_interval, n_samples, 0).astype(np.int64)

    fields = recs["timestamp"].astype(np.int64)
    seconds, good_time = civil_to_seconds(fields)
    start_s = -(-window.start_ns // NS_PER_S)
    end_s = -(-window.end_ns // NS_PER_S)  # t < end_ns  <=>  second < ceil(end_ns / 1e9)
    in_window = good_time & (seconds >= start_s) & (seconds < end_s)

    keep = good_interval & in_window
    bad = np.flatnonzero(~keep)
    for i in bad:
        if not good_interval[i]:
            kind = "interval"
            reason = (f"invalid sample interval {float(recs['interval_ms'][i]):.6g} ms "
                      f"(expected about 8.333 ms: 1 to 120 samples a second)")
        elif not good_time[i]:
            kind = "timestamp"
            reason = f"invalid timestamp {_raw_fields(fields[i])}: {timestamp_problem(fields[i])}"
        else:
            kind = "date"
            reason = (f"implausible date {_format_fields(fields[i])} UTC "
                      f"(outside {window})")
        skipped.append(SkippedRecord(int(i), int(raw.offsets[i]), kind, reason))

    # A second repeated within the file (a device "time shift"): keep the first one.
    idx = np.flatnonzero(keep)
    if len(idx) > 1:
        _, first_pos = np.unique(seconds[idx], return_index=True)
        if len(first_pos) < len(idx):
            dup = np.ones(len(idx), dtype=bool)
            dup[first_pos] = False
            first_of = {int(seconds[idx[p]]): int(idx[p]) for p in first_pos}
            for i in idx[dup]:
                keep[i] = False
                skipped.append(SkippedRecord(
                    int(i), int(raw.offsets[i]), "repeat",
                    f"repeats second {_format_fields(fields[i])} UTC of record "
                    f"{first_of[int(seconds[i])]} (time shift)"))
    return keep, n_samples, seconds * NS_PER_S


# --------------------------------------------------------------------------- writing

def empty_records(count: int, extended: bool = False) -> np.ndarray:
    """``count`` zeroed records to fill in, of :data:`EXTENDED_RECORD` or :data:`BASE_RECORD`.

    Remember that the status words decide the kind when written: set a bit of 0xE0 in
    an extended record's status.
    """
    return np.zeros(count, dtype=EXTENDED_RECORD if extended else BASE_RECORD)


def set_record_times(records: np.ndarray, seconds: np.ndarray | int,
                     interval_ms: float = 1000.0 / SAMPLES_PER_RECORD) -> None:
    """Stamp records with UTC seconds since the epoch and a sample interval, in place."""
    secs = np.broadcast_to(np.asarray(seconds, dtype=np.int64), records.shape)
    records["timestamp"] = seconds_to_civil(secs)
    records["interval_ms"] = interval_ms


def encode_records(records: np.ndarray) -> bytes:
    """Encode records into `.dat` bytes, byte for byte as a device writes them.

    Each record is written as extended or base according to its status words (the
    format's own rule); the extended-only fields of a base record are not written.

    Raises:
        TypeError: ``records`` is not an array of :data:`BASE_RECORD` or
            :data:`EXTENDED_RECORD`.
    """
    if records.dtype == BASE_RECORD:
        if np.any(records["status"] & EXTENDED_FLAG_MASK):
            raise ValueError("a BASE_RECORD array has status words flagged extended "
                             "(0xE0): use EXTENDED_RECORD for extended records")
        return records.tobytes()
    if records.dtype != EXTENDED_RECORD:
        raise TypeError(f"expected BASE_RECORD or EXTENDED_RECORD records, got {records.dtype}")
    ext = np.any(records["status"] & EXTENDED_FLAG_MASK, axis=1)
    if ext.all():
        return records.tobytes()
    raw = np.ascontiguousarray(records).view(np.uint8).reshape(len(records), EXTENDED_SIZE)
    keep = np.ones(raw.shape, dtype=bool)
    keep[~ext, BASE_SIZE:] = False
    return raw[keep].tobytes()


# --------------------------------------------------------------------------- time

def civil_to_seconds(fields: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """UTC (year, month, day, hour, minute, second) rows to epoch seconds.

    Returns (seconds, valid); invalid rows (impossible dates, leap seconds, years outside
    1..9999) have valid False and an unspecified second.
    """
    f = np.asarray(fields, dtype=np.int64).reshape(-1, 6)
    y, m, d, hh, mm, ss = f.T
    valid = ((y >= 1) & (y <= 9999) & (m >= 1) & (m <= 12) & (d >= 1)
             & (hh >= 0) & (hh <= 23) & (mm >= 0) & (mm <= 59) & (ss >= 0) & (ss <= 59))
    ys, ms, ds = np.where(valid, y, 1970), np.where(valid, m, 1), np.where(valid, d, 1)
    leap = (ys % 4 == 0) & ((ys % 100 != 0) | (ys % 400 == 0))
    dim = _DAYS_IN_MONTH[ms - 1] + ((ms == 2) & leap)
    valid &= d <= dim
    # Days from the civil date (H. Hinnant's algorithm), vectorised.
    yy = ys - (ms <= 2)
    era = yy // 400
    yoe = yy - era * 400
    doy = (153 * ((ms + 9) % 12) + 2) // 5 + ds - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    seconds = days * 86400 + np.where(valid, hh * 3600 + mm * 60 + ss, 0)
    return seconds, valid


def seconds_to_civil(seconds: np.ndarray) -> np.ndarray:
    """Epoch seconds to UTC (year, month, day, hour, minute, second) int32 rows."""
    s = np.asarray(seconds, dtype=np.int64)
    t = s.astype("datetime64[s]")
    year = t.astype("datetime64[Y]").astype(np.int64) + 1970
    month0 = t.astype("datetime64[M]")
    day = (t.astype("datetime64[D]") - month0.astype("datetime64[D]")).astype(np.int64) + 1
    sod = s % 86400
    out = np.stack([year, month0.astype(np.int64) % 12 + 1, day,
                    sod // 3600, sod // 60 % 60, sod % 60], axis=-1)
    return out.astype(np.int32)


_FIELD_RANGES = (("year", 1, 9999), ("month", 1, 12), ("day", 1, 31), ("hour", 0, 23),
                 ("minute", 0, 59), ("second", 0, 59))
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")


def timestamp_problem(fields) -> str | None:
    """Why a record's (year, month, day, hour, minute, second) is no UTC time, e.g.
    ``year 41696 out of range 1-9999`` or ``February 2015 has no day 29``; None when valid."""
    values = [int(v) for v in fields]
    for (name, low, high), value in zip(_FIELD_RANGES, values):
        if not low <= value <= high:
            return f"{name} {value} out of range {low}-{high}"
    year, month, day = values[:3]
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if day > _DAYS_IN_MONTH[month - 1] + (month == 2 and leap):
        return f"{_MONTHS[month - 1]} {year} has no day {day}"
    return None


def _raw_fields(f) -> str:
    """The six timestamp fields as stored, for a record whose time cannot be a date."""
    return "(" + ", ".join(str(int(v)) for v in f) + ")"


def _format_fields(f) -> str:
    y, m, d, hh, mm, ss = (int(v) for v in f)
    return f"{y:04d}-{m:02d}-{d:02d} {hh:02d}:{mm:02d}:{ss:02d}"


def _format_ns(ns: int) -> str:
    secs = ns // NS_PER_S
    return _format_fields(seconds_to_civil(np.array([secs]))[0])
