"""The developer's entry point ``./dev``: what ``./dev test`` installs on the machine
(Debian packages, as root) is listed in the README and said before it is installed.

The packages step runs on its own, extracted from the script, with ``id``, ``apt-get``
and the look-up of commands replaced by shell functions: nothing is installed here.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEV = (ROOT / "dev").read_text()


def packages() -> list[tuple[str, str]]:
    """(package, command) pairs of the script's DEBIAN_TEST_PACKAGES."""
    line = re.search(r'^DEBIAN_TEST_PACKAGES="([^"]*)"$', DEV, re.M)[1]
    return [tuple(pair.split(":", 1)) for pair in line.split()]


def run_step(tmp_path: Path, uid: int, missing: set[str]) -> tuple[str, list[str]]:
    """Run ``debian_test_packages`` as user ``uid`` with the commands of ``missing``
    absent; (its standard error, the apt-get calls)."""
    function = re.search(r"^debian_test_packages\(\) \{\n.*?^\}\n", DEV, re.M | re.S)[0]
    script = "\n".join([
        re.search(r"^DEBIAN_TEST_PACKAGES=.*$", DEV, re.M)[0],
        f"POLICY_RC={tmp_path}/policy-rc.d VENV={tmp_path}",
        f"id() {{ echo {uid}; }}",
        f'apt-get() {{ echo "apt-get $*" >> {tmp_path}/calls; }}',
        'command() { if [ "$1" = -v ]; then case " ' + " ".join(sorted(missing)) +
        ' " in *" $2 "*) return 1;; esac; return 0; fi; builtin command "$@"; }',
        function, "debian_test_packages"])
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    calls = tmp_path / "calls"
    return done.stderr, calls.read_text().splitlines() if calls.exists() else []


def test_the_readme_lists_every_debian_package_the_tests_install():
    readme = (ROOT / "README.md").read_text()
    intro = readme[:readme.index("## What this is")]
    for package, _ in packages():
        assert f"`{package}`" in intro, package
    assert "apt-get" in intro and "as root" in intro.lower()


def test_as_root_it_says_which_packages_it_installs_then_installs_only_those(tmp_path):
    err, calls = run_step(tmp_path, 0, {"supervisord", "ifquery"})
    assert err == ("dev: installing Debian packages the tests run (apt-get, as root; their "
                   "own services are not started): supervisor ifupdown\n")
    assert calls == ["apt-get update -qq",
                     "apt-get install -y -qq --no-install-recommends -o "
                     "Dpkg::Options::=--force-confold supervisor ifupdown"]
    assert not (tmp_path / "policy-rc.d").exists()      # put back as it was


@pytest.mark.parametrize("uid, missing, err", [
    (1000, {"jq"}, "dev: Debian packages missing: jq; their tests will fail (as root: "
                   "apt-get install jq)\n"),
    (0, set(), ""),
])
def test_otherwise_it_installs_nothing(tmp_path, uid, missing, err):
    assert run_step(tmp_path, uid, missing) == (err, [])
