"""The uPMU list (qss.upmuconfig, architecture §5): format, edits, locking, atomic writes.

Files are built here by hand in the original tools' layout, independently of the
production renderer, and compared as whole texts.
"""
from __future__ import annotations

import multiprocessing
import os
import stat
import threading
import uuid

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from qss.streams import BASE_STREAMS, EXTENDED_ONLY_STREAMS, EXTENDED_STREAMS, UNITS
from qss.upmuconfig import (UpmuConfigError, UpmuConflictError, UpmuList, UpmuListError,
                            UpmuNotFoundError, diff, fingerprint, load_backup,
                            looks_like_psl_serial, write_backup)


def uid(n: int) -> str:
    return str(uuid.UUID(int=n))


def section(ip, serial, alias, streams, mode="false", first_uuid=1, domain="upmu",
            extra_stream_lines=()):
    """A uPMU section exactly as the original tools laid it out."""
    lines = [f"[{ip}]", f"%serial_number = {serial}", f"%alias = {alias}"]
    if mode is not None:
        lines.append(f"%extended = {mode}")
    for i, name in enumerate(streams):
        lines += [f"    [[{name}]]", f"    uuid = {uid(first_uuid + i)}",
                  f"    Path = /{domain}/{alias}/{name}", *extra_stream_lines,
                  "        [[[Properties]]]", f"        UnitofMeasure = {UNITS[name]}"]
    lines += ["    [[Metadata]]", "        [[[Instrument]]]",
              f"        SerialNumber = {serial}"]
    return "\n".join(lines) + "\n"


HEAD = "# uPMUs of the Quickstart Kit\n# edited by hand 2016-03-01\n\n"
PENDING = "[?10.0.0.7]\n%serial_number = P3000007\n%mustupdate = True\nnote = keep me\n"
TAIL = "# end of list\n\n# really\n"
FIRST = section("192.168.1.24", "P3112233", "uPMU1", BASE_STREAMS, first_uuid=100,
                extra_stream_lines=('    Description = "Feeder 3, north # pole 7"',
                                    "    Notes = a, b, 'c'"))
SECOND = section("192.168.1.25", "P3112234", "uPMU2", EXTENDED_STREAMS, mode=None,
                 first_uuid=200)
ORIGINAL = (HEAD + FIRST + "# the second one is extended\n" + SECOND + PENDING
            + "# inline comment below\n[10.1.1.1]  # a broken one\n%alias = nameless\n"
            + TAIL)


@pytest.fixture
def cfgfile(tmp_path):
    path = tmp_path / "upmuconfig.ini"
    path.write_text(ORIGINAL)
    return str(path)


def test_original_file_is_read():
    lst = UpmuList.parse(ORIGINAL, "u.ini")
    first, second = lst.upmus
    assert (first.ip, first.serial, first.alias, first.extended) == (
        "192.168.1.24", "P3112233", "uPMU1", False)
    assert (second.ip, second.serial, second.alias, second.extended) == (
        "192.168.1.25", "P3112234", "uPMU2", True)          # inferred: all six present
    assert first.active_streams == BASE_STREAMS and second.active_streams == EXTENDED_STREAMS
    assert list(second.streams) == list(EXTENDED_STREAMS)
    info = first.streams["C1MAG"]
    assert (info.uuid, info.path, info.unit) == (uuid.UUID(uid(106)), "/upmu/uPMU1/C1MAG",
                                                  "A")
    assert first.metadata == {"Instrument/SerialNumber": "P3112233"}
    assert lst.ignored_sections == ("?10.0.0.7",)
    assert [u.ip for u in lst.excluded] == ["10.1.1.1"]
    assert lst.problems == ("u.ini: [10.1.1.1] has no %serial_number; uPMU ignored",)


def test_btrdb_names_of_a_stream():
    upmu = UpmuList.parse(ORIGINAL).find("uPMU1")
    assert upmu.collection("L1MAG") == "upmu/uPMU1"
    assert upmu.tags("L1ANG") == {"name": "L1ANG", "unit": "deg"}
    assert upmu.annotations("LSTATE") == {
        "Metadata/Instrument/SerialNumber": "P3112233",
        "Properties/UnitofMeasure": "bitmap"}
    with pytest.raises(KeyError):
        upmu.collection("FUND_W")


