"""Fixtures shared by several test modules, and the order of the files on pytest-xdist's
workers."""
from __future__ import annotations

import socket

import pytest

from plotter import testing as plotter_testing
from tsdb import testing

#: The test files that take longest (``./dev test --durations=0``), longest first. On
#: pytest-xdist's workers (``./dev test``: a whole file per worker, handed out in
#: collection order, ``--no-loadscope-reorder``) they are handed out before the others,
#: so that no worker is left running a long one at the end while the other idles. A name
#: no longer here costs only that; nothing else depends on the order.
LONGEST_FIRST = (
    "test_qss_get_update.py", "test_docs_manual.py", "test_distil_engine.py",
    "test_plotter_accounts.py", "test_plotter_domains_demo.py", "test_distil_cli.py",
    "test_plotter_browser.py", "test_sync2q_faults.py", "test_e2e_faults.py",
    "test_e2e_disk_threshold.py", "test_plotter_api.py", "test_e2e_exactly_once.py",
    "test_accounts_store.py", "test_demo.py", "test_distil_service.py",
    "test_plotter_demo.py",
)


def pytest_collection_modifyitems(config, items):
    """On an xdist worker, the longest files first, each file's tests in their order."""
    if not hasattr(config, "workerinput"):
        return          # one process: the files in their usual order
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))    # stable


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real qss-btrdb on free loopback ports, shared by the module's tests (modules
    that need another kind of server define their own ``server``)."""
    proc = testing.start(tmp_path_factory.mktemp("btrdb") / "data")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def plotter(server, streams, tmp_path_factory):
    """A real qss-plotter over the module's ``server``, started once the module's
    ``streams`` fixture has written its streams; stopped after the module (modules that
    need another plotter define their own ``plotter``)."""
    tmp = tmp_path_factory.mktemp("plotter")
    p = plotter_testing.start(server.grpc, tmp, log_path=tmp / "plotter.log")
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def listener():
    """A listening TCP socket on 127.0.0.1 (a free port) that a child process may inherit,
    as a receiver is handed one (``--listen-fd``); closed after the test."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    yield sock
    sock.close()
