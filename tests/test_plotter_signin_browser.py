"""Signing in on the plotter's page in headless chromium (manual ch. 11): peter sees
/lbnl once signed in and not after signing out; a wrong password says so; the cookies'
flags; the page's own requests carry the CSRF token; a broken tagconfig.json is shown to
signed-in users."""
from __future__ import annotations

import json
import uuid as uuidlib

import pytest

from plotter import testing as plotter_testing
from qss.accounts import SqliteAccounts
from qss.btrdbclient import connect

import test_plotter_browser
from test_plotter_browser import load, wait

browser = test_plotter_browser.browser          # the fixtures: one headless chromium
downloads = test_plotter_browser.downloads

T0 = 1_450_426_497_000_000_000
TAGCONFIG = {"public": ["/upmu"], "lbnl": ["/lbnl"]}


@pytest.fixture(scope="module")
def plotter(server, tmp_path_factory):
    db = connect(server.grpc)
    for collection in ("upmu/uPMU1", "lbnl/uPMU2"):
        s = db.create(uuidlib.uuid4(), collection, {"name": "L1MAG", "unit": "V"}, {})
        s.insert([(T0 + k * 10**9, 7200.0 + k) for k in range(120)])
        s.flush()
    db._qss_channel.close()
    tmp = tmp_path_factory.mktemp("signin")
    (tmp / "tagconfig.json").write_text(json.dumps(TAGCONFIG))
    store = SqliteAccounts(str(tmp / "plotter.db"))
    store.add("peter", "psladmin", ["psl", "lbnl", "pge"])
    store.close()
    p = plotter_testing.start(server.grpc, tmp, log_path=tmp / "plotter.log")
    p.folder = tmp
    try:
        yield p
    finally:
        p.stop()


def domains(browser) -> list[str]:
    return browser.execute_script(
        "return [...document.querySelectorAll('#tree > details > summary')]"
        ".map(s => s.textContent)")


def sign_in(browser, user, password):
    if not browser.execute_script("return document.getElementById('login').open"):
        browser.find_element("id", "sign-in").click()     # after a failure it stays open
    wait(browser, "document.getElementById('login').open")
    for field, text in (("login-user", user), ("login-password", password)):
        el = browser.find_element("id", field)
        el.clear()
        el.send_keys(text)
    browser.find_element("id", "login-submit").click()


def test_peter_signs_in_sees_lbnl_and_signs_out(browser, plotter):
    load(browser, plotter.url + "/")
    wait(browser, "document.querySelectorAll('#tree .stream').length >= 1")
    assert domains(browser) == ["upmu"]
    sign_in(browser, "peter", "wrong")
    assert wait(browser, "document.getElementById('login-error').textContent") == \
        "Wrong user name or password."
    assert domains(browser) == ["upmu"]
    sign_in(browser, "peter", "psladmin")
    wait(browser, "document.querySelectorAll('#tree > details').length === 2")
    assert domains(browser) == ["lbnl", "upmu"]
    assert browser.find_element("id", "account-user").text == "signed in as peter"
    cookies = {c["name"]: c for c in browser.get_cookies()}
    session = cookies["qss_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and not session["secure"]
    assert not cookies["qss_csrf"]["httpOnly"]          # the page reads it for its header
    assert browser.execute_script("return document.cookie").find("qss_session") == -1

    # The page's own POST carries the CSRF token: a permalink of the private stream.
    browser.execute_script(
        "[...document.querySelectorAll('#tree .stream')].find(r => r.title.startsWith("
        "'/lbnl')).querySelector('input').click()")
    wait(browser, "window.plotter.last !== null")
    browser.find_element("id", "permalink").click()
    wait(browser, "document.getElementById('status').textContent === 'Permalink made'")

    browser.find_element("id", "sign-out").click()
    wait(browser, "!document.getElementById('sign-in').hidden"
                  " && document.querySelectorAll('#tree > details').length === 1")
    assert domains(browser) == ["upmu"]
    assert "qss_session" not in {c["name"] for c in browser.get_cookies()}


def test_the_login_address_opens_the_sign_in_and_a_broken_tagconfig_is_shown(browser,
                                                                              plotter):
    path = plotter.folder / "tagconfig.json"
    path.write_text('{"public": ["/upmu"], "lbnl": ')
    try:
        load(browser, plotter.url + "/login")
        wait(browser, "document.getElementById('login').open")
        assert browser.find_element("id", "tagconfig-error").get_attribute("hidden")
        for field, text in (("login-user", "peter"), ("login-password", "psladmin")):
            browser.find_element("id", field).send_keys(text)
        browser.find_element("id", "login-submit").click()
        banner = wait(browser, "!document.getElementById('tagconfig-error').hidden && "
                               "document.getElementById('tagconfig-error').textContent")
        assert banner.startswith("tagconfig.json is broken; the last good version is in force")
        assert "not valid JSON" in banner
        wait(browser, "document.querySelectorAll('#tree > details').length === 2")
        # the password dialog checks the two new passwords agree before asking the server
        browser.find_element("id", "password").click()
        for field, text in (("passwd-old", "psladmin"), ("passwd-new", "a"),
                            ("passwd-again", "b")):
            browser.find_element("id", field).send_keys(text)
        browser.find_element("id", "passwd-submit").click()
        assert wait(browser, "document.getElementById('passwd-error').textContent") == \
            "The two new passwords differ."
        browser.find_element("id", "passwd-cancel").click()
        browser.find_element("id", "sign-out").click()
        wait(browser, "!document.getElementById('sign-in').hidden")
    finally:
        path.write_text(json.dumps(TAGCONFIG))
