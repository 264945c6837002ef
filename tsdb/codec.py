"""Column codec for chunk and statistics blobs: integer transforms, then one zstd frame.

How this works. A blob holds ``ncols`` columns of the same length ``n``. Each column is
transformed into unsigned integers whose high bytes are mostly zero, the bytes of each
column are transposed ("shuffled": all first bytes, then all second bytes, ...), the
columns are concatenated and compressed with zstd as one frame. Transforms:

- ``TIME``   int64, delta of deltas: regular sampling gives runs of 0 and ±1;
- ``INT``    int64, delta;
- ``F32``    float64 values that are all exactly float32 (uPMU samples are): the float32
  bit patterns as int32, delta (nearby values of one sign and exponent have nearby bit
  patterns, so the delta is small);
- ``F64``    any other float64: the bit patterns as int64, delta.

Deltas are zigzag-encoded so small negative numbers have small codes. Integer arithmetic
wraps, so every transform is exactly invertible for any input (NaN payloads, -0.0, ...).

Two layouts; :func:`encode` writes ``C2``, :func:`decode` reads both.

- ``C1`` (written until issue 21's fifth session): ``b"C1"``, n (uint32 LE), ncols
  (uint8), ncols kind bytes, zstd frame of each column's codes as all their byte planes
  (8, or 4 for F32), least significant first, column after column.
- ``C2``: ``b"C2"``, n, ncols, ncols kind bytes, ncols width bytes, zstd frame of, column
  after column: the first ``k`` codes whole (little-endian, 8 bytes, or 4 for F32;
  ``k`` = 2 for TIME, else 1, at most n: the codes that carry the first value and
  step), then the low ``width`` byte planes of the other n - k codes, where ``width``
  is the fewest bytes holding every one of them. Planes that would be all zero are
  not stored: a version column written by one insert has width 0 (nothing but its first
  code), regular times width 1, float32 values 2 to 4 of 4. zstd's time grows with its
  input, zeros included: a float32 chunk gives it ~4 bytes a point instead of 20.
"""
from __future__ import annotations

import struct
import threading
from collections.abc import Sequence

import numpy as np
import zstandard

from . import kernels

TIME, INT, F32, F64 = 0, 1, 2, 3
_MAGIC = b"C1"
_MAGIC2 = b"C2"
_HEAD = struct.Struct("<2sIB")
_ZSTD_LEVEL = 3  # measured: level 1..9 differ by <1% in size on uPMU data, 3 is as fast as 1
#: zstd settings for C2 frames of chunks (measured on 16,384-point chunks,
#: docs/tsdb-design.md, "Thirteenth session"; not part of the format). A window of about
#: one byte plane makes zstd's blocks (at most one window long) about one plane each, so
#: each plane gets its own Huffman table (noise planes stay apart from compressible
#: ones: smaller than one frame at level 3); matches of at least 7 bytes (dfast, one
#: probe) leave the short ones of the compressible high planes to Huffman, which is
#: faster and as small. Below 4,096 values a column (statistics blocks, short chunks),
#: level 3, which fits its tables to the input, is as small and faster.
_PLANES_MIN = 4096


def _planes_params(window_log: int) -> zstandard.ZstdCompressionParameters:
    return zstandard.ZstdCompressionParameters(
        window_log=window_log, chain_log=12, hash_log=12, search_log=1, min_match=7,
        target_length=0, strategy=zstandard.STRATEGY_DFAST)


_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    # zstandard (de)compressor objects must not be shared between threads.
    c = getattr(_local, "c", None)
    if c is None:
        c = _local.c = zstandard.ZstdCompressor(level=_ZSTD_LEVEL)
    return c


def _frame_compressor(n: int) -> zstandard.ZstdCompressor:
    """The compressor for a C2 frame of columns of n values."""
    if n < _PLANES_MIN:
        return _compressor()
    window_log = min(n.bit_length() - 1, 14)  # 12, 13 or 14: a plane or a little less
    cs = getattr(_local, "planes", None)
    if cs is None:
        cs = _local.planes = {}
    c = cs.get(window_log)
    if c is None:
        c = cs[window_log] = zstandard.ZstdCompressor(
            compression_params=_planes_params(window_log))
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "d", None)
    if d is None:
        d = _local.d = zstandard.ZstdDecompressor()
    return d


def compress(data: bytes) -> bytes:
    """zstd, with this thread's compressor."""
    return _compressor().compress(data)


def decompress(data: bytes) -> bytes:
    """Inverse of :func:`compress`."""
    return _decompressor().decompress(data)


def is_float32_exact(values: np.ndarray) -> bool:
    """True when every float64 value survives a round trip through float32 bit-exactly."""
    with np.errstate(over="ignore", invalid="ignore"):  # out of range: simply not exact
        f = values.astype(np.float32)
    return bool(np.array_equal(f.astype(np.float64).view(np.int64), values.view(np.int64)))


def encode(columns: Sequence[np.ndarray], kinds: Sequence[int]) -> bytes:
    """Encode equal-length columns; ``kinds`` gives TIME or INT for int64 columns and
    F64 for float64 columns (the encoder picks F32 itself when it is exact)."""
    n = len(columns[0]) if columns else 0
    # Room for every plane of every column, not zeroed: the kernels write every byte
    # they keep, and each column starts where the one before it ended.
    buf = np.empty(8 * n * len(columns), np.uint8)
    used, widths, pos = bytearray(), bytearray(), 0
    for col, kind in zip(columns, kinds, strict=True):
        if len(col) != n:
            raise ValueError("columns differ in length")
        if kind in (TIME, INT):
            k = kind
            w = kernels.pack_delta64(np.ascontiguousarray(col, dtype=np.int64),
                                     2 if k == TIME else 1, buf[pos:])
        else:
            f = np.ascontiguousarray(col, dtype=np.float64)
            a = np.empty(n, np.float32)
            exact = kernels.float32_bits(f, a)
            if exact == 2:  # NaN: its payload decides, bit by bit
                exact = is_float32_exact(f)
                a = f.astype(np.float32) if exact else a
            if exact:
                k, w = F32, kernels.pack_delta32(a.view(np.int32), buf[pos:])
            else:
                k, w = F64, kernels.pack_delta64(f.view(np.int64), 1, buf[pos:])
        used.append(k)
        widths.append(w)
        pos += _column_bytes(k, n, w)
    body = _frame_compressor(n).compress(buf[:pos])
    return b"".join((_HEAD.pack(_MAGIC2, n, len(used)), used, widths, body))


