"""Sign-in, sign-out, password change and CSRF (manual ch. 11 on the web site).

- ``GET /api/session``: who is signed in, their tags, the CSRF token (also set as the
  ``qss_csrf`` cookie the page echoes in ``X-CSRF-Token``), and, for a signed-in user,
  why ``tagconfig.json`` is not in force when it is broken.
- ``POST /api/login`` ``{"user", "password"}``, ``POST /api/logout``,
  ``POST /api/password`` ``{"old", "new"}``.

The session cookie ``qss_session`` is HttpOnly, SameSite=Strict, and Secure under HTTPS.
Every request that changes something (any method but GET, HEAD, OPTIONS) must carry
``X-CSRF-Token`` equal to the ``qss_csrf`` cookie, and to its session's token when
signed in; a cross-site ``Origin`` is refused too. Failed sign-ins are slowed down per
user and per address (:class:`~plotter.sessions.Throttle`, 5 a minute, an attempt counted
from its start) and each is logged with its address (supervisor writes the log to
``/var/log/mr-plotter.log``); past :data:`MAX_HASHING` Argon2 checks waiting at once a
sign-in is a 503, so a burst cannot queue unbounded work for both cores.
"""
from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response

from qss.accounts import (Account, AccountError, AccountStore, check_password, new_stamp,
                          open_accounts)
from qss.tagconfig import TagConfigFile

from .access import ANONYMOUS, Viewer
from .query import BadRequest
from .sessions import Session, Sessions, Throttle

__all__ = ["CSRF_COOKIE", "CSRF_HEADER", "SESSION_COOKIE", "CsrfGuard", "SignIn",
           "routes_handlers"]

log = logging.getLogger("plotter.signin")

SESSION_COOKIE = "qss_session"
CSRF_COOKIE = "qss_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: What the page polls by itself: these requests do not keep a session alive, so an open
#: but unused page is signed out after the idle time all the same.
PASSIVE = frozenset({"/api/session", "/api/health", "/api/usage"})
#: A request with this header set to 1 is one the page makes by itself too (follow-now's
#: polls of /api/bracket and /api/data every 5 s).
PASSIVE_HEADER = "x-qss-passive"
WRONG = "wrong user name or password"
#: Argon2 checks run at once (the others wait their turn).
HASHING_AT_ONCE = 2
#: Argon2 checks running or waiting at most; more is a 503 (each takes about 0.1 s of a
#: core: ten is a second of both, and receiver and sync2q need them too).
MAX_HASHING = 10


class Busy(Exception):
    """Too many password checks waiting (a 503)."""


class AccountsUnavailable(Exception):
    """The account store cannot be opened (a 503)."""


