"""The uPMU list, ``upmuconfig.ini``, and the last applied copy, ``backupconfig.ini``.

The file is what the original tools wrote (architecture §5), and stays readable by them::

    [192.168.1.24]
    %serial_number = P3112233
    %alias = uPMU1
    %extended = false
        [[L1MAG]]
        uuid = 3af77b3f-3c04-4c34-9b1d-20481e1fb89f
        Path = /upmu/uPMU1/L1MAG
            [[[Properties]]]
            UnitofMeasure = V
        ... one subsection per stream ...
        [[Metadata]]
            [[[Instrument]]]
            SerialNumber = P3112233

Rules and decisions:

- One section per uPMU, named by its IPv4 address in dotted-quad form. Other sections
  (the original tools' ``?``-prefixed pending uPMUs, anything else) are kept verbatim
  and listed in ``ignored_sections``; keys starting with ``%`` are tool settings, not
  metadata; unknown keys (such as ``%mustupdate``) and comments are kept.
- A subsection named after a known stream (:mod:`qss.streams`) is a stream.
- Mode: we write ``%extended = true|false``. Without it (older files), a uPMU is
  extended iff it has subsections for all six extended-only streams.
- A stream's UUID never changes once written. Switching to base keeps the six extended
  streams' subsections (and UUIDs) and only sets ``%extended = false``; switching back
  reuses them. UUIDs are minted only for streams that have none.
- Serial numbers are unique ignoring case (devices send upper case, operators type
  either). Aliases are unique ignoring case too, and stored as typed: they become BTrDB
  collection names, which are case-sensitive, and ``uPMU1`` next to ``upmu1`` in a
  plotter tree is a trap; ignoring case also makes ``find`` by alias forgiving.
- Problems inside the file never stop the others from working: a section without
  ``%serial_number``, or repeating an earlier section's serial, is left out of
  ``upmus`` (it is in ``excluded``); a stream with a missing or bad UUID, or a UUID an
  earlier stream already has, is left out of its uPMU's ``streams``; each is one line in
  ``problems`` for the caller to log. Only a file configobj cannot parse is an error.
- BTrDB names: a stream's ``Path`` is ``/<collection>/<name>``; the collection has no
  leading slash (``upmu/uPMU1``), as the official client's ``conn.streams("a/b/name")``
  splits it. Tags are ``name`` (last element of Path) and ``unit``; annotations are the
  uPMU's ``Metadata`` and the stream's ``Properties`` flattened with ``/``-joined keys
  (``Metadata/Instrument/SerialNumber``, ``Properties/UnitofMeasure``).
- Rewriting keeps every untouched part of the file byte for byte (layout, comments,
  unknown keys and sections); changed and new sections are written in the layout above.
- Writers lock the file itself with ``flock`` (the original sync service does too) and
  replace it atomically; see :mod:`qss.inifile`. Readers poll :func:`fingerprint` and
  :meth:`UpmuList.load` again when it changes.
"""
from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from configobj import Section

from qss.inifile import (Fingerprint, IniDocument, IniError, atomic_write, decode,
                         fingerprint, locked, unquote)
from qss.naming import looks_like_psl_serial
from qss.streams import EXTENDED_ONLY_STREAMS, EXTENDED_STREAMS, UNITS, streams_for

__all__ = [
    "Fingerprint", "StreamInfo", "Upmu", "UpmuConfigError", "UpmuConflictError",
    "UpmuDiff", "UpmuList", "UpmuListError", "UpmuNotFoundError", "diff", "fingerprint",
    "load_backup", "looks_like_psl_serial", "write_backup",
]

MAX_SERIAL_LEN = 32   # the push protocol's limit (architecture §3): a longer one never arrives
MAX_ALIAS_LEN = 64    # keeps /upmu/<alias>/<STREAM> well inside BTrDB's 255-byte names
# Path separators, section brackets, and what the original tools' list-mode configobj
# would read as comment, quote or list syntax.
_FORBIDDEN = set("/[]#\"',\\")
# Serials name the device's files, <SERIAL>_<time>.dat (qss.naming parses them back).
_SERIAL = re.compile(r"[A-Za-z0-9]{1,%d}\Z" % MAX_SERIAL_LEN)
_BOOLS = {"true": True, "yes": True, "on": True, "1": True,
          "false": False, "no": False, "off": False, "0": False}
_STREAM_ORDER = {name: i for i, name in enumerate(EXTENDED_STREAMS)}
_UNSET = object()


