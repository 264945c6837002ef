"""qss-dat as an operator runs it: real subprocesses, exact error lines and exit statuses."""
from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qss import dat
from dattool.cli import build_parser

QSS_DAT = shutil.which("qss-dat", path=os.path.dirname(sys.executable)) or "qss-dat"
NAME = "P3001276_2015-12-18-08-14-57.dat"
REL = f"2015/Month_12/Day_18/Hour_08/{NAME}"


def qss_dat(*args, check=None) -> subprocess.CompletedProcess:
    proc = subprocess.run([QSS_DAT, *map(str, args)], capture_output=True, text=True,
                          timeout=120)
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gen")
    proc = qss_dat("gen", "--serial", "P3001276", "--start", "2015-12-18T08:14:57Z",
                   "--minutes", "3", "--extended", "--seed", "5", out, check=0)
    assert proc.stdout == (f"wrote 3 extended files (1,654,560 bytes) of uPMU P3001276 "
                           f"under {out}/upmu_data\n")
    return out / "upmu_data"


def test_gen_lays_files_out_as_a_device_does(tree):
    files = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*.dat"))
    assert files == [REL, REL.replace("14-57", "15-57"), REL.replace("14-57", "16-57")]
    assert all((tree / f).stat().st_size == 551_520 for f in files)


def test_gen_is_deterministic_and_writes_base_files(tmp_path, tree):
    qss_dat("gen", "--serial", "P3001276", "--start", "2015-12-18 08:14:57", "--minutes", "1",
            "--extended", "--seed", "5", tmp_path / "upmu_data", check=0)
    assert (tmp_path / "upmu_data" / REL).read_bytes() == (tree / REL).read_bytes()
    qss_dat("gen", "--serial", "P3001276", "--start", "2015-12-18T08:14:57Z", "--minutes", "2",
            "--seconds-per-file", "120", tmp_path / "b", check=0)
    files = list((tmp_path / "b").rglob("*.dat"))
    assert len(files) == 1 and files[0].stat().st_size == 120 * 6312


def test_gen_refuses_bad_arguments_with_usage(tmp_path):
    proc = qss_dat("gen", "--serial", "P3001276", "--start", "yesterday", "--minutes", "1",
                   tmp_path, check=2)
    assert "argument --start: invalid time 'yesterday': use ISO 8601" in proc.stderr
    proc = qss_dat("gen", "--serial", "P3001276", "--start", "2015-01-01", "--minutes", "0",
                   tmp_path, check=2)
    assert "argument --minutes: expected a positive whole number, got '0'" in proc.stderr
    proc = qss_dat("gen", "--serial", "../etc", "--start", "2015-01-01", "--minutes", "1",
                   tmp_path, check=2)
    assert proc.stderr == ("qss-dat: error: invalid serial '../etc': use letters and digits "
                           "only, e.g. P3001276\n")
    assert not any(tmp_path.iterdir())


def test_gen_warns_about_a_non_psl_serial(tmp_path):
    proc = qss_dat("gen", "--serial", "X12", "--start", "2015-01-01", "--minutes", "1",
                   tmp_path, check=0)
    assert "warning: serial 'X12' does not look like a PSL serial" in proc.stderr


def test_info_reports_records_time_range_and_statistics(tree):
    proc = qss_dat("info", tree / REL, check=0)
    lines = proc.stdout.splitlines()
    assert lines[0] == str(tree / REL)
    assert lines[1:6] == [
        "  size      551,520 bytes",
        "  records   60 (60 extended, 0 base)",
        "  time      2015-12-18 08:14:57.000000000 .. 2015-12-18 08:15:56.991666629 UTC",
        "  samples   7,200 per base stream (136,800 points)",
        "  skipped   none",
    ]
    table = {ln.split()[0]: ln.split()[1:] for ln in lines[7:]}
    assert [ln.split()[0] for ln in lines[7:]] == [
        "L1MAG", "L1ANG", "L2MAG", "L2ANG", "L3MAG", "L3ANG", "C1MAG", "C1ANG", "C2MAG",
        "C2ANG", "C3MAG", "C3ANG", "LSTATE", "FUND_W", "FUND_VAR", "FUND_VA", "FUND_DPF",
        "FREQ_L1_1S", "FREQ_L1_C37"]
    parsed = dat.parse((tree / REL).read_bytes())
    unit, lo, mean, hi = table["L1MAG"]
    t, v = parsed.stream("L1MAG")
    assert unit == "V"
    assert float(lo) == pytest.approx(v.min(), abs=1e-4)
    assert float(mean) == pytest.approx(v.mean(), abs=1e-4)
    assert float(hi) == pytest.approx(v.max(), abs=1e-4)
    assert 7000 < float(mean) < 7120
    assert table["FREQ_L1_C37"][0] == "Hz" and 59.9 < float(table["FREQ_L1_C37"][2]) < 60.1


def test_info_brief_gives_a_line_per_file_and_a_total(tree):
    files = sorted(tree.rglob("*.dat"))
    proc = qss_dat("info", "--brief", *files, check=0)
    lines = proc.stdout.splitlines()
    assert lines[0] == (f"{NAME}   60 records (60 ext)  2015-12-18 08:14:57 .. 08:15:56.99  "
                        f"  136,800 points  ok")
    assert lines[-1] == "3 of 3 files readable, 410,400 points"


