"""The column codec round-trips every int64 and float64 bit pattern exactly."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs
from hypothesis.extra import numpy as hnp

from tsdb import codec

int64s = hnp.arrays(np.int64, hs.integers(0, 300))
float64s = hnp.arrays(np.float64, hs.integers(0, 300),
                      elements=hs.floats(allow_nan=True, allow_infinity=True, width=64))


@settings(max_examples=60, deadline=None)
@given(int64s, float64s.map(lambda a: a))
def test_round_trip_any_bits(ints, floats):
    n = min(len(ints), len(floats))
    ints, floats = ints[:n], floats[:n]
    blob = codec.encode([ints, ints, floats], [codec.TIME, codec.INT, codec.F64])
    t, i, f = codec.decode(blob)
    assert np.array_equal(t, ints) and np.array_equal(i, ints)
    assert np.array_equal(f.view(np.int64), floats.view(np.int64))  # NaN payloads, -0.0


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.float32, hs.integers(1, 300),
                  elements=hs.floats(width=32, allow_nan=False)))
def test_float32_values_are_stored_in_four_bytes(f32):
    values = f32.astype(np.float64)
    blob = codec.encode([values], [codec.F64])
    assert blob[7] == codec.F32
    (back,) = codec.decode(blob)
    assert np.array_equal(back.view(np.int64), values.view(np.int64))


def test_regular_times_compress_to_almost_nothing():
    t = 1_500_000_000 * 10**9 + np.rint(np.arange(100_000) * 1e9 / 120).astype(np.int64)
    assert len(codec.encode([t], [codec.TIME])) < 0.01 * t.nbytes
    assert np.array_equal(codec.decode(codec.encode([t], [codec.TIME]))[0], t)


def test_extreme_times_wrap_and_return():
    t = np.array([-(2**63), 2**63 - 1, 0, -(2**63), 2**63 - 1], np.int64)
    assert np.array_equal(codec.decode(codec.encode([t], [codec.TIME]))[0], t)


def _reference_encode(columns, kinds):
    """The format in plain numpy (the transforms as first written): the compiled
    encoder must produce these bytes, so blobs of every version decode alike."""
    def delta(a):
        out = np.empty_like(a)
        if len(a):
            out[0] = a[0]
            np.subtract(a[1:], a[:-1], out=out[1:])
        return out

    def zigzag(d):
        bits = d.dtype.itemsize * 8 - 1
        return ((d << 1) ^ (d >> bits)).view(np.dtype(f"u{d.dtype.itemsize}"))

    parts, used = [], []
    for col, kind in zip(columns, kinds):
        if kind == codec.TIME:
            k, u = kind, zigzag(delta(delta(col.astype(np.int64))))
        elif kind == codec.INT:
            k, u = kind, zigzag(delta(col.astype(np.int64)))
        elif codec.is_float32_exact(col):
            k, u = codec.F32, zigzag(delta(col.astype(np.float32).view(np.int32)))
        else:
            k, u = codec.F64, zigzag(delta(col.view(np.int64)))
        used.append(k)
        parts.append(np.ascontiguousarray(u.view(np.uint8).reshape(-1, u.itemsize).T)
                     .tobytes())
    body = codec.compress(b"".join(parts))
    return codec._HEAD.pack(codec._MAGIC, len(columns[0]), len(used)) + bytes(used) + body


@settings(max_examples=60, deadline=None)
@given(int64s, float64s, hnp.arrays(np.float32, hs.integers(0, 300),
                                    elements=hs.floats(width=32, allow_nan=True)))
def test_encoding_is_the_reference_format(ints, floats, f32):
    n = min(len(ints), len(floats), len(f32))
    cols = [ints[:n], ints[:n], floats[:n], f32[:n].astype(np.float64)]
    kinds = [codec.TIME, codec.INT, codec.F64, codec.F64]
    assert codec.encode(cols, kinds) == _reference_encode(cols, kinds)


def test_a_blob_shorter_than_its_header_says_is_refused():
    # The compiled decoder does not check bounds: a short body must be caught before it.
    t = np.arange(1000, dtype=np.int64)
    blob = codec.encode([t, t], [codec.TIME, codec.INT])
    head = blob[:codec._HEAD.size + 2]
    short = head + codec.compress(codec.decompress(blob[len(head):])[:-8])
    with pytest.raises(ValueError, match="truncated"):
        codec.decode(short)
