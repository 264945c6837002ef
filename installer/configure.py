"""``qss-get --config``: write the chosen components' files, as the operator sees it.

Reads the target's qss.ini, finds the network interface, plans every file, shows the
diffs of the files it would replace and asks (unless told yes), writes, reports one
line per file, and on the live system creates the service user, makes the operator a
member of its group and says what to run next. Everything outside goes through the
:class:`~installer.environment.Environment`.
"""
from __future__ import annotations

from pathlib import Path

from qss.settings import Settings, SettingsError, load_settings

from . import files
from .certificate import CertificateError, server_names, write_self_signed
from .components import (APPLIANCE_STORE, COMPONENTS, NIC_ADDRESS, QSS_INI, SERVICE_USER,
                         Layout, component_files, missing_programs, next_steps)
from .environment import Environment
from .files import Cancelled, DeployError, Outcome
from .netif import check_interface_name, default_route_interface


class BadInterface(DeployError):
    """``--interface`` names something that cannot be a network interface."""


def configure(env: Environment, components: tuple[str, ...], interface: str | None = None,
              assume_yes: bool = False) -> bool:
    """Write the files of ``components`` under ``env.root``; True when all went well
    (False: a service-user step failed; its warning is printed).

    Raises:
        DeployError: nothing usable to write, a file that cannot be written (files
            before it are complete), :class:`Cancelled` or :class:`BadInterface`.
    """
    unknown = set(components) - set(COMPONENTS)
    if unknown:
        raise ValueError(f"unknown components {sorted(unknown)}")
    if env.live and env.euid() != 0:
        raise DeployError("--config writes the system's configuration under /: run it with "
                          "sudo (or write into a folder with --root DIR)")
    settings = target_settings(env) if "qss" in components else Settings()
    if {"nic", "shorewall"} & set(components):
        interface = network_interface(env, interface)
    layout = Layout(bindir=env.bindir)
    operator_exists, was_member = True, True
    if "qss" in components:
        _warn_store_on_loopback(env, settings)
        operator_exists = account_exists(env, layout.operator)
        if not operator_exists:
            where = "on this machine" if env.live else f"in {env.root / 'etc/passwd'}"
            env.warn(f"no account {layout.operator} {where}: it is not made a member of group "
                     f"{layout.group}, so it cannot use upmu-adm and clean_synced without "
                     f"sudo (systemd-sysusers would create it as a system account without a "
                     f"login); create it (sudo adduser {layout.operator}) and run qss-get "
                     f"--config qss again")
        was_member = not env.live or not operator_exists or env.in_group(layout.operator,
                                                                         layout.group)
    changes = files.plan(component_files(components, settings, layout, interface,
                                         operator_exists), env.root)

    replacing = [c for c in changes if c.outcome is Outcome.REPLACE]
    for change in replacing:
        env.stdout.write(change.diff())
    if replacing and not assume_yes and not _confirm(
            env, f"Replace the {_files(len(replacing))} shown above? Each is backed up "
                 f"first. [y/N] "):
        raise Cancelled("cancelled: nothing was written (answer y to go ahead; scripts use "
                        "--yes)")

    changed: set[str] = set()
    for change in files.apply(changes, env.clock()):
        env.say(describe(change))
        if change.outcome in (Outcome.CREATE, Outcome.REPLACE):
            changed.add(change.spec.path)

    ok = True
    certificate = "qss" in components and plotter_certificate(env, settings)
    if certificate:
        changed.add(settings.plotter.key)
    elif certificate is None:
        ok = False
    if not changed:
        env.say(f"nothing to do: {_files(len(changes))} already as qss-get writes them")
    if env.live:
        joined = None
        if "qss" in components:
            ok = service_user_steps(env, changed, join=not was_member,
                                    key=settings.plotter.key) and ok
            if not was_member and env.in_group(layout.operator, layout.group):
                joined = (layout.operator, layout.group)
            for program in missing_programs(settings, layout):
                env.warn(f"program {program} is not installed yet: supervisor will show it "
                         f"FATAL until it is")
        steps = next_steps(changed, interface, joined)
        if certificate and not any("restart supervisor" in s for s in steps):
            steps.append("sudo supervisorctl restart mr-plotter   (it reads its certificate "
                         "when it starts)")
        for step in steps:
            env.say(f"next: {step}")
    elif changed:
        env.say(f"written under {env.root}; nothing on this machine was started or changed")
    return ok


def target_settings(env: Environment) -> Settings:
    """The settings of the qss.ini under the root (defaults when there is none yet).
    The machine's environment variables are ignored: they are not the appliance's.

    Raises:
        DeployError: the file cannot be read or holds a bad value.
    """
    path = files.target_path(env.root, QSS_INI)
    if not path.exists():
        return Settings()
    try:
        settings = load_settings(str(path), environ={})
    except SettingsError as exc:
        raise DeployError(f"{exc}; fix it (or move it away to start from the defaults) and "
                          f"run again") from None
    for warning in settings.warnings:
        env.warn(warning)
    return settings


