"""The generated system files, checked by the real tools that will read them.

- Shorewall compiles the generated /etc/shorewall (``shorewall check`` and ``compile``),
  and the compiled rules admit exactly ping and TCP 22, 80, 443, 1883, 4410, 9000.
- ``systemd-analyze verify`` accepts Debian's supervisor.service with our drop-in.
- ``systemd-sysusers`` and ``systemd-tmpfiles`` create the service user, make the
  operator a member of its group, and give both the data directories; the SQLite queue
  is then written by the services and the operator in turn (as root: real users).
- ``ifquery`` (ifupdown) reads the interfaces file and finds the manual's address.
- apcupsd reads the generated apcupsd.conf (in a throw-away mount and network namespace,
  so it cannot touch the machine's /var/log, /run or UPS).
- The repository's reference copies in systemd/ and shorewall/ match the templates.

The tools come from Debian (``./dev`` installs them): shorewall, iptables, supervisor,
apcupsd, ifupdown; systemd-analyze is in systemd. A missing tool fails its test with the
package to install; shorewall and the apcupsd sandbox need root and are skipped without.
"""
from __future__ import annotations

import grp
import os
import pwd
import re
import select
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from installer.components import Layout, qss_files, shorewall_files, tmpfiles_lines
from installer.reference import REFERENCE_INTERFACE, reference_copies
from qss.settings import PathsSettings, QueueSettings, Settings

from test_qss_get import add_account, make_env, qss_get

REPO = Path(__file__).resolve().parent.parent
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (run the tests as root "
                                "or in the CI container)")


