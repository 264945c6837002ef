"""The engine's state (consumed versions, owed ranges, status and backlog): kept in the
core, :mod:`qss.distilstate`, so that the status report reads it too. ``StateStore(path)``
is the SQLite store (``distil.db`` beside the queue); :func:`open_state` also opens the
MongoDB one.
"""
from __future__ import annotations

from qss.distilstate import (FILENAME, Backlog, InstanceState, SqliteState, StateError,
                             Status, describe, location, open_state)
from qss.distilstate import StateStore as Store

#: The SQLite store (``StateStore(path)``), as the engine's tests open it.
StateStore = SqliteState

__all__ = ["Backlog", "FILENAME", "InstanceState", "StateError", "StateStore", "Status",
           "Store", "describe", "location", "open_state"]
