"""Run a real ``qss-plotter`` process for tests and benchmarks (plain HTTP on loopback,
a free port)."""
from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

_SERVING = re.compile(r"serving the plotter on (https?)://(\S+):(\d+)/")
ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class PlotterProcess:
    proc: subprocess.Popen
    log_path: Path
    url: str = ""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal the plotter and wait for it; returns its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def command(btrdb: str, data: str | os.PathLike, *extra: str) -> list[str]:
    """A plotter on 127.0.0.1, any free port, plain HTTP, no settings file, its
    ``tagconfig.json`` in ``data``."""
    # Tests may run as root (CI does); the worktree need not be readable by another user.
    user = ["--user", "root"] if os.geteuid() == 0 else []
    return [sys.executable, "-m", "plotter", "--config", os.devnull, "--btrdb", btrdb,
            "--data", str(data), "--queue", f"sqlite:///{os.path.abspath(data)}/queue.db",
            "--srv", str(data), "--listen", "127.0.0.1:0", "--certificate", "",
            "--key", "", "--redirect", "off",
            "--tagconfig", os.path.join(os.path.abspath(data), "tagconfig.json"), *user, *extra]


def start(btrdb: str, data: str | os.PathLike, *extra: str, log_path: str | os.PathLike,
          timeout: float = 30.0, pythonpath: str | None = None) -> PlotterProcess:
    """Start a plotter reading BTrDB at ``btrdb`` and wait until it logs its URL; its code
    from this checkout, or from ``pythonpath`` (e.g. an unpacked wheel) when given.
    Without a ``tagconfig.json`` in ``data`` one is written that makes everything public.

    Raises:
        RuntimeError: with the plotter's output, if it exits or stays silent.
    """
    log_path = Path(log_path)
    tagconfig = Path(data) / "tagconfig.json"
    if not tagconfig.exists():     # what the API tests expect: every stream is public
        tagconfig.write_text('{"public": ["/"]}\n')
    out = open(log_path, "w")
    code = pythonpath or str(ROOT)
    env = dict(os.environ, PYTHONPATH=code + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(command(btrdb, data, *extra), stdout=out, stderr=subprocess.STDOUT,
                            env=env, cwd=code)
    out.close()
    p = PlotterProcess(proc, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = _SERVING.search(p.log())
        if m:
            p.url = f"{m.group(1)}://{m.group(2)}:{m.group(3)}"
            return p
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    raise RuntimeError(f"qss-plotter did not start (status {proc.returncode}):\n{p.log()}")


def client(url: str, user: str | None = None, password: str | None = None):
    """A ``requests.Session`` for the plotter at ``url`` that sends the CSRF token, as the
    page does; signed in as ``user`` when given.

    Raises:
        RuntimeError: the sign-in is refused.
    """
    import requests
    s = requests.Session()
    s.headers["X-CSRF-Token"] = s.get(url + "/api/session", timeout=30).json()["csrf"]
    if user is not None:
        r = s.post(url + "/api/login", json={"user": user, "password": password}, timeout=30)
        if r.status_code != 200:
            raise RuntimeError(f"sign-in as {user!r} refused: {r.status_code} {r.text}")
        s.headers["X-CSRF-Token"] = r.json()["csrf"]
    return s