def tool(name: str, package: str) -> str:
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if path is None:
        pytest.fail(f"{name} not found: install Debian's {package} package "
                    f"(apt-get install -y {package}; ./dev does it)")
    return path


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Every component written into a temporary root, as `qss-get --config all` does."""
    root = tmp_path_factory.mktemp("root")
    status, _ = qss_get(make_env(root), "--config", "all", "--root", str(root),
                        "--interface", "eno1")
    assert status == 0
    return root


# -- shorewall -------------------------------------------------------------------------

def _shorewall_dir(root: Path, tmp_path: Path) -> Path:
    """The generated /etc/shorewall plus Debian's shorewall.conf, which qss-get leaves
    alone (the manual copies only interfaces, zones, policy and rules)."""
    tool("shorewall", "shorewall")
    directory = tmp_path / "shorewall"
    shutil.copytree(root / "etc/shorewall", directory)
    conf = Path("/usr/share/shorewall/configfiles/shorewall.conf")
    shutil.copy(conf if conf.exists() else Path("/etc/shorewall/shorewall.conf"), directory)
    return directory


@needs_root
def test_shorewall_check_passes_on_the_generated_directory(root, tmp_path):
    directory = _shorewall_dir(root, tmp_path)
    proc = subprocess.run(["shorewall", "check", str(directory)], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Shorewall configuration verified" in proc.stdout
    assert "WARNING" not in proc.stdout + proc.stderr
    for name in ("zones", "interfaces", "policy", "rules"):
        assert f"Compiling {directory}/{name}..." in proc.stdout   # ours, not /etc's

    (directory / "rules").write_text((directory / "rules").read_text()
                                     + "ACCEPT\tnet\t$FW\ttcp\t99999\n")
    proc = subprocess.run(["shorewall", "check", str(directory)], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode != 0 and "99999" in proc.stdout + proc.stderr


@needs_root
def test_shorewall_admits_exactly_the_manuals_ports_from_the_network(root, tmp_path):
    directory = _shorewall_dir(root, tmp_path)
    script = tmp_path / "firewall"
    proc = subprocess.run(["shorewall", "compile", str(directory), str(script)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    chain = [line for line in script.read_text().splitlines() if line.startswith("-A net-fw ")]
    accepted = [line for line in chain if line.endswith(("-j ACCEPT", '"Ping"'))
                and "--ctstate ESTABLISHED,RELATED" not in line]
    tcp = [line for line in accepted if " -p 6 " in line]
    ports = sorted(int(port) for line in tcp
                   for port in re.search(r"--dports? ([\d,]+)", line).group(1).split(","))
    assert ports == [22, 80, 443, 1883, 4410, 9000]
    assert [line for line in accepted if line not in tcp] == [
        '-A net-fw -p 1 --icmp-type 8 -j ACCEPT -m comment --comment "Ping"']
    assert chain[-1] == "-A net-fw -j DROP"          # everything else from the net: dropped
    assert "-A INPUT -i eno1 -j net-fw" in script.read_text()


# -- systemd ---------------------------------------------------------------------------

def _verify(unit_dir: Path) -> subprocess.CompletedProcess:
    tool("systemd-analyze", "systemd")
    if not Path("/lib/systemd/system/supervisor.service").exists():
        pytest.fail("Debian's supervisor.service not found: install Debian's supervisor "
                    "package (apt-get install -y supervisor; ./dev does it)")
    # Our directory first, then the system's (the trailing colon): Debian's unit plus
    # our drop-in, as systemd will see them on the appliance.
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_dir}:"}
    return subprocess.run(["systemd-analyze", "verify", "supervisor.service"],
                          capture_output=True, text=True, timeout=60, env=env, cwd="/")


def test_systemd_analyze_verify_passes_on_the_drop_in(root):
    unit_dir = root / "etc/systemd/system"
    proc = _verify(unit_dir)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    # verify only warns about unknown keys: nothing may be said about our files
    assert [line for line in output.splitlines()
            if "qss.conf" in line or "supervisor.service" in line] == []


def test_systemd_analyze_verify_reads_the_drop_in(tmp_path, root):
    """The control: a mistake in the drop-in is reported, so the drop-in was read."""
    unit_dir = tmp_path / "system"
    shutil.copytree(root / "etc/systemd/system", unit_dir)
    dropin = unit_dir / "supervisor.service.d/qss.conf"
    dropin.write_text(dropin.read_text() + "RequiresMountsFor=/elsewhere\n")
    proc = _verify(unit_dir)
    assert f"{dropin}:" in proc.stderr and "RequiresMountsFor" in proc.stderr


def test_the_drop_in_orders_supervisor_after_the_data_drive_and_network(root):
    text = (root / "etc/systemd/system/supervisor.service.d/qss.conf").read_text()
    unit, service = text.split("[Service]\n")
    assert "\nRequiresMountsFor=/ssd/data /ssd/srv\n" in unit
    assert "\nWants=network-online.target\n" in unit and "\nAfter=network-online.target\n" in unit
    budget = sum(int(v) for v in re.findall(
        r"stopwaitsecs=(\d+)", (root / "etc/supervisor/conf.d/qss.conf").read_text()))
    stop = int(re.search(r"^TimeoutStopSec=(\d+)$", service, re.M).group(1))
    assert stop > budget + 30
    assert "\nExecStartPre=-/usr/bin/systemd-tmpfiles --create /etc/tmpfiles.d/qss.conf\n" in \
        service


@needs_root
def test_systemd_creates_the_service_user_and_gives_it_its_directories(root, tmp_path):
    """systemd-sysusers and systemd-tmpfiles (as at boot and at each start of supervisor)
    applied to a copy of the generated root: the user exists, owns its directories, and
    a file copied in as root (the manual's restore) is handed over to it."""
    sysusers, tmpfiles = tool("systemd-sysusers", "systemd"), tool("systemd-tmpfiles", "systemd")
    target = tmp_path / "target"
    shutil.copytree(root, target)
    (target / "home/manager").mkdir(parents=True, exist_ok=True)   # mr-plotter/tools is in it
    (target / "ssd/srv/restored").mkdir(parents=True)
    (target / "ssd/srv/queue.db").write_bytes(b"restored as root")
    (target / "ssd/srv/restored/file").write_bytes(b"restored as root")
    (target / "ssd/srv/restored/tool").write_bytes(b"#!/bin/sh\n")
    (target / "ssd/srv/restored/tool").chmod(0o755)
    proc = subprocess.run([sysusers, f"--root={target}", str(target / "etc/sysusers.d/qss.conf")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    (entry,) = [line for line in (target / "etc/passwd").read_text().splitlines()
                if line.startswith("qss:")]
    name, _, uid, gid, gecos, home, shell = entry.split(":")
    assert (home, shell) == ("/var/lib/qss", "/usr/sbin/nologin")
    proc = subprocess.run([tmpfiles, f"--root={target}", "--create",
                           str(target / "etc/tmpfiles.d/qss.conf")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # with --root, ACL user names resolve on this machine, which has no user qss
    assert [line for line in proc.stderr.splitlines()
            if line != 'Failed to parse ACL "u:qss:x": Invalid argument. Ignoring'] == []
    modes = {"var/lib/qss": 0o750, "ssd/data": 0o2770, "ssd/srv": 0o2770,
             "ssd/srv/queue.db": 0o660, "ssd/srv/restored": 0o2770,
             "ssd/srv/restored/file": 0o660, "ssd/srv/restored/tool": 0o770}
    for path, mode in modes.items():
        st = (target / path).stat()
        assert (st.st_uid, st.st_gid, oct(stat.S_IMODE(st.st_mode))) == \
            (int(uid), int(gid), oct(mode)), path
    assert (target / "ssd/srv/queue.db").read_bytes() == b"restored as root"   # kept
    # the plotter's key (qss-get made it as root): qss's alone, which mr-plotter reads
    # once it no longer runs as root
    st = (target / "etc/qss/plotter.key").stat()
    assert (st.st_uid, oct(stat.S_IMODE(st.st_mode))) == (int(uid), oct(0o600))
    # There was no manager account in this root: none was made up (see the next test).
    assert not [line for line in (target / "etc/passwd").read_text().splitlines()
                if line.startswith("manager:")]


@needs_root
def test_the_operator_joins_the_service_group_and_is_never_made_up(tmp_path):
    """systemd 252's "m" line adds an existing account to a group, but creates a missing
    one as a system account without a login (the control below); so qss-get writes it
    only for an account that exists."""
    sysusers = tool("systemd-sysusers", "systemd")
    target = tmp_path / "target"
    add_account(target)
    status, _ = qss_get(make_env(target), "--config", "qss", "--root", str(target))
    assert status == 0
    conf = target / "etc/sysusers.d/qss.conf"
    proc = subprocess.run([sysusers, f"--root={target}", str(conf)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    groups = {line.split(":")[0]: line.split(":") for line in
              (target / "etc/group").read_text().splitlines()}
    assert groups["qss"][3] == "manager"
    assert [line.split(":")[0] for line in (target / "etc/passwd").read_text().splitlines()
            ].count("manager") == 1            # the account as it was
    assert "qss:!*::manager" in (target / "etc/gshadow").read_text().splitlines()

    # The control: the same line on a system without the account creates it.
    bare = tmp_path / "bare"
    (bare / "etc").mkdir(parents=True)
    proc = subprocess.run([sysusers, f"--root={bare}", str(conf)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert [line for line in (bare / "etc/passwd").read_text().splitlines()
            if line.startswith("manager:")][0].endswith(":/usr/sbin/nologin")


@needs_root
def test_the_service_user_may_pass_through_the_upmu_lists_directory():
    """The tmpfiles ACL line, applied for an existing user: Debian 12 makes home
    directories 0700, and the receiver (as the service user) reads the uPMU list there."""
    tmpfiles = tool("systemd-tmpfiles", "systemd")
    base = Path(tempfile.mkdtemp(prefix="qss-acl-", dir="/tmp"))   # reachable by nobody
    try:
        base.chmod(0o755)
        home = base / "home/manager"
        home.mkdir(parents=True, mode=0o755)
        home.chmod(0o700)
        (home / "upmuconfig.ini").write_text("[10.0.0.5]\n")
        (home / "upmuconfig.ini").chmod(0o644)
        nobody = pwd.getpwnam("nobody")

        def read_as_nobody() -> subprocess.CompletedProcess:
            return subprocess.run(["cat", str(home / "upmuconfig.ini")], capture_output=True,
                                  text=True, timeout=60, user=nobody.pw_uid,
                                  group=nobody.pw_gid, extra_groups=[])

        assert read_as_nobody().returncode != 0          # the control: 0700 keeps it out
        settings = Settings(paths=PathsSettings(
            upmuconfig=f"{home}/upmuconfig.ini", backupconfig=f"{home}/backupconfig.ini",
            data=f"{base}/data", srv=f"{base}/srv"))
        acl = [line for line in tmpfiles_lines(settings, "nobody").splitlines()
               if line.startswith("a+")]
        assert acl == [f"a+    {home} -     -    -     -   u:nobody:x"]
        conf = base / "acl.conf"
        conf.write_text("\n".join(acl) + "\n")
        proc = subprocess.run([tmpfiles, "--create", str(conf)], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0 and proc.stderr == ""
        proc = read_as_nobody()
        assert proc.stdout == "[10.0.0.5]\n", proc.stderr
        assert home.stat().st_mode & 0o007 == 0     # everyone else is still kept out
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- the queue, shared by the services and the operator ----------------------------------

# A process that uses the SQLite queue as a given user: it imports the queue (as root,
# since the interpreter may live where only root can read), then takes the user's uid,
# gid, groups and umask, and opens the queue and puts files on request.
QUEUE_USER = r"""
import os, sys
from qss.queue.sqlite import SqliteQueue
path, uid, gid, groups, umask = sys.argv[1:]
os.setgroups([int(g) for g in groups.split(",") if g])
os.setgid(int(gid))
os.setuid(int(uid))
os.umask(int(umask, 8))
queue = None
for line in sys.stdin:
    command, *name = line.split()
    name = name[0] if name else ""
    try:
        if command == "put":
            queue = queue or SqliteQueue(path)
            queue.put("P3001234", name, name.encode() * 100)
            reply = "ok"
        elif command == "count":
            queue = queue or SqliteQueue(path)
            reply = str(len(list(queue.files("P3001234"))))
        elif command == "close":
            queue.close()
            queue, reply = None, "ok"
        else:
            break
    except Exception as exc:
        reply = f"error: {exc}"
    print(reply, flush=True)
"""


class QueueUser:
    """A queue user (uid, gid, supplementary groups, umask), in its own process."""

    def __init__(self, path: Path, uid: int, gid: int, groups: list[int], umask: int):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", QUEUE_USER, str(path), str(uid), str(gid),
             ",".join(map(str, groups)), oct(umask)[2:]],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, cwd=REPO)

    def __call__(self, command: str) -> str:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        assert ready, f"no answer to {command!r}"
        return self.proc.stdout.readline().strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc.stdout.close()


def _unused_ids(n: int) -> list[int]:
    """IDs no user or group on this machine has (the test's qss and manager)."""
    used = {p.pw_uid for p in pwd.getpwall()} | {g.gr_gid for g in grp.getgrall()}
    return [i for i in range(61000, 62000) if i not in used][:n]


def _owner_mode(path: Path) -> tuple[int, int, str]:
    st = path.stat()
    return st.st_uid, st.st_gid, oct(stat.S_IMODE(st.st_mode))


@needs_root
def test_the_operator_and_the_services_write_the_sqlite_queue_in_turn():
    """The directories and the queue as systemd-tmpfiles makes them from the generated
    lines; the services (umask 007, supervisor) and the operator (a member of their
    group, umask 022, a login shell) write the queue in turn. SQLite creates -wal and
    -shm with the database's mode, and the setgid directory gives them its group.

    SQLite alone creates a database 0644 less the umask (0640 for the services, which
    would lock the operator out); tmpfiles makes the queue file 0660 and the queue
    itself creates a missing file 0666 less the umask, so either way it is 0660."""
    tmpfiles = tool("systemd-tmpfiles", "systemd")
    qss, manager = _unused_ids(2)
    base = Path(tempfile.mkdtemp(prefix="qss-share-", dir="/tmp"))
    users: list[QueueUser] = []

    def as_qss() -> QueueUser:        # as supervisor runs the services
        users.append(QueueUser(base / "srv/queue.db", qss, qss, [], 0o007))
        return users[-1]

    def as_manager() -> QueueUser:    # the operator's login shell
        users.append(QueueUser(base / "srv/queue.db", manager, manager, [qss], 0o022))
        return users[-1]

    def apply_tmpfiles(create_queue: bool = True) -> None:
        settings = Settings(
            paths=PathsSettings(upmuconfig=f"{base}/home/manager/upmuconfig.ini",
                                backupconfig=f"{base}/home/manager/backupconfig.ini",
                                data=f"{base}/data", srv=f"{base}/srv"),
            queue=QueueSettings(f"sqlite:///{base}/srv/queue.db"))
        lines = [line for line in tmpfiles_lines(settings, str(qss), str(qss)).splitlines()
                 if line.split()[1].startswith(f"{base}/")      # not /var/lib/qss, no ACL
                 and line.split()[0] != "a+" and (create_queue or line.split()[0] != "f")]
        conf = base / "qss-tmpfiles.conf"
        conf.write_text("\n".join(lines) + "\n")
        proc = subprocess.run([tmpfiles, "--create", str(conf)], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr

    try:
        base.chmod(0o755)
        srv = base / "srv"
        apply_tmpfiles()
        assert _owner_mode(srv) == (qss, qss, oct(0o2770))
        assert _owner_mode(base / "data") == (qss, qss, oct(0o2770))
        assert _owner_mode(srv / "queue.db") == (qss, qss, oct(0o660))

        receiver, upmu_adm = as_qss(), as_manager()
        assert receiver("put a.dat") == "ok"      # the receiver creates the tables
        assert upmu_adm("put b.dat") == "ok"      # importdat while the services run
        assert receiver("close") == upmu_adm("close") == "ok"
        assert sorted(p.name for p in srv.iterdir()) == ["plotter.db", "queue.db",
                                                         "queue.db.data"]
        assert _owner_mode(srv / "queue.db.data") == (qss, qss, oct(0o2770))
        assert _owner_mode(srv / "plotter.db") == (qss, qss, oct(0o660))   # tmpfiles' too
        # the services stopped: the operator opens the queue first, creating -wal, -shm
        assert upmu_adm("put c.dat") == "ok"
        for name in ("queue.db-wal", "queue.db-shm"):
            assert _owner_mode(srv / name) == (manager, qss, oct(0o660)), name
        sync2q = as_qss()
        assert sync2q("put d.dat") == "ok"        # a service writes the operator's WAL
        assert upmu_adm("close") == "ok"
        assert sync2q("put e.dat") == "ok" and sync2q("count") == "5"
        assert sync2q("close") == "ok"
        for path in srv.iterdir():
            uid, gid, mode = _owner_mode(path)
            assert gid == qss and int(mode, 8) & 0o060 == 0o060, (path, mode)

        # Without the "f" line the services create the queue themselves: the queue
        # creates its file 0666 less the umask (SQLite alone would make it 0640, locking
        # the operator out), so the operator may write it all the same.
        for user in users:
            user.stop()
        shutil.rmtree(srv)
        apply_tmpfiles(create_queue=False)
        receiver, upmu_adm = as_qss(), as_manager()
        assert receiver("put a.dat") == "ok"
        assert _owner_mode(srv / "queue.db") == (qss, qss, oct(0o660))
        assert upmu_adm("put b.dat") == "ok" and upmu_adm("close") == "ok"
        assert receiver("put c.dat") == "ok" and receiver("count") == "3"
    finally:
        for user in users:
            user.stop()
        shutil.rmtree(base, ignore_errors=True)


# -- network interfaces ----------------------------------------------------------------

def test_ifquery_reads_the_manuals_static_address(root):
    ifquery = tool("ifquery", "ifupdown")
    path = root / "etc/network/interfaces"
    proc = subprocess.run([ifquery, "-i", str(path), "eno1"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[:3] == ["address: 172.16.1.100", "netmask: 255.255.255.0",
                                            "gateway: 172.16.1.1"]
    assert "dns-nameservers" not in proc.stdout      # commented out, as in the manual
    proc = subprocess.run([ifquery, "-i", str(path), "--list"], capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout.split() == ["lo", "eno1"]


# -- apcupsd ---------------------------------------------------------------------------

def _apcupsd_settings(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            out[key] = value.strip()
    return out


def test_apcupsd_conf_holds_the_manuals_values(root):
    conf = _apcupsd_settings((root / "etc/apcupsd/apcupsd.conf").read_text())
    assert {k: conf[k] for k in ("UPSCABLE", "UPSTYPE", "DEVICE", "TIMEOUT")} == {
        "UPSCABLE": "usb", "UPSTYPE": "usb", "DEVICE": "", "TIMEOUT": "30"}
    assert (root / "etc/default/apcupsd").read_text().splitlines()[-1] == "ISCONFIGURED=yes"


def _run_apcupsd(conf: Path) -> subprocess.CompletedProcess:
    apcupsd = tool("apcupsd", "apcupsd")
    tool("unshare", "util-linux")
    # Private /var/log and /run and no network: apcupsd reads the file, attaches its
    # driver, then stops (its lock directory /run/lock does not exist in the sandbox).
    script = ("mount -t tmpfs qss-test /var/log && mount -t tmpfs qss-test /run && "
              f"exec timeout -s KILL 10 {apcupsd} -b -d 100 -f {conf} -P /run/apcupsd.pid")
    return subprocess.run(["unshare", "--mount", "--net", "--fork", "sh", "-c", script],
                          capture_output=True, text=True, timeout=60)


@needs_root
def test_apcupsd_reads_the_generated_config(root, tmp_path):
    conf = root / "etc/apcupsd/apcupsd.conf"
    proc = _run_apcupsd(conf)
    output = proc.stdout + proc.stderr
    assert f"Config file {conf} processed." in output, output
    assert "Driver usb found and attached." in output
    assert "configuration file errors" not in output

    bad = tmp_path / "bad.conf"
    bad.write_text(conf.read_text().replace("UPSTYPE usb", "UPSTYPE usbb"))
    proc = _run_apcupsd(bad)
    assert proc.returncode == 1 and "configuration file errors" in proc.stdout + proc.stderr


# -- reference copies ------------------------------------------------------------------

def test_the_repositorys_reference_copies_match_the_templates():
    stale = [path for path, text in reference_copies().items()
             if not (REPO / path).exists() or (REPO / path).read_text() != text]
    assert stale == [], ("reference copies differ from installer/templates; regenerate them "
                         "with: .venv/bin/python -m installer.reference")
    rendered = {s.path for s in qss_files(Settings(), Layout())
                + shorewall_files(REFERENCE_INTERFACE)}
    assert "/etc/shorewall/rules" in rendered
