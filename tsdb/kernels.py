"""Compiled (numba) loops for the write path: codec transforms (both ways), window
statistics and the checks and window boundaries of an insert batch.

Why. Per 50,000-point insert, numpy spent ~1.3 ms on the codec's transforms (delta,
zigzag, byte shuffle: one memory pass per step, per column) and ~1.5 ms on statistics
(dozens of numpy calls on arrays of tens to a thousand elements, dominated by call
overhead). Each of these is one simple loop here. Every kernel releases the GIL
(``nogil``), so concurrent inserts overlap on both cores, and is cached on disk
(``cache``), so a process compiles them once per installation, not per start.

The results are those of the numpy code they replaced: statistics use the same two-pass
mean/m2 and Chan's combination; the codec's transforms are exactly invertible
(``tests/test_tsdb_codec.py`` checks both blob layouts against plain-numpy references).
"""
from __future__ import annotations

import numpy as np
from numba import njit

_OPTS = dict(nogil=True, cache=True, boundscheck=False)


@njit(**_OPTS)
def unshuffle_delta64(raw, order, out):
    """Decode a column of a ``C1`` blob (see :mod:`tsdb.codec`): read ``len(out)``
    zigzagged deltas from the 8 byte planes of ``raw`` and write their running sums
    (``order`` 2: sums of sums) into int64 ``out``. Wraps like numpy's cumsum."""
    n = out.shape[0]
    z = out.view(np.uint64)
    for i in range(n):
        c = np.uint64(raw[i])
        for b in range(1, 8):
            c |= np.uint64(raw[b * n + i]) << np.uint64(8 * b)
        z[i] = c
    _running_sums(z, order, out)


@njit(**_OPTS)
def unshuffle_delta32(raw, out):
    """As :func:`unshuffle_delta64` for an F32 column of a ``C1`` blob (one delta, 4 byte
    planes) into int32 ``out``."""
    n = out.shape[0]
    acc = np.int32(0)
    for i in range(n):
        z = np.uint32(raw[i])
        for b in range(1, 4):
            z |= np.uint32(raw[b * n + i]) << np.uint32(8 * b)
        d = np.int32(z >> np.uint32(1)) ^ -np.int32(z & np.uint32(1))
        acc = np.int32(acc + d)
        out[i] = acc


# The C2 kernels index with unsigned integers: numba then drops its check for negative
# indices, which otherwise keeps the loops from being vectorised (2-5x slower).
_U0, _U1, _U2, _U8 = np.uint64(0), np.uint64(1), np.uint64(2), np.uint64(8)
_FF = np.uint64(0xFF)


@njit(**_OPTS)
def _byte_width(acc):
    """Bytes needed to hold the unsigned ``acc`` (0 for 0)."""
    w = 0
    while acc != _U0:
        w += 1
        acc >>= _U8
    return w


@njit(**_OPTS)
def pack_delta64(a, order, out):
    """The ``C2`` transform of int64 ``a`` (see :mod:`tsdb.codec`): its values delta-encoded
    ``order`` times (1 or 2) and zigzagged; the first ``k = min(order, len(a))`` codes as
    8 bytes each (little-endian), then the low ``w`` byte planes of the other ``len(a) - k``
    codes, where ``w`` is the fewest bytes that hold every one of them (0 for a constant
    column, 1 for the delta of deltas of regular sampling). Writes the 8*k + w*(n-k)
    bytes at the start of ``out`` (which must have room for them) and returns ``w``.
    Wraps like numpy."""
    n = np.uint64(a.shape[0])
    k = min(np.uint64(order), n)
    prev = np.int64(0)
    prevd = np.int64(0)
    for i in range(_U0, k):
        d = np.int64(a[i] - prev)
        prev = a[i]
        if order == 2:
            dd = np.int64(d - prevd)
            prevd = d
            d = dd
        z = np.uint64((d << 1) ^ (d >> 63))
        for b in range(8):
            out[_U8 * i + np.uint64(b)] = np.uint8((z >> np.uint64(8 * b)) & _FF)
    # The codes into a scratch array and their OR (which bytes they use) in one pass, then
    # each kept plane from the scratch: every loop vectorises (a point-by-point pass
    # storing into 8 planes at once took 5-7 ns a point for float64 values, this ~2.5).
    m = n - k
    z = np.empty(m, np.uint64)
    acc = _U0
    if order == 2:
        for i in range(k, n):
            d = np.int64(np.int64(a[i] - a[i - _U1]) - np.int64(a[i - _U1] - a[i - _U2]))
            c = np.uint64((d << 1) ^ (d >> 63))
            z[i - k] = c
            acc |= c
    else:
        for i in range(k, n):
            d = np.int64(a[i] - a[i - _U1])
            c = np.uint64((d << 1) ^ (d >> 63))
            z[i - k] = c
            acc |= c
    w = _byte_width(acc)
    for b in range(w):
        p = _U8 * k + np.uint64(b) * m
        s = np.uint64(8 * b)
        for i in range(_U0, m):
            out[p + i] = np.uint8((z[i] >> s) & _FF)
    return w


