"""Appliance settings: ``qss.ini`` (architecture §5), the environment, and command-line flags.

Keys (a contract; flags of the same name override them)::

    [paths]    upmuconfig, backupconfig, data (BTrDB data dir), srv (queue dir)
    [queue]    url = sqlite:////ssd/srv/queue.db   or   mongodb://localhost:27017
    [btrdb]    endpoints = 127.0.0.1:4410
    [receiver] listen = 0.0.0.0:1883, max_disk_percent = 98, max_buffer_mb = 256
    [store]    grpc = 127.0.0.1:4410, http = 127.0.0.1:9000
    [plotter]  listen = 0.0.0.0:443, certificate, key, redirect = 0.0.0.0:80, tagconfig,
               idle_minutes = 30
    [distil]   builtins, angle_differences, poll_interval, state, distillates

Precedence, lowest first: built-in defaults, the file, the environment, flags.

- The file is ``--config PATH``, else ``$QSS_CONFIG``, else ``/etc/qss/qss.ini``. A
  missing default file means defaults; a missing file named by ``--config`` or
  ``$QSS_CONFIG`` is an error.
- ``BTRDB_ENDPOINTS`` overrides ``[btrdb] endpoints`` (as the original tools and DISTIL
  distillates read it); ``MONGO_ADDR`` (the original tools' ``host[:port]`` of MongoDB)
  makes the queue ``mongodb://<MONGO_ADDR>``. An empty variable counts as unset.
- Paths in the file must be absolute (daemons run from ``/``); paths from flags and
  the environment are taken relative to the current directory.
- Unknown sections and keys are warnings (``Settings.warnings``), not errors, so an
  older suite reads a newer file. Bad values are one-line :class:`SettingsError`\\ s
  naming the file, section, key and value, and what would be legal.
"""
from __future__ import annotations

import argparse
import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from qss.inifile import IniError, decode, parse_lines, split_lines, unquote

DEFAULT_CONFIG = "/etc/qss/qss.ini"
# RFC 1123 labels, plus "_" because container names (btrdb_1) resolve on real setups.
_HOSTNAME = re.compile(r"(?!-)[\w-]{1,63}(?<!-)(?:\.(?!-)[\w-]{1,63}(?<!-))*\.?\Z", re.ASCII)


class SettingsError(IniError):
    """A settings file, variable or flag that cannot be used; the message is one line."""


