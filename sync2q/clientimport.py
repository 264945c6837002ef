"""Importing the official client into sync2q's process without the libraries it never
uses there, which are most of the client's import time.

sync2q starts for every ``qss-sync2q --once`` (imports, ``qss-get --data-import``), and
its start-up is CPU under one GIL: ``import sync2q.cli, btrdb`` measured 0.6-0.7 s of
CPU, of which pandas 0.21 s and polars (when installed) 0.3-0.5 s, before the first
point can be inserted. The client imports both only for its data-frame conversions:

- polars in a ``try``: marked absent (``None`` in ``sys.modules``), the client goes on
  without it;
- pandas in a ``try`` too, but ``btrdb.transformers`` then evaluates ``pd.DataFrame``
  in a return annotation at import. While the client is imported, ``pandas`` is a
  placeholder offering only that name; afterwards the client's ``pd`` becomes a module
  that imports the real pandas on first use, so its conversions still work. Should a
  client version ask the placeholder for anything else at import, the import is simply
  done again with the real pandas (Python drops the modules that failed).
"""
from __future__ import annotations

import importlib
import sys
import types

#: Optional libraries of the client that sync2q never uses, marked absent.
UNUSED = ("polars",)
#: What ``btrdb.transformers`` reads of pandas at import (an annotation).
_PANDAS_AT_IMPORT = frozenset({"DataFrame"})


class _Placeholder(types.ModuleType):
    """pandas while the client is imported: the names it reads then, nothing else."""

    def __getattr__(self, name: str):
        if name in _PANDAS_AT_IMPORT:
            return type(name, (), {})
        raise AttributeError(f"pandas is not imported yet (sync2q asked for {name!r})")


class _OnFirstUse(types.ModuleType):
    """A module not imported yet: imported on the first use of one of its names."""

    def __getattr__(self, name: str):
        return getattr(importlib.import_module(self.__name__), name)


def import_client() -> types.ModuleType:
    """Import ``btrdb`` without polars and with pandas deferred (see the module
    docstring); returns it. Raises what the import raises (client not installed)."""
    for name in UNUSED:
        if name not in sys.modules:
            sys.modules[name] = None  # "import polars" raises ImportError here
    if "btrdb" in sys.modules or "pandas" in sys.modules:
        return importlib.import_module("btrdb")
    placeholder = sys.modules["pandas"] = _Placeholder("pandas")
    try:
        client = importlib.import_module("btrdb")
    except AttributeError:
        client = None  # a client that needs more of pandas at import: see below
    finally:
        if sys.modules.get("pandas") is placeholder:
            del sys.modules["pandas"]
    if client is None:
        return importlib.import_module("btrdb")
    transformers = sys.modules.get("btrdb.transformers")
    if transformers is not None and getattr(transformers, "pd", None) is placeholder:
        transformers.pd = _OnFirstUse("pandas")
    return client
