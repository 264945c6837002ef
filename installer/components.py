"""The appliance's configurable components and the files each consists of.

``qss-get --config COMPONENT`` writes these (manual ch. 14):

=========  ==============================================================================
qss        /etc/qss/qss.ini (only when missing), /etc/supervisor/supervisord.conf,
           /etc/supervisor/conf.d/qss.conf (programs btrdb, receiver, sync2q, distil,
           mr-plotter, metadata, and mongo when the queue is a MongoDB on this machine),
           /home/manager/mr-plotter/tools/accounts.py and tagconfig.json (only when
           missing; [plotter] tagconfig, manual ch. 10-11),
           /etc/systemd/system/supervisor.service.d/qss.conf, /etc/sysusers.d/qss.conf
           (the service user; the operator joins its group), /etc/tmpfiles.d/qss.conf;
           and the plotter's self-signed certificate and key when [plotter] names files
           that do not exist yet (:mod:`installer.certificate`; configure makes them)
nic        /etc/network/interfaces (manual ch. 7)
shorewall  /etc/shorewall/{interfaces,zones,policy,rules}, /etc/default/shorewall (ch. 13)
apcupsd    /etc/apcupsd/apcupsd.conf, /etc/default/apcupsd (ch. 15)
=========  ==============================================================================

Why a drop-in for Debian's ``supervisor.service`` rather than a unit of our own: the
appliance runs Debian's ``supervisor`` package (its ``/usr/bin/supervisorctl`` is on
sudo's PATH, so ``sudo supervisorctl status all`` works; it gets security updates; its
unit is enabled on install). A second unit starting a second supervisord on the same
configuration would fight it; a drop-in adds what the appliance needs (the data drive,
the network, time to stop) to the one supervisord there is.

The operator account (``manager``, :data:`OPERATOR_USER`) is a member of the service
user's group, so that it uses the queue (upmu-adm, clean_synced) and reads the programs'
states (``supervisorctl status``) without sudo, as the manual does: the data directories
are ``2770``, every program runs with ``umask 007``, the SQLite queue is created ``0660``
and supervisord's socket is ``root:qss 0770``.

The contents always name the appliance's paths; :class:`Layout` says which, so tests can
run a real supervisord on files rendered for a temporary directory.
"""
from __future__ import annotations

import dataclasses
import os
import posixpath
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from qss.settings import HostPort, Settings, StoreSettings, local_mongodb, render_default_ini
from qss.tagconfig import DEFAULT_TEXT as DEFAULT_TAGCONFIG

from . import templating
from .files import DeployError, FileSpec

COMPONENTS = ("qss", "nic", "shorewall", "apcupsd")
QSS_INI = "/etc/qss/qss.ini"
SERVICE_USER = "qss"
SERVICE_GROUP = "qss"
SERVICE_HOME = "/var/lib/qss"
#: The operator's account (the manual logs in and runs upmu-adm and clean_synced as it).
OPERATOR_USER = "manager"

#: The embedded BTrDB server's listeners on the appliance: every IPv4 address, so that
#: users reach the APIs from their computers (manual ch. 13 and 17). The library's
#: default (qss.settings) stays 127.0.0.1, right for a laptop or a test.
APPLIANCE_STORE = StoreSettings(grpc=HostPort("0.0.0.0", 4410), http=HostPort("0.0.0.0", 9000))
_APPLIANCE_STORE_NOTE = """\
# On the appliance both listen on every IPv4 address (0.0.0.0): users reach them from
# their own computers (the btrdb Python client on 4410, curl on 9000; manual ch. 13
# and 17). The firewall guards them: shorewall (sudo qss-get --config shorewall)
# admits 4410 and 9000 from the network. IPv4 only, as the firewall is. 127.0.0.1
# keeps them to this machine.
"""

# The manual's defaults (ch. 7, ch. 8): uPMUs' setup.ini point at 172.16.1.100.
NIC_ADDRESS, NIC_NETMASK, NIC_GATEWAY = "172.16.1.100", "255.255.255.0", "172.16.1.1"

