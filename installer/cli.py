"""qss-get: set up and maintain the MicroPMU Quickstart Server (manual ch. 14).

A thin command. Its actions are one mutually exclusive group of flags; each is a row of
:data:`ACTIONS` (the flag, its argparse options, and a function ``action(env, args) ->
ExitStatus``, which may raise :class:`installer.files.DeployError`: :func:`main` makes
its reason a one-line error, or prints a :class:`installer.files.Cancelled` as is with
exit status 1), so a new action is a new row. Actions do their work through the
``installer`` library and see the world only through an
:class:`installer.environment.Environment` (root prefix, streams, clock, routing table,
system tools), which tests replace.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from qss import __version__
from qss.cli import CommandError, ExitStatus, add_traceback_argument, run

from . import backup, database, dataimport, ddrive, housekeeping, update
from .components import COMPONENTS
from .configure import BadInterface, configure
from .environment import Environment
from .files import Cancelled, DeployError
from .services import tools_for

_DESCRIPTION = """\
Set up and maintain the MicroPMU Quickstart Server. Run it with sudo: it writes the
system's configuration. Choose one action.
"""
_EPILOG = """\
components of --config:
  qss        the appliance's settings, /etc/qss/qss.ini (written only when missing: an
             existing one is the operator's and is kept; a new one has the BTrDB APIs
             listen on the network, 0.0.0.0:4410 and 0.0.0.0:9000), and from them:
             supervisord (/etc/supervisor/supervisord.conf, conf.d/qss.conf) running the
             programs btrdb, receiver, sync2q, and mongo when [queue] url is a MongoDB on
             this machine, as service user 'qss', logging to /var/log/<program>.log; the
             systemd drop-in /etc/systemd/system/supervisor.service.d/qss.conf that
             starts them at boot once the data drive (/ssd) is mounted and the network
             is up, and stops them gracefully at shutdown; the service user and its
             directories (/etc/sysusers.d/qss.conf, /etc/tmpfiles.d/qss.conf), shared
             with the operator account 'manager', which joins group 'qss' (from its next
             login it uses upmu-adm, clean_synced and supervisorctl status without sudo)
  nic        /etc/network/interfaces: static address 172.16.1.100/24, gateway
             172.16.1.1, on the interface of this machine's default route (manual ch. 7)
  shorewall  /etc/shorewall/{interfaces,zones,policy,rules} and /etc/default/shorewall:
             from the network admit only ping and TCP 22 (SSH), 80 and 443 (plotter),
             1883 (uPMU data), 4410 and 9000 (BTrDB API); start at boot (manual ch. 13)
  apcupsd    /etc/apcupsd/apcupsd.conf and /etc/default/apcupsd: an APC SMT750 UPS on
             USB; shut the server down after 30 s on battery (manual ch. 15)
  all        every component above

A file that is already right is left alone, so running it twice changes nothing. A file
that differs is shown as a diff and, once confirmed (or with --yes), copied to
<file>.qss-bak-<date>T<time> and replaced. Each line of output says what happened to
one file: created, unchanged, replaced (with its backup) or kept; then what to run for
the changes to take effect.

install and update (docs/install-update.md): archives from the PSL, e.g. on a USB
drive mounted at /mnt, named qss-install-X.Y.Z.tar.gz, qss-update-X.Y.Z.tar.gz and
qss-packages-X.Y.Z.tar.gz; PATH is the archive or the folder holding it (the newest
version there is taken). Each archive is checked whole against its manifest (SHA-256 of
every member) before anything is changed; a damaged or altered one is refused with the
member named. The suite lives in /opt/qss/versions/X.Y.Z, one Python environment per
version; /opt/qss/current names the one in use (supervisord runs
/opt/qss/current/bin/...), /opt/qss/previous the one before, and /usr/local/bin links
each command to /opt/qss/current/bin.
  -u             builds the new version beside the running one, saves the configuration
                 files, lets the new version bring them to its format, switches current
                 in one step and restarts the services, which must reach RUNNING within
                 60 s; a failure at any step restores the files and the old version
  --rollback     puts back the files saved by the last update, switches current to the
                 previous version and restarts the services
  -i             for a server without the suite: packages first, then the suite, then
                 --config all (--yes: no reboot question)
  -p             required packages: supervisor, shorewall, python3-venv; optional:
                 apcupsd, mongodb (when the archive holds them)

