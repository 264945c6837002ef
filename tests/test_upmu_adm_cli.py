"""upmu-adm without a terminal, as scripts and SSH one-liners run it: real subprocesses,
exact output and exit statuses."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qss.generator import write_tree
from qss.upmuconfig import UpmuList
from upmu_adm import REGISTRY, ShellState
from upmu_adm.cli import build_parser, run_script
from upmu_adm.registry import Registry

from test_upmu_adm_commands import ORIGINAL, PICKED_UP

ADDED = ("Added u1 (10.0.0.5, P3001234) in extended mode with 19 streams under /upmu/u1/ - "
         "not saved yet; type save to apply")


@pytest.fixture
def env(tmp_path: Path, server) -> dict[str, str]:
    settings = tmp_path / "qss.ini"
    settings.write_text("")            # no appliance settings from the machine running tests
    env = {k: v for k, v in os.environ.items() if k not in ("BTRDB_ENDPOINTS", "MONGO_ADDR")}
    return {**env, "QSS_CONFIG": str(settings), "HOME": str(tmp_path),
            "BTRDB_ENDPOINTS": server.grpc}


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "upmuconfig.ini"
    path.write_text(ORIGINAL)
    return path


def adm(env, cfg: Path, *args: str, stdin: str | None = None,
        status: int | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "upmu_adm", "--upmuconfig", str(cfg), "--backupconfig",
         str(cfg.with_name("backupconfig.ini")), "--queue",
         f"sqlite:///{cfg.with_name('queue.db')}", *args],
        input=stdin if stdin is not None else "", capture_output=True, text=True, env=env,
        timeout=60)
    if status is not None:
        assert proc.returncode == status, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc


def test_c_adds_and_saves_in_one_line(env, cfg):
    backup = cfg.with_name("backupconfig.ini")
    backup.write_text(ORIGINAL)        # applied before: only u1 is new to BTrDB
    proc = adm(env, cfg, "-c", "add 10.0.0.5 P3001234 u1 true; save", status=0)
    assert proc.stdout == "\n".join([
        ADDED, f"Saved {cfg}:", "  added   u1 (10.0.0.5, P3001234), extended mode, 19 streams",
        f"Applied the streams' metadata in BTrDB {env['BTRDB_ENDPOINTS']}: u1 (10.0.0.5, "
        f"P3001234) 19 created.",
        f"Recorded it as the last applied list in {backup}.", PICKED_UP, ""])
    assert proc.stderr == ""
    assert UpmuList.load(str(cfg)).find("u1").extended
    assert backup.read_text() == cfg.read_text()


def test_c_stops_at_the_first_failure_and_exits_1(env, cfg):
    proc = adm(env, cfg, "-c", "add 10.0.0.5 P3001234 u1 true; add 10.0.0.6 P3001234 u2; "
                               "save", status=1)
    assert proc.stdout == ADDED + "\n"
    assert proc.stderr.splitlines() == [
        "add: serial number 'P3001234' is already used by u1 (10.0.0.5, P3001234)",
        "not run: save",
        "Abort - Not saving changes... (1 unsaved change discarded: added u1 (10.0.0.5, "
        "P3001234), extended mode, 19 streams; end the commands with save to keep them)"]
    assert cfg.read_text() == ORIGINAL


def test_c_without_save_discards_and_exits_1(env, cfg):
    proc = adm(env, cfg, "-c", "add 10.0.0.5 P3001234 u1 true", status=1)
    assert proc.stderr.startswith("Abort - Not saving changes... (1 unsaved change")
    assert cfg.read_text() == ORIGINAL


def test_c_list_exits_0(env, cfg):
    proc = adm(env, cfg, "-c", "list", status=0)
    assert proc.stdout.splitlines()[2].split() == ["192.168.1.24", "P3112233", "uPMU1",
                                                   "base", "13", "never", "none"]


def test_importdat_in_a_script_exits_1_when_a_file_is_refused(env, cfg, tmp_path):
    d = tmp_path / "in"
    write_tree(d, "P3112234", dt.datetime(2015, 12, 18, 8), 1, extended=True,
               seconds_per_file=30)
    proc = adm(env, cfg, "-c", f"importdat {d} --recursive", status=0)
    assert proc.stdout.splitlines()[1].startswith("  queued           2 files (")
    assert proc.stderr == ""                   # no progress bar without a terminal
    (d / "upmu_data" / "junk.dat").write_bytes(b"junk")
    proc = adm(env, cfg, "-c", f"importdat {d}/upmu_data uPMU2; list", status=1)
    assert "    junk.dat: no usable record" in proc.stderr
    assert proc.stderr.endswith("not run: list\n")


def test_status_in_a_script(env, cfg):
    proc = adm(env, cfg, "-c", "status", status=0)
    assert proc.stdout.splitlines()[0].split()[:4] == ["UPMU", "LAST", "RECEIVED", "(UTC)"]
    assert "Data drive (" in proc.stdout


def test_rem_needs_yes_without_a_terminal(env, cfg):
    proc = adm(env, cfg, "-c", "rem uPMU2; save", status=1)
    assert proc.stderr.splitlines() == [
        "Remove uPMU2 (192.168.1.25, P3112234) from the uPMU list? [y/N] not asked: "
        "standard input is not a terminal; run upmu-adm with --yes to answer yes",
        "not run: save"]
    assert cfg.read_text() == ORIGINAL
    proc = adm(env, cfg, "--yes", "-c", "rem uPMU2; save", status=0)
    assert proc.stdout.splitlines()[0] == ("Remove uPMU2 (192.168.1.25, P3112234) from the "
                                           "uPMU list? [y/N] yes (--yes)")
    assert [u.alias for u in UpmuList.load(str(cfg))] == ["uPMU1"]


def test_exit_in_a_script_with_yes_discards_deliberately(env, cfg):
    proc = adm(env, cfg, "-y", "-c", "add 10.0.0.5 P3001234 u1; exit; save", status=0)
    assert proc.stdout.splitlines()[-1] == "Abort - Not saving changes..."
    assert cfg.read_text() == ORIGINAL


def test_commands_on_standard_input(env, cfg):
    script = ("# switch the first uPMU to extended mode\n"
              "setext uPMU1 true\n"
              "\n"
              "list; save\n")
    proc = adm(env, cfg, stdin=script, status=0)
    assert proc.stdout.startswith("Switched uPMU1 (192.168.1.24, P3112233) to extended mode")
    assert proc.stdout.endswith(PICKED_UP + "\n")
    assert UpmuList.load(str(cfg)).find("uPMU1").extended


def test_standard_input_stops_at_a_failure(env, cfg):
    proc = adm(env, cfg, stdin="setext uPMU1 maybe\nsave\n", status=1)
    assert proc.stderr.startswith("setext: mode must be true (extended) or false (base)")
    assert proc.stdout == ""
    assert cfg.read_text() == ORIGINAL


def test_settings_file_names_the_lists(env, tmp_path, cfg):
    settings = tmp_path / "other.ini"
    settings.write_text(f"[paths]\nupmuconfig = {cfg}\nbackupconfig = {tmp_path}/b.ini\n")
    proc = subprocess.run([sys.executable, "-m", "upmu_adm", "--config", str(settings), "-c",
                           "list"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0 and f"2 uPMUs in {cfg}" in proc.stdout


def test_a_damaged_list_is_one_line_and_exit_1(env, cfg):
    cfg.write_text("[192.168.1.24\n%alias = x\n")
    proc = adm(env, cfg, "-c", "list", status=1)
    assert proc.stderr.startswith(f"upmu-adm: error: {cfg}: line 1: ")
    assert proc.stderr.endswith("; fix the file or name another with --upmuconfig\n")
    assert len(proc.stderr.splitlines()) == 1


def test_a_missing_settings_file_is_a_usage_error(env, cfg, tmp_path):
    # Exit 2 as for every command of the suite (qss.cli.load_settings).
    proc = adm(env, cfg, "--config", str(tmp_path / "nope.ini"), "-c", "list", status=2)
    assert proc.stderr == (f"upmu-adm: error: {tmp_path / 'nope.ini'}: no such settings "
                           f"file (named by --config)\n")


def test_bad_flags_exit_2(env, cfg):
    proc = adm(env, cfg, "--bogus", status=2)
    assert "usage: upmu-adm" in proc.stderr


def test_help_reads_like_a_manual_page(env, cfg):
    text = adm(env, cfg, "--help", status=0).stdout
    for heading in ("commands (type help CMD", "keys:", "non-interactive use:", "examples:",
                    "files:", "exit status:", "appliance settings:", "--upmuconfig PATH",
                    "--backupconfig PATH", "--config PATH", "-c COMMANDS", "--yes",
                    "--queue URL", "--srv DIR", "--btrdb ENDPOINTS", "importdat DIR", "status"):
        assert heading in text, heading
    assert 'upmu-adm -c "add 10.0.0.5 P3001234 u1 true; save"' in text
    for line in build_parser().format_help().splitlines():
        assert len(line) <= 88, line


def test_an_internal_error_in_a_script_is_one_line_and_discards_the_changes(cfg):
    """A bug in a command must not skip saying that the unsaved changes are dropped."""
    import io
    registry = Registry()

    @registry.command("add", usage="add IPADDR SERIAL ALIAS [EXT]", help="the real add")
    def add(state, args):
        return REGISTRY.run(state, ["add", *args])

    @registry.command("boom", usage="boom", help="a command with a bug")
    def boom(state, args):
        raise RuntimeError("disk on fire")

    for show_traceback in (False, True):
        state = ShellState.load(str(cfg), str(cfg.with_name("backupconfig.ini")))
        out, err = io.StringIO(), io.StringIO()
        status = run_script(state, ["add 10.0.0.5 P3001234 u1 true; boom; save"], out=out,
                            err=err, registry=registry, show_traceback=show_traceback)
        assert status == 1
        assert out.getvalue() == ADDED + "\n"
        *traceback, error, discarded = err.getvalue().splitlines()
        assert error == ("upmu-adm: internal error: RuntimeError: disk on fire (run again "
                         "with --traceback and report it)")
        assert discarded.startswith("Abort - Not saving changes... (1 unsaved change "
                                    "discarded: added u1 (10.0.0.5, P3001234)")
        if show_traceback:
            assert traceback[0] == "Traceback (most recent call last):"
            assert traceback[-1] == "RuntimeError: disk on fire"
        else:
            assert traceback == []
        assert cfg.read_text() == ORIGINAL
