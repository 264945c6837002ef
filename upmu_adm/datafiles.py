"""The commands on queued files (manual ch. 4): importdat, exportdat, delbackup.

Unlike the list commands these act at once: the queue is shared with the receiver and
sync2q, and there is nothing to save. Each command opens the queue through the state's
:class:`~upmu_adm.services.Services`, shows progress through it, and returns text.
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from qss.naming import parse_dat_filename, relative_path
from qss.queue import FileGone, Queue, QueueError, QueuedFile, Tally
from qss.upmuconfig import Upmu, UpmuListError, UpmuNotFoundError

from .commands import REGISTRY
from .importer import (Found, ImportReport, Item, assign, find_dat_files, import_items,
                       name_problem)
from .periods import Period, parse_period
from .registry import DIR, QUEUED, UPMU, YEAR, Choice, Confirm, Refusal, Reply, fail, ok
from .state import ShellState
from .views import number, tally

__all__ = ["cmd_delbackup", "cmd_exportdat", "cmd_importdat", "resolve_serial"]

_SHOWN = 10          # reasons listed per category before "... and N more"
_RECURSIVE = ("--recursive", "-r")


def _listing(entries: Sequence[str], indent: str = "    ") -> list[str]:
    lines = [indent + e for e in entries[:_SHOWN]]
    if len(entries) > _SHOWN:
        lines.append(f"{indent}... and {len(entries) - _SHOWN:,} more")
    return lines


def _rel(path: Path, directory: Path) -> str:
    try:
        return str(path.relative_to(directory))
    except ValueError:
        return str(path)


# -- importdat ---------------------------------------------------------------------------

@REGISTRY.command(
    "importdat", usage="importdat DIR [IP|SERIAL|ALIAS] [--recursive]", min_args=0,
    complete=(DIR, (UPMU, "--recursive"), "--recursive"), group="data",
    help="""
