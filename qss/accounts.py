"""The plotter's user accounts (manual ch. 11): names, Argon2id password hashes and tags.

Shared by the plotter (who signs in, which tags they hold) and the account console
(``accounts.py``, which edits them), so it lives in the core. Stored in the appliance's
database, as the permalinks: the table ``accounts`` of ``plotter.db`` beside the SQLite
queue by default, the collection ``mr_plotter.accounts`` when the queue is MongoDB.

Passwords are kept only as Argon2id hashes (argon2-cffi, its RFC 9106 defaults); a check
of an unknown user verifies against a dummy hash, so a wrong name takes as long as a
wrong password. A backup carries the hashes as stored (:meth:`SqliteAccounts.records`,
:func:`dump`), never a password. Each account carries a ``generation`` that a password
change bumps, and a random ``stamp`` that adding the user, changing the password and a
restore write anew: a session keeps the stamp it opened with and counts only while the
account still has it (the plotter compares it), so neither a password change nor
deleting and adding the name again lets an old session in. (The generation alone could
not tell a re-added user from the deleted one: both start at 0.)
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from . import records as _records
from .settings import is_mongodb

__all__ = ["Account", "AccountError", "AccountStore", "MongoAccounts", "NAME",
           "SqliteAccounts", "check_name", "check_password", "check_record", "check_tags",
           "create_shared", "dump", "load", "new_stamp", "open_accounts", "plotter_db_path"]

DATABASE, COLLECTION = "mr_plotter", "accounts"

#: A user name or a tag: what the manual's examples use (peter, psl, lbnl, upmu), plus
#: digits, ``.``, ``_`` and ``-``; a tag is a path's first element, so no ``/``.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
MAX_PASSWORD = 1024


class AccountError(ValueError):
    """An account operation refused; the message is one line for the operator."""


@dataclass(frozen=True)
class Account:
    """A user as the plotter sees it (never the hash)."""

    name: str
    tags: tuple[str, ...]
    generation: int = 0
    created: str = ""
    #: Random, written anew by add and set_password: what a session is bound to.
    stamp: str = ""


def check_name(name: object, what: str = "user name") -> str:
    """``name`` if it is a legal user name (or tag, with ``what``).

    Raises:
        AccountError: it is not.
    """
    if not isinstance(name, str) or not NAME.match(name):
        raise AccountError(f"bad {what} {name!r}: 1 to 64 letters, digits, '.', '_' or '-', "
                           f"starting with a letter or digit")
    return name


def check_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """The tags, each checked, duplicates dropped, in the order given.

    Raises:
        AccountError: a bad tag, or none at all.
    """
    out: list[str] = []
    for t in tags:
        check_name(t, "tag")
        if t not in out:
            out.append(t)
    if not out:
        raise AccountError("at least one tag is required (e.g. adduser peter PASSWORD psl "
                           "lbnl pge)")
    return tuple(out)


def check_password(password: object) -> str:
    """``password`` if it can be one.

    Raises:
        AccountError: empty, too long or not text.
    """
    if not isinstance(password, str) or not password:
        raise AccountError("the password must not be empty")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"the password is too long (at most {MAX_PASSWORD} characters)")
    return password


def check_record(r: object) -> dict:
    """``r`` if it is an account record (:meth:`SqliteAccounts.records`): a legal name, at
    least one legal tag, an Argon2id hash, a generation and a creation time.

    Raises:
        ValueError: it is not (an :class:`AccountError`).
    """
    if not (isinstance(r, dict) and set(r) == {"name", "tags", "hash", "generation",
                                               "created"}):
        raise AccountError("not an account record")
    check_name(r["name"])
    if not isinstance(r["tags"], list) or check_tags(r["tags"]) != tuple(r["tags"]):
        raise AccountError(f"user {r['name']!r}: bad tags {r['tags']!r}")
    if not (isinstance(r["hash"], str) and r["hash"].startswith("$argon2id$")):
        raise AccountError(f"user {r['name']!r}: the password is not an Argon2id hash")
    try:
        extract_parameters(r["hash"])
    except InvalidHashError:
        raise AccountError(f"user {r['name']!r}: a damaged Argon2id hash") from None
    if type(r["generation"]) is not int or r["generation"] < 0 \
            or not isinstance(r["created"], str):
        raise AccountError(f"user {r['name']!r}: bad generation or creation time")
    return r


class _Hashing:
    """Argon2id hashing and constant-time checks, shared by the stores."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()
        self._dummy: str | None = None

    def hash(self, password: str) -> str:
        return self.hasher.hash(check_password(password))

    def verify(self, hashed: str | None, password: str) -> bool:
        """Whether ``password`` matches ``hashed``; None verifies against a dummy hash (the
        same work) and is False."""
        if hashed is None:
            if self._dummy is None:
                self._dummy = self.hasher.hash("not a password of anyone")
            target, real = self._dummy, False
        else:
            target, real = hashed, True
        try:
            return self.hasher.verify(target, password) and real
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