def test_values_are_kept_literally():
    info = UpmuList.parse(ORIGINAL).find("uPMU1").streams["L1MAG"]
    # Unknown keys of a stream are not annotations; Properties are.
    assert info.properties == {"UnitofMeasure": "V"}
    lst = UpmuList.parse(ORIGINAL)
    sec = lst._doc.config["192.168.1.24"]["L1MAG"]
    assert sec["Description"] == '"Feeder 3, north # pole 7"'
    assert sec["Notes"] == "a, b, 'c'"


def test_no_op_edit_writes_nothing(cfgfile):
    before = os.stat(cfgfile)
    with UpmuList.edit(cfgfile) as lst:
        assert len(lst) == 2
    after = os.stat(cfgfile)
    assert open(cfgfile).read() == ORIGINAL
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_add_appends_and_keeps_every_other_byte(cfgfile):
    with UpmuList.edit(cfgfile) as lst:
        added = lst.add("10.0.0.5", "P3000005", "feeder5")
    text = open(cfgfile).read()
    assert text.startswith(ORIGINAL[:-len(TAIL)]) and text.endswith(TAIL)
    new = text[len(ORIGINAL) - len(TAIL):-len(TAIL)]
    uuids = [added.streams[s].uuid for s in BASE_STREAMS]
    expected = section("10.0.0.5", "P3000005", "feeder5", BASE_STREAMS)
    for i, u in enumerate(uuids):
        expected = expected.replace(f"uuid = {uid(1 + i)}\n", f"uuid = {u}\n")
    assert new == expected
    assert len(set(uuids)) == 13 and all(u.version == 4 for u in uuids)
    reread = UpmuList.load(cfgfile).find("P3000005")
    assert reread == added and not reread.extended
    assert {reread, added} == {added}                  # hashable, for sets and dict keys


def test_add_extended_has_19_streams_with_units():
    lst = UpmuList.parse("")
    upmu = lst.add("10.0.0.6", "P3000006", "x6", extended=True)
    assert upmu.extended and list(upmu.streams) == list(EXTENDED_STREAMS)
    assert {s: i.unit for s, i in upmu.streams.items()} == UNITS
    assert lst.render().startswith("[10.0.0.6]\n%serial_number = P3000006\n%alias = x6\n"
                                   "%extended = true\n    [[L1MAG]]\n    uuid = ")
    assert upmu.streams["FREQ_L1_C37"].path == "/upmu/x6/FREQ_L1_C37"


IP_ERROR = ("invalid IP address {!r}: expected an IPv4 address in dotted-quad form, "
            "e.g. 192.168.1.24")


@pytest.mark.parametrize("ip", ["256.1.1.1", "1.2.3", "01.2.3.4", "::1", " 1.2.3.4",
                                "1.2.3.4/24", "", "uPMU9", "0x7f.0.0.1"])
def test_add_rejects_malformed_ip(ip):
    with pytest.raises(UpmuListError) as exc:
        UpmuList.parse("").add(ip, "P3000001", "a")
    assert str(exc.value) == IP_ERROR.format(ip)


@pytest.mark.parametrize("ip", ["0.0.0.0", "224.0.0.1", "255.255.255.255"])
def test_add_rejects_unusable_ip(ip):
    with pytest.raises(UpmuListError) as exc:
        UpmuList.parse("").add(ip, "P3000001", "a")
    assert str(exc.value) == (f"invalid IP address {ip!r}: a uPMU cannot have an "
                              f"unspecified, multicast or broadcast address")


NAME_RULE = "printable characters without spaces or any of / [ ] # \" ' , \\"


@pytest.mark.parametrize("serial", ["", "P3 1", "P" * 33, "P#1", "P-1", "P_1", "P3\u0661"])
def test_add_rejects_bad_serials(serial):
    with pytest.raises(UpmuListError) as exc:
        UpmuList.parse("").add("10.0.0.1", serial, "a")
    assert str(exc.value) == (f"invalid serial number {serial!r}: use 1 to 32 letters and "
                              f"digits, e.g. P3112233")