queue .dat files from a folder
Queues the .dat files of DIR for sync2q, which stores them in BTrDB by itself.
A uPMU names its files SERIAL_YYYY-MM-DD-HH-MM-SS.dat: the serial in the name says
whose a file is, and that uPMU must be in the list (add it and save first). Files
not named so (no serial, or no time after it) go to the uPMU named after DIR; with
several uPMUs in the list and none named, importdat asks. Each file is queued under
the name the uPMU itself would push it under, so a file imported here and the same
file pushed later by the device are one file. Files already queued are skipped; a
copy that differs replaces the queued one, unless it is a truncated copy of it.
Every file is checked first: one with no usable record is not queued (the reason is
shown); a partly damaged one is queued with a warning, and sync2q stores its good
records.
Without --recursive only DIR itself is read (as the manual says: put all files in
one folder); importdat says when its sub-directories hold more .dat files. With
--recursive it reads the whole tree, e.g. a uPMU's upmu_data folder as copied.
Examples:
  importdat /media/external/upmu_data_import
  importdat /media/external/upmu_data --recursive
  importdat ~/old_files uPMU1""")
def cmd_importdat(state: ShellState, args: Sequence[str]) -> Reply:
    cmd = REGISTRY.get("importdat")
    if not args:
        # The manual: "type importdat with no arguments for usage instructions".
        return ok(f"usage: {cmd.usage}\n{cmd.help}")
    words = [a for a in args if a not in _RECURSIVE]
    recursive = len(words) < len(args)
    bad = [w for w in words if w.startswith("-")]
    if bad:
        return cmd.usage_error(f"unknown option {bad[0]!r} (the option is --recursive)")
    if not words:
        return cmd.usage_error("missing DIR")
    if len(words) > 2:
        return cmd.usage_error(f"unexpected {words[2]!r}")
    target = None
    if len(words) == 2:
        target = _upmu(state, words[1])
    directory = Path(state.services.path(words[0]))
    if not directory.is_dir():
        why = "not a directory" if directory.exists() else "no such directory"
        return fail(f"importdat: {directory}: {why}; nothing imported")
    try:
        found = find_dat_files(directory, recursive)
    except OSError as exc:
        return fail(f"importdat: cannot read {exc.filename or directory}: "
                    f"{exc.strerror or exc}; nothing imported")
    if not found.files:
        text = f"importdat: no .dat files in {directory}"
        if found.below:
            more = number(found.below, ".dat file")
            text += (f"; its sub-directories hold {more} (e.g. in {found.below_example}): "
                     f"add --recursive to import them")
        return fail(text)
    try:
        queue = state.services.queue()
    except QueueError as exc:
        return fail(f"importdat: {exc}; nothing imported")
    items, unknown, unnamed = assign(found.files, state.upmus, target)
    if not unnamed:
        return _import(state, queue, directory, found, items, unknown, [], target, "")
    upmus = list(state.upmus)
    if len(upmus) == 1:
        items, unknown, _ = assign(found.files, state.upmus, upmus[0])
        note = (f"note: the {number(len(unnamed), 'file')} {_not_named(unnamed)} went to "
                f"{upmus[0].describe()}, the only uPMU in the list")
        return _import(state, queue, directory, found, items, unknown, [], upmus[0], note)
    if not upmus:
        return _import(state, queue, directory, found, items, unknown, unnamed, None, "")

    def pick(answer: str) -> Reply:
        try:
            chosen = _upmu(state, answer)
        except Refusal as exc:
            raise Refusal(f"{exc.text}; nothing imported") from None
        again, unknown2, _ = assign(found.files, state.upmus, chosen)
        return _import(state, queue, directory, found, again, unknown2, [], chosen, "")

    one_ = len(unnamed) == 1
    which = (f"{number(len(unnamed), 'file')} in {directory} {'is' if one_ else 'are'} "
             f"{_not_named(unnamed)}.\nWhich uPMU {'is it' if one_ else 'are they'} from "
             f"(IP, serial or alias)?")
    return ok(choice=Choice(
        which, tuple((u.alias or u.ip, u.describe()) for u in upmus), pick,
        lambda: ok("Nothing imported"),
        hint=f"name their uPMU: importdat {words[0]} IP|SERIAL|ALIAS"))


def _not_named(files: list[Path]) -> str:
    """``not named as a uPMU names its files ('a.dat': no serial number)``, with the
    first file as the example."""
    example = f"{'' if len(files) == 1 else 'e.g. '}{files[0].name!r}"
    return (f"not named as a uPMU names its files ({example}: "
            f"{name_problem(files[0].name)})")


def _upmu(state: ShellState, key: str) -> Upmu:
    """The uPMU importdat is told the files are from.

    Raises:
        Refusal: no such uPMU, or the key is ambiguous.
    """
    try:
        return state.upmus.find(key)
    except UpmuNotFoundError as exc:
        raise Refusal(f"importdat: {exc}; type list to see the uPMUs") from None
    except UpmuListError as exc:
        raise Refusal(f"importdat: {exc}") from None


def _import(state: ShellState, queue: Queue, directory: Path, found: Found,
            items: list[Item], unknown: dict[str, int], unnamed: list, target: Upmu | None,
            note: str) -> Reply:
    if items:
        with state.services.progress(len(items), "Importing") as advance:
            report = import_items(queue, items, advance=advance)
    else:
        report = ImportReport()
    lines = _import_summary(report, directory, found, unknown, unnamed)
    if note:
        lines.append(note)
    if target is not None and not any(i.upmu.ip == target.ip for i in items):
        lines.append(f"note: {target.describe()} was not used: every file name carries "
                     f"its serial number")
    lines += [f"note: {report.upmus[s].describe()} is not saved yet: sync2q stores its "
              f"files once you save the list"
              for s in report.per_upmu if state.saved.by_serial(s) is None]
    lines += [f"note: {number(n, 'file')} of {report.upmus[s].describe()} hold "
              f"extended-mode records but it is in base mode: sync2q stores only their "
              f"base streams; setext {report.upmus[s].alias or s} true (and save) to store "
              f"all" for s, n in report.extended_for_base.items()]
    if found.below:
        lines.append(f"note: {number(found.below, 'more .dat file')} are in "
                     f"sub-directories of {directory} (e.g. {found.below_example}); "
                     f"importdat {directory} --recursive imports them too")
    if report.queued.files:
        lines.append("sync2q stores the queued files in BTrDB by itself; status shows "
                     "the backlog.")
    good = not (report.invalid or unknown or unnamed or report.error or report.interrupted)
    return Reply("\n".join(lines), good)


def _import_summary(r: ImportReport, directory: Path, found: Found,
                    unknown: dict[str, int], unnamed: list) -> list[str]:
    rate = f", {r.done / r.seconds:,.0f} files/s" if r.seconds > 0 and r.done else ""
    lines = [f"Imported from {directory}: {number(len(found.files), '.dat file')} "
             f"in {r.seconds:.1f} s{rate}"]
    if r.interrupted or r.error:
        why = "interrupted" if r.interrupted else f"the queue failed: {r.error}"
        lines.append(f"STOPPED after {r.done:,} of {r.total:,} files ({why}); the files "
                     f"queued so far stay queued: run the same importdat again to finish "
                     f"(files already queued are skipped quickly)")
    lines.append(f"  queued           {tally(r.queued.files, r.queued.bytes)}")
    present = number(r.present, "file")
    if r.shorter:
        present += (f", of which {len(r.shorter):,} truncated copies of longer queued "
                    f"files (kept the queued files)")
    lines.append(f"  already present  {present}")
    if r.replaced:
        lines.append(f"  replaced         {number(len(r.replaced), 'file')}: the queued "
                     f"copy had different contents; the imported one replaces it and "
                     f"will be synced again")
        lines += _listing([_rel(p, directory) for p in r.replaced])
    if r.invalid:
        lines.append(f"  invalid          {number(len(r.invalid), 'file')}, not queued:")
        lines += _listing([f"{_rel(p, directory)}: {why}" for p, why in r.invalid])
    for serial, n in unknown.items():
        lines.append(f"  refused          {number(n, 'file')} of serial number {serial!r}, "
                     f"which is not in the uPMU list; add it with: add IPADDR {serial} "
                     f"ALIAS [ext], then save, and import again")
    if unnamed:
        lines.append(f"  refused          {number(len(unnamed), 'file')} "
                     f"{_not_named(unnamed)}: the uPMU list is empty; add their uPMU first")
    if r.damaged:
        lines.append(f"warning: {number(len(r.damaged), 'damaged file')} queued anyway; "
                     f"sync2q stores their good records:")
        lines += _listing([f"{_rel(p, directory)}: {why}" for p, why in r.damaged])
    return lines


# -- the serial of exportdat and delbackup -----------------------------------------------

def resolve_serial(state: ShellState, name: str, key: str) -> tuple[Queue, str, str]:
    """(queue, serial as queued, description) for a uPMU named by IP, serial or alias, or
    for a serial that has queued files but is not in the list.

    Raises:
        Refusal: the queue fails, or nothing has that name (the text says which).
    """
    try:
        queue = state.services.queue()
        queued = queue.serials()
    except QueueError as exc:
        raise Refusal(f"{name}: {exc}") from None
    by_fold = {s.casefold(): s for s in queued}
    try:
        upmu = state.upmus.find(key)
    except UpmuNotFoundError:
        serial = by_fold.get(key.strip().casefold())
        if serial is None:
            raise Refusal(f"{name}: no uPMU and no queued files have IP address, serial "
                          f"number or alias {key!r}; type list to see the uPMUs") from None
        return queue, serial, f"serial {serial} (not in the uPMU list)"
    except UpmuListError as exc:
        raise Refusal(f"{name}: {exc}") from None
    return queue, by_fold.get(upmu.serial.casefold(), upmu.serial), upmu.describe()


def _bounds(period: Period) -> dict:
    return {"start": period.start, "end": period.end}


def _in(period: Period) -> str:
    return "of all time" if period.everything else f"for {period.label} (UTC)"


# -- exportdat ---------------------------------------------------------------------------

@REGISTRY.command(
    "exportdat", usage="exportdat DIR SERIAL YEAR [MONTH] [DAY] [HOUR]", min_args=3,
    max_args=6, complete=(DIR, QUEUED, YEAR), group="data",
    help="""
