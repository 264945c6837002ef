"""Which instances to run: the built-ins for every uPMU of ``upmuconfig.ini``, angle
differences between named pairs of uPMUs, and the operator's own distillates.

Instances of a uPMU are named ``<distillate>/<serial>`` (a serial never changes; a
renamed uPMU keeps its instances and their outputs move to the new collection), and
their outputs go to ``<the uPMU's collection>/distil/<distillate>``, e.g.
``upmu/uPMU1/distil/frequency/FREQ_L1``, so whatever covers a uPMU's streams (the
plotter's tree, its access control) covers them too.
"""
from __future__ import annotations

from collections.abc import Iterable

from qss.upmuconfig import Upmu

from .builtins import BUILTINS, AngleDifference
from .distillate import Distillate, Input, Instance


def _input(upmu: Upmu, stream: str) -> Input | None:
    info = upmu.streams.get(stream)
    return None if info is None else Input(info.path.strip("/"), info.uuid)


def upmu_instance(upmu: Upmu, distillate: Distillate) -> Instance | None:
    """The instance of a per-uPMU distillate (its inputs are the uPMU's stream names),
    or None when the uPMU lacks one of them."""
    inputs = {role: _input(upmu, role) for role in distillate.inputs}
    if any(i is None for i in inputs.values()):
        return None
    base = upmu.collection(distillate.inputs[0])
    return Instance(f"{distillate.name}/{upmu.serial}", distillate, inputs,
                    f"{base}/distil/{distillate.name}",
                    {"distil/upmu": upmu.serial})


def builtin_instances(upmus: Iterable[Upmu], names: Iterable[str]) -> list[Instance]:
    """The named built-ins for every uPMU.

    Raises:
        ValueError: an unknown built-in name.
    """
    names = list(names)
    unknown = [n for n in names if n not in BUILTINS or n == AngleDifference.name]
    if unknown:
        raise ValueError(f"unknown built-in distillate {unknown[0]!r} (known: "
                         f"{', '.join(n for n in BUILTINS if n != AngleDifference.name)})")
    out = []
    for upmu in upmus:
        for name in names:
            inst = upmu_instance(upmu, BUILTINS[name]())
            if inst is not None:
                out.append(inst)
    return out


def find_upmu(upmus: Iterable[Upmu], key: str) -> Upmu | None:
    """The uPMU whose alias or serial is ``key`` (ignoring case)."""
    key = key.casefold()
    for u in upmus:
        if key in (u.alias.casefold(), u.serial.casefold()):
            return u
    return None


def angle_difference_instances(upmus: Iterable[Upmu], pairs: Iterable[tuple[str, str]],
                               phases: Iterable[str] = ("L1ANG",)) -> tuple[
                                   list[Instance], list[str]]:
    """Angle differences ``A - B`` between pairs of uPMUs named by alias or serial;
    returns the instances and one problem line per pair that cannot be made."""
    upmus = list(upmus)
    out, problems = [], []
    for a_key, b_key in pairs:
        a, b = find_upmu(upmus, a_key), find_upmu(upmus, b_key)
        if a is None or b is None:
            problems.append(f"angle difference {a_key}-{b_key}: no uPMU "
                            f"{(a_key if a is None else b_key)!r} in upmuconfig.ini")
            continue
        for phase in phases:
            ia, ib = _input(a, phase), _input(b, phase)
            if ia is None or ib is None:
                problems.append(f"angle difference {a_key}-{b_key}: no {phase} stream")
                continue
            out.append(Instance(
                f"angle-difference/{a.serial}-{b.serial}/{phase}", AngleDifference(),
                {"A": ia, "B": ib},
                f"{a.collection(phase)}/distil/angle-difference/{b.alias or b.serial}/{phase}"))
    return out, problems