@pytest.mark.parametrize("alias", ["up/mu", "[x]", "a,b", "tab\there", "..", "", "x" * 65,
                                   "it's", "a#b", 'say"', "back\\slash", "nl\n"])
def test_add_rejects_bad_aliases(alias):
    with pytest.raises(UpmuListError) as exc:
        UpmuList.parse("").add("10.0.0.1", "P1", alias)
    assert str(exc.value) == f"invalid alias {alias!r}: use 1 to 64 {NAME_RULE}"


def test_aliases_may_be_any_other_printable_text():
    lst = UpmuList.parse("")
    upmu = lst.add("10.0.0.1", "P1", "Feeder-3.north_(Ωλ)%")
    assert UpmuList.parse(lst.render()).find("feeder-3.NORTH_(ωλ)%") == upmu
    assert upmu.collection("L1MAG") == "upmu/Feeder-3.north_(Ωλ)%"


def test_add_rejects_alias_that_is_an_ip():
    with pytest.raises(UpmuListError) as exc:
        UpmuList.parse("").add("10.0.0.1", "P1", "10.0.0.2")
    assert str(exc.value) == "invalid alias '10.0.0.2': must not be an IP address"


@pytest.mark.parametrize("ip,serial,alias,message", [
    ("192.168.1.24", "P9", "new",
     "IP address 192.168.1.24 is already used by uPMU1 (192.168.1.24, P3112233)"),
    ("10.0.0.9", "p3112234", "new",
     "serial number 'p3112234' is already used by uPMU2 (192.168.1.25, P3112234)"),
    ("10.0.0.9", "P9", "UPMU1",
     "alias 'UPMU1' is already used by uPMU1 (192.168.1.24, P3112233)"),
    # An excluded (broken) section still owns its IP and alias.
    ("10.1.1.1", "P9", "new",
     "IP address 10.1.1.1 is already used by nameless (10.1.1.1, no serial)"),
    ("10.0.0.9", "P9", "Nameless",
     "alias 'Nameless' is already used by nameless (10.1.1.1, no serial)"),
    # A name that is one uPMU's serial and another's alias would make find() ambiguous.
    ("10.0.0.9", "P9", "p3112233",
     "alias 'p3112233' is the serial number of uPMU1 (192.168.1.24, P3112233); "
     "choose another alias"),
    ("10.0.0.9", "UPMU2", "new",
     "serial number 'UPMU2' is the alias of uPMU2 (192.168.1.25, P3112234); "
     "check the serial number"),
])
def test_add_refuses_duplicates(ip, serial, alias, message):
    lst = UpmuList.parse(ORIGINAL)
    with pytest.raises(UpmuListError) as exc:
        lst.add(ip, serial, alias)
    assert str(exc.value) == message
    assert lst.render() == ORIGINAL


@pytest.mark.parametrize("key", ["192.168.1.25", "P3112234", "p3112234", "uPMU2", "UPMU2",
                                 " uPMU2 "])
def test_find_by_ip_serial_or_alias(key):
    assert UpmuList.parse(ORIGINAL).find(key).ip == "192.168.1.25"


def test_find_errors():
    lst = UpmuList.parse(ORIGINAL)
    with pytest.raises(UpmuNotFoundError) as exc:
        lst.find("uPMU3")
    assert str(exc.value) == "no uPMU has IP address, serial number or alias 'uPMU3'"
    lst.add("10.0.0.3", "P3000003", "P3112233x")
    lst._doc.config["10.0.0.3"]["%alias"] = "P3112233"  # a hand edit
    lst._view = None
    with pytest.raises(UpmuListError) as exc:
        lst.find("p3112233")
    assert str(exc.value) == (
        "'p3112233' is ambiguous: it is the serial number of uPMU1 (192.168.1.24, "
        "P3112233) and the alias of P3112233 (10.0.0.3, P3000003); use the IP address")
    assert lst.find("10.0.0.3").serial == "P3000003"


def test_lookup_by_serial_and_ip():
    lst = UpmuList.parse(ORIGINAL)
    assert lst.by_serial("p3112233").alias == "uPMU1"
    assert lst.by_serial("P0000000") is None
    assert lst.by_ip("192.168.1.25").alias == "uPMU2"
    assert lst.by_ip("10.1.1.1") is None    # excluded


