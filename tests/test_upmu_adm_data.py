"""upmu-adm's commands on queued files, with a real SQLite queue on tmp_path and files
from the realistic generator: importdat (duplicates, a file pushed then imported,
damaged files, names without serial, unknown serials, the non-recursive hint),
exportdat (a bytes-identical round trip) and delbackup (type exactly yes)."""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from qss.generator import UpmuSimulator, write_tree
from qss.naming import device_path
from upmu_adm import REGISTRY, Services, ShellState
from upmu_adm.app import run_interactive
from upmu_adm.cli import run_script
from upmu_adm.periods import parse_period
from upmu_adm.registry import Reply

from test_upmu_adm_commands import FIRST, ORIGINAL, U1, U2

START = dt.datetime(2015, 12, 18, 8, 0, tzinfo=dt.timezone.utc)
SERIAL = "P3112234"          # uPMU2, extended


@pytest.fixture
def qurl(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/queue.db"


@pytest.fixture
def state(tmp_path: Path, qurl: str):
    cfg = tmp_path / "upmuconfig.ini"
    cfg.write_text(ORIGINAL)
    st = ShellState.load(str(cfg), str(tmp_path / "backupconfig.ini"),
                         Services(queue_url=qurl, srv=str(tmp_path), cwd=lambda: str(tmp_path)))
    yield st
    st.close()


@pytest.fixture
def queue(state):
    return state.services.queue()


def tree(root: Path, serial: str = SERIAL, files: int = 3, extended: bool = True,
         start: dt.datetime = START) -> list[Path]:
    """``files`` device files of 20 s each under ``root/upmu_data/...``."""
    return write_tree(root, serial, start, files // 3 or 1, extended=extended,
                      seconds_per_file=20)[:files]


def flat(src: list[Path], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for p in src:
        shutil.copy(p, directory / p.name)
    return directory


class Asker:
    """Answers questions and choices from lists, recording what was asked."""

    def __init__(self, answers=(), choices=()):
        self.answers, self.choices = list(answers), list(choices)
        self.asked: list = []

    def confirm(self, c) -> bool:
        self.asked.append(c)
        return self.answers.pop(0)

    def choose(self, c):
        self.asked.append(c)
        return self.choices.pop(0)


def one(state, line: str, asker: Asker | None = None) -> Reply:
    asker = asker or Asker()
    replies = list(REGISTRY.execute(state, line, asker.confirm, asker.choose))
    assert len(replies) == 1, replies
    assert not asker.answers and not asker.choices, "questions not asked"
    return replies[0]


def queued(queue, serial: str = SERIAL) -> dict[str, bytes]:
    return {f.name: bytes(queue.read(f)) for f in queue.files(serial)}


def summary(text: str) -> dict[str, str]:
    """The summary's category lines: {"queued": "3 files (...)", ...}."""
    out = {}
    for line in text.splitlines():
        if line.startswith("  ") and not line.startswith("    "):
            key, _, value = line.strip().partition("  ")
            out[key] = value.strip()
    return out


# -- importdat ---------------------------------------------------------------------------

def test_importdat_without_arguments_prints_usage(state):
    reply = one(state, "importdat")
    assert reply.ok
    assert reply.text.startswith("usage: importdat DIR [IP|SERIAL|ALIAS] [--recursive]\n")


@pytest.mark.parametrize("line, text", [
    ("importdat --recursive", "importdat: missing DIR; usage: importdat DIR "
                              "[IP|SERIAL|ALIAS] [--recursive]  (help importdat for details)"),
    ("importdat d --force", "importdat: unknown option '--force' (the option is "
                            "--recursive); usage: importdat DIR [IP|SERIAL|ALIAS] "
                            "[--recursive]  (help importdat for details)"),
    ("importdat d uPMU1 x", "importdat: unexpected 'x'; usage: importdat DIR "
                            "[IP|SERIAL|ALIAS] [--recursive]  (help importdat for details)"),
    ("importdat d nobody", "importdat: no uPMU has IP address, serial number or alias "
                           "'nobody'; type list to see the uPMUs"),
])
def test_importdat_usage_errors(state, line, text):
    reply = one(state, line)
    assert (reply.ok, reply.text) == (False, text)


def test_importdat_of_a_missing_or_empty_directory(state, tmp_path):
    reply = one(state, "importdat nowhere")
    assert (reply.ok, reply.text) == (False, f"importdat: {tmp_path}/nowhere: no such "
                                             f"directory; nothing imported")
    (tmp_path / "empty").mkdir()
    reply = one(state, "importdat empty")
    assert (reply.ok, reply.text) == (False, f"importdat: no .dat files in "
                                             f"{tmp_path}/empty")


def test_importdat_queues_under_the_device_path_and_skips_duplicates(state, queue,
                                                                    tmp_path):
    src = tree(tmp_path / "src")
    d = flat(src, tmp_path / "in")
    reply = one(state, f"importdat {d}")
    assert reply.ok, reply.text
    assert summary(reply.text)["queued"].startswith("3 files (")
    assert summary(reply.text)["already present"] == "0 files"
    want = {device_path(SERIAL, START + dt.timedelta(seconds=20 * i)): src[i].read_bytes()
            for i in range(3)}
    assert queued(queue) == want
    assert "sync2q stores the queued files in BTrDB by itself" in reply.text
    again = one(state, f"importdat {d}")
    assert again.ok
    assert summary(again.text)["queued"] == "0 files"
    assert summary(again.text)["already present"] == "3 files"
    assert queued(queue) == want


def test_a_file_pushed_first_then_imported_is_one_file(state, queue, tmp_path):
    src = tree(tmp_path / "src")
    name = device_path(SERIAL, START)
    queue.put(SERIAL, name, src[0].read_bytes())             # as the receiver does
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(src[0], d / src[0].name.replace(".dat", ".DAT"))   # as a FAT drive shows it
    reply = one(state, f"importdat {d}")
    assert summary(reply.text)["already present"] == "1 file", reply.text
    assert queue.serials() == [SERIAL]
    assert [f.name for f in queue.files(SERIAL)] == [name]


def test_files_are_queued_under_the_serial_as_the_list_spells_it(tmp_path, qurl):
    cfg = tmp_path / "u.ini"
    cfg.write_text(FIRST.replace("P3112233", "p3112233"))
    st = ShellState.load(str(cfg), str(tmp_path / "b.ini"), Services(queue_url=qurl))
    d = flat(tree(tmp_path / "src", serial="P3112233", extended=False), tmp_path / "in")
    assert one(st, f"importdat {d}").ok
    q = st.services.queue()
    assert q.serials() == ["p3112233"]                   # as the receiver queues them
    assert next(iter(q.files("p3112233"))).name == device_path("P3112233", START)
    st.close()


def test_a_differing_copy_replaces_but_a_truncated_copy_does_not(state, queue, tmp_path):
    src = tree(tmp_path / "src")
    d = flat(src, tmp_path / "in")
    one(state, f"importdat {d}")
    good = src[0].read_bytes()
    (d / src[0].name).write_bytes(good[:9192])               # first record only
    other = UpmuSimulator(SERIAL, seed=7, extended=True).file_bytes(
        int(START.timestamp()) + 20, 20)
    (d / src[1].name).write_bytes(other)
    reply = one(state, f"importdat {d}")
    s = summary(reply.text)
    assert s["replaced"].startswith("1 file: the queued copy had different contents")
    assert s["already present"] == ("2 files, of which 1 truncated copies of longer queued "
                                    "files (kept the queued files)")
    files = queued(queue)
    assert files[device_path(SERIAL, START)] == good
    assert files[device_path(SERIAL, START + dt.timedelta(seconds=20))] == other


def test_importing_a_file_whose_queued_copy_is_unreadable_repairs_it(state, queue,
                                                                    tmp_path):
    """A queued file whose contents are missing (its data segment gone) is replaced by
    the imported copy, not refused: importdat is how an operator repairs it."""
    import sqlite3
    src = tree(tmp_path / "src")
    d = flat(src, tmp_path / "in")
    one(state, f"importdat {d}")
    name = device_path(SERIAL, START)
    with sqlite3.connect(tmp_path / "queue.db") as db:
        db.execute("UPDATE received_files SET segment = 's-gone-0.seg' WHERE name = ?",
                   (name,))
    reply = one(state, f"importdat {d}")
    assert reply.ok, reply.text
    assert summary(reply.text)["replaced"].startswith("1 file: ")
    assert queued(queue)[name] == src[0].read_bytes()


def test_damaged_files_are_queued_with_a_warning_and_unusable_ones_refused(state, queue,
                                                                         tmp_path):
    src = tree(tmp_path / "src")
    d = flat(src, tmp_path / "in")
    damaged = d / src[0].name
    damaged.write_bytes(src[0].read_bytes() + b"\0" * 500)  # a truncated last record
    junk = d / f"{SERIAL}_2015-12-18-09-00-00.dat"
    junk.write_bytes(b"\xff" * 100)
    empty = d / f"{SERIAL}_2015-12-18-09-01-00.dat"
    empty.write_bytes(b"")
    reply = one(state, f"importdat {d}")
    assert not reply.ok                                     # scripts see the invalid files
    s = summary(reply.text)
    assert s["queued"].startswith("3 files")
    assert s["invalid"] == "2 files, not queued:"
    assert f"    {junk.name}: no usable record (1 record skipped: truncated record: 100 " \
           f"bytes, too short to tell base from extended)" in reply.text
    assert f"    {empty.name}: empty file" in reply.text
    assert ("warning: 1 damaged file queued anyway; sync2q stores their good records:\n"
            f"    {damaged.name}: 1 record skipped: truncated") in reply.text
    assert len(queued(queue)) == 3


def test_unknown_serials_are_refused_with_a_hint_to_add_them(state, queue, tmp_path):
    d = flat(tree(tmp_path / "src", serial="P3009999"), tmp_path / "in")
    reply = one(state, f"importdat {d}")
    assert not reply.ok
    assert ("  refused          3 files of serial number 'P3009999', which is not in the "
            "uPMU list; add it with: add IPADDR P3009999 ALIAS [ext], then save, and "
            "import again") in reply.text
    assert queue.serials() == []


def test_names_without_serial_go_to_the_upmu_named(state, queue, tmp_path):
    src = tree(tmp_path / "src")
    d = tmp_path / "in"
    d.mkdir()
    for i, p in enumerate(src):
        shutil.copy(p, d / f"file{i}.dat")
    reply = one(state, f"importdat {d} uPMU2")
    assert reply.ok, reply.text
    # Named as the device names them, from the first record: one file with a push.
    assert list(queued(queue)) == [device_path(SERIAL, START + dt.timedelta(seconds=20 * i))
                                   for i in range(3)]


def test_names_without_serial_and_several_upmus_ask_which(state, queue, tmp_path):
    d = flat(tree(tmp_path / "src")[:1], tmp_path / "in")
    shutil.move(d / f"{SERIAL}_2015-12-18-08-00-00.dat", d / "a.dat")
    asker = Asker(choices=["p3112234"])
    reply = one(state, f"importdat {d}", asker)
    (choice,) = asker.asked
    assert choice.question == (f"1 file in {d} is not named as a uPMU names its files "
                               f"('a.dat': no serial number).\nWhich uPMU is it from (IP, serial or "
                               f"alias)?")
    assert [v for v, _ in choice.options] == ["uPMU1", "uPMU2"]
    assert reply.ok and summary(reply.text)["queued"].startswith("1 file")
    assert queue.serials() == [SERIAL]


def test_a_name_with_a_serial_but_no_time_is_called_so(state, queue, tmp_path):
    d = flat(tree(tmp_path / "src")[:2], tmp_path / "in")
    for i, p in enumerate(sorted(d.iterdir())):
        p.rename(d / f"{SERIAL}_notadate{'' if i == 0 else i}.dat")
    asker = Asker(choices=[SERIAL])
    reply = one(state, f"importdat {d}", asker)
    (choice,) = asker.asked
    assert choice.question == (
        f"2 files in {d} are not named as a uPMU names its files (e.g. "
        f"'{SERIAL}_notadate.dat': serial {SERIAL}, but 'notadate' is no time "
        f"YYYY-MM-DD-HH-MM-SS).\nWhich uPMU are "
        f"they from (IP, serial or alias)?")
    assert reply.ok and summary(reply.text)["queued"].startswith("2 files")


def test_the_question_cancelled_or_unanswerable_imports_nothing(state, queue, tmp_path):
    d = flat(tree(tmp_path / "src")[:1], tmp_path / "in")
    shutil.move(d / f"{SERIAL}_2015-12-18-08-00-00.dat", d / "a.dat")
    assert one(state, f"importdat {d}", Asker(choices=[None])).text == "Nothing imported"
    bad = one(state, f"importdat {d}", Asker(choices=["nobody"]))
    assert (bad.ok, bad.text) == (False, "importdat: no uPMU has IP address, serial number "
                                         "or alias 'nobody'; type list to see the uPMUs; "
                                         "nothing imported")
    (reply,) = list(REGISTRY.execute(state, f"importdat {d}", None, None))
    assert not reply.ok
    assert reply.text.endswith("Which uPMU is it from (IP, serial or alias)? not asked: "
                               f"standard input is not a terminal; name their uPMU: "
                               f"importdat {d} IP|SERIAL|ALIAS")
    assert queue.serials() == []


def test_names_without_serial_go_to_the_only_upmu(tmp_path, qurl):
    cfg = tmp_path / "u.ini"
    cfg.write_text(FIRST)
    st = ShellState.load(str(cfg), str(tmp_path / "b.ini"), Services(queue_url=qurl))
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(tree(tmp_path / "src", serial="P3112233", extended=False)[0], d / "x.dat")
    reply = one(st, f"importdat {d}")
    assert reply.ok
    assert (f"note: the 1 file not named as a uPMU names its files ('x.dat': no serial "
            f"number) went to {U1}, the only uPMU in the list") in reply.text
    st.close()


def test_without_recursive_it_says_what_sub_directories_hold(state, queue, tmp_path):
    src = tree(tmp_path / "src")
    reply = one(state, f"importdat {tmp_path / 'src'}")
    assert (reply.ok, reply.text) == (
        False, f"importdat: no .dat files in {tmp_path}/src; its sub-directories hold 3 "
               f".dat files (e.g. in {src[0].parent}): add --recursive to import them")
    shutil.copy(src[0], tmp_path / "src" / "P3112234_2015-12-18-07-00-00.dat")
    reply = one(state, f"importdat {tmp_path / 'src'}")
    assert reply.ok
    assert (f"note: 3 more .dat files are in sub-directories of {tmp_path}/src (e.g. "
            f"{src[0].parent}); importdat {tmp_path}/src --recursive imports them too"
            ) in reply.text
    reply = one(state, f"importdat {tmp_path / 'src'} --recursive")
    assert summary(reply.text)["queued"].startswith("3 files")   # the 4th was there
    assert len(queued(queue)) == 4


def test_notes_for_extended_files_of_a_base_upmu_and_unsaved_upmus(state, tmp_path):
    one(state, "add 10.0.0.5 P3001234 u1")
    d = flat(tree(tmp_path / "a", serial="P3112233") + tree(tmp_path / "b", "P3001234"),
             tmp_path / "in")
    reply = one(state, f"importdat {d}")
    assert reply.ok
    assert (f"note: 3 files of {U1} hold extended-mode records but it is in base mode: "
            f"sync2q stores only their base streams; setext uPMU1 true (and save) to "
            f"store all") in reply.text
    assert ("note: u1 (10.0.0.5, P3001234) is not saved yet: sync2q stores its files once "
            "you save the list") in reply.text


def test_importdat_when_the_queue_cannot_be_opened(tmp_path):
    cfg = tmp_path / "u.ini"
    cfg.write_text(ORIGINAL)
    st = ShellState.load(str(cfg), str(tmp_path / "b.ini"),
                         Services(queue_url=f"sqlite:///{tmp_path}/gone/q.db"))
    d = flat(tree(tmp_path / "src"), tmp_path / "in")
    reply = one(st, f"importdat {d}")
    assert (reply.ok, reply.text) == (
        False, f"importdat: queue sqlite:///{tmp_path}/gone/q.db: directory {tmp_path}/gone "
               f"does not exist; mount the data drive or create the directory; nothing "
               f"imported")


def test_importdat_reports_progress(tmp_path, qurl):
    calls = []

    class Recording:
        def __call__(self, total, desc, unit="file"):
            import contextlib

            @contextlib.contextmanager
            def bar():
                calls.append(("open", total, desc))
                yield lambda n: calls.append(("advance", n))
                calls.append(("close",))
            return bar()

    cfg = tmp_path / "u.ini"
    cfg.write_text(ORIGINAL)
    st = ShellState.load(str(cfg), str(tmp_path / "b.ini"),
                         Services(queue_url=qurl, progress=Recording()))
    d = flat(tree(tmp_path / "src"), tmp_path / "in")
    one(st, f"importdat {d}")
    assert calls == [("open", 3, "Importing"), ("advance", 1), ("advance", 1),
                     ("advance", 1), ("close",)]
    st.close()


# -- exportdat ---------------------------------------------------------------------------

def test_exportdat_round_trip_is_bytes_identical(state, queue, tmp_path):
    src = write_tree(tmp_path / "src", SERIAL, START, 2, extended=True, seconds_per_file=30)
    one(state, f"importdat {tmp_path / 'src'} --recursive")
    reply = one(state, f"exportdat {tmp_path / 'out'} uPMU2 2015 12")
    assert reply.ok, reply.text
    assert reply.text.splitlines()[0] == (
        f"Exported the queued files of {U2} for 2015-12 (UTC) to {tmp_path}/out/upmu_data/ "
        f"(YYYY/Month_MM/Day_DD/Hour_HH/) in " + reply.text.split(" in ")[-1].splitlines()[0])
    assert summary(reply.text)["written"].startswith("4 files (")
    out = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*.dat"))
    assert out == sorted(p.relative_to(tmp_path / "src") for p in src)
    for p in src:
        assert (tmp_path / "out" / p.relative_to(tmp_path / "src")).read_bytes() == \
            p.read_bytes()
    assert not list((tmp_path / "out").rglob(".*"))             # no temporary files left


def test_exportdat_never_overwrites_a_different_file(state, queue, tmp_path):
    src = tree(tmp_path / "src")
    one(state, f"importdat {tmp_path / 'src'} --recursive")
    out = tmp_path / "upmu_data"                              # named upmu_data: used as is
    first = one(state, f"exportdat {out} {SERIAL} 2015 12 18 8")
    assert first.ok and summary(first.text)["written"].startswith("3 files")
    victim = out / src[1].relative_to(tmp_path / "src" / "upmu_data")
    victim.write_bytes(b"mine")
    again = one(state, f"exportdat {out} {SERIAL} 2015 12 18 08")
    assert not again.ok
    s = summary(again.text)
    assert (s["written"], s["already there"]) == ("0 files", "2 files with the same contents")
    assert s["not written"] == ("1 file: a different file already has the name (move it "
                                "away and export again):")
    assert f"    {victim}" in again.text
    assert victim.read_bytes() == b"mine"


def test_exportdat_of_an_empty_period_and_of_a_serial_no_longer_listed(state, queue,
                                                                      tmp_path):
    reply = one(state, f"exportdat {tmp_path} uPMU2 2016")
    assert (reply.ok, reply.text) == (True, f"No queued files of {U2} for 2016 (UTC); "
                                            f"nothing exported")
    queue.put("P3009999", device_path("P3009999", START), b"x" * 10)
    reply = one(state, f"exportdat {tmp_path / 'o'} p3009999 all")
    assert reply.ok
    assert reply.text.startswith("Exported the queued files of serial P3009999 (not in the "
                                 "uPMU list) of all time to")
    assert (tmp_path / "o/upmu_data/2015/Month_12/Day_18/Hour_08/"
            "P3009999_2015-12-18-08-00-00.dat").read_bytes() == b"x" * 10


@pytest.mark.parametrize("line, text", [
    ("exportdat d uPMU2 15", "exportdat: YEAR must be a number from 1970 to 2999, not '15'"),
    ("exportdat d uPMU2 2015 13", "exportdat: MONTH must be a number from 1 to 12, not "
                                  "'13'"),
    ("exportdat d uPMU2 2015 2 30", "exportdat: DAY of 2015-02 must be a number from 1 to "
                                    "28, not '30'"),
    ("exportdat d uPMU2 all 1", "exportdat: nothing may follow all, not '1'"),
])
def test_exportdat_bad_periods(state, line, text):
    reply = one(state, line)
    assert not reply.ok and reply.text.startswith(text + "; usage: exportdat DIR SERIAL")


def test_exportdat_of_an_unknown_name(state):
    reply = one(state, "exportdat d nobody 2015")
    assert (reply.ok, reply.text) == (False, "exportdat: no uPMU and no queued files have IP "
                                             "address, serial number or alias 'nobody'; "
                                             "type list to see the uPMUs")


# -- delbackup ---------------------------------------------------------------------------

def test_delbackup_shows_counts_warns_about_unsynced_and_wants_yes(state, queue, tmp_path):
    tree(tmp_path / "src")
    one(state, f"importdat {tmp_path / 'src'} --recursive")
    first = next(iter(queue.files(SERIAL)))
    assert queue.mark_synced(first)
    asker = Asker(answers=[False])
    assert one(state, "delbackup uPMU2 2015 12 18", asker).text == "Nothing deleted"
    (c,) = asker.asked
    assert c.word == "yes"
    lines = c.question.splitlines()
    assert lines[0].startswith(f"{U2} has 3 files (") and lines[0].endswith(
        ") queued for 2015-12-18 (UTC):")
    assert lines[1].startswith("  1 file (") and lines[1].endswith(
        " synced (their data is in BTrDB and is kept)")
    assert lines[2].startswith("  2 files (") and lines[2].endswith(") not synced yet")
    assert lines[3].startswith("WARNING: 2 files (") and lines[3].endswith(
        "NOT SYNCED YET: their data is not in BTrDB and will be LOST.")
    assert lines[4] == "Delete these 3 files?"
    assert len(queued(queue)) == 3
    reply = one(state, "delbackup P3112234 2015 12 18 08", Asker(answers=[True]))
    assert reply.ok and reply.text.startswith(f"Deleted 3 files (")
    assert reply.text.endswith(f"of {U2} queued for 2015-12-18 08:00 to 09:00 (UTC); its "
                               f"data stored in BTrDB is kept")
    assert queued(queue) == {}


def test_delbackup_of_synced_files_only_does_not_warn(state, queue, tmp_path):
    tree(tmp_path / "src")
    one(state, f"importdat {tmp_path / 'src'} --recursive")
    for f in list(queue.files(SERIAL)):
        queue.mark_synced(f)
    asker = Asker(answers=[True])
    one(state, "delbackup uPMU2 all", asker)
    assert "WARNING" not in asker.asked[0].question
    assert queue.serials() == []


def test_delbackup_of_nothing_and_bad_arguments(state):
    assert one(state, "delbackup uPMU2 2015").text == (f"No queued files of {U2} for 2015 "
                                                       f"(UTC); nothing to delete")
    reply = one(state, "delbackup uPMU2")
    assert reply.text == ("delbackup: missing YEAR; usage: delbackup SERIAL YEAR [MONTH] "
                          "[DAY] [HOUR]  (help delbackup for details)")


def test_delbackup_in_the_shell_needs_exactly_yes(state, queue, tmp_path):
    tree(tmp_path / "src")
    one(state, f"importdat {tmp_path / 'src'} --recursive")
    out: list[str] = []
    with create_pipe_input() as inp:
        inp.send_text("delbackup uPMU2 2015\r" "y\r"
                      "delbackup uPMU2 2015\r" "yes\r" "exit\r")
        status = run_interactive(state, input=inp, output=DummyOutput(),
                                 history=InMemoryHistory(), write=out.append)
    assert status == 0
    assert "Nothing deleted" in out
    assert any(line.startswith("Deleted 3 files") for line in out)
    assert queued(queue) == {}


def test_delbackup_in_a_script_with_yes(state, queue, tmp_path):
    import io
    tree(tmp_path / "src")
    one(state, f"importdat {tmp_path / 'src'} --recursive")
    out, err = io.StringIO(), io.StringIO()
    assert run_script(state, ["delbackup uPMU2 2015"], out=out, err=err) == 1
    assert "(type yes to confirm) not asked: standard input is not a terminal" in \
        err.getvalue()
    assert len(queued(queue)) == 3
    assert run_script(state, ["delbackup uPMU2 2015"], out=out, err=err,
                      assume_yes=True) == 0
    assert "Delete these 3 files? (type yes to confirm) yes (--yes)" in out.getvalue()
    assert queued(queue) == {}


# -- periods -----------------------------------------------------------------------------

@pytest.mark.parametrize("words, start, end, label", [
    (["2015"], (2015, 1, 1), (2016, 1, 1), "2015"),
    (["2015", "12"], (2015, 12, 1), (2016, 1, 1), "2015-12"),
    (["2016", "02", "29"], (2016, 2, 29), (2016, 3, 1), "2016-02-29"),
    (["2015", "12", "31", "23"], (2015, 12, 31, 23), (2016, 1, 1), "2015-12-31 23:00 to 00:00"),
])
def test_periods(words, start, end, label):
    p = parse_period(words)
    utc = dt.timezone.utc
    assert (p.start, p.end, p.label) == (dt.datetime(*start, tzinfo=utc),
                                         dt.datetime(*end, tzinfo=utc), label)
    assert parse_period(["ALL"]).everything