# Directories a recursive chown (tmpfiles "Z") must never be pointed at, whatever
# qss.ini says: the service user owns its data directories and nothing else.
_SYSTEM_DIRS = frozenset({
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/media",
    "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr",
    "/var", "/usr/bin", "/usr/lib", "/usr/local", "/usr/sbin", "/usr/share", "/var/cache",
    "/var/lib", "/var/log", "/var/run", "/var/tmp", "/var/spool", "/var/mail",
})


@dataclass(frozen=True)
class Layout:
    """The paths and names the generated files refer to.

    On the appliance ``prefix`` is ``/``; a test sets it to a temporary directory so
    that sockets, logs, pid file and the included configuration all live there.
    ``bindir`` holds the suite's console scripts; ``user`` is the programs' service
    user and ``group`` its group, which owns the data directories and supervisord's
    socket with it; ``operator`` is the operator's account, a member of ``group``;
    ``socket_owner`` is the user supervisord runs as (root on the appliance), the
    socket's owner; ``startsecs`` is how long a program must stay up to count as started.
    """

    bindir: str = "/usr/local/bin"
    prefix: str = "/"
    user: str = SERVICE_USER
    group: str = SERVICE_GROUP
    operator: str = OPERATOR_USER
    socket_owner: str = "root"
    startsecs: int = 5
    mongod: str = "/usr/bin/mongod"

    def path(self, path: str) -> str:
        """``path`` of the appliance as this layout places it."""
        return posixpath.join(self.prefix, path.lstrip("/"))


@dataclass(frozen=True)
class Program:
    """One supervisord program."""

    name: str
    purpose: str
    command: str
    priority: int          # start order, lowest first; stopped in the reverse order
    stopwaitsecs: int      # time to finish the current file or request after SIGTERM
    startretries: int = 10
    environment: dict[str, str] = field(default_factory=dict)
    user: str | None = None    # who supervisord starts it as (None: the layout's user)


def programs(settings: Settings, layout: Layout, plotter: bool = True) -> list[Program]:
    """The supervisord programs for ``settings``, in start order (``plotter``: with the
    web site, ``mr-plotter``; the demo runs without it when asked to)."""
    qss_ini = layout.path(QSS_INI)
    env = {"QSS_CONFIG": qss_ini, "HOME": layout.path(SERVICE_HOME), "LANG": "C.UTF-8",
           "PYTHONUNBUFFERED": "1"}
    out = []
    mongo = local_mongodb(settings.queue.url)
    if mongo is not None:
        ipv6 = " --ipv6" if ":" in mongo.host else ""   # mongod binds no IPv6 without it
        out.append(Program(
            "mongo", "MongoDB, the queue of received files ([queue] url)",
            f"{layout.mongod} --dbpath {settings.paths.srv} --bind_ip {mongo.host} "
            f"--port {mongo.port}{ipv6}",
            priority=100, stopwaitsecs=120,
            environment={"HOME": env["HOME"], "LANG": "C.UTF-8"}))
    out += [
        Program("btrdb", "the embedded BTrDB server: gRPC API and REST API ([store])",
                f"{layout.bindir}/qss-btrdb --config {qss_ini}",
                priority=200, stopwaitsecs=30, environment=env),
        Program("receiver", "accepts files pushed by uPMUs and queues them ([receiver])",
                f"{layout.bindir}/qss-receiver --config {qss_ini}",
                priority=300, stopwaitsecs=30, environment=env),
        Program("sync2q", "parses queued files and inserts them into BTrDB",
                f"{layout.bindir}/qss-sync2q --config {qss_ini}",
                priority=400, stopwaitsecs=60, environment=env),
        # After sync2q, before the plotter: it needs only BTrDB, and stopping first
        # (the reverse order) it finishes its chunk while BTrDB still serves.
        Program("distil", "derived streams kept current: frequency, power, ... ([distil])",
                f"{layout.bindir}/qss-distil --config {qss_ini}",
                priority=420, stopwaitsecs=30, environment=env),
    ]
    if plotter:
        out.append(plotter_program(layout))
    out.append(metadata_program(layout))
    return out


