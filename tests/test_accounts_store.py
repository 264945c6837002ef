"""The account store (SQLite, MongoDB through mongomock, a real MongoDB when
QSS_TEST_MONGO_URL names one), tagconfig.json, and the plotter's sessions and throttle,
without a server."""
from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import uuid

import mongomock
import pytest

from plotter.sessions import Sessions, Throttle
from qss.accounts import (AccountError, MongoAccounts, SqliteAccounts, dump, load,
                          open_accounts)
from qss.tagconfig import (DEFAULT, TagConfigError, TagConfigFile, covers, normalise, parse,
                           prefixes_for)


@pytest.fixture(params=["sqlite", "mongomock", "mongodb"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = open_accounts(f"sqlite:///{tmp_path}/queue.db", "/nowhere")
        assert isinstance(s, SqliteAccounts) and s.path == f"{tmp_path}/plotter.db"
    elif request.param == "mongomock":
        s = MongoAccounts("mongodb://x", client=mongomock.MongoClient())
    else:
        url = os.environ.get("QSS_TEST_MONGO_URL")
        if not url:
            pytest.skip("QSS_TEST_MONGO_URL names no MongoDB to test against")
        import pymongo
        client = pymongo.MongoClient(url, serverSelectionTimeoutMS=5000)
        name = f"qss_test_{uuid.uuid4().hex[:8]}"
        s = MongoAccounts(url, client=client)
        s._coll = client[name]["accounts"]       # a database of its own, dropped below
        request.addfinalizer(lambda: client.drop_database(name))
    yield s


def test_the_manuals_adduser_and_the_other_operations(store):
    peter = store.add("peter", "psladmin", ["psl", "lbnl", "pge"])
    assert (peter.name, peter.tags, peter.generation) == ("peter", ("psl", "lbnl", "pge"), 0)
    assert store.check("peter", "psladmin") == store.get("peter")
    assert store.check("peter", "PSLADMIN") is None and store.check("nobody", "x") is None
    assert store.add_tags("peter", ["upmu", "psl"]).tags == ("psl", "lbnl", "pge", "upmu")
    assert store.remove_tags("peter", ["pge"]).tags == ("psl", "lbnl", "upmu")
    assert store.set_password("peter", "new").generation == 1
    assert store.check("peter", "psladmin") is None and store.check("peter", "new")
    store.add("ann", "a", ["upmu"])
    assert [(a.name, a.tags) for a in store.list()] == [("ann", ("upmu",)),
                                                        ("peter", ("psl", "lbnl", "upmu"))]
    store.delete("ann")
    assert store.get("ann") is None and [a.name for a in store.list()] == ["peter"]


def test_records_carry_the_hashes_and_replace_all_puts_back_exactly_those(store):
    """A backup's accounts (dump) hold each Argon2id hash as stored and never the password;
    loading them makes the store hold exactly those, passwords and generations intact."""
    store.add("peter", "psladmin", ["psl", "lbnl", "pge"])
    store.add("ann", "s3cret", ["upmu"])
    store.set_password("ann", "n3w")
    data = dump(store)
    assert b"psladmin" not in data and b"n3w" not in data
    records = list(store.records())
    assert [(r["name"], r["tags"], r["generation"]) for r in records] == [
        ("ann", ["upmu"], 1), ("peter", ["psl", "lbnl", "pge"], 0)]
    assert all(r["hash"].startswith("$argon2id$") for r in records)
    store.delete("peter")
    store.add("mallory", "x", ["lbnl"])
    store.set_password("ann", "other")
    assert load(store, data) == 2
    assert list(store.records()) == records
    assert store.check("peter", "psladmin").tags == ("psl", "lbnl", "pge")
    assert store.check("ann", "n3w").generation == 1 and store.check("ann", "other") is None
    assert store.get("mallory") is None
    assert load(store, b"") == 0 and store.list() == []


def account_line(hashed: str, **change) -> str:
    """A line of a backup's accounts.jsonl, with ``change`` made."""
    r = {"created": "2024-05-06T07:08:09+00:00", "generation": 0, "hash": hashed,
         "name": "peter", "tags": ["psl"]}
    return json.dumps({**r, **change})


@pytest.mark.parametrize("change,why", [
    (lambda h: '{"name": "peter", "password": "psladmin", "tags": ["psl"]}',
     "not an account record"),
    (lambda h: account_line("psladmin"), "the password is not an Argon2id hash"),
    (lambda h: account_line(h.replace("$argon2id$", "$argon2i$")),
     "the password is not an Argon2id hash"),
    (lambda h: account_line(h.replace("$v=19$", "$v=x$")), "a damaged Argon2id hash"),
    (lambda h: account_line(h, tags=[]), "at least one tag is required"),
    (lambda h: account_line(h, tags=["psl", "psl"]), "bad tags"),
    (lambda h: account_line(h, name="a b"), "bad user name 'a b'"),
    (lambda h: account_line(h, generation=-1), "bad generation"),
    (lambda h: account_line(h, generation=True), "bad generation"),
    (lambda h: account_line(h, name="ann"), "a second record 'ann'"),
    (lambda h: "not json", ""),
], ids=["password", "plain", "argon2i", "damaged", "no tag", "twice a tag", "bad name",
        "negative generation", "boolean generation", "same user twice", "not json"])
def test_a_bad_account_line_changes_nothing(store, change, why):
    store.add("peter", "psladmin", ["psl"])
    before = list(store.records())
    hashed = before[0]["hash"]
    data = f"{account_line(hashed, name='ann')}\n{change(hashed)}\n".encode()
    with pytest.raises(ValueError, match="^line 2: .*" + re.escape(why)):
        load(store, data)
    assert list(store.records()) == before


@pytest.mark.parametrize("call,message", [
    (lambda s: s.add("peter", "x", ["a"]), "user 'peter' already exists"),
    (lambda s: s.add("new", "x", []), "at least one tag is required"),
    (lambda s: s.add("bad name", "x", ["a"]), "bad user name 'bad name'"),
    (lambda s: s.add("new", "x", ["a/b"]), "bad tag 'a/b'"),
    (lambda s: s.add("new", "", ["a"]), "the password must not be empty"),
    (lambda s: s.delete("ghost"), "no user 'ghost'"),
    (lambda s: s.set_password("ghost", "x"), "no user 'ghost'"),
    (lambda s: s.add_tags("ghost", ["a"]), "no user 'ghost'"),
    (lambda s: s.remove_tags("peter", ["upmu"]), "user 'peter' has no tag 'upmu'"),
    (lambda s: s.remove_tags("peter", ["psl", "lbnl"]), "must keep at least one tag"),
])
def test_mistakes_are_one_line_errors(store, call, message):
    store.add("peter", "psladmin", ["psl", "lbnl"])
    with pytest.raises(AccountError) as exc:
        call(store)
    assert message in str(exc.value) and "\n" not in str(exc.value)
    assert store.get("peter").tags == ("psl", "lbnl")


def test_passwords_are_stored_only_as_argon2id_hashes(tmp_path):
    store = SqliteAccounts(str(tmp_path / "plotter.db"))
    store.add("peter", "psladmin", ["psl"])
    store.close()
    (hashed,) = sqlite3.connect(tmp_path / "plotter.db").execute(
        "SELECT hash FROM accounts").fetchone()
    assert hashed.startswith("$argon2id$") and "psladmin" not in hashed
    assert b"psladmin" not in (tmp_path / "plotter.db").read_bytes()
    client = mongomock.MongoClient()
    MongoAccounts("mongodb://x", client=client).add("peter", "psladmin", ["psl"])
    doc = client["mr_plotter"]["accounts"].find_one({"_id": "peter"})
    assert doc["hash"].startswith("$argon2id$") and doc["tags"] == ["psl"]


# -- tagconfig.json --------------------------------------------------------------------

def test_prefixes_match_whole_path_elements():
    assert covers("/lbnl", "/lbnl/uPMU1/L1MAG") and covers("/lbnl", "/lbnl")
    assert not covers("/lbnl", "/lbnl2/uPMU1/L1MAG")
    assert covers("/", "/anything/at/all") and covers(normalise("/lbnl/"), "/lbnl/x")
    assert covers("/upmu/uPMU_1", "/upmu/uPMU_1/L1MAG")
    assert not covers("/upmu/uPMU_1", "/upmu/uPMU_10/L1MAG")


def test_the_manuals_tagconfig():
    config = parse('{\n    "public": ["/upmu"],\n    "lbnl": ["/lbnl"]\n}')
    assert config == {"public": ("/upmu",), "lbnl": ("/lbnl",)}
    assert prefixes_for(config, []) == ("/upmu",)
    assert prefixes_for(config, ["psl", "lbnl", "pge"]) == ("/upmu", "/lbnl")
    assert prefixes_for(parse('{"public": []}'), ["lbnl"]) == ()


@pytest.mark.parametrize("text,message", [
    ("{", "not valid JSON"), ("[]", "must be a JSON object"),
    ('{"public": "/upmu"}', "tag 'public': expected a list"),
    ('{"lbnl": ["lbnl"]}', "tag 'lbnl': 'lbnl' is not a path prefix"),
])
def test_a_broken_tagconfig_says_why(text, message):
    with pytest.raises(TagConfigError, match=message):
        parse(text)


def test_the_file_keeps_its_last_good_version_while_broken(tmp_path, caplog):
    now = [0.0]
    path = tmp_path / "tagconfig.json"
    f = TagConfigFile(str(path), period=1.0, clock=lambda: now[0])
    assert f.get() == DEFAULT and f.error is None               # missing: the default
    path.write_text('{"public": [], "lbnl": ["/lbnl"]}')
    assert f.get() == DEFAULT                                   # looked at once a second
    now[0] += 1
    assert f.get() == {"public": (), "lbnl": ("/lbnl",)}
    path.write_text('{"public": ["/"],')
    now[0] += 1
    with caplog.at_level(logging.ERROR):
        assert f.get() == {"public": (), "lbnl": ("/lbnl",)}
    assert f.error.startswith(f"{path}: not valid JSON") and f.error in caplog.text
    path.write_text('{"public": ["/psl"]}')
    now[0] += 1
    assert f.get() == {"public": ("/psl",)} and f.error is None


# -- sessions and the throttle ---------------------------------------------------------

def test_a_session_ends_after_its_idle_time_unless_used():
    now = [0.0]
    sessions = Sessions(idle=60, clock=lambda: now[0])
    s = sessions.open("peter", 0)
    now[0] = 50
    assert sessions.find(s.token) is s
    now[0] = 100                     # 50 s after its last use
    assert sessions.find(s.token) is s
    now[0] = 160.5
    assert sessions.find(s.token) is None and sessions.find(s.token) is None
    assert sessions.find("made-up") is None and sessions.find(None) is None


def test_sessions_are_bounded_and_a_user_can_be_signed_out_everywhere():
    now = [0.0]
    sessions = Sessions(idle=60, clock=lambda: now[0], limit=3)
    made = []
    for i in range(4):
        now[0] = i
        made.append(sessions.open("peter" if i else "ann", 0))
    assert sessions.find(made[0].token) is None          # the least recently used went
    sessions.close_user("peter", keep=made[3].token)
    assert [sessions.find(s.token) is not None for s in made] == [False, False, False, True]


def test_the_throttle_allows_five_failures_a_minute():
    now = [0.0]
    t = Throttle(limit=5, window=60, clock=lambda: now[0])
    for i in range(5):
        assert t.wait(["user:peter", "address:a"]) == 0
        now[0] = i * 10
        t.fail(["user:peter", "address:a"])
    assert t.wait(["user:peter"]) == pytest.approx(20)   # the first failure ages out at 60
    assert t.wait(["user:ann", "address:a"]) == pytest.approx(20)
    assert t.wait(["user:ann", "address:b"]) == 0
    now[0] = 60
    assert t.wait(["user:peter"]) == 0


def test_backup_and_restore_carry_the_accounts(tmp_path):
    """plotter.db lives beside the SQLite queue in [paths] srv: qss-get --backup copies it
    (SQLite's backup API, as the queue) and --restore brings the accounts back."""
    from test_qss_get_data import FakeServices, fill_queue, make_env, make_root, qss_get
    root = make_root(tmp_path)
    fill_queue(root)
    db = root / "ssd/srv/plotter.db"
    store = SqliteAccounts(str(db))
    store.add("peter", "psladmin", ["psl", "lbnl", "pge"])
    store.close()
    (tmp_path / "usb").mkdir()
    status, out = qss_get(make_env(root), "--backup", str(tmp_path / "usb"))
    assert status == 0, out
    backup = tmp_path / "usb/qss-backup-20240506T070809"
    assert "  srv/plotter.db\n" in (backup / "MANIFEST.sha256").read_text()
    store = SqliteAccounts(str(db))
    store.delete("peter")
    store.close()
    status, out = qss_get(make_env(root, "y\n", FakeServices()), "--restore", str(backup))
    assert status == 0, out
    store = SqliteAccounts(str(db))
    assert store.check("peter", "psladmin").tags == ("psl", "lbnl", "pge")
    store.close()