@dataclass(frozen=True)
class HostPort:
    """A TCP address: host name, IPv4 or IPv6 address, and port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class PathsSettings:
    """``[paths]``: the uPMU lists and the data directories."""

    upmuconfig: str = "/home/manager/upmuconfig.ini"
    backupconfig: str = "/home/manager/backupconfig.ini"
    data: str = "/ssd/data"
    srv: str = "/ssd/srv"


@dataclass(frozen=True)
class QueueSettings:
    """``[queue]``: where received files wait for sync2q."""

    url: str = "sqlite:////ssd/srv/queue.db"

    @property
    def scheme(self) -> str:
        """``sqlite`` or ``mongodb`` (``mongodb+srv://`` too)."""
        return "mongodb" if is_mongodb(self.url) else self.url.split(":", 1)[0]

    @property
    def sqlite_path(self) -> str | None:
        """The database file of a ``sqlite:////path`` URL, else None."""
        return self.url[len("sqlite:///"):] if self.scheme == "sqlite" else None


@dataclass(frozen=True)
class BtrdbSettings:
    """``[btrdb]``: the BTrDB endpoints sync2q writes to."""

    endpoints: tuple[HostPort, ...] = (HostPort("127.0.0.1", 4410),)

    @property
    def conn_str(self) -> str:
        """The endpoints as ``BTRDB_ENDPOINTS`` writes them: ``host:port[,host:port]``."""
        return ",".join(str(e) for e in self.endpoints)


@dataclass(frozen=True)
class ReceiverSettings:
    """``[receiver]``: the push listener, its disk guard and its memory cap."""

    listen: HostPort = HostPort("0.0.0.0", 1883)
    max_disk_percent: float = 98.0
    #: MiB of received file contents held in memory across all connections; at the cap
    #: the receiver stops reading until pieces have gone to the queue.
    max_buffer_mb: int = 256


@dataclass(frozen=True)
class StoreSettings:
    """``[store]``: the embedded BTrDB server's listeners."""

    grpc: HostPort = HostPort("127.0.0.1", 4410)
    http: HostPort = HostPort("127.0.0.1", 9000)


@dataclass(frozen=True)
class PlotterSettings:
    """``[plotter]``: the plotter's web site (``qss-plotter``, program ``mr-plotter``).

    HTTPS on ``listen`` with ``certificate`` and ``key`` (PEM files); both empty means
    plain HTTP (the demo and tests, on loopback). ``redirect`` is where plain HTTP
    requests are sent on to HTTPS (None: no redirect listener).
    """

    listen: HostPort = HostPort("0.0.0.0", 443)
    certificate: str = "/etc/qss/plotter.crt"
    key: str = "/etc/qss/plotter.key"
    redirect: HostPort | None = HostPort("0.0.0.0", 80)
    #: The domains' tags (manual ch. 10): which path prefixes each tag opens.
    tagconfig: str = "/home/manager/mr-plotter/tools/tagconfig.json"
    #: A signed-in session ends after this many minutes without a request.
    idle_minutes: float = 30.0

    @property
    def https(self) -> bool:
        """Whether the site is served over TLS (a certificate and key are named)."""
        return bool(self.certificate and self.key)


@dataclass(frozen=True)
class DistilSettings:
    """``[distil]``: the derived streams service (qss-distil)."""

    builtins: tuple[str, ...] = ("frequency", "frequency-1s", "power", "state-changes")
    angle_differences: tuple[tuple[str, str], ...] = ()   # (uPMU A, uPMU B) by alias/serial
    poll_interval: float = 2.0
    state: str = ""          # the state database; "" = distil.db beside the queue
    distillates: str = ""    # a folder of the operator's own distillates; "" = none


@dataclass(frozen=True)
class Settings:
    """All appliance settings. ``source`` is the file read (None: defaults only)."""

    paths: PathsSettings = PathsSettings()
    queue: QueueSettings = QueueSettings()
    btrdb: BtrdbSettings = BtrdbSettings()
    receiver: ReceiverSettings = ReceiverSettings()
    store: StoreSettings = StoreSettings()
    plotter: PlotterSettings = PlotterSettings()
    distil: DistilSettings = DistilSettings()
    source: str | None = field(default=None, compare=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)


# -- values --------------------------------------------------------------------------

def parse_hostport(text: str, default_port: int | None = None) -> HostPort:
    """``host:port``, ``[v6]:port`` (or just a host when ``default_port`` is given).

    Raises:
        ValueError: with the reason, e.g. ``port must be 1-65535``.
    """
    text = text.strip()
    example = "e.g. 127.0.0.1:4410, [::1]:4410 or localhost:4410"
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ValueError(f"missing ] after IPv6 address ({example})")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
        if rest and not rest.startswith(":"):
            raise ValueError(f"expected :PORT after ] ({example})")
        port_text = rest[1:] if rest else None
    else:
        if text.count(":") > 1:
            raise ValueError("an IPv6 address needs brackets, e.g. [::1]:4410")
        host, sep, port_text = text.partition(":")
        if not sep:
            port_text = None
        if not host:
            raise ValueError(f"missing host ({example})")
        if re.fullmatch(r"[\d.]+", host):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise ValueError(f"{host!r} is not an IPv4 address") from None
        elif not _HOSTNAME.match(host) or len(host) > 253:
            raise ValueError(f"{host!r} is not a valid host name")
    if port_text is None:
        if default_port is None:
            raise ValueError(f"missing :PORT ({example})")
        return HostPort(host, default_port)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port must be a number from 1 to 65535, not {port_text!r}")
    return HostPort(host, int(port_text))


#: A MongoDB URL: its hosts, or a DNS name whose SRV records list them.
MONGODB_SCHEMES = ("mongodb://", "mongodb+srv://")


def is_mongodb(url: str) -> bool:
    """Whether ``url`` names a MongoDB (``mongodb://`` or ``mongodb+srv://``)."""
    return url.startswith(MONGODB_SCHEMES)


def mongodb_hosts(url: str) -> tuple[HostPort, ...]:
    """The servers the MongoDB URL ``url`` names: each ``HOST[:PORT]`` of
    ``mongodb://[USER:PASSWORD@]HOST[:PORT][,HOST[:PORT]...][/...]``, port 27017 where
    none is given; none for ``mongodb+srv://[USER:PASSWORD@]NAME[/...]``, whose servers
    DNS lists (its one host name is checked).

    Raises:
        ValueError: not a MongoDB URL, or a bad host (the reason).
    """
    scheme = next((s for s in MONGODB_SCHEMES if url.startswith(s)), None)
    if scheme is None:
        raise ValueError("expected mongodb://HOST[:PORT] or mongodb+srv://NAME")
    hosts = url[len(scheme):].split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]
    if scheme == "mongodb+srv://":
        # As pymongo: one name (no address) and no port; DNS gives the servers and ports.
        if not _HOSTNAME.match(hosts) or re.fullmatch(r"[\d.]+", hosts) or len(hosts) > 253:
            raise ValueError(f"mongodb+srv:// takes one host name without a port, not "
                             f"{hosts!r}")
        return ()
    return tuple(parse_hostport(h, default_port=27017) for h in hosts.split(","))


