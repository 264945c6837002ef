"""``qss-get --indexes`` and ``--newdb`` (manual ch. 6 and 16), as the operator sees them.

``--indexes`` asks the queue (SQLite or MongoDB) to create the indexes it lacks and says
which it created. A SQLite queue creates its indexes whenever it is opened, so the
indexes present before opening are read first (read-only) and the report names what
the opening or :meth:`~qss.queue.Queue.ensure_indexes` added.

``--newdb`` deletes the BTrDB data directory and the queue and starts them empty, after
the manual's question. ``upmuconfig.ini`` and ``backupconfig.ini`` are not touched:
sync2q creates every uPMU's streams and their metadata from ``upmuconfig.ini`` by itself
when it first finds a stream missing, and ``backupconfig.ini`` records which list upmu-adm
last saved, not what BTrDB holds, so nothing has to be saved again.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import stat
from pathlib import Path

from qss.queue import QueueError
from qss.queue.sqlite_segments import data_dir

from .appliance import appliance_settings
from .environment import Environment
from .files import Cancelled, DeployError
from .hooks import DataTools
from .services import (BTRDB_LOCK, DataPaths, check_stoppable, confirm, data_paths, human,
                       plural, stopped, tree_size)

QUARANTINE = "sync2q-quarantine.db"   # sync2q.quarantine.FILENAME: entries of the old queue


def _sqlite_indexes(path: Path) -> set[str] | None:
    """Names of the indexes in an existing SQLite file (None: no such file / unreadable)."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        return {r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    except sqlite3.Error:
        return None
    finally:
        db.close()


def ensure_indexes(env: Environment, tools: DataTools) -> list[str]:
    """Create the queue's missing indexes; print and return what was created.

    Raises:
        DeployError: no queue there, or the queue cannot be opened or indexed.
    """
    paths = data_paths(env, appliance_settings(env))
    before = None
    if paths.queue_file is not None:
        if not paths.queue_file.exists():
            raise DeployError(f"no queue at {paths.queue_file} ([queue] url); nothing to "
                              f"index (is the data drive mounted?)")
        before = _sqlite_indexes(paths.queue_file)
    try:
        with tools.open_queue(paths.queue_url) as queue:
            created = queue.ensure_indexes()
            url = queue.url
    except QueueError as exc:
        raise DeployError(str(exc)) from None
    if before is not None:
        after = _sqlite_indexes(paths.queue_file) or set()
        created = created or sorted(after - before)
    for item in created:
        env.say(f"created   index {item}")
    if not created:
        env.say(f"all indexes of the queue {url} exist; nothing to do")
    return created


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _recreate_dir(path: Path) -> None:
    """Empty ``path`` in place: the directory itself (mode, owner, setgid, and a mount
    point, if it is one) stays, and so does the server's lock file, which
    :func:`~installer.services.stopped` holds meanwhile."""
    for entry in list(path.iterdir()):
        if entry.name != BTRDB_LOCK:
            _remove(entry)


def newdb(env: Environment, tools: DataTools, assume_yes: bool = False) -> None:
    """Delete the BTrDB data and the queue and start both anew (manual ch. 6).

    Raises:
        Cancelled: the operator did not answer y; nothing was changed.
        DeployError: a service still runs, a directory is missing, or deleting failed.
    """
    paths = data_paths(env, appliance_settings(env))
    for what, d in (("BTrDB data directory", paths.data), ("queue directory", paths.queue_dir)):
        if not d.is_dir():
            raise DeployError(f"{what} {d} does not exist (is the data drive mounted?); "
                              f"nothing was changed")
    data_files, data_bytes = tree_size(paths.data)
    queue_files = _queue_files(paths)
    q_bytes = sum(tree_size(p)[1] if p.is_dir() else p.stat().st_size for p in queue_files)
    queue_text = (f"the queue {paths.queue_file} ({human(q_bytes)})" if paths.queue_file
                  else f"every file in the queue {paths.queue_url}")
    check_stoppable(env, tools, paths)      # a refusal comes before the question
    env.say(f"This deletes all BTrDB data in {paths.data} ({plural(data_files, 'file')}, "
            f"{human(data_bytes)}) and {queue_text}, and starts both empty. "
            f"{paths.upmuconfig.name} and {paths.backupconfig.name} are kept.")
    if not confirm(env, "Delete the database and create a new one? [y/N] ", assume_yes):
        raise Cancelled("cancelled: nothing was deleted (answer y or Y to go ahead; "
                        "scripts use --yes)")
    with stopped(env, tools, paths):
        _recreate_dir(paths.data)
        env.say(f"deleted   {paths.data}/* ({plural(data_files, 'file')}, "
                f"{human(data_bytes)}); the server creates a new database at its start")
        if paths.queue_file is not None:
            # Listed again: stopping the services closed the queue, and SQLite removed
            # its -wal and -shm.
            queue_files = _queue_files(paths)
            for p in queue_files:
                _remove(p)
            try:
                with tools.open_queue(paths.queue_url):   # a new, empty queue, 0666-umask
                    pass
            except QueueError as exc:
                raise DeployError(str(exc)) from None
            _own_like_dir(paths.queue_file)
            env.say(f"deleted   {', '.join(p.name for p in queue_files) or 'nothing'} in "
                    f"{paths.queue_dir} ({human(q_bytes)}); created an empty queue "
                    f"{paths.queue_file}")
        else:
            gone = _empty_queue(tools, paths)
            env.say(f"deleted   {plural(gone[0], 'file')} ({human(gone[1])}) from the "
                    f"queue {paths.queue_url}")
    env.say(f"new database ready; {paths.upmuconfig.name} was kept: sync2q creates the "
            f"uPMUs' streams again as their files arrive")


def _queue_files(paths: DataPaths) -> list[Path]:
    if paths.queue_file is None:
        return []
    q = paths.queue_file
    names = [q, q.with_name(q.name + "-wal"), q.with_name(q.name + "-shm"),
             q.with_name(q.name + "-journal"), Path(data_dir(str(q))),
             paths.queue_dir / QUARANTINE]
    return [p for p in names if p.exists()]


def _own_like_dir(path: Path) -> None:
    """Give a new file its directory's group (setgid dirs do) and owner, when root."""
    with contextlib.suppress(OSError):
        st = path.parent.stat()
        if os.geteuid() == 0:
            os.chown(path, st.st_uid, st.st_gid)
        if st.st_mode & stat.S_ISGID:
            os.chmod(path, 0o660)


def _empty_queue(tools: DataTools, paths: DataPaths) -> tuple[int, int]:
    files = size = 0
    try:
        with tools.open_queue(paths.queue_url) as queue:
            for serial in queue.serials():
                gone = queue.delete(serial)
                files += gone.files
                size += gone.bytes
    except QueueError as exc:
        raise DeployError(str(exc)) from None
    return files, size
