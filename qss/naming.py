"""How a uPMU names and files its `.dat` files (architecture §3).

A device writes ``upmu_data/<YYYY>/Month_<MM>/Day_<DD>/Hour_<HH>/<SERIAL>_<YYYY-MM-DD-HH-MM-SS>.dat``
and pushes it under its device path, ``/root/upmu_data/...``. Name order is time order.
"""
from __future__ import annotations

import datetime as dt
import re

#: Where a device keeps its files; pushed paths start with it.
DEVICE_ROOT = "/root/upmu_data"

_NAME = re.compile(r"^(?P<serial>[A-Za-z0-9]+)_(?P<stamp>\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})\.dat$")
_PSL_SERIAL = re.compile(r"^P\d{7}$")


def looks_like_psl_serial(serial: str) -> bool:
    """True for serials of the PSL form, ``P`` and seven digits (e.g. ``P3001276``)."""
    return bool(_PSL_SERIAL.match(serial))


def normal_serial(serial: str) -> str:
    """A PSL serial as devices write it (``p3001276`` is ``P3001276``); any other serial
    as given."""
    upper = serial.upper()
    return upper if upper != serial and looks_like_psl_serial(upper) else serial


def dat_filename(serial: str, start: dt.datetime) -> str:
    """``<SERIAL>_<YYYY-MM-DD-HH-MM-SS>.dat`` for a file starting at ``start`` (UTC)."""
    return f"{serial}_{start:%Y-%m-%d-%H-%M-%S}.dat"


def relative_path(serial: str, start: dt.datetime) -> str:
    """The file's path below ``upmu_data/``: ``YYYY/Month_MM/Day_DD/Hour_HH/<name>``."""
    return (f"{start:%Y}/Month_{start:%m}/Day_{start:%d}/Hour_{start:%H}/"
            f"{dat_filename(serial, start)}")


def device_path(serial: str, start: dt.datetime) -> str:
    """The path a device pushes a file under, e.g. ``/root/upmu_data/2015/Month_12/...``."""
    return f"{DEVICE_ROOT}/{relative_path(serial, start)}"


def parse_dat_filename(name: str) -> tuple[str, dt.datetime] | None:
    """(serial, start time in UTC) from a device file name, or None if it is not one."""
    m = _NAME.match(name)
    if not m:
        return None
    try:
        start = dt.datetime.strptime(m["stamp"], "%Y-%m-%d-%H-%M-%S")
    except ValueError:
        return None
    return m["serial"], start.replace(tzinfo=dt.timezone.utc)
