"""Stores of records, as the plotter's permalinks and accounts: their records as JSON
lines, how ``qss-get --backup`` carries them when they are in MongoDB
(``plotter/<collection>.jsonl``), and the replace-all of an SQLite table
(:func:`replace_table`) and of a MongoDB collection (:func:`replace_collection`), each
atomic: a reader sees the old records or the new, never none or some.

A store here is anything with ``records()`` (every record, a dict, in a stable order) and
``replace_all(records)`` (hold exactly those; their number): :mod:`qss.permalinks` and
:mod:`qss.accounts` give both, for SQLite and MongoDB alike.
"""
from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

__all__ = ["RecordStore", "dump", "load", "replace_collection", "replace_table"]


class RecordStore(Protocol):
    """What :func:`dump` and :func:`load` need of a store."""

    def records(self) -> Iterator[dict]: ...
    def replace_all(self, records: Iterable[dict]) -> int: ...


def dump(store: RecordStore) -> bytes:
    """Every record of ``store`` as JSON lines (one record a line, keys sorted)."""
    return b"".join(json.dumps(r, sort_keys=True).encode() + b"\n" for r in store.records())


def load(store: RecordStore, data: bytes, check: Callable[[object], dict], key: str) -> int:
    """Make ``store`` hold exactly the records of ``data`` (from :func:`dump`), each passed
    through ``check`` first (it raises ValueError for a bad one) and each with its own
    ``key`` (a record's id); their number. Nothing is changed unless every line is good.

    Raises:
        ValueError: a line that is not JSON, that ``check`` refuses, or that repeats an
            earlier line's key (its number and why).
    """
    records, seen = [], set()
    for n, line in enumerate(data.decode("utf-8").splitlines(), 1):
        try:
            r = check(json.loads(line))
            if r[key] in seen:
                raise ValueError(f"a second record {r[key]!r}")
        except ValueError as exc:
            raise ValueError(f"line {n}: {exc}") from None
        seen.add(r[key])
        records.append(r)
    return store.replace_all(records)


def replace_table(db: sqlite3.Connection, lock: threading.Lock, table: str,
                  rows: Sequence[tuple]) -> int:
    """Make ``table`` of ``db`` (autocommit; ``lock`` held while it is used) hold exactly
    ``rows``, in one transaction; their number. ``table`` is the caller's, never input."""
    marks = ", ".join("?" * len(rows[0])) if rows else ""
    with lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(f"DELETE FROM {table}")
            if rows:
                db.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return len(rows)


#: What :func:`replace_collection` names its new collection: ``<name>.replacing.<hex>``.
REPLACING = ".replacing."


def replace_collection(coll, docs: Sequence[dict]) -> int:
    """Make the MongoDB collection ``coll`` (pymongo's or mongomock's) hold exactly
    ``docs``, at once; their number.

    The documents go into a new collection of the same database, given ``coll``'s
    indexes, which is then renamed over ``coll`` (``renameCollection`` with
    ``dropTarget``, one step on the server): a reader sees the old documents or the new,
    never none or some, and a failure before the rename leaves ``coll`` as it was. (A
    delete then an insert showed readers an empty collection between the two, and left it
    empty when the insert failed.) A process killed before the rename can leave the new
    collection behind, ``<name>.replacing.<hex>``; nothing reads it.

    Raises:
        pymongo.errors.PyMongoError: the server refused or could not be reached; ``coll``
            is unchanged unless the rename itself was done.
    """
    db = coll.database
    # A name of its own: two replaces at once must not write into each other's.
    new = db[f"{coll.name}{REPLACING}{secrets.token_hex(4)}"]
    try:
        db.create_collection(new.name)       # so that no documents still make one
        for name, spec in coll.index_information().items():
            if name != "_id_":
                options = {k: v for k, v in spec.items() if k not in ("key", "v", "ns")}
                new.create_index(spec["key"], name=name, **options)
        if docs:
            new.insert_many(docs)
        new.rename(coll.name, dropTarget=True)
    except BaseException:
        with contextlib.suppress(Exception):    # the error that matters is the first
            new.drop()
        raise
    return len(docs)
