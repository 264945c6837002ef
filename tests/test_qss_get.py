"""qss-get as an operator runs it: help, bad calls, --version, and --config into a
temporary root (idempotence, backups, confirmation, kept qss.ini, never the real /etc).

The environment is injected (streams, clock, routing table, tool runner), so these
tests never depend on the machine's network or touch its /etc.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import io
import ssl
from pathlib import Path

import pytest

from installer import files
from installer.cli import ACTIONS, build_parser, main
from installer.components import APPLIANCE_STORE, COMPONENTS, OPERATOR_USER, SERVICE_GROUP
from installer.configure import service_user_steps
from installer.environment import Environment
from qss import __version__
from qss.cli import ExitStatus, run
from qss.settings import HostPort, Settings, load_settings

NOW = dt.datetime(2024, 5, 6, 7, 8, 9)
ROUTES = ("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
          "eno1\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
          "eno1\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n")
ALL_FILES = [
    "etc/qss/qss.ini", "etc/supervisor/supervisord.conf", "etc/supervisor/conf.d/qss.conf",
    "etc/systemd/system/supervisor.service.d/qss.conf", "etc/sysusers.d/qss.conf",
    "etc/tmpfiles.d/qss.conf", "home/manager/mr-plotter/tools/tagconfig.json",
    "home/manager/mr-plotter/tools/accounts.py", "etc/network/interfaces", "etc/shorewall/interfaces",
    "etc/shorewall/zones", "etc/shorewall/policy", "etc/shorewall/rules",
    "etc/default/shorewall", "etc/apcupsd/apcupsd.conf", "etc/default/apcupsd",
]
#: Made, not templated: the plotter's self-signed certificate and its key.
CERTIFICATE = ["etc/qss/plotter.crt", "etc/qss/plotter.key"]


def _no_tools(argv):
    raise AssertionError(f"a test ran a system tool: {argv}")


def _no_accounts(*args):
    raise AssertionError(f"a test asked this machine's accounts: {args}")


def make_env(root: Path, stdin: str = "", routes: str = ROUTES,
             devices=("lo", "eno1", "eno2"), cls=Environment, **kw) -> Environment:
    return cls(root=root, stdin=io.StringIO(stdin), stdout=io.StringIO(),
               stderr=io.StringIO(), clock=lambda: NOW, route_table=lambda: routes,
               net_devices=lambda: list(devices), bindir="/opt/qss/bin",
               **{"euid": lambda: 1000, "run": _no_tools, "user_exists": _no_accounts,
                  "in_group": _no_accounts, **kw})


def add_account(root: Path, name: str = OPERATOR_USER, uid: int = 1000) -> None:
    """An account in the root's etc/passwd and etc/group, as Debian's adduser makes it."""
    (root / "etc").mkdir(parents=True, exist_ok=True)
    with open(root / "etc/passwd", "a") as f:
        f.write(f"{name}:x:{uid}:{uid}:{name}:/home/{name}:/bin/bash\n")
    with open(root / "etc/group", "a") as f:
        f.write(f"{name}:x:{uid}:\n")


@dataclasses.dataclass
class LiveEnv(Environment):
    """The live system as configure sees it (sudo, /), but writing under a temporary
    root: what qss-get does and says on the appliance, without touching this machine."""

    @property
    def live(self) -> bool:
        return True


def qss_get(env: Environment, *args: str) -> tuple[int, str]:
    """Run qss-get in-process as its console script does; (status, standard output)."""
    status = run(lambda argv: main(argv, env), list(args), prog="qss-get")
    return status, env.stdout.getvalue()


def lines(text: str) -> list[str]:
    return text.splitlines()


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file()}


# -- help and bad calls ----------------------------------------------------------------

def test_help_covers_the_manuals_config_and_version(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: qss-get ACTION [OPTIONS]\n")
    for text in ("--config COMPONENT [COMPONENT ...]", "--version", "-h, --help", "--root DIR",
                 "--yes", "--interface NAME", "exit status:", "examples:",
                 "172.16.1.100/24", "1883", "4410 and 9000", "30 s on battery",
                 "/var/log/<program>.log", "/ssd", ".qss-bak-", "0.0.0.0:4410",
                 f"account '{OPERATOR_USER}', which joins group '{SERVICE_GROUP}'"):
        assert text in out, text
    for component in (*COMPONENTS, "all"):
        assert f"\n  {component:<10} " in out, component
    for data in ("--newdb", "--indexes", "--backup DEST", "--restore SRC",
                 "--data-import [PATH]", "--mount-ddrive"):
        assert data in out, data
    # The manual's chapter 14: -i, -u, -p with their options, and the rollback.
    for archive in ("-i [PATH], --install [PATH]", "-u [PATH], --update [PATH]",
                    "-p [ARG ...], --packages [ARG ...]", "--rollback", "-a, --all",
                    "--ups, -ups", "sudo qss-get -u /mnt", "sudo qss-get -p /mnt apcupsd"):
        assert archive in out, archive


def test_every_option_has_help():
    for action in build_parser()._actions:
        assert action.help, action.option_strings


def test_actions_are_a_table_of_mutually_exclusive_flags():
    names = ["install", "update", "packages", "rollback", "config", "backup", "restore",
             "data_import", "indexes", "mount_ddrive", "newdb", "status", "clean_synced",
             "version"]
    assert [a.name for a in ACTIONS] == names
    parser = build_parser()
    (group,) = parser._mutually_exclusive_groups
    assert group.required
    assert sorted(a.dest for a in group._group_actions) == sorted(names)


@pytest.mark.parametrize("argv, error", [
    ([], "qss-get: error: choose an action: -i, -u, -p, --rollback, --config, --backup, "
         "--restore, --data-import, --indexes, --mount-ddrive, --newdb, --status, "
         "--clean-synced, --version or --help"),
    (["--config"], "qss-get: error: argument --config: expected at least one argument"),
    (["--config", "firewall"], "qss-get: error: argument --config: invalid choice: 'firewall' "
                               "(choose from 'qss', 'nic', 'shorewall', 'apcupsd', 'all')"),
    (["--config", "qss", "--version"],
     "qss-get: error: argument --version: not allowed with argument --config"),
    (["--yes"], "qss-get: error: choose an action: -i, -u, -p, --rollback, --config, "
                "--backup, --restore, --data-import, --indexes, --mount-ddrive, --newdb, "
                "--status, --clean-synced, --version or --help"),
    (["--version", "--newdb"], "qss-get: error: argument --newdb: not allowed with argument "
                               "--version"),
    (["--version", "--install"], "qss-get: error: argument -i/--install: not allowed with "
                                 "argument --version"),
    (["-u", "/mnt", "-p", "apcupsd"], "qss-get: error: argument -p/--packages: not allowed "
                                      "with argument -u/--update"),
    (["--version", "--upgrade"], "qss-get: error: unrecognised option '--upgrade'"),
    (["--status", "--bogus", "stray"], "qss-get: error: unrecognised arguments '--bogus', "
                                       "'stray'"),
])
def test_an_invalid_call_prints_usage_and_exits_2(capsys, argv, error):
    assert main(argv) == ExitStatus.USAGE
    err = capsys.readouterr().err
    assert lines(err)[0] == "usage: qss-get ACTION [OPTIONS]"
    assert error in lines(err)
    assert lines(err)[-1] == "(run 'qss-get --help' for the actions and options)"


@pytest.mark.parametrize("argv", [["-u", "/mnt", "-a"], ["--rollback", "--ups"],
                                  ["-p", "x", "--ups"]])
def test_archive_options_out_of_place_are_usage_errors(argv, capsys):
    assert run(main, argv, prog="qss-get") == ExitStatus.USAGE
    assert capsys.readouterr().err == ("qss-get: error: -a goes with -i or -p, --ups with -i "
                                       "(qss-get -i /mnt -a --ups)\n")


def test_version_prints_the_software_version(tmp_path):
    env = make_env(tmp_path)
    assert qss_get(env, "--version") == (0, f"MicroPMU Quickstart Server {__version__}\n")


def test_a_missing_root_is_a_usage_error(tmp_path, capsys):
    status, out = qss_get(make_env(tmp_path), "--config", "qss", "--root", str(tmp_path / "no"))
    assert status == ExitStatus.USAGE and out == ""
    assert capsys.readouterr().err == (f"qss-get: error: --root {str(tmp_path / 'no')!r}: no "
                                       f"such directory; create it first\n")


def test_a_bad_interface_name_is_a_usage_error(tmp_path, capsys):
    status, _ = qss_get(make_env(tmp_path), "--config", "nic", "--root", str(tmp_path),
                        "--interface", "eth 0")
    assert status == ExitStatus.USAGE
    assert capsys.readouterr().err == (
        "qss-get: error: --interface: 'eth 0' is not a network interface name (up to 15 "
        "letters, digits and . _ : @ -, e.g. eno1)\n")
    assert not any(tmp_path.iterdir())


# -- --config --------------------------------------------------------------------------

def test_config_all_writes_every_file_and_a_second_run_changes_nothing(tmp_path):
    env = make_env(tmp_path)
    status, out = qss_get(env, "--config", "all", "--root", str(tmp_path))
    assert status == 0
    assert lines(out) == (
        ["interface eno1 (this machine's default route; choose another with --interface NAME)"]
        + [f"created   {tmp_path}/{f}" for f in ALL_FILES]
        + [f"created   {tmp_path}/etc/qss/plotter.crt (the plotter's self-signed certificate "
           f"for 172.16.1.100; a real one: manual ch. 14)",
           f"created   {tmp_path}/etc/qss/plotter.key (its key: the service user's alone)"]
        + [f"written under {tmp_path}; nothing on this machine was started or changed"])
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) \
        == sorted(ALL_FILES + CERTIFICATE)
    assert {f: (tmp_path / f).stat().st_mode & 0o777 for f in ALL_FILES} == {
        f: 0o755 if f.endswith("accounts.py") else 0o644 for f in ALL_FILES}
    assert ((tmp_path / "etc/qss/plotter.key").stat().st_mode & 0o777) == 0o600
    before = snapshot(tmp_path)

    env = make_env(tmp_path)
    status, out = qss_get(env, "--config", "all", "--root", str(tmp_path))
    assert status == 0
    assert lines(out)[1:] == ([f"unchanged {tmp_path}/{f}" for f in ALL_FILES]
                              + ["nothing to do: 16 files already as qss-get writes them"])
    assert snapshot(tmp_path) == before     # not even rewritten: same inodes and times


def test_components_can_be_combined_and_repeated(tmp_path):
    status, out = qss_get(make_env(tmp_path), "--config", "apcupsd", "nic", "apcupsd",
                          "--root", str(tmp_path), "--interface", "eno2")
    assert status == 0
    assert lines(out) == [f"created   {tmp_path}/etc/network/interfaces",
                          f"created   {tmp_path}/etc/apcupsd/apcupsd.conf",
                          f"created   {tmp_path}/etc/default/apcupsd",
                          f"written under {tmp_path}; nothing on this machine was started or "
                          f"changed"]
    assert "auto eno2\niface eno2 inet static\n" in (
        tmp_path / "etc/network/interfaces").read_text()


def test_a_changed_file_is_shown_backed_up_and_replaced_once_confirmed(tmp_path):
    qss_get(make_env(tmp_path), "--config", "shorewall", "--root", str(tmp_path))
    rules = tmp_path / "etc/shorewall/rules"
    original = rules.read_text()
    edited = original.replace("ACCEPT\t\tnet\t\t$FW\t\ttcp\t22\n", "")
    rules.write_text(edited)
    rules.chmod(0o600)

    env = make_env(tmp_path, stdin="y\n")
    status, out = qss_get(env, "--config", "shorewall", "--root", str(tmp_path))
    assert status == 0
    backup = tmp_path / "etc/shorewall/rules.qss-bak-20240506T070809"
    assert f"--- {rules} (now)\n+++ {rules} (qss-get)\n" in out
    assert "\n+ACCEPT\t\tnet\t\t$FW\t\ttcp\t22\n" in out
    assert ("Replace the 1 file shown above? Each is backed up first. [y/N] \n"
            f"unchanged {tmp_path}/etc/shorewall/interfaces\n") in out
    assert f"replaced  {rules} (the previous one is {backup})\n" in out
    assert rules.read_text() == original and (rules.stat().st_mode & 0o777) == 0o644
    assert backup.read_text() == edited and (backup.stat().st_mode & 0o777) == 0o600
    # no temporary files left behind
    assert sorted(p.name for p in rules.parent.iterdir()) == [
        "interfaces", "policy", "rules", "rules.qss-bak-20240506T070809", "zones"]


def test_a_second_backup_in_the_same_second_gets_its_own_name(tmp_path):
    qss_get(make_env(tmp_path), "--config", "apcupsd", "--root", str(tmp_path))
    conf = tmp_path / "etc/apcupsd/apcupsd.conf"
    for n, text in enumerate(["first edit\n", "second edit\n"]):
        conf.write_text(text)
        status, _ = qss_get(make_env(tmp_path), "--config", "apcupsd", "--root", str(tmp_path),
                            "--yes")
        assert status == 0
    assert (conf.parent / "apcupsd.conf.qss-bak-20240506T070809").read_text() == "first edit\n"
    assert (conf.parent / "apcupsd.conf.qss-bak-20240506T070809-1").read_text() == \
        "second edit\n"


@pytest.mark.parametrize("answer", ["n\n", "\n", "", "yes please\n"])
def test_declining_writes_nothing_at_all(tmp_path, answer):
    qss_get(make_env(tmp_path), "--config", "all", "--root", str(tmp_path))
    (tmp_path / "etc/default/apcupsd").write_text("ISCONFIGURED=no\n")
    (tmp_path / "etc/shorewall/zones").unlink()
    before = snapshot(tmp_path)
    env = make_env(tmp_path, stdin=answer)
    status, out = qss_get(env, "--config", "all", "--root", str(tmp_path))
    assert status == ExitStatus.ERROR
    assert lines(out)[-1] == ("cancelled: nothing was written (answer y to go ahead; scripts "
                              "use --yes)")
    assert snapshot(tmp_path) == before


def test_yes_replaces_without_asking(tmp_path):
    qss_get(make_env(tmp_path), "--config", "nic", "--root", str(tmp_path))
    interfaces = tmp_path / "etc/network/interfaces"
    interfaces.write_text("auto eno1\niface eno1 inet dhcp\n")
    env = make_env(tmp_path, stdin="n\n")      # would decline if asked
    status, out = qss_get(env, "--config", "nic", "--root", str(tmp_path), "--yes")
    assert status == 0 and "[y/N]" not in out
    assert "address 172.16.1.100\nnetmask 255.255.255.0\ngateway 172.16.1.1\n" in \
        interfaces.read_text()
    assert env.stdin.read() == "n\n"           # stdin untouched


def test_an_operators_qss_ini_is_kept_and_used(tmp_path):
    ini = tmp_path / "etc/qss/qss.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text("# mine\n[paths]\ndata = /data/btrdb\nsrv = /data/queue\n"
                   "[queue]\nurl = mongodb://localhost:27018\n")
    mine = ini.read_bytes()
    status, out = qss_get(make_env(tmp_path), "--config", "qss", "--root", str(tmp_path))
    assert status == 0
    assert lines(out)[0] == (f"kept      {ini} (the operator's settings are never replaced; "
                             f"to start from the defaults, move it away and run again)")
    assert ini.read_bytes() == mine
    assert not list(ini.parent.glob("*.qss-bak-*"))
    conf = (tmp_path / "etc/supervisor/conf.d/qss.conf").read_text()
    assert ("[program:mongo]\n; MongoDB, the queue of received files ([queue] url)\n"
            "command=/usr/bin/mongod --dbpath /data/queue --bind_ip 127.0.0.1 --port 27018\n"
            "user=qss\n") in conf
    dropin = (tmp_path / "etc/systemd/system/supervisor.service.d/qss.conf").read_text()
    assert "RequiresMountsFor=/data/btrdb /data/queue\n" in dropin
    assert "TimeoutStopSec=350\n" in dropin     # 120 + 30 + 30 + 60 + 30 + 10 + 10 s, plus a minute
    tmpfiles = (tmp_path / "etc/tmpfiles.d/qss.conf").read_text()
    assert "d     /data/btrdb                2770  qss  qss   -\n" in tmpfiles
    assert "Z     /data/btrdb                ~2770 qss  qss   -\n" in tmpfiles
    assert "\nf " not in tmpfiles          # a MongoDB queue: no SQLite file to create
    # a second run: still kept, everything else unchanged
    env = make_env(tmp_path)
    status, out = qss_get(env, "--config", "qss", "--root", str(tmp_path))
    assert status == 0 and lines(out)[-1] == \
        "nothing to do: 8 files already as qss-get writes them"
    # [store] is the library's default there, 127.0.0.1: kept, but the operator is told
    assert ("qss-get: warning: /etc/qss/qss.ini: [store] grpc = 127.0.0.1:4410 and http = "
            "127.0.0.1:9000: the BTrDB API is reachable from this machine only, although "
            "shorewall admits 4410 and 9000; for users' computers set grpc = 0.0.0.0:4410 "
            "and http = 0.0.0.0:9000 there (then sudo supervisorctl restart btrdb)\n") in \
        env.stderr.getvalue()


def test_the_appliances_qss_ini_opens_the_btrdb_apis_to_the_network(tmp_path):
    """Manual ch. 13 opens 4410 and 9000 in the firewall, and appendix 17 has users reach
    the BTrDB APIs from their computers: the qss.ini qss-get writes listens on 0.0.0.0
    there, and says why; the library's default stays 127.0.0.1."""
    add_account(tmp_path)
    env = make_env(tmp_path)
    status, _ = qss_get(env, "--config", "qss", "--root", str(tmp_path))
    assert status == 0 and env.stderr.getvalue() == ""
    ini = tmp_path / "etc/qss/qss.ini"
    settings = load_settings(str(ini), environ={})
    assert settings.warnings == ()
    assert (settings.store.grpc, settings.store.http) == (HostPort("0.0.0.0", 4410),
                                                          HostPort("0.0.0.0", 9000))
    assert settings.store == APPLIANCE_STORE
    assert settings.receiver.listen == HostPort("0.0.0.0", 1883)
    # everything else is the built-in default, which itself still keeps BTrDB local
    assert dataclasses.replace(settings, store=Settings().store) == Settings()
    assert Settings().store.grpc == HostPort("127.0.0.1", 4410)
    text = ini.read_text()
    store = text[text.index("[store]\n"):]
    store = store[:store.find("\n[", 1) + 1 or None]      # up to the next section
    assert ("every IPv4 address (0.0.0.0)" in store and "shorewall" in store
            and "admits 4410 and 9000" in store)
    assert store.endswith("\ngrpc = 0.0.0.0:4410\nhttp = 0.0.0.0:9000\n\n"), store


