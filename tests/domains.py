"""A uPMU list with one uPMU per domain, for the plotter's access tests (manual ch. 10)."""
from __future__ import annotations

from pathlib import Path

from qss.upmuconfig import UpmuList


def upmuconfig_in_domains(cfg: Path, domains) -> Path:
    """Write ``cfg``: uPMU1..N (serials P3001271..., addresses 10.0.0.1...), the i-th
    with its streams' Paths under ``/<domains[i]>/uPMUi/``."""
    upmus = UpmuList.load(str(cfg))
    for i, _ in enumerate(domains, 1):
        upmus.add(f"10.0.0.{i}", f"P300127{i}", f"uPMU{i}")
    upmus.save(str(cfg))
    text = cfg.read_text()
    for i, domain in enumerate(domains, 1):
        text = text.replace(f"Path = /upmu/uPMU{i}/", f"Path = /{domain}/uPMU{i}/")
    cfg.write_text(text)
    return cfg
