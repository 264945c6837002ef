"""``qss-get --backup DEST`` and ``--restore SRC``: the manual's chapter 5, one command each.

A backup is a folder ``DEST/qss-backup-<YYYYmmddTHHMMSS>/`` holding::

    srv/...          [paths] srv: the queue (and sync2q's quarantine registry)
    queue/<name>     the SQLite queue (and its data segments, <name>.data/), only when it
                     lives outside [paths] srv
    data/...         [paths] data: the BTrDB data directory
    config/upmuconfig.ini, config/backupconfig.ini, config/qss.ini
    plotter/permalinks.jsonl, plotter/accounts.jsonl
                     the plotter's permalinks and accounts (Argon2id hashes) when they
                     are in MongoDB (:mod:`installer.backup_plotter`; plotter.db, the
                     SQLite store of both, is a file of srv/ or queue/ beside the queue)
    MANIFEST.sha256  "<sha256>  <path>" per file (check by hand: sha256sum -c MANIFEST.sha256)

The folder is made with mode 0700 (its files hold the appliance's data and the plotter's
password hashes: only root, who runs qss-get, reads them; a FAT drive has no modes). It
is written as ``qss-backup-<stamp>.partial`` and renamed only once every file has
been read back and matched the manifest (and each SQLite copy passed ``quick_check``),
so a folder without ``.partial`` is a complete, verified backup.

Consistency while the services run. Both the BTrDB store and the SQLite queue are SQLite
files in WAL mode; each is copied with SQLite's online backup API in one step, that is
one read transaction: a snapshot of a committed state, taken while the receiver keeps
accepting and sync2q keeps inserting (the WAL and ``-shm`` files are not copied: the
snapshot holds what they held). The two snapshots are taken at different times, so the
order matters: the queue first, then the store. The store then holds at least the data
of every file the queue copy calls synced (sync2q marks a file synced only after its
insert is acknowledged), and a restore loses nothing: files received after the queue
snapshot are simply not in the backup, exactly as with services stopped at that moment.
(The other order could restore files marked synced whose data the store copy lacks.)
So with the SQLite queue the services keep running and no uPMU has to hold its files
back. A MongoDB queue's files (``[paths] srv`` is mongod's dbpath) can only be copied
with mongod stopped, so then the services are stopped for the backup, as the manual does.

Restore verifies the whole backup against its manifest before touching anything
(a changed, missing or extra file is refused, naming it), asks, stops the services,
empties the data and queue directories (keeping their mounts, modes and owners),
copies, verifies the copies, puts ownership and modes right as systemd-tmpfiles would
(``qss:qss``, directories 2770, files 0660; live only), and starts the services.
``upmuconfig.ini`` and ``backupconfig.ini`` are restored (a differing current one is
kept as ``<file>.qss-bak-<stamp>``); ``qss.ini`` belongs to the operator and is written
only when missing.
"""
from __future__ import annotations

import contextlib
import grp
import hashlib
import os
import pwd
import shutil
import sqlite3
import threading
import time
from pathlib import Path

from tqdm import tqdm

from qss.fsync import fsync_dir
from qss.queue.sqlite_segments import SEG_SUFFIX, data_dir
from qss.settings import load_settings

from . import backup_plotter
from .appliance import appliance_settings
from .environment import Environment
from .files import Cancelled, DeployError
from .hooks import DataTools
from .services import (BTRDB_LOCK, SYNC2Q_LOCK, DataPaths, check_stoppable, confirm, data_paths,
                       human, plural, stopped)

MANIFEST = "MANIFEST.sha256"
PREFIX = "qss-backup-"
_SKIP_SUFFIXES = ("-wal", "-shm", "-journal", ".qss-tmp")
_SKIP_NAMES = {BTRDB_LOCK, SYNC2Q_LOCK}
_CHUNK = 1 << 20
_MARGIN = 64 << 20          # free space kept on DEST beyond the estimate
_SQLITE_MAGIC = b"SQLite format 3\0"
SERVICE_USER = SERVICE_GROUP = "qss"
PLOTTER_DB = "plotter.db"     # the plotter's SQLite store (permalinks, accounts)