@pytest.mark.parametrize("key", ["192.168.1.24", "P3112233", "upmu1"])
def test_remove_drops_exactly_that_section(cfgfile, key):
    with UpmuList.edit(cfgfile) as lst:
        assert lst.remove(key).alias == "uPMU1"
    assert open(cfgfile).read() == ORIGINAL.replace(FIRST, "")


def test_remove_an_excluded_section_by_ip():
    lst = UpmuList.parse(ORIGINAL)
    with pytest.raises(UpmuNotFoundError):
        lst.remove("nameless")
    lst.remove("10.1.1.1")
    assert lst.render() == ORIGINAL.replace(
        "# inline comment below\n[10.1.1.1]  # a broken one\n%alias = nameless\n", "")
    assert lst.problems == ()


def test_switching_modes_keeps_uuids_and_streams():
    lst = UpmuList.parse(ORIGINAL)
    ext = lst.find("uPMU2")
    base = lst.set_extended("uPMU2", False)
    assert not base.extended and base.active_streams == BASE_STREAMS
    assert base.streams == ext.streams                 # all 19 subsections kept
    text = lst.render()
    assert text == ORIGINAL.replace("%alias = uPMU2\n", "%alias = uPMU2\n%extended = false\n")
    again = lst.set_extended("uPMU2", True)
    assert again.streams == ext.streams and again.extended
    assert lst.render() == ORIGINAL.replace("%alias = uPMU2\n",
                                            "%alias = uPMU2\n%extended = true\n")


def test_switching_to_extended_mints_only_missing_uuids():
    lst = UpmuList.parse(ORIGINAL)
    old = lst.find("uPMU1")
    sec = lst._doc.config["192.168.1.24"]
    sec["L2MAG"]["uuid"] = ""                          # none yet: gets one
    new = lst.set_extended("P3112233", True)
    assert new.extended and list(new.streams) == list(EXTENDED_STREAMS)
    for name in BASE_STREAMS:
        if name != "L2MAG":
            assert new.streams[name] == old.streams[name]
    assert new.streams["L2MAG"].uuid.version == 4
    assert all(new.streams[n].path == f"/upmu/uPMU1/{n}" for n in EXTENDED_ONLY_STREAMS)
    # New subsections go before [[Metadata]], in stream order.
    assert sec.sections == list(EXTENDED_STREAMS) + ["Metadata"]
    assert lst.set_extended("uPMU1", False).streams == new.streams


def test_new_streams_follow_a_moved_domain():
    text = section("10.0.0.8", "P8", "u8", BASE_STREAMS, domain="lbnl")
    lst = UpmuList.parse(text)
    upmu = lst.set_extended("u8", True)
    assert upmu.streams["FUND_W"].path == "/lbnl/u8/FUND_W"
    assert upmu.collection("FUND_W") == "lbnl/u8"


def test_changed_section_is_rendered_in_the_original_layout():
    lst = UpmuList.parse(ORIGINAL)
    lst.set_extended("uPMU1", False)                  # mode already false: no change
    assert lst.render() == ORIGINAL
    lst._doc.config["192.168.1.24"]["%alias"] = "uPMU1"
    lst._doc.config["192.168.1.24"]["L1MAG"]["Notes"] = "a, b, 'c' "
    lst._view = None
    out = lst.render()
    assert "    Notes = a, b, 'c' \n" in out and UpmuList.parse(out).find("uPMU1")


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["add", "add_ext", "rem", "ext", "base"]),
                          st.integers(0, 4)), max_size=15))
