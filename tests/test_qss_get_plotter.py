"""The plotter's permalinks and accounts carried by qss-get --backup and --restore: from
the SQLite store beside the queue, and from MongoDB's mr_plotter.permalinks and
mr_plotter.accounts (mongomock; a real server too when QSS_TEST_MONGO_URL is set)."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import mongomock
import pytest
from argon2 import PasswordHasher

from qss.accounts import MongoAccounts, SqliteAccounts
from qss.permalinks import MongoPermalinks, SqlitePermalinks
from qss.settings import render_default_ini

from qss.queue import open_queue

from test_qss_get_data import FakeServices, fill_queue, make_env, make_root, make_store, qss_get

U1 = "f0896731-0e43-4ed5-a97f-19266d8e732c"
BACKUP = "usb/qss-backup-20240506T070809"
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)   # Argon2id, cheaply


def fill_queue_at(path) -> None:
    with open_queue(f"sqlite:///{path}") as q:
        q.put("P3001276", "/root/upmu_data/P3001276_2024-01-01-00-00-00.dat", b"x" * 1000)


def view(n: int) -> dict:
    return {"streams": [U1], "window": {"kind": "now", "span": n}, "zone": "UTC", "view": {}}


def manifest(folder) -> list[str]:
    return sorted(line.split("  ")[1] for line in
                  (folder / "MANIFEST.sha256").read_text().splitlines())


@pytest.mark.parametrize("outside", [False, True], ids=["queue in srv", "queue elsewhere"])
def test_sqlite_permalinks_are_backed_up_and_restored_exactly(tmp_path, outside):
    """plotter.db (permalinks and accounts) is copied as a file beside the queue's."""
    if outside:
        root = make_root(tmp_path, render_default_ini().replace(
            "url = sqlite:////ssd/srv/queue.db", f"url = sqlite:///{tmp_path}/root/q/queue.db"))
        (root / "q").mkdir()
        db = root / "q/plotter.db"
        fill_queue_at(root / "q/queue.db")
    else:
        root = make_root(tmp_path)
        db = root / "ssd/srv/plotter.db"
        fill_queue(root)
    make_store(root, 100)
    store = SqlitePermalinks(str(db))
    kept = {store.create(view(n)): view(n) for n in range(1, 4)}
    store.close()                      # the plotter runs on: a reader beside it is fine
    users = SqliteAccounts(str(db), hasher=FAST)
    users.add("peter", "psladmin", ["psl", "lbnl", "pge"])
    users.close()
    (tmp_path / "usb").mkdir()
    status, out = qss_get(make_env(root), "--backup", str(tmp_path / "usb"))
    assert status == 0, out
    folder = tmp_path / BACKUP
    queue = ["queue/plotter.db", "queue/queue.db"] if outside else [
        "srv/plotter.db", "srv/queue.db"]
    listed = manifest(folder)
    segments = [p for p in listed if ".data/" in p]     # the queued files' contents
    assert segments and all(p.startswith(f"{queue[1]}.data/s-") for p in segments)
    assert sorted(set(listed) - set(segments)) == sorted([
        "config/backupconfig.ini", "config/qss.ini", "config/upmuconfig.ini",
        "data/btrdb.sqlite3", *queue])
    queue_db = root / ("q/queue.db" if outside else "ssd/srv/queue.db")
    queued = queue_files(queue_db)
    assert queued
    assert folder.stat().st_mode & 0o777 == 0o700     # plotter.db's hashes: root's only
    # made and lost after the backup: the restore brings back exactly the backup's
    store = SqlitePermalinks(str(db))
    store.create(view(99))
    store.close()
    users = SqliteAccounts(str(db), hasher=FAST)
    users.add("mallory", "x", ["lbnl"])
    users.close()
    os.unlink(db)
    services = FakeServices()
    env = make_env(root, "y\n", services)
    status, out = qss_get(env, "--restore", str(folder))
    assert status == 0, env.stderr.getvalue()
    assert services.calls == ["stop", "start"]
    store = SqlitePermalinks(str(db))
    assert {r["id"]: r["doc"] for r in store.records()} == kept
    store.close()
    users = SqliteAccounts(str(db), hasher=FAST)
    assert [a.name for a in users.list()] == ["peter"]
    assert users.check("peter", "psladmin").tags == ("psl", "lbnl", "pge")
    users.close()
    assert queue_files(queue_db) == queued


def queue_files(db) -> dict[str, bytes]:
    with open_queue(f"sqlite:///{db}") as q:
        return {f.name: bytes(q.read(f)) for s in q.serials() for f in q.files(s)}


