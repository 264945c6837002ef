"""The plotter's permalinks and accounts in ``qss-get --backup`` and ``--restore``.

In SQLite both are in ``plotter.db`` beside the queue: the backup copies that file
(``installer.backup``). In MongoDB (``mr_plotter.permalinks``, ``mr_plotter.accounts``) a
backup carries each collection as ``plotter/<collection>.jsonl`` (:func:`qss.records.dump`;
the accounts with their Argon2id hashes as stored, never a password), read through its
store, which works for a MongoDB elsewhere too; a restore makes each collection hold
exactly those once the services run again (mongod is one of them). The two collections
take one code path: :data:`COLLECTIONS` says what differs.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qss import accounts, permalinks
from qss.records import RecordStore
from qss.settings import is_mongodb

from .environment import Environment
from .files import DeployError
from .hooks import DataTools
from .services import DataPaths, plural


@dataclass(frozen=True)
class Collection:
    """One of the plotter's MongoDB collections that a backup carries."""

    name: str                                        # the collection: permalinks, accounts
    noun: str                                        # one of its records: permalink, account
    opener: Callable[[DataTools], Callable[[str, str], RecordStore]]
    load: Callable[[RecordStore, bytes], int]        # check every line, then replace all
    dump: Callable[[RecordStore], bytes]

    @property
    def entry(self) -> str:
        """Its file in a backup."""
        return f"plotter/{self.name}.jsonl"

    @property
    def where(self) -> str:
        return f"MongoDB {permalinks.DATABASE}.{self.name}"


COLLECTIONS = (
    Collection("permalinks", "permalink", lambda t: t.open_permalinks, permalinks.load,
               permalinks.dump),
    Collection("accounts", "account", lambda t: t.open_accounts, accounts.load,
               accounts.dump),
)
ENTRIES = tuple(c.entry for c in COLLECTIONS)
#: a backup's entries may hold password hashes: only their owner (root) reads them
ENTRY_MODE = 0o600


def _errors() -> tuple[type[BaseException], ...]:
    try:
        from pymongo.errors import PyMongoError
    except ImportError:           # no MongoDB client: only SQLite stores
        return (sqlite3.Error, OSError, ValueError)
    return (sqlite3.Error, OSError, ValueError, PyMongoError)


def _why(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def _names(cs: tuple[Collection, ...]) -> str:
    return " and ".join(c.name for c in cs)


def store_file(paths: DataPaths) -> Path | None:
    """The SQLite store's file (None: the permalinks and accounts are in MongoDB)."""
    if is_mongodb(paths.queue_url):
        return None
    return Path(accounts.plotter_db_path(paths.queue_url, str(paths.srv)))


def _with_store(c: Collection, tools: DataTools, paths: DataPaths, work):
    store = c.opener(tools)(paths.queue_url, str(paths.srv))
    try:
        return work(store)
    finally:
        store.close()


def export(env: Environment, tools: DataTools, paths: DataPaths) -> dict[str, bytes]:
    """MongoDB's permalinks and accounts as JSON lines, by backup entry; nothing when they
    are in SQLite (``plotter.db`` is copied as a file). A collection that cannot be read
    (MongoDB unreachable) is left out with a warning, and so are those after it."""
    if store_file(paths) is not None:
        return {}
    out: dict[str, bytes] = {}
    for i, c in enumerate(COLLECTIONS):
        try:
            out[c.entry] = _with_store(c, tools, paths, c.dump)
        except _errors() as exc:
            missed = COLLECTIONS[i:]
            env.warn(f"the plotter's {_names(missed)} ("
                     f"{', '.join(m.where for m in missed)}) cannot be read ({_why(exc)}); "
                     f"the backup holds them only within MongoDB's own files ([paths] srv, "
                     f"when MongoDB runs on this machine)")
            break
    return out


def write(env: Environment, folder: Path, exported: dict[str, bytes],
          write_new: Callable[[Path, bytes, int], str]) -> dict[str, str]:
    """Write :func:`export`'s entries into the backup ``folder`` with ``write_new(path,
    data, mode)`` (mode :data:`ENTRY_MODE`), saying how many records of each; their
    SHA-256 by entry."""
    sums = {}
    for c in COLLECTIONS:
        if c.entry in exported:
            data = exported[c.entry]
            sums[c.entry] = write_new(folder / c.entry, data, ENTRY_MODE)
            n = data.count(b"\n")             # a record a line
            env.say(f"exported  {plural(n, c.noun)} of the plotter from {c.where} as "
                    f"{c.entry}")
    return sums


def restore(env: Environment, tools: DataTools, paths: DataPaths,
            entries: dict[str, bytes]) -> None:
    """Make each store hold exactly the records of its backup entry in ``entries`` (a
    collection without one is left as it is).

    Raises:
        DeployError: the SQLite store cannot be written (MongoDB: a warning instead, the
            rest of the restore being done).
    """
    path = store_file(paths)
    for i, c in enumerate(COLLECTIONS):
        if c.entry not in entries:
            continue
        try:
            n = _with_store(c, tools, paths, lambda store: c.load(store, entries[c.entry]))
        except _errors() as exc:
            if path is not None:
                raise DeployError(f"cannot restore the plotter's {c.name} into {path}: "
                                  f"{_why(exc)}") from None
            missed = tuple(m for m in COLLECTIONS[i:] if m.entry in entries)
            env.warn(f"the plotter's {_names(missed)} were not restored into "
                     f"{', '.join(m.where for m in missed)} ({_why(exc)}); they are in the "
                     f"backup's {', '.join(m.entry for m in missed)}")
            return
        where = path if path is not None else c.where
        env.say(f"restored  {plural(n, c.noun)} of the plotter into {where}")