def test_uuids_never_change_across_any_sequence_of_edits(ops):
    """Model: which uPMUs exist and their mode; every UUID once seen is kept while its
    uPMU exists, including after writing and reading the text back."""
    lst = UpmuList.parse(ORIGINAL)
    model = {"192.168.1.24": False, "192.168.1.25": True}
    seen: dict[tuple[str, str], uuid.UUID] = {}
    for op, n in ops:
        ip = f"10.9.0.{n + 1}"
        if op.startswith("add"):
            if ip in model:
                with pytest.raises(UpmuListError):
                    lst.add(ip, f"P900000{n}", f"u{n}")
                continue
            lst.add(ip, f"P900000{n}", f"u{n}", extended=op == "add_ext")
            model[ip] = op == "add_ext"
        else:
            target = sorted(model)[n % len(model)] if model else ip
            if target not in model:
                with pytest.raises(UpmuNotFoundError):
                    lst.remove(target)
                continue
            if op == "rem":
                lst.remove(target)
                del model[target]
                seen = {k: v for k, v in seen.items() if k[0] != target}
            else:
                lst.set_extended(target, op == "ext")
                model[target] = op == "ext"
        lst = UpmuList.parse(lst.render())
        assert {u.ip: u.extended for u in lst.upmus} == model
        for u in lst.upmus:
            assert set(u.active_streams) <= set(u.streams)
            for name, info in u.streams.items():
                assert seen.setdefault((u.ip, name), info.uuid) == info.uuid
    assert PENDING in lst.render() and lst.render().endswith(TAIL)


# -- problems in the file --------------------------------------------------------------

def test_problems_are_collected_not_fatal():
    broken = section("10.0.0.2", "P2", "two", BASE_STREAMS, first_uuid=300)
    broken = broken.replace(f"uuid = {uid(300)}", "uuid = not-a-uuid")
    broken = broken.replace(f"    uuid = {uid(301)}\n", "")
    broken = broken.replace(f"uuid = {uid(302)}", f"uuid = {uid(100)}")  # uPMU1's L1MAG
    broken = broken.replace("    Path = /upmu/two/L2ANG\n", "")
    broken = broken.replace("Path = /upmu/two/L3MAG", "Path = /L3MAG")
    broken = broken.replace("%extended = false", "%extended = maybe")
    broken = broken.replace("    [[LSTATE]]", "    [[Other]]")
    dup = section("10.0.0.3", "p3112233", "three", BASE_STREAMS, first_uuid=400)
    lst = UpmuList.parse(FIRST + broken + dup, "u.ini")
    assert [u.ip for u in lst.upmus] == ["192.168.1.24", "10.0.0.2"]
    assert [u.ip for u in lst.excluded] == ["10.0.0.3"]
    assert lst.problems == (
        "u.ini: [10.0.0.2] %extended = 'maybe' is not true or false; assuming base from "
        "its streams",
        "u.ini: [10.0.0.2] [[L1MAG]] uuid = 'not-a-uuid' is not a UUID; stream ignored",
        "u.ini: [10.0.0.2] [[L1ANG]] has no uuid; stream ignored",
        f"u.ini: [10.0.0.2] [[L2MAG]] uuid {uid(100)} is also used by [192.168.1.24] "
        f"[[L1MAG]]; stream ignored",
        "u.ini: [10.0.0.2] [[L2ANG]] has no Path; using /upmu/two/L2ANG",
        "u.ini: [10.0.0.2] [[L3MAG]] Path = '/L3MAG' needs a collection and a name, e.g. "
        "/upmu/uPMU1/L3MAG; stream ignored",
        "u.ini: [10.0.0.2] has no [[LSTATE]] stream section; its data cannot be stored "
        "until setext adds it",
        "u.ini: [10.0.0.3] %serial_number 'p3112233' is also used by [192.168.1.24]; "
        "uPMU ignored",
    )
    two = lst.find("two")
    assert set(two.streams) == set(BASE_STREAMS) - {"L1MAG", "L1ANG", "L2MAG", "L3MAG",
                                                    "LSTATE"}
    assert two.streams["L2ANG"].path == "/upmu/two/L2ANG"
    assert lst.by_serial("P3112233").ip == "192.168.1.24"
    # setext repairs what it can without touching existing values.
    fixed = lst.set_extended("two", False)
    assert {"L1ANG", "LSTATE"} <= set(fixed.streams)
    text = lst.render()
    assert "not-a-uuid" in text and "maybe" not in text
    assert "%alias = two\n%extended = false\n" in text