# -- what is backed up ------------------------------------------------------------------

def _tree(base: Path, prefix: str) -> list[tuple[Path, str]]:
    out = []
    if not base.is_dir():
        return out
    for dirpath, dirnames, names in os.walk(base):
        dirnames.sort()
        for name in sorted(names):
            if name in _SKIP_NAMES or name.endswith(_SKIP_SUFFIXES):
                continue
            path = Path(dirpath, name)
            if path.is_file() and not path.is_symlink():
                out.append((path, f"{prefix}/{path.relative_to(base).as_posix()}"))
    return out


def _sources(paths: DataPaths) -> list[tuple[Path, str]]:
    """(source, path in the backup), in the order they are copied: queue, then store.
    The queue's data files are not among them: they come and go while the services run,
    and :func:`_copy_all` lists them after the queue's snapshot."""
    segments = Path(data_dir(str(paths.queue_file))) if paths.queue_file else None
    items = [(p, rel) for p, rel in _tree(paths.srv, "srv") if p.parent != segments]
    if paths.queue_file and paths.srv not in paths.queue_file.parents \
            and paths.queue_file.is_file():
        items.append((paths.queue_file, f"queue/{paths.queue_file.name}"))
        beside = paths.queue_file.with_name(PLOTTER_DB)    # the plotter's, with the queue
        if beside.is_file() and beside != paths.queue_file:
            items.append((beside, f"queue/{PLOTTER_DB}"))
    items += _tree(paths.data, "data")
    for path in (paths.upmuconfig, paths.backupconfig, paths.qss_ini):
        if path.is_file():
            items.append((path, f"config/{path.name}"))
    return items


def _is_sqlite(path: Path) -> bool:
    with contextlib.suppress(OSError), open(path, "rb") as f:
        return f.read(16) == _SQLITE_MAGIC
    return False


def _size_with_wal(path: Path) -> int:
    """The file's size, with its WAL's and (a SQLite queue) its data files'."""
    total = path.stat().st_size
    for suffix in ("-wal",):
        with contextlib.suppress(OSError):
            total += os.stat(f"{path}{suffix}").st_size
    with contextlib.suppress(OSError):
        for entry in os.scandir(data_dir(str(path))):
            with contextlib.suppress(OSError):   # gone meanwhile
                total += entry.stat().st_size
    return total


# -- copying ----------------------------------------------------------------------------

def _bar(env: Environment, total: int, what: str) -> tqdm:
    interactive = False
    with contextlib.suppress(AttributeError, ValueError):
        interactive = env.stderr.isatty()
    return tqdm(total=total, desc=what, unit="B", unit_scale=True, unit_divisor=1000,
                file=env.stderr, disable=not interactive, leave=False)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dirs(top: Path) -> None:
    for dirpath, _, _ in os.walk(top):
        fsync_dir(dirpath)


def _copy_plain(src: Path, dst: Path, bar: tqdm) -> None:
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        while chunk := fin.read(_CHUNK):
            fout.write(chunk)
            bar.update(len(chunk))
        fout.flush()
        os.fsync(fout.fileno())


def _copy_sqlite(src: Path, dst: Path, bar: tqdm) -> None:
    """A consistent snapshot of a live SQLite database (one read transaction)."""
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=60)
    target = sqlite3.connect(dst)
    done = threading.Event()
    last = 0

    def watch() -> None:   # the one-step backup has no progress of its own: watch the file
        nonlocal last
        while not done.wait(0.2):
            with contextlib.suppress(OSError):
                size = dst.stat().st_size
                bar.update(max(0, size - last))
                last = max(last, size)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        source.backup(target, pages=-1)
        target.execute("PRAGMA journal_mode = DELETE").fetchall()   # a file on its own
    finally:
        done.set()
        thread.join()
        target.close()
        source.close()
    size = dst.stat().st_size
    bar.update(max(0, size - last))
    _fsync_file(dst)


