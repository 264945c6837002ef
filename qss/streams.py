"""The uPMU's streams: names, order and units (architecture §4).

Every part of the suite names streams through this module so that the order a `.dat`
file yields, the subsections of `upmuconfig.ini` and the BTrDB stream names agree.
"""
from __future__ import annotations

#: The 13 streams of a base record, in file order.
BASE_STREAMS: tuple[str, ...] = (
    "L1MAG", "L1ANG", "L2MAG", "L2ANG", "L3MAG", "L3ANG",
    "C1MAG", "C1ANG", "C2MAG", "C2ANG", "C3MAG", "C3ANG",
    "LSTATE",
)

#: The six streams an extended record adds.
EXTENDED_ONLY_STREAMS: tuple[str, ...] = (
    "FUND_W", "FUND_VAR", "FUND_VA", "FUND_DPF", "FREQ_L1_1S", "FREQ_L1_C37",
)

#: All 19 streams of an extended record, in file order.
EXTENDED_STREAMS: tuple[str, ...] = BASE_STREAMS + EXTENDED_ONLY_STREAMS

#: Unit of measure per stream, as written to `UnitofMeasure` and the BTrDB `unit` tag.
UNITS: dict[str, str] = {
    **{f"L{i}MAG": "V" for i in (1, 2, 3)},
    **{f"C{i}MAG": "A" for i in (1, 2, 3)},
    **{f"{c}{i}ANG": "deg" for c in "LC" for i in (1, 2, 3)},
    "LSTATE": "bitmap",
    "FUND_W": "W",
    "FUND_VAR": "var",
    "FUND_VA": "VA",
    "FUND_DPF": "none",
    "FREQ_L1_1S": "Hz",
    "FREQ_L1_C37": "Hz",
}

#: The six phasor channels of a record, in file order.
CHANNELS: tuple[str, ...] = ("L1", "L2", "L3", "C1", "C2", "C3")


def streams_for(extended: bool) -> tuple[str, ...]:
    """The stream names a uPMU in base (False) or extended (True) mode produces."""
    return EXTENDED_STREAMS if extended else BASE_STREAMS
