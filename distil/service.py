"""What ``qss-distil`` runs: which instances the settings and ``upmuconfig.ini`` ask
for, followed while running (a uPMU added, removed or renamed is picked up on the next
poll), and where the engine keeps its state.
"""
from __future__ import annotations

import logging

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


class Catalog:
    """Follows ``upmuconfig.ini`` (and the distillates folder, read at start): :meth:`poll`
    returns the instances when they may have changed, else None."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.modules, problems = (load_folder(settings.distil.distillates)
                                  if settings.distil.distillates else ([], []))
        for line in problems:
            log.error("%s", line)
        self._seen = object()
        self._reported: set[str] = set()

    def poll(self) -> list[Instance] | None:
        path = self.settings.paths.upmuconfig
        try:
            current = fingerprint(path)
        except OSError as exc:
            current = ("error", str(exc))
        if current == self._seen:
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
