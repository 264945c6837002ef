"""The tests' shared wait (tests/waiting.py): the awaited value back, or a failure that
names what was awaited and what was last seen."""
from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from waiting import wait_until, wait_until_async


def test_returns_the_first_truthy_value_once_it_comes():
    calls = itertools.count()
    got = wait_until(lambda: [] if next(calls) < 3 else ["ready"], interval=0.001)
    assert got == ["ready"] and next(calls) == 4


def test_until_decides_and_the_value_is_returned():
    values = iter([0, 1, 0, 2, 5])
    assert wait_until(lambda: next(values), until=lambda n: n >= 2, interval=0) == 2


def test_a_timeout_names_what_was_awaited_the_last_value_and_the_detail():
    started = time.monotonic()
    with pytest.raises(AssertionError) as failed:
        wait_until(lambda: {"P3000001": (4, 2)}, until=lambda now: False, timeout=0.2,
                   interval=0.05, what="every file synced", detail=lambda: "sync2q: stalled")
    assert 0.2 <= time.monotonic() - started < 5
    assert str(failed.value) == ("timed out after 0.2 s waiting for every file synced; last "
                                 "seen: {'P3000001': (4, 2)}\nsync2q: stalled")


def test_a_long_last_value_shows_its_start_and_end():
    log = "first line\n" + "x" * 10_000 + "\nlast line"
    with pytest.raises(AssertionError) as failed:
        wait_until(lambda: log, until=lambda _: False, timeout=0, what="a line")
    message = str(failed.value)
    assert "first line" in message and "last line" in message and len(message) < 2200


def test_an_exception_from_the_condition_ends_the_wait_at_once():
    def exited():
        raise AssertionError("the receiver exited")

    started = time.monotonic()
    with pytest.raises(AssertionError, match="the receiver exited"):
        wait_until(exited, timeout=30)
    assert time.monotonic() - started < 5


def test_the_async_wait_lets_the_event_loop_run():
    async def scenario():
        flag: list[str] = []
        asyncio.get_running_loop().call_later(0.05, flag.append, "set by a callback")
        got = await wait_until_async(lambda: flag, timeout=5, what="the callback")
        with pytest.raises(AssertionError, match=r"waiting for nothing; last seen: 0$"):
            await wait_until_async(lambda: 0, timeout=0.05, what="nothing")
        return got

    assert asyncio.run(scenario()) == ["set by a callback"]
