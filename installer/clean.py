"""clean_synced (manual ch. 12): free space on the data drive by deleting the queued
files whose data sync2q has already stored in BTrDB.

    clean_synced [--config PATH] [--queue URL] [--yes]

It tells how many files can be deleted (per uPMU, and how many unsynced files are
kept), asks the operator to type ``delete``, deletes them with
:meth:`qss.queue.Queue.delete_synced` and reports what went. Unsynced files are never
deleted. ``--yes`` skips the question, for scripts; without it the answer is read from
standard input, terminal or not (``echo delete | clean_synced``).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from qss.cli import CommandError, ExitStatus, add_traceback_argument, load_settings, run
from qss.queue import Queue, QueueError, SerialStats, Tally, open_queue
from qss.settings import add_settings_arguments

__all__ = ["CleanPlan", "build_parser", "clean_synced", "entry", "main", "plan"]

PROG = "clean_synced"
WORD = "delete"


@dataclass(frozen=True)
class CleanPlan:
    """What clean_synced would delete: synced files in all, and per serial the queue's
    figures (synced = files - unsynced)."""

    synced: Tally
    per_serial: dict[str, SerialStats]

    @property
    def unsynced(self) -> Tally:
        """Files kept because sync2q has not stored them yet."""
        return Tally(sum(s.unsynced_files for s in self.per_serial.values()),
                     sum(s.unsynced_bytes for s in self.per_serial.values()))


def plan(queue: Queue) -> CleanPlan:
    """Count what clean_synced would delete.

    Raises:
        QueueError: the queue cannot be read.
    """
    return CleanPlan(queue.count_synced(), queue.stats())


def _size(n: int) -> str:
    if n < 1000:
        return f"{n} byte{'' if n == 1 else 's'}"
    for unit in ("KB", "MB", "GB", "TB"):
        n /= 1000
        if n < 999.5 or unit == "TB":
            return f"{n:.3g} {unit}" if n < 100 else f"{n:.0f} {unit}"
    raise AssertionError("unreachable")


def _files(t: Tally) -> str:
    return f"{t.files:,} file{'' if t.files == 1 else 's'}" + (
        f" ({_size(t.bytes)})" if t.files else "")


def clean_synced(queue: Queue, *, out: TextIO, ask: Callable[[str], str],
                 assume_yes: bool = False) -> ExitStatus:
    """Count, ask for ``delete`` (unless ``assume_yes``), delete synced files, report.

    ``ask(prompt)`` returns the operator's answer ("" at end of input). Returns OK when
    files were deleted or there were none, ERROR when the operator did not confirm.

    Raises:
        QueueError: the queue cannot be read or the deletion failed.
    """
    p = plan(queue)
    rows = [(serial, _files(Tally(s.files - s.unsynced_files, s.bytes - s.unsynced_bytes)),
             _files(Tally(s.unsynced_files, s.unsynced_bytes)))
            for serial, s in p.per_serial.items() if s.files]
    out.write(f"Queue {queue.url}:\n")
    if rows:
        headers = ("SERIAL", "SYNCED (CAN BE DELETED)", "NOT SYNCED (KEPT)")
        widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(3)]
        for r in [headers, *rows]:
            out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")
    kept = p.unsynced
    kept_text = (f"; {_files(kept)} not synced yet are kept" if kept.files else "")
    if not p.synced.files:
        out.write(f"No synced files to delete{kept_text}.\n")
        return ExitStatus.OK
    out.write(f"{_files(p.synced)} are synced: their data is stored in BTrDB, so they "
              f"can be deleted{kept_text}.\n")
    if assume_yes:
        out.write(f"Type {WORD} to delete them: {WORD} (--yes)\n")
    else:
        answer = ask(f"Type {WORD} to delete them (anything else cancels): ")
        if answer.strip().lower() != WORD:
            out.write("Nothing deleted.\n")
            return ExitStatus.ERROR
    out.write("Deleting...\n")
    out.flush()
    gone = queue.delete_synced()
    out.write(f"Deleted {_files(gone)}.\n")
    return ExitStatus.OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Free space on the data drive: delete the queued files whose data "
                    "sync2q has already stored in BTrDB (manual ch. 12). Shows how "
                    "many files can be deleted and asks you to type delete.",
        epilog="Files not synced yet are never deleted. Exit status: 0 deleted (or "
               "nothing to delete), 1 not confirmed or failed, 2 invalid command line.\n"
               "examples:\n  clean_synced\n  clean_synced --yes          (scripts, cron)")
    p.add_argument("-y", "--yes", action="store_true",
                   help="delete without asking (for scripts)")
    add_traceback_argument(p)
    add_settings_arguments(p, "queue")
    return p


def _ask(prompt: str) -> str:
    try:
        answer = input(prompt)
    except EOFError:
        print()
        return ""
    if not sys.stdin.isatty():
        print(answer)           # piped: show the answer, so the transcript reads right
    return answer


def main(argv: Sequence[str]) -> int:
    """Entry point without exception mapping (see :func:`entry`)."""
    args = build_parser().parse_args(argv)
    settings = load_settings(args)
    for warning in settings.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    try:
        with open_queue(settings.queue.url) as queue:
            return int(clean_synced(queue, out=sys.stdout, ask=_ask, assume_yes=args.yes))
    except QueueError as exc:
        raise CommandError(str(exc)) from None


def entry() -> int:
    """Console-script entry point (``clean_synced = installer.clean:entry``)."""
    return run(main, prog=PROG)


if __name__ == "__main__":
    sys.exit(entry())
