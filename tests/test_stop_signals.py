"""qss.cli.install_stop_signals: how qss-sync2q and qss-distil take SIGTERM and SIGINT."""
from __future__ import annotations

import logging
import signal

import pytest

from qss.cli import install_stop_signals


@pytest.fixture
def restore_handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


@pytest.mark.parametrize("first, then", [(signal.SIGTERM, signal.SIGTERM),
                                         (signal.SIGINT, signal.SIGTERM)])
def test_the_first_signal_stops_cleanly_and_the_next_at_once(first, then, restore_handlers,
                                                             caplog):
    stops = []
    install_stop_signals(lambda: stops.append(1), logging.getLogger("svc"),
                         "finishing the batch, then exiting", "exiting now")
    with caplog.at_level(logging.INFO, logger="svc"):
        signal.raise_signal(first)
        assert stops == [1]
        assert caplog.messages == [f"{first.name}: finishing the batch, then exiting"]
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(then)
    assert stops == [1]        # not asked again
    assert caplog.messages[1:] == [f"second {then.name}: exiting now"]
    assert caplog.records[1].levelno == logging.WARNING


def test_without_a_second_message_the_next_signal_exits_silently(restore_handlers, caplog):
    stops = []
    install_stop_signals(lambda: stops.append(1), logging.getLogger("svc"), "finishing")
    with caplog.at_level(logging.INFO, logger="svc"):
        signal.raise_signal(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert stops == [1]
    assert caplog.messages == ["SIGINT: finishing"]
