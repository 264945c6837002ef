"""Manual ch. 10-11 through the plotter's API: who sees which domain, for every endpoint;
sign-in, sign-out, password change, CSRF, throttling, idle expiry, and tagconfig.json
changed or broken while the plotter runs (a real qss-plotter and qss-btrdb)."""
from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
import uuid as uuidlib

import pytest
import requests

from plotter import testing as plotter_testing
from qss.accounts import SqliteAccounts
from qss.btrdbclient import connect

import test_plotter_https
from domains import upmuconfig_in_domains
from waiting import wait_until

certificate = test_plotter_https.certificate        # the fixture: a self-signed certificate

T0 = 1_450_426_497_000_000_000
DOMAINS = ("upmu", "lbnl", "psl", "lbnl2")
#: Tags of the manual's peter, a user with only upmu, and one who sees every domain.
USERS = {"peter": ("psladmin", ("psl", "lbnl", "pge")), "una": ("upmupass", ("upmu",)),
         "root": ("rootpass", ("upmu", "lbnl", "psl", "lbnl2"))}
TAGCONFIG = {"public": [], "upmu": ["/upmu"], "lbnl": ["/lbnl"], "psl": ["/psl"],
             "lbnl2": ["/lbnl2"]}
#: Who sees what under TAGCONFIG: /lbnl never opens /lbnl2 (whole path elements).
SEES = {None: set(), "peter": {"lbnl", "psl"}, "una": {"upmu"}, "root": set(DOMAINS)}


@pytest.fixture(scope="module")
def streams(server):
    """One stream with data per domain, as upmu-adm save makes them (uPMU1..4)."""
    db = connect(server.grpc)
    made = {}
    for i, domain in enumerate(DOMAINS, 1):
        s = db.create(uuidlib.uuid4(), f"{domain}/uPMU{i}", {"name": "L1MAG", "unit": "V"}, {})
        s.insert([(T0 + k * 10**9, 100.0 + k) for k in range(60)])
        s.flush()
        made[domain] = s
    yield made
    db._qss_channel.close()


def layout(folder, tagconfig=TAGCONFIG, users=USERS):
    """upmuconfig.ini with uPMU1..4 in the four domains, tagconfig.json and accounts."""
    cfg = upmuconfig_in_domains(folder / "upmuconfig.ini", DOMAINS)
    (folder / "tagconfig.json").write_text(json.dumps(tagconfig))
    store = SqliteAccounts(str(folder / "plotter.db"))
    for name, (password, tags) in users.items():
        store.add(name, password, tags)
    store.close()
    return cfg


