"""The original Go receiver (``receiver/receiver.go`` of SoftwareDefinedBuildings/uPMU-daemon)
in its dry-run mode (``-m NULL``: acknowledges every file without storing it), for
``bench_receiver.py``'s side-by-side comparison. Never used by the tests.

It builds offline with Debian's ``golang-go`` and ``golang-gopkg-mgo.v2-dev``::

    GOPATH=/usr/share/gocode GO111MODULE=off go build receiver.go
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

import psutil


class GoUnavailable(Exception):
    """The comparison cannot run; the message says why, in one line."""


def build(source: str, workdir: str) -> str:
    """Build ``receiver.go`` (the file, or a checkout of uPMU-daemon holding
    ``receiver/receiver.go``) into ``workdir``; return the binary's path.

    Raises:
        GoUnavailable: no ``go`` on PATH, no source, or the build failed.
    """
    go = shutil.which("go")
    if go is None:
        raise GoUnavailable("no `go` on PATH (apt-get install golang-go "
                            "golang-gopkg-mgo.v2-dev)")
    path = os.path.join(source, "receiver", "receiver.go") if os.path.isdir(source) else source
    if not os.path.isfile(path):
        raise GoUnavailable(f"no receiver.go at {path}")
    build_dir = os.path.join(workdir, "go-receiver")
    os.makedirs(build_dir, exist_ok=True)
    shutil.copy(path, os.path.join(build_dir, "receiver.go"))
    env = dict(os.environ, GOPATH="/usr/share/gocode", GO111MODULE="off",
               GOCACHE=os.path.join(workdir, "go-cache"))
    done = subprocess.run([go, "build", "-o", "receiver-go", "receiver.go"], cwd=build_dir,
                          env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        raise GoUnavailable(f"go build failed: {last}")
    return os.path.join(build_dir, "receiver-go")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GoReceiver:
    """The built binary, running in dry-run mode on a free port (it listens on all
    addresses: it has no option for one)."""

    def __init__(self, binary: str, workdir: str) -> None:
        self.port = _free_port()
        self.log = open(os.path.join(workdir, "receiver-go.log"), "w")
        self.proc = subprocess.Popen([binary, "-p", str(self.port), "-m", "NULL"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise GoUnavailable("the Go receiver did not start; see "
                                        f"{self.log.name}") from None
                time.sleep(0.05)
        self.ps = psutil.Process(self.proc.pid)

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 1e6

    def cpu_s(self) -> float:
        times = self.ps.cpu_times()
        return times.user + times.system

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()
