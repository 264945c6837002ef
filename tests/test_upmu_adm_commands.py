"""upmu-adm's commands as functions of the state (no terminal): every command's success
and failure paths, save against concurrent hand edits, and tab completion.

upmuconfig.ini files are written here by hand in the original tools' layout, not with
the production renderer.
"""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from qss.streams import BASE_STREAMS, EXTENDED_STREAMS, UNITS
from qss.upmuconfig import UpmuList
from upmu_adm import REGISTRY, ShellState, complete, split_commands
from upmu_adm.registry import Registry, Reply


def section(ip: str, serial: str, alias: str, streams, mode: str = "false",
            first: int = 1) -> str:
    lines = [f"[{ip}]", f"%serial_number = {serial}", f"%alias = {alias}",
             f"%extended = {mode}"]
    for i, name in enumerate(streams):
        lines += [f"    [[{name}]]", f"    uuid = {uuid.UUID(int=first + i)}",
                  f"    Path = /upmu/{alias}/{name}", "        [[[Properties]]]",
                  f"        UnitofMeasure = {UNITS[name]}"]
    lines += ["    [[Metadata]]", "        [[[Instrument]]]", f"        SerialNumber = {serial}"]
    return "\n".join(lines) + "\n"


HEAD = "# uPMUs of substation 3\n# keep this comment\n\n"
FIRST = section("192.168.1.24", "P3112233", "uPMU1", BASE_STREAMS, first=100)
SECOND = section("192.168.1.25", "P3112234", "uPMU2", EXTENDED_STREAMS, "true", first=200)
ORIGINAL = HEAD + FIRST + "# the second one is extended\n" + SECOND + "# end of list\n"
U1 = "uPMU1 (192.168.1.24, P3112233)"
U2 = "uPMU2 (192.168.1.25, P3112234)"
PICKED_UP = "receiver and sync2q pick up the new list by themselves; no restart is needed."


@pytest.fixture
def paths(tmp_path: Path) -> tuple[Path, Path]:
    cfg = tmp_path / "upmuconfig.ini"
    cfg.write_text(ORIGINAL)
    return cfg, tmp_path / "backupconfig.ini"


@pytest.fixture
def state(paths) -> ShellState:
    cfg, backup = paths
    return ShellState.load(str(cfg), str(backup))


@pytest.fixture
def empty(tmp_path: Path) -> ShellState:
    return ShellState.load(str(tmp_path / "upmuconfig.ini"), str(tmp_path / "backup.ini"))


def run(state: ShellState, line: str, answers=()) -> list[Reply]:
    """Run a line; questions are answered from ``answers`` in turn (all must be used)."""
    answers = list(answers)
    asked = []

    def confirm(c) -> bool:
        asked.append(c.question)
        return answers.pop(0)

    replies = list(REGISTRY.execute(state, line, confirm))
    assert not answers, f"questions not asked; asked: {asked}"
    return replies


def one(state: ShellState, line: str, answers=()) -> Reply:
    replies = run(state, line, answers)
    assert len(replies) == 1, replies
    return replies[0]


def uuids(state: ShellState, key: str) -> dict[str, uuid.UUID]:
    return {name: info.uuid for name, info in state.upmus.find(key).streams.items()}


# -- add ---------------------------------------------------------------------------------

def test_add_in_base_mode_says_what_it_added_and_keeps_it_in_memory(state, paths):
    reply = one(state, "add 10.0.0.5 P3001234 u1")
    assert reply.ok
    assert reply.text == ("Added u1 (10.0.0.5, P3001234) in base mode with 13 streams under "
                          "/upmu/u1/ - not saved yet; type save to apply")
    upmu = state.upmus.find("u1")
    assert (upmu.extended, list(upmu.streams)) == (False, list(BASE_STREAMS))
    assert state.unsaved
    assert paths[0].read_text() == ORIGINAL        # nothing written before save


@pytest.mark.parametrize("ext", ["true", "True", "TRUE"])
def test_add_with_true_at_the_end_is_extended(state, ext):
    reply = one(state, f"add 10.0.0.5 P3001234 u1 {ext}")
    assert "in extended mode with 19 streams" in reply.text
    assert list(state.upmus.find("P3001234").streams) == list(EXTENDED_STREAMS)


