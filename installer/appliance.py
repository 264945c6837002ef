"""Which appliance qss-get's data actions work on: its settings file and where its paths are.

The data actions (``--status``, ``--backup``, ``--restore``, ``--newdb``,
``--clean-synced``, ``--indexes``) find the appliance's settings as every other command
of the suite does, with one flag of their own because ``--config`` is qss-get's
components action (the original manual's ``--config COMPONENT``):

- ``--settings PATH`` (``Environment.settings_file``), else
- on this machine's own ``/``: ``$QSS_CONFIG``, else ``/etc/qss/qss.ini`` (missing:
  the defaults), with ``BTRDB_ENDPOINTS`` and ``MONGO_ADDR`` as everywhere;
- under ``--root DIR``: ``DIR/etc/qss/qss.ini`` (missing: the defaults); the machine's
  environment is not that root's and is ignored.

A path of the settings is under the root prefix, unless it already is inside the root:
the demo's ``qss.ini`` names ``/home/me/repo/demo/ssd/data``, which ``--root
/home/me/repo/demo`` must not make ``/home/me/repo/demo/home/me/repo/demo/ssd/data``.
"""
from __future__ import annotations

import os
from pathlib import Path

from qss.settings import Settings, SettingsError, load_settings

from .components import QSS_INI
from .environment import Environment
from .files import DeployError, target_path

__all__ = ["appliance_settings", "named_settings", "place", "settings_path"]


def place(root: Path, path: str) -> Path:
    """Where the appliance's ``path`` is on this machine: under ``root``, unless it
    already names a place inside ``root`` (or ``root`` is ``/``)."""
    if root == Path("/"):
        return Path(path)
    given = Path(os.path.abspath(path))
    for base in {root, Path(os.path.realpath(root))}:
        if given == base or base in given.parents:
            return given
    return target_path(root, path)


def named_settings(env: Environment) -> tuple[str, str] | None:
    """The settings file named for the data actions and what named it (``--settings``,
    ``$QSS_CONFIG``), or None: the root's own ``etc/qss/qss.ini``."""
    if env.settings_file is not None:
        return str(env.settings_file), "--settings"
    if env.live and env.environ.get("QSS_CONFIG"):
        return env.environ["QSS_CONFIG"], "$QSS_CONFIG"
    return None


def settings_path(env: Environment) -> Path:
    """The appliance's settings file (it may not exist: then the defaults apply)."""
    named = named_settings(env)
    if named is not None:
        return Path(os.path.abspath(named[0]))
    return target_path(env.root, QSS_INI)


def appliance_settings(env: Environment) -> Settings:
    """The settings of the appliance the data actions work on (see the module's text);
    the file's warnings are shown as qss-get's warnings.

    Raises:
        DeployError: a named file is missing, or the file cannot be read or holds a bad
            value (or, on ``/``, an environment variable does).
    """
    named = named_settings(env)
    path = settings_path(env)
    if named is not None and not path.is_file():
        raise DeployError(f"{named[0]}: no such settings file (named by {named[1]})")
    if named is None and not path.exists():
        return Settings()
    try:
        settings = load_settings(str(path), environ=env.environ if env.live else {})
    except SettingsError as exc:
        fix = "fix it and run again" if named is not None or exc.path is None else (
            "fix it (or move it away to start from the defaults) and run again")
        raise DeployError(f"{exc}; {fix}") from None
    for warning in settings.warnings:
        env.warn(warning)
    return settings