def test_quoted_values_are_read_without_quotes():
    text = ('[10.0.0.4]\n%serial_number = "P3000004"\n%alias = \'four\'\n'
            f'    [[L1MAG]]\n    uuid = "{uid(9)}"\n    Path = "/upmu/four/L1MAG"\n')
    upmu = UpmuList.parse(text).find("P3000004")
    assert upmu.alias == "four" and upmu.streams["L1MAG"].uuid == uuid.UUID(uid(9))


def test_broken_syntax_names_file_and_line(tmp_path):
    path = tmp_path / "upmuconfig.ini"
    path.write_text("[10.0.0.1]\n%serial_number = P1\n  what is this\n[10.0.0.1]\n")
    with pytest.raises(UpmuConfigError) as exc:
        UpmuList.load(str(path))
    assert str(exc.value) == (f"{path}: line 3: not a [section], key = value or # comment: "
                              f"'what is this' (also bad: line 4)")
    assert exc.value.errors == ((3, "not a [section], key = value or # comment"),
                                (4, "duplicate section"))
    with pytest.raises(UpmuConfigError) as exc:
        UpmuList.parse("[a]\nx = 1\nx = 2\n[[[deep]]]\n[b\n", "u.ini")
    assert str(exc.value) == ("u.ini: line 3: duplicate key in this section: 'x = 2' "
                              "(also bad: lines 4, 5)")


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "u.ini"
    path.write_bytes(b"[10.0.0.1]\n%alias = caf\xe9\n")
    with pytest.raises(UpmuConfigError) as exc:
        UpmuList.load(str(path))
    assert str(exc.value) == f"{path}: line 2: not UTF-8 text (byte 0xe9)"


def test_missing_file_is_an_empty_list_and_edit_creates_it(tmp_path):
    path = str(tmp_path / "upmuconfig.ini")
    lst = UpmuList.load(path)
    assert len(lst) == 0 and lst.fingerprint is None and fingerprint(path) is None
    with UpmuList.edit(path):
        pass
    assert not os.path.exists(path)                   # nothing to write, nothing made
    with pytest.raises(RuntimeError), UpmuList.edit(path) as lst:
        lst.add("10.0.0.1", "P1", "one")
        raise RuntimeError("changed my mind")
    assert not os.path.exists(path)
    with UpmuList.edit(path) as lst:
        lst.add("10.0.0.1", "P1", "one")
    assert UpmuList.load(path).find("one").serial == "P1"


def test_missing_directory_and_non_files_are_errors(tmp_path):
    path = tmp_path / "nowhere" / "upmuconfig.ini"
    for action in (lambda: UpmuList.load(str(path)),
                   lambda: UpmuList.edit(str(path)).__enter__()):
        with pytest.raises(UpmuConfigError) as exc:
            action()
        assert str(exc.value) == f"{path}: directory {path.parent} does not exist"
    with pytest.raises(UpmuConfigError) as exc:
        UpmuList.load(str(tmp_path))
    assert str(exc.value) == f"{tmp_path}: not a regular file"


def test_unreadable_file_is_an_error(cfgfile, monkeypatch):
    real_open = os.open

    def denied(path, flags, *args):
        if path == cfgfile:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", denied)     # root may read anything: simulate
    with pytest.raises(UpmuConfigError) as exc:
        UpmuList.load(cfgfile)
    assert str(exc.value) == f"{cfgfile}: cannot open: Permission denied"


# -- writing -------------------------------------------------------------------------

def test_write_keeps_mode_and_changes_fingerprint(cfgfile):
    os.chmod(cfgfile, 0o640)
    loaded = UpmuList.load(cfgfile)
    assert loaded.fingerprint == fingerprint(cfgfile)
    with UpmuList.edit(cfgfile) as lst:
        lst.add("10.0.0.5", "P5", "five")
    assert stat.S_IMODE(os.stat(cfgfile).st_mode) == 0o640
    assert fingerprint(cfgfile) != loaded.fingerprint
    assert lst.fingerprint == fingerprint(cfgfile)
    assert os.listdir(os.path.dirname(cfgfile)) == ["upmuconfig.ini"]