def test_add_with_false_is_base(state):
    one(state, "add 10.0.0.5 P3001234 u1 false")
    assert not state.upmus.find("u1").extended


@pytest.mark.parametrize("line, text", [
    ("add", "add: missing IPADDR; usage: add IPADDR SERIAL ALIAS [ext]  (help add for "
            "details)"),
    ("add 10.0.0.5 P3001234", "add: missing ALIAS; usage: add IPADDR SERIAL ALIAS [ext]  "
                              "(help add for details)"),
    ("add 10.0.0.5 P3001234 u1 true x", "add: unexpected 'x'; usage: add IPADDR SERIAL "
                                        "ALIAS [ext]  (help add for details)"),
    ("add 10.0.0.5 P3001234 u1 4", "add: ext must be true (extended mode) or false (base "
                                   "mode), not '4'; usage: add IPADDR SERIAL ALIAS [ext]  "
                                   "(help add for details)"),
])
def test_add_with_missing_or_bad_arguments_gives_usage(state, line, text):
    reply = one(state, line)
    assert (reply.ok, reply.text) == (False, text)
    assert not state.unsaved


@pytest.mark.parametrize("ip", ["300.1.1.1", "10.0.0", "10.0.0.5.6", "abc", "10.0.0.05",
                                "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1"])
def test_add_refuses_malformed_ip_addresses(state, ip):
    reply = one(state, f"add {ip} P3001234 u1")
    assert not reply.ok
    assert reply.text.startswith(f"add: invalid IP address {ip!r}: ")
    assert not state.unsaved


@pytest.mark.parametrize("line, text", [
    ("add 192.168.1.24 P3001234 u1",
     f"add: IP address 192.168.1.24 is already used by {U1}"),
    ("add 10.0.0.5 p3112234 u1",
     f"add: serial number 'P3112234' is already used by {U2}"),
    ("add 10.0.0.5 P3001234 UPMU1",
     f"add: alias 'UPMU1' is already used by {U1}"),
    ("add 10.0.0.5 P3001234 P3112233",
     f"add: alias 'P3112233' is the serial number of {U1}; choose another alias"),
    ("add 10.0.0.5 uPMU2 u1",
     f"add: serial number 'uPMU2' is the alias of {U2}; check the serial number"),
])
def test_add_refuses_duplicates_naming_the_clashing_upmu(state, line, text):
    reply = one(state, line)
    assert (reply.ok, reply.text) == (False, text)
    assert len(state.upmus) == 2 and not state.unsaved


def test_add_refuses_a_duplicate_of_an_unsaved_addition(state):
    one(state, "add 10.0.0.5 P3001234 u1")
    reply = one(state, "add 10.0.0.5 P3001235 u2")
    assert reply.text == "add: IP address 10.0.0.5 is already used by u1 (10.0.0.5, P3001234)"


@pytest.mark.parametrize("serial, alias", [("P300-1234", "u1"), ("P3001234", "a/b"),
                                           ("P3001234", "a#b")])
def test_add_refuses_bad_serials_and_aliases(state, serial, alias):
    reply = one(state, f"add 10.0.0.5 {serial} '{alias}'")
    assert not reply.ok and reply.text.startswith("add: invalid ")


def test_add_warns_about_a_serial_that_is_not_psl_but_adds_it(state):
    reply = one(state, "add 10.0.0.5 X12 u1")
    warning, added = reply.text.splitlines()
    assert reply.ok
    assert warning == ("warning: serial number 'X12' does not look like a PSL serial (P and "
                       "seven digits, e.g. P3001234); check it against the device's label, "
                       "the receiver refuses files from any other serial")
    assert added.startswith("Added u1 (10.0.0.5, X12)")


