"""A qss-btrdb server in its own process for the benchmarks, and its gRPC address."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start(args: list[str], *, env: dict[str, str] | None = None,
          command: list[str] | None = None) -> tuple[subprocess.Popen, str]:
    """Start ``command`` (default ``python -m tsdb``) with ``args`` from the checkout
    and wait for its "serving gRPC on HOST:PORT" line; returns the process and HOST:PORT.
    The caller terminates the process."""
    cmd = (command or [sys.executable, "-m", "tsdb"]) + args
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT,
                              env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})))
    for line in server.stdout:  # "... serving gRPC on HOST:PORT, REST on ..."
        if " serving gRPC on " in line:
            return server, line.split(" serving gRPC on ")[1].split(",")[0]
    server.wait(30)
    raise SystemExit("the server did not start")
