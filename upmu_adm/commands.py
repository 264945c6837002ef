"""upmu-adm's commands (manual chapter 3), registered on :data:`REGISTRY`.

Each command takes the :class:`~upmu_adm.state.ShellState` and its arguments and returns
a :class:`~upmu_adm.registry.Reply`, or raises :class:`~upmu_adm.registry.Refusal`; none
prints or asks (see :mod:`upmu_adm.registry`). Edits change the working copy only;
``save`` is :func:`upmu_adm.saving.save` (write ``upmuconfig.ini``, apply the streams'
metadata in BTrDB, record ``backupconfig.ini``, delete what ``rem`` was told to), and the
command only words its result. The commands on queued files and the server are in
:mod:`upmu_adm.datafiles` and :mod:`upmu_adm.status`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from qss.naming import looks_like_psl_serial, normal_serial
from qss.queue import QueueError, SerialStats
from qss.upmuconfig import (Upmu, UpmuConfigError, UpmuConflictError, UpmuListError,
                            UpmuNotFoundError)

from .metadata import StoredDataError
from .registry import BOOL, COMMAND, UPMU, Confirm, Refusal, Registry, Reply, fail, ok
from .saving import ReplayError, in_use, save
from .savereport import save_lines
from .state import Edit, ShellState, StreamDrop
from .views import BTRDB_KEPT, count, mode, number, size, table, tally, when

__all__ = ["GROUPS", "REGISTRY", "command_table", "parse_bool", "queue_stats"]

#: Command groups, in the order ``help`` lists them, with their headings.
GROUPS = {
    "list": "The uPMU list (edits stay in memory until save):",
    "data": "Queued files and the server (these act at once):",
    "shell": "The shell:",
}
#: The shell's commands.
REGISTRY = Registry(groups=tuple(GROUPS))

_NOT_SAVED = "not saved yet; type save to apply"


def parse_bool(word: str) -> bool | None:
    """``true`` -> True, ``false`` -> False (any case, as the manual writes them);
    anything else None."""
    return {"true": True, "false": False}.get(word.lower())


def _find(state: ShellState, name: str, key: str) -> Upmu:
    """The uPMU named by IP, serial or alias.

    Raises:
        Refusal: no such uPMU, or the key is ambiguous (the text says which and why).
    """
    try:
        return state.upmus.find(key)
    except UpmuNotFoundError as exc:
        raise Refusal(f"{name}: {exc}; type list to see the uPMUs") from None
    except UpmuListError as exc:
        raise Refusal(f"{name}: {exc}") from None


# -- add -------------------------------------------------------------------------------

@REGISTRY.command(
    "add", usage="add IPADDR SERIAL ALIAS [ext]", complete=(None, None, None, BOOL),
    group="list", help="""
add a uPMU; ext true for extended mode
The uPMU gets one stream per quantity its files carry (13 in base mode, 19 in extended
mode), each with a new UUID, under /upmu/ALIAS/. Without ext (or with false) the uPMU is
in base mode; setext switches later without changing any UUID.
IPADDR is an IPv4 address (192.168.1.24); SERIAL is on the device's label (PSL serials
are P and seven digits: p3112233 is written P3112233; others are accepted with a
warning); ALIAS is any name without
spaces or / [ ] # " ' , \\. None of the three may be used by another uPMU.
Examples:
  add 192.168.1.24 P3112233 uPMU1          (base mode)
  add 192.168.1.24 P3112233 uPMU1 true     (extended mode)""")
def cmd_add(state: ShellState, args: Sequence[str]) -> Reply:
    ip, given, alias = args[:3]
    serial = normal_serial(given)       # p3001234: as on the device, P3001234
    extended = False
    if len(args) == 4:
        value = parse_bool(args[3])
        if value is None:
            return REGISTRY.get("add").usage_error(
                f"ext must be true (extended mode) or false (base mode), not {args[3]!r}")
        extended = value
    try:
        upmu = state.upmus.add(ip, serial, alias, extended)
    except UpmuListError as exc:
        return fail(f"add: {exc}")
    state.record(Edit("add", (ip, serial, alias, extended),
                      f"add {ip} {serial} {alias} {str(extended).lower()}"))
    lines = []
    if serial != given:
        lines.append(f"note: serial number {given!r} written as {serial!r}, as the device "
                     f"writes it (PSL serials are P and seven digits)")
    if not looks_like_psl_serial(serial):
        lines.append(f"warning: serial number {serial!r} does not look like a PSL serial "
                     f"(P and seven digits, e.g. P3001234); check it against the device's "
                     f"label, the receiver refuses files from any other serial")
    lines.append(f"Added {upmu.describe()} in {mode(extended)} mode with "
                 f"{count(len(upmu.streams), 'stream')} under "
                 f"/{upmu.collection('L1MAG')}/ - {_NOT_SAVED}")
    return ok("\n".join(lines))


# -- rem -------------------------------------------------------------------------------

@REGISTRY.command(
    "rem", usage="rem IP|SERIAL|ALIAS", complete=(UPMU,), group="list",
    help="""
