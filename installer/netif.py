"""Which network interface the server is on: the default route's, from /proc/net/route.

``/proc/net/route`` is the kernel's IPv4 routing table as text: a header line, then
one route per line with tab-separated hexadecimal fields (Iface, Destination, Gateway,
Flags, RefCnt, Use, Metric, Mask, ...). The default route has destination and mask 0;
with several, the kernel uses the lowest metric. Pure functions: callers read the file.
"""
from __future__ import annotations

import re

_RTF_UP = 0x1
# Linux interface names: at most 15 bytes (IFNAMSIZ - 1), no "/", no white space; the
# configuration files they go into (interfaces, shorewall) need no more than these.
_IFNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,14}\Z")


def default_route_interface(route_table: str) -> str | None:
    """The interface of the default route in ``route_table`` (the text of
    /proc/net/route), or None when there is no default route that is up."""
    best: tuple[int, str] | None = None
    for line in route_table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        iface, dest, flags, metric, mask = fields[0], fields[1], fields[3], fields[6], fields[7]
        try:
            is_default = int(dest, 16) == 0 and int(mask, 16) == 0
            up = int(flags, 16) & _RTF_UP
            rank = int(metric)
        except ValueError:
            continue
        if is_default and up and (best is None or rank < best[0]):
            best = (rank, iface)
    return best[1] if best else None


def check_interface_name(name: str) -> str:
    """``name`` if it can be a Linux network interface name.

    Raises:
        ValueError: why it cannot, e.g. ``'eth 0' is not an interface name``.
    """
    if not _IFNAME.match(name):
        raise ValueError(f"{name!r} is not a network interface name (up to 15 letters, "
                         f"digits and . _ : @ -, e.g. eno1)")
    return name