@njit(**_OPTS)
def pack_delta32(a, out):
    """As :func:`pack_delta64` (one delta) for int32 ``a``: the first code as 4 bytes, then
    the low ``w`` (0..4) byte planes of the others. Returns ``w``."""
    n = np.uint64(a.shape[0])
    k = min(_U1, n)
    if k:
        c = np.uint32(np.int32(a[0] << 1) ^ np.int32(a[0] >> 31))
        for b in range(4):
            out[b] = np.uint8((c >> np.uint32(8 * b)) & np.uint32(0xFF))
    m = n - k
    z = np.empty(m, np.uint32)
    acc = np.uint32(0)
    for i in range(k, n):
        d = np.int32(a[i] - a[i - _U1])
        c = np.uint32(np.int32(d << 1) ^ np.int32(d >> 31))
        z[i - k] = c
        acc |= c
    w = _byte_width(np.uint64(acc))
    for b in range(w):
        p = np.uint64(4) * k + np.uint64(b) * m
        s = np.uint32(8 * b)
        for i in range(_U0, m):
            out[p + i] = np.uint8((z[i] >> s) & np.uint32(0xFF))
    return w


@njit(**_OPTS)
def unpack_delta64(raw, order, w, out):
    """Inverse of :func:`pack_delta64` into int64 ``out`` (its length says how many values;
    ``raw`` holds at least the 8*k + w*(n-k) bytes). The codes are gathered a plane at a
    time (vectorised), then un-zigzagged and summed in one pass."""
    n = np.uint64(out.shape[0])
    k = min(np.uint64(order), n)
    z = out.view(np.uint64)
    for i in range(_U0, k):
        c = _U0
        for b in range(8):
            c |= np.uint64(raw[_U8 * i + np.uint64(b)]) << np.uint64(8 * b)
        z[i] = c
    _gather_planes(raw, _U8 * k, w, z[k:])
    _running_sums(z, order, out)


@njit(**_OPTS)
def _gather_planes(raw, base, w, z):
    """Fill the unsigned codes ``z`` (uint64 or uint32) from their ``w`` low byte planes
    stored at ``raw[base:]``, a plane at a time (each loop vectorises); zeros for w 0."""
    m = np.uint64(z.shape[0])
    if w == 0:
        z[:] = 0
        return
    for i in range(_U0, m):
        z[i] = raw[base + i]
    for b in range(1, w):
        p = base + np.uint64(b) * m
        s = np.uint64(8 * b)
        for i in range(_U0, m):
            z[i] |= np.uint64(raw[p + i]) << s


@njit(**_OPTS)
def _running_sums(z, order, out):
    """Un-zigzag the codes ``z`` (uint64) and write their running sums (``order`` 2: sums
    of sums) into int64 ``out``, which may be ``z`` itself viewed as int64. Wraps like
    numpy's cumsum."""
    acc = np.int64(0)
    accd = np.int64(0)
    for i in range(z.shape[0]):
        c = z[i]
        d = np.int64(c >> np.uint64(1)) ^ -np.int64(c & np.uint64(1))
        if order == 2:
            accd += d
            acc += accd
        else:
            acc += d
        out[i] = acc