def metadata_program(layout: Layout) -> Program:
    """Program ``metadata`` (manual ch. 10's ``sudo supervisorctl restart metadata``): at
    each start it makes the plotter read ``tagconfig.json`` and the stream list again at
    once and logs who sees which domain; then it logs again whenever ``tagconfig.json`` or
    ``upmuconfig.ini`` changes (:mod:`plotter.metadata`)."""
    qss_ini = layout.path(QSS_INI)
    env = {"QSS_CONFIG": qss_ini, "HOME": layout.path(SERVICE_HOME), "LANG": "C.UTF-8",
           "PYTHONUNBUFFERED": "1"}
    return Program("metadata", "makes the plotter reload tagconfig.json and the streams; "
                   "logs who sees which domain",
                   f"{layout.bindir}/qss-metadata --config {qss_ini}",
                   priority=460, stopwaitsecs=10, environment=env)


def accounts_launcher(layout: Layout, python: str = sys.executable) -> str:
    """``accounts.py`` of manual ch. 11: runs the suite's ``qss-accounts``, or else the
    console's module with the suite's ``python`` (any Python, 2 or 3, may start it)."""
    exe = f"{layout.bindir}/qss-accounts"
    return f"""\
#!/usr/bin/env python3
# Mr. Plotter account access control console (manual ch. 11), written by
# `qss-get --config qss`: it runs the suite's console, {exe}.
#   cd {posixpath.dirname(layout.path("/home/manager/mr-plotter/tools/"))} && python3 accounts.py
import os
import sys

os.environ.setdefault("QSS_CONFIG", "{layout.path(QSS_INI)}")
for argv in (["{exe}"], ["{python}", "-m", "plotter_accounts"]):
    try:
        os.execv(argv[0], argv + sys.argv[1:])
    except OSError:
        pass
sys.exit("accounts.py: cannot run {exe}; is the suite installed? (sudo qss-get -u)")
"""


def tools_files(settings: Settings, layout: Layout) -> list[FileSpec]:
    """``tagconfig.json`` (the operator's once it exists) and ``accounts.py`` beside it."""
    tools = posixpath.dirname(settings.plotter.tagconfig)
    return [FileSpec(settings.plotter.tagconfig, DEFAULT_TAGCONFIG, "qss", keep_existing=True),
            FileSpec(posixpath.join(tools, "accounts.py"), accounts_launcher(layout), "qss",
                     mode=0o755)]


def plotter_program(layout: Layout) -> Program:
    """The plotter's web site, supervisor program ``mr-plotter`` (``[plotter]`` of qss.ini).

    Started as ``layout.socket_owner`` (root on the appliance, to bind ports 443 and 80),
    it serves as the service user once its ports are bound (``--user``), so the key
    must be the service user's to read (:func:`tmpfiles_lines` sees to it).
    """
    qss_ini = layout.path(QSS_INI)
    env = {"QSS_CONFIG": qss_ini, "HOME": layout.path(SERVICE_HOME), "LANG": "C.UTF-8",
           "PYTHONUNBUFFERED": "1"}
    return Program("mr-plotter", "the plotter's web site ([plotter])",
                   f"{layout.bindir}/qss-plotter --config {qss_ini} --user {layout.user}",
                   priority=450, stopwaitsecs=10, environment=env, user=layout.socket_owner)


def stop_budget(progs: Sequence[Program]) -> int:
    """Seconds supervisord may take to stop every program (one after another)."""
    return sum(p.stopwaitsecs for p in progs)


# -- the components ------------------------------------------------------------------

def appliance_ini() -> str:
    """The qss.ini ``qss-get --config qss`` writes when there is none: the built-in
    settings, but the BTrDB APIs listen on the network (:data:`APPLIANCE_STORE`)."""
    text = render_default_ini(dataclasses.replace(Settings(), store=APPLIANCE_STORE))
    anchor = f"\ngrpc = {APPLIANCE_STORE.grpc}\n"
    if text.count(anchor) != 1:     # qss.settings' default file changed its layout
        raise RuntimeError(f"render_default_ini() has no single line {anchor.strip()!r}")
    return text.replace(anchor, "\n" + _APPLIANCE_STORE_NOTE + anchor[1:])