def test_the_operator_shares_the_queue_and_supervisor_with_the_services(tmp_path):
    """manager runs upmu-adm and clean_synced without sudo (manual): group qss, setgid
    data directories, umask 007 for every program, the SQLite queue created 0660, and
    supervisord's socket open to the group."""
    add_account(tmp_path)
    status, _ = qss_get(make_env(tmp_path), "--config", "qss", "--root", str(tmp_path))
    assert status == 0
    etc = tmp_path / "etc"
    assert (etc / "sysusers.d/qss.conf").read_text().endswith("\nm manager qss\n")
    tmpfiles = (etc / "tmpfiles.d/qss.conf").read_text()
    for path in ("/ssd/data", "/ssd/srv"):
        assert f"\nd     {path:<26} 2770  qss  qss   -\n" in tmpfiles
        assert f"\nZ     {path:<26} ~2770 qss  qss   -\n" in tmpfiles
    assert "\nf     /ssd/srv/queue.db          0660  qss  qss   -\n" in tmpfiles
    assert "\nf     /ssd/srv/plotter.db        0660  qss  qss   -\n" in tmpfiles
    assert "\nd     /var/lib/qss               0750  qss  qss   -\n" in tmpfiles   # not shared
    supervisord = (etc / "supervisor/supervisord.conf").read_text()
    assert "\nchown=root:qss\nchmod=0770\n" in supervisord
    conf = (etc / "supervisor/conf.d/qss.conf").read_text()
    blocks = conf.split("[program:")[1:]
    assert len(blocks) == 6 and all("\numask=007\n" in b for b in blocks)   # + distil, mr-plotter, metadata
    # mr-plotter starts as root to bind 443 and 80, then serves as qss; its key is qss's
    (plotter,) = [b for b in blocks if b.startswith("mr-plotter]")]
    assert ("\ncommand=/opt/qss/bin/qss-plotter --config /etc/qss/qss.ini --user qss\n"
            "user=root\n") in plotter
    assert "\nz     /etc/qss/plotter.key       0600  qss  qss   -\n" in tmpfiles


