"""The embedded queue: one SQLite file for the metadata and a directory of data segments
beside it for the contents (``[queue] url = sqlite:////ssd/srv/queue.db``; the segments
in ``/ssd/srv/queue.db.data/``).

The same model as MongoDB's ``upmu_database`` (architecture §5), in these tables::

    received_files  id, serial_number, name, size, time_received (µs since 1970, UTC),
                    ytag, published, generation, segment, seg_offset;
                    UNIQUE (serial_number, name), INDEX (serial_number, ytag, name),
                    INDEX (segment)
    latest_times    serial_number PRIMARY KEY, time_received (µs)
    meta            key PRIMARY KEY, value: schema version, ytagbase
    file_data       id (= received_files.id), data BLOB: contents of schema 1 only
    uploads, upload_pieces: schema 1's unfinished uploads (deleted by the receiver)

Why it looks like this:

- Each file's contents are written once: appended to a segment file
  (:mod:`qss.queue.sqlite_segments`) and fdatasynced, then the rows pointing into it
  (``segment``, ``seg_offset``, ``size``) committed. Contents in SQLite went through
  the WAL and again into the database file at the checkpoint: 1.1 to 1.3 MB of writes
  per 0.55 MB file, and each commit's fsync shared the disk with the checkpoint.
- Crash safety: WAL journal with ``synchronous=FULL``, so a committed transaction is on
  disk when ``COMMIT`` returns; the contents are durable before it (data fsync first), so
  a committed row never points at bytes a crash lost. A file and its device's latest
  time are one transaction, so after a crash a file is either whole or absent. What a
  crash leaves in segments (contents without rows) is cut or deleted at the next open.
- Queues of schema 1 (contents in ``file_data``) are used as they are: their rows have no
  segment and are read, compared and deleted there; new and replaced contents go to
  segments. Opening one adds the two columns (no rewrite) and makes it schema 2.
- Memory: contents are written from the caller's buffers and read into one new buffer
  (``os.preadv``), never joined or copied whole.
- 4 KiB pages (the contents are elsewhere: a commit writes a few small pages); schema 1
  files keep their 64 KiB pages. ``auto_vacuum=INCREMENTAL`` (set at creation) so
  deleting gives the metadata's space back without a full VACUUM.
- Several processes: every write is a short ``BEGIN IMMEDIATE`` transaction, waits for
  the lock up to ``busy_timeout``, and iterators read in pages of short transactions
  (a reader holding a snapshot for long would stop checkpoints and grow the WAL). Each
  writing process appends to segments of its own (an ``flock`` says whose).
- ``generation`` counts replacements, so marking a file synced after it was replaced by
  different bytes marks nothing.
- Uploads (:meth:`SqliteQueue.open_upload`, the receiver's way for files that arrive in
  several pieces; uPMUs' own files fit in one piece and are put whole): each piece is
  appended as it arrives to a data file of the upload's own, without an fsync, so a
  sender costs the disk only what it really sent. The commit fdatasyncs it (outside the
  queue's lock), renames it into a segment of its own and commits its row. Until then no
  reader sees it; an abort deletes it; the receiver deletes at its start those a crash
  left (:meth:`SqliteQueue.unfinished_uploads`).

Names are stored as text values, never as file-system paths; segment names are the
queue's own.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import os
import sqlite3
import threading
from collections.abc import Iterator

from .base import (DEFAULT_YTAGBASE, Contents, FileGone, FileUnreadable, PutResult, Queue,
                   QueueError, QueuedFile, SerialStats, Tally, Upload, check_identity,
                   in_period, log, log_replaced, utcnow)
from .sqlite_segments import PART_SUFFIX, SEG_SUFFIX, Segments
from .sqlite_upload import SqliteUpload, as_bytes_view, to_us
from .sqlite_wal import Checkpointer

__all__ = ["SqliteQueue"]

SCHEMA_VERSION = 2        # 2: contents in segments (received_files.segment, seg_offset)
PAGE_SIZE = 4096          # metadata only: a commit writes a few small pages
_CHUNK = 1 << 20          # blob I/O piece: bounds the extra memory per file
_DELETE_BATCH = 256       # files per delete transaction: keeps write locks short
_VACUUM_STEP = 256        # pages moved per incremental-vacuum transaction
_WAL_LIMIT = 64 << 20     # WAL size kept after a checkpoint
_CACHE_KIB = 4096         # page cache per connection (metadata pages; blobs stream past it)
_FORGET_PIECES = 8        # pieces of an abandoned upload deleted per transaction
_BATCH_FILES = 64         # group commit: at most this many files per transaction,
_BATCH_BYTES = 64 << 20   # and this many bytes (a bigger file goes alone)

_SCHEMA = [
    ("table received_files", """
     CREATE TABLE IF NOT EXISTS received_files (
         id INTEGER PRIMARY KEY,
         serial_number TEXT NOT NULL,
         name TEXT NOT NULL,
         size INTEGER NOT NULL,
         time_received INTEGER NOT NULL,
         ytag INTEGER NOT NULL DEFAULT 0,
         published INTEGER NOT NULL DEFAULT 0,
         generation INTEGER NOT NULL DEFAULT 1,
         segment TEXT,
         seg_offset INTEGER,
         UNIQUE (serial_number, name))"""),
    ("table file_data", """
     CREATE TABLE IF NOT EXISTS file_data (id INTEGER PRIMARY KEY, data BLOB NOT NULL)"""),
    ("table latest_times", """
     CREATE TABLE IF NOT EXISTS latest_times (
         serial_number TEXT PRIMARY KEY, time_received INTEGER NOT NULL)"""),
    ("table meta", """
     CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID"""),
    ("table uploads", """
     CREATE TABLE IF NOT EXISTS uploads (id INTEGER PRIMARY KEY, file INTEGER)"""),
    ("table upload_pieces", """
     CREATE TABLE IF NOT EXISTS upload_pieces (
         upload INTEGER NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL,
         PRIMARY KEY (upload, seq))"""),
]
_INDEXES = [
    ("received_files_sync", "received_files (serial_number, ytag, name)"),
    ("received_files_segment", "received_files (segment)"),
]

_COLUMNS = "id, serial_number, name, size, time_received, ytag, generation"


def _from_us(us: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=us)


def _as_views(data: Contents) -> list[memoryview]:
    """The contents as byte views without a copy: one, or one per piece given."""
    if isinstance(data, (list, tuple)):
        return [as_bytes_view(piece) for piece in data]
    return [as_bytes_view(data)]


def _views_equal(a: list[memoryview], b: list[memoryview]) -> bool:
    """True when the pieces ``a`` and ``b`` hold the same bytes (however they are cut)."""
    if sum(v.nbytes for v in a) != sum(v.nbytes for v in b):
        return False
    if len(a) == len(b) == 1:
        return a[0] == b[0]
    return b"".join(a) == b"".join(b)   # rare: a resend within one batch, in pieces


@dataclasses.dataclass(eq=False)
class _Put:
    """One put waiting for (or done by) a group commit."""

    serial: str
    name: str
    views: list[memoryview]
    size: int
    when: int
    update_latest: bool
    result: PutResult | None = None
    old_size: int = 0
    error: QueueError | None = None
    old_segment: str | None = None   # a replaced version's segment (to free)


class SqliteQueue(Queue):
    """The embedded queue in the SQLite file ``path`` (created with its tables if missing).

    Raises:
        QueueError: the directory does not exist (e.g. the data drive is not mounted), the
            file is not a queue or is from a newer suite, or SQLite cannot open it.
    """

    group_commit = True

    def __init__(self, path: str, *, busy_timeout: float = 30.0) -> None:
        self.path = os.path.abspath(path)
        self.url = f"sqlite:///{self.path}"
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            # Creating it could fill the root file system while the data drive is unmounted.
            raise QueueError(f"queue {self.url}: directory {directory} does not exist; "
                             f"mount the data drive or create the directory")
        self._lock = threading.RLock()
        self._checkpointer: Checkpointer | None = None   # started by the first write
        self._pending: collections.deque[_Put] = collections.deque()
        self._pending_lock = threading.Lock()
        self._segments = Segments(self.path)
        try:
            # SQLite creates a new database 0644 minus the umask, so services with umask 007
            # would make it 0640 and lock the operator (group qss) out; creating it first
            # with 0666 minus the umask keeps it group-writable. Its -wal/-shm files take
            # the database's mode.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666))
            self._db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None,
                                       check_same_thread=False)
        except OSError as exc:
            raise QueueError(f"queue {self.url}: cannot open: {exc.strerror}") from None
        except sqlite3.Error as exc:
            raise QueueError(f"queue {self.url}: cannot open: {exc}") from None
        try:
            self._setup()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise QueueError(f"queue {self.url}: cannot use it as a queue: {exc}") from None
        except QueueError:
            self._db.close()
            raise
        try:
            self._sweep()
        except (OSError, sqlite3.Error) as exc:   # a later open or reclaim tries again
            log.warning("queue %s: cannot clean its data files: %s", self.url, exc)

    # -- setup ----------------------------------------------------------------------

    def _setup(self) -> None:
        db = self._db
        # Both only take effect on a new file, before the first table, and must come before
        # anything reads the file: reading first sizes the page cache for 4 KiB pages, and
        # 64 KiB pages then made it 32 MB (measured), not the 4 MiB asked for below.
        db.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        db.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        # 64 KiB in files of schema 1: the checkpointer sizes the WAL in pages.
        self._page_size = db.execute("PRAGMA page_size").fetchone()[0]
        if mode.lower() != "wal":
            raise QueueError(f"queue {self.url}: cannot switch to WAL journal (got {mode!r})")
        db.execute("PRAGMA synchronous = FULL")
        db.execute(f"PRAGMA journal_size_limit = {_WAL_LIMIT}")
        # No checkpoint inside a commit: the background checkpointer does them (see
        # Checkpointer); inline ones stalled commits by ~100 ms every 64 MB.
        db.execute("PRAGMA wal_autocheckpoint = 0")
        with self._write(checkpoints=False):   # a reader needs no checkpointer thread
            for _, sql in _SCHEMA:
                db.execute(sql)
            row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is not None and int(row[0]) > SCHEMA_VERSION:
                raise QueueError(f"queue {self.url}: schema version {row[0]} is newer than "
                                 f"this suite's ({SCHEMA_VERSION}); update the suite")
            columns = {r[1] for r in db.execute("PRAGMA table_info(received_files)")}
            if "segment" not in columns:
                # Schema 1 (contents in file_data): its rows stay as they are and are read
                # from there; new contents go to segments. Adding columns rewrites nothing.
                db.execute("ALTER TABLE received_files ADD COLUMN segment TEXT")
                db.execute("ALTER TABLE received_files ADD COLUMN seg_offset INTEGER")
            self._create_indexes()
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)",
                       (SCHEMA_VERSION,))

    def _create_indexes(self) -> list[str]:
        existing = {r[0] for r in self._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index'")}
        created = []
        for name, spec in _INDEXES:
            if name not in existing:
                self._db.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {spec}")
                created.append(f"{name} on {spec}")
        return created

    @contextlib.contextmanager
    def _write(self, checkpoints: bool = True,
               durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One short write transaction, taking the write lock up front (no upgrade
        deadlocks between processes); starts the checkpointer at the first one.
        ``durable=False``: no fsync at its commit (the next durable commit's fsync of
        the WAL covers it, being later in the same file)."""
        with self._lock:
            if not durable:
                self._db.execute("PRAGMA synchronous = NORMAL")
            if self._checkpointer is None:
                if checkpoints:
                    self._checkpointer = Checkpointer(self.path, self._page_size)
            elif self._checkpointer.restart_wanted.is_set():
                self._checkpointer.restart_wanted.clear()
                with contextlib.suppress(sqlite3.Error):   # busy: the next write tries again
                    self._db.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    # Also after a failed COMMIT (SQLITE_FULL): a transaction left open
                    # would make every later BEGIN fail until the process restarts.
                    if self._db.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            self._db.execute("ROLLBACK")
                    raise
            finally:
                if not durable:
                    self._db.execute("PRAGMA synchronous = FULL")

    def _error(self, doing: str, exc: Exception) -> QueueError:
        if isinstance(exc, OSError) and exc.strerror:
            where = f" ({os.path.basename(exc.filename)})" if exc.filename else ""
            return QueueError(f"queue {self.url}: {doing}: {exc.strerror}{where}")
        return QueueError(f"queue {self.url}: {doing}: {exc}")

    # -- writing --------------------------------------------------------------------

    def put(self, serial: str, name: str, data: Contents, *,
            time_received: dt.datetime | None = None, update_latest: bool = True) -> PutResult:
        check_identity(serial, name)
        views = _as_views(data)
        request = _Put(serial, name, views, sum(v.nbytes for v in views),
                       to_us(time_received or utcnow()), update_latest)
        self._enqueue_and_wait([request])
        if request.error is not None:
            raise request.error
        return request.result

    def put_many(self, files: list[tuple[str, str, Contents]]) -> list[PutResult | Exception]:
        # All queued at once, so that they share transactions (and fsyncs); a failed
        # transaction fails only its own batch.
        when = to_us(utcnow())
        outcomes: list[_Put | Exception] = []
        for serial, name, data in files:
            try:
                check_identity(serial, name)
                views = _as_views(data)
            except ValueError as exc:
                outcomes.append(exc)
                continue
            outcomes.append(_Put(serial, name, views, sum(v.nbytes for v in views), when,
                                 True))
        self._enqueue_and_wait([r for r in outcomes if isinstance(r, _Put)])
        return [(o.error if o.error is not None else o.result) if isinstance(o, _Put) else o
                for o in outcomes]

    def _enqueue_and_wait(self, requests: list[_Put]) -> None:
        """Queue ``requests`` and return once each is stored or has failed (its
        ``result`` or ``error`` set); logs the files replaced."""
        with self._pending_lock:
            self._pending.extend(requests)
        # Group commit: whoever holds the write lock stores every put waiting by then in
        # one transaction (one WAL fsync for all); the others find theirs done.
        for request in requests:
            while request.result is None and request.error is None:
                with self._lock:
                    if request.result is None and request.error is None:
                        self._commit(self._take_batch())
        for request in requests:
            if request.error is None and request.result is PutResult.REPLACED:
                log_replaced(self.url, request.serial, request.name, request.old_size,
                             request.size)

    def _take_batch(self) -> list[_Put]:
        with self._pending_lock:
            batch: list[_Put] = []
            size = 0
            while self._pending and len(batch) < _BATCH_FILES:
                if batch and size + self._pending[0].size > _BATCH_BYTES:
                    break
                batch.append(self._pending.popleft())
                size += batch[-1].size
        return batch

    def _commit(self, batch: list[_Put]) -> None:
        """Store ``batch`` in one transaction: the new contents appended to this process's
        segment and fdatasynced, then the rows pointing into it committed (WAL fsync)."""
        appended = False
        try:
            with self._write() as db:
                plans = self._plan(db, batch)
                storing = [r for r, (result, _) in zip(batch, plans)
                           if result is not PutResult.DUPLICATE]
                segment, offsets = (self._segments.append([r.views for r in storing])
                                    if storing else ("", []))
                appended = bool(storing)
                where = dict(zip(map(id, storing), offsets))
                for request, (result, row) in zip(batch, plans):
                    if result is not PutResult.DUPLICATE:
                        self._store_row(db, request, result, row, segment,
                                        where[id(request)])
                    if request.update_latest:
                        self._update_latest(db, request.serial, request.when)
            for request, (result, _) in zip(batch, plans):
                request.result = result   # only now: the commit is on disk
        except (sqlite3.Error, OSError) as exc:
            # The transaction rolled back: none of the batch is stored, and what it
            # appended to the segment is a tail no row points to.
            if appended:
                self._segments.undo()
            for request in batch:
                request.error = self._error(
                    f"cannot store file {request.name!r} of uPMU {request.serial}", exc)
        finally:
            for request in batch:   # an interrupt: never leave a waiting put hanging
                if request.result is None and request.error is None:
                    request.error = QueueError(f"queue {self.url}: storing file "
                                               f"{request.name!r} was interrupted")
        self._free({r.old_segment for r in batch if r.result is PutResult.REPLACED})

    def _plan(self, db: sqlite3.Connection,
              batch: list[_Put]) -> list[tuple[PutResult, tuple | None]]:
        """What each put of ``batch`` does, in order (a name twice in one batch: the second
        compares with the first), with the row it finds: ``(id, size, segment, offset)``."""
        plans: list[tuple[PutResult, tuple | None]] = []
        earlier: dict[tuple[str, str], _Put] = {}
        for r in batch:
            key = (r.serial, r.name)
            before = earlier.get(key)
            row = db.execute("SELECT id, size, segment, seg_offset FROM received_files "
                             "WHERE serial_number = ? AND name = ?", key).fetchone()
            if before is not None:
                same = before.size == r.size and _views_equal(before.views, r.views)
                r.old_size = before.size
                result = PutResult.DUPLICATE if same else PutResult.REPLACED
            elif row is None:
                result = PutResult.NEW
            elif row[1] == r.size and self._stored_equals(row, r.views):
                result = PutResult.DUPLICATE
            else:
                r.old_size = row[1]
                result = PutResult.REPLACED
            if result is not PutResult.DUPLICATE:
                earlier[key] = r
            plans.append((result, row))
        return plans

    def _store_row(self, db: sqlite3.Connection, r: _Put, result: PutResult,
                   row: tuple | None, segment: str, offset: int) -> None:
        if result is PutResult.NEW:
            db.execute("INSERT INTO received_files (serial_number, name, size, time_received,"
                       " segment, seg_offset) VALUES (?, ?, ?, ?, ?, ?)",
                       (r.serial, r.name, r.size, r.when, segment, offset))
            return
        # Replaced: the row points at the new contents; a listing of the old version marks
        # nothing (generation).
        db.execute("UPDATE received_files SET size = ?, time_received = ?, ytag = 0,"
                   " published = 0, generation = generation + 1, segment = ?, seg_offset = ?"
                   " WHERE serial_number = ? AND name = ?",
                   (r.size, r.when, segment, offset, r.serial, r.name))
        if row is not None:
            if row[2] is None:     # the old layout's contents
                db.execute("DELETE FROM file_data WHERE id = ?", (row[0],))
            else:
                r.old_segment = row[2]

    def _stored_equals(self, row: tuple, views: list[memoryview]) -> bool:
        """True when the stored file ``row`` (id, size, segment, offset) holds ``views``."""
        if row[2] is None:
            return self._blob_equals(row[0], views)
        return self._segments.equals(row[2], row[3], views)

    @staticmethod
    def _update_latest(db: sqlite3.Connection, serial: str, when: int) -> None:
        db.execute("INSERT INTO latest_times (serial_number, time_received) VALUES (?, ?)"
                   " ON CONFLICT (serial_number) DO UPDATE"
                   " SET time_received = max(time_received, excluded.time_received)",
                   (serial, when))

    def open_upload(self, serial: str, name: str, size: int, *,
                    time_received: dt.datetime | None = None) -> Upload:
        check_identity(serial, name)
        if size < 0:
            raise ValueError(f"size must not be negative, not {size}")
        try:
            part = self._segments.open_part()
        except OSError as exc:
            raise self._error(f"cannot start storing file {name!r} of uPMU {serial}",
                              exc) from None
        return SqliteUpload(self, serial, name, size, part, time_received)

    def _commit_upload(self, upload: SqliteUpload) -> tuple[PutResult, int]:
        """Store a complete upload: its data file synced (outside the lock: puts go on
        meanwhile), renamed into a segment of its own and pointed to by its row, in one
        durable transaction. Returns the result and the replaced version's size."""
        os.fdatasync(upload.part.fd)
        when = to_us(upload.when or utcnow())
        r = _Put(upload.serial, upload.name, [], upload.size, when, True)
        with self._write() as db:
            row = db.execute("SELECT id, size, segment, seg_offset FROM received_files "
                             "WHERE serial_number = ? AND name = ?",
                             (r.serial, r.name)).fetchone()
            if row is None:
                result = PutResult.NEW
            elif row[1] == r.size and self._part_equals(upload, row):
                result = PutResult.DUPLICATE
            else:
                r.old_size = row[1]
                result = PutResult.REPLACED
            if result is not PutResult.DUPLICATE:
                segment = self._segments.seal(upload.part)
                self._store_row(db, r, result, row, segment, 0)
            self._update_latest(db, r.serial, when)
        if result is PutResult.REPLACED:
            self._free({r.old_segment})
        return result, r.old_size

    def _part_equals(self, upload: SqliteUpload, row: tuple) -> bool:
        if row[2] is not None:
            return self._segments.part_equals(upload.part, row[2], row[3])

        def inline(at: int, n: int) -> bytes:
            with self._db.blobopen("file_data", "data", row[0], readonly=True) as blob:
                blob.seek(at)
                return blob.read(n)
        return self._segments.part_equals(upload.part, None, 0, inline)

    def unfinished_uploads(self) -> list[int | str]:
        old = [r[0] for r in self._query("SELECT id FROM uploads", ())]
        return old + [name for name in self._segments.names(PART_SUFFIX)
                      if not self._segments.held(name)]

    def discard_uploads(self, uploads: list[int | str] | None = None) -> int:
        if uploads is None:
            uploads = self.unfinished_uploads()
        try:
            for upload in uploads:
                if isinstance(upload, str):
                    self._segments.trim(upload, lambda name: None)
                else:
                    self._forget_upload(upload)
        except sqlite3.Error as exc:
            raise self._error("cannot delete unfinished uploads", exc) from None
        except OSError as exc:
            raise self._error("cannot delete unfinished uploads", exc) from None
        return len(uploads)

    def _forget_upload(self, upload: int) -> None:
        """Delete an upload of the old layout (rows of ``uploads`` and ``upload_pieces``),
        a few pieces per transaction: freeing a blob reads its pages, and puts must not
        wait behind 75 MB of it."""
        while True:
            with self._write(durable=False) as db:
                gone = db.execute(
                    "DELETE FROM upload_pieces WHERE rowid IN (SELECT rowid FROM "
                    f"upload_pieces WHERE upload = ? LIMIT {_FORGET_PIECES})", (upload,)).rowcount
            if gone < _FORGET_PIECES:
                break
        with self._write(durable=False) as db:
            row = db.execute("SELECT file FROM uploads WHERE id = ?", (upload,)).fetchone()
            if row is not None and row[0] is not None:
                db.execute("DELETE FROM file_data WHERE id = ? AND id NOT IN "
                           "(SELECT id FROM received_files WHERE segment IS NULL)", (row[0],))
            db.execute("DELETE FROM uploads WHERE id = ?", (upload,))

    # -- data files -----------------------------------------------------------------

    def _referenced_end(self, segment: str) -> int | None:
        """Where the last file a committed row points into ``segment`` ends (None: no row
        points into it)."""
        return self._query("SELECT max(seg_offset + size) FROM received_files "
                           "WHERE segment = ?", (segment,))[0][0]

    def _free(self, segments: set[str | None]) -> int:
        """Delete (or cut) these segments where no row needs them and no process holds
        them; return the bytes given back. Never raises: a sweep retries later."""
        freed = 0
        for segment in segments:
            if segment:
                try:
                    freed += self._segments.trim(segment, self._referenced_end)
                except (OSError, QueueError) as exc:
                    log.warning("queue %s: cannot free data file %s: %s", self.url,
                                segment, exc)
        return freed

    def _sweep(self) -> int:
        """Free every segment no process holds: what a crash between a batch's data
        fsync and its commit left, and what deletes left to a writer that has let go."""
        return self._free(set(self._segments.names(SEG_SUFFIX)))

    def _blob_equals(self, fid: int, views: list[memoryview]) -> bool:
        if not any(v.nbytes for v in views):
            return True
        with self._db.blobopen("file_data", "data", fid, readonly=True) as blob:
            for view in views:
                for offset in range(0, view.nbytes, _CHUNK):
                    piece = view[offset:offset + _CHUNK]
                    if blob.read(piece.nbytes) != piece:
                        return False
        return True

    def mark_synced(self, file: QueuedFile) -> bool:
        fid, generation, base = file.ref
        try:
            with self._write() as db:
                changed = db.execute(
                    "UPDATE received_files SET ytag = max(ytag, ?) WHERE id = ? AND generation = ?",
                    (base, fid, generation)).rowcount
        except sqlite3.Error as exc:
            raise self._error(f"cannot mark file {file.name!r} of uPMU {file.serial} synced",
                              exc) from None
        return changed == 1

    # -- reading --------------------------------------------------------------------

    def _file(self, row: tuple, base: int) -> QueuedFile:
        fid, serial, name, size, when, ytag, generation = row
        return QueuedFile(serial, name, size, _from_us(when), ytag, (fid, generation, base))

    def _query(self, sql: str, params: tuple) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise self._error("cannot read", exc) from None

    def get(self, serial: str, name: str) -> QueuedFile | None:
        base = self.ytagbase
        rows = self._query(f"SELECT {_COLUMNS} FROM received_files "
                           f"WHERE serial_number = ? AND name = ?", (serial, name))
        return self._file(rows[0], base) if rows else None

    def read(self, file: QueuedFile) -> bytearray:
        for _ in range(3):
            rows = self._query("SELECT segment, seg_offset, size FROM received_files "
                               "WHERE id = ?", (file.ref[0],))
            if not rows:
                break
            segment, offset, size = rows[0]
            if segment is None:
                return self._read_inline(file)
            try:
                return self._segments.read(segment, offset, size)
            except (FileNotFoundError, EOFError):
                continue   # deleted or replaced since the row was read: look again
            except OSError as exc:
                raise self._error(f"cannot read file {file.name!r}", exc) from None
        else:
            # The row stays and points at bytes that are not there: this file is damaged
            # (say so; a reader skips it), not the queue (no outage).
            reason = f"its data file {segment} is missing or short"
            raise FileUnreadable(f"queue {self.url}: cannot read file {file.name!r} of "
                                 f"uPMU {file.serial}: {reason}", reason)
        raise FileGone(f"queue {self.url}: file {file.name!r} of uPMU "
                       f"{file.serial} is no longer queued")

    def _read_inline(self, file: QueuedFile) -> bytearray:
        """A file stored the old way (schema 1): a row of ``file_data``."""
        fid = file.ref[0]
        for attempt in range(3):
            with self._lock:
                try:
                    with self._db.blobopen("file_data", "data", fid, readonly=True) as blob:
                        out = bytearray(len(blob))
                        for offset in range(0, len(out), _CHUNK):
                            out[offset:offset + _CHUNK] = blob.read(_CHUNK)
                        return out
                except sqlite3.OperationalError as exc:
                    if "no such rowid" in str(exc):
                        raise FileGone(f"queue {self.url}: file {file.name!r} of uPMU "
                                       f"{file.serial} is no longer queued") from None
                    # Another process replaced the row under the open blob (SQLITE_ABORT):
                    # read it again.
                    if attempt == 2:
                        raise self._error(f"cannot read file {file.name!r}", exc) from None
                except sqlite3.Error as exc:
                    raise self._error(f"cannot read file {file.name!r}", exc) from None
        raise AssertionError("unreachable")

    def _pages(self, where: str, params: tuple, after: str | None, page_size: int,
               base: int) -> Iterator[QueuedFile]:
        last = after or ""
        while True:
            rows = self._query(f"SELECT {_COLUMNS} FROM received_files WHERE {where} "
                               f"AND name > ? ORDER BY name LIMIT ?",
                               (*params, last, page_size))
            for row in rows:
                yield self._file(row, base)
            if len(rows) < page_size:
                return
            last = rows[-1][2]

    def unsynced(self, serial: str, *, after: str | None = None,
                 page_size: int = 256) -> Iterator[QueuedFile]:
        base = self.ytagbase
        # The UNIQUE (serial_number, name) index gives name order and the name > ? bound;
        # the ytag test is a cheap filter on the small metadata rows.
        yield from self._pages("serial_number = ? AND ytag < ?", (serial, base), after,
                               page_size, base)

    def files(self, serial: str, *, start: dt.datetime | None = None,
              end: dt.datetime | None = None, page_size: int = 256) -> Iterator[QueuedFile]:
        base = self.ytagbase
        for file in self._pages("serial_number = ?", (serial,), None, page_size, base):
            if in_period(file.name, start, end):
                yield file

    def serials(self) -> list[str]:
        rows = self._query("SELECT serial_number FROM received_files GROUP BY serial_number "
                           "UNION SELECT serial_number FROM latest_times ORDER BY 1", ())
        return [r[0] for r in rows]

    def stats(self) -> dict[str, SerialStats]:
        base = self.ytagbase
        rows = self._query(
            "SELECT serial_number, count(*), total(size), total(ytag < ?),"
            " total(CASE WHEN ytag < ? THEN size ELSE 0 END)"
            " FROM received_files GROUP BY serial_number", (base, base))
        latest = dict(self._query("SELECT serial_number, time_received FROM latest_times", ()))
        out = {}
        for serial, files, size, unsynced, unsynced_size in rows:
            # Only a push is a sign of life: imported files leave last_received None.
            when = latest.pop(serial, None)
            out[serial] = SerialStats(serial, files, int(size), int(unsynced),
                                      int(unsynced_size), None if when is None else _from_us(when))
        for serial, when in latest.items():
            out[serial] = SerialStats(serial, 0, 0, 0, 0, _from_us(when))
        return dict(sorted(out.items()))

    # -- ytagbase -------------------------------------------------------------------

    @property
    def ytagbase(self) -> int:
        rows = self._query("SELECT value FROM meta WHERE key = 'ytagbase'", ())
        return int(rows[0][0]) if rows else DEFAULT_YTAGBASE

    def resync_all(self) -> int:
        try:
            with self._write() as db:
                row = db.execute("SELECT value FROM meta WHERE key = 'ytagbase'").fetchone()
                base = int(row[0]) if row else DEFAULT_YTAGBASE
                top = db.execute("SELECT max(ytag) FROM received_files").fetchone()[0] or 0
                new = max(base, top) + 1
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('ytagbase', ?)",
                           (new,))
        except sqlite3.Error as exc:
            raise self._error("cannot raise ytagbase", exc) from None
        log.info("queue %s: ytagbase raised from %d to %d; every queued file will be synced "
                 "again", self.url, base, new)
        return new

    # -- deleting -------------------------------------------------------------------

    def count_synced(self, serial: str | None = None) -> Tally:
        where, params = self._synced_where(serial)
        files, size = self._query(
            f"SELECT count(*), total(size) FROM received_files WHERE {where}", params)[0]
        return Tally(files, int(size))

    def _synced_where(self, serial: str | None) -> tuple[str, tuple]:
        if serial is None:
            return "ytag >= ?", (self.ytagbase,)
        return "serial_number = ? AND ytag >= ?", (serial, self.ytagbase)

    @staticmethod
    def _delete_rows(db: sqlite3.Connection, rows: list[tuple]) -> None:
        """Delete (id, size, segment) rows, and the old layout's contents of those
        without a segment."""
        db.executemany("DELETE FROM file_data WHERE id = ?",
                       [(r[0],) for r in rows if r[2] is None])
        db.executemany("DELETE FROM received_files WHERE id = ?", [(r[0],) for r in rows])

    def _delete_ids(self, ids: list[int]) -> tuple[Tally, set[str]]:
        """Delete files by id in one transaction; return what went and their segments."""
        with self._write() as db:
            rows = [row for fid in ids for row in db.execute(
                "SELECT id, size, segment FROM received_files WHERE id = ?", (fid,))]
            self._delete_rows(db, rows)
        return Tally(len(rows), sum(r[1] for r in rows)), {r[2] for r in rows}

    def _delete_where(self, where: str, params: tuple) -> Tally:
        total = Tally()
        segments: set[str] = set()
        try:
            while True:
                # Select and delete in one transaction: a file replaced in between (a
                # resend with new bytes, ytag back to 0, already acknowledged) must not
                # be deleted on the strength of its old row.
                with self._write() as db:
                    rows = db.execute(f"SELECT id, size, segment FROM received_files "
                                      f"WHERE {where} LIMIT {_DELETE_BATCH}",
                                      params).fetchall()
                    self._delete_rows(db, rows)
                if not rows:
                    break
                total += Tally(len(rows), sum(r[1] for r in rows))
                segments.update(r[2] for r in rows)
        except sqlite3.Error as exc:
            raise self._error("cannot delete files", exc) from None
        finally:
            if total.files:
                self._free(segments)
                self.reclaim()
        return total

    def delete_synced(self, serial: str | None = None) -> Tally:
        where, params = self._synced_where(serial)
        return self._delete_where(where, params)

    def delete(self, serial: str, *, start: dt.datetime | None = None,
               end: dt.datetime | None = None) -> Tally:
        if start is None and end is None:
            total = self._delete_where("serial_number = ?", (serial,))
            try:
                with self._write() as db:
                    db.execute("DELETE FROM latest_times WHERE serial_number = ?", (serial,))
            except sqlite3.Error as exc:
                raise self._error(f"cannot delete the latest time of uPMU {serial}",
                                  exc) from None
            return total
        total = Tally()
        segments: set[str] = set()
        ids = [file.ref[0] for file in list(self.files(serial, start=start, end=end))]
        try:
            for at in range(0, len(ids), _DELETE_BATCH):
                gone, where = self._delete_ids(ids[at:at + _DELETE_BATCH])
                total += gone
                segments |= where
        except sqlite3.Error as exc:
            raise self._error("cannot delete files", exc) from None
        finally:
            if total.files:
                self._free(segments)
                self.reclaim()
        return total

    def reclaim(self) -> int:
        """Give free space back to the file system; return the bytes given back.

        Deletes the segments no row points into (and no process holds); moves free
        pages of the SQLite file a few at a time (short transactions), then truncates the
        WAL if no reader holds it (not for files created without ``auto_vacuum``).
        """
        def size() -> int:
            total = self._segments.size()
            for suffix in ("", "-wal"):
                with contextlib.suppress(OSError):
                    total += os.path.getsize(self.path + suffix)
            return total

        before = size()
        try:
            self._sweep()
            if self._query("PRAGMA auto_vacuum", ())[0][0] != 2:
                return max(0, before - size())
            free = self._query("PRAGMA freelist_count", ())[0][0]
            while free:
                with self._write() as db:
                    db.execute(f"PRAGMA incremental_vacuum({_VACUUM_STEP})").fetchall()
                left = self._query("PRAGMA freelist_count", ())[0][0]
                if left >= free:   # another process keeps freeing pages: stop here
                    break
                free = left
            self._query("PRAGMA wal_checkpoint(TRUNCATE)", ())
        except sqlite3.Error as exc:
            raise self._error("cannot give free space back", exc) from None
        return max(0, before - size())

    # -- housekeeping ---------------------------------------------------------------

    def ensure_indexes(self) -> list[str]:
        try:
            with self._write():
                return self._create_indexes()
        except sqlite3.Error as exc:
            raise self._error("cannot create indexes", exc) from None

    @property
    def storage_dir(self) -> str:
        return os.path.dirname(self.path)

    def close(self) -> None:
        with self._lock:
            if self._checkpointer is not None:
                self._checkpointer.stop()
                self._checkpointer = None
            segment = self._segments.release()
            if segment is not None and self._db is not None:
                self._free({segment})   # if every file in it was deleted meanwhile
            self._db.close()
