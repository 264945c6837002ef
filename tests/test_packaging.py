"""The distribution as pip installs it: every console script names a real function."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SETUP_PY = Path(__file__).resolve().parents[1] / "setup.py"


def console_scripts() -> list[tuple[str, str, str]]:
    """(script, module, function) of every console script declared in setup.py, read
    from its source (not from an installed copy, which may be older)."""
    for node in ast.walk(ast.parse(SETUP_PY.read_text(encoding="utf-8"))):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            entry_points = ast.literal_eval(node.value)
            break
    else:
        raise AssertionError("setup.py declares no entry_points")
    scripts = []
    for line in entry_points["console_scripts"]:
        name, _, target = (part.strip() for part in line.partition("="))
        module, _, function = target.partition(":")
        scripts.append((name, module.strip(), function.strip()))
    return scripts


def test_setup_py_declares_the_suites_commands():
    names = [name for name, _, _ in console_scripts()]
    assert len(names) == len(set(names)) and {"qss-get", "upmu-adm", "qss-btrdb"} <= set(names)


@pytest.mark.parametrize("name, module, function", console_scripts())
def test_console_script_resolves_to_a_function(name, module, function):
    assert function, f"{name}: entry point {module!r} names no function"
    target = importlib.import_module(module)
    for attr in function.split("."):
        target = getattr(target, attr, None)
        assert target is not None, f"{name}: {module}:{function} does not exist"
    assert callable(target), f"{name}: {module}:{function} is not callable"