def test_add_writes_a_lower_case_psl_serial_as_the_device_does_and_says_so(state):
    reply = one(state, "add 10.0.0.5 p3001234 u1")
    assert reply.ok
    assert reply.text.splitlines() == [
        "note: serial number 'p3001234' written as 'P3001234', as the device writes it (PSL "
        "serials are P and seven digits)",
        "Added u1 (10.0.0.5, P3001234) in base mode with 13 streams under /upmu/u1/ - not "
        "saved yet; type save to apply"]
    assert state.upmus.find("u1").serial == "P3001234"


# -- rem ---------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["192.168.1.24", "P3112233", "p3112233", "uPMU1", "upmu1"])
def test_rem_by_ip_serial_or_alias_asks_then_removes_and_keeps_the_data(state, key, paths):
    replies = run(state, f"rem {key}", answers=[True])
    assert [r.ok for r in replies] == [True]
    assert replies[0].text == (f"Removed {U1} - not saved yet; type save to apply.\n"
                               f"Its queued files and its data stored in BTrDB are kept")
    assert [u.alias for u in state.upmus] == ["uPMU2"]
    assert paths[0].read_text() == ORIGINAL


def test_rem_asks_the_question_and_no_keeps_the_upmu(state):
    asked = []
    replies = list(REGISTRY.execute(state, "rem uPMU1",
                                    lambda c: asked.append(c.question) or False))
    assert asked == [f"Remove {U1} from the uPMU list?"]
    assert [(r.ok, r.text) for r in replies] == [(True, f"Kept {U1}; nothing changed")]
    assert len(state.upmus) == 2 and not state.unsaved


def test_rem_without_a_terminal_to_ask_fails(state):
    replies = list(REGISTRY.execute(state, "rem uPMU1; save", None))
    assert [(r.ok, r.text) for r in replies] == [
        (False, f"Remove {U1} from the uPMU list? [y/N] not asked: standard input is not "
                f"a terminal; run upmu-adm with --yes to answer yes"),
        (False, "not run: save")]
    assert len(state.upmus) == 2


@pytest.mark.parametrize("line, text", [
    ("rem", "rem: missing IP|SERIAL|ALIAS; usage: rem IP|SERIAL|ALIAS  (help rem for "
            "details)"),
    ("rem a b", "rem: unexpected 'b'; usage: rem IP|SERIAL|ALIAS  (help rem for details)"),
    ("rem 10.9.9.9", "rem: no uPMU has IP address, serial number or alias '10.9.9.9'; "
                     "type list to see the uPMUs"),
    ("rem nobody", "rem: no uPMU has IP address, serial number or alias 'nobody'; type "
                   "list to see the uPMUs"),
])
def test_rem_failures(state, line, text):
    reply = one(state, line)
    assert (reply.ok, reply.text) == (False, text)


def test_rem_removes_an_unusable_section_by_its_ip(tmp_path):
    cfg = tmp_path / "u.ini"
    cfg.write_text(FIRST + "[10.1.1.1]\n%alias = nameless\n")
    st = ShellState.load(str(cfg), str(tmp_path / "b.ini"))
    reply = one(st, "rem 10.1.1.1", answers=[True])
    assert reply.text.startswith("Removed nameless (10.1.1.1, no serial)")
    saved = one(st, "save")
    assert "removed unusable section [10.1.1.1]" in saved.text
    assert cfg.read_text() == FIRST


# -- list, show --------------------------------------------------------------------------

def test_list_shows_a_table_of_the_upmus(state):
    reply = one(state, "list")
    assert reply.text == (
        "IP            SERIAL    ALIAS  MODE      STREAMS\n"
        "------------  --------  -----  --------  -------\n"
        "192.168.1.24  P3112233  uPMU1  base      13\n"
        "192.168.1.25  P3112234  uPMU2  extended  19\n"
        f"2 uPMUs in {state.path}")


def test_list_marks_unsaved_changes(state):
    run(state, "add 10.0.0.5 P3001234 u1 true; setext uPMU1 true; rem uPMU2",
        answers=[True])
    assert one(state, "list").text == (
        "IP            SERIAL    ALIAS  MODE      STREAMS  UNSAVED\n"
        "------------  --------  -----  --------  -------  -------\n"
        "192.168.1.24  P3112233  uPMU1  extended  19       changed\n"
        "10.0.0.5      P3001234  u1     extended  19       added\n"
        "192.168.1.25  P3112234  uPMU2  extended  19       removed\n"
        f"2 uPMUs in {state.path}; 3 unsaved changes - type save to apply")


