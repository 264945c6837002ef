"""Run the gRPC service in the foreground: ``python -m qss.tsdb --data DIR --grpc H:P``.

A stop-gap for benchmarks and manual tests until the ``qss-btrdb`` command (with the REST
API) exists. Prints ``listening on HOST:PORT`` once serving; exits cleanly on SIGTERM/SIGINT.
"""
from __future__ import annotations

import argparse
import logging
import signal
import threading

from .grpc_service import make_server
from .store import Store


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m qss.tsdb")
    ap.add_argument("--data", required=True, help="data directory")
    ap.add_argument("--grpc", default="127.0.0.1:4410", help="HOST:PORT (port 0: any)")
    ap.add_argument("--no-fsync", action="store_true",
                    help="synchronous=NORMAL: survive crashes but not power loss")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with Store(args.data, durable=not args.no_fsync) as store:
        server, port = make_server(store, args.grpc)
        server.start()
        host = args.grpc.rsplit(":", 1)[0]
        print(f"listening on {host}:{port}", flush=True)
        stop.wait()
        server.stop(5).wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
