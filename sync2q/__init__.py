"""sync2q: moves queued .dat files into BTrDB, each point exactly once (DESIGN §1, §6).

The loop is :class:`~sync2q.worker.Worker`; the command is ``qss-sync2q``
(:func:`sync2q.cli.entry`, ``python -m sync2q``). See docs/sync2q.md.
"""
from .batch import Batch, FileWork, prepare
from .config import ConfigWatcher
from .connection import Backoff, Btrdb, ErrorKind, Outage, classify
from .insert import Inserter
from .quarantine import Quarantine, QuarantineError
from .streams import StreamConflict, StreamRegistry, StreamSpec, specs_of
from .worker import Options, Stats, Worker

__all__ = [
    "Backoff", "Batch", "Btrdb", "ConfigWatcher", "ErrorKind", "FileWork", "Inserter",
    "Options", "Outage", "Quarantine", "QuarantineError", "Stats", "StreamConflict",
    "StreamRegistry", "StreamSpec", "Worker", "classify", "prepare", "specs_of",
]