def test_list_of_an_empty_file_says_how_to_add(empty):
    assert one(empty, "list").text == (f"No uPMUs in {empty.path}; add one with: add "
                                       f"IPADDR SERIAL ALIAS [ext]")


def test_list_shows_problems_in_the_file(tmp_path):
    cfg = tmp_path / "u.ini"
    cfg.write_text(FIRST + "[10.1.1.1]\n%alias = nameless\n")
    st = ShellState.load(str(cfg), str(tmp_path / "b.ini"))
    assert one(st, "list").text.splitlines()[-1] == (
        f"warning: {cfg}: [10.1.1.1] has no %serial_number; uPMU ignored")
    assert one(st, "list extra").text.startswith("list: unexpected 'extra'; usage: list")


def test_show_lists_streams_with_uuids_and_paths(state):
    text = one(state, "show 192.168.1.24").text
    lines = text.splitlines()
    assert lines[0] == f"{U1}: base mode, 13 streams"
    assert lines[1].split() == ["STREAM", "UUID", "PATH", "UNIT"]
    assert lines[3].split() == ["L1MAG", str(uuid.UUID(int=100)), "/upmu/uPMU1/L1MAG", "V"]
    assert len(lines) == 3 + 13 + 1
    assert lines[-1] == "Metadata/Instrument/SerialNumber = P3112233"
    assert one(state, "show ghost").text.startswith("show: no uPMU has ")


# -- setext ------------------------------------------------------------------------------

def test_setext_round_trips_never_change_a_uuid(state, paths):
    base = uuids(state, "uPMU1")
    reply = one(state, "setext uPMU1 true")
    assert reply.text == (f"Switched {U1} to extended mode: 19 streams; new UUIDs for "
                          f"FUND_W, FUND_VAR, FUND_VA, FUND_DPF, FREQ_L1_1S, FREQ_L1_C37 - "
                          f"not saved yet; type save to apply")
    extended = uuids(state, "uPMU1")
    assert {k: extended[k] for k in BASE_STREAMS} == base
    assert one(state, "setext P3112233 false").text == (
        f"Switched {U1} to base mode: 13 streams; the six extended streams keep their "
        f"UUIDs for a switch back - not saved yet; type save to apply")
    assert one(state, "setext 192.168.1.24 true").text == (
        f"Switched {U1} to extended mode: 19 streams; FUND_W, FUND_VAR, FUND_VA, FUND_DPF, "
        f"FREQ_L1_1S, FREQ_L1_C37 keep their earlier UUIDs - not saved yet; type save to "
        f"apply")
    assert uuids(state, "uPMU1") == extended
    one(state, "save")
    run(state, "setext uPMU1 false; save")
    on_disk = UpmuList.load(str(paths[0])).find("uPMU1")
    assert on_disk.extended is False
    assert {n: i.uuid for n, i in on_disk.streams.items()} == extended


def test_setext_to_the_current_mode_changes_nothing(state):
    assert one(state, "setext uPMU2 true").text == (f"{U2} is already in extended mode; "
                                                    f"nothing changed")
    assert not state.unsaved


@pytest.mark.parametrize("line, text", [
    ("setext uPMU1", "setext: missing true|false; usage: setext IP|SERIAL|ALIAS true|false"
                     "  (help setext for details)"),
    ("setext uPMU1 yes", "setext: mode must be true (extended) or false (base), not 'yes'; "
                         "usage: setext IP|SERIAL|ALIAS true|false  (help setext for "
                         "details)"),
    ("setext 10.9.9.9 true", "setext: no uPMU has IP address, serial number or alias "
                             "'10.9.9.9'; type list to see the uPMUs"),
])
def test_setext_failures(state, line, text):
    reply = one(state, line)
    assert (reply.ok, reply.text) == (False, text)