@njit(**_OPTS)
def unpack_delta32(raw, w, out):
    """Inverse of :func:`pack_delta32` into int32 ``out``."""
    n = np.uint64(out.shape[0])
    k = min(_U1, n)
    z = out.view(np.uint32)
    if k:
        z[0] = (np.uint32(raw[0]) | (np.uint32(raw[1]) << np.uint32(8))
                | (np.uint32(raw[2]) << np.uint32(16)) | (np.uint32(raw[3]) << np.uint32(24)))
    _gather_planes(raw, np.uint64(4) * k, w, z[k:])
    acc = np.int32(0)
    for i in range(_U0, n):
        c = z[i]
        d = np.int32(c >> np.uint32(1)) ^ -np.int32(c & np.uint32(1))
        acc = np.int32(acc + d)
        out[i] = acc


@njit(**_OPTS)
def float32_bits(v, out):
    """When every float64 of ``v`` is exactly a float32, write the float32s into ``out``
    and return 1; return 0 when one is not, 2 when there is a NaN (the caller decides
    those bit by bit). Blocks of 1024 without a branch inside (vectorised: half the time
    of stopping at the first inexact value), stopping after the first inexact block."""
    n = v.shape[0]
    for lo in range(0, n, 1024):
        inexact = False
        nan = False
        for i in range(lo, min(lo + 1024, n)):
            x = v[i]
            f = np.float32(x)
            out[i] = f
            inexact |= np.float64(f) != x  # equal values are equal bits (zeros keep sign)
            nan |= x != x
        if nan:
            return 2
        if inexact:
            return 0
    return 1


#: Column kinds of :mod:`tsdb.codec` (the same numbers), for :func:`pack_chunks`.
_TIME, _INT, _F32, _F64, _NAN = 0, 1, 2, 3, -1


@njit(**_OPTS)
def pack_chunks(t, v, ver, bounds, buf, info):
    """The ``C2`` codes of several chunks in one call (one release of the GIL, where a call
    per column and chunk released it some 50 times an insert and left concurrent
    requests waiting for each other): chunk ``c`` is points ``bounds[c]:bounds[c + 1]``
    of the columns time ``t`` (TIME), value ``v`` (F32 when every value is exactly a
    float32, else F64) and version ``ver`` (INT). Its codes go to ``buf``, the chunks
    one after another, each as :func:`tsdb.codec.encode` lays out its frame's input;
    ``info[c]`` gets the three kinds, the three widths, and where the chunk's bytes begin
    and end in ``buf``. A chunk whose values hold a NaN gets kind -1 (its F32 or F64
    choice is made bit by bit by the caller) and no bytes. ``buf`` needs room for 24
    bytes a point."""
    pos = np.uint64(0)
    for c in range(bounds.shape[0] - 1):
        lo, hi = bounds[c], bounds[c + 1]
        n = np.uint64(hi - lo)
        info[c, 6] = pos
        w = pack_delta64(t[lo:hi], 2, buf[pos:])
        info[c, 0], info[c, 3] = _TIME, w
        pos += _U8 * min(_U2, n) + np.uint64(w) * (n - min(_U2, n))
        f = np.empty(n, np.float32)
        exact = float32_bits(v[lo:hi], f)
        if exact == 2:
            info[c, 1] = _NAN
            info[c, 7] = info[c, 6]
            pos = np.uint64(info[c, 6])
            continue
        if exact == 1:
            w = pack_delta32(f.view(np.int32), buf[pos:])
            info[c, 1], info[c, 4] = _F32, w
            pos += np.uint64(4) * min(_U1, n) + np.uint64(w) * (n - min(_U1, n))
        else:
            w = pack_delta64(v[lo:hi].view(np.int64), 1, buf[pos:])
            info[c, 1], info[c, 4] = _F64, w
            pos += _U8 * min(_U1, n) + np.uint64(w) * (n - min(_U1, n))
        w = pack_delta64(ver[lo:hi], 1, buf[pos:])
        info[c, 2], info[c, 5] = _INT, w
        pos += _U8 * min(_U1, n) + np.uint64(w) * (n - min(_U1, n))
        info[c, 7] = pos


