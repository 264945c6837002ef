"""``python -m installer``: build the offline archives qss-get installs from.

Run it from a checkout, in the suite's environment (``.venv/bin/python -m installer``).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from qss.cli import CommandError, ExitStatus, add_traceback_argument, run

from .archive import KINDS
from .build import CATALOGUE, BuildError, build, fetch_wheels

_EPILOG = f"""\
kinds:
  install   for a fresh server (qss-get -i): the suite's wheel, every Python dependency
            as a wheel, the configuration templates and the Debian packages of --debs
  update    for qss-get -u: the same without Debian packages
  packages  for qss-get -p: the Debian packages of --debs alone

Debian packages: --debs DIR holds one folder per package, named as qss-get knows them
({', '.join(CATALOGUE)}), each with the package's .deb and those of what it needs
that a minimal server lacks, e.g. (on a machine like the appliance):
  mkdir -p debs/apcupsd && (cd debs/apcupsd && apt-get download apcupsd)

The Python dependencies are the versions installed in this environment, for this Python
and platform: build on a machine like the appliance (the manifest records both, and
qss-get refuses an archive made for another Python).

examples:
  .venv/bin/python -m installer wheels ~/wheelhouse
  .venv/bin/python -m installer build --kind update --version 1.4.0 --wheelhouse ~/wheelhouse dist/
  .venv/bin/python -m installer build --kind install --version 1.4.0 --debs ~/debs dist/
"""


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m installer``."""
    p = argparse.ArgumentParser(
        prog="python -m installer", description="Build the Quickstart Server's offline "
        "archives (qss-install, qss-update, qss-packages) from this checkout.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_traceback_argument(p)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    b = sub.add_parser("build", help="build an archive into OUTDIR",
                       description="Build qss-KIND-VERSION.tar.gz into OUTDIR.",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--kind", required=True, choices=KINDS)
    b.add_argument("--version", required=True, metavar="X.Y.Z",
                   help="the version the archive installs (set in the suite's wheel)")
    b.add_argument("--wheelhouse", type=Path, metavar="DIR",
                   help="take the dependencies' wheels from DIR only (offline); default: "
                        "the package index")
    b.add_argument("--debs", type=Path, metavar="DIR",
                   help="Debian packages, DIR/<package>/*.deb (install and packages)")
    b.add_argument("outdir", type=Path, metavar="OUTDIR")
    add_traceback_argument(b, default=argparse.SUPPRESS)
    w = sub.add_parser("wheels", help="download the dependencies' wheels into DIR",
                       description="Download a wheel of every Python dependency, at the "
                                   "version installed here, into DIR (a wheelhouse for "
                                   "offline builds).")
    w.add_argument("dir", type=Path, metavar="DIR")
    add_traceback_argument(w, default=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str]) -> int:
    """Parse ``argv`` and build; errors are one line (:class:`CommandError`)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "wheels":
            wheels = fetch_wheels(args.dir)
            print(f"{len(wheels)} wheels in {args.dir}")
        else:
            build(args.kind, args.version, args.outdir, wheelhouse=args.wheelhouse,
                  debs=args.debs)
    except BuildError as exc:
        raise CommandError(str(exc)) from None
    return ExitStatus.OK


if __name__ == "__main__":
    sys.exit(run(main, prog="python -m installer"))