def test_no_plotter_store_no_entry(tmp_path):
    root = make_root(tmp_path)
    fill_queue(root)
    make_store(root, 10)
    (tmp_path / "usb").mkdir()
    status, out = qss_get(make_env(root), "--backup", str(tmp_path / "usb"))
    assert status == 0, out
    assert not [e for e in manifest(tmp_path / BACKUP) if e.startswith("plotter/")]
    assert not (root / "ssd/srv/plotter.db").exists()      # not made by the backup


def mongo_root(tmp_path, url="mongodb://127.0.0.1:27017"):
    root = make_root(tmp_path, render_default_ini().replace(
        "url = sqlite:////ssd/srv/queue.db", f"url = {url}"))
    make_store(root, 10)
    (tmp_path / "usb").mkdir()
    return root


def round_trip(tmp_path, root, openers, store, users) -> None:
    """Back up, change the stores, restore: they hold exactly what they held at the
    backup, the accounts with their hashes (the backup has no password)."""
    kept = {store.create(view(n)): view(n) for n in range(1, 5)}
    users.add("peter", "psladmin", ["psl", "lbnl", "pge"])
    users.add("ann", "s3cret", ["upmu"])
    users.set_password("ann", "n3w")
    accounts = list(users.records())
    services = FakeServices()
    status, out = qss_get(make_env(root, services=services, **openers),
                          "--backup", str(tmp_path / "usb"))
    assert status == 0, out
    assert services.calls == ["stop", "start"]      # MongoDB's files: mongod stopped
    assert ("exported  4 permalinks of the plotter from MongoDB mr_plotter.permalinks as "
            "plotter/permalinks.jsonl") in out.splitlines()
    assert ("exported  2 accounts of the plotter from MongoDB mr_plotter.accounts as "
            "plotter/accounts.jsonl") in out.splitlines()
    folder = tmp_path / BACKUP
    assert {"plotter/permalinks.jsonl", "plotter/accounts.jsonl"} <= set(manifest(folder))
    entry = folder / "plotter/accounts.jsonl"
    assert (entry.stat().st_mode & 0o777, folder.stat().st_mode & 0o777) == (0o600, 0o700)
    data = entry.read_bytes()
    assert b"$argon2id$" in data and b"psladmin" not in data and b"n3w" not in data
    extra = store.create(view(77))
    users.delete("peter")
    users.add("mallory", "x", ["lbnl"])
    users.set_password("ann", "other")
    services = FakeServices()
    env = make_env(root, "y\n", services, **openers)
    status, out = qss_get(env, "--restore", str(folder))
    assert status == 0, env.stderr.getvalue()
    assert out.splitlines()[-4:-1] == [   # once MongoDB runs again
        "started   the services (supervisorctl start all)",
        "restored  4 permalinks of the plotter into MongoDB mr_plotter.permalinks",
        "restored  2 accounts of the plotter into MongoDB mr_plotter.accounts"]
    assert {r["id"]: r["doc"] for r in store.records()} == kept
    assert store.get(extra) is None
    assert list(users.records()) == accounts
    assert users.check("peter", "psladmin").tags == ("psl", "lbnl", "pge")
    assert users.check("ann", "n3w") and users.check("ann", "other") is None
    assert users.get("mallory") is None


def mock_openers(client) -> dict:
    return {"open_permalinks": lambda url, srv: MongoPermalinks(url, client=client),
            "open_accounts": lambda url, srv: MongoAccounts(url, client=client, hasher=FAST)}


def test_mongodb_permalinks_and_accounts_are_backed_up_and_restored_exactly(tmp_path):
    root = mongo_root(tmp_path)
    client = mongomock.MongoClient()
    round_trip(tmp_path, root, mock_openers(client),
               MongoPermalinks("mongodb://x", client=client),
               MongoAccounts("mongodb://x", client=client, hasher=FAST))
    assert client["mr_plotter"]["permalinks"].count_documents({}) == 4
    assert client["mr_plotter"]["accounts"].count_documents({}) == 2



def test_a_mongodb_backup_restored_with_an_sqlite_queue_fills_plotter_db(tmp_path):
    """The .jsonl entries go through the SQLite stores then, with the services stopped."""
    root = mongo_root(tmp_path)
    client = mongomock.MongoClient()
    openers = mock_openers(client)
    openers["open_accounts"]("mongodb://x", "").add("peter", "psladmin", ["psl", "lbnl"])
    kept = openers["open_permalinks"]("mongodb://x", "").create(view(1))
    status, out = qss_get(make_env(root, services=FakeServices(), **openers),
                          "--backup", str(tmp_path / "usb"))
    assert status == 0, out
    (root / "etc/qss/qss.ini").write_text(render_default_ini())     # SQLite from now on
    env = make_env(root, "y\n", FakeServices())
    status, out = qss_get(env, "--restore", str(tmp_path / BACKUP))
    assert status == 0, env.stderr.getvalue()
    db = root / "ssd/srv/plotter.db"
    assert f"restored  1 account of the plotter into {db}" in out.splitlines()
    users = SqliteAccounts(str(db))
    assert users.check("peter", "psladmin").tags == ("psl", "lbnl")
    users.close()
    store = SqlitePermalinks(str(db))
    assert [r["id"] for r in store.records()] == [kept]
    store.close()

