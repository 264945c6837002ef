"""The queue of received files (architecture §5): one interface, :class:`Queue`, and two
backends chosen by ``[queue] url``: ``sqlite:////PATH`` (embedded, the default) and
``mongodb://HOST[:PORT]`` (the ``upmu_database`` of appliances in the field).

Used by the receiver (put), sync2q (unsynced, read, mark_synced), upmu-adm (put for
importdat, files and read for exportdat, delete for rem and delbackup, stats for list)
and qss-get (ensure_indexes, count_synced and delete_synced for clean_synced, resync_all
after a new database). See :mod:`qss.queue.base` for the model and ``ytagbase``.
"""
from __future__ import annotations

from .base import (DEFAULT_YTAGBASE, Contents, FileGone, FileUnreadable, PutResult, Queue,
                   QueueError, QueuedFile, SerialStats, Tally, Upload, check_identity,
                   in_period)

__all__ = [
    "Contents", "DEFAULT_YTAGBASE", "FileGone", "FileUnreadable", "PutResult", "Queue",
    "QueueError",
    "QueuedFile", "SerialStats", "Tally", "Upload", "check_identity", "in_period", "open_queue",
]


def open_queue(url: str) -> Queue:
    """Open the queue at ``url``: ``sqlite:////ABSOLUTE/PATH`` or ``mongodb://...``
    (the URL of ``Settings.queue.url``).

    Raises:
        QueueError: an unknown scheme, or the backend cannot open the queue (the message
            names the URL, the reason and the fix).
    """
    if url.startswith("sqlite:///"):
        from .sqlite import SqliteQueue
        path = url[len("sqlite:///"):]
        if not path.startswith("/"):
            raise QueueError(f"queue {url}: the database path must be absolute, "
                             f"e.g. sqlite:////ssd/srv/queue.db")
        return SqliteQueue(path)
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from .mongo import MongoQueue  # pymongo is imported only when MongoDB is used
        return MongoQueue(url)
    raise QueueError(f"queue {url!r}: unknown kind of queue; use sqlite:////PATH/queue.db "
                     f"or mongodb://HOST[:PORT]")
