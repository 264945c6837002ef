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


def test_adding_and_a_new_password_write_a_new_random_stamp(store):
    """The stamp binds a session to one account: a re-added user (generation 0 again)
    and a new password both get a stamp no old session holds."""
    first = store.add("ann", "a", ["upmu"])
    assert len(first.stamp) == 32 and store.get("ann").stamp == first.stamp
    assert store.add_tags("ann", ["psl"]).stamp == first.stamp == store.get("ann").stamp
    store.delete("ann")
    again = store.add("ann", "a", ["upmu"])
    assert (again.generation, first.generation) == (0, 0)
    assert again.stamp != first.stamp and store.get("ann").stamp == again.stamp
    changed = store.set_password("ann", "b")
    assert changed.stamp not in (again.stamp, "") and store.get("ann").stamp == changed.stamp
    assert store.set_password("ann", "c", "given").stamp == store.get("ann").stamp == "given"
    assert store.check("ann", "c").stamp == "given"


def test_a_plotter_db_made_before_the_stamp_is_given_one(tmp_path):
    """This session's appliances have plotter.db without the stamp column."""
    import sqlite3
    path = tmp_path / "plotter.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE accounts (name TEXT PRIMARY KEY, tags TEXT NOT NULL, hash TEXT "
               "NOT NULL, generation INTEGER NOT NULL DEFAULT 0, created TEXT NOT NULL)")
    hashed = SqliteAccounts(str(tmp_path / "other.db"))._hashing.hash("psladmin")
    db.execute("INSERT INTO accounts VALUES ('peter', '[\"psl\"]', ?, 2, 'then')", (hashed,))
    db.commit()
    db.close()
    store = SqliteAccounts(str(path))
    peter = store.check("peter", "psladmin")
    assert (peter.tags, peter.generation, peter.created) == (("psl",), 2, "then")
    assert len(peter.stamp) == 32
    store.add("ann", "a", ["upmu"])
    store.close()
    store = SqliteAccounts(str(path))                   # opened again: nothing changes
    assert store.get("peter").stamp == peter.stamp and store.get("ann").stamp
    store.close()


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


def test_a_tagconfig_gone_after_it_was_seen_keeps_the_last_good_version(tmp_path, caplog):
    """An editor that saves by rename leaves a moment without the file: that must not
    switch to the default (which makes /upmu public)."""
    now = [0.0]
    path = tmp_path / "tagconfig.json"
    path.write_text('{"public": [], "upmu": ["/upmu"]}')
    f = TagConfigFile(str(path), period=1.0, clock=lambda: now[0])
    assert f.get() == {"public": (), "upmu": ("/upmu",)}
    path.unlink()
    now[0] += 1
    with caplog.at_level(logging.ERROR):
        assert f.get() == {"public": (), "upmu": ("/upmu",)}
    assert f.error == f"{path}: no such file; the last good version stays in force until " \
                      f"it is back" and f.error in caplog.text
    path.write_text('{"public": ["/psl"]}')
    now[0] += 1
    assert f.get() == {"public": ("/psl",)} and f.error is None


# -- sessions and the throttle ---------------------------------------------------------

def test_a_session_ends_after_its_idle_time_unless_used():
    now = [0.0]
    sessions = Sessions(idle=60, clock=lambda: now[0])
    s = sessions.open("peter", "s0")
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
        made.append(sessions.open("peter" if i else "ann", "s0"))
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


def test_the_throttle_counts_an_attempt_from_its_start():
    """Parallel sign-ins: attempts under way count against the limit, so no more than
    five guesses are ever hashed at once or within the window."""
    now = [0.0]
    t = Throttle(limit=5, window=60, clock=lambda: now[0])
    keys = ["user:peter", "address:a"]
    assert [t.begin(keys) for _ in range(7)] == [0] * 5 + [1.0, 1.0]
    assert t.begin(["user:ann", "address:a"]) == 1.0          # the address is full too
    assert t.begin(["user:ann", "address:b"]) == 0
    t.end(["user:ann", "address:b"], failed=False)
    t.end(keys, failed=False)                                  # a success frees its place
    assert t.begin(keys) == 0
    for _ in range(5):
        now[0] += 1
        t.end(keys, failed=True)
    assert t.begin(keys) == pytest.approx(56)       # five failures: the first at 1 ages out
    now[0] = 61.5
    assert t.begin(keys) == 0
    t.end(keys, failed=False)
    assert t._running == {}