def local_mongodb(url: str) -> HostPort | None:
    """Where ``mongod`` listens when ``url`` names a MongoDB on this machine: its one
    server, when that is ``localhost`` (given as 127.0.0.1, an address to bind) or a
    loopback address (127.0.0.0/8, ``::1``), with its port. None for any other URL: an
    SQLite queue, a server elsewhere, a replica set of several hosts, ``mongodb+srv://``
    (DNS lists its servers) or a URL that is not good."""
    try:
        hosts = mongodb_hosts(url)
    except ValueError:
        return None
    if len(hosts) != 1:
        return None
    host = hosts[0].host.lower().rstrip(".")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:          # a host name other than localhost: not ours to run
        return None
    return HostPort(host, hosts[0].port) if loopback else None


def _endpoints(text: str) -> tuple[HostPort, ...]:
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or not all(items):
        raise ValueError("expected one or more HOST:PORT separated by commas, "
                         "e.g. 127.0.0.1:4410")
    out = []
    for item in items:
        try:
            out.append(parse_hostport(item))
        except ValueError as exc:
            raise ValueError(f"endpoint {item!r}: {exc}") from None
    return tuple(out)


def _number_in(low: float, high: float, message: str, kind: type = float):
    """A parser of a number from ``low`` to ``high``; anything else is ``message``."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        if not low <= value <= high:
            raise ValueError(message)
        return value
    return parse


_percent = _number_in(1, 100, "must be a number from 1 to 100")


def _optional_path(text: str) -> str:
    text = text.strip()
    return _absolute_path(text) if text else ""


def _optional_hostport(text: str) -> HostPort | None:
    text = text.strip()
    if text.lower() in ("", "off", "none"):
        return None
    return parse_hostport(text)


# Below 4 MiB a single 1 MiB piece per connection would keep stalling the others.
_buffer_mb = _number_in(4, 65536, "must be a whole number of MiB from 4 to 65536", int)


def _queue_url(text: str) -> str:
    text = text.strip()
    if text.startswith("sqlite:///"):
        if not text.startswith("sqlite:////") or text == "sqlite:////":
            raise ValueError("the database path must be absolute, "
                             "e.g. sqlite:////ssd/srv/queue.db")
        return text
    if is_mongodb(text):
        try:
            mongodb_hosts(text)
        except ValueError as exc:
            raise ValueError(f"bad MongoDB host: {exc}") from None
        return text
    raise ValueError("expected sqlite:////ABSOLUTE/PATH or mongodb://HOST[:PORT]")


def _absolute_path(text: str) -> str:
    if not text.startswith("/"):
        raise ValueError("must be an absolute path")
    return text


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    return () if names == ("none",) else names


def _pairs(text: str) -> tuple[tuple[str, str], ...]:
    out = []
    for item in _names(text):
        a, sep, b = item.partition(":")
        if not sep or not a.strip() or not b.strip():
            raise ValueError(f"expected UPMU:UPMU pairs separated by commas, e.g. "
                             f"uPMU1:uPMU2, not {item!r}")
        out.append((a.strip(), b.strip()))
    return tuple(out)


_seconds = _number_in(0.1, 3600, "must be a number of seconds from 0.1 to 3600")
_minutes = _number_in(0.05, 10080, "must be a number of minutes from 0.05 to 10080 (a week)")


# section -> key -> (parser, flag name); the flag table below is built from this.
_KEYS = {
    "paths": {"upmuconfig": (_absolute_path, "upmuconfig"),
              "backupconfig": (_absolute_path, "backupconfig"),
              "data": (_absolute_path, "data"),
              "srv": (_absolute_path, "srv")},
    "queue": {"url": (_queue_url, "queue")},
    "btrdb": {"endpoints": (_endpoints, "btrdb")},
    "receiver": {"listen": (parse_hostport, "listen"),
                 "max_disk_percent": (_percent, "max_disk_percent"),
                 "max_buffer_mb": (_buffer_mb, "max_buffer_mb")},
    "store": {"grpc": (parse_hostport, "grpc"), "http": (parse_hostport, "http")},
    "plotter": {"listen": (parse_hostport, "plotter_listen"),
                "certificate": (_optional_path, "certificate"),
                "key": (_optional_path, "key"),
                "redirect": (_optional_hostport, "redirect"),
                "tagconfig": (_absolute_path, "tagconfig"),
                "idle_minutes": (_minutes, "idle_minutes")},
    "distil": {"builtins": (_names, "builtins"),
               "angle_differences": (_pairs, "angle_differences"),
               "poll_interval": (_seconds, "poll_interval"),
               "state": (_optional_path, "state"),
               "distillates": (_optional_path, "distillates")},
}
#: Flags whose option string is not ``--NAME`` (the plotter's ``--listen`` is its own).
_FLAG_OPTIONS = {"plotter_listen": "--listen"}
_FLAG_KEYS = {flag: (section, key)
              for section, keys in _KEYS.items() for key, (_, flag) in keys.items()}

_FLAG_HELP = {
    "upmuconfig": ("PATH", "the uPMU list, upmuconfig.ini ([paths] upmuconfig; default "
                           "/home/manager/upmuconfig.ini)"),
    "backupconfig": ("PATH", "the uPMU list as upmu-adm's save last applied it "
                             "([paths] backupconfig; default /home/manager/backupconfig.ini)"),
    "data": ("DIR", "data directory of the embedded BTrDB server ([paths] data; default "
                    "/ssd/data)"),
    "srv": ("DIR", "directory of the queue of received files ([paths] srv; default "
                   "/ssd/srv)"),
    "queue": ("URL", "queue of received files: sqlite:////PATH/queue.db (embedded) or "
                     "mongodb://HOST[:PORT] ([queue] url; default sqlite:////ssd/srv/queue.db; "
                     "$MONGO_ADDR=HOST[:PORT] selects mongodb://HOST[:PORT])"),
    "btrdb": ("ENDPOINTS", "BTrDB gRPC endpoints, HOST:PORT[,HOST:PORT...] ([btrdb] "
                           "endpoints; default 127.0.0.1:4410; overrides $BTRDB_ENDPOINTS)"),
    "listen": ("HOST:PORT", "address the receiver accepts uPMU pushes on ([receiver] "
                            "listen; default 0.0.0.0:1883)"),
    "max_disk_percent": ("N", "refuse files (uPMUs keep them and retry) while the data disk "
                              "is N percent full or more, 1-100 ([receiver] max_disk_percent; "
                              "default 98)"),
    "max_buffer_mb": ("N", "hold at most N MiB of received file contents in memory across "
                           "all connections; at the cap the receiver pauses reading until "
                           "pieces are in the queue, 4-65536 ([receiver] max_buffer_mb; "
                           "default 256)"),
    "grpc": ("HOST:PORT", "address of the embedded BTrDB server's gRPC API ([store] grpc; "
                          "default 127.0.0.1:4410)"),
    "http": ("HOST:PORT", "address of the embedded BTrDB server's REST API ([store] http; "
                          "default 127.0.0.1:9000)"),
    "plotter_listen": ("HOST:PORT", "address the plotter's web site listens on ([plotter] "
                                    "listen; default 0.0.0.0:443)"),
    "certificate": ("PATH", "the web site's TLS certificate, PEM; empty with --key '' "
                            "for plain HTTP ([plotter] certificate; default "
                            "/etc/qss/plotter.crt)"),
    "key": ("PATH", "the TLS certificate's private key, PEM ([plotter] key; default "
                    "/etc/qss/plotter.key)"),
    "redirect": ("HOST:PORT", "plain-HTTP address that redirects to the HTTPS site, or off "
                              "([plotter] redirect; default 0.0.0.0:80)"),
    "tagconfig": ("PATH", "which path prefixes each tag opens, tagconfig.json ([plotter] "
                          "tagconfig; default /home/manager/mr-plotter/tools/tagconfig.json)"),
    "idle_minutes": ("N", "sign a user out after N minutes without a request ([plotter] "
                          "idle_minutes; default 30)"),
    "builtins": ("NAMES", "built-in distillates run for every uPMU, comma-separated, or none "
                          "([distil] builtins; default frequency, frequency-1s, power, "
                          "state-changes)"),
    "angle_differences": ("A:B,...", "angle differences between pairs of uPMUs by alias or "
                                     "serial ([distil] angle_differences; default none)"),
    "poll_interval": ("SECONDS", "how often distil looks for new data when idle ([distil] "
                                 "poll_interval; default 2)"),
    "state": ("PATH", "distil's state database ([distil] state; default distil.db beside "
                      "the queue)"),
    "distillates": ("DIR", "a folder of your own distillates ([distil] distillates; default "
                           "none)"),
}


# -- loading -------------------------------------------------------------------------

def load_settings(config: str | None = None, environ: Mapping[str, str] | None = None,
                  flags: Mapping[str, str] | None = None) -> Settings:
    """Settings from defaults, the file, the environment and flags, in that order.

    ``config`` is the file named by ``--config`` (None: ``$QSS_CONFIG`` or the default);
    ``flags`` maps flag names (``queue``, ``btrdb``, ``max_disk_percent``, ...) to the
    values given on the command line.

    Raises:
        SettingsError: a missing named file, bad syntax (with line), or a bad value.
    """
    environ = os.environ if environ is None else environ
    path, named_by = config, "--config"
    if path is None and environ.get("QSS_CONFIG"):
        path, named_by = environ["QSS_CONFIG"], "$QSS_CONFIG"
    values: dict[str, dict[str, object]] = {section: {} for section in _KEYS}
    warnings: list[str] = []
    source = _read_file(path or DEFAULT_CONFIG, path is not None, named_by, values,
                        warnings)

    def override(section: str, key: str, text: str, where: str) -> None:
        parse = _KEYS[section][key][0]
        if parse is _absolute_path or (parse is _optional_path and text.strip()):
            text = os.path.abspath(text)
        try:
            values[section][key] = parse(text)
        except ValueError as exc:
            raise SettingsError(f"{where} {text!r}: {exc}") from None

    if environ.get("BTRDB_ENDPOINTS"):
        override("btrdb", "endpoints", environ["BTRDB_ENDPOINTS"],
                 "environment variable BTRDB_ENDPOINTS =")
    if environ.get("MONGO_ADDR"):
        addr = environ["MONGO_ADDR"]
        try:
            parse_hostport(addr, default_port=27017)
        except ValueError as exc:
            raise SettingsError(f"environment variable MONGO_ADDR = {addr!r}: {exc} "
                                f"(expected the HOST[:PORT] of MongoDB)") from None
        values["queue"]["url"] = f"mongodb://{addr.strip()}"
    for flag, text in (flags or {}).items():
        if flag not in _FLAG_KEYS:
            raise ValueError(f"unknown settings flag {flag!r}")
        if text is not None:
            override(*_FLAG_KEYS[flag], text,
                     _FLAG_OPTIONS.get(flag, f"--{flag.replace('_', '-')}"))
    sections = {name: _section_class(name)(**values[name]) for name in _KEYS}
    return Settings(**sections, source=source, warnings=tuple(warnings))


def _section_class(name: str):
    return {"paths": PathsSettings, "queue": QueueSettings, "btrdb": BtrdbSettings,
            "receiver": ReceiverSettings, "store": StoreSettings,
            "plotter": PlotterSettings, "distil": DistilSettings}[name]


def _read_file(path: str, named: bool, named_by: str,
               values: dict[str, dict[str, object]], warnings: list[str]) -> str | None:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        if named:
            raise SettingsError(f"{path}: no such settings file (named by {named_by})",
                                path) from None
        return None
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read: {exc.strerror}", path) from None
    text = decode(data, path, SettingsError)
    cfg = parse_lines(split_lines(text.removeprefix("\ufeff")), path, SettingsError)
    known = ", ".join(_KEYS)
    for key in cfg.scalars:
        warnings.append(f"{path}: key {key!r} outside any section ignored "
                        f"(sections: {known})")
    for name in cfg.sections:
        if name not in _KEYS:
            warnings.append(f"{path}: unknown section [{name}] ignored (known: {known})")
            continue
        sec = cfg[name]
        for sub in sec.sections:
            warnings.append(f"{path}: [{name}] unknown subsection [[{sub}]] ignored")
        for key in sec.scalars:
            if key not in _KEYS[name]:
                warnings.append(f"{path}: [{name}] unknown key {key!r} ignored "
                                f"(known: {', '.join(_KEYS[name])})")
                continue
            text = unquote(sec[key])
            try:
                values[name][key] = _KEYS[name][key][0](text)
            except ValueError as exc:
                raise SettingsError(f"{path}: [{name}] {key} = {text!r}: {exc}",
                                    path) from None
    return path


# -- command line --------------------------------------------------------------------

def add_settings_arguments(parser: argparse.ArgumentParser,
                           *names: str) -> argparse._ArgumentGroup:
    """Add ``--config`` and the named settings flags (``queue``, ``btrdb``,
    ``upmuconfig``, ``backupconfig``, ``data``, ``srv``, ``listen``,
    ``max_disk_percent``, ``max_buffer_mb``, ``grpc``, ``http``) to a command's parser.

    Raises:
        ValueError: an unknown name (a programming error).
    """
    unknown = [n for n in names if n not in _FLAG_HELP]
    if unknown:
        raise ValueError(f"unknown settings flags {unknown}; known: {sorted(_FLAG_HELP)}")
    group = parser.add_argument_group("appliance settings")
    group.add_argument(
        "--config", metavar="PATH",
        help=f"read appliance settings from PATH (default $QSS_CONFIG, else "
             f"{DEFAULT_CONFIG}); a PATH that does not exist is an error, a missing "
             f"default file means built-in defaults")
    for name in names:
        metavar, text = _FLAG_HELP[name]
        option = _FLAG_OPTIONS.get(name, f"--{name.replace('_', '-')}")
        group.add_argument(option, dest=name, metavar=metavar,
                           help=text.replace("%", "%%"))
    return group


def settings_from_args(args: argparse.Namespace,
                       environ: Mapping[str, str] | None = None) -> Settings:
    """Settings for a command whose parser went through :func:`add_settings_arguments`.

    Raises:
        SettingsError: as :func:`load_settings`.
    """
    flags = {name: getattr(args, name) for name in _FLAG_KEYS
             if getattr(args, name, None) is not None}
    return load_settings(getattr(args, "config", None), environ, flags)


# -- the default file ----------------------------------------------------------------

_DEFAULT_INI = """\
# qss.ini: settings of the MicroPMU Quickstart Server.
#
# Every service and command reads this file (or the one given with --config PATH, or
# $QSS_CONFIG). A command-line flag of the same name overrides a key here; so do the
# environment variables BTRDB_ENDPOINTS ([btrdb] endpoints) and MONGO_ADDR (HOST[:PORT]
# of MongoDB, selecting queue url mongodb://HOST[:PORT]). Restart the services after
# editing: sudo supervisorctl restart all

