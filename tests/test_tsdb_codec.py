"""The column codec round-trips every int64 and float64 bit pattern exactly, writes the
documented C2 layout and still reads C1 blobs (written before issue 21's fifth session)."""
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


def _delta(a):
    out = np.empty_like(a)
    if len(a):
        out[0] = a[0]
        np.subtract(a[1:], a[:-1], out=out[1:])
    return out


def _zigzag(d):
    bits = d.dtype.itemsize * 8 - 1
    return ((d << 1) ^ (d >> bits)).view(np.dtype(f"u{d.dtype.itemsize}"))


def _codes(col, kind):
    """(kind stored, zigzagged codes) as the format defines them, in plain numpy."""
    if kind == codec.TIME:
        return kind, _zigzag(_delta(_delta(col.astype(np.int64))))
    if kind == codec.INT:
        return kind, _zigzag(_delta(col.astype(np.int64)))
    if codec.is_float32_exact(col):
        return codec.F32, _zigzag(_delta(col.astype(np.float32).view(np.int32)))
    return codec.F64, _zigzag(_delta(col.view(np.int64)))


def _reference_encode(columns, kinds):
    """A C1 blob, as the encoder wrote them until C2 (the transforms as first written,
    in plain numpy): such blobs are on disk and must keep decoding."""
    parts, used = [], []
    for col, kind in zip(columns, kinds):
        k, u = _codes(col, kind)
        used.append(k)
        parts.append(np.ascontiguousarray(u.view(np.uint8).reshape(-1, u.itemsize).T)
                     .tobytes())
    body = codec.compress(b"".join(parts))
    return codec._HEAD.pack(codec._MAGIC, len(columns[0]), len(used)) + bytes(used) + body


def _reference_body2(columns, kinds):
    """(kinds, widths, uncompressed frame) of a C2 blob, in plain numpy."""
    parts, used, widths = [], [], []
    for col, kind in zip(columns, kinds):
        k, u = _codes(col, kind)
        heads = min(2 if k == codec.TIME else 1, len(u))
        rest = u[heads:]
        top = int(np.bitwise_or.reduce(rest)) if len(rest) else 0
        w = (top.bit_length() + 7) // 8
        used.append(k)
        widths.append(w)
        parts.append(u[:heads].astype(u.dtype.newbyteorder("<")).tobytes())
        parts.append(np.ascontiguousarray(rest.view(np.uint8).reshape(-1, u.itemsize).T[:w])
                     .tobytes())
    return bytes(used), bytes(widths), b"".join(parts)


def _four_columns(ints, floats, f32):
    n = min(len(ints), len(floats), len(f32))
    return [ints[:n], ints[:n], floats[:n], f32[:n].astype(np.float64)]


#: A time, an int, a float64 and a float32-exact column of one length (any bits).
four_columns = hs.builds(_four_columns, int64s, float64s,
                         hnp.arrays(np.float32, hs.integers(0, 300),
                                    elements=hs.floats(width=32, allow_nan=True)))
FOUR_KINDS = [codec.TIME, codec.INT, codec.F64, codec.F64]


@settings(max_examples=60, deadline=None)
@given(four_columns)
def test_encoding_is_the_reference_c2_layout(cols):
    blob = codec.encode(cols, FOUR_KINDS)
    head = codec._HEAD.size
    assert blob[:head] == codec._HEAD.pack(b"C2", len(cols[0]), 4)
    used, widths, body = _reference_body2(cols, FOUR_KINDS)
    assert blob[head:head + 4] == used and blob[head + 4:head + 8] == widths
    assert codec.decompress(blob[head + 8:]) == body


@settings(max_examples=60, deadline=None)
@given(four_columns)
def test_c1_blobs_still_decode(cols):
    back = codec.decode(_reference_encode(cols, FOUR_KINDS))
    for a, b in zip(cols, back):
        assert np.array_equal(a.view(np.int64), b.view(np.int64))


# Chunks (time, value, version) written by the C1 encoder itself (main at 11329b3): one
# of float64 values (0.1, -0.0, a NaN with payload 0x123, inf, -1e300), one of float32
# ones (120.5, -0.0, float32's max, its least denormal, -7.25).
_C1_TIMES = [1_500_000_000_000_000_000, 1_500_000_000_008_333_333,
             1_500_000_000_016_666_667, 1_500_000_001_000_000_000, -5]
