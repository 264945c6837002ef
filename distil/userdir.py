"""The operator's own distillates: every ``*.py`` in the folder ``[distil] distillates``.

A file defines :class:`~distil.Distillate` subclasses and registers instances of them
in either way (both may be used):

- ``PER_UPMU = [MyDistillate]``: an instance for every uPMU of ``upmuconfig.ini``
  that has the streams named by the class's ``inputs`` (``L1MAG``, ``C1ANG``, ...),
  named ``<name>/<serial>``, its outputs under ``<uPMU collection>/distil/<name>``;
- ``def instances(upmus): return [Instance(...), ...]``: any bindings, by collection
  path (``Input("upmu/uPMU1/L1MAG")``), called again whenever the uPMU list changes.

A file that cannot be loaded, or whose ``instances`` raises, is one log line naming it
and the error; the others and the built-ins run regardless.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import sys
from collections.abc import Iterable

from qss.upmuconfig import Upmu

from .catalog import upmu_instance
from .distillate import Distillate, Instance

log = logging.getLogger("distil")


def load_folder(folder: str) -> tuple[list[object], list[str]]:
    """The modules of the folder's ``*.py`` files (sorted by name), and one problem line
    per file that failed to load."""
    modules, problems = [], []
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".py"))
    except OSError as exc:
        return [], [f"distillates folder {folder}: cannot list it: {exc.strerror}"]
    for name in names:
        path = os.path.join(folder, name)
        key = "qss_distil_user_" + hashlib.sha1(path.encode()).hexdigest()[:12]
        try:
            spec = importlib.util.spec_from_file_location(key, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[key] = module
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - an operator's file: report and go on
            sys.modules.pop(key, None)
            problems.append(f"distillate file {path}: cannot load: {type(exc).__name__}: "
                            f"{exc}")
            continue
        modules.append(module)
    return modules, problems


def user_instances(modules: Iterable[object], upmus: list[Upmu]) -> tuple[list[Instance],
                                                                          list[str]]:
    """The instances the loaded files register for these uPMUs, and problem lines."""
    out, problems = [], []
    for module in modules:
        where = f"distillate file {getattr(module, '__file__', module)}"
        for cls in getattr(module, "PER_UPMU", ()):
            if not (isinstance(cls, type) and issubclass(cls, Distillate)):
                problems.append(f"{where}: PER_UPMU holds {cls!r}, not a Distillate class")
                continue
            try:
                d = cls()
            except Exception as exc:  # noqa: BLE001
                problems.append(f"{where}: {cls.__name__}(): {type(exc).__name__}: {exc}")
                continue
            out += [i for u in upmus if (i := upmu_instance(u, d)) is not None]
        make = getattr(module, "instances", None)
        if callable(make):
            try:
                made = list(make(list(upmus)))
            except Exception as exc:  # noqa: BLE001
                problems.append(f"{where}: instances() failed: {type(exc).__name__}: {exc}")
                continue
            bad = [i for i in made if not isinstance(i, Instance)]
            if bad:
                problems.append(f"{where}: instances() returned {bad[0]!r}, not an Instance")
                continue
            out += made
    return out, problems