write queued files out as .dat
Writes the raw files of a uPMU queued for a period (UTC, by the time in their names)
to DIR, byte for byte as the uPMU sent them. SERIAL may also be the uPMU's IP address
or alias, or the serial of queued files of a uPMU no longer in the list; YEAR may be
all. The queue keeps files until clean_synced or delbackup deletes them.
Files go into DIR/upmu_data/YYYY/Month_MM/Day_DD/Hour_HH/ (DIR itself if it is named
upmu_data), the layout of the uPMU's own upmu_data folder: one folder per hour keeps
60 files a folder where a flat folder would hold 43,200 for a month, more than a FAT32
USB drive allows in one folder; the same tools read both; and importdat DIR
--recursive reads them back. A file already there with the same contents is left
alone; a different file of the same name is never overwritten (it is reported).
Examples:
  exportdat /media/external P3001234 2015 12
  exportdat ~/export uPMU1 2015 12 18 08""")
def cmd_exportdat(state: ShellState, args: Sequence[str]) -> Reply:
    try:
        period = parse_period(args[2:])
    except ValueError as exc:
        return REGISTRY.get("exportdat").usage_error(str(exc))
    queue, serial, who = resolve_serial(state, "exportdat", args[1])
    directory = Path(state.services.path(args[0]))
    try:
        files = list(queue.files(serial, **_bounds(period)))
    except QueueError as exc:
        return fail(f"exportdat: {exc}")
    if not files:
        return ok(f"No queued files of {who} {_in(period)}; nothing exported")
    root = directory if directory.name == "upmu_data" else directory / "upmu_data"
    try:
        if not directory.is_dir():
            directory.mkdir()       # the parent must exist: a typo makes no tree
    except OSError as exc:
        return fail(f"exportdat: cannot create {directory}: {exc.strerror or exc}; "
                    f"nothing exported")
    written, same, clashes, odd, gone = Tally(), 0, [], [], 0
    error = None
    started = time.monotonic()
    with state.services.progress(len(files), "Exporting") as advance:
        for file in files:
            try:
                outcome = _export_one(queue, file, root)
            except FileGone:
                gone += 1
            except QueueError as exc:
                error = str(exc)
                break
            except OSError as exc:
                error = f"cannot write {exc.filename or root}: {exc.strerror or exc}"
                break
            else:
                if outcome is None:
                    odd.append(file.name)
                elif outcome[0] == "written":
                    written += Tally(1, file.size)
                elif outcome[0] == "same":
                    same += 1
                else:
                    clashes.append(outcome[1])
            advance(1)
    seconds = time.monotonic() - started
    lines = [f"Exported the queued files of {who} {_in(period)} to {root}/ "
             f"(YYYY/Month_MM/Day_DD/Hour_HH/) in {seconds:.1f} s:",
             f"  written          {tally(written.files, written.bytes)}",
             f"  already there    {number(same, 'file')} with the same contents"]
    if clashes:
        lines.append(f"  not written      {number(len(clashes), 'file')}: a different file "
                     f"already has the name (move it away and export again):")
        lines += _listing([str(p) for p in clashes])
    if odd:
        lines.append(f"  not written      {number(len(odd), 'file')} whose queued names "
                     f"are not uPMU file names (no time in them):")
        lines += _listing([repr(n) for n in odd])
    if gone:
        lines.append(f"  gone             {number(gone, 'file')} deleted from the queue "
                     f"while exporting")
    if error:
        lines.append(f"STOPPED: {error}")
    if written.files:
        lines.append(f"importdat {root} --recursive queues them again.")
    return Reply("\n".join(lines), not (clashes or odd or error))


def _export_one(queue: Queue, file: QueuedFile, root: Path) -> tuple[str, Path] | None:
    """Write one queued file under ``root``: ("written" | "same" | "clash", path), or None
    when its name is not a uPMU file name. The queued name is untrusted text, so the
    path is rebuilt from the serial and time it carries, never taken from it."""
    parsed = parse_dat_filename(file.name.rsplit("/", 1)[-1])
    if parsed is None:
        return None
    target = root / relative_path(*parsed)
    if target.exists():
        return (_same(target, file, queue), target)
    data = queue.read(file)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        try:
            os.link(tmp, target)     # fails rather than overwrite a file made meanwhile
        except FileExistsError:
            return (_same(target, file, queue, data), target)
        except OSError:
            # FAT file systems have no hard links: check, then rename.
            if target.exists():
                return (_same(target, file, queue, data), target)
            os.rename(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return ("written", target)


def _same(target: Path, file: QueuedFile, queue: Queue, data: bytes | None = None) -> str:
    if target.stat().st_size != file.size:
        return "clash"
    data = queue.read(file) if data is None else data
    return "same" if target.read_bytes() == data else "clash"


# -- delbackup ---------------------------------------------------------------------------

@REGISTRY.command(
    "delbackup", usage="delbackup SERIAL YEAR [MONTH] [DAY] [HOUR]", min_args=2,
    max_args=5, complete=(QUEUED, YEAR), group="data",
    help="""
