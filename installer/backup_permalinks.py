"""The plotter's permalinks in ``qss-get --backup`` and ``--restore``.

In SQLite they are in ``plotter.db`` beside the queue, with the plotter's accounts: the
backup copies that file (``installer.backup``). In MongoDB (``mr_plotter.permalinks``) a
backup carries them as ``plotter/permalinks.jsonl`` (:func:`qss.permalinks.dump`), read
through the store, which works for a MongoDB elsewhere too; a restore makes the
collection hold exactly those once the services run again (mongod is one of them).
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from qss.permalinks import COLLECTION, DATABASE, dump, load, sqlite_path

from .environment import Environment
from .files import DeployError
from .hooks import DataTools
from .services import DataPaths

ENTRY = "plotter/permalinks.jsonl"


def _errors() -> tuple[type[BaseException], ...]:
    try:
        from pymongo.errors import PyMongoError
    except ImportError:           # no MongoDB client: only SQLite stores
        return (sqlite3.Error, OSError, ValueError)
    return (sqlite3.Error, OSError, ValueError, PyMongoError)


def store_file(paths: DataPaths) -> Path | None:
    """The SQLite store's file (None: the permalinks are in MongoDB)."""
    path = sqlite_path(paths.queue_url, str(paths.srv))
    return None if path is None else Path(path)


def export(env: Environment, tools: DataTools, paths: DataPaths) -> bytes | None:
    """MongoDB's permalinks as JSON lines; None when they are in SQLite (``plotter.db`` is
    copied as a file) or MongoDB cannot be reached (a warning says so)."""
    path = store_file(paths)
    if path is not None:
        return None
    try:
        store = tools.open_permalinks(paths.queue_url, str(paths.srv))
        try:
            return dump(store)
        finally:
            store.close()
    except _errors() as exc:
        why = " ".join(str(exc).split())[:200]
        env.warn(f"the plotter's permalinks (MongoDB {DATABASE}.{COLLECTION}) cannot be "
                 f"read ({why}); the backup holds them only within MongoDB's own files "
                 f"([paths] srv, when MongoDB runs on this machine)")
        return None


def restore(env: Environment, tools: DataTools, paths: DataPaths, data: bytes) -> None:
    """Make the store hold exactly the permalinks of ``data`` (a backup's :data:`ENTRY`).

    Raises:
        DeployError: the SQLite store cannot be written (MongoDB: a warning instead, the
            rest of the restore being done).
    """
    path = store_file(paths)
    try:
        store = tools.open_permalinks(paths.queue_url, str(paths.srv))
        try:
            n = load(store, data)
        finally:
            store.close()
    except _errors() as exc:
        why = " ".join(str(exc).split())[:200]
        if path is not None:
            raise DeployError(f"cannot restore the plotter's permalinks into {path}: "
                              f"{why}") from None
        env.warn(f"the plotter's permalinks were not restored into MongoDB "
                 f"{DATABASE}.{COLLECTION} ({why}); they are in the backup's {ENTRY}")
        return
    where = path if path is not None else f"MongoDB {DATABASE}.{COLLECTION}"
    env.say(f"restored  {n} permalink{'' if n == 1 else 's'} of the plotter into {where}")
