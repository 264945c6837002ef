"""What ``qss-distil`` runs: which instances the settings and ``upmuconfig.ini`` ask
for, followed while running (a uPMU added, removed or renamed is picked up on the next
poll), and where the engine keeps its state.
"""
from __future__ import annotations

import logging
import os

from qss.settings import Settings
from qss.upmuconfig import UpmuConfigError, UpmuList, fingerprint

from .catalog import angle_difference_instances, builtin_instances
from .distillate import Instance
from .state import location
from .userdir import load_folder, user_instances

log = logging.getLogger("distil")


def state_path(settings: Settings) -> str:
    """``[distil] state``, else MongoDB beside a MongoDB queue (its URL), else
    ``distil.db`` beside the SQLite queue."""
    return location(settings)


def instances_for(settings: Settings, upmus: list, modules=()) -> tuple[list[Instance],
                                                                        list[str]]:
    """Every instance to run, and one line per problem (skipped, not fatal).

    Raises:
        ValueError: an unknown built-in name in ``[distil] builtins``.
    """
    out = builtin_instances(upmus, settings.distil.builtins)
    pairs, problems = angle_difference_instances(upmus, settings.distil.angle_differences)
    out += pairs
    mine, more = user_instances(modules, upmus)
    problems += more
    names = {i.name for i in out}
    for inst in mine:
        if inst.name in names:
            problems.append(f"instance {inst.name}: defined twice; the second is ignored")
            continue
        names.add(inst.name)
        out.append(inst)
    return out, problems


def folder_fingerprint(folder: str) -> tuple:
    """What changes when a ``*.py`` of the folder is added, removed or rewritten."""
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".py"))
    except OSError as exc:
        return ("error", exc.strerror)
    out = []
    for n in names:
        try:
            st = os.stat(os.path.join(folder, n))
        except OSError:
            continue
        out.append((n, st.st_mtime_ns, st.st_size))
    return tuple(out)


class Catalog:
    """Follows ``upmuconfig.ini`` and the distillates folder: :meth:`poll` returns the
    instances when either may have changed (a uPMU added, removed or renamed; a file
    dropped in, edited or taken away), else None."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.modules: list[object] = []
        self._seen = object()
        self._folder_seen = object()
        self._reported: set[str] = set()

    def _reload_folder(self) -> bool:
        folder = self.settings.distil.distillates
        if not folder:
            return False
        current = folder_fingerprint(folder)
        if current == self._folder_seen:
            return False
        first = not isinstance(self._folder_seen, tuple)
        self._folder_seen = current
        self.modules, problems = load_folder(folder)
        for line in problems:
            log.error("%s", line)
        if not first:
            log.info("distillates folder %s changed: %d file(s) loaded", folder,
                     len(self.modules))
        return True

    def poll(self) -> list[Instance] | None:
        path = self.settings.paths.upmuconfig
        try:
            current = fingerprint(path)
        except OSError as exc:
            current = ("error", str(exc))
        folder_changed = self._reload_folder()
        if current == self._seen and not folder_changed:
            return None
        self._seen = current
        try:
            upmus = list(UpmuList.load(path).upmus)
        except UpmuConfigError as exc:
            log.error("%s; keeping the instances as they were", " ".join(str(exc).split()))
            return None
        instances, problems = instances_for(self.settings, upmus, self.modules)
        for line in problems:
            if line not in self._reported:
                log.warning("%s", line)
        self._reported = set(problems)
        return instances
