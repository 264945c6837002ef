"""Support for sync2q's tests (no tests here): a ``qss-sync2q`` child process, a
``.dat`` decoder written independently of :mod:`qss.dat`, and read-back helpers.

The decoder follows architecture §4 with ``struct``, record by record, so the end-to-end tests
check the whole path (parser, inserts, server) against the spec, not against itself.
"""
from __future__ import annotations

import calendar
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from qss.generator import UpmuSimulator
from qss.naming import DEVICE_ROOT
from qss.queue import open_queue
from tsdb import testing
from qss.upmuconfig import UpmuList

ROOT = Path(__file__).resolve().parents[1]
START = 1450426440          # 2015-12-18 08:14:00 UTC
BASE_NAMES = ["L1MAG", "L1ANG", "L2MAG", "L2ANG", "L3MAG", "L3ANG",
              "C1MAG", "C1ANG", "C2MAG", "C2ANG", "C3MAG", "C3ANG", "LSTATE"]
EXT_NAMES = ["FUND_W", "FUND_VAR", "FUND_VA", "FUND_DPF", "FREQ_L1_1S", "FREQ_L1_C37"]


# -- the spec, independently -------------------------------------------------------------

def decode_spec(data: bytes, window: tuple[int, int] | None = None, names=None
                ) -> dict[str, tuple[list, list]]:
    """{stream: (times ns, values)} of a file per architecture §4, record by record: base 6,312
    or extended 9,192 bytes by the status words' 0xE0 bits; sample i at
    second_ns + round(i * interval_ms * 1e6) with the float32 interval; records whose
    second (epoch seconds) is outside ``window`` (default 2010 to now + 1 day) or repeats
    an earlier one skipped; a truncated tail skipped. ``names``: only these streams."""
    window = window or (1262304000, int(time.time()) + 86400)
    names = set(BASE_NAMES + EXT_NAMES if names is None else names)
    out: dict[str, tuple[list, list]] = {n: ([], []) for n in BASE_NAMES + EXT_NAMES}
    seen = set()
    off = 0
    while off + 508 <= len(data):
        (interval,) = struct.unpack_from("<f", data, off)
        fields = struct.unpack_from("<6i", data, off + 4)
        status = struct.unpack_from("<120i", data, off + 28)
        ext = any(s & 0xE0 for s in status)
        size = 9192 if ext else 6312
        if off + size > len(data):
            break
        rec, off = off, off + size
        try:
            second = calendar.timegm((*fields, 0, 0, 0))
            if not (1 <= fields[1] <= 12 and 1 <= fields[2] <= 31):
                raise ValueError
        except (ValueError, OverflowError):
            continue
        if not window[0] <= second < window[1] or second in seen:
            continue
        seen.add(second)
        n = round(1000 / interval)
        times = [second * 10**9 + round(i * interval * 1e6) for i in range(n)]
        # (angle, magnitude) float32 pairs per channel, from byte 508 of the record.
        pairs = np.frombuffer(data, "<f4", 6 * 240, rec + 508).reshape(6, 120, 2)
        for c in range(6):
            for name, k in ((BASE_NAMES[2 * c], 1), (BASE_NAMES[2 * c + 1], 0)):
                if name not in names:
                    continue
                out[name][0].extend(times)
                out[name][1].extend(pairs[c, :n, k].tolist())
        if "LSTATE" in names:
            out["LSTATE"][0].extend(times)
            out["LSTATE"][1].extend(float(s) for s in status[:n])
        if ext:
            extra = np.frombuffer(data, "<f4", 6 * 120, rec + 6312).reshape(6, 120)
            for k, name in enumerate(EXT_NAMES):
                if name not in names:
                    continue
                out[name][0].extend(times)
                out[name][1].extend(extra[k, :n].tolist())
    return {k: v for k, v in out.items() if v[0]}


