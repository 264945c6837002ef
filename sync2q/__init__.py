"""sync2q: moves queued .dat files into BTrDB, each point exactly once (architecture §1, §6).

The loop is :class:`~sync2q.worker.Worker`; the command is ``qss-sync2q``
(:func:`sync2q.cli.entry`, ``python -m sync2q``). See docs/sync2q.md.
"""
from .batch import Batch, FileWork, prepare
from .config import ConfigWatcher
from .insert import Inserter
from .quarantine import Quarantine, QuarantineError
from .worker import Options, Stats, Worker, WorkerFailed

__all__ = [
    "Batch", "ConfigWatcher", "FileWork", "Inserter", "Options", "Quarantine",
    "QuarantineError", "Stats", "Worker", "WorkerFailed", "prepare",
]