MANUAL = Path(__file__).resolve().parent.parent / "docs/manual/05-backup-restore.md"


def test_the_manual_quotes_these_lines():
    """Chapter 5 quotes round_trip's lines (a line there may wrap: spaces collapse)."""
    text = " ".join(MANUAL.read_text(encoding="utf-8").split())
    for line in (
            "exported  2 accounts of the plotter from MongoDB mr_plotter.accounts as "
            "plotter/accounts.jsonl",
            "restored  4 permalinks of the plotter into MongoDB mr_plotter.permalinks",
            "restored  2 accounts of the plotter into MongoDB mr_plotter.accounts"):
        assert f"`{' '.join(line.split())}`" in text, line


def assert_one_warning(env, start: str, end: str) -> None:
    """qss-get's standard error is one warning line, ``start`` ... ``end`` (the ... being
    the driver's reason)."""
    warning = env.stderr.getvalue()
    assert warning.startswith(f"qss-get: warning: {start}") and warning.endswith(f"{end}\n")
    assert warning.count("\n") == 1, warning


UNREACHABLE = {     # nothing listens on port 9
    "open_permalinks": lambda url, srv: MongoPermalinks(url, timeout_ms=300),
    "open_accounts": lambda url, srv: MongoAccounts(url, timeout_ms=300)}


def test_an_unreachable_mongodb_is_a_warning_not_a_failed_backup(tmp_path):
    root = mongo_root(tmp_path, "mongodb://127.0.0.1:9")
    env = make_env(root, services=FakeServices(), **UNREACHABLE)
    status, out = qss_get(env, "--backup", str(tmp_path / "usb"))
    assert status == 0, env.stderr.getvalue()
    # one warning: the accounts are not tried again
    assert_one_warning(env, "the plotter's permalinks and accounts (MongoDB "
                       "mr_plotter.permalinks, MongoDB mr_plotter.accounts) cannot be read (",
                       "); the backup holds them only within MongoDB's own files ([paths] "
                       "srv, when MongoDB runs on this machine)")
    assert not [e for e in manifest(tmp_path / BACKUP) if e.startswith("plotter/")]
    assert "exported" not in out


def test_an_unreachable_mongodb_at_restore_is_a_warning_naming_the_entries(tmp_path):
    root = mongo_root(tmp_path, "mongodb://127.0.0.1:9")
    client = mongomock.MongoClient()
    MongoAccounts("mongodb://x", client=client, hasher=FAST).add("peter", "psladmin", ["psl"])
    status, out = qss_get(make_env(root, services=FakeServices(), **mock_openers(client)),
                          "--backup", str(tmp_path / "usb"))
    assert status == 0, out
    env = make_env(root, "y\n", FakeServices(), **UNREACHABLE)
    status, out = qss_get(env, "--restore", str(tmp_path / BACKUP))
    assert status == 0, env.stderr.getvalue()
    assert_one_warning(env, "the plotter's permalinks and accounts were not restored into "
                       "MongoDB mr_plotter.permalinks, MongoDB mr_plotter.accounts (",
                       "); they are in the backup's plotter/permalinks.jsonl, "
                       "plotter/accounts.jsonl")
    assert out.splitlines()[-1].startswith("restored  ")
    assert "of the plotter" not in out


REAL_MONGO = os.environ.get("QSS_TEST_MONGO_URL")


@pytest.mark.skipif(not REAL_MONGO, reason="a real MongoDB server: set QSS_TEST_MONGO_URL="
                    "mongodb://HOST:PORT (a scratch database is made and dropped)")
def test_mongodb_permalinks_and_accounts_round_trip_on_a_real_server(tmp_path):
    root = mongo_root(tmp_path, REAL_MONGO)
    name = f"qss_test_{uuid.uuid4().hex[:12]}"
    openers = {
        "open_permalinks": lambda url, srv: MongoPermalinks(url, database=name),
        "open_accounts": lambda url, srv: MongoAccounts(url, hasher=FAST, database=name)}
    store = openers["open_permalinks"](REAL_MONGO, "")
    users = openers["open_accounts"](REAL_MONGO, "")
    try:
        round_trip(tmp_path, root, openers, store, users)
    finally:
        store._client.drop_database(name)
        store.close()
        users.close()
