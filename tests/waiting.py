"""Waiting in tests for a condition, never for a fixed time; no tests here.

A test that sleeps a guessed time before it asserts is slow when the guess is long and
flaky when the machine is loaded. :func:`wait_until` polls the condition the test means
instead, up to a timeout, and fails naming what it waited for and the last value it saw;
:func:`wait_until_async` does the same inside an event loop, without blocking it.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: How many characters of the last value seen a failure message shows.
SHOWN = 2000


def wait_until(condition: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.05,
               what: str = "the condition", until: Callable[[T], Any] | None = None,
               detail: Callable[[], str] | None = None) -> T:
    """Call ``condition()`` every ``interval`` seconds until its value is truthy (or, with
    ``until``, until ``until(value)`` is), and return that value.

    ``detail`` adds to the failure message what helps to see why (a log, a status).
    An exception from ``condition`` (an assertion that the awaited thing cannot come any
    more, say) ends the wait at once.

    Raises:
        AssertionError: ``timeout`` seconds passed first; the message names ``what`` and
            the last value seen.
    """
    done = until or bool
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if done(value):
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(_timed_out(what, timeout, value, detail))
        time.sleep(min(interval, left))


async def wait_until_async(condition: Callable[[], T], *, timeout: float = 10.0,
                           interval: float = 0.01, what: str = "the condition",
                           until: Callable[[T], Any] | None = None,
                           detail: Callable[[], str] | None = None) -> T:
    """:func:`wait_until` for a coroutine: the event loop runs on while it waits, so the
    condition may be about what the loop's own tasks and callbacks do.

    Raises:
        AssertionError: ``timeout`` seconds passed first.
    """
    done = until or bool
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if done(value):
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(_timed_out(what, timeout, value, detail))
        await asyncio.sleep(min(interval, left))


def _timed_out(what: str, timeout: float, value: object,
               detail: Callable[[], str] | None) -> str:
    seen = repr(value)
    if len(seen) > SHOWN:   # its start and its end (a log's latest lines)
        seen = f"{seen[:SHOWN // 2]} ...({len(seen) - SHOWN} characters)... {seen[-SHOWN // 2:]}"
    message = f"timed out after {timeout:g} s waiting for {what}; last seen: {seen}"
    return f"{message}\n{detail()}" if detail is not None else message