@njit(**_OPTS)
def _range_stats(values, lo, hi):
    """(min, mean, max, m2) of ``values[lo:hi]`` (hi > lo), two passes for an exact m2."""
    s = 0.0
    a = values[lo]
    b = values[lo]
    for j in range(lo, hi):
        x = values[j]
        s += x
        if x < a:
            a = x
        if x > b:
            b = x
    m = s / (hi - lo)
    q = 0.0
    for j in range(lo, hi):
        d = values[j] - m
        q += d * d
    return a, m, b, q


@njit(**_OPTS)
def keyed_stats(keys, values):
    """Window statistics of points with sorted window keys: (win, count, min, mean, max,
    m2), m2 from the deviations from each window's mean (two passes, as numpy did)."""
    n = keys.shape[0]
    groups = 0
    for i in range(n):
        if i == 0 or keys[i] != keys[i - 1]:
            groups += 1
    win = np.empty(groups, np.int64)
    count = np.empty(groups, np.int64)
    mn = np.empty(groups, np.float64)
    mean = np.empty(groups, np.float64)
    mx = np.empty(groups, np.float64)
    m2 = np.empty(groups, np.float64)
    g = -1
    lo = 0
    for i in range(n + 1):
        if i == n or (i > 0 and keys[i] != keys[i - 1]):
            g += 1
            a, m, b, q = _range_stats(values, lo, i)
            win[g] = keys[lo]
            count[g] = i - lo
            mn[g] = a
            mean[g] = m
            mx[g] = b
            m2[g] = q
            lo = i
    return win, count, mn, mean, mx, m2


@njit(**_OPTS)
def replace_windows(win, count, mn, mean, mx, m2, dirty, clear_lo, clear_hi,
                    nwin, ncount, nmn, nmean, nmx, nm2):
    """A block's records after a write: the old records (``win`` ... ``m2``) less those of
    the sorted ``dirty`` windows and of clear_lo <= w <= clear_hi, merged in window
    order with the fresh records (``nwin`` ... ``nm2``, sorted, all in ``dirty``)."""
    n, k, nd = win.shape[0], nwin.shape[0], dirty.shape[0]
    keep = np.empty(n, np.bool_)
    kept = 0
    d = 0
    for i in range(n):
        w = win[i]
        while d < nd and dirty[d] < w:
            d += 1
        ok = not (d < nd and dirty[d] == w) and not (clear_lo <= w <= clear_hi)
        keep[i] = ok
        kept += ok
    m = kept + k
    ow = np.empty(m, np.int64)
    oc = np.empty(m, np.int64)
    omn = np.empty(m, np.float64)
    ome = np.empty(m, np.float64)
    omx = np.empty(m, np.float64)
    om2 = np.empty(m, np.float64)
    i = 0
    j = 0
    for o in range(m):
        while i < n and not keep[i]:
            i += 1
        if j < k and (i >= n or nwin[j] < win[i]):
            ow[o], oc[o], omn[o], ome[o], omx[o], om2[o] = \
                nwin[j], ncount[j], nmn[j], nmean[j], nmx[j], nm2[j]
            j += 1
        else:
            ow[o], oc[o], omn[o], ome[o], omx[o], om2[o] = \
                win[i], count[i], mn[i], mean[i], mx[i], m2[i]
            i += 1
    return ow, oc, omn, ome, omx, om2