class UpmuConfigError(IniError):
    """The uPMU list file cannot be read, parsed or written (message names file, line)."""


class UpmuConflictError(UpmuConfigError):
    """The file changed between loading and saving (see :meth:`UpmuList.save`)."""


class UpmuListError(ValueError):
    """An operation on the list was refused: bad value, duplicate, ambiguous key."""


class UpmuNotFoundError(UpmuListError, LookupError):
    """No uPMU matches the given IP address, serial number or alias."""


@dataclass(frozen=True)
class StreamInfo:
    """One stream subsection: its UUID, ``Path``, unit and flattened ``Properties``."""

    name: str
    uuid: uuid.UUID
    path: str
    unit: str
    properties: dict[str, str] = field(hash=False)

    @property
    def collection(self) -> str:
        """``Path`` without the leading slash and the last element: ``upmu/uPMU1``."""
        return self.path.strip("/").rsplit("/", 1)[0]

    @property
    def leaf(self) -> str:
        """The last element of ``Path``: the BTrDB ``name`` tag."""
        return self.path.strip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Upmu:
    """A snapshot of one uPMU section. Treat the dicts as read-only."""

    ip: str
    serial: str
    alias: str
    extended: bool
    # Every usable stream subsection, in stream order.
    streams: dict[str, StreamInfo] = field(hash=False)
    # [[Metadata]] flattened: {"Instrument/SerialNumber": ...}.
    metadata: dict[str, str] = field(hash=False)
    # The section as plain dicts, for diff().
    raw: dict = field(repr=False, hash=False)

    @property
    def active_streams(self) -> tuple[str, ...]:
        """The 13 (base) or 19 (extended) stream names the uPMU's files carry."""
        return streams_for(self.extended)

    def describe(self) -> str:
        """``uPMU1 (192.168.1.24, P3112233)``, for messages."""
        return f"{self.alias or '(no alias)'} ({self.ip}, {self.serial or 'no serial'})"

    def collection(self, stream: str) -> str:
        """The BTrDB collection of a stream (``upmu/uPMU1``). Raises KeyError if absent."""
        return self.streams[stream].collection

    def tags(self, stream: str) -> dict[str, str]:
        """The BTrDB tags ``name`` and ``unit`` of a stream. Raises KeyError if absent."""
        info = self.streams[stream]
        return {"name": info.leaf, "unit": info.unit}

    def annotations(self, stream: str) -> dict[str, str]:
        """The uPMU's Metadata and the stream's Properties, flattened with ``/`` keys.

        Raises KeyError when the stream is not in :attr:`streams`.
        """
        info = self.streams[stream]
        out = {f"Metadata/{k}": v for k, v in self.metadata.items()}
        out.update((f"Properties/{k}", v) for k, v in info.properties.items())
        return out


@dataclass(frozen=True)
class UpmuDiff:
    """uPMUs added, removed and changed (old, new) between two lists, keyed by IP."""

    added: tuple[Upmu, ...]
    removed: tuple[Upmu, ...]
    changed: tuple[tuple[Upmu, Upmu], ...]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)


@dataclass(frozen=True)
class _View:
    upmus: tuple[Upmu, ...]
    excluded: tuple[Upmu, ...]
    problems: tuple[str, ...]
    ignored_sections: tuple[str, ...]
    by_ip: dict[str, Upmu]
    by_serial: dict[str, Upmu]


def _ipv4(name: str) -> str | None:
    try:
        addr = ipaddress.IPv4Address(name)
    except ValueError:
        return None
    return name if str(addr) == name else None