def test_setext_on_an_ambiguous_name_asks_for_the_ip(tmp_path):
    cfg = tmp_path / "u.ini"
    cfg.write_text(FIRST + section("10.0.0.9", "X1", "P3112233", BASE_STREAMS, first=300))
    st = ShellState.load(str(cfg), str(tmp_path / "b.ini"))
    reply = one(st, "setext P3112233 true")
    assert not reply.ok and reply.text.startswith("setext: 'P3112233' is ambiguous")
    assert reply.text.endswith("use the IP address")


# -- save --------------------------------------------------------------------------------

def test_save_writes_the_file_records_the_backup_and_summarises(state, paths):
    cfg, backup = paths
    replies = run(state, "add 10.0.0.5 P3001234 u1 true; rem uPMU2; setext uPMU1 true; save",
                  answers=[True])
    assert replies[-1].ok
    assert replies[-1].text == "\n".join([
        f"Saved {cfg}:",
        "  added   u1 (10.0.0.5, P3001234), extended mode, 19 streams",
        f"  removed {U2}",
        f"  changed {U1}: base -> extended mode, 6 streams added (FUND_W, FUND_VAR, "
        f"FUND_VA, FUND_DPF, FREQ_L1_1S, FREQ_L1_C37)",
        f"Removed {U2}: its streams and data stored in BTrDB are kept (this version of "
        f"upmu-adm cannot delete stored data).",
        f"Recorded it as the last applied list in {backup}.",
        PICKED_UP])
    on_disk = UpmuList.load(str(cfg))
    assert [u.alias for u in on_disk] == ["uPMU1", "u1"]
    assert backup.read_text() == cfg.read_text()
    assert not state.unsaved
    assert one(state, "save").text == "Nothing to save - no unsaved changes"


def test_save_keeps_comments_and_untouched_sections_byte_for_byte(state, paths):
    run(state, "add 10.0.0.5 P3001234 u1; save")
    text = paths[0].read_text()
    assert text.startswith(ORIGINAL.removesuffix("# end of list\n"))
    assert "# end of list\n" in text and "[10.0.0.5]\n" in text


def test_save_of_a_new_file(empty):
    run(empty, "add 10.0.0.5 P3001234 u1; save")
    assert UpmuList.load(empty.path).find("u1").serial == "P3001234"
    assert Path(empty.backup_path).read_text() == Path(empty.path).read_text()


def test_save_refuses_to_clobber_a_hand_edit_and_save_merge_applies_on_top(state, paths):
    cfg, backup = paths
    one(state, "add 10.0.0.5 P3001234 u1")
    hand = ORIGINAL + section("10.0.0.7", "P3000007", "byhand", BASE_STREAMS, first=400)
    cfg.write_text(hand)
    replies = run(state, "save")
    assert [r.ok for r in replies] == [True, False]
    assert replies[0].text == (f"note: {cfg} changed on disk since upmu-adm read it; save "
                               f"will offer to merge your unsaved changes into it or to "
                               f"reload it")
    assert replies[1].text == (f"save: {cfg} was changed by someone else since upmu-adm "
                               f"read it; nothing saved. Type save merge to apply your 1 "
                               f"unsaved change on top of it as it is now, or reload to "
                               f"discard them and read it again")
    assert cfg.read_text() == hand and not backup.exists()
    reply = one(state, "save merge")
    assert reply.ok
    assert reply.text.splitlines()[:2] == [
        f"Saved {cfg}, merged with the changes made to it meanwhile:",
        "  added   u1 (10.0.0.5, P3001234), base mode, 13 streams"]
    assert cfg.read_text().startswith(hand)
    assert [u.alias for u in UpmuList.load(str(cfg))] == ["uPMU1", "uPMU2", "byhand", "u1"]
    assert backup.read_text() == cfg.read_text()
    assert not state.unsaved and one(state, "list").ok


