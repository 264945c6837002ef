"""Signed-in sessions and the throttle on failed sign-ins, in memory (no IO).

A session is a random token in an HttpOnly cookie; the server keeps, per token, the user,
the account's random ``stamp`` when it opened (a password change, or deleting the user
and adding the name again, writes a new one and so ends it), its CSRF token, and when it
was last used: one unused for ``idle`` seconds is gone. Sessions live
in the plotter's memory, so a restart of ``mr-plotter`` signs everyone out (nothing to
steal from the disk, nothing to clean up).

The throttle counts failed sign-ins per key (a user name, an address) over a sliding
``window``, and the attempts under way: an attempt is counted when it starts (before the
password is hashed), so a burst of parallel sign-ins gets no more guesses than one after
the other. At ``limit`` failures plus attempts under way the key is refused until the
oldest failure ages out (or an attempt ends).
Logic never reads the time itself (the clock is given), so tests need not sleep.
"""
from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["MAX_SESSIONS", "Session", "Sessions", "Throttle"]

#: Sessions kept at most; beyond it the least recently used goes (a flood of sign-ins
#: cannot grow the plotter's memory without bound).
MAX_SESSIONS = 10_000


@dataclass
class Session:
    token: str
    user: str
    stamp: str
    csrf: str
    last_used: float
    #: The stamp a password change of this session is writing: while it is under way
    #: the account may hold either (so the changer's own session never ends).
    next_stamp: str | None = None

    def matches(self, stamp: str) -> bool:
        """Whether an account with ``stamp`` is still the one this session opened for."""
        return stamp == self.stamp or (self.next_stamp is not None and
                                       stamp == self.next_stamp)


class Sessions:
    """Open sessions by token, ending after ``idle`` seconds unused."""

    def __init__(self, idle: float, clock: Callable[[], float] = time.monotonic,
                 limit: int = MAX_SESSIONS) -> None:
        self.idle = idle
        self._clock = clock
        self._limit = limit
        self._lock = threading.Lock()
        self._by_token: dict[str, Session] = {}

    def open(self, user: str, stamp: str) -> Session:
        """A new session for ``user`` whose account has ``stamp`` (fresh token and CSRF
        token)."""
        now = self._clock()
        s = Session(secrets.token_urlsafe(32), user, stamp, secrets.token_urlsafe(24), now)
        with self._lock:
            self._prune(now)
            while len(self._by_token) >= self._limit:
                oldest = min(self._by_token.values(), key=lambda x: x.last_used)
                del self._by_token[oldest.token]
            self._by_token[s.token] = s
        return s

    def find(self, token: str | None, touch: bool = True) -> Session | None:
        """The live session of ``token`` (marked used now), or None."""
        if not token:
            return None
        now = self._clock()
        with self._lock:
            s = self._by_token.get(token)
            if s is None:
                return None
            if now - s.last_used > self.idle:
                del self._by_token[token]
                return None
            if touch:
                s.last_used = now
            return s

    def close(self, token: str | None) -> None:
        """End the session of ``token`` (nothing if there is none)."""
        with self._lock:
            self._by_token.pop(token or "", None)

    def restamp(self, s: Session, stamp: str | None, done: bool) -> None:
        """Around a password change of ``s``: first (``done`` False) accept ``stamp`` as
        well as the old one; then (``done`` True) keep only ``stamp`` if the change was
        written, or (``stamp`` None) only the old one if it failed."""
        with self._lock:
            if not done:
                s.next_stamp = stamp
            else:
                if stamp is not None:
                    s.stamp = stamp
                s.next_stamp = None

    def close_user(self, user: str, keep: str | None = None) -> None:
        """End every session of ``user`` but ``keep``."""
        with self._lock:
            for t in [t for t, s in self._by_token.items() if s.user == user and t != keep]:
                del self._by_token[t]

    def _prune(self, now: float) -> None:
        for t in [t for t, s in self._by_token.items() if now - s.last_used > self.idle]:
            del self._by_token[t]


class Throttle:
    """At most ``limit`` failures per key in any ``window`` seconds."""

    def __init__(self, limit: int = 5, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}
        self._running: dict[str, int] = {}

    def begin(self, keys: Iterable[str]) -> float:
        """Start an attempt for ``keys``: 0 if it may go on (it is counted until
        :meth:`end`), else the seconds to wait (nothing is counted)."""
        keys = list(keys)
        now = self._clock()
        longest = 0.0
        with self._lock:
            for k in keys:
                q = self._expire(k, now)
                failed = 0 if q is None else len(q)
                if failed + self._running.get(k, 0) < self.limit:
                    continue
                # Full of failures: until the oldest ages out; else of attempts under
                # way: a second (one of them ends by then, as a failure or not).
                longest = max(longest, q[0] + self.window - now if failed >= self.limit
                              else 1.0)
            if longest == 0:
                for k in keys:
                    self._running[k] = self._running.get(k, 0) + 1
        return longest

    def end(self, keys: Iterable[str], failed: bool) -> None:
        """End an attempt :meth:`begin` let go on; ``failed``: count it as a failure."""
        keys = list(keys)
        # Under one lock with the failure: no begin() in between sees neither.
        with self._lock:
            for k in keys:
                n = self._running.get(k, 0) - 1
                if n > 0:
                    self._running[k] = n
                else:
                    self._running.pop(k, None)
            if failed:
                self._count_failure(keys, self._clock())

    def wait(self, keys: Iterable[str]) -> float:
        """Seconds until every key in ``keys`` may try again (0: now)."""
        now = self._clock()
        longest = 0.0
        with self._lock:
            for k in keys:
                q = self._expire(k, now)
                if q is not None and len(q) >= self.limit:
                    longest = max(longest, q[0] + self.window - now)
        return longest

    def fail(self, keys: Iterable[str]) -> None:
        """Count a failure against each key."""
        now = self._clock()
        with self._lock:
            self._count_failure(keys, now)

    def _count_failure(self, keys: Iterable[str], now: float) -> None:
        for k in keys:
            self._failures.setdefault(k, deque()).append(now)
            if len(self._failures) > 100_000:     # a flood of names: forget the oldest
                self._failures.pop(next(iter(self._failures)))

    def _expire(self, key: str, now: float) -> deque[float] | None:
        q = self._failures.get(key)
        if q is None:
            return None
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._failures[key]
            return None
        return q