def test_the_operator_joins_the_group_only_when_the_account_exists(tmp_path):
    """systemd-sysusers' "m" line creates a missing account (a system account without
    a login): without the operator's account qss-get leaves the line commented out and
    says why; once the account exists, a second run puts it in."""
    env = make_env(tmp_path)
    status, _ = qss_get(env, "--config", "qss", "--root", str(tmp_path))
    assert status == 0
    assert env.stderr.getvalue() == (
        f"qss-get: warning: no account manager in {tmp_path}/etc/passwd: it is not made a "
        f"member of group qss, so it cannot use upmu-adm and clean_synced without sudo "
        f"(systemd-sysusers would create it as a system account without a login); create it "
        f"(sudo adduser manager) and run qss-get --config qss again\n")
    sysusers = tmp_path / "etc/sysusers.d/qss.conf"
    text = sysusers.read_text()
    assert text.endswith(
        "\n# Not written: there was no account manager when qss-get ran (an \"m\" line would"
        "\n# create it). Create it (sudo adduser manager), then run sudo qss-get --config qss"
        "\n# again.\n#m manager qss\n")

    add_account(tmp_path)
    env = make_env(tmp_path)
    status, out = qss_get(env, "--config", "qss", "--root", str(tmp_path), "--yes")
    assert status == 0 and env.stderr.getvalue() == ""
    assert f"replaced  {sysusers} (the previous one is {sysusers}.qss-bak-20240506T070809)" \
        in lines(out)
    assert sysusers.read_text().endswith("\nm manager qss\n")