def qss_files(settings: Settings, layout: Layout,
              operator_exists: bool = True, plotter: bool = True) -> list[FileSpec]:
    """qss.ini (kept once it exists), supervisord, the systemd drop-in, the service user
    and the operator's membership of its group (commented out when ``operator_exists``
    is False: sysusers would create the account as a system account without a login);
    ``plotter``: with the program ``mr-plotter``.

    Raises:
        DeployError: qss.ini names a system directory as a data directory.
    """
    progs = programs(settings, layout, plotter)
    run_dir, log_dir, etc_dir = (layout.path(p) for p in ("/var/run", "/var/log", "/etc"))
    qss_ini = layout.path(QSS_INI)
    mongo = local_mongodb(settings.queue.url)
    notes = ""
    if settings.queue.scheme == "mongodb" and mongo is None:
        notes = (f";\n; [queue] url = {_sv(_without_password(settings.queue.url))} is a "
                 f"MongoDB on another machine:\n; no mongo program here.\n")
    blocks = "".join("\n" + program_block(p, layout, log_dir).rstrip("\n") for p in progs)
    budget = stop_budget(progs)
    return [
        FileSpec(QSS_INI, appliance_ini(), "qss", keep_existing=True),
        FileSpec("/etc/supervisor/supervisord.conf",
                 templating.render("supervisor/supervisord.conf", run_dir=run_dir,
                                   log_dir=log_dir, etc_dir=etc_dir, group=layout.group,
                                   operator=layout.operator,
                                   socket_owner=layout.socket_owner), "qss"),
        FileSpec("/etc/supervisor/conf.d/qss.conf",
                 templating.render("supervisor/qss.conf", qss_ini=qss_ini, notes=notes,
                                   start_order=", ".join(p.name for p in progs),
                                   stop_budget=budget, log_dir=log_dir,
                                   programs=blocks), "qss"),
        FileSpec("/etc/systemd/system/supervisor.service.d/qss.conf",
                 templating.render("systemd/supervisor-dropin.conf",
                                   mounts=" ".join(_data_dirs(settings)), etc_dir=etc_dir,
                                   stop_budget=budget, timeout_stop=timeout_stop_sec(progs)),
                 "qss"),
        FileSpec("/etc/sysusers.d/qss.conf",
                 templating.render("systemd/sysusers.conf", user=layout.user,
                                   group=layout.group, home=SERVICE_HOME,
                                   operator=layout.operator,
                                   membership=_membership(layout, operator_exists)), "qss"),
        FileSpec("/etc/tmpfiles.d/qss.conf",
                 templating.render("systemd/tmpfiles.conf", qss_ini=qss_ini, user=layout.user,
                                   group=layout.group,
                                   lines=tmpfiles_lines(settings, layout.user, layout.group)),
                 "qss"),
        *tools_files(settings, layout),
    ]


def _membership(layout: Layout, operator_exists: bool) -> str:
    line = f"m {layout.operator} {layout.group}"
    if operator_exists:
        return line
    return (f"# Not written: there was no account {layout.operator} when qss-get ran (an \"m\" "
            f"line would\n# create it). Create it (sudo adduser {layout.operator}), then run "
            f"sudo qss-get --config qss\n# again.\n#{line}")


def timeout_stop_sec(progs: Sequence[Program]) -> int:
    """systemd's TimeoutStopSec for supervisor.service: every program's stopwaitsecs,
    one after another, plus a minute for supervisord itself."""
    return stop_budget(progs) + 60