class UpmuList:
    """The uPMU list of one file: queries, edits, and rendering that keeps the rest."""

    def __init__(self, doc: IniDocument, path: str | None = None,
                 fingerprint: Fingerprint | None = None):
        self._doc = doc
        self.path = path
        #: The fingerprint of the file this list was read from (None: no file).
        self.fingerprint = fingerprint
        self._view: _View | None = None

    # -- reading and writing -----------------------------------------------------------

    @classmethod
    def parse(cls, text: str, path: str = "<string>") -> UpmuList:
        """A list from text. Raises UpmuConfigError (with line numbers) on bad syntax."""
        return cls(IniDocument(text, path, UpmuConfigError), path)

    @classmethod
    def _from_locked(cls, path: str, data: bytes, fp: Fingerprint | None) -> UpmuList:
        text = decode(data, path, UpmuConfigError)
        return cls(IniDocument(text, path, UpmuConfigError), path, fp)

    @classmethod
    def load(cls, path: str) -> UpmuList:
        """Read the file under a shared lock. A missing file is an empty list.

        Raises:
            UpmuConfigError: bad syntax (file and line), unreadable file, or missing
                directory.
        """
        with locked(path, exclusive=False, create=False, error=UpmuConfigError) as f:
            if f is None:
                return cls.parse("", path)
            return cls._from_locked(path, f.data, Fingerprint.of(f.stat))

    @classmethod
    @contextlib.contextmanager
    def edit(cls, path: str) -> Iterator[UpmuList]:
        """A read-modify-write transaction: lock exclusively, load, yield, write back.

        The file is written only if the body returns normally and the text changed; on an
        exception nothing is written. Other writers wait for the lock, so no update is
        lost. A missing file is created by the first change.

        Raises:
            UpmuConfigError: the file cannot be read, parsed or written.
        """
        with locked(path, exclusive=True, create=True, error=UpmuConfigError) as f:
            assert f is not None
            try:
                upmus = cls._from_locked(path, f.data, Fingerprint.of(f.stat))
                yield upmus
                data = upmus.render().encode("utf-8")
                if data != f.data:
                    upmus.fingerprint = atomic_write(path, data, f.stat, UpmuConfigError)
                elif f.created:
                    _unlink_if_same(path, f.stat)
            except BaseException:
                if f.created:
                    _unlink_if_same(path, f.stat)
                raise

    def save(self, path: str, *,
             expect: Fingerprint | None | object = _UNSET) -> Fingerprint:
        """Write this list to ``path`` atomically under an exclusive lock.

        ``expect`` (a fingerprint from :func:`fingerprint` or :attr:`fingerprint`, or None
        for "no file") makes the save refuse if the file was changed by someone else in
        the meantime. Use :meth:`edit` for read-modify-write.

        Raises:
            UpmuConflictError: the file's fingerprint is not ``expect``.
            UpmuConfigError: the file cannot be written.

        On success :attr:`fingerprint` is the written file's.
        """
        with locked(path, exclusive=True, create=True, error=UpmuConfigError) as f:
            assert f is not None
            current = None if f.created else Fingerprint.of(f.stat)
            try:
                if expect is not _UNSET and current != expect:
                    raise UpmuConflictError(
                        f"{path}: changed since it was loaded; load it again and redo the "
                        f"change", path)
                data = self.render().encode("utf-8")
                if data == f.data and not f.created:
                    self.fingerprint = current
                else:
                    self.fingerprint = atomic_write(path, data, f.stat, UpmuConfigError)
                return self.fingerprint
            except BaseException:
                if f.created:
                    _unlink_if_same(path, f.stat)
                raise

    def render(self) -> str:
        """The file's text; unchanged parts keep their original bytes."""
        return self._doc.render()

    # -- queries -------------------------------------------------------------------------

    @property
    def upmus(self) -> tuple[Upmu, ...]:
        """The usable uPMUs, in file order."""
        return self._scan().upmus

    @property
    def excluded(self) -> tuple[Upmu, ...]:
        """IP sections left out because of a problem (see :attr:`problems`)."""
        return self._scan().excluded

    @property
    def problems(self) -> tuple[str, ...]:
        """One line per problem found in the file, naming the file and section."""
        return self._scan().problems

    @property
    def ignored_sections(self) -> tuple[str, ...]:
        """Sections not named by an IPv4 address (kept verbatim, not uPMUs)."""
        return self._scan().ignored_sections

    def __iter__(self) -> Iterator[Upmu]:
        return iter(self.upmus)

    def __len__(self) -> int:
        return len(self.upmus)

    def by_serial(self, serial: str) -> Upmu | None:
        """The usable uPMU with this serial number (ignoring case), or None."""
        return self._scan().by_serial.get(serial.casefold())

    def by_ip(self, ip: str) -> Upmu | None:
        """The usable uPMU at this IP address, or None."""
        return self._scan().by_ip.get(ip)

    def find(self, key: str) -> Upmu:
        """The uPMU whose IP address, serial number or alias (ignoring case) is ``key``.

        Raises:
            UpmuNotFoundError: nothing matches.
            UpmuListError: the key is one uPMU's serial and another's alias.
        """
        key = key.strip()
        upmu = self.by_ip(key)
        if upmu is not None:
            return upmu
        folded = key.casefold()
        matches = []
        for u in self.upmus:
            if u.serial.casefold() == folded:
                matches.append(("serial number", u))
            if u.alias and u.alias.casefold() == folded:
                matches.append(("alias", u))
        if not matches:
            raise UpmuNotFoundError(
                f"no uPMU has IP address, serial number or alias {key!r}")
        if len({u.ip for _, u in matches}) > 1:
            which = " and ".join(f"the {what} of {u.describe()}" for what, u in matches)
            raise UpmuListError(f"{key!r} is ambiguous: it is {which}; use the IP address")
        return matches[0][1]

    # -- edits ---------------------------------------------------------------------------

    def add(self, ip: str, serial: str, alias: str, extended: bool = False) -> Upmu:
        """Add a uPMU with a fresh UUID per stream, ``Path = /upmu/<alias>/<STREAM>``,
        each stream's unit, and ``Metadata/Instrument/SerialNumber``.

        Raises:
            UpmuListError: invalid IP (dotted-quad IPv4 only), serial (letters and
                digits) or alias (no spaces, / [ ] # " ' , \\), or one of them already
                used by another section (the message names it).
        """
        _check_ip(ip)
        if not _SERIAL.match(serial):
            raise UpmuListError(f"invalid serial number {serial!r}: use 1 to "
                                f"{MAX_SERIAL_LEN} letters and digits, e.g. P3112233")
        _check_name("alias", alias, MAX_ALIAS_LEN)
        if _ipv4(alias) is not None:
            raise UpmuListError(f"invalid alias {alias!r}: must not be an IP address")
        cfg = self._doc.config
        view = self._scan()
        if ip in cfg.sections:
            raise UpmuListError(f"IP address {ip} is already used by "
                                f"{self._get(ip).describe()}")
        if ip in cfg:
            raise UpmuListError(f"IP address {ip} is already a top-level key in {self.path}; "
                                f"fix the file by hand")
        for u in view.upmus + view.excluded:
            if u.serial.casefold() == serial.casefold():
                raise UpmuListError(
                    f"serial number {serial!r} is already used by {u.describe()}")
            if u.alias.casefold() == alias.casefold():
                raise UpmuListError(f"alias {alias!r} is already used by {u.describe()}")
            # One uPMU's alias equal to another's serial would make find() ambiguous.
            if u.serial.casefold() == alias.casefold():
                raise UpmuListError(f"alias {alias!r} is the serial number of "
                                    f"{u.describe()}; choose another alias")
            if u.alias.casefold() == serial.casefold():
                raise UpmuListError(f"serial number {serial!r} is the alias of "
                                    f"{u.describe()}; check the serial number")
        section: dict = {"%serial_number": serial, "%alias": alias,
                         "%extended": _bool_text(extended)}
        for name in streams_for(extended):
            section[name] = _new_stream(f"upmu/{alias}", name)
        section["Metadata"] = {"Instrument": {"SerialNumber": serial}}
        cfg[ip] = section
        self._view = None
        return self._get(ip)

    def remove(self, key: str) -> Upmu:
        """Remove a uPMU found by IP, serial or alias (an excluded section by its IP).

        Raises:
            UpmuNotFoundError, UpmuListError: as :meth:`find`.
        """
        try:
            upmu = self.find(key)
        except UpmuNotFoundError:
            upmu = next((u for u in self.excluded if u.ip == key.strip()), None)
            if upmu is None:
                raise
        del self._doc.config[upmu.ip]
        self._view = None
        return upmu

    def set_extended(self, key: str, extended: bool) -> Upmu:
        """Switch a uPMU to extended (True) or base (False) mode.

        Existing stream subsections and UUIDs are kept as they are; subsections are added
        for active streams that have none, and UUIDs minted for those without one.

        Raises:
            UpmuNotFoundError, UpmuListError: as :meth:`find`, or a key in the way of a
                stream subsection.
        """
        upmu = self.find(key)
        sec = self._doc.config[upmu.ip]
        if _BOOLS.get(_scalar(sec, "%extended").lower()) is not extended:
            _set_scalar(sec, "%extended", _bool_text(extended), after="%alias")
        collection = _collection_of(sec, upmu.alias or upmu.ip)
        for name in streams_for(extended):
            if name not in sec:
                sec[name] = _new_stream(collection, name)
                if "Metadata" in sec.sections:
                    sec.sections.remove(name)
                    sec.sections.insert(sec.sections.index("Metadata"), name)
            elif not isinstance(sec[name], Section):
                raise UpmuListError(
                    f"[{upmu.ip}] has a key {name!r} where the [[{name}]] stream section "
                    f"belongs; fix the file by hand")
            elif not unquote(str(sec[name].get("uuid", ""))):
                sec[name]["uuid"] = str(uuid.uuid4())
        self._view = None
        return self._get(upmu.ip)

    # -- internals -----------------------------------------------------------------------

    def _get(self, ip: str) -> Upmu:
        view = self._scan()
        return view.by_ip.get(ip) or next(u for u in view.excluded if u.ip == ip)

    def _scan(self) -> _View:
        if self._view is None:
            self._view = _scan(self._doc.config, self.path or "<string>")
        return self._view