remove a uPMU (asks first)
Name it by its IP address, serial number or alias.
When the uPMU has queued files, rem then offers to delete them too: type yes to have
save delete them when it saves the removal; anything else keeps them. Then, when it has
streams in BTrDB, rem offers to delete them and all their data the same way (it shows
how many streams and points); streams whose UUIDs another uPMU in the list has are
never deleted. Without a terminal (-c, scripts) both are kept even with --yes; delete
queued files later with delbackup SERIAL all. reload, or leaving without saving, undoes
both. After save, the receiver refuses the uPMU's files (the device keeps them and
retries), so add it again to resume.
Examples:
  rem 192.168.1.24
  rem P3001234
  rem uPMU1""")
def cmd_rem(state: ShellState, args: Sequence[str]) -> Reply:
    key = args[0]
    try:
        upmu = _find(state, "rem", key)
    except Refusal:
        # A section the list leaves out as unusable can still be removed by its IP.
        found = [u for u in state.upmus.excluded if u.ip == key.strip()]
        if not found:
            raise
        upmu = found[0]

    def yes() -> Reply:
        state.upmus.remove(upmu.ip)
        state.record(Edit("rem", (upmu.ip,), f"rem {upmu.ip}"))
        return _offer_purge(state, upmu, f"Removed {upmu.describe()} - {_NOT_SAVED}.",
                            lambda lines: _offer_drop(state, upmu, lines))

    return ok(confirm=Confirm(f"Remove {upmu.describe()} from the uPMU list?", yes,
                              lambda: ok(f"Kept {upmu.describe()}; nothing changed")))


def _offer_purge(state: ShellState, upmu: Upmu, removed: str,
                 then: Callable[[list[str]], Reply]) -> Reply:
    """After a removal: offer to delete the uPMU's queued files when it is saved, then
    continue with ``then(lines so far)`` (the offer to delete its streams)."""
    # Without a BTrDB step (library use) the stored data is simply kept, and said so.
    kept = f"; {BTRDB_KEPT}" if state.btrdb is None else ""
    if state.services.queue_url is None or not upmu.serial:
        return then([removed, "Its queued files and its data stored in BTrDB are kept"
                     if state.btrdb is None else "Its queued files are kept"])
    try:
        stats = queue_stats(state).get(upmu.serial.casefold())
    except QueueError as exc:
        return then([removed, f"Its queued files are kept (cannot look at the queue: "
                              f"{exc}){kept}"])
    if stats is None or not stats.files:
        return then([removed, f"It has no queued files{kept}"])
    files = tally(stats.files, stats.bytes)
    details = [f"{upmu.describe()} has {files} queued."]
    if stats.unsynced_files:
        details.append(f"WARNING: {tally(stats.unsynced_files, stats.unsynced_bytes)} of "
                       f"them are not synced to BTrDB yet: deleting them loses their data.")
    details.append(f"Either way {BTRDB_KEPT}." if state.btrdb is None else
                   "Deleting them does not delete its data stored in BTrDB (asked next).")

    def purge() -> Reply:
        state.purges[upmu.serial] = upmu.describe()
        return then([removed, f"Its queued files will be deleted when you save{kept}"])

    return ok(confirm=Confirm(
        "\n".join(details + ["Delete its queued files when you save the removal?"]),
        purge, lambda: then([removed, f"Its queued files ({number(stats.files, 'file')}, "
                                      f"{size(stats.bytes)}) are kept{kept}"]),
        word="yes", unattended=False))


def _offer_drop(state: ShellState, upmu: Upmu, lines: list[str]) -> Reply:
    """After the queued-files offer: offer to delete the removed uPMU's streams (and all
    their data) from BTrDB when the removal is saved. Needs a typed yes; --yes never
    answers it. Streams whose UUIDs another uPMU of the list has are left out."""
    if state.btrdb is None:
        return ok("\n".join(lines))
    used = in_use(state.upmus)
    mine = [(name, info.uuid) for name, info in upmu.streams.items()]
    shared = sorted({used[u] for _, u in mine if u in used})
    drop = StreamDrop(upmu.describe(), tuple((n, u) for n, u in mine if u not in used))
    note = (f"its streams whose UUIDs {', '.join(shared)} also has are kept"
            if shared else "")
    if not drop.streams:
        return ok("\n".join(lines + ["Its data stored in BTrDB is kept ("
                                     + (note or "it has no stream UUIDs") + ")"]))
    what = state.btrdb.what
    try:
        stored = state.btrdb.stored(drop.uuids)
    except StoredDataError as exc:
        short = f"{count(len(drop.streams), 'stream')}, not counted"
        found = (f"{count(len(drop.streams), 'stream')} in upmuconfig.ini, not counted "
                 f"in BTrDB ({exc.reason})")
    else:
        if not stored.existing:
            return ok("\n".join(lines + [f"It has no streams stored in {what}"
                                         + (f"; {note}" if note else "")]))
        points = ("" if stored.points is None
                  else f" holding {number(stored.points, 'point')}")
        found = short = f"{count(len(stored.existing), 'stream')} in {what}{points}"
    details = [f"{upmu.describe()} has {found}."]
    if note:
        details.append(f"Of its streams, those whose UUIDs {', '.join(shared)} also has "
                       f"are kept.")
    details.append("WARNING: deleting them deletes all their data from BTrDB for good.")

    def yes() -> Reply:
        state.drops[upmu.ip] = drop
        return ok("\n".join(lines + [
            f"Its streams in BTrDB ({short}) will be deleted with all their data when "
            f"you save"]))

    return ok(confirm=Confirm(
        "\n".join(details + ["Delete its streams and all their data from BTrDB when you "
                             "save the removal?"]),
        yes, lambda: ok("\n".join(lines + [f"Its streams and data stored in BTrDB are "
                                           f"kept ({short})"])),
        word="yes", unattended=False))


def queue_stats(state: ShellState) -> dict[str, SerialStats]:
    """The queue's figures per serial, keyed by casefolded serial.

    Raises:
        QueueError: the queue cannot be opened or read.
    """
    return {k.casefold(): v for k, v in state.services.queue().stats().items()}


# -- list, show --------------------------------------------------------------------------

def _streams(u: Upmu) -> str:
    have = sum(1 for s in u.active_streams if s in u.streams)
    want = len(u.active_streams)
    return str(have) if have == want else f"{have} of {want}"


@REGISTRY.command(
    "list", usage="list", group="list",
    help="""