def test_the_plotters_certificate_is_made_once_for_the_servers_names(tmp_path):
    """--config qss makes a self-signed certificate for the server's address and host
    name when [plotter] names files that are missing; it never overwrites them."""
    (tmp_path / "etc/network").mkdir(parents=True)
    (tmp_path / "etc/network/interfaces").write_text(
        "auto eno1\niface eno1 inet static\naddress 10.1.2.3/24\n")
    (tmp_path / "etc/hostname").write_text("upmu-server\n")
    add_account(tmp_path)
    status, out = qss_get(make_env(tmp_path), "--config", "qss", "--root", str(tmp_path))
    crt, key = tmp_path / "etc/qss/plotter.crt", tmp_path / "etc/qss/plotter.key"
    assert status == 0 and (f"created   {crt} (the plotter's self-signed certificate for "
                            f"10.1.2.3, upmu-server; a real one: manual ch. 14)") in lines(out)
    decoded = ssl._ssl._test_decode_cert(str(crt))
    assert decoded["subjectAltName"] == (("IP Address", "10.1.2.3"), ("DNS", "upmu-server"))
    assert decoded["notAfter"].endswith(" 2036 GMT") or int(decoded["notAfter"][-8:-4]) >= \
        dt.date.today().year + 9                            # ten years
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(crt, key)  # a pair
    assert (key.stat().st_mode & 0o777, crt.stat().st_mode & 0o777) == (0o600, 0o644)
    # an operator's certificate is never replaced
    crt.write_bytes(b"the operator's certificate\n")
    status, out = qss_get(make_env(tmp_path), "--config", "qss", "--root", str(tmp_path))
    assert status == 0 and "plotter.crt" not in out
    assert crt.read_bytes() == b"the operator's certificate\n"
    # a certificate without its key: no key made up for it, and the operator is told
    key.unlink()
    env = make_env(tmp_path)
    status, out = qss_get(env, "--config", "qss", "--root", str(tmp_path))
    assert status == 1 and not key.exists() and "plotter.key" not in out
    assert env.stderr.getvalue() == (
        f"qss-get: warning: [plotter] certificate: {crt} exists but {key} does not: put the "
        f"matching file there, or move {crt} away to have a self-signed pair made; "
        f"mr-plotter cannot serve HTTPS until there is one (manual ch. 14)\n")


