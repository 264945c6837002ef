"""Run a real ``qss-btrdb`` process for tests and benchmarks (loopback, any free ports)."""
from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

_SERVING = re.compile(r"serving gRPC on (\S+):(\d+), REST on (\S+):(\d+)")
ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class ServerProcess:
    proc: subprocess.Popen
    log_path: Path
    grpc_port: int = 0
    http_port: int = 0

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal the server and wait for it; returns its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def command(data: str | os.PathLike, *extra: str, program: list[str] | None = None
            ) -> list[str]:
    """The command line of a server on 127.0.0.1 with free ports and no settings file
    (``program``: what runs instead of ``python -m tsdb``, e.g. a probe wrapping it)."""
    return [*(program or [sys.executable, "-m", "tsdb"]), "--config", os.devnull, "--data", str(data),
            "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0", *extra]


def start(data: str | os.PathLike, *extra: str, log_path: str | os.PathLike | None = None,
          timeout: float = 30.0, program: list[str] | None = None) -> ServerProcess:
    """Start a server and wait until it logs its ports.

    Raises:
        RuntimeError: with the server's output, if it exits or stays silent.
    """
    log_path = Path(log_path or Path(data).parent / f"{Path(data).name}-server.log")
    out = open(log_path, "w")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(command(data, *extra, program=program), stdout=out, stderr=subprocess.STDOUT,
                            env=env, cwd=ROOT)
    out.close()
    server = ServerProcess(proc, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = _SERVING.search(server.log())
        if m:
            server.grpc_port, server.http_port = int(m.group(2)), int(m.group(4))
            return server
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    raise RuntimeError(f"qss-btrdb did not start (status {proc.returncode}):\n{server.log()}")


@contextlib.contextmanager
def running(data: str | os.PathLike, *extra: str) -> Iterator[ServerProcess]:
    """A started server, stopped with SIGTERM (killed if it hangs) on exit."""
    server = start(data, *extra)
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.stop()


@contextlib.contextmanager
def in_process(data: str | os.PathLike, **store_options) -> Iterator:
    """A gRPC server over a :class:`~tsdb.Store` in this process, on a free loopback port,
    and the official client connected to it (what ``btrdb.connect()`` does, keeping the
    channel so that it is closed at the end); ``store_options`` go to the Store."""
    from btrdb.conn import BTrDB, Connection
    from btrdb.endpoint import Endpoint

    from .grpc_service import make_server
    from .store import Store

    store = Store(data, **store_options)
    server, port = make_server(store, "127.0.0.1:0")
    server.start()
    channel = Connection(f"127.0.0.1:{port}").channel
    db = BTrDB(Endpoint(channel))
    try:
        yield db
    finally:
        db._executor.shutdown()
        channel.close()
        server.stop(0).wait()
        store.close()
