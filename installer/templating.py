"""Configuration templates: files under ``installer/templates/`` with ``@{name}`` fields.

The templates are kept as files (package data, read with :mod:`importlib.resources`)
so each looks like the file it becomes and can be read, diffed and reviewed as such.
Fields are ``@{name}`` rather than ``{name}`` or ``$name`` because the files themselves
use ``$`` (shorewall's ``$FW``, systemd's ``$OPTIONS``) and ``%`` (supervisor's
``%(here)s``), and no configuration language here uses ``@{``.
"""
from __future__ import annotations

import re
from importlib import resources

_FIELD = re.compile(r"@\{([a-z_][a-z0-9_]*)\}")


def load(name: str) -> str:
    """The text of template ``name`` (a path under ``installer/templates``)."""
    return resources.files("installer").joinpath("templates", name).read_text("utf-8")


def fields(name: str) -> set[str]:
    """The field names template ``name`` uses."""
    return set(_FIELD.findall(load(name)))


def render(name: str, /, **values: object) -> str:
    """Template ``name`` with every ``@{field}`` replaced by ``str(values[field])``.

    Raises:
        ValueError: a field without a value, or a value no field uses (both are
            programming errors: a typo in a template or in its caller).
    """
    text = load(name)
    used = set(_FIELD.findall(text))
    missing, unused = used - values.keys(), values.keys() - used
    if missing or unused:
        raise ValueError(f"template {name}: fields without values {sorted(missing)}, "
                         f"values without fields {sorted(unused)}")
    return _FIELD.sub(lambda m: str(values[m.group(1)]), text)