def _scan(cfg, path: str) -> _View:
    upmus: list[Upmu] = []
    excluded: list[Upmu] = []
    problems: list[str] = []
    ignored: list[str] = []
    by_serial: dict[str, Upmu] = {}
    by_alias: dict[str, Upmu] = {}
    uuids: dict[uuid.UUID, str] = {}
    for name in cfg.sections:
        if _ipv4(name) is None:
            ignored.append(name)
            continue
        where = f"{path}: [{name}]"
        upmu = _build(name, cfg[name], where, problems, uuids)
        folded = upmu.serial.casefold()
        if not upmu.serial:
            problems.append(f"{where} has no %serial_number; uPMU ignored")
            excluded.append(upmu)
        elif folded in by_serial:
            problems.append(f"{where} %serial_number {upmu.serial!r} is also used by "
                            f"[{by_serial[folded].ip}]; uPMU ignored")
            excluded.append(upmu)
        else:
            by_serial[folded] = upmu
            upmus.append(upmu)
            alias = upmu.alias.casefold()
            if alias in by_alias:
                problems.append(f"{where} %alias {upmu.alias!r} is also used by "
                                f"[{by_alias[alias].ip}]")
            elif alias:
                by_alias[alias] = upmu
    return _View(tuple(upmus), tuple(excluded), tuple(problems), tuple(ignored),
                 {u.ip: u for u in upmus}, by_serial)