def encode_chunks(t: np.ndarray, v: np.ndarray, ver: np.ndarray,
                  bounds: Sequence[int]) -> list[bytes | None]:
    """``encode([t[a:b], v[a:b], ver[a:b]], (TIME, F64, INT))`` for each chunk ``(a, b)``
    of consecutive ``bounds``, the same bytes, with the work of all of them in two
    releases of the GIL (one compiled pass packs every chunk, one zstd call compresses
    them) instead of about five per chunk: concurrent requests then overlap on both
    cores instead of handing the GIL back and forth. None for a chunk whose values hold a
    NaN (:func:`encode` decides those bit by bit)."""
    b = np.ascontiguousarray(bounds, dtype=np.int64)
    nchunks = len(b) - 1
    buf = np.empty(24 * int(b[-1] - b[0]), np.uint8)
    info = np.zeros((nchunks, 8), np.uint64)
    kernels.pack_chunks(t, v, ver, b, buf, info)
    out: list[bytes | None] = [None] * nchunks
    groups: dict[zstandard.ZstdCompressor, list[int]] = {}  # chunks by their settings
    for c in range(nchunks):
        if info[c, 1] == F64 or info[c, 1] == F32:
            groups.setdefault(_frame_compressor(int(b[c + 1] - b[c])), []).append(c)
    for compressor, members in groups.items():
        seg = np.empty((len(members), 2), np.uint64)
        seg[:, 0] = info[members, 6]
        seg[:, 1] = info[members, 7] - info[members, 6]
        frames = compressor.multi_compress_to_buffer(
            zstandard.BufferWithSegments(buf, seg.tobytes()), threads=0)
        for i, c in enumerate(members):
            n = int(b[c + 1] - b[c])
            out[c] = b"".join((_HEAD.pack(_MAGIC2, n, 3), bytes(info[c, 0:3].astype(np.uint8)),
                               bytes(info[c, 3:6].astype(np.uint8)), frames[i].tobytes()))
    return out


def _column_bytes(kind: int, n: int, width: int) -> int:
    """Bytes of a C2 column in the frame: its first codes whole, then its planes."""
    heads = min(2 if kind == TIME else 1, n)
    return (4 if kind == F32 else 8) * heads + width * (n - heads)


def decode(blob: bytes) -> list[np.ndarray]:
    """Inverse of :func:`encode` (either layout): int64 arrays for TIME/INT, float64 for
    F32/F64."""
    magic, n, ncols = _HEAD.unpack_from(blob)
    if magic == _MAGIC2:
        return _decode2(blob, n, ncols)
    if magic != _MAGIC:
        raise ValueError("not a column blob")
    kinds = blob[_HEAD.size:_HEAD.size + ncols]
    body = _decompressor().decompress(blob[_HEAD.size + ncols:])
    raw = np.frombuffer(body, np.uint8)
    if len(raw) < n * sum(4 if k == F32 else 8 for k in kinds):
        raise ValueError("column blob is truncated")
    out, pos = [], 0
    for k in kinds:
        # One compiled pass per column (un-shuffle, un-zigzag, running sums), releasing
        # the GIL: the numpy steps it replaced were 15 % of the server's CPU under
        # distil's reads (py-spy).
        size = 4 if k == F32 else 8
        planes = raw[pos:pos + n * size]
        pos += n * size
        if k == F32:
            bits = np.empty(n, np.int32)
            kernels.unshuffle_delta32(planes, bits)
            out.append(bits.view(np.float32).astype(np.float64))
        elif k in (F64, INT, TIME):
            col = np.empty(n, np.int64)
            kernels.unshuffle_delta64(planes, 2 if k == TIME else 1, col)
            out.append(col.view(np.float64) if k == F64 else col)
        else:
            raise ValueError(f"unknown column kind {k}")
    return out


def _decode2(blob: bytes, n: int, ncols: int) -> list[np.ndarray]:
    at = _HEAD.size
    kinds, widths = blob[at:at + ncols], blob[at + ncols:at + 2 * ncols]
    raw = np.frombuffer(_decompressor().decompress(blob[at + 2 * ncols:]), np.uint8)
    out, pos = [], 0
    for k, w in zip(kinds, widths, strict=True):
        if k not in (TIME, INT, F32, F64) or w > (4 if k == F32 else 8):
            raise ValueError(f"unknown column kind {k} or width {w}")
        end = pos + _column_bytes(k, n, w)
        if len(raw) < end:  # the compiled decoder does not check bounds
            raise ValueError("column blob is truncated")
        part = raw[pos:end]
        pos = end
        if k == F32:
            bits = np.empty(n, np.int32)
            kernels.unpack_delta32(part, w, bits)
            out.append(bits.view(np.float32).astype(np.float64))
        else:
            col = np.empty(n, np.int64)
            kernels.unpack_delta64(part, 2 if k == TIME else 1, w, col)
            out.append(col.view(np.float64) if k == F64 else col)
    return out
