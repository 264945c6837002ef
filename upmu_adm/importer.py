"""importdat's work (manual ch. 4): find ``.dat`` files, decide whose each one is and
the name to queue it under, check it, queue it, and count what happened.

How this works
--------------
A uPMU names its files ``<SERIAL>_<YYYY-MM-DD-HH-MM-SS>.dat`` (UTC, the second of the
first record) and pushes each under its device path,
``/root/upmu_data/YYYY/Month_MM/Day_DD/Hour_HH/<file>`` (:mod:`qss.naming`). The queue
identifies a file by (serial, name), so an imported file is queued under exactly the name
the device would push it under, and under the serial as ``upmuconfig.ini`` spells it (as
the receiver does): a file imported by hand and the same file pushed later are one file.

A file not named as a device names it (no serial, or no time after it) belongs to the
uPMU the operator names, and is queued under the device path of its first record's
second. Every file is checked with
:func:`qss.dat.parse` before it is queued: one with no usable record is refused with the
reason; a partly damaged one is queued with a warning (sync2q stores its good records).
A file already queued with the same bytes is recognised before it is parsed, so running
an import again is cheap. A file with different bytes replaces the queued one (the
queue's rule: the newer copy wins), except a truncated copy of it (a prefix), which
would lose records: the queued file is kept.

Nothing here prints; :mod:`upmu_adm.datafiles` renders the :class:`ImportReport`.
"""
from __future__ import annotations

import datetime as dt
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from qss import dat
from qss.naming import device_path, looks_like_psl_serial, parse_dat_filename
from qss.queue import FileGone, FileUnreadable, PutResult, Queue, QueueError, Tally
from qss.upmuconfig import Upmu, UpmuList

__all__ = ["Found", "ImportReport", "Item", "assign", "find_dat_files", "import_items",
           "is_dat", "name_problem"]


def is_dat(name: str) -> bool:
    """A ``.dat`` file name (any case: FAT drives may show ``.DAT``)."""
    return name.lower().endswith(".dat") and len(name) > 4


def device_name(filename: str) -> tuple[str, dt.datetime] | None:
    """(serial, start) from a device file name, ``.DAT`` accepted, or None."""
    return parse_dat_filename(filename[:-4] + ".dat") if is_dat(filename) else None


def name_problem(filename: str) -> str:
    """Why a ``.dat`` file's name is not a device's ``SERIAL_YYYY-MM-DD-HH-MM-SS.dat``,
    in a few words: ``no serial number``, or, for ``P3112233_notadate.dat``, ``serial
    P3112233, but 'notadate' is no time YYYY-MM-DD-HH-MM-SS``."""
    serial, sep, stamp = filename[:-4].partition("_")
    if not sep:
        return "no serial number"
    if looks_like_psl_serial(serial.upper()):
        return f"serial {serial}, but {stamp!r} is no time YYYY-MM-DD-HH-MM-SS"
    return "not SERIAL_YYYY-MM-DD-HH-MM-SS.dat"


@dataclass(frozen=True)
class Found:
    """The ``.dat`` files of a directory, and, when not recursive, how many more its
    sub-directories hold (``below``, with one such directory as an example)."""

    files: list[Path]
    below: int = 0
    below_example: Path | None = None


def find_dat_files(directory: Path, recursive: bool) -> Found:
    """The ``.dat`` files of ``directory`` (and, if ``recursive``, of its sub-directories),
    sorted by path; symbolic links to directories are not followed.

    Raises:
        OSError: the directory cannot be listed.
    """
    if recursive:
        files = []
        for root, dirs, names in os.walk(directory, onerror=_raise):
            dirs.sort()
            files += [Path(root, n) for n in sorted(names)
                      if is_dat(n) and os.path.isfile(os.path.join(root, n))]
        return Found(files)
    files, subdirs = [], []
    with os.scandir(directory) as it:
        for entry in it:
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.path)
            elif is_dat(entry.name) and entry.is_file():
                files.append(Path(entry.path))
    below, example = 0, None
    for sub in sorted(subdirs):
        for root, dirs, names in os.walk(sub):
            dirs.sort()
            n = sum(1 for name in names if is_dat(name))
            if n and example is None:
                example = Path(root)
            below += n
    return Found(sorted(files), below, example)


def _raise(exc: OSError) -> None:
    raise exc


@dataclass(frozen=True)
class Item:
    """A file to import: its uPMU, and its device path when its name gives one (None:
    the name is made from its first record)."""

    path: Path
    upmu: Upmu
    name: str | None