list the uPMUs, marking unsaved changes
Shows each uPMU's IP address, serial number, alias, mode and number of streams, when
its last file was received (UTC) and its unsynced backlog: the files queued that
sync2q has not stored in BTrDB yet. Changes not saved yet are marked added, changed
or removed; problems found in upmuconfig.ini are listed below the table, and so are
queued files of serial numbers that are not in the list.""")
def cmd_list(state: ShellState, args: Sequence[str]) -> Reply:
    d = state.pending()
    added = {u.ip for u in d.added}
    changed = {new.ip for _, new in d.changed}
    marked = [(u, "added" if u.ip in added else "changed" if u.ip in changed else "")
              for u in state.upmus] + [(u, "removed") for u in d.removed]
    stats, why = _list_stats(state)
    rows = []
    for u, mark in marked:
        row = [u.ip, u.serial, u.alias, mode(u.extended), _streams(u)]
        if stats is not None:
            s = stats.get(u.serial.casefold())
            row += [when(s.last_received)[:16] + " UTC" if s and s.last_received
                    else "never",
                    tally(s.unsynced_files, s.unsynced_bytes) if s and s.unsynced_files
                    else "none"]
        rows.append(row + [mark])
    unsaved = state.unsaved
    lines = []
    if rows:
        headers = ["IP", "SERIAL", "ALIAS", "MODE", "STREAMS"]
        if stats is not None:
            headers += ["LAST FILE RECEIVED", "UNSYNCED BACKLOG"]
        headers.append("UNSAVED")
        if not unsaved:
            headers, rows = headers[:-1], [r[:-1] for r in rows]
        lines.append(table(headers, rows))
        lines.append(f"{count(len(state.upmus), 'uPMU')} in {state.path}")
    else:
        lines.append(f"No uPMUs in {state.path}; add one with: add IPADDR SERIAL ALIAS "
                     f"[ext]")
    if unsaved:
        lines[-1] += f"; {state.describe_unsaved()[0]} - type save to apply"
    if why:
        lines.append(f"(last file received and backlog not shown: {why})")
    lines += [f"warning: {p}" for p in state.upmus.problems]
    if stats:
        known = {u.serial.casefold() for u, _ in marked}
        others = [f"{s.serial} {tally(s.files, s.bytes)}, {s.unsynced_files:,} unsynced"
                  for k, s in stats.items() if k not in known and s.files]
        if others:
            lines.append(f"Queued files of serial numbers not in the list: "
                         f"{'; '.join(others)} (delete them with delbackup SERIAL all)")
    return ok("\n".join(lines))


def _list_stats(state: ShellState) -> tuple[dict[str, SerialStats] | None, str | None]:
    """(figures per casefolded serial, None), or (None, why not) when the queue cannot
    be read; (None, None) when no queue is configured (library use)."""
    if state.services.queue_url is None:
        return None, None
    try:
        return queue_stats(state), None
    except QueueError as exc:
        return None, str(exc)


@REGISTRY.command(
    "show", usage="show IP|SERIAL|ALIAS", complete=(UPMU,), group="list",
    help="""
