"""The real ``qss-receiver`` process for tests: a child on a listening socket the test
holds and hands it (``--listen-fd``), so that a restarted receiver serves the same
address; used by test_receiver_process.py and test_receiver_memory.py (the socket is
conftest's ``listener``)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Receiver:
    """A ``python -m receiver.server`` child on an inherited listening socket."""

    def __init__(self, tmp_path, sock: socket.socket, *extra: str) -> None:
        config = tmp_path / "qss.ini"
        config.write_text("")
        env = {k: v for k, v in os.environ.items() if k not in ("MONGO_ADDR", "QSS_CONFIG")}
        env["PYTHONPATH"] = ROOT
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "receiver.server", "--config", str(config),
             "--queue", f"sqlite:///{tmp_path}/queue.db",
             "--upmuconfig", str(tmp_path / "upmuconfig.ini"),
             "--listen-fd", str(sock.fileno()), *extra],
            pass_fds=(sock.fileno(),), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env=env, cwd=ROOT)
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if "Listening on" in line:
                self.ready.set()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        self.proc.stdout.close()
        return code

    @property
    def log(self) -> str:
        return "".join(self.lines)
