"""Offline archives: building, the manifest, and refusing anything tampered with.

A qss-packages archive (real Debian packages built here) is small enough to tamper with
in every way the issue names; each refusal must name the problem and leave the target
tree exactly as it was. The long install/update/rollback cycle is in
test_qss_get_update.py.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from installer.archive import ArchiveError, extract, find_archive, verify
from installer.build import build
from qss.cli import run
from installer.cli import main

from archive_support import make_deb, read_members, snapshot, tampered, write_members

FOLDER = "qss-packages-1.0.0"


@pytest.fixture(scope="module")
def packages_archive(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("pkgs")
    for name in ("apcupsd", "mongodb"):
        (work / "debs" / name).mkdir(parents=True)
        make_deb(work / "debs" / name, name)
    return build("packages", "1.0.0", work / "out", debs=work / "debs", say=lambda _: None)


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = run(main, argv, prog="qss-get")
    out, err = capsys.readouterr()
    return code, out, err


def _edit_member(name: str, change):
    def edit(members):
        return [(i, change(d) if i.name == f"{FOLDER}/{name}" else d) for i, d in members]
    return edit


def _flip_byte(data: bytes) -> bytes:
    return data[:100] + bytes([data[100] ^ 0x01]) + data[101:]


def _added(info_name: str, data: bytes = b"#!/bin/sh\necho pwned\n", **attrs):
    def edit(members):
        info = tarfile.TarInfo(info_name)
        for k, v in attrs.items():
            setattr(info, k, v)
        return members + [(info, None if info.issym() or info.islnk() else data)]
    return edit


DEB = "debs/apcupsd/apcupsd_9.9-qsstest_all.deb"


@pytest.mark.parametrize("edit, problem", [
    (_edit_member(DEB, _flip_byte),
     f"member {FOLDER}/{DEB} differs from the manifest"),
    (_added(f"{FOLDER}/debs/apcupsd/extra.deb"),
     f"member {FOLDER}/debs/apcupsd/extra.deb is not in the manifest"),
    (lambda ms: [(i, d) for i, d in ms if not i.name.endswith(".deb") or "mongodb" not in i.name],
     f"member {FOLDER}/debs/mongodb/mongodb_9.9-qsstest_all.deb is in the manifest but missing"),
    (_added(f"{FOLDER}/../evil.sh"), "leaves the archive's folder (..)"),
    (_added("/etc/cron.d/evil"), "has an absolute path"),
    (_added(f"{FOLDER}/debs/link", type=tarfile.SYMTYPE, linkname="/etc/shadow"),
     "is a link (to '/etc/shadow')"),
    (_added(f"{FOLDER}/debs/hard", type=tarfile.LNKTYPE, linkname="/etc/shadow"),
     "is a link"),
    (_added(f"{FOLDER}/debs/dev", type=tarfile.CHRTYPE), "is not a plain file or folder"),
    (_added("elsewhere/file"), "is outside the folder"),
    (_edit_member("MANIFEST.json", lambda d: d.replace(b'"size": ', b'"size": 1', 1)),
     "differs from the manifest"),
    (_edit_member("MANIFEST.json", lambda d: d[:-20]), "MANIFEST.json is not a valid manifest"),
    (lambda ms: [(i, d) for i, d in ms if not i.name.endswith("MANIFEST.json")],
     "no MANIFEST.json"),
], ids=["byte-changed", "member-added", "member-missing", "dotdot", "absolute",
        "symlink-out", "hardlink", "device", "outside-folder", "manifest-edited", "manifest-cut",
        "manifest-missing"])
def test_a_tampered_archive_is_refused_naming_the_problem_and_nothing_changes(
        packages_archive, tmp_path, capsys, edit, problem):
    bad = tampered(packages_archive, tmp_path / "qss-packages-1.0.0.tar.gz", edit)
    root = tmp_path / "root"
    root.mkdir()
    before = snapshot(tmp_path)
    code, out, err = _run(["-p", str(bad), "apcupsd", "--root", str(root)], capsys)
    assert code == 1
    assert problem in err, err
    assert "Traceback" not in err
    assert snapshot(tmp_path) == before


def test_a_truncated_archive_is_refused(packages_archive, tmp_path, capsys):
    data = packages_archive.read_bytes()
    bad = tmp_path / "qss-packages-1.0.0.tar.gz"
    bad.write_bytes(data[: len(data) // 2])
    code, _, err = _run(["-p", str(bad), "apcupsd", "--root", str(tmp_path)], capsys)
    assert code == 1 and "not a readable .tar.gz, damaged or cut short" in err


def test_a_file_that_is_not_an_archive_is_refused(tmp_path, capsys):
    bad = tmp_path / "qss-packages-1.0.0.tar.gz"
    bad.write_bytes(b"<html>404 Not Found</html>\n")
    code, _, err = _run(["-p", str(bad), "apcupsd", "--root", str(tmp_path)], capsys)
    assert code == 1 and "qss-packages-1.0.0.tar.gz: not a readable .tar.gz" in err


def test_the_manifest_records_every_member_and_its_sha256(packages_archive):
    manifest = verify(packages_archive, "packages")
    members = {i.name: d for i, d in read_members(packages_archive) if d is not None}
    listed = {f"{FOLDER}/{m}" for m in manifest.members}
    assert set(members) - {f"{FOLDER}/MANIFEST.json"} == listed
    for name, (digest, size) in manifest.members.items():
        data = members[f"{FOLDER}/{name}"]
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (digest, size)
    doc = json.loads(members[f"{FOLDER}/MANIFEST.json"])
    assert doc["kind"] == "packages" and doc["version"] == "1.0.0" and doc["created"]
    assert doc["packages"]["apcupsd"]["required"] is False
    assert doc["packages"]["apcupsd"]["files"] == [DEB]


def test_packages_installs_known_names_into_the_roots_own_dpkg_database(
        packages_archive, tmp_path, capsys, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    # The manual's form: the folder first, then the names.
    code, out, err = _run(["-p", str(packages_archive.parent), "apcupsd", "--root", str(root)],
                          capsys)
    assert code == 0, err
    assert "apcupsd 9.9-qsstest (new)" in out
    assert (root / "usr/share/doc/apcupsd/QSS-TEST").read_text() == "apcupsd 9.9-qsstest\n"
    query = subprocess.run(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f",
                            "${Package} ${Status}\n"], capture_output=True, text=True)
    assert query.stdout.splitlines() == ["apcupsd install ok installed"]
    # Again: an update of what is there, said as such.
    code, out, _ = _run(["-p", str(packages_archive), "apcupsd", "--root", str(root)], capsys)
    assert code == 0 and "apcupsd 9.9-qsstest (was 9.9-qsstest)" in out
    # Without a path: the current directory.
    monkeypatch.chdir(packages_archive.parent)
    code, out, _ = _run(["-p", "mongodb", "--root", str(root)], capsys)
    assert code == 0 and "mongodb 9.9-qsstest (new)" in out


def test_packages_all_installs_every_package(packages_archive, tmp_path, capsys):
    code, out, err = _run(["-p", str(packages_archive), "-a", "--root", str(tmp_path)], capsys)
    assert code == 0, err
    assert "apcupsd 9.9-qsstest (new)" in out and "mongodb 9.9-qsstest (new)" in out


def test_an_unknown_package_name_lists_the_valid_ones(packages_archive, tmp_path, capsys):
    before = snapshot(tmp_path)
    code, _, err = _run(["-p", str(packages_archive), "apcupsd", "golang", "--root",
                         str(tmp_path)], capsys)
    assert code == 1
    assert "no package 'golang' in qss-packages-1.0.0; it holds: apcupsd (optional: " in err
    assert "mongodb (optional: " in err
    assert snapshot(tmp_path) == before


def test_packages_without_names_says_what_to_give(packages_archive, tmp_path, capsys):
    code, _, err = _run(["-p", str(packages_archive), "--root", str(tmp_path)], capsys)
    assert code == 1 and "name the packages to install" in err


def test_find_archive_takes_the_newest_version_not_the_newest_file(tmp_path):
    for v in ("1.10.0", "1.9.3", "1.2.0"):
        (tmp_path / f"qss-update-{v}.tar.gz").write_bytes(b"")
    (tmp_path / "qss-install-2.0.0.tar.gz").write_bytes(b"")
    assert find_archive(tmp_path, "update").name == "qss-update-1.10.0.tar.gz"
    with pytest.raises(ArchiveError, match=r"no qss-packages-\*\.tar\.gz in .*it holds"):
        find_archive(tmp_path, "packages")
    with pytest.raises(ArchiveError, match="a qss-install archive; this needs"):
        find_archive(tmp_path / "qss-install-2.0.0.tar.gz", "update")
    with pytest.raises(ArchiveError, match="no such file or folder"):
        find_archive(tmp_path / "nope", "update")


def test_an_archive_of_another_kind_is_refused(packages_archive, tmp_path, capsys):
    renamed = tmp_path / "qss-update-1.0.0.tar.gz"
    renamed.write_bytes(packages_archive.read_bytes())
    code, _, err = _run(["-u", str(renamed), "--root", str(tmp_path)], capsys)
    assert code == 1 and "a qss-packages archive; this needs qss-update-X.Y.Z.tar.gz" in err


def test_extract_writes_only_verified_members_and_never_through_a_link(
        packages_archive, tmp_path):
    manifest = verify(packages_archive)
    dest = extract(packages_archive, manifest, tmp_path / "x")
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert files == sorted([*manifest.members, "MANIFEST.json"])
    # The destination must be new: extraction never writes into an existing folder.
    with pytest.raises(FileExistsError):
        extract(packages_archive, manifest, dest)


def test_an_archive_changed_between_check_and_extraction_is_refused(
        packages_archive, tmp_path):
    copy = tmp_path / "qss-packages-1.0.0.tar.gz"
    copy.write_bytes(packages_archive.read_bytes())
    manifest = verify(copy)
    tampered(packages_archive, copy, _edit_member(DEB, _flip_byte))
    with pytest.raises(ArchiveError, match="changed while being read"):
        extract(copy, manifest, tmp_path / "x")


def test_builder_refuses_bad_requests(tmp_path):
    from installer.build import BuildError
    with pytest.raises(BuildError, match="give a version such as 1.4.0"):
        build("update", "latest", tmp_path)
    with pytest.raises(BuildError, match="a packages archive needs Debian packages"):
        build("packages", "1.0.0", tmp_path)
    (tmp_path / "debs" / "golang").mkdir(parents=True)
    with pytest.raises(BuildError, match="unknown package folder"):
        build("packages", "1.0.0", tmp_path, debs=tmp_path / "debs")


def test_builder_command_line_help_and_errors():
    help_ = subprocess.run([sys.executable, "-m", "installer", "build", "--help"],
                           capture_output=True, text=True)
    assert help_.returncode == 0 and "--wheelhouse DIR" in help_.stdout
    assert "apt-get download" in help_.stdout
    bad = subprocess.run([sys.executable, "-m", "installer", "build", "--kind", "update",
                          "--version", "x", "/tmp/nowhere-qss"], capture_output=True, text=True)
    assert bad.returncode == 1
    assert bad.stderr.strip() == ("python -m installer: error: --version 'x': give a "
                                  "version such as 1.4.0")


def test_write_members_round_trips(tmp_path):
    # The tampering helper itself: what it writes reads back the same.
    info = tarfile.TarInfo("a/b")
    out = write_members(tmp_path / "t.tar.gz", [(info, b"xyz")])
    assert [(i.name, d) for i, d in read_members(out)] == [("a/b", b"xyz")]


def test_a_packages_archive_is_reproducible(packages_archive, tmp_path):
    debs = packages_archive.parent.parent / "debs"
    again = build("packages", "1.0.0", tmp_path, debs=debs, say=lambda _: None)
    assert again.read_bytes() == packages_archive.read_bytes()