def test_no_more_than_max_hashing_password_checks_wait(tmp_path):
    """A burst from many addresses: checks past MAX_HASHING are refused, not queued."""
    import threading
    import anyio
    from plotter.signin import MAX_HASHING, Busy
    signin = quick_signin(tmp_path)
    release = threading.Event()
    refused = []

    async def main():
        async def one():
            try:
                await signin.hashing(release.wait, 30)
            except Busy:
                refused.append(1)
        async with anyio.create_task_group() as tg:
            for _ in range(MAX_HASHING + 3):
                tg.start_soon(one)
            while len(refused) < 3:
                await anyio.sleep(0.01)
            assert signin._hashing == MAX_HASHING
            release.set()
    anyio.run(main)
    assert len(refused) == 3 and signin._hashing == 0


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


# -- the plotter's sign-in against a store (no server) ---------------------------------

class FakeRequest:
    """What plotter.signin's handlers read of a request."""

    def __init__(self, signin, token, path="/api/data", body=b"", headers=None):
        from types import SimpleNamespace as NS
        from plotter.signin import SESSION_COOKIE
        self.app = NS(state=NS(plotter=NS(signin=signin)))
        self.cookies = {SESSION_COOKIE: token} if token else {}
        self.url = NS(path=path)
        self.client = NS(host="127.0.0.1")
        self.headers = headers or {}
        self._body = body

    async def body(self):
        return self._body


def quick_signin(tmp_path, store=None):
    from argon2 import PasswordHasher
    from plotter.signin import SignIn
    hasher = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    store = store or SqliteAccounts(str(tmp_path / "plotter.db"), hasher=hasher)
    return SignIn("sqlite:///" + str(tmp_path / "queue.db"), str(tmp_path),
                  TagConfigFile(str(tmp_path / "tagconfig.json")), idle=60, https=False,
                  accounts=store)


def test_a_password_change_never_ends_the_changers_own_session(tmp_path):
    """A request of the changing session while the new password is being written (the
    store already holds it) still counts; the user's other sessions end."""
    import anyio
    import json as json_
    from argon2 import PasswordHasher
    from plotter.signin import change_password
    seen = []

    class Watched(SqliteAccounts):
        def set_password(self, name, password, stamp=None):
            out = super().set_password(name, password, stamp)
            seen.append(signin.current(FakeRequest(signin, mine.token)))
            return out
    store = Watched(str(tmp_path / "plotter.db"),
                    hasher=PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
    signin = quick_signin(tmp_path, store)
    ann = store.add("ann", "old", ["upmu"])
    mine, other = signin.sessions.open("ann", ann.stamp), signin.sessions.open("ann", ann.stamp)
    body = json_.dumps({"old": "old", "new": "new"}).encode()
    r = anyio.run(change_password, FakeRequest(signin, mine.token, "/api/password", body))
    assert r.status_code == 200
    assert seen and seen[0] is not None and seen[0][0] is mine      # not ended midway
    assert signin.current(FakeRequest(signin, mine.token)) is not None
    assert mine.stamp == store.get("ann").stamp and mine.next_stamp is None
    assert signin.current(FakeRequest(signin, other.token)) is None


def test_a_failed_password_write_keeps_the_session_on_the_old_stamp(tmp_path):
    import anyio
    import json as json_
    from plotter.signin import change_password
    signin = quick_signin(tmp_path)
    store = signin.accounts()
    ann = store.add("ann", "old", ["upmu"])
    mine = signin.sessions.open("ann", ann.stamp)

    def broken(*args):
        raise sqlite3.OperationalError("attempt to write a readonly database")
    store.set_password = broken
    body = json_.dumps({"old": "old", "new": "new"}).encode()
    with pytest.raises(sqlite3.OperationalError):
        anyio.run(change_password, FakeRequest(signin, mine.token, "/api/password", body))
    assert (mine.stamp, mine.next_stamp) == (ann.stamp, None)
    assert signin.current(FakeRequest(signin, mine.token)) is not None


@pytest.mark.skipif(os.geteuid() != 0, reason="acting as two users needs root")
def test_a_plotter_db_made_by_the_plotter_is_written_by_the_console():
    """On a fresh appliance the plotter (the service user, umask 007) may create
    plotter.db before the operator (in its group, umask 022) runs adduser; each writes it
    in turn, in the setgid data folder as the appliance has it."""
    import pwd
    import shutil
    import tempfile
    import traceback
    from argon2 import PasswordHasher
    from qss.permalinks import SqlitePermalinks
    used = {p.pw_uid for p in pwd.getpwall()}
    qss, manager = [i for i in range(61000, 62000) if i not in used][:2]
    base = tempfile.mkdtemp(prefix="qss-plotterdb-", dir="/tmp")
    os.chmod(base, 0o755)
    srv = os.path.join(base, "srv")
    os.mkdir(srv)
    os.chown(srv, qss, qss)
    os.chmod(srv, 0o2770)
    path = os.path.join(srv, "plotter.db")
    hasher = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)

    def as_user(uid, groups, umask, fn) -> int:
        pid = os.fork()
        if pid == 0:                                   # the child: never returns
            try:
                os.setgroups(groups)
                os.setgid(uid)
                os.setuid(uid)
                os.umask(umask)
                fn()
                os._exit(0)
            except BaseException:
                traceback.print_exc()
                os._exit(1)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

    def first_permalinks():                            # plotter/metadata open it first
        SqlitePermalinks(path).close()

    def adduser(name):
        def run():
            store = SqliteAccounts(path, hasher=hasher)
            store.add(name, "pw", ["upmu"])
            store.close()
        return run
    try:
        assert as_user(qss, [], 0o007, first_permalinks) == 0
        assert oct(os.stat(path).st_mode & 0o777) == oct(0o660)
        assert as_user(manager, [qss], 0o022, adduser("peter")) == 0
        assert as_user(qss, [], 0o007, adduser("ann")) == 0
        assert as_user(manager, [qss], 0o022, adduser("una")) == 0
        store = SqliteAccounts(path)
        assert [a.name for a in store.list()] == ["ann", "peter", "una"]
        store.close()
    finally:
        shutil.rmtree(base)