def tmpfiles_lines(settings: Settings, user: str, group: str | None = None) -> str:
    """tmpfiles.d lines: the service user's home; its data directories, shared with
    ``group`` (default: the user's name) and setgid, with owner and mode put right
    recursively; the SQLite queue and ``plotter.db`` beside it, group-writable; traverse permission on the uPMU
    list's directory; the folder of ``tagconfig.json`` (outside /etc and /usr) and the
    file itself, writable by ``group`` (the operator edits it, the plotter reads it); the
    plotter's TLS key (when it exists), the service user's alone: the plotter reads it
    after it has stopped being root.

    Raises:
        DeployError: a data directory that is a system directory.
    """
    group = group or user
    list_dirs = sorted({posixpath.dirname(posixpath.normpath(p))
                        for p in (settings.paths.upmuconfig, settings.paths.backupconfig)})
    rows = [("d", SERVICE_HOME, "0750", user, user, "-", "")]
    for key, path in _owned_dirs(settings):
        if path in _SYSTEM_DIRS or path in list_dirs:
            raise DeployError(f"{QSS_INI}: {key} = {path!r} is a system or home directory; "
                              f"the service user must own its data directories, so give it "
                              f"one of its own, e.g. /ssd/data")
        # ~2770 in Z: directories 2770, files 0660 (no x where there was none).
        rows += [("d", path, "2770", user, group, "-", ""),
                 ("Z", path, "~2770", user, group, "-", "")]
    if settings.queue.sqlite_path:
        # SQLite creates a database 0644 less the umask (0640 for the programs) and its
        # -wal and -shm with the database's mode: created here, it is 0660 from the start.
        rows.append(("f", posixpath.normpath(settings.queue.sqlite_path), "0660", user, group,
                     "-", ""))
        # plotter.db beside it: the plotter and the account console write it in turn.
        rows.append(("f", posixpath.join(posixpath.dirname(posixpath.normpath(
            settings.queue.sqlite_path)), "plotter.db"), "0660", user, group, "-", ""))
    for directory in list_dirs:
        if not any(directory == d or directory.startswith(d + "/") for d in ("/etc", "/usr")) \
                and directory != "/":
            # Debian 12 makes home directories 0700; the uPMU lists are 0644 inside one.
            rows.append(("a+", directory, "-", "-", "-", "-", f"u:{user}:x"))
    tools = posixpath.dirname(posixpath.normpath(settings.plotter.tagconfig))
    if not any(tools == d or tools.startswith(d + "/") for d in ("/etc", "/usr")) \
            and tools not in _SYSTEM_DIRS:
        rows += [("d", tools, "2775", "-", group, "-", ""),
                 ("z", posixpath.normpath(settings.plotter.tagconfig), "0664", "-", group,
                  "-", "")]
    if settings.plotter.https:
        rows.append(("z", posixpath.normpath(settings.plotter.key), "0600", user, group,
                     "-", ""))
    return "\n".join(f"{t:<5} {p:<26} {m:<5} {u:<4} {g:<5} {a:<3} {arg}".rstrip()
                     for t, p, m, u, g, a, arg in rows)


def _owned_dirs(settings: Settings) -> list[tuple[str, str]]:
    dirs = [("[paths] data", settings.paths.data), ("[paths] srv", settings.paths.srv)]
    queue_db = settings.queue.sqlite_path
    if queue_db and posixpath.dirname(queue_db) not in {d for _, d in dirs}:
        dirs.append(("[queue] url", posixpath.dirname(queue_db)))
    return [(k, posixpath.normpath(d)) for k, d in dirs]


def _data_dirs(settings: Settings) -> list[str]:
    return list(dict.fromkeys(d for _, d in _owned_dirs(settings)))


def _without_password(url: str) -> str:
    """``url`` with any user:password@ replaced (this file is world-readable)."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return scheme + sep + authority + slash + path


def _sv(value: str) -> str:
    """A value for supervisor's configuration, where ``%`` starts an expansion."""
    return value.replace("%", "%%")


def program_block(p: Program, layout: Layout, log_dir: str) -> str:
    """The ``[program:NAME]`` section of supervisord's configuration for ``p`` (also used
    by the demo for its simulated uPMUs, so they behave as the appliance's programs)."""
    environment = ",".join(f'{k}="{_sv(v)}"' for k, v in p.environment.items())
    return templating.render(
        "supervisor/program.conf", name=p.name, purpose=p.purpose, command=_sv(p.command),
        user=p.user or layout.user, group=layout.group, environment=environment,
        priority=p.priority,
        startsecs=layout.startsecs, startretries=p.startretries, stopwaitsecs=p.stopwaitsecs,
        log_dir=log_dir)