@njit(**_OPTS)
def combine_windows(win, count, mn, mean, mx, m2, shift, wanted):
    """Records of the windows ``w >> shift`` in the sorted ``wanted`` that hold any of the
    sorted records given, combined by Chan's formula."""
    n, nw = win.shape[0], wanted.shape[0]
    groups = 0
    d = 0
    for i in range(n):
        key = win[i] >> shift
        if i > 0 and key == win[i - 1] >> shift:
            continue
        while d < nw and wanted[d] < key:
            d += 1
        if d < nw and wanted[d] == key:
            groups += 1
    ow = np.empty(groups, np.int64)
    oc = np.empty(groups, np.int64)
    omn = np.empty(groups, np.float64)
    ome = np.empty(groups, np.float64)
    omx = np.empty(groups, np.float64)
    om2 = np.empty(groups, np.float64)
    g = 0
    d = 0
    lo = 0
    while lo < n:
        key = win[lo] >> shift
        hi = lo + 1
        while hi < n and win[hi] >> shift == key:
            hi += 1
        while d < nw and wanted[d] < key:
            d += 1
        if d < nw and wanted[d] == key:
            c = np.int64(0)
            s = 0.0
            a = mn[lo]
            b = mx[lo]
            for i in range(lo, hi):
                c += count[i]
                s += count[i] * mean[i]
                if mn[i] < a:
                    a = mn[i]
                if mx[i] > b:
                    b = mx[i]
            mu = s / c
            q = 0.0
            for i in range(lo, hi):
                dev = mean[i] - mu
                q += m2[i] + count[i] * dev * dev
            ow[g], oc[g], omn[g], ome[g], omx[g], om2[g] = key, c, a, mu, b, q
            g += 1
        lo = hi
    return ow, oc, omn, ome, omx, om2


@njit(**_OPTS)
def check_batch(t, v):
    """One pass (of simple loops the compiler vectorises) over an insert batch: (bad,
    tmin, tmax, ascending, repeats) where bad is 0, 1 for a NaN or 2 for an infinity
    among ``v`` (NaN wins), ``ascending`` whether ``t`` never decreases and ``repeats``
    whether two neighbours share a time (only meaningful when ascending)."""
    n = t.shape[0]
    nonfinite = False
    for i in range(n):
        nonfinite |= not (abs(v[i]) <= 1.7976931348623157e308)  # NaN compares false
    bad = 0
    if nonfinite:
        bad = 2
        for i in range(n):
            if v[i] != v[i]:
                bad = 1
                break
    tmin = t[0]
    tmax = t[0]
    for i in range(n):
        tmin = min(tmin, t[i])
        tmax = max(tmax, t[i])
    down = False
    repeats = False
    for i in range(1, n):
        down |= t[i] < t[i - 1]
        repeats |= t[i] == t[i - 1]
    return bad, tmin, tmax, not down, repeats


@njit(**_OPTS)
def window_starts(t, shift):
    """Indices of sorted ``t`` where a new window ``t >> shift`` begins (0 included)."""
    n = t.shape[0]
    out = np.empty(n, np.int64)
    if n == 0:
        return out
    out[0] = 0
    k = 1
    end = ((t[0] >> shift) + 1) << shift  # first time of the next window
    for i in range(1, n):
        if t[i] >= end:
            out[k] = i
            k += 1
            end = ((t[i] >> shift) + 1) << shift
    return out[:k].copy()


@njit(**_OPTS)
def unique_windows(t, shift):
    """The sorted distinct windows ``t >> shift`` of sorted ``t``."""
    starts = window_starts(t, shift)
    out = np.empty(starts.shape[0], np.int64)
    for k in range(starts.shape[0]):
        out[k] = t[starts[k]] >> shift
    return out


