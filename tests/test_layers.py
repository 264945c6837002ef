"""The house's floors, kept by CI (docs/architecture.md, "Layout").

Every module's imports are read with :mod:`ast`: at the top, inside functions and under
``if TYPE_CHECKING:`` alike, since a lazy import ties two files together as much as an
eager one. Three rules:

1. ``qss/``, the shared core, imports nothing from any other package of the project;
2. each package imports only the packages on the floors below it (``FLOORS``), so the
   services and tools stand side by side on the core and none leans on another;
3. no two files import each other, directly or through others.

A failure names the file, the line and the import.
"""
from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Each top-level package of the project and the packages it may import. The core is the
#: ground; the services and tools stand on it side by side; the installer (qss-get) and
#: the operator's shell manage the box; the demo lays out a whole appliance and starts
#: every service; the benchmarks measure everything.
FLOORS: dict[str, frozenset[str]] = {
    "qss": frozenset(),
    "tsdb": frozenset({"qss"}),
    "receiver": frozenset({"qss"}),
    "sync2q": frozenset({"qss"}),
    "simulator": frozenset({"qss"}),
    "dattool": frozenset({"qss"}),
    "installer": frozenset({"qss"}),
    "upmu_adm": frozenset({"qss"}),
    "plotter": frozenset({"qss"}),
    "distil": frozenset({"qss"}),
    "plotter_accounts": frozenset({"qss"}),
    "demokit": frozenset({"qss", "installer"}),
    "bench": frozenset({"qss", "tsdb", "receiver", "sync2q", "simulator", "dattool",
                        "installer", "upmu_adm", "plotter", "distil", "demokit",
                        "plotter_accounts"}),
}


@dataclass(frozen=True)
class Import:
    """One import statement's target inside the project."""

    source: str        # the importing module, dotted
    target: str        # the imported module, dotted (a package means its __init__)
    path: Path         # the importing file
    line: int
    text: str          # the statement as written
    several: bool = False   # the statement imports more than one module

    def where(self) -> str:
        """``file:line: statement``, and the module meant when one line imports several."""
        text = f"{self.path.relative_to(ROOT)}:{self.line}: {self.text}"
        return f"{text}  [{self.target}]" if self.several else text


def module_files(packages=FLOORS) -> dict[str, Path]:
    """Every module of the project's packages, by dotted name (a package by its name)."""
    found = {}
    for package in packages:
        base = ROOT / package
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute dotted name of ``from <level dots><name> import``."""
    if not level:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([name] if name else []))


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    """The project modules ``module`` imports, one per imported module.

    ``from a.b import c`` targets ``a.b.c`` when that is a module of its own, else ``a.b``.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    lines = path.read_text(encoding="utf-8").splitlines()
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node.level, node.module)
            targets = []
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.append(sub if sub in modules else base)
        else:
            continue
        targets = [t for t in dict.fromkeys(targets) if t.split(".")[0] in FLOORS and t != module]
        for target in targets:
            yield Import(module, target, path, node.lineno, lines[node.lineno - 1].strip(),
                         len(targets) > 1)


def import_graph() -> list[Import]:
    """Every import between the project's modules."""
    modules = module_files()
    return [imp for module, path in modules.items()
            for imp in imports_of(module, path, modules)]


def upward_imports(edges: list[Import]) -> list[Import]:
    """Imports of a package its floor does not allow."""
    return [imp for imp in edges
            if (top := imp.target.split(".")[0]) != imp.source.split(".")[0]
            and top not in FLOORS[imp.source.split(".")[0]]]