def new_stamp() -> str:
    """A fresh random account stamp (see :class:`Account`)."""
    return secrets.token_hex(16)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class AccountStore(Protocol):
    """What the plotter and the console need of a store of accounts."""

    def add(self, name: str, password: str, tags: Iterable[str]) -> Account: ...
    def delete(self, name: str) -> None: ...
    def set_password(self, name: str, password: str) -> Account: ...
    def add_tags(self, name: str, tags: Iterable[str]) -> Account: ...
    def remove_tags(self, name: str, tags: Iterable[str]) -> Account: ...
    def get(self, name: str) -> Account | None: ...
    def list(self) -> list[Account]: ...
    def check(self, name: str, password: str) -> Account | None: ...
    def records(self) -> Iterator[dict]: ...
    def replace_all(self, records: Iterable[dict]) -> int: ...
    def close(self) -> None: ...


class _Base:
    """The operations in terms of four primitives a backend gives."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hashing = _Hashing(hasher)

    # primitives: _row(name) -> (tags, generation, hash, created, stamp) | None, _insert,
    # _update(name, **fields) -> bool, _remove(name) -> bool, _rows()
    def _require(self, name: str) -> tuple:
        row = self._row(check_name(name))
        if row is None:
            raise AccountError(f"no user {name!r} (list shows the users)")
        return row

    def add(self, name: str, password: str, tags: Iterable[str]) -> Account:
        """Create user ``name`` with ``password`` and ``tags`` (at least one).

        Raises:
            AccountError: the user exists, or a bad name, password or tag.
        """
        check_name(name)
        tags = check_tags(tags)
        hashed = self._hashing.hash(password)
        created, stamp = _now(), new_stamp()
        if not self._insert(name, list(tags), hashed, created, stamp):
            raise AccountError(f"user {name!r} already exists (passwd changes a password, "
                               f"addtags adds tags)")
        return Account(name, tags, 0, created, stamp)

    def delete(self, name: str) -> None:
        """Delete user ``name``.

        Raises:
            AccountError: no such user.
        """
        check_name(name)
        if not self._remove(name):
            raise AccountError(f"no user {name!r} (list shows the users)")

    def set_password(self, name: str, password: str, stamp: str | None = None) -> Account:
        """Give ``name`` a new password and a new stamp (``stamp``, or a random one);
        their open sessions end.

        Raises:
            AccountError: no such user, or a bad password.
        """
        tags, generation, _, created, _ = self._require(name)
        hashed = self._hashing.hash(password)
        stamp = stamp or new_stamp()
        self._update(name, hash=hashed, generation=generation + 1, stamp=stamp)
        return Account(name, tuple(tags), generation + 1, created, stamp)

    def add_tags(self, name: str, tags: Iterable[str]) -> Account:
        """Add ``tags`` to ``name``'s.

        Raises:
            AccountError: no such user, or a bad or missing tag.
        """
        old, generation, _, created, stamp = self._require(name)
        new = check_tags([*old, *check_tags(tags)])
        self._update(name, tags=list(new))
        return Account(name, new, generation, created, stamp)

    def remove_tags(self, name: str, tags: Iterable[str]) -> Account:
        """Remove ``tags`` from ``name``'s; a user keeps at least one.

        Raises:
            AccountError: no such user, a tag they do not have, or none would be left.
        """
        old, generation, _, created, stamp = self._require(name)
        drop = check_tags(tags)
        missing = [t for t in drop if t not in old]
        if missing:
            raise AccountError(f"user {name!r} has no tag {missing[0]!r} (their tags: "
                               f"{' '.join(old)})")
        new = tuple(t for t in old if t not in drop)
        if not new:
            raise AccountError(f"user {name!r} must keep at least one tag (deluser deletes "
                               f"the user)")
        self._update(name, tags=list(new))
        return Account(name, new, generation, created, stamp)

    def get(self, name: str) -> Account | None:
        """User ``name``, or None."""
        if not isinstance(name, str) or not NAME.match(name):
            return None
        row = self._row(name)
        return None if row is None else Account(name, tuple(row[0]), row[1], row[3], row[4])

    def check(self, name: str, password: str) -> Account | None:
        """The account if ``password`` is ``name``'s, else None; as slow for an unknown
        user as for a wrong password (Argon2id either way)."""
        row = self._row(name) if isinstance(name, str) and NAME.match(name) else None
        if not isinstance(password, str) or len(password) > MAX_PASSWORD:
            password = ""
        ok = self._hashing.verify(None if row is None else row[2], password)
        return Account(name, tuple(row[0]), row[1], row[3], row[4]) if ok and row else None


def create_shared(path: str) -> None:
    """Create the SQLite file ``path`` 0660 if it is missing: ``plotter.db`` is written by
    the plotter (the service user, umask 007) and by the console (the operator, umask
    022, in its group); SQLite alone would make it 0640 or 0644 and lock the other out
    (its -wal and -shm files take the database's mode)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o660)
    finally:
        os.close(fd)


class SqliteAccounts(_Base):
    """Accounts in an SQLite file (the table ``accounts``)."""

    def __init__(self, path: str, hasher: PasswordHasher | None = None) -> None:
        super().__init__(hasher)
        self.path = path
        self._lock = threading.Lock()
        create_shared(path)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                   timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS accounts (name TEXT PRIMARY KEY, "
                         "tags TEXT NOT NULL, hash TEXT NOT NULL, generation INTEGER NOT NULL "
                         "DEFAULT 0, created TEXT NOT NULL, stamp TEXT NOT NULL DEFAULT '')")
        self._add_stamps()

    def _add_stamps(self) -> None:
        """Give a ``plotter.db`` made before the stamp (this session's appliances) its
        column, and every account without one a random stamp."""
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(accounts)")}
        if "stamp" not in columns:
            try:
                self._db.execute("ALTER TABLE accounts ADD COLUMN stamp TEXT NOT NULL "
                                 "DEFAULT ''")
            except sqlite3.OperationalError as exc:   # another process added it meanwhile
                if "duplicate column" not in str(exc):
                    raise
        # Only when there is one to stamp: a mere reader need not write.
        if self._db.execute("SELECT 1 FROM accounts WHERE stamp = '' LIMIT 1").fetchone():
            self._db.execute("UPDATE accounts SET stamp = lower(hex(randomblob(16))) "
                             "WHERE stamp = ''")

    def _row(self, name: str):
        with self._lock:
            row = self._db.execute("SELECT tags, generation, hash, created, stamp FROM "
                                   "accounts WHERE name = ?", (name,)).fetchone()
        return None if row is None else (json.loads(row[0]), row[1], row[2], row[3], row[4])

    def _insert(self, name: str, tags: list[str], hashed: str, created: str,
                stamp: str) -> bool:
        with self._lock:
            try:
                self._db.execute("INSERT INTO accounts (name, tags, hash, generation, "
                                 "created, stamp) VALUES (?, ?, ?, 0, ?, ?)",
                                 (name, json.dumps(tags), hashed, created, stamp))
                return True
            except sqlite3.IntegrityError:
                return False

    def _update(self, name: str, **fields) -> bool:
        if "tags" in fields:
            fields["tags"] = json.dumps(fields["tags"])
        sets = ", ".join(f"{k} = ?" for k in fields)   # keys are ours, never input
        with self._lock:
            cur = self._db.execute(f"UPDATE accounts SET {sets} WHERE name = ?",
                                   (*fields.values(), name))
        return cur.rowcount == 1

    def _remove(self, name: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM accounts WHERE name = ?",
                                    (name,)).rowcount == 1

    def list(self) -> list[Account]:
        """Every user, by name."""
        with self._lock:
            rows = self._db.execute("SELECT name, tags, generation, created FROM accounts "
                                    "ORDER BY name").fetchall()
        return [Account(n, tuple(json.loads(t)), g, c) for n, t, g, c in rows]

    def records(self) -> Iterator[dict]:
        """Every account with its hash (for a backup), by name."""
        with self._lock:
            rows = self._db.execute("SELECT name, tags, hash, generation, created FROM "
                                    "accounts ORDER BY name").fetchall()   # one read
        for name, tags, hashed, generation, created in rows:
            yield {"name": name, "tags": json.loads(tags), "hash": hashed,
                   "generation": generation, "created": created}

    def replace_all(self, records: Iterable[dict]) -> int:
        """Hold exactly ``records`` (:meth:`records`'s, hashes as they are); their number.
        Each gets a new stamp: no session opened before a restore counts after it."""
        rows = [(r["name"], json.dumps(r["tags"]), r["hash"], r["generation"], r["created"],
                 new_stamp()) for r in records]
        return _records.replace_table(self._db, self._lock, "accounts", rows)

    def close(self) -> None:
        self._db.close()


class MongoAccounts(_Base):
    """Accounts in MongoDB: database ``mr_plotter``, collection ``accounts``, documents
    ``{_id: name, tags, hash, generation, created, stamp}``."""

    def __init__(self, url: str, client=None, hasher: PasswordHasher | None = None,
                 timeout_ms: int = 5000, database: str = DATABASE) -> None:
        super().__init__(hasher)
        if client is None:
            import pymongo
            client = pymongo.MongoClient(url, serverSelectionTimeoutMS=timeout_ms)
        self._client = client
        self._coll = client[database][COLLECTION]

    def _row(self, name: str):
        d = self._coll.find_one({"_id": name})
        return None if d is None else (list(d["tags"]), int(d.get("generation", 0)),
                                       d["hash"], d.get("created", ""), d.get("stamp", ""))

    def _insert(self, name: str, tags: list[str], hashed: str, created: str,
                stamp: str) -> bool:
        from pymongo.errors import DuplicateKeyError
        try:
            self._coll.insert_one({"_id": name, "tags": tags, "hash": hashed,
                                   "generation": 0, "created": created, "stamp": stamp})
            return True
        except DuplicateKeyError:
            return False

    def _update(self, name: str, **fields) -> bool:
        return self._coll.update_one({"_id": name}, {"$set": fields}).matched_count == 1

    def _remove(self, name: str) -> bool:
        return self._coll.delete_one({"_id": name}).deleted_count == 1

    def list(self) -> list[Account]:
        """Every user, by name."""
        return [Account(d["_id"], tuple(d["tags"]), int(d.get("generation", 0)),
                        d.get("created", ""))
                for d in self._coll.find({}, {"hash": 0}).sort("_id", 1)]

    def records(self) -> Iterator[dict]:
        """Every account with its hash (for a backup), by name."""
        for d in self._coll.find({}, sort=[("_id", 1)]):
            yield {"name": d["_id"], "tags": list(d["tags"]), "hash": d["hash"],
                   "generation": int(d.get("generation", 0)), "created": d.get("created", "")}

    def replace_all(self, records: Iterable[dict]) -> int:
        """Hold exactly ``records`` (:meth:`records`'s, hashes as they are); their number.
        Each gets a new stamp: no session opened before a restore counts after it."""
        docs = [{"_id": r["name"], "tags": list(r["tags"]), "hash": r["hash"],
                 "generation": r["generation"], "created": r["created"],
                 "stamp": new_stamp()} for r in records]
        return _records.replace_collection(self._coll, docs)

    def close(self) -> None:
        self._client.close()


def plotter_db_path(queue_url: str, srv: str) -> str:
    """``plotter.db``, the SQLite file of the plotter's accounts and permalinks (and the
    folder of its reload stamp): beside the SQLite queue of ``queue_url``, or in ``srv``
    when the queue is not SQLite (the stores are in MongoDB then, and the file unused)."""
    folder = os.path.dirname(queue_url[len("sqlite:///"):]) if queue_url.startswith(
        "sqlite:///") else srv
    return os.path.join(folder, "plotter.db")


def open_accounts(queue_url: str, srv: str, hasher: PasswordHasher | None = None,
                  mongo_client=None, timeout_ms: int = 5000) -> AccountStore:
    """The account store of an appliance whose queue is ``queue_url``: MongoDB beside a
    MongoDB queue (``mongo_client``: one already made, e.g. mongomock in tests;
    ``timeout_ms``: how long to look for the server), else ``plotter.db`` beside the
    SQLite queue (or in ``srv``).

    Raises:
        sqlite3.Error, pymongo.errors.PyMongoError: it cannot be opened.
    """
    if is_mongodb(queue_url):
        return MongoAccounts(queue_url, client=mongo_client, hasher=hasher,
                             timeout_ms=timeout_ms)
    return SqliteAccounts(plotter_db_path(queue_url, srv), hasher=hasher)


def dump(store: AccountStore) -> bytes:
    """Every account of ``store`` as JSON lines, hashes as stored (one a line, by name)."""
    return _records.dump(store)


def load(store: AccountStore, data: bytes) -> int:
    """Make ``store`` hold exactly the accounts of ``data`` (from :func:`dump`); their
    number. Nothing is changed unless every line is a good account.

    Raises:
        ValueError: ``data`` is not :func:`dump`'s (a line and why).
    """
    return _records.load(store, data, check_record, "name")