def _build(ip: str, sec: Section, where: str, problems: list[str],
           uuids: dict[uuid.UUID, str]) -> Upmu:
    serial = _scalar(sec, "%serial_number")
    alias = _scalar(sec, "%alias")
    if not alias:
        problems.append(f"{where} has no %alias")
    raw_mode = _scalar(sec, "%extended")
    extended = all(n in sec.sections for n in EXTENDED_ONLY_STREAMS)
    if raw_mode:
        if raw_mode.lower() in _BOOLS:
            extended = _BOOLS[raw_mode.lower()]
        else:
            problems.append(f"{where} %extended = {raw_mode!r} is not true or false; "
                            f"assuming {'extended' if extended else 'base'} from its streams")
    streams: dict[str, StreamInfo] = {}
    collection = _collection_of(sec, alias or ip)
    for name in sorted((n for n in sec.sections if n in UNITS), key=_STREAM_ORDER.get):
        info = _stream(name, sec[name], f"{where} [[{name}]]", collection, problems)
        if info is None:
            continue
        if info.uuid in uuids:
            problems.append(f"{where} [[{name}]] uuid {info.uuid} is also used by "
                            f"{uuids[info.uuid]}; stream ignored")
            continue
        uuids[info.uuid] = f"[{ip}] [[{name}]]"
        streams[name] = info
    if serial:
        for name in streams_for(extended):
            if name not in sec.sections:
                problems.append(f"{where} has no [[{name}]] stream section; its data "
                                f"cannot be stored until setext adds it")
    metadata = sec["Metadata"] if isinstance(sec.get("Metadata"), Section) else None
    return Upmu(ip=ip, serial=serial, alias=alias, extended=extended, streams=streams,
                metadata=_flatten(metadata) if metadata is not None else {},
                raw=sec.dict())


def _stream(name: str, sub: Section, where: str, collection: str,
            problems: list[str]) -> StreamInfo | None:
    text = _scalar(sub, "uuid")
    if not text:
        problems.append(f"{where} has no uuid; stream ignored")
        return None
    try:
        stream_uuid = uuid.UUID(text)
    except ValueError:
        problems.append(f"{where} uuid = {text!r} is not a UUID; stream ignored")
        return None
    path = _scalar(sub, "Path")
    if not path:
        path = f"/{collection}/{name}"
        problems.append(f"{where} has no Path; using {path}")
    parts = path.strip("/").rsplit("/", 1)
    if len(parts) != 2 or not all(parts):
        problems.append(f"{where} Path = {path!r} needs a collection and a name, e.g. "
                        f"/upmu/uPMU1/{name}; stream ignored")
        return None
    props = sub["Properties"] if isinstance(sub.get("Properties"), Section) else None
    properties = _flatten(props) if props is not None else {}
    unit = properties.get("UnitofMeasure") or UNITS[name]
    return StreamInfo(name, stream_uuid, path, unit, properties)


