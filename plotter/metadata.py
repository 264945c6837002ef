"""Supervisor program ``metadata``: what ``sudo supervisorctl restart metadata`` means here.

On the original appliance ``metadata`` served the plotter's stream list and access tags;
here the plotter reads both itself (the stream list from BTrDB every few seconds,
``tagconfig.json`` within a second of a change, the accounts on every request), so nothing
needs a restart. The program keeps the manual's command meaningful and useful:

- when it starts (so on every ``restart metadata`` or ``restart all``) it touches the
  *reload stamp* (``mr-plotter.reload`` beside ``plotter.db``); ``mr-plotter`` sees the
  stamp change within a second and reads ``tagconfig.json`` and the stream list again at
  once;
- it writes to its log (``/var/log/metadata.log``) who sees which domain: each domain of
  ``upmuconfig.ini`` with its uPMUs, whether it is public, and which tags and users open
  it, or that nobody can see it; and why ``tagconfig.json`` is not in force when it is
  broken;
- then it keeps watching ``tagconfig.json`` and ``upmuconfig.ini`` and writes the report
  again when either changes.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence

from qss.accounts import open_accounts, plotter_db_path
from qss.cli import add_traceback_argument, load_settings, run
from qss.settings import Settings, add_settings_arguments
from qss.tagconfig import PUBLIC, TagConfigFile, covers
from qss.upmuconfig import UpmuConfigError, UpmuList

__all__ = ["ReloadStamp", "domain_report", "reload_stamp_path", "touch"]

log = logging.getLogger("metadata")
PROG = "qss-metadata"
STAMP = "mr-plotter.reload"


def reload_stamp_path(settings: Settings) -> str:
    """The reload stamp of this appliance: beside ``plotter.db``."""
    return os.path.join(os.path.dirname(plotter_db_path(settings.queue.url,
                                                        settings.paths.srv)), STAMP)


def touch(path: str) -> None:
    """Create ``path`` or bump its modification time."""
    with open(path, "a"):
        pass
    os.utime(path)


class ReloadStamp:
    """Calls ``on_change`` when the stamp's modification time changes (looked at once a
    ``period``); the first look only notes it."""

    def __init__(self, path: str, on_change: Callable[[], None], period: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.on_change = on_change
        self.period = period
        self._clock = clock
        self._looked: float | None = None
        self._seen: int | None = None
        self._lock = threading.Lock()

    def check(self) -> None:
        now = self._clock()
        with self._lock:
            if self._looked is not None and now - self._looked < self.period:
                return
            first = self._looked is None
            self._looked = now
            try:
                mtime: int | None = os.stat(self.path).st_mtime_ns
            except OSError:
                mtime = None
            changed = not first and mtime != self._seen and mtime is not None
            self._seen = mtime
        if changed:
            self.on_change()


def domain_report(config: dict[str, tuple[str, ...]], upmus: UpmuList,
                  users: dict[str, tuple[str, ...]]) -> list[str]:
    """Who sees which domain, a line per domain of ``upmus`` (sans IO)."""
    domains: dict[str, list[str]] = {}
    for u in upmus:
        for s in u.streams.values():
            top = s.collection.strip("/").split("/")[0]
            names = domains.setdefault(top, [])
            if u.alias not in names:
                names.append(u.alias)
    lines = []
    for domain, aliases in sorted(domains.items()):
        path = "/" + domain
        opening = [t for t, prefixes in config.items() if any(covers(p, path) for p in prefixes)]
        partly = [t for t, prefixes in config.items() if t not in opening
                  and any(covers(path, p) for p in prefixes)]
        who = []
        if PUBLIC in opening:
            who.append("public (everyone)")
        for t in (t for t in opening if t != PUBLIC):
            holders = sorted(n for n, tags in users.items() if t in tags)
            who.append(f"tag {t} ({', '.join(holders) if holders else 'no user has it'})")
        for t in partly:
            who.append(f"tag {t} in part")
        lines.append(f"domain /{domain} ({', '.join(aliases)}): "
                     f"{'; '.join(who) if who else 'nobody (no tag of tagconfig.json opens it)'}")
    for t in sorted({t for tags in users.values() for t in tags} - set(config)):
        lines.append(f"tag {t} of user(s) {', '.join(sorted(n for n, g in users.items() if t in g))} "
                     f"is not in tagconfig.json: it opens nothing")
    return lines


def report(settings: Settings, tagconfig: TagConfigFile) -> list[str]:
    """The report for this appliance (each source that cannot be read says why)."""
    config = tagconfig.get()           # logs what it holds when it (re)reads the file
    lines = [tagconfig.error] if tagconfig.error else []
    try:
        upmus = UpmuList.load(settings.paths.upmuconfig)
    except UpmuConfigError as exc:
        return lines + [f"cannot read the uPMU list: {exc}"]
    try:
        store = open_accounts(settings.queue.url, settings.paths.srv)
        try:
            users = {a.name: a.tags for a in store.list()}
        finally:
            store.close()
    except Exception as exc:  # noqa: BLE001 - the report says it and goes on
        lines.append(f"cannot read the accounts: {exc}")
        users = {}
    return lines + domain_report(config, upmus, users)


def _stamp_of(path: str):
    try:
        st = os.stat(path)
        return st.st_ino, st.st_size, st.st_mtime_ns
    except OSError:
        return None


def main(argv: Sequence[str]) -> int:
    """Touch the reload stamp, report, then watch and report again until SIGTERM."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Supervisor program 'metadata': makes the plotter read "
        "tagconfig.json and the stream list again at once, and logs who sees which domain "
        "(again whenever tagconfig.json or upmuconfig.ini changes).")
    add_settings_arguments(parser, "tagconfig", "queue", "srv", "upmuconfig")
    parser.add_argument("--once", action="store_true",
                        help="touch the stamp, print the report and exit")
    add_traceback_argument(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(message)s")
    settings = load_settings(args)
    tagconfig = TagConfigFile(settings.plotter.tagconfig, period=0)
    stamp = reload_stamp_path(settings)
    try:
        touch(stamp)
        log.info("asked the plotter to reload its metadata (%s)", stamp)
    except OSError as exc:
        log.error("cannot touch %s (%s): the plotter takes changes in within seconds "
                  "anyway", stamp, exc.strerror or exc)
    for line in report(settings, tagconfig):
        log.info("%s", line)
    if args.once:
        return 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    watched = (settings.plotter.tagconfig, settings.paths.upmuconfig)
    seen = [_stamp_of(p) for p in watched]
    while not stop.wait(2.0):
        now = [_stamp_of(p) for p in watched]
        if now != seen:
            seen = now
            for line in report(settings, tagconfig):
                log.info("%s", line)
    log.info("metadata stopped")
    return 0


def entry() -> None:
    """Console script ``qss-metadata``."""
    sys.exit(run(main, prog=PROG))


if __name__ == "__main__":
    entry()
