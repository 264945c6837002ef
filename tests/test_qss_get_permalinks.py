"""The plotter's permalinks carried by qss-get --backup and --restore: from the SQLite
store beside the queue, and from MongoDB's mr_plotter.permalinks (mongomock; a real
server too when QSS_TEST_MONGO_URL is set)."""
from __future__ import annotations

import os
import uuid

import mongomock
import pytest

from qss.permalinks import MongoPermalinks, SqlitePermalinks
from qss.settings import render_default_ini

from qss.queue import open_queue

from test_qss_get_data import FakeServices, fill_queue, make_env, make_root, make_store, qss_get

U1 = "f0896731-0e43-4ed5-a97f-19266d8e732c"
BACKUP = "usb/qss-backup-20240506T070809"


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
    (tmp_path / "usb").mkdir()
    status, out = qss_get(make_env(root), "--backup", str(tmp_path / "usb"))
    assert status == 0, out
    folder = tmp_path / BACKUP
    queue = ["queue/plotter.db", "queue/queue.db"] if outside else [
        "srv/plotter.db", "srv/queue.db"]
    assert manifest(folder) == sorted([
        "config/backupconfig.ini", "config/qss.ini", "config/upmuconfig.ini",
        "data/btrdb.sqlite3", *queue])
    # made and lost after the backup: the restore brings back exactly the backup's
    store = SqlitePermalinks(str(db))
    store.create(view(99))
    store.close()
    os.unlink(db)
    services = FakeServices()
    env = make_env(root, "y\n", services)
    status, out = qss_get(env, "--restore", str(folder))
    assert status == 0, env.stderr.getvalue()
    assert services.calls == ["stop", "start"]
    store = SqlitePermalinks(str(db))
    assert {r["id"]: r["doc"] for r in store.records()} == kept
    store.close()
    assert (root / ("q/queue.db" if outside else "ssd/srv/queue.db")).stat().st_size > 0


def test_no_permalink_store_no_entry(tmp_path):
    root = make_root(tmp_path)
    fill_queue(root)
    make_store(root, 10)
    (tmp_path / "usb").mkdir()
    status, out = qss_get(make_env(root), "--backup", str(tmp_path / "usb"))
    assert status == 0, out
    assert "plotter/permalinks.jsonl" not in manifest(tmp_path / BACKUP)
    assert not (root / "ssd/srv/plotter.db").exists()      # not made by the backup


def mongo_root(tmp_path, url="mongodb://127.0.0.1:27017"):
    root = make_root(tmp_path, render_default_ini().replace(
        "url = sqlite:////ssd/srv/queue.db", f"url = {url}"))
    make_store(root, 10)
    (tmp_path / "usb").mkdir()
    return root


def round_trip(tmp_path, root, opener, store) -> None:
    """Back up, change the store, restore: it holds exactly what it held at the backup."""
    kept = {store.create(view(n)): view(n) for n in range(1, 5)}
    services = FakeServices()
    status, out = qss_get(make_env(root, services=services, open_permalinks=opener),
                          "--backup", str(tmp_path / "usb"))
    assert status == 0, out
    assert services.calls == ["stop", "start"]      # MongoDB's files: mongod stopped
    folder = tmp_path / BACKUP
    assert "plotter/permalinks.jsonl" in manifest(folder)
    extra = store.create(view(77))
    services = FakeServices()
    env = make_env(root, "y\n", services, open_permalinks=opener)
    status, out = qss_get(env, "--restore", str(folder))
    assert status == 0, env.stderr.getvalue()
    assert out.splitlines()[-3:-1] == [   # once MongoDB runs again
        "started   the services (supervisorctl start all)",
        "restored  4 permalinks of the plotter into MongoDB mr_plotter.permalinks"]
    assert {r["id"]: r["doc"] for r in store.records()} == kept
    assert store.get(extra) is None


def test_mongodb_permalinks_are_backed_up_and_restored_exactly(tmp_path):
    root = mongo_root(tmp_path)
    client = mongomock.MongoClient()
    opener = lambda url, srv: MongoPermalinks(url, client=client)   # noqa: E731
    round_trip(tmp_path, root, opener, MongoPermalinks("mongodb://x", client=client))
    assert client["mr_plotter"]["permalinks"].count_documents({}) == 4


def test_an_unreachable_mongodb_is_a_warning_not_a_failed_backup(tmp_path):
    root = mongo_root(tmp_path, "mongodb://127.0.0.1:9")        # nothing listens on 9
    opener = lambda url, srv: MongoPermalinks(url, timeout_ms=300)  # noqa: E731
    env = make_env(root, services=FakeServices(), open_permalinks=opener)
    status, out = qss_get(env, "--backup", str(tmp_path / "usb"))
    assert status == 0, env.stderr.getvalue()
    warning = env.stderr.getvalue()
    assert warning.startswith("qss-get: warning: the plotter's permalinks (MongoDB "
                              "mr_plotter.permalinks) cannot be read (")
    assert warning.endswith("); the backup holds them only within MongoDB's own files "
                            "([paths] srv, when MongoDB runs on this machine)\n")
    assert warning.count("\n") == 1
    assert "plotter/permalinks.jsonl" not in manifest(tmp_path / BACKUP)


REAL_MONGO = os.environ.get("QSS_TEST_MONGO_URL")


@pytest.mark.skipif(not REAL_MONGO, reason="a real MongoDB server: set QSS_TEST_MONGO_URL="
                    "mongodb://HOST:PORT (a scratch database is made and dropped)")
def test_mongodb_permalinks_round_trip_on_a_real_server(tmp_path):
    root = mongo_root(tmp_path, REAL_MONGO)
    name = f"qss_test_{uuid.uuid4().hex[:12]}"
    opener = lambda url, srv: MongoPermalinks(url, database=name)   # noqa: E731
    store = opener(REAL_MONGO, "")
    try:
        round_trip(tmp_path, root, opener, store)
    finally:
        store._client.drop_database(name)
        store.close()