data actions (docs/operations.md): on the appliance of --settings PATH, else of
$QSS_CONFIG, else of /etc/qss/qss.ini, as every command of the suite (on the demo:
cd demo && export QSS_CONFIG=$PWD/etc/qss/qss.ini); with --root DIR, of
DIR/etc/qss/qss.ini, its paths under DIR (a path already inside DIR as it is):
  --indexes      SQLite or MongoDB queue: create the missing indexes, name each one
  --newdb        ask (y or Y goes ahead, anything else cancels), stop the services
                 (sudo supervisorctl stop all), empty [paths] data and the queue, start
                 the services; upmuconfig.ini and backupconfig.ini are kept (sync2q
                 creates the streams again from upmuconfig.ini)
  --data-import  moves, never copies twice or overwrites: a file already in
                 upmu_data_import with the same bytes is removed from upmu_data; one
                 with other bytes is kept as NAME.conflict-N.dat
  --backup       with the SQLite queue the services keep running: each database is a
                 consistent snapshot, the queue before the store; with MongoDB they are
                 stopped while copying. Written as qss-backup-<stamp>.partial, renamed
                 once every file matched MANIFEST.sha256 when read back
  --restore      refuses a backup with a changed, missing or extra file before touching
                 anything; sets directories 2770 and files 0660 (owner qss:qss on /);
                 qss.ini is written only when missing
  --mount-ddrive adds "UUID=... /ssd TYPE defaults,nofail 0 2" to /etc/fstab (backed
                 up first); refuses when another line mounts something at /ssd
  --status       the same report as upmu-adm status (supervisor's programs need sudo;
                 under --root they are not asked); --watch SECONDS repeats it, on a
                 terminal in place, until Ctrl+C
  --clean-synced the clean_synced command: type delete to go ahead; the SQLite queue
                 then gives the freed pages back (incremental vacuum) and says how much
  Stopping the services: when supervisor cannot be reached, only if no qss-btrdb or
  sync2q holds its lock (and, on /, no process has the queue open).

examples:
  sudo qss-get -u /mnt                  update from the USB drive at /mnt
  sudo qss-get -i /mnt -a --ups         fresh install with every package and the UPS
  sudo qss-get -p /mnt apcupsd          add the UPS daemon later
  sudo qss-get --rollback               back to the version before the last update
  sudo qss-get --config all             set up a new server
  sudo qss-get --config shorewall --interface eno2
  qss-get --config all --root /tmp/img --yes --interface eno1
                                        write the files into a folder, not the system
  sudo qss-get --backup /mnt            back up onto the drive mounted at /mnt
  sudo qss-get --restore /mnt/qss-backup-20240506T070809
  cd ~ && qss-get --data-import         gather ~/upmu_data into ~/upmu_data_import
  sudo qss-get --status --watch 5       watch the data arrive (Ctrl+C stops)
  qss-get --clean-synced                free the space of files already in BTrDB
  qss-get --status --settings demo/etc/qss/qss.ini
                                        the demo's appliance (./dev demo)