[paths]
# The uPMU list that upmu-adm edits and the receiver and sync2q follow (--upmuconfig).
upmuconfig = {paths.upmuconfig}
# The uPMU list as upmu-adm's save last applied it (--backupconfig).
backupconfig = {paths.backupconfig}
# Data directory of the embedded BTrDB server (--data).
data = {paths.data}
# Directory of the queue of received files (--srv).
srv = {paths.srv}

[queue]
# Where received files wait for sync2q (--queue): sqlite:////ABSOLUTE/PATH for the
# embedded queue, or mongodb://HOST[:PORT] for MongoDB (database upmu_database).
url = {queue.url}

[btrdb]
# BTrDB gRPC endpoints sync2q writes to, HOST:PORT[,HOST:PORT...] (--btrdb).
endpoints = {btrdb.conn_str}

[receiver]
# Address uPMUs push their files to (--listen).
listen = {receiver.listen}
# Refuse files (uPMUs keep them and retry) while the data disk is at least this many
# percent full, 1-100 (--max-disk-percent).
max_disk_percent = {max_disk_percent}
# MiB of received file contents held in memory across all connections, 4-65536; at the
# cap the receiver pauses reading until pieces are in the queue (--max-buffer-mb).
max_buffer_mb = {receiver.max_buffer_mb}