def test_account_lookups_do_not_block_the_event_loop(tmp_path):
    """With MongoDB (down) a lookup can take seconds: the page's other requests go on."""
    import time as time_
    import anyio
    from plotter.signin import session_info
    signin = quick_signin(tmp_path)
    store = signin.accounts()
    ann = store.add("ann", "a", ["upmu"])
    s = signin.sessions.open("ann", ann.stamp)
    slow_get = store.get
    store.get = lambda name: (time_.sleep(0.6), slow_get(name))[1]
    ticks = []

    async def main():
        async def tick():
            while True:
                ticks.append(1)
                await anyio.sleep(0.05)
        async with anyio.create_task_group() as tg:
            tg.start_soon(tick)
            await anyio.sleep(0)
            r = await session_info(FakeRequest(signin, s.token, "/api/session"))
            tg.cancel_scope.cancel()
        return r
    r = anyio.run(main)
    assert json.loads(r.body)["user"] == "ann"
    assert len(ticks) >= 5, ticks           # the loop ran on while the store answered


def test_a_stale_session_ends_alone_and_deleting_a_user_ends_all_of_theirs(tmp_path):
    signin = quick_signin(tmp_path)
    store = signin.accounts()
    old = store.add("ann", "a", ["upmu"])
    stale = signin.sessions.open("ann", old.stamp)
    new = signin.sessions.open("ann", store.set_password("ann", "b").stamp)   # the console
    assert signin.current(FakeRequest(signin, stale.token)) is None
    assert signin.current(FakeRequest(signin, new.token)) is not None       # signed in since
    other = signin.sessions.open("ann", store.get("ann").stamp)
    store.delete("ann")
    assert signin.current(FakeRequest(signin, new.token)) is None
    assert signin.sessions.find(other.token, touch=False) is None            # ended too


def test_a_restore_gives_every_account_a_new_stamp(store):
    """The backup format has no stamp: restored accounts get new ones, so no session
    opened before the restore counts after it; their passwords still work."""
    before = store.add("peter", "psladmin", ["psl"])
    assert store.replace_all(list(store.records())) == 1
    after = store.get("peter")
    assert after.stamp and after.stamp != before.stamp
    assert store.check("peter", "psladmin").stamp == after.stamp