@pytest.fixture(scope="module")
def plotter(server, streams, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("accounts")
    cfg = layout(tmp)
    p = plotter_testing.start(server.grpc, tmp, "--upmuconfig", str(cfg),
                              log_path=tmp / "plotter.log")
    p.folder = tmp
    try:
        yield p
    finally:
        p.stop()


def as_(plotter, user):
    if user is None:
        return plotter_testing.client(plotter.url)
    return plotter_testing.client(plotter.url, user, USERS[user][0])


def normal(response, uuid):
    """Status and body, the stream's UUID written as X (to compare with a missing one)."""
    return response.status_code, response.text.replace(uuid, "X")


# -- the matrix ------------------------------------------------------------------------

@pytest.mark.parametrize("user", [None, "peter", "una"])
def test_every_endpoint_gives_a_refused_stream_the_answer_of_a_missing_one(plotter, streams,
                                                                          user):
    http = as_(plotter, user)
    missing = str(uuidlib.uuid4())
    root = as_(plotter, "root")
    every = [str(streams[d].uuid) for d in DOMAINS]
    pid = root.post(plotter.url + "/api/permalinks", json={
        "streams": every, "window": {"kind": "fixed", "start": T0, "end": T0 + 60 * 10**9}},
        timeout=30).json()["id"]

    listed = {s["uuid"] for s in http.get(plotter.url + "/api/streams", timeout=30)
              .json()["streams"]}
    tree = json.dumps(http.get(plotter.url + "/api/streams", timeout=30).json()["tree"])
    health = {u["alias"] for u in http.get(plotter.url + "/api/health", timeout=30)
              .json()["upmus"]}
    shown = http.get(plotter.url + f"/api/permalinks/{pid}", timeout=30).json()["streams"]
    assert shown == [u for d, u in zip(DOMAINS, every) if d in SEES[user]]

    for i, domain in enumerate(DOMAINS, 1):
        u = str(streams[domain].uuid)
        allowed = domain in SEES[user]
        assert (u in listed) == allowed, domain
        assert (f'"{domain}"' in tree) == allowed, domain
        assert (f"uPMU{i}" in health) == allowed, domain
        window = {"start": T0, "end": T0 + 60 * 10**9}
        requests_ = [
            ("GET", "/api/streams/{}", {}),
            ("GET", "/api/bracket", {"uuid": "{}"}),
            ("GET", "/api/data", {"uuid": "{}", **window, "width": 100}),
            ("GET", "/api/data", {"uuid": "{}", **window, "width": 100, "compact": 1}),
            ("GET", "/api/csv", {"uuid": "{}", **window, "raw": 1}),
            ("GET", "/api/csv", {"uuid": "{}", **window, "pw": 30}),
            ("POST", "/api/permalinks", {"streams": ["{}"],
                                         "window": {"kind": "now", "span": 10**9}}),
        ]
        for method, path, params in requests_:
            def ask(uuid):
                if method == "POST":
                    return http.post(plotter.url + path, timeout=30,
                                     json={**params, "streams": [uuid]})
                return http.get(plotter.url + path.format(uuid), timeout=30,
                                params={k: (uuid if v == "{}" else v)
                                        for k, v in params.items()})
            got = ask(u)
            if allowed:
                assert got.status_code in (200, 201), (domain, path, got.text)
                if path == "/api/csv":
                    assert f"/{domain}/uPMU{i}/L1MAG" in got.text.splitlines()[0]
                elif path == "/api/data":
                    assert got.json()["streams"][0]["uuid"] == u
            else:
                assert normal(got, u) == normal(ask(missing), missing), (domain, path)
                assert got.status_code == 404 and domain not in got.text


def test_a_permalink_shows_its_viewer_only_what_they_may_see(plotter, streams):
    """Its view too: colours, hidden and stream axes name streams by UUID, axes may be
    named by the user; a reader gets none of them for a stream they may not see."""
    root = as_(plotter, "root")
    every = [str(streams[d].uuid) for d in DOMAINS]
    lbnl, psl = str(streams["lbnl"].uuid), str(streams["psl"].uuid)
    view = {"colors": {u: f"#00000{i}" for i, u in enumerate(every)}, "hidden": every,
            "streamAxes": {u: f"axis of {d}" for d, u in zip(DOMAINS, every)},
            "axes": {**{f"axis of {d}": {"label": f"label of {d}"} for d in DOMAINS},
                     "V": {"label": "volts"}}}
    made = root.post(plotter.url + "/api/permalinks", json={
        "streams": every, "window": {"kind": "last", "span": 10 * 10**9}, "view": view},
        timeout=30)
    assert made.status_code == 201, made.text
    link = f"{plotter.url}/api/permalinks/{made.json()['id']}"
    unused = {k: v for k, v in view["axes"].items() if k != "V"}   # every stream moved
    assert root.get(link, timeout=30).json()["view"] == {**view, "axes": unused}
    for user in (None, "peter", "una"):
        got = as_(plotter, user).get(link, timeout=30)
        seen = [u for d, u in zip(DOMAINS, every) if d in SEES[user]]
        assert got.json()["streams"] == seen
        for d, u in zip(DOMAINS, every):
            if d not in SEES[user]:
                assert u not in got.text and f"of {d}" not in got.text, (user, d)
        assert got.json()["view"]["hidden"] == seen
        assert set(got.json()["view"]["axes"]) == {f"axis of {d}" for d in SEES[user]}
    refused = root.post(plotter.url + "/api/permalinks", json={
        "streams": [lbnl], "window": {"kind": "last", "span": 10**9},
        "view": {"colors": {psl: "#000000"}}}, timeout=30)
    assert refused.status_code == 400 and "not one of the permalink's streams" in refused.text


def test_the_health_panel_names_only_a_collection_its_viewer_may_see():
    """A uPMU whose streams lie in two domains: a viewer of one never sees the other's
    name (the first in order)."""
    from types import SimpleNamespace as NS
    from plotter.health import health
    from qss.queue import QueueError
    from qss.status import ProbeError

    def refuse(error):
        def probe():
            raise error("not here")
        return probe
    probes = NS(now=lambda: dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
                queue=refuse(QueueError), srv="/nonexistent", supervisor=refuse(ProbeError))
    unit = NS(alias="uPMU1", serial="P3001271", ip="10.0.0.1",
              streams={"L1MAG": NS(collection="lbnl2/uPMU1"),
                       "C1MAG": NS(collection="psl/uPMU1")})
    seen = health(probes, "", lambda c: c.startswith("psl/"), upmus=[unit])
    assert [u["collection"] for u in seen["upmus"]] == ["psl/uPMU1"]
    assert "lbnl2" not in json.dumps(seen)
    assert health(probes, "", lambda c: False, upmus=[unit])["upmus"] == []


# -- changes while running -------------------------------------------------------------

def test_account_changes_take_effect_on_the_next_request(plotter, streams):
    store = SqliteAccounts(str(plotter.folder / "plotter.db"))
    store.add("vera", "verapass", ["upmu"])
    try:
        vera = as_(plotter, None)
        vera.headers["X-CSRF-Token"] = vera.post(plotter.url + "/api/login", json={
            "user": "vera", "password": "verapass"}, timeout=30).json()["csrf"]
        psl = f"{plotter.url}/api/streams/{streams['psl'].uuid}"
        assert vera.get(psl, timeout=30).status_code == 404
        store.add_tags("vera", ["psl"])
        assert vera.get(psl, timeout=30).status_code == 200
        store.remove_tags("vera", ["psl"])
        assert vera.get(psl, timeout=30).status_code == 404
        store.delete("vera")
        assert vera.get(plotter.url + "/api/session", timeout=30).json()["user"] is None
    finally:
        store.close()


def test_a_deleted_users_session_does_not_sign_in_the_name_added_again(plotter, streams):
    """deluser xena; adduser xena NEWPASS ...: xena's old cookie is not the new account's."""
    store = SqliteAccounts(str(plotter.folder / "plotter.db"))
    try:
        store.add("xena", "oldpass", ["psl"])
        old = plotter_testing.client(plotter.url, "xena", "oldpass")
        lbnl = f"{plotter.url}/api/streams/{streams['lbnl'].uuid}"
        assert old.get(plotter.url + "/api/session", timeout=30).json()["user"] == "xena"
        store.delete("xena")                # no request in between: nothing saw it gone
        store.add("xena", "newpass", ["lbnl"])
        assert old.get(lbnl, timeout=30).status_code == 404
        assert old.get(plotter.url + "/api/session", timeout=30).json()["user"] is None
        new = plotter_testing.client(plotter.url, "xena", "newpass")
        assert new.get(lbnl, timeout=30).status_code == 200
    finally:
        store.close()


def test_tagconfig_changes_take_effect_within_seconds(plotter, streams):
    path = plotter.folder / "tagconfig.json"
    anon = as_(plotter, None)

    def seen():
        return {s["collection"].split("/")[0] for s in anon.get(
            plotter.url + "/api/streams", timeout=30).json()["streams"]}

    def seen_as(domains):
        wait_until(seen, until=lambda got: got == domains, timeout=15, interval=0.2,
                   what=f"anonymous to see the domains {sorted(domains)}")
    try:
        path.write_text(json.dumps({**TAGCONFIG, "public": ["/upmu"]}))
        seen_as({"upmu"})
        path.write_text(json.dumps({"public": ["/"]}))
        seen_as(set(DOMAINS))
        path.write_text(json.dumps({"public": ["/lbnl/uPMU2"]}))     # a single unit
        seen_as({"lbnl"})
    finally:
        path.write_text(json.dumps(TAGCONFIG))
    seen_as(set())


def test_a_broken_tagconfig_keeps_the_last_good_one_and_says_so(plotter, streams):
    path = plotter.folder / "tagconfig.json"
    anon, peter = as_(plotter, None), as_(plotter, "peter")
    lbnl = f"{plotter.url}/api/streams/{streams['lbnl'].uuid}"
    try:
        path.write_text('{"public": ["/"], oops')
        wait_until(lambda: peter.get(plotter.url + "/api/session", timeout=30)
                   .json().get("tagconfig_error"), timeout=15, interval=0.2,
                   what="the broken tagconfig.json reported")
        error = peter.get(plotter.url + "/api/session", timeout=30).json()["tagconfig_error"]
        assert error.startswith(f"{path}: not valid JSON") and "last good" in error
        assert "tagconfig_error" not in anon.get(plotter.url + "/api/session",
                                                 timeout=30).json()
        assert anon.get(lbnl, timeout=30).status_code == 404       # never opens everything
        assert peter.get(lbnl, timeout=30).status_code == 200      # the last good one holds
        assert re.search(r"ERROR .*tagconfig\.json: not valid JSON", plotter.log())
        path.write_text('{"public": "/upmu"}')
        wait_until(lambda: peter.get(plotter.url + "/api/session", timeout=30)
                   .json().get("tagconfig_error") or "",
                   until=lambda error: "expected a list" in error, timeout=15, interval=0.2,
                   what="the second error ('expected a list') reported")
    finally:
        path.write_text(json.dumps(TAGCONFIG))
    wait_until(lambda: peter.get(plotter.url + "/api/session", timeout=30)
               .json()["tagconfig_error"], until=lambda error: error is None, timeout=15,
               interval=0.2, what="the fixed tagconfig.json in force again")


# -- sign-in ---------------------------------------------------------------------------

def test_sign_in_sets_strict_http_only_cookies_and_sign_out_ends_the_session(plotter, streams):
    http = as_(plotter, None)
    r = http.post(plotter.url + "/api/login", json={"user": "peter", "password": "psladmin"},
                  timeout=30)
    assert r.status_code == 200 and r.json()["user"] == "peter"
    assert r.json()["tags"] == ["psl", "lbnl", "pge"]
    cookies = {c.split("=", 1)[0]: c.lower() for c in r.raw.headers.getlist("set-cookie")}
    session = cookies["qss_session"]
    assert "httponly" in session and "samesite=strict" in session and "path=/" in session
    assert "secure" not in session                   # plain HTTP on loopback here
    assert "httponly" not in cookies["qss_csrf"]     # the page reads it
    http.headers["X-CSRF-Token"] = r.json()["csrf"]
    lbnl = f"{plotter.url}/api/streams/{streams['lbnl'].uuid}"
    assert http.get(lbnl, timeout=30).status_code == 200
    assert http.post(plotter.url + "/api/logout", timeout=30).status_code == 200
    assert http.get(lbnl, timeout=30).status_code == 404
    assert http.get(plotter.url + "/api/session", timeout=30).json()["user"] is None


def test_requests_that_change_something_need_the_csrf_token(plotter, streams):
    bare = requests.Session()
    body = {"streams": [str(streams["lbnl"].uuid)], "window": {"kind": "now", "span": 10**9}}
    for path, json_ in (("/api/permalinks", body), ("/api/logout", {}), ("/api/password", {}),
                        ("/api/login", {"user": "peter", "password": "psladmin"})):
        r = bare.post(plotter.url + path, json=json_, timeout=30)
        assert r.status_code == 403 and "CSRF token" in r.json()["error"], path
    good = as_(plotter, "peter")
    r = good.post(plotter.url + "/api/permalinks", json=body,
                  headers={"X-CSRF-Token": "forged"}, timeout=30)
    assert r.status_code == 403
    r = good.post(plotter.url + "/api/permalinks", json=body,
                  headers={"Origin": "http://evil.example"}, timeout=30)
    assert r.status_code == 403 and "cross-site request" in r.json()["error"]
    assert good.post(plotter.url + "/api/permalinks", json=body, timeout=30).status_code == 201


# -- a plotter of its own: throttling locks out 127.0.0.1, and a short idle time -------
# Every test that fails a sign-in uses one: the throttle's bucket for 127.0.0.1 would
# otherwise be shared with the other tests (five failures and every sign-in is a 429).

@pytest.fixture
def strict(server, streams, tmp_path):
    cfg = layout(tmp_path)
    p = plotter_testing.start(server.grpc, tmp_path, "--upmuconfig", str(cfg),
                              "--idle-minutes", "0.1", log_path=tmp_path / "plotter.log")
    p.folder = tmp_path
    try:
        yield p
    finally:
        p.stop()


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer_and_are_logged(strict):
    http = as_(strict, None)
    wrong = http.post(strict.url + "/api/login", json={"user": "una", "password": "nope"},
                      timeout=30)
    nobody = http.post(strict.url + "/api/login", json={"user": "zed", "password": "nope"},
                       timeout=30)
    assert wrong.status_code == nobody.status_code == 401
    assert wrong.json() == nobody.json() == {"error": "wrong user name or password"}
    log = strict.log()
    assert "sign-in failed for user 'una' from 127.0.0.1: wrong password" in log
    assert "sign-in failed for user 'zed' from 127.0.0.1: no such user" in log


def test_a_user_changes_their_own_password(strict, streams):
    store = SqliteAccounts(str(strict.folder / "plotter.db"))
    store.add("walt", "old-pass", ["lbnl"])
    store.close()
    here = plotter_testing.client(strict.url, "walt", "old-pass")
    there = plotter_testing.client(strict.url, "walt", "old-pass")
    r = here.post(strict.url + "/api/password", json={"old": "wrong", "new": "x"}, timeout=30)
    assert r.status_code == 401 and r.json() == {"error": "wrong current password"}
    r = here.post(strict.url + "/api/password", json={"old": "old-pass", "new": ""},
                  timeout=30)
    assert r.status_code == 400 and "must not be empty" in r.json()["error"]
    r = here.post(strict.url + "/api/password", json={"old": "old-pass", "new": "new-pass"},
                  timeout=30)
    assert r.status_code == 200
    assert here.get(strict.url + "/api/session", timeout=30).json()["user"] == "walt"
    assert there.get(strict.url + "/api/session", timeout=30).json()["user"] is None
    with pytest.raises(RuntimeError, match="401"):
        plotter_testing.client(strict.url, "walt", "old-pass")
    plotter_testing.client(strict.url, "walt", "new-pass")
    anon = requests.Session()
    anon.headers["X-CSRF-Token"] = anon.get(strict.url + "/api/session").json()["csrf"]
    r = anon.post(strict.url + "/api/password", json={"old": "a", "new": "b"}, timeout=30)
    assert r.status_code == 401 and r.json() == {"error": "sign in first"}


def test_repeated_failures_are_slowed_down_per_user_and_address(strict):
    http = as_(strict, None)

    def login(user, password):
        return http.post(strict.url + "/api/login", json={"user": user, "password": password},
                         timeout=30)
    for _ in range(5):
        assert login("peter", "guess").status_code == 401
    r = login("peter", "psladmin")            # even the right password, for now
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
    assert r.json()["error"].startswith("too many failed sign-ins; try again in ")
    assert login("una", "upmupass").status_code == 429      # the same address
    log = strict.log()
    assert log.count("sign-in failed for user 'peter' from 127.0.0.1: wrong password") == 5
    assert "sign-in refused for user 'peter' from 127.0.0.1: too many failures" in log


def test_parallel_wrong_sign_ins_get_no_more_than_five_guesses(strict):
    """20 at once from one address: each attempt counts from its start, so at most five
    are checked (401) and the rest refused (429) before any hashing."""
    from concurrent.futures import ThreadPoolExecutor
    clients = [as_(strict, None) for _ in range(20)]
    barrier = threading.Barrier(len(clients))

    def guess(http):
        barrier.wait(timeout=30)
        return http.post(strict.url + "/api/login", json={"user": "peter",
                         "password": "guess"}, timeout=60).status_code
    with ThreadPoolExecutor(len(clients)) as pool:
        codes = list(pool.map(guess, clients))
    assert codes.count(401) <= 5 and codes.count(401) >= 1, codes
    assert set(codes) <= {401, 429}, codes
    assert strict.log().count("sign-in failed for user 'peter'") == codes.count(401)


def test_a_session_ends_after_its_idle_time(strict, streams):
    """What the page asks by itself (the health panel, follow-now's polls with
    X-QSS-Passive) does not keep a session alive. One request at 0 s, the page's own
    at 2 s (still signed in), then past the 6 s idle time counted from 0 s: signed out.
    The fake-clock test of plotter.sessions covers the rest without sleeping."""
    http = plotter_testing.client(strict.url, "peter", "psladmin")
    lbnl = f"{strict.url}/api/streams/{streams['lbnl'].uuid}"
    assert http.get(strict.url + "/api/session", timeout=30).json()["idle_seconds"] == 6
    assert http.get(lbnl, timeout=30).status_code == 200       # the last use
    used = time.monotonic()
    time.sleep(2)
    http.get(strict.url + "/api/health", timeout=30)
    window = {"start": T0, "end": T0 + 60 * 10**9}
    passive = {"X-QSS-Passive": "1"}
    for path, params in (("/api/bracket", {}), ("/api/data", {**window, "width": 100})):
        r = http.get(strict.url + path, params={"uuid": str(streams["lbnl"].uuid), **params},
                     headers=passive, timeout=30)
        assert r.status_code == 200, (path, r.text)             # signed in, not refreshed
    time.sleep(max(0.0, used + 7 - time.monotonic()))
    assert http.get(lbnl, timeout=30).status_code == 404
    assert http.get(strict.url + "/api/session", timeout=30).json()["user"] is None


def test_under_https_the_session_cookie_is_secure(server, streams, certificate, tmp_path):
    crt, key = certificate
    layout(tmp_path)
    p = plotter_testing.start(server.grpc, tmp_path, "--certificate", str(crt), "--key",
                              str(key), log_path=tmp_path / "plotter.log")
    try:
        http = requests.Session()        # verify per request: the environment's CA
        http.headers["Connection"] = "close"    # nothing kept alive for the stop to wait for
        http.headers["X-CSRF-Token"] = http.get(p.url + "/api/session", verify=str(crt),
                                                timeout=30).json()["csrf"]
        r = http.post(p.url + "/api/login", json={"user": "peter", "password": "psladmin"},
                      verify=str(crt), timeout=30)   # bundle would win over Session.verify
        assert r.status_code == 200
        cookies = {c.split("=", 1)[0]: c.lower() for c in r.raw.headers.getlist("set-cookie")}
        assert "; secure" in cookies["qss_session"] and "httponly" in cookies["qss_session"]
        assert "; secure" in cookies["qss_csrf"]
    finally:
        p.stop()