def test_no_certificate_for_a_plain_http_plotter(tmp_path):
    ini = tmp_path / "etc/qss/qss.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text("[plotter]\nlisten = 127.0.0.1:8080\ncertificate =\nkey =\nredirect = off\n")
    status, out = qss_get(make_env(tmp_path), "--config", "qss", "--root", str(tmp_path))
    assert status == 0 and "plotter.crt" not in out
    assert sorted(p.name for p in ini.parent.iterdir()) == ["qss.ini"]
    assert "plotter.key" not in (tmp_path / "etc/tmpfiles.d/qss.conf").read_text()


def test_on_the_live_system_the_operator_is_told_to_log_in_again(tmp_path):
    """On the appliance qss-get runs systemd-sysusers at once, and the new membership
    counts only from the operator's next login: the next: lines say so, once."""
    members: set[str] = set()
    ran = []

    def tool(argv):
        ran.append(argv[0])
        if argv[0] == "systemd-sysusers":
            members.add("manager")
        return 0, ""

    def live_env():
        return make_env(tmp_path, cls=LiveEnv, euid=lambda: 0, run=tool,
                        user_exists=lambda name: name in ("manager", "qss"),
                        in_group=lambda user, group: group == "qss" and user in members)

    relogin = ("next: log out and back in as manager (every session, SSH too): manager is now "
               "in group qss, which takes effect at the next login; until then upmu-adm and "
               "clean_synced cannot open the queue without sudo")
    status, out = qss_get(live_env(), "--config", "qss", "--root", str(tmp_path))
    assert status == 0 and ran == ["systemd-sysusers", "systemd-tmpfiles"]
    assert lines(out)[-2:] == [
        "next: sudo systemctl daemon-reload && sudo systemctl restart supervisor   (restarts "
        "every program)", relogin]
    # a second run: nothing changed, nothing run, nothing to say
    ran.clear()
    status, out = qss_get(live_env(), "--config", "qss", "--root", str(tmp_path))
    assert status == 0 and ran == [] and "next:" not in out
    # a new certificate (the old pair moved away): its key is handed to qss at once
    for name in ("plotter.crt", "plotter.key"):
        (tmp_path / "etc/qss" / name).unlink()
    status, out = qss_get(live_env(), "--config", "qss", "--root", str(tmp_path))
    assert status == 0 and ran == ["systemd-tmpfiles"]
    assert lines(out)[-1] == ("next: sudo supervisorctl restart mr-plotter   (it reads its "
                              "certificate when it starts)")
    ran.clear()
    # the operator was taken out of the group meanwhile: the same files, but it is put back
    members.clear()
    status, out = qss_get(live_env(), "--config", "qss", "--root", str(tmp_path))
    assert status == 0 and ran == ["systemd-sysusers"] and lines(out)[-1] == relogin


