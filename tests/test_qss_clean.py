"""clean_synced (manual ch. 12) as the operator runs it: a real process over a real
SQLite queue, the word delete piped in, exact output and exit statuses."""
from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from installer.clean import clean_synced
from qss.naming import device_path
from qss.queue import open_queue

T0 = dt.datetime(2015, 12, 18, 8, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/queue.db"
    with open_queue(url) as q:
        for i in range(3):
            q.put("P3001234", device_path("P3001234", T0 + dt.timedelta(minutes=i)),
                  b"x" * 1000)
        q.put("P3001235", device_path("P3001235", T0), b"y" * 2000)
        for f in list(q.files("P3001234"))[:2]:
            q.mark_synced(f)
        q.mark_synced(next(iter(q.files("P3001235"))))
    return url


def clean(tmp_path: Path, url: str, *args: str, stdin: str = "",
          status: int) -> subprocess.CompletedProcess:
    settings = tmp_path / "qss.ini"
    settings.write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("MONGO_ADDR", "QSS_CONFIG")}
    proc = subprocess.run([sys.executable, "-m", "installer.clean", "--config", str(settings),
                           "--queue", url, *args], input=stdin, capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == status, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc


def remaining(url: str) -> dict[str, int]:
    with open_queue(url) as q:
        counts = {s: len(list(q.files(s))) for s in q.serials()}
    return {s: n for s, n in counts.items() if n}


def test_typing_delete_deletes_the_synced_files_only(tmp_path, url):
    proc = clean(tmp_path, url, stdin="delete\n", status=0)
    assert proc.stdout.splitlines() == [
        f"Queue {url}:",
        "SERIAL    SYNCED (CAN BE DELETED)  NOT SYNCED (KEPT)",
        "P3001234  2 files (2 KB)           1 file (1 KB)",
        "P3001235  1 file (2 KB)            0 files",
        "3 files (4 KB) are synced: their data is stored in BTrDB, so they can be "
        "deleted; 1 file (1 KB) not synced yet are kept.",
        "Type delete to delete them (anything else cancels): delete",
        "Deleting...",
        "Deleted 3 files (4 KB)."]
    assert remaining(url) == {"P3001234": 1}


@pytest.mark.parametrize("answer", ["", "y\n", "yes\n", "delete it\n"])
def test_anything_but_delete_deletes_nothing(tmp_path, url, answer):
    proc = clean(tmp_path, url, stdin=answer, status=1)
    assert proc.stdout.splitlines()[-2].startswith("Type delete to delete them (anything "
                                                   "else cancels): ")
    assert proc.stdout.splitlines()[-1] == "Nothing deleted."
    assert remaining(url) == {"P3001234": 3, "P3001235": 1}


def test_yes_deletes_without_asking(tmp_path, url):
    proc = clean(tmp_path, url, "--yes", status=0)
    assert "Type delete to delete them: delete (--yes)" in proc.stdout
    assert remaining(url) == {"P3001234": 1}
    again = clean(tmp_path, url, "--yes", status=0)
    assert again.stdout.splitlines()[-1] == ("No synced files to delete; 1 file (1 KB) not "
                                             "synced yet are kept.")


def test_a_queue_that_cannot_be_opened_is_one_line(tmp_path):
    proc = clean(tmp_path, f"sqlite:///{tmp_path}/nodrive/q.db", status=1)
    assert proc.stderr == (f"clean_synced: error: queue sqlite:///{tmp_path}/nodrive/q.db: "
                           f"directory {tmp_path}/nodrive does not exist; mount the data "
                           f"drive or create the directory\n")


def test_the_library_function_on_an_empty_queue(tmp_path):
    out = io.StringIO()
    with open_queue(f"sqlite:///{tmp_path}/q.db") as q:
        status = clean_synced(q, out=out, ask=lambda p: pytest.fail("asked"))
    assert status == 0
    assert out.getvalue().splitlines()[-1] == "No synced files to delete."
