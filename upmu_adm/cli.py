"""upmu-adm's command line: flags, and the non-interactive mode for scripts.

``upmu-adm`` on a terminal starts the shell (:mod:`upmu_adm.app`, prompt_toolkit);
``upmu-adm -c "CMD; CMD"`` and commands on standard input when it is not a terminal run
here, without prompt_toolkit: each reply goes to standard output (failures to standard
error), the first failed command stops the run, and the exit status says whether every
command succeeded. Questions (``rem``, ``exit`` with unsaved changes) cannot be asked,
so they fail unless ``--yes`` answers them; ``--yes`` never answers rem's offer to
delete the uPMU's queued files (scripts keep them).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TextIO

from qss.cli import (CommandError, ExitStatus, add_traceback_argument, internal_error,
                     load_settings, run)
from qss.distilstate import location as distil_location
from qss.settings import add_settings_arguments
from qss.upmuconfig import UpmuConfigError

from .commands import KEYS_HELP, REGISTRY, command_table
from .metadata import BtrdbMetadata
from .registry import Confirm, Registry, prompt_suffix
from .services import Services
from .state import ShellState

__all__ = ["build_parser", "entry", "main", "run_script"]

PROG = "upmu-adm"

_DESCRIPTION = """\
The operator's shell for the uPMUs of a MicroPMU Quickstart Server: add, remove and
list uPMUs, switch them between base and extended mode, and save the list to
upmuconfig.ini, which the receiver and sync2q follow by themselves (no restart);
import, export and delete queued .dat files; see how data flows (status).

Edits stay in memory until save. On a terminal upmu-adm is an interactive shell with
the prompt "upmu-adm> "; with -c, or with commands on standard input, it runs them
without asking anything and exits.
"""


def _epilog(registry: Registry) -> str:
    commands = "\n".join("  " + line for line in command_table(registry))
    keys = "\n".join(f"  {line}" for line in KEYS_HELP.splitlines())
    return f"""\
commands (type help CMD in the shell for details):
{commands}

keys:
{keys}

non-interactive use:
  Commands come from -c, separated by ";", or one or more per line from standard
  input when it is not a terminal ("#" starts a comment). Replies go to standard
  output and failures to standard error. The first failed command stops the run and
  nothing after it runs, so end the commands with save. Questions cannot be asked:
  rem, delbackup and exit with unsaved changes fail unless --yes answers yes; --yes
  never makes rem delete queued files (use delbackup SERIAL all). importdat asks which
  uPMU files not named as a device names them are from: name it on the command line.
  Ending with unsaved changes discards them ("Abort - Not saving changes...") and
  exits 1.

examples:
  upmu-adm
  upmu-adm -c "add 10.0.0.5 P3001234 u1 true; save"
  upmu-adm -c list
  upmu-adm --yes -c "rem u1; save"
  printf 'setext u1 false\\nsave\\n' | upmu-adm
  upmu-adm -c "importdat /media/external/upmu_data --recursive"
  upmu-adm --yes -c "delbackup P3001234 2015 12"

files:
  upmuconfig.ini       the uPMU list (--upmuconfig; [paths] upmuconfig in qss.ini)
  backupconfig.ini     the list as save last applied it, streams' metadata included
                       (--backupconfig); the base of the next save's BTrDB step
  ~/.upmu_adm_history  lines typed in the shell, recalled with Up and Down

exit status:
  0  every command succeeded, or the shell was left normally
  1  a command failed (importdat: a file was invalid or refused), a question could
     not be asked, unsaved changes were discarded at the end of the commands or
     because the terminal closed, or upmuconfig.ini cannot be read
  2  invalid command line, or unusable appliance settings (qss.ini, --config, flags)