def supervisor_conf_for(tmp_path, url: str) -> str:
    """qss-get --config qss's supervisor programs for a qss.ini with ``[queue] url``."""
    ini = tmp_path / "etc/qss/qss.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text(f"[queue]\nurl = {url}\n")
    status, out = qss_get(make_env(tmp_path), "--config", "qss", "--root", str(tmp_path))
    assert status == 0, out
    return (tmp_path / "etc/supervisor/conf.d/qss.conf").read_text()


@pytest.mark.parametrize("url, shown", [
    ("mongodb://qss:s3cret@db.example.org:27017/?tls=true",
     "mongodb://***@db.example.org:27017/?tls=true"),
    # DNS lists its servers: never this machine's to run (the settings refused it)
    ("mongodb+srv://qss:s3cret@cluster0.example.org/", "mongodb+srv://***@cluster0.example.org/"),
], ids=["a host elsewhere", "mongodb+srv"])
def test_a_remote_mongodb_gets_no_mongo_program(tmp_path, url, shown):
    conf = supervisor_conf_for(tmp_path, url)
    assert "[program:mongo]" not in conf and "s3cret" not in conf
    assert (f"; [queue] url = {shown} is a MongoDB on "
            "another machine:\n; no mongo program here.\n") in conf


@pytest.mark.parametrize("url, command", [
    ("mongodb://LOCALHOST:27018", "--bind_ip 127.0.0.1 --port 27018\n"),
    ("mongodb://[::1]:27018/upmu_database", "--bind_ip ::1 --port 27018 --ipv6\n"),
], ids=["a host name in capitals", "IPv6"])
def test_a_mongodb_on_this_machine_gets_a_mongo_program_bound_to_its_address(tmp_path, url,
                                                                              command):
    """mongod listens on IPv6 only with --ipv6; a host name is the same in any case."""
    conf = supervisor_conf_for(tmp_path, url)
    assert f"command=/usr/bin/mongod --dbpath /ssd/srv {command}" in conf
    assert "on another machine" not in conf


