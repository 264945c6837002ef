"""The official client's own integration tests (shipped in its wheel as
``tests/btrdb_integration``, written against a real BTrDB v5 server) pass against qss-btrdb.

Left out: API keys (this server has none: test_incorrect_connect) and SQL queries of the
metadata (SQLQuery, not offered: test_query). Nothing else: the polars conversions need
``polars`` (in the test extra of setup.py), and an upstream test skipped because a module
is missing fails this test, so a test environment without one cannot pass unnoticed.
"""
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tsdb.testing import running

SPEC = importlib.util.find_spec("btrdb")
SUITE = Path(SPEC.origin).parent.parent / "tests" / "btrdb_integration" if SPEC else None
UNSUPPORTED = ["test_incorrect_connect", "test_query"]
#: How pytest words a skip for a module that cannot be imported (importorskip, or a
#: skipif/skip whose reason names the missing module or package).
MISSING_MODULE = re.compile(r"could not import|No module named|not installed|ImportError|"
                            r"ModuleNotFoundError|requires? \w+", re.IGNORECASE)


def missing_module_skips(report: str) -> list[str]:
    """The ``SKIPPED`` lines of pytest's ``-rs`` summary that are about a missing module."""
    return [line for line in report.splitlines()
            if line.startswith("SKIPPED") and MISSING_MODULE.search(line)]


def test_skips_for_a_missing_module_are_recognised():
    report = ("SKIPPED [1] test_x.py:3: could not import 'polars': No module named 'polars'\n"
              "SKIPPED [2] test_y.py:9: Need an integration test server to run integration tests.\n"
              "SKIPPED [1] test_z.py:5: requires pandas\n")
    assert missing_module_skips(report) == [report.splitlines()[0], report.splitlines()[2]]


@pytest.mark.skipif(SUITE is None or not SUITE.is_dir(),
                    reason="the btrdb wheel's integration tests are not installed")
def test_official_client_integration_suite_passes(tmp_path):
    suite = tmp_path / "suite"
    shutil.copytree(SUITE, suite, ignore=shutil.ignore_patterns("__pycache__"))
    (suite / "__init__.py").unlink(missing_ok=True)  # run as top-level modules
    home = tmp_path / "home"
    (home / ".predictivegrid").mkdir(parents=True)
    with running(tmp_path / "data", "--no-fsync") as server:
        (home / ".predictivegrid" / "credentials.yaml").write_text(
            f"qss:\n  btrdb:\n    endpoints: {server.grpc}\n")
        env = dict(os.environ, HOME=str(home), BTRDB_INTEGRATION_TEST_PROFILE="qss")
        env.pop("BTRDB_ENDPOINTS", None)
        env.pop("BTRDB_API_KEY", None)
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "--no-header", "-p", "no:cacheprovider",
             "--import-mode=importlib", "-W", "ignore", "-rs", "-k",
             " and ".join(f"not {name}" for name in UNSUPPORTED), str(suite)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        log = server.log()
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    assert " failed" not in summary and " passed" in summary
    assert not missing_module_skips(done.stdout), done.stdout[-5000:]
    assert int(summary.split(" passed")[0].split()[-1]) >= 49  # 42, and 7 with polars
    assert "Traceback" not in log and " failed" not in log, log[-3000:]