@njit(**_OPTS)
def window_stats(t, v, starts, shift, wanted):
    """Statistics (as :func:`keyed_stats`) of the windows of sorted points that begin at
    the indices ``starts`` (from :func:`window_starts`) and whose key ``t >> shift`` is in
    the sorted ``wanted``; other windows are skipped unread."""
    n, ns, nw = t.shape[0], starts.shape[0], wanted.shape[0]
    win = np.empty(nw, np.int64)
    count = np.empty(nw, np.int64)
    mn = np.empty(nw, np.float64)
    mean = np.empty(nw, np.float64)
    mx = np.empty(nw, np.float64)
    m2 = np.empty(nw, np.float64)
    g = 0
    d = 0
    for k in range(ns):
        lo = starts[k]
        key = t[lo] >> shift
        while d < nw and wanted[d] < key:
            d += 1
        if d == nw:
            break
        if wanted[d] != key:
            continue
        hi = starts[k + 1] if k + 1 < ns else n
        a, m, b, q = _range_stats(v, lo, hi)
        win[g] = key
        count[g] = hi - lo
        mn[g] = a
        mean[g] = m
        mx[g] = b
        m2[g] = q
        g += 1
    return win[:g], count[:g], mn[:g], mean[:g], mx[:g], m2[:g]


@njit(**_OPTS)
def _add_pair(a, lo, hi):
    """The sorted unique ``a`` with lo <= hi added."""
    n = a.shape[0]
    out = np.empty(n + 2, np.int64)
    m = 0
    i = 0
    extra = (lo, hi)
    for e in range(2):
        x = extra[e]
        if e == 1 and hi == lo:
            break
        while i < n and a[i] < x:
            out[m] = a[i]
            m += 1
            i += 1
        if i < n and a[i] == x:
            continue
        out[m] = x
        m += 1
    while i < n:
        out[m] = a[i]
        m += 1
        i += 1
    return out[:m]


@njit(**_OPTS)
def _shift_unique(a, shift):
    n = a.shape[0]
    out = np.empty(n, np.int64)
    m = 0
    for i in range(n):
        x = a[i] >> shift
        if m == 0 or out[m - 1] != x:
            out[m] = x
            m += 1
    return out[:m]


@njit(**_OPTS)
def level_windows(dirty, cleared, clear_lo, clear_hi, nlevels, stride, block_bits):
    """For statistics levels k = 0 .. nlevels-1 (windows 2^(stride*k) times those of
    ``dirty``): the dirty windows of each (``dirty`` at level 0; each next one the
    previous ones shifted by ``stride``, plus, when ``cleared``, the shifted ends of the
    cleared range) and the blocks (windows >> block_bits, plus the cleared range's end
    blocks) to rewrite. Returns (dirty, dirty offsets, blocks, block offsets), flat."""
    nd = dirty.shape[0]
    dflat = np.empty(nlevels * (nd + 2), np.int64)
    bflat = np.empty(nlevels * (nd + 2), np.int64)
    doff = np.zeros(nlevels + 1, np.int64)
    boff = np.zeros(nlevels + 1, np.int64)
    cur = dirty
    lo, hi = clear_lo, clear_hi
    dm = 0
    bm = 0
    for k in range(nlevels):
        if k > 0:
            cur = _shift_unique(cur, stride)
            lo, hi = lo >> stride, hi >> stride
            if cleared:
                cur = _add_pair(cur, lo, hi)
        for i in range(cur.shape[0]):
            dflat[dm] = cur[i]
            dm += 1
        doff[k + 1] = dm
        blocks = _shift_unique(cur, block_bits)
        if cleared:
            blocks = _add_pair(blocks, lo >> block_bits, hi >> block_bits)
        for i in range(blocks.shape[0]):
            bflat[bm] = blocks[i]
            bm += 1
        boff[k + 1] = bm
    return dflat[:dm], doff, bflat[:bm], boff


