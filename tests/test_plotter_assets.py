"""The plotter's page ships inside the wheel and loads nothing from outside the appliance."""
from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests

from plotter import testing as plotter_testing

ROOT = Path(__file__).resolve().parents[1]


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.refs.append(value)


def page_refs(html: str) -> list[str]:
    parser = _Refs()
    parser.feed(html)
    return parser.refs


@pytest.fixture(scope="module")
def wheel_root(tmp_path_factory):
    """The suite's wheel, built from this checkout and unpacked (as pip installs it)."""
    assert (ROOT / "plotter/static/index.html").exists(), \
        "the plotter's page is not built: ./dev setup"
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(ROOT)], check=True, timeout=300,
                   stdin=subprocess.DEVNULL)
    wheel, = out.glob("qss-*.whl")
    root = out / "installed"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(root)
    return root


def test_the_wheel_holds_every_asset_of_the_page(wheel_root):
    static = wheel_root / "plotter/static"
    built = sorted(p.name for p in (ROOT / "plotter/static").iterdir())
    assert sorted(p.name for p in static.iterdir()) == built
    assert {"index.html", "app.js", "app.css", "uPlot.iife.min.js", "uPlot.min.css"} <= set(built)
    # nothing third-party is in the repository itself: only the lockfile names it
    tracked = subprocess.run(["git", "ls-files", "plotter"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    assert not [f for f in tracked if "uPlot" in f or "node_modules" in f or
                f.startswith("plotter/static/")]


def test_the_installed_package_serves_every_asset_and_names_no_outside_host(
        wheel_root, server, tmp_path):
    """The page and everything it references come from the plotter itself."""
    env_path = str(wheel_root)
    p = plotter_testing.start(server.grpc, tmp_path, log_path=tmp_path / "plotter.log",
                              pythonpath=env_path)
    try:
        assert f"{wheel_root}/plotter" in p.log()     # the unpacked wheel's code runs
        page = requests.get(p.url + "/", timeout=10)
        assert page.status_code == 200
        refs = page_refs(page.text)
        assert len(refs) >= 4
        for ref in refs:
            assert not re.match(r"^[a-z]+:|^//", ref), ref      # relative: this server
            r = requests.get(f"{p.url}/{ref}", timeout=10)
            assert r.status_code == 200 and r.content, ref
        for name in ("app.js", "app.css", "index.html"):
            text = (wheel_root / "plotter/static" / name).read_text()
            assert not re.search(r"https?://", text), name
    finally:
        p.stop()


def test_the_offline_archives_build_from_the_built_page_too():
    """python -m installer build copies git's files; the page is built, not tracked."""
    from installer.build import source_files
    files = {str(p) for p in source_files(ROOT)}
    built = {f"plotter/static/{p.name}" for p in (ROOT / "plotter/static").iterdir()}
    assert built and built <= files
    assert not any(f.startswith("plotter/frontend/node_modules/") for f in files)
