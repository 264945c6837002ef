"""``qss-plotter``: the plotter's web site, in the foreground, logging to stdout
(supervisor program ``mr-plotter``).

HTTPS on ``[plotter] listen`` with ``certificate`` and ``key``, and a plain-HTTP listener
on ``redirect`` that only sends browsers on to it; with no certificate and key, plain HTTP
on ``listen`` (the demo and tests, on loopback). Sockets are bound first; then, when
started as root, the process becomes ``--user`` (the service user) before it reads a
request, so it never serves as root (ports 80 and 443 need root to bind).
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import Sequence

from qss.cli import CommandError, ExitStatus, add_traceback_argument, load_settings, run
from qss.settings import HostPort, add_settings_arguments

log = logging.getLogger("plotter")
PROG = "qss-plotter"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve the plotter's web site and its JSON API (docs/plotter-api.md). "
                    "Runs in the foreground and logs to stdout (supervisor program "
                    "'mr-plotter').")
    add_settings_arguments(parser, "plotter_listen", "certificate", "key", "redirect",
                           "btrdb", "data", "max_disk_percent", "http", "queue", "srv",
                           "upmuconfig", "tagconfig", "idle_minutes")
    parser.add_argument("--user", metavar="NAME",
                        help="when started as root (to bind ports 80 and 443), run as this "
                             "user once the sockets are bound; required as root (the "
                             "appliance's program gives the service user, qss)")
    add_traceback_argument(parser)
    return parser


def bind(address: HostPort) -> socket.socket:
    """A listening TCP socket on ``address`` (port 0: any free port).

    Raises:
        CommandError: the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
    # connections whose socket says TCP, and with it on, an answer written in two parts
    # (head, then body) waited for the browser's delayed ACK: 40 ms on every request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address.host, address.port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        hint = "; is another plotter running?" if exc.errno == errno.EADDRINUSE else ""
        if exc.errno == errno.EACCES:
            hint = "; ports below 1024 need root (the plotter then runs as --user)"
        raise CommandError(f"cannot listen on {address}: {exc.strerror or exc}{hint}") from None
    sock.set_inheritable(False)
    return sock


def drop_privileges(user: str | None) -> None:
    """Become ``user`` (and its groups) when running as root; nothing otherwise.

    Raises:
        CommandError: root without a user to become, or no such user.
    """
    if os.geteuid() != 0:
        return
    if not user:
        raise CommandError("started as root: give --user NAME to serve as once the ports "
                           "are bound (the service user, qss); the plotter never serves as "
                           "root", ExitStatus.USAGE)
    import grp
    import pwd
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise CommandError(f"no user {user!r} to run as (--user); create it or name "
                           f"another") from None
    if pw.pw_uid == 0:
        log.warning("serving as root (--user %s): only for tests and development", user)
        return
    os.setgroups([g.gr_gid for g in grp.getgrall() if user in g.gr_mem] + [pw.pw_gid])
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)
    log.info("running as %s", user)


def _tls_context(certificate: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    for path in (certificate, key):
        if not os.path.exists(path):
            raise CommandError(f"{path}: no such file ([plotter] certificate and key: PEM "
                               f"files, or both empty for plain HTTP)")
    try:
        ctx.load_cert_chain(certificate, key)
    except (ssl.SSLError, OSError) as exc:
        raise CommandError(f"cannot use certificate {certificate} with key {key}: "
                           f"{exc}") from None
    return ctx


def main(argv: Sequence[str]) -> int:
    """Serve until SIGTERM or SIGINT; return the exit status.

    Raises:
        CommandError: bad settings, unusable certificate, an address that cannot be bound.
    """
    args = _parser().parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(message)s")
    # Settings accept ports 1-65535; port 0 ("any free port", for tests) is let through
    # by validating the address with port 1 and binding port 0.
    any_port = {}
    for name in ("plotter_listen", "redirect"):
        text = getattr(args, name)
        any_port[name] = text is not None and text.strip().endswith(":0")
        if any_port[name]:
            setattr(args, name, text.strip()[:-2] + ":1")
    settings = load_settings(args)
    cfg = settings.plotter
    if any_port["plotter_listen"]:
        cfg = dataclasses.replace(cfg, listen=HostPort(cfg.listen.host, 0))
    if any_port["redirect"] and cfg.redirect is not None:
        cfg = dataclasses.replace(cfg, redirect=HostPort(cfg.redirect.host, 0))
    settings = dataclasses.replace(settings, plotter=cfg)
    for warning in settings.warnings:
        log.warning("%s", warning)
    if bool(cfg.certificate) != bool(cfg.key):
        raise CommandError("[plotter] certificate and key go together: give both (HTTPS) "
                           "or neither (plain HTTP)", ExitStatus.USAGE)
    tls = _tls_context(cfg.certificate, cfg.key) if cfg.https else None
    sock = bind(cfg.listen)
    redirect_sock = bind(cfg.redirect) if tls is not None and cfg.redirect else None
    drop_privileges(args.user)
    return asyncio.run(_serve(settings, sock, redirect_sock, tls))


async def _serve(settings, sock: socket.socket, redirect_sock: socket.socket | None,
                 tls: ssl.SSLContext | None) -> int:
    import uvicorn

    from .app import STATIC, Plotter, create_app
    from .redirect import redirect_app

    plotter = Plotter(settings)
    app = create_app(plotter)
    servers = []
    # uvicorn takes a context through its certificate options only; the files were
    # checked above, so these load.
    ssl_opts = ({"ssl_certfile": settings.plotter.certificate,
                 "ssl_keyfile": settings.plotter.key} if tls is not None else {})
    # A browser's kept-alive TLS connection would otherwise hold a stop until supervisor
    # kills the program (stopwaitsecs 10): give open requests 5 s, then close.
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                            server_header=False, timeout_graceful_shutdown=5, **ssl_opts)
    servers.append((uvicorn.Server(config), sock))
    host, port = sock.getsockname()[:2]
    scheme = "https" if tls is not None else "http"
    if redirect_sock is not None:
        rconfig = uvicorn.Config(redirect_app(port), log_config=None, access_log=False,
                                 lifespan="off", server_header=False,
                                 timeout_graceful_shutdown=5)
        servers.append((uvicorn.Server(rconfig), redirect_sock))
    for server, _ in servers:
        server.install_signal_handlers = lambda: None   # ours, below, stop both
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server, _ in servers:
            server.should_exit = True
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    log.info("serving the plotter on %s://%s:%d/ (BTrDB %s; page from %s)%s", scheme, host,
             port, settings.btrdb.conn_str, STATIC,
             f"; redirecting http://{redirect_sock.getsockname()[0]}:"
             f"{redirect_sock.getsockname()[1]}/ to it" if redirect_sock else "")
    try:
        await asyncio.gather(*(server.serve(sockets=[s]) for server, s in servers))
    finally:
        plotter.close()
    log.info("plotter stopped")
    return int(ExitStatus.OK)


def entry() -> None:
    """Console script ``qss-plotter``."""
    sys.exit(run(main, prog=PROG))


if __name__ == "__main__":
    entry()