def expected(files: list[bytes], names=None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The points a set of files should leave in BTrDB per stream, sorted by time: the
    later file wins at a repeated time (REPLACE), and NaN and Inf are left out (BTrDB
    refuses them)."""
    parts: dict[str, list[tuple[list, list]]] = {}
    for data in files:
        for name, tv in decode_spec(data, names=names).items():
            parts.setdefault(name, []).append(tv)
    out = {}
    for name, tvs in parts.items():
        t = np.concatenate([np.array(p[0], dtype=np.int64) for p in tvs])[::-1]
        v = np.concatenate([np.array(p[1], dtype=np.float64) for p in tvs])[::-1]
        t, first = np.unique(t, return_index=True)     # first of the reversed = last
        v = v[first]
        finite = np.isfinite(v)
        out[name] = (t[finite], v[finite])
    return out


# -- set-up ------------------------------------------------------------------------------

def device_files(serial: str, count: int, *, extended: bool = True,
                 start: int = START) -> list[tuple[str, bytes]]:
    """``count`` consecutive one-minute files of a simulated uPMU: (device path, bytes)."""
    sim = UpmuSimulator(serial, extended=extended)
    return [(f"{DEVICE_ROOT}/{rel}", data) for rel, data in sim.files(start, count)]


class Site:
    """A temporary appliance: queue, uPMU list, empty qss.ini."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.url = f"sqlite:///{tmp_path}/queue.db"
        self.upmuconfig = str(tmp_path / "upmuconfig.ini")
        self.config = tmp_path / "qss.ini"
        self.config.write_text("")
        self.queue = open_queue(self.url)

    def add_upmu(self, serial: str, alias: str, extended: bool = True, n: int | None = None):
        with UpmuList.edit(self.upmuconfig) as ul:
            n = len(ul) if n is None else n
            return ul.add(f"10.9.0.{n + 1}", serial, alias, extended=extended)

    def upmu(self, serial: str):
        return UpmuList.load(self.upmuconfig).by_serial(serial)

    def put(self, serial: str, files: list[tuple[str, bytes]]) -> None:
        for name, data in files:
            self.queue.put(serial, name, data, update_latest=False)

    def unsynced(self, serial: str) -> list[str]:
        return [f.name for f in self.queue.unsynced(serial)]

    def args(self, btrdb: str, *extra: str) -> list[str]:
        return ["--config", str(self.config), "--queue", self.url, "--upmuconfig",
                self.upmuconfig, "--btrdb", btrdb, *extra]


class Sync2q:
    """A ``python -m sync2q`` child; its output is collected line by line.

    A context manager: leaving the ``with`` block kills the child if it still runs, so no
    test leaves one behind whatever fails. Its output goes to a pipe, never to pytest's."""

    def __init__(self, args: list[str]) -> None:
        env = {k: v for k, v in os.environ.items()
               if k not in ("QSS_CONFIG", "BTRDB_ENDPOINTS", "MONGO_ADDR", "BTRDB_API_KEY")}
        env["PYTHONPATH"] = str(ROOT)
        self.proc = subprocess.Popen([sys.executable, "-m", "sync2q", *args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def __enter__(self) -> Sync2q:
        return self

    def __exit__(self, *exc_info) -> None:
        self.kill()

    def kill(self) -> None:
        """SIGKILL the child if it still runs, reap it, and close its pipe."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(5)
        self.proc.stdout.close()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def count(self, pattern: str) -> int:
        return sum(1 for line in list(self.lines) if re.search(pattern, line))

    def wait_for(self, pattern: str, n: int = 1, timeout: float = 30.0) -> None:
        """Wait until ``n`` lines match ``pattern``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.count(pattern) < n:
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no {n} lines matching {pattern!r}; log:\n{self.log}")
                self._changed.wait(min(left, 0.1))

    def wait(self, timeout: float = 60.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        self.proc.stdout.close()
        return code

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)


def run_once(site: Site, btrdb: str, *extra: str, timeout: float = 60.0) -> Sync2q:
    """``qss-sync2q --once`` to completion; asserts exit status 0. A run that outlasts
    ``timeout`` is killed and its TimeoutExpired re-raised."""
    with Sync2q(site.args(btrdb, "--once", *extra)) as proc:
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            exc.add_note(f"qss-sync2q --once killed after {timeout} s; log:\n{proc.log}")
            raise
    assert code == 0, proc.log
    return proc


# -- BTrDB -------------------------------------------------------------------------------

def reserve_port() -> int:
    """A free loopback port kept from being handed out again for a while: it is left in
    TIME_WAIT (a connection accepted and closed on it), so the kernel does not pick it for
    another process's port 0, yet a server binding it with SO_REUSEADDR (qss-btrdb, the
    receiver) may. Nothing listens on it: a client gets "connection refused"."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = listener.accept()
            accepted.close()                 # the server's side closes first: TIME_WAIT
    return port


def start_btrdb_on(data, port: int, *extra: str, attempts: int = 6,
                   backoff: float = 0.25) -> testing.ServerProcess:
    """``testing.start`` with gRPC on 127.0.0.1:``port`` (a port chosen earlier, or the
    one of a server just stopped; qss-btrdb cannot inherit a listening socket). While the
    port is in use it is tried again, ``attempts`` times with a doubling delay."""
    delay = backoff
    for attempt in range(1, attempts + 1):
        try:
            return testing.start(data, "--grpc", f"127.0.0.1:{port}", *extra)
        except RuntimeError as exc:
            if "Address already in use" not in str(exc):
                raise
            if attempt == attempts:
                raise RuntimeError(
                    f"qss-btrdb could not listen on 127.0.0.1:{port}, still in use after "
                    f"{attempts} attempts (another process took the port?):\n{exc}"
                    ) from exc
        time.sleep(delay)
        delay *= 2

def connect(address: str):
    import warnings

    import btrdb
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return btrdb.connect(address)


def read_stream(db, uuid) -> tuple[np.ndarray, np.ndarray]:
    """Every point of a stream, via the official client's Arrow read."""
    import btrdb
    table = db.stream_from_uuid(uuid).arrow_values(btrdb.MINIMUM_TIME, btrdb.MAXIMUM_TIME)
    t = table.column(0).cast("int64").to_numpy() if table.num_rows else np.empty(0, np.int64)
    v = table.column(1).to_numpy() if table.num_rows else np.empty(0)
    return t, v


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One embedded BTrDB server per test module (tests use distinct streams)."""
    data = tmp_path_factory.mktemp("btrdb") / "data"
    proc = testing.start(data)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path)
    try:
        yield s
    finally:
        s.queue.close()
