"""The plotter over HTTPS with its certificate, the plain-HTTP port that only redirects,
and one-line errors for an unusable certificate."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest
import requests

from installer.certificate import write_self_signed
from plotter import testing as plotter_testing


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1, made as qss-get --config makes one."""
    d = tmp_path_factory.mktemp("tls")
    assert write_self_signed(d / "plotter.crt", d / "plotter.key", ["127.0.0.1"])
    return d / "plotter.crt", d / "plotter.key"


def test_https_with_the_certificate_and_a_redirect_from_plain_http(server, certificate,
                                                                   tmp_path):
    crt, key = certificate
    p = plotter_testing.start(server.grpc, tmp_path, "--certificate", str(crt), "--key",
                              str(key), "--redirect", "127.0.0.1:0",
                              log_path=tmp_path / "plotter.log")
    try:
        assert p.url.startswith("https://127.0.0.1:")
        r = requests.get(p.url + "/api/usage", verify=str(crt), timeout=10)
        assert r.status_code == 200 and r.json()["limit_percent"] == 98
        with pytest.raises(requests.exceptions.SSLError):      # not a trusted certificate
            requests.get(p.url + "/", timeout=10)
        port = re.search(r"redirecting http://127\.0\.0\.1:(\d+)/", p.log()).group(1)
        r = requests.get(f"http://127.0.0.1:{port}/api/streams?x=1", allow_redirects=False,
                         timeout=10)
        assert r.status_code == 308
        assert r.headers["location"] == f"{p.url}/api/streams?x=1"
    finally:
        p.stop()


def run(*args):
    return subprocess.run([sys.executable, "-m", "plotter", "--config", "/dev/null",
                           "--listen", "127.0.0.1:0", *args], capture_output=True, text=True,
                          timeout=60)


def test_certificate_problems_are_one_line_errors(certificate, tmp_path):
    crt, key = certificate
    done = run("--certificate", str(crt), "--key", "")
    assert done.returncode == 2 and done.stderr == (
        "qss-plotter: error: [plotter] certificate and key go together: give both (HTTPS) "
        "or neither (plain HTTP)\n")
    done = run("--certificate", str(tmp_path / "none.crt"), "--key", str(key))
    assert done.returncode == 1 and done.stderr == (
        f"qss-plotter: error: {tmp_path}/none.crt: no such file ([plotter] certificate and "
        f"key: PEM files, or both empty for plain HTTP)\n")
    (tmp_path / "bad.key").write_text("not a key\n")
    done = run("--certificate", str(crt), "--key", str(tmp_path / "bad.key"))
    assert done.returncode == 1 and done.stderr.startswith(
        f"qss-plotter: error: cannot use certificate {crt} with key {tmp_path}/bad.key: ")
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1


def test_connections_send_at_once_without_waiting_for_acks():
    """The listening socket says TCP, so asyncio turns Nagle's algorithm off on every
    connection (TCP_NODELAY): otherwise an answer's body waited for the browser's delayed
    ACK of its head, 40 ms on every request."""
    import asyncio
    import socket

    from plotter.server import bind
    from qss.settings import HostPort

    async def accepted_nodelay() -> int:
        got: asyncio.Future = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport):
                s = transport.get_extra_info("socket")
                got.set_result(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        sock = bind(HostPort("127.0.0.1", 0))
        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        try:
            _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
            value = await asyncio.wait_for(got, 10)
            writer.close()
            return value
        finally:
            server.close()
            await server.wait_closed()

    assert asyncio.run(accepted_nodelay()) != 0


def test_a_kept_alive_tls_connection_does_not_hold_a_stop(server, certificate, tmp_path):
    """A browser keeps its TLS connection open between requests, and may leave one half
    sent: SIGTERM must still end the plotter well within supervisor's stopwaitsecs (10 s),
    as a clean exit, not a SIGKILL."""
    import socket
    import ssl
    import time

    crt, key = certificate
    p = plotter_testing.start(server.grpc, tmp_path, "--certificate", str(crt), "--key",
                              str(key), log_path=tmp_path / "plotter.log")
    context = ssl.create_default_context(cafile=str(crt))
    host, port = p.url.removeprefix("https://").split(":")
    held = []
    try:
        for request in (b"GET /api/usage HTTP/1.1\r\nHost: x\r\n\r\n",   # answered, kept
                        b"GET /api/usage HTTP/1.1\r\nHost:"):             # half sent
            conn = context.wrap_socket(socket.create_connection((host, int(port)), 10),
                                       server_hostname=host)
            conn.sendall(request)
            held.append(conn)
        assert held[0].recv(4096).startswith(b"HTTP/1.1 200 ")
        started = time.monotonic()
        assert p.stop(timeout=15) == 0
        assert time.monotonic() - started < 8, p.log()
    finally:
        for conn in held:
            conn.close()
        p.stop()