@njit(**_OPTS)
def update_levels(dflat, doff, cleared, clear_lo, clear_hi, stride,
                  fwin, fcount, fmn, fmean, fmx, fm2,
                  win, count, mn, mean, mx, m2, ooff):
    """Every level's records after a write, finest first: at level k the old records
    ``win[ooff[k]:ooff[k+1]]`` ... less those of the dirty windows
    ``dflat[doff[k]:doff[k+1]]`` and of the cleared range (clear_lo, clear_hi shifted by
    stride*k; none unless ``cleared``), merged with the fresh records, which are the
    given ones at level 0 and above it the level below's result combined into this
    level's dirty windows (:func:`replace_windows`, :func:`combine_windows`). Returns
    the six columns of all levels, flat, and the offsets of each level in them."""
    nlevels = doff.shape[0] - 1
    total = (ooff[nlevels] - ooff[0]) + dflat.shape[0]
    ow = np.empty(total, np.int64)
    oc = np.empty(total, np.int64)
    omn = np.empty(total, np.float64)
    ome = np.empty(total, np.float64)
    omx = np.empty(total, np.float64)
    om2 = np.empty(total, np.float64)
    off = np.zeros(nlevels + 1, np.int64)
    lo, hi = clear_lo, clear_hi
    if not cleared:
        lo, hi = 1, 0  # lo > hi: nothing
    nw, nc, nmn, nme, nmx, nm2 = fwin, fcount, fmn, fmean, fmx, fm2
    m = 0
    for k in range(nlevels):
        if k > 0 and cleared:
            lo, hi = lo >> stride, hi >> stride
        a, b = ooff[k], ooff[k + 1]
        rw, rc, rmn, rme, rmx, rm2 = replace_windows(
            win[a:b], count[a:b], mn[a:b], mean[a:b], mx[a:b], m2[a:b],
            dflat[doff[k]:doff[k + 1]], lo, hi, nw, nc, nmn, nme, nmx, nm2)
        for i in range(rw.shape[0]):
            ow[m], oc[m], omn[m], ome[m], omx[m], om2[m] = \
                rw[i], rc[i], rmn[i], rme[i], rmx[i], rm2[i]
            m += 1
        off[k + 1] = m
        if k + 1 < nlevels:
            nw, nc, nmn, nme, nmx, nm2 = combine_windows(
                rw, rc, rmn, rme, rmx, rm2, stride, dflat[doff[k + 1]:doff[k + 2]])
    return ow[:m], oc[:m], omn[:m], ome[:m], omx[:m], om2[:m], off


def warm_up() -> None:
    """Load (or compile, the first time) every kernel for the array types the write path
    passes, so that the first request does not wait for it (~0.2 s from the disk cache,
    a few seconds when compiling)."""
    i, f = np.arange(4, dtype=np.int64), np.arange(4.0)
    ro_f = f.copy()
    ro_f.flags.writeable = False
    ro_i = i.copy()
    ro_i.flags.writeable = False
    for a in (i, ro_i):
        pack_delta64(a, 1, np.empty(32, np.uint8))
    pack_delta32(i.astype(np.int32), np.empty(16, np.uint8))
    # Decoding reads blobs straight from SQLite: read-only bytes.
    ro_u8 = np.zeros(32, np.uint8)
    ro_u8.flags.writeable = False
    unpack_delta64(ro_u8, 1, 1, np.empty(4, np.int64))
    unpack_delta32(ro_u8[:16], 1, np.empty(4, np.int32))
    unshuffle_delta64(ro_u8, 1, np.empty(4, np.int64))  # blobs written before C2
    unshuffle_delta32(ro_u8[:16], np.empty(4, np.int32))
    for a in (i, ro_i):
        for x in (f, ro_f):
            pack_chunks(a, x, i, np.array([0, 2, 4]), np.empty(96, np.uint8),
                        np.empty((2, 8), np.uint64))
    for x in (f, ro_f):
        float32_bits(x, np.empty(4, np.float32))
        keyed_stats(i, x)
    s = keyed_stats(i, f)
    replace_windows(*s, i[:2], 1, 0, *s)
    combine_windows(*s, 4, i[:1])
    for c in (False, True):
        d, do, _, _ = level_windows(i[:2], c, 0, 1, 3, 1, 1)
        update_levels(d, do, c, 0, 1, 1, *s, *s, np.array([0, 4, 4, 4], np.int64))
    # Insert batches arrive read-only (Arrow buffers) and become writable once merged
    # with stored points: every combination occurs.
    for a in (i, ro_i):
        starts = window_starts(a, 1)
        unique_windows(a, 1)
        for x in (f, ro_f):
            check_batch(a, x)
            window_stats(a, x, starts, 1, i[:2])