_C1_BLOBS = [
    ("4331050000000300030128b52ffd2078bd0200a40400d5027eb300af00a3872c2d003a9af6f50074e21a"
     "1a00001b2424000024a2a20000a2292900002934ccb9453833ccfd02eb33ccff00001079c8738c0f108f"
     "7f800000fc060000020a00040071be200e043b04650f",
     [4591870180066957722, -(2**63), 0x7FF8000000000123, 0x7FF0000000000000,
      -128383115725867620]),
    ("4331050000000300020128b52ffd20644d0200240400d5027eb300af00a3872c2d003a9af6f50074e21a"
     "1a00001b2424000024a2a20000a22929000029000001fb01000000ff00e21e00ff30857a01fe7e060000"
     "020a0001008203a2",
     [4638179850610278400, -(2**63), 5183643170566569984, 3936146074321813504,
      -4603523244102778880]),
]


@pytest.mark.parametrize("blob_hex,value_bits", _C1_BLOBS)
def test_c1_chunks_written_by_the_old_encoder_decode(blob_hex, value_bits):
    t, v, ver = codec.decode(bytes.fromhex(blob_hex))
    assert t.tolist() == _C1_TIMES
    assert v.view(np.int64).tolist() == value_bits
    assert ver.tolist() == [3, 3, 3, 4, 9]


def _round_trip(cols, kinds):
    back = codec.decode(codec.encode(cols, kinds))
    assert len(back) == len(cols)
    for a, b in zip(cols, back):
        assert b.dtype == (np.int64 if a.dtype.kind == "i" else np.float64)
        assert np.array_equal(np.asarray(a).view(np.int64), b.view(np.int64))


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_tiny_columns_of_every_kind(n):
    t = np.array([2**62, -(2**63), 7][:n], np.int64)
    f64 = np.array([0.1, -0.0, np.nan][:n])
    f32 = np.array([-0.0, 1.5, np.float32(np.nan)][:n], np.float64)
    _round_trip([t, t, f64, f32], [codec.TIME, codec.INT, codec.F64, codec.F64])


def _widths(blob):
    ncols = blob[6]
    return list(blob[7 + ncols:7 + 2 * ncols])


def test_a_version_column_written_by_one_insert_costs_no_planes():
    t = 1_500_000_000 * 10**9 + np.rint(np.arange(1000) * 1e9 / 120).astype(np.int64)
    same = np.full(1000, 12, np.int64)
    blob = codec.encode([t, same], [codec.TIME, codec.INT])
    assert _widths(blob) == [1, 0]  # 120 Hz times: one plane; versions: none
    assert _widths(codec.encode([t[:1], same[:1]], [codec.TIME, codec.INT])) == [0, 0]
    _round_trip([t, same], [codec.TIME, codec.INT])
    mixed = same.copy()
    mixed[600:] = 13
    assert _widths(codec.encode([t, mixed], [codec.TIME, codec.INT])) == [1, 1]
    _round_trip([t, mixed], [codec.TIME, codec.INT])


