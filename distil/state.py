"""The engine's state (consumed versions, owed ranges, status and backlog): kept in the
core, :mod:`qss.distilstate`, so that the status report reads it too. ``SqliteStore(path)``
is the SQLite store (``distil.db`` beside the queue); :func:`open_state` also opens the
MongoDB one; :class:`StateStore` is what both are (the core's abstract class).
"""
from __future__ import annotations

from qss.distilstate import (FILENAME, Backlog, InstanceState, SqliteState, StateError,
                             StateStore, Status, describe, location, open_state)

#: The SQLite store (``SqliteStore(path)``), as the engine's tests open it.
SqliteStore = SqliteState

__all__ = ["Backlog", "FILENAME", "InstanceState", "SqliteStore", "StateError", "StateStore",
           "Status", "describe", "location", "open_state"]