def nic_files(interface: str) -> list[FileSpec]:
    """/etc/network/interfaces: the manual's static address on ``interface``."""
    return [FileSpec("/etc/network/interfaces",
                     templating.render("network/interfaces", interface=interface,
                                       address=NIC_ADDRESS, netmask=NIC_NETMASK,
                                       gateway=NIC_GATEWAY), "nic")]


def shorewall_files(interface: str) -> list[FileSpec]:
    """The one-interface firewall of manual ch. 13 on ``interface``, started at boot."""
    files = [FileSpec(f"/etc/shorewall/{name}",
                      templating.render(f"shorewall/{name}",
                                        **({"interface": interface} if name == "interfaces"
                                           else {})), "shorewall")
             for name in ("interfaces", "zones", "policy", "rules")]
    files.append(FileSpec("/etc/default/shorewall",
                          templating.render("shorewall/default-shorewall"), "shorewall"))
    return files


def apcupsd_files() -> list[FileSpec]:
    """apcupsd for a USB APC SMT750: shut down after 30 s on battery (manual ch. 15)."""
    return [FileSpec("/etc/apcupsd/apcupsd.conf", templating.render("apcupsd/apcupsd.conf"),
                     "apcupsd"),
            FileSpec("/etc/default/apcupsd", templating.render("apcupsd/default-apcupsd"),
                     "apcupsd")]


def component_files(components: Sequence[str], settings: Settings, layout: Layout,
                    interface: str | None, operator_exists: bool = True) -> list[FileSpec]:
    """Every file of ``components`` (a subset of :data:`COMPONENTS`), in that order
    (``operator_exists``: see :func:`qss_files`).

    Raises:
        DeployError: as :func:`qss_files`.
        ValueError: nic or shorewall without an interface (a programming error).
    """
    specs: list[FileSpec] = []
    for component in COMPONENTS:
        if component not in components:
            continue
        if component in ("nic", "shorewall") and interface is None:
            raise ValueError(f"component {component} needs the network interface")
        if component == "qss":
            specs += qss_files(settings, layout, operator_exists)
        elif component == "nic":
            specs += nic_files(interface)  # type: ignore[arg-type]
        elif component == "shorewall":
            specs += shorewall_files(interface)  # type: ignore[arg-type]
        else:
            specs += apcupsd_files()
    return specs


def next_steps(changed: set[str], interface: str | None,
               joined: tuple[str, str] | None = None) -> list[str]:
    """What the operator runs so the changed files (target paths) take effect;
    ``joined`` is (account, group) when the account has just become a member of the
    group, which it is only from its next login on."""
    steps = []
    if changed & {"/etc/supervisor/supervisord.conf",
                  "/etc/systemd/system/supervisor.service.d/qss.conf"}:
        steps.append("sudo systemctl daemon-reload && sudo systemctl restart supervisor   "
                     "(restarts every program)")
    elif "/etc/supervisor/conf.d/qss.conf" in changed:
        steps.append("sudo supervisorctl update   (restarts the programs whose settings "
                     "changed)")
    if joined is not None:
        account, group = joined
        steps.append(f"log out and back in as {account} (every session, SSH too): {account} "
                     f"is now in group {group}, which takes effect at the next login; until "
                     f"then upmu-adm and clean_synced cannot open the queue without sudo")
    if "/etc/network/interfaces" in changed:
        steps.append(f"sudo ifdown {interface} && sudo ifup {interface}   (over SSH the "
                     f"session drops if the address changed: reconnect to the new one)")
    if changed & {f"/etc/shorewall/{n}" for n in ("interfaces", "zones", "policy", "rules")} \
            or "/etc/default/shorewall" in changed:
        steps.append("sudo shorewall check && sudo systemctl enable shorewall && "
                     "sudo shorewall safe-restart")
    if changed & {"/etc/apcupsd/apcupsd.conf", "/etc/default/apcupsd"}:
        steps.append("sudo systemctl enable apcupsd && sudo systemctl restart apcupsd")
    return steps


def missing_programs(settings: Settings, layout: Layout) -> list[str]:
    """Commands of the supervisord programs that are not installed (on this machine)."""
    out = []
    for p in programs(settings, layout):
        exe = p.command.split()[0]
        if not os.access(exe, os.X_OK):
            out.append(f"{p.name}: {exe}")
    return out
