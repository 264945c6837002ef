"""sync2q end to end, real processes on loopback: files pushed by simulated uPMUs through
the real receiver, ``qss-sync2q --once`` against the real embedded BTrDB server, and
everything read back with the official client."""
from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import threading

import numpy as np
import pytest

from qss.dat import parse
from qss.protocol import encode_message
from test_sync2q_support import (ROOT, connect, device_files, expected, read_stream,
                                 run_once, server, site)  # noqa: F401 - fixtures

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


class Receiver:
    """``python -m receiver.server`` on a listening socket the test owns."""

    def __init__(self, site) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k not in ("MONGO_ADDR", "QSS_CONFIG")}
        env["PYTHONPATH"] = str(ROOT)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "receiver.server", "--config", str(site.config),
             "--queue", site.url, "--upmuconfig", site.upmuconfig,
             "--listen-fd", str(self.sock.fileno())],
            pass_fds=(self.sock.fileno(),), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
        self.ready = threading.Event()
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self.ready.wait(30):
            self.kill()
            raise AssertionError("receiver did not start:\n" + "".join(self.lines))

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if "Listening on" in line:
                self.ready.set()

    def push(self, serial: str, files: list[tuple[str, bytes]]) -> None:
        """Push files over one connection as a device does: one reply awaited per file."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as conn:
            for send_id, (path, data) in enumerate(files, start=1):
                conn.sendall(encode_message(send_id, path, serial, data))
                reply = b""
                while len(reply) < 4:
                    chunk = conn.recv(4 - len(reply))
                    assert chunk, "receiver closed the connection"
                    reply += chunk
                assert struct.unpack("<I", reply)[0] == send_id, "".join(self.lines)

    def stop(self) -> None:
        """SIGTERM, and exit status 0 within 30 s (else killed)."""
        try:
            self.proc.send_signal(signal.SIGTERM)
            code = self.proc.wait(30)
        finally:
            self.kill()
        assert code == 0, "".join(self.lines)

    def kill(self) -> None:
        """SIGKILL the receiver if it still runs, reap it, close its pipe and socket."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(5)
        self.proc.stdout.close()
        self.sock.close()


def test_pushed_files_arrive_in_btrdb_exactly_with_spec_times_and_metadata(server, site):
    # An extended uPMU, a base one, and one configured base that sends extended files.
    ext = device_files("P3100001", 3, extended=True)
    base = device_files("P3100002", 2, extended=False)
    mixed = device_files("P3100003", 2, extended=True)
    site.add_upmu("P3100001", "e2e-ext", extended=True)
    site.add_upmu("P3100002", "e2e-base", extended=False)
    site.add_upmu("P3100003", "e2e-mixed", extended=False)
    receiver = Receiver(site)
    try:
        receiver.push("P3100001", ext)
        receiver.push("P3100002", base)
        receiver.push("P3100003", mixed)
    finally:
        receiver.stop()

    first = run_once(site, server.grpc)
    db = connect(server.grpc)
    for serial, files, streams in (("P3100001", ext, 19), ("P3100002", base, 13),
                                   ("P3100003", mixed, 13)):
        upmu = site.upmu(serial)
        want = expected([data for _, data in files], names=upmu.streams)
        assert len(want) == streams
        parsed = [parse(data) for _, data in files]
        for name, info in upmu.streams.items():
            t, v = read_stream(db, info.uuid)
            # Every timestamp is the spec's formula, every value the file's float32 ...
            np.testing.assert_array_equal(t, want[name][0], err_msg=f"{serial} {name}")
            np.testing.assert_array_equal(v, want[name][1], err_msg=f"{serial} {name}")
            # ... and what the suite's parser makes of the files.
            pt = np.concatenate([p.stream(name)[0] for p in parsed])
            pv = np.concatenate([p.stream(name)[1] for p in parsed])
            np.testing.assert_array_equal(t, pt)
            np.testing.assert_array_equal(v, pv)
            assert db.stream_from_uuid(info.uuid).count() == len(files) * 60 * 120
            # Metadata: collection from Path, tags name and unit, annotations flattened.
            stream = db.stream_from_uuid(info.uuid)
            stream.refresh_metadata()
            assert stream.collection == f"upmu/{upmu.alias}"
            assert stream.tags()["name"] == name
            assert stream.tags()["unit"] == upmu.tags(name)["unit"]
            assert stream.annotations()[0] == {
                "Metadata/Instrument/SerialNumber": serial,
                "Properties/UnitofMeasure": upmu.tags(name)["unit"]}
        assert site.unsynced(serial) == []
    # Extended data of the uPMU configured as base: one warning per file, not per record.
    warned = [line for line in first.lines if "WARNING" in line and "e2e-mixed" in line]
    assert len(warned) == 2, first.log
    assert all("6 streams not stored (FUND_W" in line and "configured as base" in line
               for line in warned)
    assert first.count(r"drained: 7 files, 784800 points") == 1, first.log
    assert first.count(r"synced: \d+ points, parse [\d.]+ ms, insert \d+ ms") == 7

    # Idempotence: a second run finds nothing and changes nothing.
    versions = {info.uuid: db.stream_from_uuid(info.uuid).version()
                for s in ("P3100001", "P3100002", "P3100003")
                for info in site.upmu(s).streams.values()}
    second = run_once(site, server.grpc)
    assert second.count(r"drained: 0 files") == 1, second.log
    assert {u: db.stream_from_uuid(u).version() for u in versions} == versions