def _sha256(path: Path, bar: tqdm | None = None) -> str:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with contextlib.suppress(OSError):   # read the disk, not the page cache
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        with os.fdopen(fd, "rb", closefd=False) as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
                if bar is not None:
                    bar.update(len(chunk))
    finally:
        os.close(fd)
    return h.hexdigest()


def _quick_check(path: Path) -> str | None:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        result = db.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.Error as exc:
        return str(exc)
    finally:
        db.close()
    return None if result == "ok" else result


# -- backup -----------------------------------------------------------------------------

def backup(env: Environment, tools: DataTools, dest: str) -> Path:
    """``--backup DEST``: write and verify ``DEST/qss-backup-<stamp>/``; return it.

    Raises:
        DeployError: DEST missing or short of space (nothing copied), a service that
            cannot be stopped (MongoDB), or a failed copy or verification (the partial
            folder is removed).
    """
    settings = appliance_settings(env)
    paths = data_paths(env, settings)
    dest_dir = Path(os.path.abspath(dest))
    if not dest_dir.is_dir():
        raise DeployError(f"--backup {dest!r}: no such directory (mount the backup drive "
                          f"first, e.g. sudo mount /dev/sdc1 /mnt)")
    for what, d in (("BTrDB data directory", paths.data), ("queue directory", paths.srv)):
        if not d.is_dir():
            raise DeployError(f"{what} {d} does not exist (is the data drive mounted?); "
                              f"nothing was copied")
    # MongoDB's permalinks and accounts are read through their stores before anything is
    # stopped (a MongoDB on this machine is one of the services).
    plotter = backup_plotter.export(env, tools, paths)
    items = _sources(paths)
    needed = sum(_size_with_wal(p) for p, _ in items)
    free = tools.disk_free(dest_dir)
    if free < needed + _MARGIN:
        raise DeployError(f"{dest_dir} has {human(free)} free; the backup needs about "
                          f"{human(needed + _MARGIN)}; nothing was copied")
    stamp = env.clock().strftime("%Y%m%dT%H%M%S")
    final = dest_dir / f"{PREFIX}{stamp}"
    partial = final.with_name(final.name + ".partial")
    if final.exists() or partial.exists():
        raise DeployError(f"{final} already exists; nothing was copied")
    mongo = paths.queue_file is None
    guard = stopped(env, tools, paths) if mongo else contextlib.nullcontext()
    started = time.monotonic()
    try:
        with guard:
            if not mongo:
                env.say("copying   while the services run (consistent SQLite snapshots: "
                        "the queue first, then the BTrDB store)")
            partial.mkdir(mode=0o700)       # password hashes inside: root's only
            sums = _copy_all(env, items, partial)
            sums.update(backup_plotter.write(env, partial, plotter, _write_new))
        _write_manifest(partial, sums)
        _verify(env, partial, sums, "verifying")
        _fsync_dirs(partial)
        partial.rename(final)
        _fsync_dirs(dest_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    total = sum(final.joinpath(rel).stat().st_size for rel in sums)
    seconds = max(time.monotonic() - started, 1e-6)
    env.say(f"backed up {plural(len(sums), 'file')} ({human(total)}) into {final}, "
            f"verified against {MANIFEST} ({total / seconds / 1e6:.0f} MB/s)")
    return final


def _copy_all(env: Environment, items: list[tuple[Path, str]], into: Path) -> dict[str, str]:
    sums: dict[str, str] = {}
    segment_dirs = {Path(data_dir(str(src))) for src, _ in items}
    segment_dirs = {d for d in segment_dirs if d.is_dir()}

    def copy(src: Path, rel: str, missing_ok: bool = False) -> None:
        dst = into / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            if _is_sqlite(src) and src.suffix != ".ini":
                _copy_sqlite(src, dst, bar)
            else:
                _copy_plain(src, dst, bar)
        except FileNotFoundError as exc:
            if missing_ok and exc.filename == str(src):
                return   # _check_segments refuses the copy if a row needed it
            raise DeployError(f"cannot copy {src}: {exc.strerror}; the partial backup was "
                              f"removed") from None
        except (OSError, sqlite3.Error) as exc:
            raise DeployError(f"cannot copy {src}: {getattr(exc, 'strerror', None) or exc}"
                              f"; the partial backup was removed") from None
        sums[rel] = _sha256(dst)

    with _bar(env, sum(_size_with_wal(p) for p, _ in items), "backing up") as bar:
        for src, rel in items:
            copy(src, rel)
            segments = Path(data_dir(str(src)))
            if segments in segment_dirs:
                # The queue's data segments, listed only now that its snapshot is taken:
                # a segment is made before any row points into it and only appended to.
                names = sorted(n for n in os.listdir(segments) if n.endswith(SEG_SUFFIX))
                for name in names:   # one deleted meanwhile was no row's (or is refused)
                    copy(segments / name, f"{rel}.data/{name}", missing_ok=True)
                _check_segments(into / rel, into / f"{rel}.data")
    return sums


def _check_segments(queue_copy: Path, segments: Path) -> None:
    """Refuse a queue copy whose rows point past its copied segments (files deleted while
    the backup ran, their segments deleted or cut after the snapshot)."""
    con = sqlite3.connect(f"file:{queue_copy}?mode=ro", uri=True)
    try:
        ends = con.execute("SELECT segment, max(seg_offset + size) FROM received_files "
                           "WHERE segment IS NOT NULL GROUP BY segment").fetchall()
    except sqlite3.Error:
        ends = []   # the old layout: no segments
    finally:
        con.close()
    for name, end in ends:
        path = segments / name
        if not path.is_file() or path.stat().st_size < end:
            raise DeployError(f"the queue changed while it was copied (files deleted: "
                              f"{path.name} is missing or short); the partial backup was "
                              f"removed: run the backup again")


def _write_new(path: Path, data: bytes, mode: int = 0o666) -> str:
    """Write ``data`` to the new file ``path`` (``mode``, less the umask); its SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "xb", opener=lambda p, flags: os.open(p, flags, mode)) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return _sha256(path)


def _write_manifest(folder: Path, sums: dict[str, str]) -> None:
    text = "".join(f"{h}  {rel}\n" for rel, h in sorted(sums.items()))
    with open(folder / MANIFEST, "x", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _verify(env: Environment, folder: Path, sums: dict[str, str], what: str) -> None:
    total = sum((folder / rel).stat().st_size for rel in sums if (folder / rel).is_file())
    with _bar(env, total, what) as bar:
        for rel, expected in sorted(sums.items()):
            path = folder / rel
            if not path.is_file():
                raise DeployError(f"{path}: missing (listed in {MANIFEST})")
            if _sha256(path, bar) != expected:
                raise DeployError(f"{path}: its SHA-256 differs from {MANIFEST}: the file "
                                  f"was changed or damaged")
            if _is_sqlite(path) and path.suffix != ".ini":
                problem = _quick_check(path)
                if problem:
                    raise DeployError(f"{path}: damaged SQLite database ({problem})")


# -- restore ----------------------------------------------------------------------------

def read_manifest(folder: Path) -> dict[str, str]:
    """The backup's manifest, checked against the folder's files (nothing read twice).

    Raises:
        DeployError: no manifest, a malformed line, or a file missing or not listed.
    """
    try:
        text = (folder / MANIFEST).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DeployError(f"{folder}: no {MANIFEST}: not a qss-get backup (or an "
                          f"unfinished one)") from None
    except OSError as exc:
        raise DeployError(f"{folder / MANIFEST}: cannot read: {exc.strerror}") from None
    sums: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        digest, sep, rel = line.partition("  ")
        if (not sep or len(digest) != 64 or rel.startswith("/") or ".." in rel.split("/")
                or rel.split("/")[0] not in ("srv", "data", "queue", "config", "plotter")):
            raise DeployError(f"{folder / MANIFEST} line {n}: not a manifest line: "
                              f"{line[:80]!r}")
        sums[rel] = digest
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*")
               if not p.is_dir()} - {MANIFEST}
    for rel in sorted(present - set(sums)):
        raise DeployError(f"{folder / rel}: not listed in {MANIFEST}: the backup was "
                          f"changed; refusing to restore it")
    for rel in sorted(set(sums) - present):
        raise DeployError(f"{folder / rel}: missing (listed in {MANIFEST}); refusing to "
                          f"restore the backup")
    return sums


def restore(env: Environment, tools: DataTools, src: str, assume_yes: bool = False) -> None:
    """``--restore SRC``: verify, ask, stop, restore, verify, fix ownership, start.

    Raises:
        Cancelled: not confirmed; DeployError: a damaged backup (nothing touched), a
            service still running (nothing touched) or a failed copy (the services are
            then left stopped, and the message says so).
    """
    folder = Path(os.path.abspath(src))
    if not folder.is_dir():
        raise DeployError(f"--restore {src!r}: no such directory")
    sums = read_manifest(folder)
    try:
        _verify(env, folder, sums, "checking")
    except DeployError as exc:
        raise DeployError(f"{exc}; refusing to restore it, nothing was changed") from None
    paths = data_paths(env, appliance_settings(env))
    if "config/qss.ini" in sums and not paths.qss_ini.exists():
        paths = data_paths(env, load_settings(str(folder / "config/qss.ini"), environ={}))
    for what, d in (("BTrDB data directory", paths.data), ("queue directory", paths.srv)):
        if not d.is_dir():
            raise DeployError(f"{what} {d} does not exist (is the data drive mounted?); "
                              f"nothing was changed")
    check_stoppable(env, tools, paths)      # a refusal comes before the question
    total = sum((folder / rel).stat().st_size for rel in sums)
    env.say(f"{folder} is intact ({plural(len(sums), 'file')}, {human(total)}). Restoring "
            f"replaces everything in {paths.data} and {paths.srv}"
            + ("" if paths.queue_file is None or paths.srv in paths.queue_file.parents
               else f" and {paths.queue_file}") + ".")
    if not confirm(env, "Replace the database with this backup? [y/N] ", assume_yes):
        raise Cancelled("cancelled: nothing was changed (answer y or Y to go ahead; "
                        "scripts use --yes)")
    stamp = env.clock().strftime("%Y%m%dT%H%M%S")
    plotter = {e: (folder / e).read_bytes() for e in backup_plotter.ENTRIES if e in sums}
    in_sqlite = backup_plotter.store_file(paths) is not None
    with stopped(env, tools, paths, restart_on_error=False):
        try:
            _restore_files(env, tools, folder, sums, paths, stamp,
                           plotter if in_sqlite else {})
        except (OSError, DeployError) as exc:
            why = exc if isinstance(exc, DeployError) else (
                f"{exc.filename or ''}: {exc.strerror or exc}")
            raise DeployError(f"restore failed: {why}; the data directories are "
                              f"incomplete: run the restore again") from None
    if plotter and not in_sqlite:     # MongoDB runs again
        backup_plotter.restore(env, tools, paths, plotter)
    env.say(f"restored  {plural(len(sums), 'file')} ({human(total)}) from {folder}")


def _empty(d: Path) -> None:
    for entry in list(d.iterdir()):
        if entry.name in _SKIP_NAMES:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _restore_files(env: Environment, tools: DataTools, folder: Path, sums: dict[str, str],
                   paths: DataPaths, stamp: str, plotter: dict[str, bytes] | None = None
                   ) -> None:
    _empty(paths.data)
    _empty(paths.srv)
    if paths.queue_file is not None:
        for suffix in ("", "-wal", "-shm", "-journal"):   # a stale WAL would corrupt it
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{paths.queue_file}{suffix}")
        shutil.rmtree(data_dir(str(paths.queue_file)), ignore_errors=True)
    config = {"upmuconfig.ini": paths.upmuconfig, "backupconfig.ini": paths.backupconfig,
              "qss.ini": paths.qss_ini}
    placed: dict[Path, str] = {}
    with _bar(env, sum((folder / r).stat().st_size for r in sums), "restoring") as bar:
        for rel, digest in sorted(sums.items()):
            top, _, rest = rel.partition("/")
            if top == "data":
                dst = paths.data / rest
            elif top == "srv":
                dst = paths.srv / rest
            elif top == "queue" and paths.queue_file is not None and "/" in rest:
                # The queue's data segments, beside the queue file whatever its name.
                dst = Path(data_dir(str(paths.queue_file))) / rest.rpartition("/")[2]
            elif top == "queue" and paths.queue_file is not None:
                dst = (paths.queue_file.with_name(PLOTTER_DB)
                       if rest == PLOTTER_DB and paths.queue_file.name != PLOTTER_DB
                       else paths.queue_file)
            elif top == "plotter":
                continue            # permalinks, accounts: through their stores, below
            elif top == "config" and rest in config:
                dst = config[rest]
                if not _place_config(env, folder / rel, dst, rest, stamp):
                    continue
            else:
                env.warn(f"{rel}: nowhere to restore it with these settings; skipped")
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                dst.unlink()
            _copy_plain(folder / rel, dst, bar)
            placed[dst] = digest
    for dst, digest in placed.items():
        if _sha256(dst) != digest:
            raise DeployError(f"{dst}: the restored copy differs from the backup")
    if plotter:
        backup_plotter.restore(env, tools, paths, plotter)
    for d in (paths.data, paths.srv, *([paths.queue_file.parent] if paths.queue_file else [])):
        _fsync_dirs(d)
        _fix_modes(d, tools.chown)
    env.say(f"modes     {paths.data} and {paths.srv}: directories 2770, files 0660"
            + (f", owner {SERVICE_USER}:{SERVICE_GROUP}" if tools.chown else ""))


def _place_config(env: Environment, src: Path, dst: Path, name: str, stamp: str) -> bool:
    """Whether to copy a config file: qss.ini only when missing; the uPMU lists always,
    a differing current one kept as ``<file>.qss-bak-<stamp>``."""
    if not dst.exists():
        return True
    if dst.read_bytes() == src.read_bytes():
        return False
    if name == "qss.ini":
        env.warn(f"{dst} differs from the backup's and is kept (it is the operator's); the "
                 f"backup's is {src}")
        return False
    saved = dst.with_name(f"{dst.name}.qss-bak-{stamp}")
    shutil.copy2(dst, saved)
    env.say(f"kept      the current {dst} as {saved}")
    return True


def _fix_modes(top: Path, chown: bool) -> None:
    """As systemd-tmpfiles' ``Z ... ~2770 qss qss``: dirs 2770, files 0660 (0770 if
    executable), owned by the service user when ``chown``."""
    uid = gid = -1
    if chown:
        with contextlib.suppress(KeyError):
            uid = pwd.getpwnam(SERVICE_USER).pw_uid
            gid = grp.getgrnam(SERVICE_GROUP).gr_gid
    for dirpath, dirnames, names in os.walk(top):
        os.chmod(dirpath, 0o2770)
        if uid != -1:
            os.chown(dirpath, uid, gid)
        for name in names:
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                continue
            mode = os.stat(p).st_mode
            os.chmod(p, 0o770 if mode & 0o111 else 0o660)
            if uid != -1:
                os.chown(p, uid, gid)