@pytest.mark.parametrize("text, error", [
    ("[queue]\nurl = postgres://x\n",
     "[queue] url = 'postgres://x': expected sqlite:////ABSOLUTE/PATH or mongodb://HOST[:PORT]"),
    ("[paths]\ndata = /var\n",
     "[paths] data = '/var' is a system or home directory; the service user must own its "
     "data directories, so give it one of its own, e.g. /ssd/data"),
    ("[paths]\nsrv = /home/manager\n",
     "[paths] srv = '/home/manager' is a system or home directory"),
])
def test_an_unusable_qss_ini_stops_before_anything_is_written(tmp_path, capsys, text, error):
    ini = tmp_path / "etc/qss/qss.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text(text)
    status, out = qss_get(make_env(tmp_path), "--config", "all", "--root", str(tmp_path))
    assert status == ExitStatus.ERROR and "created" not in out
    err = capsys.readouterr().err
    assert err.startswith("qss-get: error: ") and error in err and len(lines(err)) == 1
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [ini]


def test_no_default_route_needs_an_interface(tmp_path, capsys):
    env = make_env(tmp_path, routes=ROUTES.splitlines()[0] + "\n")
    status, _ = qss_get(env, "--config", "shorewall", "--root", str(tmp_path))
    assert status == ExitStatus.ERROR
    assert capsys.readouterr().err == (
        "qss-get: error: cannot tell which network interface the uPMUs are on: this machine "
        "has no default route; name it with --interface NAME (interfaces here: eno1, eno2)\n")
    assert not any(tmp_path.iterdir())


def test_root_never_touches_the_real_etc(tmp_path):
    watched = [Path("/etc", d) for d in ("qss", "supervisor", "shorewall", "network", "apcupsd",
                                         "default", "systemd/system", "sysusers.d",
                                         "tmpfiles.d")]

    def state():
        return {str(p): (p.stat().st_mtime_ns, p.stat().st_size)
                for d in watched if d.exists() for p in [d, *d.rglob("*")]
                if not p.is_symlink()}

    before = state()
    status, _ = qss_get(make_env(tmp_path), "--config", "all", "--root", str(tmp_path),
                        "--yes")
    assert status == 0
    assert state() == before
    assert all(str(p).startswith(str(tmp_path)) for p in tmp_path.rglob("*"))


def test_without_root_the_live_system_is_refused_before_anything_is_written(monkeypatch,
                                                                           capsys):
    def must_not_write(*args):
        raise AssertionError("qss-get wrote to the live system")

    # Belt and braces: were the check ever lost, the writer fails instead of /etc changing.
    monkeypatch.setattr(files, "atomic_write", must_not_write)
    env = make_env(Path("/"))           # no --root: the live system; euid 1000
    status, out = qss_get(env, "--config", "apcupsd")
    assert (status, out) == (ExitStatus.ERROR, "")
    assert capsys.readouterr().err == (
        "qss-get: error: --config writes the system's configuration under /: run it with "
        "sudo (or write into a folder with --root DIR)\n")