class SignIn:
    """Accounts, sessions and the throttle of one plotter."""

    def __init__(self, queue_url: str, srv: str, tagconfig: TagConfigFile, idle: float,
                 https: bool, accounts: AccountStore | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._queue_url, self._srv = queue_url, srv
        self.tagconfig = tagconfig
        self.sessions = Sessions(idle, clock)
        self.throttle = Throttle(clock=clock)
        self.https = https
        self._accounts = accounts
        self._lock = threading.Lock()
        self._limiter: anyio.CapacityLimiter | None = None
        self._hashing = 0       # checks running or waiting (touched on the event loop only)

    async def hashing(self, fn: Callable, *args):
        """Run an Argon2 check in a worker thread, at most :data:`HASHING_AT_ONCE` at a
        time: each takes 64 MiB, so a flood of sign-ins cannot exhaust the memory.

        Raises:
            Busy: :data:`MAX_HASHING` are running or waiting already.
        """
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(HASHING_AT_ONCE)
        if self._hashing >= MAX_HASHING:
            raise Busy("too many sign-ins at once; try again in a moment")
        self._hashing += 1
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        finally:
            self._hashing -= 1

    def accounts(self) -> AccountStore:
        """The account store, opened on first use.

        Raises:
            AccountsUnavailable: it cannot be opened.
        """
        with self._lock:
            if self._accounts is None:
                try:
                    # A MongoDB that is down answers in 1.5 s rather than 5: the page
                    # waits on it for every request.
                    self._accounts = open_accounts(self._queue_url, self._srv,
                                                   timeout_ms=1500)
                except Exception as exc:  # noqa: BLE001 - any backend's failure to open
                    raise AccountsUnavailable(f"accounts unavailable: {exc}") from exc
            return self._accounts

    def close(self) -> None:
        if self._accounts is not None:
            self._accounts.close()

    def current(self, request: Request) -> tuple[Session, Account] | None:
        """The request's live session and its account as stored now, or None: no session,
        one past its idle time, or one whose account is gone or has a new password (then
        it is ended). A request the page makes by itself (:data:`PASSIVE`, or with the
        header :data:`PASSIVE_HEADER`) does not count as use."""
        token = request.cookies.get(SESSION_COOKIE)
        passive = (request.url.path in PASSIVE or
                   request.headers.get(PASSIVE_HEADER, "") == "1")
        s = self.sessions.find(token, touch=not passive)
        if s is None:
            return None
        try:
            account = self.accounts().get(s.user)
        except Exception as exc:  # noqa: BLE001 - a store failing now: nobody is signed in
            log.warning("accounts unreadable (%s): %s is treated as anonymous", exc, s.user)
            return None
        if account is None:                     # deleted: each of their sessions ends
            self.sessions.close_user(s.user)
            return None
        if not s.matches(account.stamp):        # a new password, or deleted and added
            self.sessions.close(token)          # again (one opened since stays)
            return None
        return s, account

    def session(self, request: Request) -> Session | None:
        """The request's live session (see :meth:`current`)."""
        found = self.current(request)
        return None if found is None else found[0]

    def viewer(self, request: Request) -> Viewer:
        """Who made ``request``: the signed-in user and their tags as stored now, or
        anonymous."""
        found = self.current(request)
        if found is None:
            return ANONYMOUS
        return Viewer(found[1].name, frozenset(found[1].tags))

    def cookie(self, response: Response, name: str, value: str, http_only: bool) -> None:
        response.set_cookie(name, value, path="/", httponly=http_only, samesite="strict",
                            secure=self.https)


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _json_body(request: Request) -> dict:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise BadRequest("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _signin(request: Request) -> SignIn:
    return request.app.state.plotter.signin


def _answer(content: dict, status_code: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, headers=headers,
                    media_type="application/json")


async def session_info(request: Request) -> Response:
    signin = _signin(request)
    found = await anyio.to_thread.run_sync(signin.current, request)
    s = found[0] if found else None
    csrf = s.csrf if s else (request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24))
    if found is None:
        out: dict = {"user": None, "tags": [], "csrf": csrf}
    else:
        signin.tagconfig.get()                  # looked at again if it changed
        out = {"user": s.user, "tags": list(found[1].tags), "csrf": csrf,
               "tagconfig_error": signin.tagconfig.error}
    out["idle_seconds"] = signin.sessions.idle
    response = _answer(out, headers={"Cache-Control": "no-store"})
    if request.cookies.get(CSRF_COOKIE) != csrf:
        signin.cookie(response, CSRF_COOKIE, csrf, http_only=False)
    return response


def _busy(exc: Busy) -> Response:
    return _answer({"error": str(exc)}, status_code=503, headers={"Retry-After": "1"})


def _too_many(wait: float) -> Response:
    seconds = max(1, int(wait + 0.999))
    return _answer({"error": f"too many failed sign-ins; try again in {seconds} s"},
                   status_code=429, headers={"Retry-After": str(seconds)})


async def login(request: Request) -> Response:
    signin = _signin(request)
    body = await _json_body(request)
    user, password = body.get("user"), body.get("password")
    user = user.strip() if isinstance(user, str) else ""
    address = _address(request)
    keys = [f"user:{user.casefold()}", f"address:{address}"]
    wait = signin.throttle.begin(keys)
    if wait > 0:
        log.warning("sign-in refused for user %r from %s: too many failures (%d s to wait)",
                    user[:64], address, int(wait + 0.999))
        return _too_many(wait)
    account = None
    try:
        store = signin.accounts()
        account = await signin.hashing(store.check, user,
                                       password if isinstance(password, str) else "")
    except Busy as exc:
        signin.throttle.end(keys, failed=False)
        log.warning("sign-in refused for user %r from %s: %s", user[:64], address, exc)
        return _busy(exc)
    except BaseException:
        signin.throttle.end(keys, failed=False)
        raise
    signin.throttle.end(keys, failed=account is None)
    if account is None:
        known = await anyio.to_thread.run_sync(store.get, user)
        log.warning("sign-in failed for user %r from %s: %s", user[:64], address,
                    "wrong password" if known else "no such user")
        return _answer({"error": WRONG}, status_code=401)
    signin.sessions.close(request.cookies.get(SESSION_COOKIE))
    s = signin.sessions.open(account.name, account.stamp)
    log.info("%s signed in from %s", account.name, address)
    # The answer says whether tagconfig.json is broken as it is now, not as it was at the
    # last look (up to a second ago): one stat per sign-in.
    signin.tagconfig.invalidate()
    signin.tagconfig.get()
    response = _answer({"user": account.name, "tags": list(account.tags), "csrf": s.csrf,
                        "tagconfig_error": signin.tagconfig.error})
    signin.cookie(response, SESSION_COOKIE, s.token, http_only=True)
    signin.cookie(response, CSRF_COOKIE, s.csrf, http_only=False)
    return response


async def logout(request: Request) -> Response:
    signin = _signin(request)
    s = await anyio.to_thread.run_sync(signin.session, request)
    signin.sessions.close(request.cookies.get(SESSION_COOKIE))
    if s is not None:
        log.info("%s signed out from %s", s.user, _address(request))
    response = _answer({"user": None})
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=signin.https)
    return response


