"""Every benchmark in bench/ still starts: its module imports, and so does every name it
imports anywhere, also inside functions (they broke once on helpers a review had moved).
No benchmark is run here; ``./dev bench`` does that."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"

#: Run in one child process over the scripts given as arguments (sys.path as when a
#: script is run: its folder first): import each script as a module, which does not run
#: its main(), then resolve each ``import x`` and ``from x import y`` in its source, at any
#: depth, except under a ``try`` that expects an ImportError (an optional module).
#: Prints one line per failure.
CHECK = r'''
import ast, importlib, sys
from pathlib import Path

GUARDS = {"ImportError", "ModuleNotFoundError"}

def guarded(node):
    return any(isinstance(h.type, ast.Name) and h.type.id in GUARDS
               or isinstance(h.type, ast.Tuple) and GUARDS & {getattr(e, "id", "") for e in h.type.elts}
               for h in node.handlers)

def imports(tree):
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Try) and guarded(node):
            todo.extend(node.handlers + node.orelse + node.finalbody)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        todo.extend(ast.iter_child_nodes(node))

def check(node):
    if isinstance(node, ast.Import):
        for alias in node.names:
            importlib.import_module(alias.name)
        return
    module = importlib.import_module(node.module)
    for alias in node.names:
        if alias.name != "*" and not hasattr(module, alias.name):
            importlib.import_module(f"{node.module}.{alias.name}")

for name in sys.argv[1:]:
    path = Path(name)
    sys.path.insert(0, str(path.parent))
    try:
        importlib.import_module(path.stem)
    except BaseException as exc:
        print(f"{path.name}: importing it: {type(exc).__name__}: {exc}")
        continue
    for node in imports(ast.parse(path.read_text(), str(path))):
        try:
            check(node)
        except BaseException as exc:
            print(f"{path.name}:{node.lineno}: {ast.unparse(node)}: {type(exc).__name__}: {exc}")
'''


def scripts() -> list[Path]:
    return sorted(BENCH.glob("*.py"))


def test_there_are_benchmarks_to_check():
    names = {p.name for p in scripts()}
    assert {"bench_sync2q.py", "bench_distil.py", "bench_plotter.py", "_data.py"} <= names


def test_every_benchmark_and_everything_it_imports_imports():
    done = subprocess.run([sys.executable, "-c", CHECK, *map(str, scripts())], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "", f"stale imports in bench/:\n{done.stdout}"


def test_the_check_finds_a_stale_import(tmp_path):
    script = tmp_path / "bench_stale.py"
    script.write_text("import os\n\n\ndef main():\n    from qss.cli import no_such_helper\n"
                      "    try:\n        from qss import no_such_module\n"
                      "    except ImportError:\n        pass\n")
    done = subprocess.run([sys.executable, "-c", CHECK, str(script)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines() == [
        "bench_stale.py:5: from qss.cli import no_such_helper: ModuleNotFoundError: "
        "No module named 'qss.cli.no_such_helper'"], done.stderr
