"""glibc malloc settings for the processes that move multi-megabyte buffers (qss-btrdb,
qss-sync2q).

Why. An Arrow insert of 172,800 points is ~2.8 MB, and on its way through gRPC,
protobuf, Arrow and numpy it is copied into several fresh buffers of that size. glibc
serves allocations above its mmap threshold (128 KB, raised dynamically up to the size
of the last one freed) with a new mmap, and returns freed memory at the top of the heap
to the kernel above its trim threshold: each buffer then costs page faults and the
kernel zeroing every page, and munmap afterwards. Measured (gRPC alone, a handler that
returns at once, 2.7 MB messages): the server's CPU per point fell from 38-42 to 12-14
ns with the settings below; page faults and page clearing were most of it (perf).

The settings keep buffers up to 32 MB in the heap and keep up to 256 MB of freed memory
for reuse, so the memory of the largest burst stays with the process (qss-btrdb after
importing 41 M points: 806 MB resident instead of 734). Figures: docs/tsdb-design.md,
"Eighth session".
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -2, -3, -8

MMAP_THRESHOLD = 32 << 20    # glibc's maximum (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD = 256 << 20
TOP_PAD = 16 << 20


def keep_large_buffers(trim_threshold: int = TRIM_THRESHOLD, *,
                       arenas: int | None = None) -> bool:
    """Apply the settings to this process (call early, before threads allocate);
    False where malloc is not glibc's or refuses them (nothing changes then).
    ``trim_threshold``: how much freed memory to keep (qss-distil keeps less: see
    distil/cli.py); ``arenas``: at most this many malloc arenas (glibc gives threads up
    to 8 a core, each keeping its own freed memory)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = all(libc.mallopt(option, value) == 1 for option, value in (
            (M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, trim_threshold),
            (M_TOP_PAD, TOP_PAD)) + (((M_ARENA_MAX, arenas),) if arenas else ()))
    except (OSError, AttributeError):
        return False
    if not ok:
        log.debug("mallopt refused a setting; allocator defaults kept")
    return ok