def test_failure_before_rename_leaves_the_old_file(cfgfile, monkeypatch):
    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(UpmuConfigError) as exc, UpmuList.edit(cfgfile) as lst:
        lst.add("10.0.0.5", "P5", "five")
    assert str(exc.value) == f"{cfgfile}: cannot write: No space left on device"
    assert open(cfgfile).read() == ORIGINAL
    assert os.listdir(os.path.dirname(cfgfile)) == ["upmuconfig.ini"]


def test_exception_in_edit_writes_nothing(cfgfile):
    with pytest.raises(UpmuListError), UpmuList.edit(cfgfile) as lst:
        lst.add("10.0.0.5", "P5", "five")
        lst.add("10.0.0.6", "P5", "six")
    assert open(cfgfile).read() == ORIGINAL


def test_save_and_conflict_detection(cfgfile, tmp_path):
    lst = UpmuList.load(cfgfile)
    lst.add("10.0.0.5", "P5", "five")
    with UpmuList.edit(cfgfile) as other:              # someone else edits meanwhile
        other.remove("uPMU2")
    with pytest.raises(UpmuConflictError) as exc:
        lst.save(cfgfile, expect=lst.fingerprint)
    assert str(exc.value) == (f"{cfgfile}: changed since it was loaded; load it again and "
                              f"redo the change")
    assert UpmuList.load(cfgfile).by_ip("192.168.1.25") is None
    fp = lst.save(cfgfile)                             # no expectation: overwrite
    assert fp == fingerprint(cfgfile) and UpmuList.load(cfgfile).find("five")
    new = str(tmp_path / "new.ini")
    lst.save(new, expect=None)
    assert open(new).read() == open(cfgfile).read()


def test_lock_retaken_on_the_replaced_file(cfgfile):
    """A writer waiting on the lock of a file another writer replaces must lock the new
    file and see that writer's change (flock is per open file, so threads suffice)."""
    inside, go = threading.Event(), threading.Event()
    errors = []

    def first():
        with UpmuList.edit(cfgfile) as lst:
            lst.add("10.0.0.1", "P1", "one")
            inside.set()
            go.wait(5)

    def second():
        try:
            with UpmuList.edit(cfgfile) as lst:
                lst.add("10.0.0.2", "P2", "two")
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    t1 = threading.Thread(target=first)
    t1.start()
    assert inside.wait(5)
    t2 = threading.Thread(target=second)
    t2.start()
    t2.join(0.2)
    assert t2.is_alive()                                # blocked on the lock
    go.set()
    t1.join(5)
    t2.join(5)
    assert not errors
    assert {u.alias for u in UpmuList.load(cfgfile)} == {"uPMU1", "uPMU2", "one", "two"}


def _writer(path: str, worker: int, count: int, barrier) -> None:
    barrier.wait()
    for i in range(count):
        with UpmuList.edit(path) as lst:
            lst.add(f"10.{worker}.0.{i + 1}", f"P{worker}{i:06d}", f"w{worker}n{i}")
            counter = lst._doc.config["?counter"]
            counter["n"] = str(int(counter["n"]) + 1)


def _reader(path: str, stop, barrier, result) -> None:
    barrier.wait()
    seen = 0
    while not stop.is_set():
        lst = UpmuList.load(path)                       # never a half-written file
        assert not lst.problems, lst.problems
        seen = max(seen, len(lst))
    result.put(seen)


def test_concurrent_writers_never_lose_an_update(tmp_path):
    path = str(tmp_path / "upmuconfig.ini")
    with open(path, "w") as f:
        f.write("# shared\n[?counter]\nn = 0\n")
    workers, count = 3, 12
    ctx = multiprocessing.get_context("fork")
    barrier, stop, result = ctx.Barrier(workers + 1), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(path, w, count, barrier))
             for w in range(workers)]
    reader = ctx.Process(target=_reader, args=(path, stop, barrier, result))
    for p in procs + [reader]:
        p.start()
    for p in procs:
        p.join(30)
    stop.set()
    reader.join(30)
    assert [p.exitcode for p in procs + [reader]] == [0] * (workers + 1)
    lst = UpmuList.load(path)
    assert len(lst) == workers * count
    assert lst._doc.config["?counter"]["n"] == str(workers * count)
    assert result.get(timeout=5) <= workers * count
    assert open(path).read().startswith("# shared\n[?counter]\nn = ")