[plotter]
# The plotter's web site (qss-plotter, supervisor program mr-plotter): HTTPS on this
# address (--listen of qss-plotter), with this certificate and key (PEM; --certificate,
# --key; both empty: plain HTTP), and a plain-HTTP listener that only redirects to it
# (--redirect; off: none).
listen = {plotter.listen}
certificate = {plotter.certificate}
key = {plotter.key}
redirect = {redirect}
# Which path prefixes each tag opens (manual ch. 10; --tagconfig), and the minutes
# without a request after which a signed-in user is signed out (--idle-minutes).
tagconfig = {plotter.tagconfig}
idle_minutes = {plotter.idle_minutes:g}

[store]
# The embedded BTrDB server: gRPC API (--grpc) and legacy REST API (--http).
grpc = {store.grpc}
http = {store.http}

[distil]
# Derived streams (qss-distil): built-ins run for every uPMU, comma-separated, or none
# (--builtins): frequency, frequency-1s, power, state-changes, noop.
builtins = {distil_builtins}
# Angle differences between pairs of uPMUs by alias or serial, e.g. uPMU1:uPMU2
# (--angle-differences).
angle_differences = {distil_pairs}
# Seconds between looks for new data when idle (--poll-interval).
poll_interval = {distil.poll_interval:g}
# The state database; empty: distil.db beside the queue (--state).
state = {distil.state}
# A folder of your own distillates (*.py); empty: none (--distillates).
distillates = {distil.distillates}
"""


def render_default_ini(settings: Settings | None = None) -> str:
    """A commented ``qss.ini`` holding ``settings`` (default: the built-in defaults)."""
    s = settings or Settings()
    text = _DEFAULT_INI.format(paths=s.paths, queue=s.queue, btrdb=s.btrdb,
                               receiver=s.receiver, store=s.store, plotter=s.plotter,
                               redirect=s.plotter.redirect or "off", distil=s.distil,
                               distil_builtins=", ".join(s.distil.builtins) or "none",
                               distil_pairs=", ".join(f"{a}:{b}" for a, b in
                                                      s.distil.angle_differences),
                               max_disk_percent=f"{s.receiver.max_disk_percent:g}")
    return "\n".join(line.rstrip() for line in text.split("\n"))  # empty values


__all__ = [
    "BtrdbSettings", "DEFAULT_CONFIG", "DistilSettings", "HostPort", "PathsSettings",
    "PlotterSettings", "QueueSettings",
    "ReceiverSettings", "Settings", "SettingsError", "StoreSettings",
    "add_settings_arguments", "load_settings", "parse_hostport", "render_default_ini",
    "settings_from_args",
]