show a uPMU's streams, UUIDs and paths
Shows its mode, and each stream's UUID, BTrDB path and unit.
Streams kept for extended mode while the uPMU is in base mode are listed too: they keep
their UUIDs, so a switch back with setext reuses them.""")
def cmd_show(state: ShellState, args: Sequence[str]) -> Reply:
    upmu = _find(state, "show", args[0])
    active = [s for s in upmu.active_streams if s in upmu.streams]
    kept = [s for s in upmu.streams if s not in upmu.active_streams]
    missing = [s for s in upmu.active_streams if s not in upmu.streams]
    rows = [[s, str(upmu.streams[s].uuid), upmu.streams[s].path, upmu.streams[s].unit]
            for s in active]
    lines = [f"{upmu.describe()}: {mode(upmu.extended)} mode, "
             f"{count(len(active), 'stream')}"]
    if rows:
        lines.append(table(["STREAM", "UUID", "PATH", "UNIT"], rows, indent="  "))
    if kept:
        lines.append(f"Kept for extended mode, same UUIDs when switched back: "
                     f"{', '.join(kept)}")
    if missing:
        lines.append(f"warning: no usable stream section for {', '.join(missing)}; "
                     f"see the warnings of list")
    lines += [f"Metadata/{k} = {v}" for k, v in upmu.metadata.items()]
    return ok("\n".join(lines))


# -- setext ------------------------------------------------------------------------------

@REGISTRY.command(
    "setext", usage="setext IP|SERIAL|ALIAS true|false", complete=(UPMU, BOOL),
    group="list",
    help="""
