"""Shared plumbing for the suite's commands: exit statuses and error mapping.

Commands are thin: they parse arguments, call one library function, print, and map
errors to an exit status here, so an operator never sees a traceback for a mistake
(`--traceback` shows one for support: every parser declares it with
:func:`add_traceback_argument`, and :func:`run` acts on it).
"""
from __future__ import annotations

import argparse
import datetime as dt
import enum
import logging
import signal
import sys
import traceback
from collections.abc import Callable, Sequence

from qss.settings import Settings, SettingsError, settings_from_args


class ExitStatus(enum.IntEnum):
    """Exit statuses shared by every command of the suite."""

    OK = 0
    ERROR = 1          # the operation failed (bad input, damaged file, refused)
    USAGE = 2          # invalid invocation (argparse uses 2 as well)
    INTERRUPTED = 130  # Ctrl+C


class CommandError(Exception):
    """An error to show the operator as one line, without a traceback."""

    def __init__(self, message: str, status: ExitStatus = ExitStatus.ERROR):
        super().__init__(message)
        self.status = status


TRACEBACK = "--traceback"


def add_traceback_argument(parser: argparse.ArgumentParser, **kwargs) -> None:
    """Declare ``--traceback`` (``args.traceback``), which :func:`run` acts on.

    ``kwargs`` go to ``add_argument``: a subcommand's parser takes
    ``default=argparse.SUPPRESS`` so that it does not undo the flag given before it.
    """
    parser.add_argument(TRACEBACK, action="store_true",
                        help="on an internal error, show the Python traceback (for support)",
                        **kwargs)


def run(main: Callable[[Sequence[str]], int], argv: Sequence[str] | None = None,
        prog: str | None = None) -> int:
    """Run a command's `main(argv)`, mapping exceptions to an exit status.

    A :class:`CommandError` or OSError is printed as ``prog: error: message``; anything else
    is printed as an internal error, with the traceback only when ``--traceback`` is given.
    ``argv`` reaches ``main`` whole: its parser declares ``--traceback``
    (:func:`add_traceback_argument`).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    show_tb = TRACEBACK in args
    prog = prog or sys.argv[0].rsplit("/", 1)[-1]
    try:
        return int(main(args))
    except CommandError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return int(exc.status)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return int(ExitStatus.INTERRUPTED)
    except BrokenPipeError:
        # `qss-dat csv big.dat | head` closes the pipe early: not an error.
        sys.stderr.close()
        return int(ExitStatus.OK)
    except OSError as exc:
        if show_tb:
            traceback.print_exc()
        where = f" {exc.filename!r}" if exc.filename else ""
        print(f"{prog}: error:{where} {exc.strerror or exc}", file=sys.stderr)
        return int(ExitStatus.ERROR)
    except Exception as exc:  # noqa: BLE001 - the last line of defence for operators
        if show_tb:
            traceback.print_exc()
        print(internal_error(prog, exc), file=sys.stderr)
        return int(ExitStatus.ERROR)


def install_stop_signals(stop: Callable[[], None], log: logging.Logger, finishing: str,
                         second: str | None = None) -> None:
    """Make SIGTERM and SIGINT ask a service to stop cleanly, and a second one stop it now.

    The first signal logs ``"SIGTERM: <finishing>"`` and calls ``stop()`` (which must be
    signal-safe: setting an event, say); the next raises KeyboardInterrupt, which
    :func:`run` turns into exit status 130, after logging ``"second SIGTERM: <second>"`` as
    a warning when ``second`` is given. Installed before the service's first log line, so
    that once it is logged a SIGTERM is a clean stop.
    """
    stopping = False

    def handler(signum, frame):
        nonlocal stopping
        name = signal.Signals(signum).name
        if stopping:
            if second is not None:
                log.warning("second %s: %s", name, second)
            raise KeyboardInterrupt
        stopping = True
        log.info("%s: %s", name, finishing)
        stop()
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def internal_error(prog: str, exc: BaseException) -> str:
    """The one line that reports a bug (an unexpected exception) to the operator."""
    return (f"{prog}: internal error: {type(exc).__name__}: {exc} "
            f"(run again with {TRACEBACK} and report it)")


def load_settings(args: argparse.Namespace) -> Settings:
    """The appliance settings for a command's parsed arguments
    (:func:`qss.settings.settings_from_args`); the caller reports ``Settings.warnings``.

    Raises:
        CommandError: the file, a variable or a flag cannot be used (exit status 2, one line).
    """
    try:
        return settings_from_args(args)
    except SettingsError as exc:
        raise CommandError(str(exc), ExitStatus.USAGE) from None


# -- argument types shared by the commands ---------------------------------------------

def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def iso_time(text: str) -> dt.datetime:
    """argparse type: an ISO 8601 time, UTC when it names no zone."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid time {text!r}: use ISO 8601, e.g. 2015-12-18T08:14:57Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc)
