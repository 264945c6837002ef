"""Bring the configuration to this version's format: ``python -m installer.migrate``.

qss-get -u runs it with the *new* version's Python, before switching to it, because
only the new version knows its own formats and templates:

1. each :data:`MIGRATIONS` step newer than the version updated from, in order;
2. the qss component's files (supervisord, systemd, service user) rendered again from the
   new templates (``qss-get --config qss --yes``: unchanged files are left alone, replaced
   ones backed up). qss.ini is the operator's and is never replaced.

qss-get saved every file this touches beforehand; a failure here (exit status 1) makes
it put them back and stay on the old version.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.version import Version

from qss.cli import CommandError, ExitStatus, add_traceback_argument, run

from .configure import configure
from .environment import Environment
from .files import DeployError
from .versions import BINDIR


@dataclass(frozen=True)
class Migration:
    """A change of a configuration file's format, introduced in ``version``:
    ``apply(env)`` rewrites the files under ``env.root`` and returns one line per file."""

    version: str
    description: str
    apply: Callable[[Environment], list[str]]


#: The format changes so far, oldest first. None yet: every version reads the files
#: 0.1.0 writes. A step must be idempotent (an update may be retried).
MIGRATIONS: list[Migration] = []


def pending(since: str, steps: Sequence[Migration] | None = None) -> list[Migration]:
    """The steps newer than version ``since``, oldest first."""
    steps = MIGRATIONS if steps is None else steps
    return sorted((m for m in steps if Version(m.version) > Version(since)),
                  key=lambda m: Version(m.version))


def migrate(env: Environment, since: str, steps: Sequence[Migration] | None = None) -> bool:
    """Run the pending steps, then render the qss component's files again."""
    for step in pending(since, steps):
        env.say(f"migrating for {step.version}: {step.description}")
        for line in step.apply(env):
            env.say(f"  {line}")
    return configure(env, ("qss",), assume_yes=True)


def main(argv: Sequence[str]) -> int:
    """``python -m installer.migrate --root DIR --from VERSION``."""
    p = argparse.ArgumentParser(prog="python -m installer.migrate",
                                description="Bring the configuration under --root to this "
                                            "version's format (run by qss-get -u).")
    p.add_argument("--root", default="/", type=Path)
    p.add_argument("--from", dest="since", required=True, metavar="VERSION")
    add_traceback_argument(p)
    args = p.parse_args(argv)
    env = Environment(root=args.root.resolve(), bindir=BINDIR)
    try:
        ok = migrate(env, args.since)
    except DeployError as exc:
        raise CommandError(str(exc)) from None
    return ExitStatus.OK if ok else ExitStatus.ERROR


if __name__ == "__main__":
    sys.exit(run(main, prog="migrate"))