switch to extended (true) or base (false)
Stream UUIDs never change.
Extended mode adds six streams (FUND_W FUND_VAR FUND_VA FUND_DPF FREQ_L1_1S
FREQ_L1_C37) to the 13 of base mode. Switching to base keeps the six streams and their
UUIDs in upmuconfig.ini, so switching back reuses them and no stored data is orphaned.
Set the same mode on the device, or its files will not match.
Examples:
  setext 192.168.1.101 true
  setext uPMU1 false""")
def cmd_setext(state: ShellState, args: Sequence[str]) -> Reply:
    extended = parse_bool(args[1])
    if extended is None:
        return REGISTRY.get("setext").usage_error(
            f"mode must be true (extended) or false (base), not {args[1]!r}")
    upmu = _find(state, "setext", args[0])
    if upmu.extended == extended and all(s in upmu.streams for s in upmu.active_streams):
        return ok(f"{upmu.describe()} is already in {mode(extended)} mode; nothing changed")
    try:
        new = state.upmus.set_extended(upmu.ip, extended)
    except UpmuListError as exc:
        return fail(f"setext: {exc}")
    state.record(Edit("setext", (upmu.ip, extended),
                      f"setext {upmu.ip} {str(extended).lower()}"))
    minted = [s for s in new.streams if s not in upmu.streams]
    reused = [s for s in new.active_streams if s in upmu.streams
              and s not in upmu.active_streams]
    text = (f"Switched {new.describe()} to {mode(extended)} mode: "
            f"{count(len(new.active_streams), 'stream')}")
    if minted:
        text += f"; new UUIDs for {', '.join(minted)}"
    if reused:
        text += f"; {', '.join(reused)} keep their earlier UUIDs"
    if not extended:
        text += "; the six extended streams keep their UUIDs for a switch back"
    return ok(f"{text} - {_NOT_SAVED}")


# -- save, reload ------------------------------------------------------------------------

@REGISTRY.command(
    "save", usage="save [merge]", complete=("merge",), group="list",
    help="""
write upmuconfig.ini, apply it in BTrDB
The file is replaced atomically, keeping its comments and everything upmu-adm did not
change; the receiver and sync2q follow it by themselves (no restart needed). Then the
streams of new and changed uPMUs are created or updated in BTrDB (collection, tags,
annotations from Metadata and Properties), and the list is recorded as applied in
backupconfig.ini. If BTrDB does not answer, the file is still saved and backupconfig.ini
left as it was: sync2q creates the streams itself once BTrDB is back, and save (even
with nothing to save) retries. Last, save deletes from BTrDB the streams of removed
uPMUs you asked rem to delete (never a stream whose UUID a uPMU of the list has); if
BTrDB does not answer, it names the streams still to delete, and the next save (even
with nothing to save) retries; leaving upmu-adm forgets them. Other removed uPMUs'
streams and stored data are kept.
If someone changed upmuconfig.ini since upmu-adm read it, save writes nothing and says
so: then save merge applies your changes on top of the file as it is now (new uPMUs get
new UUIDs), or reload discards them.""")
def cmd_save(state: ShellState, args: Sequence[str]) -> Reply:
    merge = bool(args)
    if merge and args[0].lower() != "merge":
        return REGISTRY.get("save").usage_error(f"unexpected {args[0]!r}")
    name = "save merge" if merge else "save"
    try:
        result = save(state, merge)
    except UpmuConflictError:
        changes = state.describe_unsaved()[0]
        raise Refusal(f"save: {state.path} was changed by someone else since upmu-adm read "
                      f"it; nothing saved. Type save merge to apply your {changes} on top "
                      f"of it as it is now, or reload to discard them and read it "
                      f"again") from None
    except ReplayError as exc:
        raise Refusal(f"save merge: cannot apply {exc.edit.line!r} to {state.path} as it "
                      f"is now: {exc.error}; nothing saved. Type reload to discard your "
                      f"unsaved changes and read the file again") from None
    except UpmuConfigError as exc:
        raise Refusal(f"{name}: {exc}; nothing saved") from None
    return Reply("\n".join(save_lines(result)), result.ok)


@REGISTRY.command(
    "reload", usage="reload", group="list",
    help="""
