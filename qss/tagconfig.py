"""``tagconfig.json``: which path prefixes each tag opens (manual ch. 10).

The file maps a tag to path prefixes::

    {"public": ["/upmu"], "lbnl": ["/lbnl"]}

``public`` is what everyone sees, signed in or not (``["/"]``: everything, ``[]``:
nothing); a user sees ``public`` plus the prefixes of each of their tags. A prefix
matches whole path elements: ``/lbnl`` covers ``/lbnl`` and ``/lbnl/...``, never
``/lbnl2``. :func:`parse` is sans IO; :class:`TagConfigFile` reads the file when it
changes and keeps the last good contents in force while it is broken (never opening
everything), saying why in :attr:`TagConfigFile.error`.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping

__all__ = ["DEFAULT", "DEFAULT_TEXT", "PUBLIC", "TagConfigError", "TagConfigFile", "covers",
           "normalise", "parse", "prefixes_for"]

log = logging.getLogger(__name__)

PUBLIC = "public"
#: The appliance's file as shipped: the ``upmu`` domain is public.
DEFAULT: Mapping[str, tuple[str, ...]] = {PUBLIC: ("/upmu",)}
DEFAULT_TEXT = '{\n    "public": ["/upmu"]\n}\n'


_UNSEEN = object()


class TagConfigError(ValueError):
    """A ``tagconfig.json`` that cannot be used; the message says where and why."""


def normalise(prefix: str) -> str:
    """``prefix`` without repeated or trailing slashes (``/`` stays ``/``)."""
    parts = [p for p in prefix.split("/") if p]
    return "/" + "/".join(parts)


def parse(text: str) -> dict[str, tuple[str, ...]]:
    """The tags and their prefixes in ``text``.

    Raises:
        TagConfigError: not JSON, not an object of lists of absolute paths.
    """
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise TagConfigError(f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise TagConfigError('must be a JSON object such as {"public": ["/upmu"], '
                             '"lbnl": ["/lbnl"]}')
    out: dict[str, tuple[str, ...]] = {}
    for tag, prefixes in doc.items():
        if not isinstance(prefixes, list):
            raise TagConfigError(f"tag {tag!r}: expected a list of path prefixes such as "
                                 f'["/lbnl"], not {prefixes!r}')
        for p in prefixes:
            if not isinstance(p, str) or not p.startswith("/"):
                raise TagConfigError(f"tag {tag!r}: {p!r} is not a path prefix (it must "
                                     f"start with /, e.g. \"/lbnl\")")
        out[tag] = tuple(dict.fromkeys(normalise(p) for p in prefixes))
    return out


def covers(prefix: str, path: str) -> bool:
    """Whether ``prefix`` (normalised) covers ``path``, by whole elements."""
    path = normalise(path)
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def prefixes_for(config: Mapping[str, Iterable[str]], tags: Iterable[str]) -> tuple[str, ...]:
    """The prefixes a viewer with ``tags`` sees: ``public``'s and each tag's."""
    out: dict[str, None] = dict.fromkeys(config.get(PUBLIC, ()))
    for t in tags:
        out.update(dict.fromkeys(config.get(t, ())))
    return tuple(out)


class TagConfigFile:
    """The file at ``path``, read again when it changes (looked at once a ``period``).

    A file never seen means :data:`DEFAULT` (the appliance's file as shipped). A broken
    one keeps the last good contents (:data:`DEFAULT` if there never was one) and sets
    :attr:`error`, and so does one missing after a file was seen: an editor that saves
    by rename leaves a moment without the file, which must not open what it closes. It
    is logged once per change.
    """

    def __init__(self, path: str, period: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.period = period
        self._clock = clock
        self._lock = threading.Lock()
        self._looked: float | None = None
        self._stamp: object = _UNSEEN
        self._good: dict[str, tuple[str, ...]] = dict(DEFAULT)
        self.error: str | None = None
        self._seen = False      # a file (good or broken) was there once

    def invalidate(self) -> None:
        """Look at the file again on the next :meth:`get`."""
        with self._lock:
            self._looked = None

    def get(self) -> dict[str, tuple[str, ...]]:
        """The contents in force."""
        with self._lock:
            now = self._clock()
            if self._looked is not None and now - self._looked < self.period:
                return self._good
            self._looked = now
            try:
                st = os.stat(self.path)
                stamp: tuple | None = (st.st_ino, st.st_size, st.st_mtime_ns)
            except FileNotFoundError:
                stamp = None
            except OSError as exc:
                stamp = ("error", str(exc))
            if stamp == self._stamp:
                return self._good
            self._stamp = stamp
            self._load(stamp)
            return self._good

    def _load(self, stamp) -> None:
        if stamp is None and self._seen:
            self.error = (f"{self.path}: no such file; the last good version stays in force "
                          f"until it is back")
            log.error("%s", self.error)
            return
        if stamp is None:
            if self.error is not None or self._good != dict(DEFAULT):
                log.warning("%s: no such file; using the default %s", self.path,
                            DEFAULT_TEXT.replace("\n", " ").replace("    ", ""))
            self._good, self.error = dict(DEFAULT), None
            return
        self._seen = True
        try:
            with open(self.path, encoding="utf-8") as f:
                config = parse(f.read())
        except (TagConfigError, OSError, UnicodeDecodeError) as exc:
            self.error = (f"{self.path}: {exc}; the last good version stays in force until "
                          f"it is fixed")
            log.error("%s", self.error)
            return
        if self.error is not None:
            log.info("%s: fixed; in force again", self.path)
        self._good, self.error = config, None
        log.info("%s: %s", self.path, ", ".join(f"{t} -> {list(p)}" for t, p in
                                                 config.items()) or "no tags")