def test_info_on_damaged_files_names_each_file_and_problem(tree, tmp_path):
    good = (tree / REL).read_bytes()
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(good[:-100])
    garbage = tmp_path / "garbage.dat"
    garbage.write_bytes(b"\x07" * 5000)
    empty = tmp_path / "empty.dat"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.dat"
    proc = qss_dat("info", truncated, garbage, empty, missing, tree / REL, check=1)
    err = proc.stderr.splitlines()
    assert err == [
        f"qss-dat: error: {truncated}: 1 record skipped: truncated extended record: "
        f"9092 of 9192 bytes",
        f"qss-dat: error: {garbage}: no usable record (1 record skipped: truncated base "
        f"record: 5000 of 6312 bytes)",
        f"qss-dat: error: {empty}: empty file",
        f"qss-dat: error: {missing}: No such file or directory",
    ]
    # The readable files are still reported in full.
    assert "  records   59 (59 extended, 0 base)" in proc.stdout
    assert "    record 59 at byte 542328: truncated extended record: 9092 of 9192 bytes" \
        in proc.stdout
    assert "  records   60 (60 extended, 0 base)" in proc.stdout


def test_records_before_gps_lock_are_a_warning_not_a_failure(tmp_path, tree):
    raw = dat.split_records((tree / REL).read_bytes()).records.copy()
    raw["timestamp"][:5] = [2000, 1, 1, 0, 0, 0]
    raw["timestamp"][:5, 5] = np.arange(5)
    path = tmp_path / "early.dat"
    path.write_bytes(dat.encode_records(raw))
    proc = qss_dat("info", path, check=0)
    assert proc.stderr.startswith(f"qss-dat: warning: {path}: 5 records skipped: 5 x "
                                  f"implausible date 2000-01-01 00:00:00 UTC (outside 2010-01-01")
    assert "  records   55 (55 extended, 0 base)" in proc.stdout
    # A wider window takes them in.
    proc = qss_dat("info", "--earliest", "1999-01-01", path, check=0)
    assert "  records   60 (60 extended, 0 base)" in proc.stdout and proc.stderr == ""


def test_csv_has_a_row_per_sample_at_full_precision(tree, tmp_path):
    out = tmp_path / "minute.csv"
    qss_dat("csv", tree / REL, "-o", out, check=0)
    rows = list(csv.reader(out.open()))
    parsed = dat.parse((tree / REL).read_bytes())
    assert rows[0] == ["time_ns", *dat.EXTENDED_STREAMS]
    assert len(rows) == 1 + 7200
    times = np.array([int(r[0]) for r in rows[1:]])
    assert np.array_equal(times, parsed.times)
    values = np.array([[float(x) for x in r[1:]] for r in rows[1:]]).T
    assert np.array_equal(values, parsed.values)  # exact: no digits lost


def test_csv_leaves_extended_cells_empty_for_base_records(tmp_path, tree):
    raw = dat.split_records((tree / REL).read_bytes()).records.copy()
    raw["status"][1::2] = 0  # every other record base
    path = tmp_path / "mixed.dat"
    path.write_bytes(dat.encode_records(raw))
    proc = qss_dat("csv", path, check=0)
    rows = list(csv.reader(io.StringIO(proc.stdout)))
    assert len(rows) == 1 + 7200 and len(rows[0]) == 20
    assert rows[1][14:] != [""] * 6 and all(rows[1][1:14])
    assert rows[121][14:] == [""] * 6 and all(rows[121][1:14])
    assert rows[121][13] == "0.0" and rows[1][13] in ("32.0", "36.0")


def test_csv_of_a_base_file_has_thirteen_stream_columns(tmp_path):
    qss_dat("gen", "--serial", "P3001276", "--start", "2016-03-01T00:00:00", "--minutes", "1",
            tmp_path, check=0)
    path = next(tmp_path.rglob("*.dat"))
    proc = qss_dat("csv", path, check=0)
    header = proc.stdout.split("\n", 1)[0]
    assert header == "time_ns," + ",".join(dat.BASE_STREAMS)


def test_csv_of_an_unusable_file_fails_with_one_line(tmp_path):
    path = tmp_path / "bad.dat"
    path.write_bytes(b"\0" * 6312)
    proc = qss_dat("csv", path, check=1)
    assert proc.stdout == ""
    assert proc.stderr == (f"qss-dat: error: {path}: no usable record (1 record skipped: "
                           f"invalid sample interval 0 ms (expected about 8.333 ms: 1 to 120 "
                           f"samples a second))\n")


def test_usage_errors_exit_2():
    proc = qss_dat(check=2)
    assert "usage: qss-dat" in proc.stderr
    proc = qss_dat("frobnicate", check=2)
    assert "invalid choice: 'frobnicate'" in proc.stderr


def test_every_command_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        assert p.description, name
        for action in p._actions:
            assert action.help, (name, action.dest)
    proc = qss_dat("--help", check=0)
    assert "exit status:" in proc.stdout and "examples:" in proc.stdout


def test_garbage_timestamps_are_shown_as_stored_with_the_reason(tmp_path, tree):
    raw = dat.split_records((tree / REL).read_bytes()).records.copy()
    raw["timestamp"][3:21] = [41696, 2, 164, -1526726656, 2, 10813441]
    path = tmp_path / "garbled.dat"
    path.write_bytes(dat.encode_records(raw))
    proc = qss_dat("info", "--brief", path, check=1)     # damage: exit status 1
    assert proc.stderr.splitlines() == [
        f"qss-dat: error: {path}: 18 records skipped: 18 x invalid timestamp (41696, 2, "
        f"164, -1526726656, 2, 10813441): year 41696 out of range 1-9999"]