# -- layouts other than the original tools' ----------------------------------------------

def test_foreign_layouts_survive_byte_for_byte_when_untouched():
    text = ("top = 1\r\n[192.168.1.24]\r\n    %serial_number=P1   # spaced\r\n"
            f"    %alias = one\r\n        [[L1MAG]]\r\n            uuid={uid(5)}\r\n"
            "            Path=/upmu/upmu name/stream name\r\n\r\n[other]\r\nk = v")
    lst = UpmuList.parse(text)
    assert lst.render() == text
    assert lst.find("one").streams["L1MAG"].collection == "upmu/upmu name"
    lst.add("10.0.0.2", "P2", "two")
    out = lst.render()
    assert out.startswith(text + "\r\n[10.0.0.2]\r\n%serial_number = P2\r\n")
    lst = UpmuList.parse(out)
    lst.remove("two")
    assert lst.render() == text + "\r\n"


def test_text_that_cannot_be_split_safely_is_rendered_whole():
    text = ('[192.168.1.24]\n%serial_number = P1\n%alias = one\nnote = """\n'
            '[not a section]\n"""\n[192.168.1.25]\n%serial_number = P2\n%alias = two\n')
    lst = UpmuList.parse(text)
    lst.remove("two")
    out = UpmuList.parse(lst.render())
    assert [u.alias for u in out] == ["one"]
    assert out._doc.config["192.168.1.24"]["note"] == "\n[not a section]\n"


_piece = st.sampled_from([
    "# a comment\n", "\n", "   # indented comment\n", "key = value\n", "k2=v2  # c\n",
    "%flag = yes\n", "q = \"a, b\"\n", "[[sub]]\n", "    x = 1\n",
])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["192.168.1.1", "192.168.1.2", "?x", "other"]),
                          st.lists(_piece, max_size=6)), max_size=5, unique_by=lambda t: t[0]),
       st.lists(st.sampled_from(["# c\n", "\n", "top = 1\n"]), max_size=3),
       st.lists(st.sampled_from(["# end\n", "\n"]), max_size=3))
def test_any_file_round_trips_and_removal_touches_only_its_section(sections, head, tail):
    chunks = ["".join(head)]
    for name, body in sections:
        chunks.append(f"[{name}]\n" + "".join(body))
    text = "".join(chunks) + "".join(tail)
    try:
        lst = UpmuList.parse(text)
    except UpmuConfigError:
        return                                         # e.g. [[sub]] twice
    assert lst.render() == text
    for name, _ in sections:
        copy = UpmuList.parse(text)
        del copy._doc.config[name]
        out = copy.render()
        expected = UpmuList.parse(text)._doc.config
        del expected[name]
        assert UpmuList.parse(out)._doc.config.dict() == expected.dict()
        for other, body in sections:
            if other != name and body and not body[-1].strip().startswith("#") \
                    and body[-1].strip():
                assert f"[{other}]\n" + "".join(body) in out


# -- backups and diffs ---------------------------------------------------------------------

def test_backup_and_diff(cfgfile, tmp_path):
    backup = str(tmp_path / "backupconfig.ini")
    assert len(load_backup(backup)) == 0
    applied = UpmuList.load(cfgfile)
    write_backup(applied, backup)
    assert open(backup).read() == ORIGINAL
    assert not diff(load_backup(backup), UpmuList.load(cfgfile))
    with UpmuList.edit(cfgfile) as lst:
        lst.add("10.0.0.5", "P5", "five")
        lst.remove("uPMU1")
        lst.set_extended("uPMU2", False)
        lst._doc.config.initial_comment.append("# comments are not changes")
    d = diff(load_backup(backup), UpmuList.load(cfgfile))
    assert [u.alias for u in d.added] == ["five"]
    assert [u.alias for u in d.removed] == ["uPMU1"]
    assert [(a.extended, b.extended) for a, b in d.changed] == [(True, False)]


def test_psl_serials():
    assert looks_like_psl_serial("P3112233")
    for s in ("p3112233", "P311223", "P31122334", "X3112233", "P311223a"):
        assert not looks_like_psl_serial(s)