def assign(files: Iterable[Path], upmus: UpmuList, target: Upmu | None
           ) -> tuple[list[Item], dict[str, int], list[Path]]:
    """(items to import, files refused per unknown serial as named, files not named as
    a device names them that ``target`` is None for)."""
    items: list[Item] = []
    unknown: Counter[str] = Counter()
    unnamed: list[Path] = []
    for path in files:
        parsed = device_name(path.name)
        if parsed is None:
            if target is None:
                unnamed.append(path)
            else:
                items.append(Item(path, target, None))
            continue
        serial, start = parsed
        upmu = upmus.by_serial(serial)
        if upmu is None:
            unknown[serial] += 1
        else:
            items.append(Item(path, upmu, device_path(serial, start)))
    return items, dict(unknown), unnamed


@dataclass
class ImportReport:
    """What an import did. Sizes in bytes; reasons are one line each."""

    total: int = 0
    queued: Tally = Tally()
    present: int = 0
    replaced: list[Path] = field(default_factory=list)
    # Present as a longer queued file that starts with the same bytes (kept).
    shorter: list[Path] = field(default_factory=list)
    invalid: list[tuple[Path, str]] = field(default_factory=list)
    damaged: list[tuple[Path, str]] = field(default_factory=list)
    # Files queued per uPMU, and of them those with extended-mode records for a uPMU
    # in base mode; both by serial (upmus: the uPMU of each serial).
    per_upmu: Counter[str] = field(default_factory=Counter)
    extended_for_base: Counter[str] = field(default_factory=Counter)
    upmus: dict[str, Upmu] = field(default_factory=dict)
    seconds: float = 0.0
    interrupted: bool = False
    error: str | None = None          # the queue failed: the import stopped

    @property
    def done(self) -> int:
        """Files dealt with (queued, present, replaced or invalid)."""
        return self.queued.files + self.present + len(self.invalid)


def import_items(queue: Queue, items: list[Item], *,
                 advance: Callable[[int], None] = lambda n: None,
                 window: dat.DateWindow | None = None,
                 clock: Callable[[], float] = time.monotonic) -> ImportReport:
    """Queue ``items`` in order, with ``update_latest=False`` (an import is no sign of
    life from the device). Stops at the first queue failure (``error``) or at Ctrl+C
    (``interrupted``); files queued until then stay queued.
    """
    report = ImportReport(total=len(items))
    started = clock()
    try:
        for item in items:
            _import_one(queue, item, report, window)
            advance(1)
    except KeyboardInterrupt:
        report.interrupted = True
    except QueueError as exc:
        report.error = str(exc)
    report.seconds = clock() - started
    return report


def _import_one(queue: Queue, item: Item, report: ImportReport,
                window: dat.DateWindow | None) -> None:
    serial = item.upmu.serial
    try:
        data = item.path.read_bytes()
    except OSError as exc:
        report.invalid.append((item.path, f"cannot read it: {exc.strerror or exc}"))
        return
    if item.name is not None:
        queued = _queued_copy(queue, serial, item.name, data)
        if queued is not None:
            report.present += 1
            if queued == "longer":
                report.shorter.append(item.path)
            return
    parsed = dat.parse(data, window)
    if parsed.error is not None:
        report.invalid.append((item.path, parsed.error))
        return
    name = item.name
    if name is None:
        first = int(parsed.times[0]) // dat.NS_PER_S
        name = device_path(serial, dt.datetime.fromtimestamp(first, dt.timezone.utc))
    try:
        result = queue.put(serial, name, data, update_latest=False)
    except ValueError as exc:
        report.invalid.append((item.path, str(exc)))
        return
    if result is PutResult.DUPLICATE:
        report.present += 1
        return
    report.queued += Tally(1, len(data))
    report.per_upmu[serial] += 1
    report.upmus[serial] = item.upmu
    if result is PutResult.REPLACED:
        report.replaced.append(item.path)
    if parsed.skipped:
        report.damaged.append((item.path, dat.summarize_skipped(parsed.skipped)))
    if parsed.extended_records and not item.upmu.extended:
        report.extended_for_base[serial] += 1


def _queued_copy(queue: Queue, serial: str, name: str, data: bytes) -> str | None:
    """``same`` when these bytes are queued under the name; ``longer`` when the queued
    file starts with them (``data`` is a truncated copy, e.g. from an interrupted copy to
    a USB drive: replacing the whole file with it would lose records); else None."""
    existing = queue.get(serial, name)
    if existing is None or existing.size < len(data):
        return None
    try:
        queued = queue.read(existing)
    except (FileGone, FileUnreadable):   # unreadable: the copy imported replaces it
        return None
    if len(queued) == len(data):
        return "same" if queued == data else None
    return "longer" if memoryview(queued)[:len(data)] == data else None