def test_save_merge_that_cannot_apply_an_edit_writes_nothing(state, paths):
    cfg = paths[0]
    run(state, "add 10.0.0.5 P3001234 u1; setext uPMU2 false")
    hand = ORIGINAL + section("10.0.0.5", "P3000007", "byhand", BASE_STREAMS, first=400)
    cfg.write_text(hand)
    reply = run(state, "save merge")[-1]
    assert (reply.ok, reply.text) == (False, (
        f"save merge: cannot apply 'add 10.0.0.5 P3001234 u1 false' to {cfg} as it is now: "
        f"IP address 10.0.0.5 is already used by byhand (10.0.0.5, P3000007); nothing "
        f"saved. Type reload to discard your unsaved changes and read the file again"))
    assert cfg.read_text() == hand
    replies = run(state, "reload", answers=[True])
    assert replies[-1].text == f"Read {cfg}: 3 uPMUs"
    assert not state.unsaved and state.upmus.find("byhand")


def test_a_hand_edit_without_unsaved_changes_is_read_again(state, paths):
    cfg = paths[0]
    cfg.write_text(ORIGINAL + section("10.0.0.7", "P3000007", "byhand", BASE_STREAMS,
                                      first=400))
    replies = run(state, "show byhand")
    assert replies[0].text == f"note: {cfg} changed on disk; read it again (3 uPMUs)"
    assert replies[1].ok


def test_save_reports_a_backup_it_could_not_write_and_retries(state, paths):
    cfg, backup = paths
    backup.mkdir()                                   # cannot be replaced by a file
    reply = run(state, "add 10.0.0.5 P3001234 u1; save")[-1]
    assert not reply.ok
    assert reply.text.splitlines()[-1].startswith(f"save: {backup}: not recorded as applied")
    assert UpmuList.load(str(cfg)).find("u1")         # the list itself is saved
    backup.rmdir()
    reply = one(state, "save")
    assert reply.text.splitlines() == [
        f"Nothing to save in {cfg}; recorded it as the last applied list in {backup}, "
        f"which differed:",
        f"  added   {U1}, base mode, 13 streams",
        f"  added   {U2}, extended mode, 19 streams",
        "  added   u1 (10.0.0.5, P3001234), base mode, 13 streams"]
    assert backup.read_text() == cfg.read_text()


def test_save_with_a_bad_argument_gives_usage(state):
    reply = one(state, "save now")
    assert reply.text == "save: unexpected 'now'; usage: save [merge]  (help save for details)"


def test_a_failed_command_stops_the_line_so_save_does_not_run(state, paths):
    replies = run(state, "add 10.0.0.5 P3001234 u1; add 10.0.0.6 P3001234 u2; save")
    assert [r.ok for r in replies] == [True, False, False]
    assert replies[-1].text == "not run: save"
    assert paths[0].read_text() == ORIGINAL


def test_reload_without_changes_and_with_a_no(state):
    assert one(state, "reload").text == f"Read {state.path}: 2 uPMUs"
    one(state, "add 10.0.0.5 P3001234 u1")
    assert one(state, "reload", answers=[False]).text == ("Kept your unsaved changes; "
                                                          "nothing read")
    assert state.unsaved


# -- help, exit, parsing -----------------------------------------------------------------

def test_help_lists_every_command(empty):
    text = one(empty, "help").text
    for cmd in REGISTRY:
        assert f"  {cmd.usage}  " in text or f"  {cmd.usage} " in text


@pytest.mark.parametrize("name", [c.name for c in REGISTRY] + ["quit"])
def test_every_command_has_usage_and_help(empty, name):
    cmd = REGISTRY.get(name)
    text = one(empty, f"help {name}").text
    assert text.startswith(f"usage: {cmd.usage}\n")
    assert len(cmd.help.splitlines()) >= 1 and cmd.summary[0].islower()
    assert len(f"  {cmd.usage:33}  {cmd.summary}") <= 80       # help fits a terminal


def test_help_of_an_unknown_command(state):
    reply = one(state, "help bogus")
    assert (reply.ok, reply.text) == (False, "help: no command 'bogus'; commands: add, rem, "
                                             "list, show, setext, save, reload, importdat, "
                                             "exportdat, delbackup, status, help, exit")