exit status:
  0  done (or nothing to do)
  1  failed or cancelled; the reason is printed (files written before a failure are
     complete: each is replaced in one step)
  2  invalid command line
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but an invalid call also says where the full usage is, names an unknown
    option even when no action was given, and points a settings file given to --config
    at --settings."""

    _argv: list[str] = []

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        self._argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> None:  # type: ignore[override]
        if message.startswith("one of the arguments "):     # no action given
            message = "choose an action: " + ", ".join(
                a.flags[0] for a in ACTIONS) + " or --help"
            unknown = unknown_options(self, self._argv)
            if unknown:
                message = (f"unrecognised option{'s' if len(unknown) > 1 else ''} "
                           f"{', '.join(map(repr, unknown))}; {message}")
        elif message.startswith("unrecognized arguments: "):
            # argparse's spelling, once an action was given; the same words as above
            unknown = message.split(": ", 1)[1].split()
            kind = "option" if all(u.startswith("-") for u in unknown) else "argument"
            message = (f"unrecognised {kind}{'s' if len(unknown) > 1 else ''} "
                       f"{', '.join(map(repr, unknown))}")
        elif (m := re.match(r"argument --config: invalid choice: '?([^' ]*)", message)) \
                and (m[1].endswith(".ini") or "/" in m[1]):
            message += (f"; a settings file goes with --settings (e.g. qss-get --status "
                        f"--settings {m[1]})")
        self.print_usage(sys.stderr)
        self.exit(ExitStatus.USAGE, f"{self.prog}: error: {message}\n"
                                    f"(run '{self.prog} --help' for the actions and options)\n")


def unknown_options(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """The options in ``argv`` that ``parser`` does not know (nor as an abbreviation)."""
    known = parser._option_string_actions
    unknown = []
    for arg in argv:
        if arg == "--":
            break
        if not arg.startswith("-") or arg == "-" or arg[1:2].isdigit():
            continue
        name = arg.split("=", 1)[0]
        if name in known or (name.startswith("--") and any(k.startswith(name)
                                                           for k in known)):
            continue
        if not name.startswith("--") and name[:2] in known:    # -yvalue, -ab
            continue
        unknown.append(name)
    return unknown


@dataclass(frozen=True)
class Action:
    """A row of the action table: a flag of the mutually exclusive group, its argparse
    options (``dest`` is the row's name), and the function that does it."""

    name: str
    flags: tuple[str, ...]
    run: Callable[[Environment, argparse.Namespace], ExitStatus]
    options: dict = field(default_factory=dict)


# -- actions -------------------------------------------------------------------------

def action_version(env: Environment, args: argparse.Namespace) -> ExitStatus:
    """Print the version of the Quickstart Server software."""
    env.say(f"MicroPMU Quickstart Server {__version__}")
    return ExitStatus.OK


def action_install(env: Environment, args: argparse.Namespace) -> ExitStatus:
    """Fresh install from a qss-install archive (manual ch. 14.1)."""
    update.install(env, tools_for(env), args.install or None, all_=args.all, ups=args.ups,
                   assume_yes=args.yes, interface=args.interface)
    return ExitStatus.OK


def action_update(env: Environment, args: argparse.Namespace) -> ExitStatus:
    """Update from a qss-update archive, rolling back by itself on failure (ch. 14.2)."""
    update.update(env, tools_for(env), args.update or None)
    return ExitStatus.OK


def action_packages(env: Environment, args: argparse.Namespace) -> ExitStatus:
    """Install or update Debian packages from a qss-packages archive (ch. 14.3)."""
    update.install_packages(env, args.packages, args.all)
    return ExitStatus.OK


def action_rollback(env: Environment, args: argparse.Namespace) -> ExitStatus:
    """Go back to the version before the last update."""
    done = update.rollback(env, tools_for(env), assume_yes=args.yes)
    if not done:
        env.say("cancelled: nothing changed")
    return ExitStatus.OK if done else ExitStatus.ERROR


def action_config(env: Environment, args: argparse.Namespace) -> ExitStatus:
    """Write the default configuration of the chosen components (see the epilog)."""
    components = COMPONENTS if "all" in args.config else tuple(dict.fromkeys(args.config))
    try:
        ok = configure(env, components, interface=args.interface, assume_yes=args.yes)
    except BadInterface as exc:
        raise CommandError(str(exc), ExitStatus.USAGE) from None
    return ExitStatus.OK if ok else ExitStatus.ERROR


def action_indexes(env: Environment, args: argparse.Namespace) -> ExitStatus:
    """Create the queue's missing indexes and say which (manual ch. 16)."""
    database.ensure_indexes(env, tools_for(env))
    return ExitStatus.OK


def action_newdb(env: Environment, args: argparse.Namespace) -> ExitStatus:
    """Delete the BTrDB data and the queue, after the manual's question (manual ch. 6)."""
    database.newdb(env, tools_for(env), assume_yes=args.yes)
    return ExitStatus.OK


def action_data_import(env: Environment, args: argparse.Namespace) -> ExitStatus:
    """Gather a uPMU's .dat files into upmu_data_import for importdat (manual ch. 4.2)."""
    dataimport.data_import(env, args.data_import or None)
    return ExitStatus.OK


def action_backup(env: Environment, args: argparse.Namespace) -> ExitStatus:
    """Back up the data, the queue and the settings into DEST (manual ch. 5.3)."""
    backup.backup(env, tools_for(env), args.backup)
    return ExitStatus.OK


def action_restore(env: Environment, args: argparse.Namespace) -> ExitStatus:
    """Restore a backup made by --backup, after checking it and asking (manual ch. 5.4)."""
    backup.restore(env, tools_for(env), args.restore, assume_yes=args.yes)
    return ExitStatus.OK


def action_status(env: Environment, args: argparse.Namespace) -> ExitStatus:
    """Services, disk and per-uPMU backlog, as upmu-adm status; --watch: until Ctrl+C."""
    housekeeping.status(env, tools_for(env), args.watch)
    return ExitStatus.OK


def action_clean_synced(env: Environment, args: argparse.Namespace) -> ExitStatus:
    """clean_synced (manual ch. 12): delete the synced queued files after "delete"."""
    done = housekeeping.clean_synced(env, tools_for(env), assume_yes=args.yes)
    return ExitStatus.OK if done else ExitStatus.ERROR


def action_mount_ddrive(env: Environment, args: argparse.Namespace) -> ExitStatus:
    """Mount the file system labeled DATA at /ssd, now and at boot (fstab, by UUID)."""
    ddrive.mount_ddrive(env, tools_for(env))
    return ExitStatus.OK


#: The actions on the appliance's data, which read its settings (installer.appliance).
DATA_ACTIONS = frozenset({"backup", "restore", "indexes", "newdb", "status",
                          "clean_synced"})

ACTIONS: tuple[Action, ...] = (
    Action("install", ("-i", "--install"), action_install, dict(
        nargs="?", const="", metavar="PATH",
        help="fresh install from qss-install-X.Y.Z.tar.gz in PATH (a file or a folder; "
             "default: the current directory): packages (required; -a all; --ups "
             "apcupsd), the suite in /opt/qss, --config all; then asks to reboot")),
    Action("update", ("-u", "--update"), action_update, dict(
        nargs="?", const="", metavar="PATH",
        help="update from the newest qss-update-X.Y.Z.tar.gz in PATH (default: the "
             "current directory): checked whole first, installed beside the running "
             "version, switched in one step, services restarted; any failure goes back "
             "to the running version by itself")),
    Action("packages", ("-p", "--packages"), action_packages, dict(
        nargs="*", metavar="ARG",
        help="[PATH] PKG... : install or update Debian packages from "
             "qss-packages-X.Y.Z.tar.gz in PATH (default: the current directory); -a: "
             "all of them; an unknown name lists the archive's")),
    Action("rollback", ("--rollback",), action_rollback, dict(
        action="store_true",
        help="go back to the version in use before the last update (its configuration "
             "files too) and restart the services, after asking")),
    Action("config", ("--config",), action_config, dict(
        nargs="+", metavar="COMPONENT", choices=(*COMPONENTS, "all"),
        help="write the default configuration of one or more components: "
             f"{', '.join(COMPONENTS)} or all (what each writes: below)")),
    Action("backup", ("--backup",), action_backup, dict(
        metavar="DEST",
        help="copy the BTrDB data, the queue, upmuconfig.ini, backupconfig.ini and "
             "qss.ini into DEST/qss-backup-<date>T<time>/ with a SHA-256 manifest, and "
             "verify the copy; refused before copying when DEST lacks room")),
    Action("restore", ("--restore",), action_restore, dict(
        metavar="SRC",
        help="restore a backup folder made by --backup: check every file against its "
             "manifest first, ask, stop the services, replace the data and the queue, "
             "start the services")),
    Action("data_import", ("--data-import",), action_data_import, dict(
        nargs="?", const="", metavar="PATH",
        help="move every .dat file beneath the folder upmu_data (in PATH, or PATH "
             "itself; default: the current directory) into one folder upmu_data_import "
             "beside it, never overwriting, and print the importdat line to run next")),
    Action("indexes", ("--indexes",), action_indexes, dict(
        action="store_true",
        help="create the indexes the queue lacks (SQLite or MongoDB) and say which; for "
             "sync2q's 'Overflow sort stage buffered data usage exceeds internal limit'")),
    Action("mount_ddrive", ("--mount-ddrive", "--mount-Ddrive"), action_mount_ddrive, dict(
        action="store_true",
        help="find the file system labeled DATA, add it to /etc/fstab by UUID at /ssd "
             "(nofail) and mount it; a second run changes nothing")),
    Action("newdb", ("--newdb",), action_newdb, dict(
        action="store_true",
        help="delete all BTrDB data and the queue and start both empty, after asking "
             "(y or Y goes ahead; anything else cancels); keeps upmuconfig.ini")),
    Action("status", ("--status",), action_status, dict(
        action="store_true",
        help="show the services (supervisor's programs), the data drive against the "
             "receiver's limit and each uPMU's last file received and unsynced backlog, "
             "as upmu-adm status does; with --watch, again every few seconds")),
    Action("clean_synced", ("--clean-synced",), action_clean_synced, dict(
        action="store_true",
        help="as clean_synced: count the queued files already stored in BTrDB and their "
             "size, delete them once you type delete (--yes: without asking) and give "
             "the space back to the file system; unsynced files are never deleted")),
    Action("version", ("--version",), action_version, dict(
        action="store_true",
        help="print the version of the Quickstart Server software")),
)


# -- the command ---------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """The argument parser of qss-get (also used by the help-text tests)."""
    p = _Parser(prog="qss-get", usage="%(prog)s ACTION [OPTIONS]", description=_DESCRIPTION,
                epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                add_help=False)
    actions = p.add_argument_group("actions (exactly one)")
    group = actions.add_mutually_exclusive_group(required=True)
    for action in ACTIONS:
        group.add_argument(*action.flags, dest=action.name, **action.options)
    actions.add_argument("-h", "--help", "-help", action="help",
                         help="show this help (also shown, in short, after an invalid call)")
    opts = p.add_argument_group("options")
    opts.add_argument("--root", metavar="DIR", default="/",
                      help="write the files under DIR instead of / (an image, a package, a "
                           "test); their contents still name the appliance's own paths, "
                           "and nothing on this machine is started or changed (default /); "
                           "data actions: the appliance of DIR/etc/qss/qss.ini, whose paths "
                           "are taken under DIR (a path already inside DIR as it is)")
    opts.add_argument("--settings", metavar="PATH",
                      help="with a data action (" + ", ".join(
                          a.flags[0] for a in ACTIONS if a.name in DATA_ACTIONS)
                      + "): the appliance's settings file (default $QSS_CONFIG, else "
                        "/etc/qss/qss.ini, as every command of the suite; under --root "
                        "DIR: DIR/etc/qss/qss.ini)")
    opts.add_argument("--yes", action="store_true",
                      help="answer yes to the question (for scripts): --config replaces "
                           "files that differ (the previous files are still backed up); "
                           "--newdb and --restore go ahead; --clean-synced deletes")
    opts.add_argument("--watch", nargs="?", const=2.0, type=float, metavar="SECONDS",
                      help="with --status: show the report again every SECONDS (default "
                           "2) until Ctrl+C")
    opts.add_argument("-a", "--all", action="store_true",
                      help="with -i: install every optional package too; with -p: every "
                           "package of the archive")
    opts.add_argument("--ups", "-ups", action="store_true",   # -ups: the manual's spelling
                      help="with -i: install apcupsd for an uninterruptible power supply")
    opts.add_argument("--interface", metavar="NAME",
                      help="network interface of the uPMUs' network for nic and shorewall "
                           "(default: the interface of this machine's default route)")
    add_traceback_argument(opts)
    return p


def main(argv: Sequence[str], env: Environment | None = None) -> int:
    """Parse ``argv`` and run the chosen action in ``env`` (default: this machine).

    Returns the exit status; raises :class:`CommandError` for the operator's mistakes
    (printed as one line by :func:`qss.cli.run`).
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:   # --help (0) or an invalid call (2), already printed
        return int(exc.code or 0)
    if args.watch is not None and not args.status:
        raise CommandError("--watch goes with --status (qss-get --status --watch 5)",
                           ExitStatus.USAGE)
    if args.watch is not None and not 0 < args.watch < 86400:
        raise CommandError(f"--watch {args.watch:g}: give the seconds between refreshes "
                           f"(more than 0, e.g. --watch 5)", ExitStatus.USAGE)
    if (args.all and args.install is None and args.packages is None) or (
            args.ups and args.install is None):
        raise CommandError("-a goes with -i or -p, --ups with -i (qss-get -i /mnt -a --ups)",
                           ExitStatus.USAGE)
    env = env or Environment.from_system()
    root = Path(os.path.abspath(args.root))
    if not root.is_dir():
        raise CommandError(f"--root {args.root!r}: no such directory; create it first",
                           ExitStatus.USAGE)
    env = replace(env, root=root)
    # Unused actions are None or False; -p with no arguments at all is [], still chosen.
    action = next(a for a in ACTIONS if getattr(args, a.name) not in (None, False))
    if args.settings is not None:
        env = replace(env, settings_file=_settings_file(args.settings, action))
    try:
        return int(action.run(env, args))
    except Cancelled as exc:       # the operator's answer, not a failure: said on stdout
        env.say(str(exc))
        return int(ExitStatus.ERROR)
    except DeployError as exc:     # the reason an action failed: one line
        raise CommandError(str(exc)) from None


def _settings_file(given: str, action: Action) -> Path:
    """``--settings PATH`` as an absolute path, for a data action only.

    Raises:
        CommandError: another action, or no such file (usage errors).
    """
    if action.name not in DATA_ACTIONS:
        raise CommandError(
            "--settings goes with the data actions (" + ", ".join(
                a.flags[0] for a in ACTIONS if a.name in DATA_ACTIONS)
            + f"), not {action.flags[-1]}", ExitStatus.USAGE)
    path = Path(os.path.abspath(given))
    if not path.is_file():
        raise CommandError(f"--settings {given!r}: no such file", ExitStatus.USAGE)
    return path


def entry() -> None:
    """Console-script entry point ``qss-get``."""
    sys.exit(run(main, prog="qss-get"))


if __name__ == "__main__":
    entry()