"""


def build_parser(registry: Registry = REGISTRY) -> argparse.ArgumentParser:
    """The argument parser of upmu-adm (also used by the help-text tests)."""
    p = argparse.ArgumentParser(prog=PROG, description=_DESCRIPTION,
                                epilog=_epilog(registry),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--command", metavar="COMMANDS", dest="commands",
                   help='run COMMANDS ("add 10.0.0.5 P3001234 u1 true; save") instead of '
                        'the shell, then exit')
    p.add_argument("-y", "--yes", action="store_true",
                   help="without a terminal, answer yes to the questions (rem, "
                        "delbackup, exit with unsaved changes); never to deleting a "
                        "removed uPMU's queued files")
    add_traceback_argument(p)
    add_settings_arguments(p, "upmuconfig", "backupconfig", "queue", "srv", "btrdb")
    return p


def run_script(state: ShellState, lines: Iterable[str], *, out: TextIO, err: TextIO,
               assume_yes: bool = False, registry: Registry = REGISTRY,
               show_traceback: bool = False) -> int:
    """Run commands without a terminal; return the exit status (see the module doc).

    An unexpected exception (a bug) is one line on ``err`` (with the traceback before it
    when ``show_traceback``), and fails the run as a failed command does: unsaved changes
    are discarded, saying so.
    """

    def confirm(c: Confirm) -> bool:
        if not c.unattended:
            out.write(f"{c.question} {prompt_suffix(c)} no (--yes does not answer this; "
                      f"type it in the shell)\n")
            return False
        out.write(f"{c.question} {prompt_suffix(c)} yes (--yes)\n")
        return True

    try:
        for line in lines:
            failed = False
            for reply in registry.execute(state, line, confirm if assume_yes else None):
                if reply.text:
                    (out if reply.ok else err).write(reply.text + "\n")
                if reply.exit:
                    return int(ExitStatus.OK)
                failed = failed or not reply.ok
            if failed:
                _discard(state, err)
                return int(ExitStatus.ERROR)
    except Exception as exc:  # noqa: BLE001 - still say what happens to unsaved changes
        if show_traceback:
            err.write(traceback.format_exc())
        err.write(internal_error(PROG, exc) + "\n")
        _discard(state, err)
        return int(ExitStatus.ERROR)
    if _discard(state, err):
        return int(ExitStatus.ERROR)
    return int(ExitStatus.OK)


def _discard(state: ShellState, err: TextIO) -> bool:
    """At the end of a script: say that unsaved changes are dropped. True if any."""
    if not state.unsaved:
        return False
    changes, details = state.describe_unsaved()
    err.write(f"Abort - Not saving changes... ({changes} discarded: {details}; end the "
              f"commands with save to keep them)\n")
    return True


def main(argv: Sequence[str]) -> int:
    """Entry point without exception mapping (see :func:`entry`)."""
    args = build_parser().parse_args(argv)
    settings = load_settings(args)
    for warning in settings.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    services = Services(queue_url=settings.queue.url, srv=settings.paths.srv,
                        distil_state=distil_location(settings),
                        max_disk_percent=settings.receiver.max_disk_percent,
                        progress=tqdm_progress)
    try:
        btrdb = BtrdbMetadata([str(e) for e in settings.btrdb.endpoints],
                              apikey=os.environ.get("BTRDB_API_KEY") or None)
        state = ShellState.load(settings.paths.upmuconfig, settings.paths.backupconfig,
                                services, btrdb)
    except UpmuConfigError as exc:
        raise CommandError(f"{exc}; fix the file or name another with --upmuconfig") \
            from None
    with contextlib.closing(state):
        if args.commands is not None:
            return run_script(state, [args.commands], out=sys.stdout, err=sys.stderr,
                              assume_yes=args.yes, show_traceback=args.traceback)
        if not sys.stdin.isatty():
            return run_script(state, sys.stdin, out=sys.stdout, err=sys.stderr,
                              assume_yes=args.yes, show_traceback=args.traceback)
        from .app import run_interactive    # prompt_toolkit only when there is a terminal
        return run_interactive(state, show_traceback=args.traceback)


@contextlib.contextmanager
def tqdm_progress(total: int, desc: str, unit: str = "file"
                  ) -> Iterator[Callable[[int], None]]:
    """A tqdm bar on standard error when it is a terminal (none in scripts and pipes);
    it disappears when done, and the command's summary follows."""
    from tqdm import tqdm
    with tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False,
              disable=None, dynamic_ncols=True) as bar:
        yield bar.update


def entry() -> int:
    """Console-script entry point (``upmu-adm = upmu_adm.cli:entry``)."""
    return run(main, prog=PROG)