@pytest.mark.parametrize("bits", [0, 7, 8, 15, 16, 23, 24, 31, 32, 55, 56, 63, 64])
def test_widths_at_plane_boundaries(bits):
    # A delta whose zigzag code needs exactly `bits` bits, among zeros.
    code = (1 << bits) - 1
    delta = (code >> 1) ^ -(code & 1)  # un-zigzag
    ints = np.zeros(50, np.int64)
    ints[20:] = np.int64(np.uint64(delta % 2**64).view(np.int64))  # one step of `delta`
    blob = codec.encode([ints], [codec.INT])
    assert _widths(blob) == [(bits + 7) // 8]
    _round_trip([ints], [codec.INT])
    if bits <= 32:  # float32 bit patterns with that step
        code32 = code & 0xFFFFFFFF
        d32 = (code32 >> 1) ^ -(code32 & 1)
        f = np.zeros(50, np.int32)
        f[20:] = np.int32(np.uint32(d32 % 2**32).view(np.int32))
        values = f.view(np.float32).astype(np.float64)
        if codec.is_float32_exact(values) and not np.isnan(values).any():
            blob = codec.encode([values], [codec.F64])
            assert blob[7] == codec.F32 and _widths(blob) == [(min(bits, 32) + 7) // 8]
        _round_trip([values], [codec.F64])


def _chunk_columns(n, seed):
    """Times of a 120 Hz stream with a gap, a random walk of values, two versions."""
    rng = np.random.default_rng(seed)
    t = 1_500_000_000 * 10**9 + np.rint(np.arange(n) * 1e9 / 120).astype(np.int64)
    t[n // 3:] += 10**9  # a gap
    walk = np.cumsum(rng.standard_normal(n)) + 120
    ver = np.full(n, 4, np.int64)
    ver[-3:] = 5
    return t, walk, ver


@pytest.mark.parametrize("n", [4095, 5000, 16384, 40000])
def test_chunk_sized_columns_round_trip(n):
    # From 4,096 values on the frame is compressed with other zstd settings.
    t, walk, ver = _chunk_columns(n, n)
    for v in (walk, walk.astype(np.float32).astype(np.float64)):
        _round_trip([t, v, ver], [codec.TIME, codec.F64, codec.INT])


def test_read_only_columns_encode():
    t = np.arange(100, dtype=np.int64)
    v = np.linspace(0, 1, 100)
    for a in (t, v):
        a.flags.writeable = False
    _round_trip([t, v, t], [codec.TIME, codec.F64, codec.INT])


def test_a_blob_shorter_than_its_header_says_is_refused():
    # The compiled decoder does not check bounds: a short body must be caught before it.
    t = np.arange(1000, dtype=np.int64)
    blob = _reference_encode([t, t], [codec.TIME, codec.INT])  # C1
    head = blob[:codec._HEAD.size + 2]
    short = head + codec.compress(codec.decompress(blob[len(head):])[:-8])
    with pytest.raises(ValueError, match="truncated"):
        codec.decode(short)
    v = np.linspace(0, 1, 1000)
    blob = codec.encode([t, v], [codec.TIME, codec.F64])  # C2
    head = blob[:codec._HEAD.size + 4]
    short = head + codec.compress(codec.decompress(blob[len(head):])[:-1])
    with pytest.raises(ValueError, match="truncated"):
        codec.decode(short)


def test_a_width_wider_than_its_kind_is_refused():
    blob = bytearray(codec.encode([np.arange(10.0)], [codec.F64]))
    assert blob[7] == codec.F32
    blob[8] = 5  # four planes at most
    with pytest.raises(ValueError, match="width"):
        codec.decode(bytes(blob))


@pytest.mark.parametrize("exact", [True, False])
def test_chunks_encoded_together_are_the_bytes_of_each_alone(exact):
    # Sizes on both sides of 4,096 points (the two zstd settings), one point, and a
    # float64 chunk between float32 ones when ``exact`` is off.
    t, v, ver = _chunk_columns(60_000, 1)
    v = v.astype(np.float32).astype(np.float64)
    if not exact:
        v[20_000:30_000] += 1e-9
    bounds = [0, 1, 4095, 20_000, 30_000, 46_384, 50_000, 60_000]
    for a in (t, v, ver):
        a.flags.writeable = False  # Arrow buffers arrive read-only
    blobs = codec.encode_chunks(t, v, ver, bounds)
    kinds = (codec.TIME, codec.F64, codec.INT)
    for blob, a, b in zip(blobs, bounds[:-1], bounds[1:], strict=True):
        assert blob == codec.encode([t[a:b], v[a:b], ver[a:b]], kinds)
        back = codec.decode(blob)
        assert all(np.array_equal(x.view(np.int64), y[a:b].view(np.int64))
                   for x, y in zip(back, (t, v, ver)))
    assert [blob[8] for blob in blobs][3] == (codec.F32 if exact else codec.F64)


def test_a_chunk_with_a_nan_is_left_to_the_bit_by_bit_encoder():
    from tsdb import chunks
    t, v, ver = _chunk_columns(9000, 2)
    v = v.astype(np.float32).astype(np.float64)  # a NaN decides only among float32s
    v[5000] = np.nan
    assert codec.encode_chunks(t, v, ver, [0, 3000, 6000, 9000])[1] is None
    p = chunks.Points(t, v, ver)
    pieces = [(0, 3000), (3000, 6000), (6000, 9000)]
    assert chunks.encode_pieces(p, pieces) == [chunks.encode(p.slice(a, b))
                                                for a, b in pieces]
