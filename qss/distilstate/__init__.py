"""qss-distil's state (instances' consumed versions, owed ranges, status and backlog),
beside the queue: SQLite ``distil.db`` in the queue's folder, or MongoDB database
``qss_distil`` when the queue is MongoDB. Here in the core so that the status report
(``qss-get --status``, ``upmu-adm status``) reads the backlog without the service.
"""
from __future__ import annotations

import os

from qss.settings import Settings, is_mongodb

from .base import Backlog, InstanceState, Range, StateError, StateStore, Status, describe
from .sqlite import FILENAME, SqliteState

__all__ = ["Backlog", "FILENAME", "InstanceState", "Range", "SqliteState", "StateError",
           "StateStore", "Status", "describe", "location", "open_state", "read_statuses"]


def location(settings: Settings) -> str:
    """``[distil] state``; else MongoDB beside a MongoDB queue (its URL); else
    ``distil.db`` beside the SQLite queue (or in ``[paths] srv``)."""
    if settings.distil.state:
        return settings.distil.state
    if is_mongodb(settings.queue.url):
        return settings.queue.url
    queue_db = settings.queue.sqlite_path
    folder = os.path.dirname(queue_db) if queue_db else settings.paths.srv
    return os.path.join(folder, FILENAME)


def open_state(where: str) -> StateStore:
    """The state at ``where``: a ``mongodb://`` URL or an SQLite file (created).

    Raises:
        StateError: it cannot be opened (one line).
    """
    if is_mongodb(where):
        from .mongo import MongoState
        return MongoState(where)
    return SqliteState(where)


def read_statuses(where: str) -> list[Status] | None:
    """Every instance's status at ``where``, without creating anything; None when no
    state was ever written there (qss-distil has not run).

    Raises:
        StateError: it exists but cannot be read.
    """
    if is_mongodb(where):
        from .mongo import MongoState
        store = MongoState(where)
        try:
            found = store.statuses()
        finally:
            store.close()
        return found or None
    if not os.path.exists(where):
        return None
    store = SqliteState(where, readonly=True)
    try:
        return store.statuses()
    finally:
        store.close()