def account_exists(env: Environment, name: str) -> bool:
    """Whether the target system has the account ``name``: this machine's (name service)
    when live, else the root's ``etc/passwd`` (missing: no accounts)."""
    if env.live:
        return env.user_exists(name)
    try:
        text = (env.root / "etc/passwd").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(line.split(":", 1)[0] == name for line in text.splitlines())


def _warn_store_on_loopback(env: Environment, settings: Settings) -> None:
    """An existing qss.ini (kept) whose BTrDB APIs the network cannot reach."""
    local = [f"{key} = {hp}" for key, hp in (("grpc", settings.store.grpc),
                                             ("http", settings.store.http))
             if hp.host in ("localhost", "::1") or hp.host.startswith("127.")]
    if settings.source is None or not local:
        return
    path = Path(settings.source)
    try:
        shown = "/" + str(path.relative_to(env.root))
    except ValueError:
        shown = str(path)
    env.warn(f"{shown}: [store] {' and '.join(local)}: the BTrDB API is reachable from this "
             f"machine only, although shorewall admits 4410 and 9000; for users' computers "
             f"set grpc = {APPLIANCE_STORE.grpc} and http = {APPLIANCE_STORE.http} there "
             f"(then sudo supervisorctl restart btrdb)")


def network_interface(env: Environment, name: str | None) -> str:
    """``name`` (checked) or the interface of this machine's default route.

    Raises:
        BadInterface: ``name`` is not an interface name.
        DeployError: no name and no default route.
    """
    devices = [d for d in env.net_devices() if d != "lo"]
    if name is not None:
        try:
            check_interface_name(name)
        except ValueError as exc:
            raise BadInterface(f"--interface: {exc}") from None
        if env.live and devices and name not in devices:
            env.warn(f"this machine has no network interface {name!r} (it has: "
                     f"{', '.join(devices)}); writing it anyway")
        return name
    detected = default_route_interface(env.route_table())
    if detected is None:
        raise DeployError("cannot tell which network interface the uPMUs are on: this "
                          "machine has no default route; name it with --interface NAME"
                          + (f" (interfaces here: {', '.join(devices)})" if devices else ""))
    env.say(f"interface {detected} (this machine's default route; choose another with "
            f"--interface NAME)")
    return detected


def service_user_steps(env: Environment, changed: set[str], join: bool = False,
                       key: str | None = None) -> bool:
    """On the live system: create the service user and its directories now (systemd
    does it at every boot), so supervisord can start the programs as that user, and
    (also when ``join``) make the operator a member of its group; hand the plotter's
    TLS ``key`` to the service user when it is among ``changed`` (just made). False when
    a step failed (a warning says which and why)."""
    ok = True
    steps = []
    if "/etc/sysusers.d/qss.conf" in changed or join or not env.user_exists(SERVICE_USER):
        steps.append(("systemd-sysusers", "/etc/sysusers.d/qss.conf"))
    if "/etc/tmpfiles.d/qss.conf" in changed or (key is not None and key in changed):
        steps.append(("systemd-tmpfiles", "--create", "/etc/tmpfiles.d/qss.conf"))
    for argv in steps:
        code, output = env.run(argv)
        if code == 0:
            env.say(f"ran       {' '.join(argv)}")
        else:
            env.warn(f"{' '.join(argv)} failed (exit status {code}): {output}; run it "
                     f"again once fixed, or supervisord cannot start the programs")
            ok = False
    return ok


def plotter_certificate(env: Environment, settings: Settings) -> bool | None:
    """Make the plotter's self-signed certificate and key where ``[plotter]`` names them,
    when neither exists (never overwritten; plain HTTP, both empty: none). True when
    made, False when there was nothing to make, None when it failed (a warning says why:
    the other files are written all the same)."""
    cfg = settings.plotter
    if not cfg.https:
        return False
    crt, key = (files.target_path(env.root, p) for p in (cfg.certificate, cfg.key))
    try:
        names = server_names(env.root, cfg.listen.host, NIC_ADDRESS)
        made = write_self_signed(crt, key, names)
    except (CertificateError, ValueError) as exc:
        env.warn(f"[plotter] certificate: {exc}; mr-plotter cannot serve HTTPS until "
                 f"there is one (manual ch. 14)")
        return None
    if made:
        env.say(f"created   {crt} (the plotter's self-signed certificate for "
                f"{', '.join(names)}; a real one: manual ch. 14)")
        env.say(f"created   {key} (its key: the service user's alone)")
    return made


def describe(change: files.Change) -> str:
    """The operator's line for one file: created, unchanged, replaced or kept."""
    word = f"{change.outcome.value:<9}"
    if change.outcome is Outcome.REPLACE:
        return f"{word} {change.target} (the previous one is {change.backup})"
    if change.outcome is Outcome.KEEP:
        return (f"{word} {change.target} (the operator's settings are never replaced; to "
                f"start from the defaults, move it away and run again)")
    return f"{word} {change.target}"


def _confirm(env: Environment, question: str) -> bool:
    env.stdout.write(question)
    env.stdout.flush()
    answer = env.stdin.readline()
    if not answer.endswith("\n") or not _isatty(env.stdin):
        env.say()   # a terminal echoes the answer's newline; a pipe does not
    return answer.strip().lower() in ("y", "yes")


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"