read the file again, dropping changes
Reads upmuconfig.ini again, discarding unsaved changes (asks first if there are any).
Use it after someone edited the file by hand, or to undo everything since the last
save.""")
def cmd_reload(state: ShellState, args: Sequence[str]) -> Reply:
    def read() -> Reply:
        try:
            state.reload()
        except UpmuConfigError as exc:
            return fail(f"reload: {exc}; keeping the list as it was")
        warnings = "".join(f"\nwarning: {p}" for p in state.upmus.problems)
        return ok(f"Read {state.path}: {count(len(state.upmus), 'uPMU')}{warnings}")

    if not state.unsaved:
        return read()
    changes, details = state.describe_unsaved()
    return ok(confirm=Confirm(f"Not saved: {details}.\nDiscard {changes} and read "
                              f"{state.path} again?", read,
                              lambda: ok("Kept your unsaved changes; nothing read")))


# -- help, exit --------------------------------------------------------------------------

KEYS_HELP = """\
Tab completes commands, the uPMUs' IP addresses, serial numbers and aliases,
directories, and the years of queued files; Up and Down recall earlier lines.
Ctrl+C clears the line (during importdat or exportdat it stops them); on an empty
line it leaves like exit, and so does Ctrl+D. Commands can share a line: add ...; save"""


@REGISTRY.command(
    "help", usage="help [CMD]", complete=(COMMAND,), group="shell",
    help="""
list the commands, or explain one
Examples:
  help
  help setext""")
def cmd_help(state: ShellState, args: Sequence[str]) -> Reply:
    if args:
        cmd = REGISTRY.get(args[0])
        if cmd is None:
            return fail(f"help: no command {args[0]!r}; commands: "
                        f"{', '.join(c.name for c in REGISTRY)}")
        lines = [f"usage: {cmd.usage}"]
        if cmd.aliases:
            lines.append(f"also: {', '.join(cmd.aliases)}")
        return ok("\n".join(lines + [cmd.help]))
    lines = ["Commands (type help CMD for details):"] + command_table(REGISTRY)
    return ok("\n".join(lines + ["", KEYS_HELP]))


def command_table(registry: Registry, indent: str = "  ") -> list[str]:
    """The commands by group under their headings, synopsis and summary aligned within
    each group (so a long synopsis in one group does not push the others past 80
    columns)."""
    lines = []
    for group, commands in registry.groups():
        if group in GROUPS:
            lines.append(GROUPS[group])
        width = max(len(c.synopsis) for c in commands)
        lines += [f"{indent}{c.synopsis.ljust(width)}  {c.summary}" for c in commands]
    return lines


@REGISTRY.command(
    "exit", usage="exit", aliases=("quit",), group="shell",
    help="""
leave (asks if changes are unsaved)
With unsaved changes, asks before discarding them.
Ctrl+C on an empty line and Ctrl+D do the same.""")
def cmd_exit(state: ShellState, args: Sequence[str]) -> Reply:
    forgotten = "".join(
        f"\nwarning: forgetting the deletion of {count(len(d.streams), 'stream')} of "
        f"{d.described} from BTrDB that save could not do; they stay in BTrDB"
        for d in state.pending_drops.values())
    if not state.unsaved:
        return ok("Clean exit - no unsaved changes" + forgotten, exit=True)
    changes, details = state.describe_unsaved()
    return ok(confirm=Confirm(
        f"Not saved: {details}.\nDiscard {changes} and exit?",
        lambda: ok("Abort - Not saving changes..." + forgotten, exit=True),
        lambda: ok("Not exiting; type save to keep your changes, exit to leave")))
