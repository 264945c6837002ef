"""Stores of records, as the plotter's permalinks and accounts: their records as JSON
lines, how ``qss-get --backup`` carries them when they are in MongoDB
(``plotter/<collection>.jsonl``), and an SQLite table's replace-all.

A store here is anything with ``records()`` (every record, a dict, in a stable order) and
``replace_all(records)`` (hold exactly those; their number): :mod:`qss.permalinks` and
:mod:`qss.accounts` give both, for SQLite and MongoDB alike.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

__all__ = ["RecordStore", "dump", "load", "replace_table"]


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
