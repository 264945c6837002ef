"""From a queued file's bytes to the points sync2q inserts, and files grouped into batches.

:func:`prepare` parses one file (:func:`qss.dat.parse`) and keeps, per stream that has a
UUID in ``upmuconfig.ini``, its (times, values), dropping values BTrDB refuses (NaN and
Inf, status 425). What it could not keep is described in ``notes``, one line per file.

A :class:`Batch` is consecutive files of one uPMU whose samples fit in one insert RPC
(:data:`BATCH_SAMPLES` per stream, 24 one-minute files): one RPC per stream for 24 files
instead of 24, which is what makes a backlog fast. Each RPC is a transaction on the
server with a fixed cost (gRPC call, statistics blocks rewritten at every level, the
stream's last chunk merged and encoded again), and each batch is followed by a flush of
every stream. A file bigger than that goes alone and the client splits it. The batch's
files are marked synced only after every stream's insert and flush of the batch returned.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from qss import dat
from qss.queue import QueuedFile
from qss.streams import EXTENDED_ONLY_STREAMS, EXTENDED_STREAMS
from qss.upmuconfig import Upmu

from qss.streammeta import StreamSpec

# Damage to the file, as opposed to device behaviour (records dated 2000 before GPS
# lock, repeated seconds): damage makes the file's note a warning.
_DAMAGE = {"truncated", "interval", "timestamp"}


#: Samples per stream in one batch, and points in one ArrowInsert RPC
#: (:mod:`sync2q.insert` raises the client's 50,000 to it): 24 one-minute files at 120 Hz,
#: ~2.8 MB of Arrow per RPC, under gRPC's default 4 MB message limit that a BTrDB server
#: may keep. Measured (bench/tsdb_insert_profile.py --files-per-call 6 vs 24): server CPU
#: per point -25 %, client -20 %.
BATCH_SAMPLES = 24 * 7200


def max_batch_samples() -> int:
    """Samples per stream in one batch (one insert RPC per stream)."""
    return BATCH_SAMPLES


@dataclasses.dataclass(eq=False)
class FileWork:
    """One parsed file, ready to insert."""

    file: QueuedFile
    samples: int                                   # accepted samples (per base stream)
    streams: dict[str, tuple[np.ndarray, np.ndarray]]   # stream name -> (times, values)
    parse_ms: float
    notes: list[str]                               # what was not kept, and why
    warn: bool                                     # damage, or data without a stream

    @property
    def points(self) -> int:
        return sum(len(t) for t, _ in self.streams.values())


@dataclasses.dataclass(eq=False)
class Batch:
    """Consecutive files of one uPMU inserted together (see the module docstring)."""

    serial: str                       # as the queue knows it
    upmu: Upmu
    specs: dict[str, StreamSpec]
    files: list[FileWork] = dataclasses.field(default_factory=list)
    insert_ms: float = 0.0
    started: float = 0.0              # when its inserts were submitted
    # Joined times by the ids of their parts (kept, so the ids stay theirs).
    _times: dict = dataclasses.field(default_factory=dict, init=False, repr=False,
                                     compare=False)

    @property
    def samples(self) -> int:
        return sum(f.samples for f in self.files)

    @property
    def points(self) -> int:
        return sum(f.points for f in self.files)

    def stream_names(self) -> list[str]:
        """Streams with points in this batch, in stream order."""
        present = set()
        for f in self.files:
            present.update(f.streams)
        return [n for n in EXTENDED_STREAMS if n in present]

    def stream_points(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(times, values) of one stream over the batch's files, in file order (REPLACE
        keeps the last of equal timestamps, so a later file wins, as one by one)."""
        parts = [f.streams[name] for f in self.files if name in f.streams]
        if len(parts) == 1:
            return parts[0]
        # The streams of a file share one times array (qss.dat): join each set once.
        key = tuple(id(p[0]) for p in parts)
        if key not in self._times:   # the entry keeps the parts, so their ids stay theirs
            self._times[key] = ([p[0] for p in parts], np.concatenate([p[0] for p in parts]))
        return self._times[key][1], np.concatenate([p[1] for p in parts])

    def split(self) -> list[Batch]:
        """One batch per file (to find the file BTrDB refuses)."""
        return [dataclasses.replace(self, files=[f], insert_ms=0.0) for f in self.files]


def prepare(file: QueuedFile, data: bytes | bytearray, upmu: Upmu,
            specs: dict[str, StreamSpec], window: dat.DateWindow | None = None,
            clock=time.perf_counter) -> FileWork | str:
    """Parse a file for ``upmu``; return its work, or the reason nothing in it is usable
    (for quarantine)."""
    started = clock()
    parsed = dat.parse(data, window)
    if parsed.error is not None:
        return parsed.error
    notes: list[str] = []
    streams: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    unconfigured: list[str] = []
    dropped = 0
    for name, t, v in parsed.iter_streams():
        if not len(t):
            continue
        if name not in specs:
            unconfigured.append(name)
            continue
        finite = np.isfinite(v)
        if not finite.all():
            dropped += int(len(v) - np.count_nonzero(finite))
            t, v = t[finite], v[finite]
        if len(t):
            streams[name] = (t, v)
    damaged = any(s.kind in _DAMAGE for s in parsed.skipped)
    if parsed.skipped:
        notes.append(dat.summarize_skipped(parsed.skipped))
    if unconfigured:
        why = "no stream with a uuid in upmuconfig.ini"
        if not upmu.extended and set(unconfigured) <= set(EXTENDED_ONLY_STREAMS):
            why += " (the uPMU is configured as base; upmu-adm setext makes it extended)"
        noun = "stream" if len(unconfigured) == 1 else "streams"
        notes.append(f"{len(unconfigured)} {noun} not stored ({', '.join(unconfigured)}): "
                     f"{why}")
    if dropped:
        notes.append(f"{dropped} NaN or infinite values not stored (BTrDB refuses them)")
    return FileWork(file, len(parsed.times), streams, (clock() - started) * 1e3, notes,
                    damaged or bool(unconfigured) or bool(dropped))