def test_exit_without_changes_is_clean(state):
    reply = one(state, "exit")
    assert (reply.text, reply.exit) == ("Clean exit - no unsaved changes", True)
    assert one(state, "QUIT").exit


def test_exit_with_unsaved_changes_asks(state):
    one(state, "add 10.0.0.5 P3001234 u1")
    asked = []
    replies = list(REGISTRY.execute(state, "exit",
                                    lambda c: asked.append(c.question) or False))
    assert asked == ["Not saved: added u1 (10.0.0.5, P3001234), base mode, 13 streams.\n"
                     "Discard 1 unsaved change and exit?"]
    assert (replies[0].exit, replies[0].text) == (
        False, "Not exiting; type save to keep your changes, exit to leave")
    reply = one(state, "exit", answers=[True])
    assert (reply.exit, reply.text) == (True, "Abort - Not saving changes...")


def test_unknown_command_suggests_the_closest(state):
    reply = one(state, "sav")
    assert (reply.ok, reply.text) == (False, "unknown command 'sav'; did you mean save? "
                                             "(type help for the list)")


def test_unterminated_quote_runs_nothing(state):
    reply = one(state, "add 10.0.0.5 P3001234 'u1")
    assert (reply.ok, reply.text) == (False, "cannot read the line: no closing quotation "
                                             "mark ('); nothing was run")


@pytest.mark.parametrize("line, commands", [
    ("", []),
    ("   # only a comment", []),
    ("list", [["list"]]),
    ("add 1 2 3; save ;; list # done", [["add", "1", "2", "3"], ["save"], ["list"]]),
    ("add 1 2 'a;b'", [["add", "1", "2", "a;b"]]),
    ('show "u 1"', [["show", "u 1"]]),
])
def test_split_commands(line, commands):
    assert split_commands(line) == commands


def test_registry_refuses_a_name_twice():
    reg = Registry()
    reg.command("x", usage="x", help="x")(lambda s, a: Reply())
    with pytest.raises(ValueError):
        reg.command("y", usage="y", aliases=("X",), help="y")(lambda s, a: Reply())


# -- completion --------------------------------------------------------------------------

def texts(text: str, st: ShellState) -> list[str]:
    return [c.text for c in complete(text, REGISTRY, st.upmus)]


def test_completion_of_command_names(state):
    assert texts("", state) == ["add", "rem", "list", "show", "setext", "save", "reload",
                                "importdat", "exportdat", "delbackup", "status", "help",
                                "exit", "quit"]
    assert texts("se", state) == ["setext"]
    assert texts("S", state) == ["show", "setext", "save", "status"]
    assert texts("list; re", state) == ["rem", "reload"]
    (cand,) = complete("lis", REGISTRY, state.upmus)
    assert (cand.text, cand.replace) == ("list", 3)


def test_completion_of_known_upmus(state):
    assert texts("rem ", state) == ["192.168.1.24", "P3112233", "uPMU1",
                                    "192.168.1.25", "P3112234", "uPMU2"]
    assert texts("rem up", state) == ["uPMU1", "uPMU2"]
    assert texts("show 192.168.1.2", state) == ["192.168.1.24", "192.168.1.25"]
    (cand,) = complete("setext p3112234", REGISTRY, state.upmus)
    assert (cand.text, cand.replace, cand.meta) == ("P3112234", 8, U2)
    one(state, "add 10.0.0.5 P3001234 u1")
    assert texts("rem u", state) == ["uPMU1", "uPMU2", "u1"]


def test_completion_of_modes_and_literals(state):
    assert texts("setext uPMU1 ", state) == ["true", "false"]
    assert texts("setext uPMU1 t", state) == ["true"]
    assert texts("add 10.0.0.5 P3001234 u1 ", state) == ["true", "false"]
    assert texts("save m", state) == ["merge"]
    assert texts("help sh", state) == ["show"]


def test_no_completion_where_nothing_is_known(state):
    assert texts("add 1", state) == []
    assert texts("setext uPMU1 true ", state) == []
    assert texts("bogus ", state) == []
    assert texts("list ", state) == []
