"""A self-signed TLS certificate for the appliance's web site (``[plotter]``).

``qss-get --config qss`` makes one when the certificate and key that ``[plotter]`` names
do not exist yet, so the plotter serves HTTPS from its first start; an operator replaces
the two files with a real certificate (manual ch. 14) and qss-get never overwrites them.

Made by ``openssl`` (on every Debian system; no Python package to ship in the offline
archives): an EC P-256 key and a certificate valid for ten years, whose subject
alternative names are the server's names and addresses, so that a browser shows its
usual "not trusted" warning once and nothing about a wrong name.
"""
from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .files import atomic_write

#: How long a self-signed certificate is valid (days): an appliance stays for years, and
#: an expired certificate would lock users out of the plotter with no one to renew it.
DAYS = 3650

_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                   r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


class CertificateError(Exception):
    """The certificate could not be made; the message is one line and says why."""


def subject_alt_names(names: Sequence[str]) -> list[str]:
    """``names`` (IP addresses and DNS names) as openssl's subjectAltName entries, in
    order, without duplicates.

    Raises:
        ValueError: a name that is neither an IP address nor a DNS name.
    """
    out: list[str] = []
    for name in names:
        try:
            entry = f"IP:{ipaddress.ip_address(name)}"
        except ValueError:
            if not _NAME.match(name):
                raise ValueError(f"{name!r} is neither an IP address nor a host name") from None
            entry = f"DNS:{name}"
        if entry not in out:
            out.append(entry)
    if not out:
        raise ValueError("a certificate needs at least one name or address")
    return out


def self_signed(names: Sequence[str], days: int = DAYS,
                openssl: str | None = None) -> tuple[bytes, bytes]:
    """A new self-signed certificate for ``names`` (the first is its common name) and its
    private key, both PEM: ``(certificate, key)``.

    Raises:
        ValueError: a bad name (see :func:`subject_alt_names`).
        CertificateError: openssl is missing or failed.
    """
    san = ",".join(subject_alt_names(names))
    exe = openssl or shutil.which("openssl")
    if exe is None:
        raise CertificateError("openssl not found: install it (sudo apt-get install openssl) "
                               "or put a certificate and key where [plotter] names them")
    with tempfile.TemporaryDirectory(prefix="qss-cert-") as tmp:
        key, crt = Path(tmp, "key.pem"), Path(tmp, "crt.pem")
        argv = [exe, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", str(key), "-out", str(crt), "-days", str(days),
                "-subj", f"/CN={names[0]}/O=MicroPMU Quickstart Server (self-signed)",
                "-addext", f"subjectAltName={san}",
                "-addext", "basicConstraints=critical,CA:FALSE",
                "-addext", "keyUsage=critical,digitalSignature",
                "-addext", "extendedKeyUsage=serverAuth"]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                                  env={**os.environ, "OPENSSL_CONF": "/dev/null"})
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CertificateError(f"openssl failed: {exc}") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise CertificateError(f"openssl failed (exit status {done.returncode}): {last}")
        return crt.read_bytes(), key.read_bytes()


def write_self_signed(certificate: Path, key: Path, names: Sequence[str],
                      days: int = DAYS) -> bool:
    """Make a self-signed certificate for ``names`` at ``certificate`` with its key at
    ``key`` (mode 0600; the certificate 0644) when neither file exists; True when made,
    False when both exist (never overwritten).

    Raises:
        CertificateError: only one of the two exists (a pair that would not match), or the
            files cannot be made or written.
        ValueError: a bad name.
    """
    have = [p for p in (certificate, key) if p.exists()]
    if len(have) == 2:
        return False
    if have:
        missing = key if have[0] == certificate else certificate
        raise CertificateError(f"{have[0]} exists but {missing} does not: put the matching "
                               f"file there, or move {have[0]} away to have a self-signed "
                               f"pair made")
    crt_pem, key_pem = self_signed(names, days)
    try:
        atomic_write(key, key_pem, 0o600)
        atomic_write(certificate, crt_pem, 0o644)
    except OSError as exc:
        raise CertificateError(f"cannot write the certificate: {exc.strerror or exc}") from None
    return True


def server_names(root: Path, listen_host: str, fallback_address: str) -> list[str]:
    """The names and addresses browsers reach the server under ``root`` by, for its
    certificate: ``listen_host`` when it is one address (not every address, 0.0.0.0 or
    ::); else the static addresses of ``etc/network/interfaces`` (written by ``qss-get
    --config nic``), or ``fallback_address`` when it has none; then the host name of
    ``etc/hostname``, when there is one."""
    names: list[str] = []
    if listen_host not in ("0.0.0.0", "::", "[::]", ""):
        names.append(listen_host.strip("[]"))
    else:
        try:
            text = (root / "etc/network/interfaces").read_text(errors="replace")
        except OSError:
            text = ""
        for m in re.finditer(r"^\s*address\s+([0-9a-fA-F.:]+)(?:/\d+)?\s*$", text, re.M):
            try:
                names.append(str(ipaddress.ip_address(m.group(1))))
            except ValueError:
                continue
        if not names:
            names.append(fallback_address)
    try:
        host = (root / "etc/hostname").read_text(errors="replace").strip()
    except OSError:
        host = ""
    if host and _NAME.match(host):
        names.append(host)
    return list(dict.fromkeys(names))