delete queued files of a period
Deletes the raw files of a uPMU queued for a period (UTC, by the time in their names),
synced or not, after showing how many there are and asking you to type yes. Files not
synced yet are called out: their data is not in BTrDB, so deleting them loses it.
Data already stored in BTrDB is kept. SERIAL may also be the uPMU's IP address or
alias, or the serial of queued files of a uPMU no longer in the list; YEAR may be all
(every file of that serial). To free space, clean_synced deletes only synced files.
Examples:
  delbackup P3001234 2015 12
  delbackup uPMU1 2016
  delbackup P3009999 all""")
def cmd_delbackup(state: ShellState, args: Sequence[str]) -> Reply:
    try:
        period = parse_period(args[1:])
    except ValueError as exc:
        return REGISTRY.get("delbackup").usage_error(str(exc))
    queue, serial, who = resolve_serial(state, "delbackup", args[0])
    try:
        base = queue.ytagbase
        files = list(queue.files(serial, **_bounds(period)))
    except QueueError as exc:
        return fail(f"delbackup: {exc}")
    if not files:
        return ok(f"No queued files of {who} {_in(period)}; nothing to delete")
    synced = Tally(sum(1 for f in files if f.synced(base)),
                   sum(f.size for f in files if f.synced(base)))
    total = Tally(len(files), sum(f.size for f in files))
    unsynced = Tally(total.files - synced.files, total.bytes - synced.bytes)
    details = [f"{who} has {tally(total.files, total.bytes)} queued {_in(period)}:",
               f"  {tally(synced.files, synced.bytes)} synced (their data is in BTrDB and "
               f"is kept)",
               f"  {tally(unsynced.files, unsynced.bytes)} not synced yet"]
    if unsynced.files:
        details.append(f"WARNING: {tally(unsynced.files, unsynced.bytes)} NOT SYNCED YET: "
                       f"their data is not in BTrDB and will be LOST.")

    def delete() -> Reply:
        try:
            gone = queue.delete(serial, **_bounds(period))
        except QueueError as exc:
            return fail(f"delbackup: {exc}")
        return ok(f"Deleted {tally(gone.files, gone.bytes)} of {who} queued "
                  f"{_in(period)}; its data stored in BTrDB is kept")

    return ok(confirm=Confirm(
        "\n".join(details + [f"Delete these {number(total.files, 'file')}?"]), delete,
        lambda: ok("Nothing deleted"), word="yes"))