def test_on_the_live_system_the_service_user_is_created_now():
    ran = []

    def tool(argv):
        ran.append(tuple(argv))
        return (1, "no such group") if argv[0] == "systemd-tmpfiles" else (0, "")

    env = make_env(Path("/"), run=tool)
    ok = service_user_steps(env, {"/etc/sysusers.d/qss.conf", "/etc/tmpfiles.d/qss.conf"})
    assert ran == [("systemd-sysusers", "/etc/sysusers.d/qss.conf"),
                   ("systemd-tmpfiles", "--create", "/etc/tmpfiles.d/qss.conf")]
    assert not ok
    assert env.stdout.getvalue() == "ran       systemd-sysusers /etc/sysusers.d/qss.conf\n"
    assert env.stderr.getvalue() == (
        "qss-get: warning: systemd-tmpfiles --create /etc/tmpfiles.d/qss.conf failed (exit "
        "status 1): no such group; run it again once fixed, or supervisord cannot start the "
        "programs\n")


def test_a_directory_in_the_way_is_one_line(tmp_path, capsys):
    (tmp_path / "etc/default/apcupsd").mkdir(parents=True)
    status, _ = qss_get(make_env(tmp_path), "--config", "apcupsd", "--root", str(tmp_path))
    assert status == ExitStatus.ERROR
    assert capsys.readouterr().err == (
        f"qss-get: error: {tmp_path}/etc/default/apcupsd: is a directory, not a file; move it "
        f"away and run again\n")


def test_files_plan_and_apply_directly(tmp_path):
    spec = files.FileSpec("/etc/x.conf", "new\n", "test", mode=0o640)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/x.conf").write_text("old\n")
    (change,) = files.plan([spec], tmp_path)
    assert change.outcome is files.Outcome.REPLACE and change.current == b"old\n"
    (done,) = list(files.apply([change], NOW))
    assert done.backup == tmp_path / "etc/x.conf.qss-bak-20240506T070809"
    assert (tmp_path / "etc/x.conf").read_text() == "new\n"
    assert (tmp_path / "etc/x.conf").stat().st_mode & 0o777 == 0o640
    with pytest.raises(ValueError):
        files.FileSpec("etc/relative", "", "test")
    with pytest.raises(ValueError):
        files.FileSpec("/etc/../root/x", "", "test")


def test_next_steps_name_the_service_to_restart_for_what_changed():
    from installer.components import next_steps
    assert next_steps(set(), "eno1") == []
    assert next_steps({"/etc/sysusers.d/qss.conf"}, None, ("manager", "qss")) == [
        "log out and back in as manager (every session, SSH too): manager is now in group "
        "qss, which takes effect at the next login; until then upmu-adm and clean_synced "
        "cannot open the queue without sudo"]
    assert next_steps({"/etc/supervisor/conf.d/qss.conf"}, None) == [
        "sudo supervisorctl update   (restarts the programs whose settings changed)"]
    assert next_steps({"/etc/supervisor/conf.d/qss.conf",
                       "/etc/systemd/system/supervisor.service.d/qss.conf"}, None) == [
        "sudo systemctl daemon-reload && sudo systemctl restart supervisor   (restarts every "
        "program)"]
    assert next_steps({"/etc/shorewall/rules", "/etc/network/interfaces",
                       "/etc/default/apcupsd"}, "eno2") == [
        "sudo ifdown eno2 && sudo ifup eno2   (over SSH the session drops if the address "
        "changed: reconnect to the new one)",
        "sudo shorewall check && sudo systemctl enable shorewall && sudo shorewall safe-restart",
        "sudo systemctl enable apcupsd && sudo systemctl restart apcupsd"]


def test_the_default_route_with_the_lowest_metric_wins():
    from installer.netif import default_route_interface
    table = (ROUTES.splitlines()[0] + "\n"
             "wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n"
             "eno2\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
             "eno3\t00000000\t0101A8C0\t0002\t0\t0\t0\t00000000\t0\t0\t0\n"     # not up
             "eno4\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n")    # not default
    assert default_route_interface(table) == "eno2"
    assert default_route_interface("") is None
    assert default_route_interface(ROUTES.splitlines()[0] + "\ngarbage line\n") is None


def test_a_template_with_a_missing_or_unused_field_is_a_programming_error():
    from installer import templating
    with pytest.raises(ValueError, match=r"fields without values \['interface'\]"):
        templating.render("shorewall/interfaces")
    with pytest.raises(ValueError, match=r"values without fields \['typo'\]"):
        templating.render("shorewall/zones", typo="x")