def import_loops(edges: list[Import]) -> list[list[Import]]:
    """One loop of imports per strongly connected group of files (Tarjan's algorithm)."""
    graph: dict[str, list[Import]] = {}
    for imp in edges:
        graph.setdefault(imp.source, []).append(imp)
        graph.setdefault(imp.target, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for imp in graph[node]:
            if imp.target not in index:
                visit(imp.target)
                low[node] = min(low[node], low[imp.target])
            elif imp.target in on_stack:
                low[node] = min(low[node], index[imp.target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_loop_through(sorted(group)[0], group, graph) for group in groups]


def _loop_through(start: str, group: set[str], graph: dict[str, list[Import]]) -> list[Import]:
    """A shortest import path from ``start`` back to itself inside ``group``."""
    paths: dict[str, list[Import]] = {start: []}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for imp in graph[node]:
            if imp.target == start:
                return paths[node] + [imp]
            if imp.target in group and imp.target not in paths:
                paths[imp.target] = paths[node] + [imp]
                queue.append(imp.target)
    raise AssertionError(f"no loop through {start}")   # a group always has one


# -- the rules ------------------------------------------------------------------------

def test_every_package_of_the_project_has_a_floor():
    tops = {p.name for p in ROOT.iterdir()
            if p.is_dir() and (p / "__init__.py").exists() and p.name != "tests"}
    tops.add("bench")
    assert tops == set(FLOORS), "add the new package to FLOORS (and to docs/architecture.md)"


def test_the_core_imports_nothing_above_it():
    wrong = [imp.where() for imp in import_graph()
             if imp.source.split(".")[0] == "qss" and imp.target.split(".")[0] != "qss"]
    if wrong:
        raise AssertionError("qss/ imports from above it:\n" + "\n".join(wrong))


def test_each_package_imports_only_the_floors_below_it():
    wrong = [f"{imp.where()}  ({imp.source.split('.')[0]} may import only "
             f"{', '.join(sorted(FLOORS[imp.source.split('.')[0]])) or 'itself'})"
             for imp in upward_imports(import_graph())]
    if wrong:
        raise AssertionError("imports across floors:\n" + "\n".join(wrong))


def test_no_two_files_import_each_other():
    loops = import_loops(import_graph())
    text = "\n\n".join("\n".join(imp.where() for imp in loop) for loop in loops)
    if loops:
        raise AssertionError(f"files importing each other:\n{text}")


# -- the checker itself, on a made-up house -------------------------------------------

@pytest.fixture
def house(tmp_path, monkeypatch):
    """A tiny project whose files the test writes: ``house(path, text)``."""
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setitem(FLOORS, "qss", frozenset())

    def write(path: str, text: str = "") -> None:
        file = tmp_path / path
        file.parent.mkdir(parents=True, exist_ok=True)
        for parent in file.relative_to(tmp_path).parents:
            init = tmp_path / parent / "__init__.py"
            if parent != Path(".") and not init.exists():
                init.write_text("")
        file.write_text(text)
    return write


def test_an_upward_import_is_named_by_file_and_line(house):
    house("qss/dat.py", "import os\n\ndef f():\n    from receiver import server\n")
    house("receiver/server.py", "from qss import dat\n")
    with pytest.raises(AssertionError, match=r"qss/dat.py:4: from receiver import server"):
        test_the_core_imports_nothing_above_it()
    with pytest.raises(AssertionError, match=r"qss may import only itself"):
        test_each_package_imports_only_the_floors_below_it()


def test_a_side_import_between_services_is_refused(house):
    house("sync2q/worker.py", "import receiver.server\n")
    house("receiver/server.py", "")
    with pytest.raises(AssertionError, match=r"sync2q/worker.py:1: import receiver.server"):
        test_each_package_imports_only_the_floors_below_it()


def test_a_loop_through_a_lazy_or_type_checking_import_is_found(house):
    house("installer/a.py", "from installer import b\n")
    house("installer/b.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                            "    from .c import X\n")
    house("installer/c.py", "def f():\n    from . import a\n")
    with pytest.raises(AssertionError) as failure:
        test_no_two_files_import_each_other()
    for line in ("installer/a.py:1", "installer/b.py:3: from .c import X",
                 "installer/c.py:2: from . import a"):
        assert line in str(failure.value)


def test_a_house_without_loops_or_upward_imports_passes(house):
    house("qss/dat.py", "from . import streams\nfrom .streams import NAMES\n")
    house("qss/streams.py", "NAMES = ()\n")
    house("receiver/server.py", "from qss.dat import parse\nimport qss.streams\n")
    test_the_core_imports_nothing_above_it()
    test_each_package_imports_only_the_floors_below_it()
    test_no_two_files_import_each_other()
