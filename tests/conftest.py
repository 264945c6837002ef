"""Fixtures shared by several test modules."""
from __future__ import annotations

import pytest

from tsdb import testing


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real qss-btrdb on free loopback ports, shared by the module's tests (modules
    that need another kind of server define their own ``server``)."""
    proc = testing.start(tmp_path_factory.mktemp("btrdb") / "data")
    try:
        yield proc
    finally:
        proc.stop()