async def change_password(request: Request) -> Response:
    signin = _signin(request)
    s = await anyio.to_thread.run_sync(signin.session, request)
    if s is None:
        return _answer({"error": "sign in first"}, status_code=401)
    body = await _json_body(request)
    old, new = body.get("old"), body.get("new")
    try:
        check_password(new)
    except AccountError as exc:
        raise BadRequest(f"new password: {exc}") from None
    address = _address(request)
    keys = [f"user:{s.user.casefold()}", f"address:{address}"]
    wait = signin.throttle.begin(keys)
    if wait > 0:
        return _too_many(wait)
    account = None
    try:
        store = signin.accounts()
        account = await signin.hashing(store.check, s.user,
                                       old if isinstance(old, str) else "")
    except Busy as exc:
        signin.throttle.end(keys, failed=False)
        return _busy(exc)
    except BaseException:
        signin.throttle.end(keys, failed=False)
        raise
    signin.throttle.end(keys, failed=account is None)
    if account is None:
        log.warning("password change failed for user %r from %s: wrong current password",
                    s.user, address)
        return _answer({"error": "wrong current password"}, status_code=401)
    # The new stamp is this session's before it is in the store, so a request of this
    # session meanwhile is not taken for one of the old password's (and ended).
    stamp = new_stamp()
    signin.sessions.restamp(s, stamp, done=False)
    try:
        await signin.hashing(store.set_password, s.user, new, stamp)
    except BaseException:
        signin.sessions.restamp(s, None, done=True)
        raise
    signin.sessions.restamp(s, stamp, done=True)
    signin.sessions.close_user(s.user, keep=s.token)
    log.info("%s changed their password from %s", s.user, address)
    return _answer({"user": s.user, "changed": True})


class CsrfGuard:
    """ASGI middleware: a request that changes something needs the CSRF token."""

    def __init__(self, app, signin_of: Callable[[], SignIn]) -> None:
        self.app = app
        self.signin_of = signin_of

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            request = Request(scope)
            why = self.refusal(request)
            if why is not None:
                log.warning("%s %s from %s refused: %s", scope["method"], scope["path"],
                            _address(request), why)
                await _answer({"error": why}, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refusal(self, request: Request) -> str | None:
        """Why ``request`` is refused, or None."""
        origin = request.headers.get("origin")
        if origin and origin != "null":
            o = urlsplit(origin)
            if o.netloc.lower() != request.headers.get("host", "").lower():
                return f"cross-site request from {origin!r}"
        header = request.headers.get(CSRF_HEADER, "")
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not header or not cookie or not hmac.compare_digest(header, cookie):
            return "missing or wrong CSRF token (reload the page)"
        s = self.signin_of().sessions.find(request.cookies.get(SESSION_COOKIE), touch=False)
        if s is not None and not hmac.compare_digest(header, s.csrf):
            return "missing or wrong CSRF token (reload the page)"
        return None


def routes_handlers() -> dict[str, tuple[Callable, list[str]]]:
    """The sign-in endpoints: path -> (handler, methods)."""
    return {"/api/session": (session_info, ["GET"]), "/api/login": (login, ["POST"]),
            "/api/logout": (logout, ["POST"]), "/api/password": (change_password, ["POST"])}