def _scalar(sec: Section, key: str) -> str:
    value = sec.get(key)
    return unquote(value) if isinstance(value, str) else ""


def _flatten(sec: Section, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key in sec.scalars:
        value = sec[key]
        if not key.startswith("%") and isinstance(value, str):
            out[prefix + key] = unquote(value)
    for key in sec.sections:
        out.update(_flatten(sec[key], f"{prefix}{key}/"))
    return out


def _collection_of(sec: Section, alias: str) -> str:
    """Where new streams of a uPMU go: beside its existing ones (an operator may have
    moved them to another domain, manual ch. 10), else ``upmu/<alias>``."""
    for name in EXTENDED_STREAMS:
        sub = sec.get(name)
        if isinstance(sub, Section):
            parts = _scalar(sub, "Path").strip("/").rsplit("/", 1)
            if len(parts) == 2 and all(parts):
                return parts[0]
    return f"upmu/{alias}"


def _new_stream(collection: str, name: str) -> dict:
    return {"uuid": str(uuid.uuid4()), "Path": f"/{collection}/{name}",
            "Properties": {"UnitofMeasure": UNITS[name]}}


def _bool_text(value: bool) -> str:
    return "true" if value else "false"


def _set_scalar(sec: Section, key: str, value: str, after: str) -> None:
    if key in sec:
        sec[key] = value
        return
    sec[key] = value
    if after in sec.scalars:
        sec.scalars.remove(key)
        sec.scalars.insert(sec.scalars.index(after) + 1, key)


def _check_ip(ip: str) -> None:
    if _ipv4(ip) is None:
        raise UpmuListError(f"invalid IP address {ip!r}: expected an IPv4 address in "
                            f"dotted-quad form, e.g. 192.168.1.24")
    addr = ipaddress.IPv4Address(ip)
    if addr.is_unspecified or addr.is_multicast or ip == "255.255.255.255":
        raise UpmuListError(f"invalid IP address {ip!r}: a uPMU cannot have an "
                            f"unspecified, multicast or broadcast address")


def _check_name(what: str, value: str, limit: int) -> None:
    if (not value or len(value) > limit or any(c.isspace() or not c.isprintable()
                                                for c in value)
            or _FORBIDDEN & set(value) or value in (".", "..")):
        raise UpmuListError(
            f"invalid {what} {value!r}: use 1 to {limit} printable characters without "
            f"spaces or any of / [ ] # \" ' , \\")


def _unlink_if_same(path: str, st: os.stat_result) -> None:
    """Remove a file this process created empty, if it is still that file."""
    with contextlib.suppress(FileNotFoundError):
        current = os.stat(path)
        if (current.st_dev, current.st_ino) == (st.st_dev, st.st_ino):
            os.unlink(path)


def diff(old: UpmuList, new: UpmuList) -> UpmuDiff:
    """What changed between two lists (e.g. backupconfig.ini and upmuconfig.ini).

    uPMUs are matched by IP address; a uPMU is changed when anything in its section
    differs (keys, values, streams, metadata), comments aside.
    """
    before = {u.ip: u for u in old.upmus}
    after = {u.ip: u for u in new.upmus}
    return UpmuDiff(
        added=tuple(u for ip, u in after.items() if ip not in before),
        removed=tuple(u for ip, u in before.items() if ip not in after),
        changed=tuple((before[ip], u) for ip, u in after.items()
                      if ip in before and before[ip].raw != u.raw))


def write_backup(upmus: UpmuList, path: str) -> Fingerprint:
    """Record ``upmus`` as the last applied list (``backupconfig.ini``), atomically.

    Raises:
        UpmuConfigError: the file cannot be written.
    """
    return upmus.save(path)


def load_backup(path: str) -> UpmuList:
    """The last applied list; empty if ``backupconfig.ini`` does not exist yet.

    Raises:
        UpmuConfigError: as :meth:`UpmuList.load`.
    """
    return UpmuList.load(path)
