"""The repository's reference copies in ``systemd/`` and ``shorewall/``.

The templates in ``installer/templates/`` are the one source; these copies are what
``qss-get`` writes with the built-in settings (and interface ``eno1``, the manual's), kept
in the repository so reviewers and packagers can read the deployed files as they are. A
test fails when they drift; regenerate them with::

    .venv/bin/python -m installer.reference
"""
from __future__ import annotations

import sys
from pathlib import Path

from qss.settings import Settings

from .components import Layout, qss_files, shorewall_files

#: The manual's interface name (ch. 7, ch. 13).
REFERENCE_INTERFACE = "eno1"

# repository path -> path on the appliance
_COPIES = {
    "systemd/supervisor.service.d/qss.conf": "/etc/systemd/system/supervisor.service.d/qss.conf",
    "systemd/sysusers.d/qss.conf": "/etc/sysusers.d/qss.conf",
    "systemd/tmpfiles.d/qss.conf": "/etc/tmpfiles.d/qss.conf",
    "shorewall/interfaces": "/etc/shorewall/interfaces",
    "shorewall/zones": "/etc/shorewall/zones",
    "shorewall/policy": "/etc/shorewall/policy",
    "shorewall/rules": "/etc/shorewall/rules",
}


def reference_copies() -> dict[str, str]:
    """Repository path -> the text qss-get writes there on a default appliance."""
    rendered = {spec.path: spec.text
                for spec in qss_files(Settings(), Layout()) + shorewall_files(REFERENCE_INTERFACE)}
    return {repo_path: rendered[path] for repo_path, path in _COPIES.items()}


def write_reference_copies(repo: Path) -> list[Path]:
    """(Re)write the reference copies under the repository root ``repo``."""
    written = []
    for repo_path, text in reference_copies().items():
        path = repo / repo_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write_reference_copies(Path(__file__).resolve().parent.parent):
        print(f"wrote {p}", file=sys.stdout)
