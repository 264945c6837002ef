"""``YEAR [MONTH] [DAY] [HOUR]``: the periods exportdat and delbackup act on (pure).

A period is half-open, ``[start, end)``, in UTC, and selects files by the time in their
names (``<SERIAL>_<YYYY-MM-DD-HH-MM-SS>.dat``), as :func:`qss.queue.in_period` does:
the uPMU names its files by the UTC second of their first record. ``all`` instead of a
year means every file of the uPMU, including any whose name carries no time.
"""
from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["PERIOD_USAGE", "Period", "parse_period"]

PERIOD_USAGE = "YEAR [MONTH] [DAY] [HOUR]"
_UTC = dt.timezone.utc


@dataclass(frozen=True)
class Period:
    """``[start, end)`` in UTC; both None for ``all``. ``label`` is for messages."""

    start: dt.datetime | None
    end: dt.datetime | None
    label: str

    @property
    def everything(self) -> bool:
        """True for ``all``."""
        return self.start is None and self.end is None


def _int(word: str, what: str, low: int, high: int) -> int:
    if not word.isdigit() or not low <= int(word) <= high:
        raise ValueError(f"{what} must be a number from {low} to {high}, not {word!r}")
    return int(word)


def parse_period(words: Sequence[str]) -> Period:
    """The period of ``YEAR [MONTH] [DAY] [HOUR]`` (or ``all``).

    Raises:
        ValueError: a word out of range; the message names it and the legal values.
    """
    if not words:
        raise ValueError(f"missing YEAR (or all); a period is {PERIOD_USAGE}")
    if words[0].lower() == "all":
        if len(words) > 1:
            raise ValueError(f"nothing may follow all, not {words[1]!r}")
        return Period(None, None, "all time")
    if len(words) > 4:
        raise ValueError(f"unexpected {words[4]!r}; a period is {PERIOD_USAGE}")
    year = _int(words[0], "YEAR", 1970, 2999)
    if len(words) == 1:
        start = dt.datetime(year, 1, 1, tzinfo=_UTC)
        return Period(start, start.replace(year=year + 1), f"{year}")
    month = _int(words[1], "MONTH", 1, 12)
    start = dt.datetime(year, month, 1, tzinfo=_UTC)
    if len(words) == 2:
        end = (start.replace(year=year + 1, month=1) if month == 12
               else start.replace(month=month + 1))
        return Period(start, end, f"{year}-{month:02d}")
    days = calendar.monthrange(year, month)[1]
    day = _int(words[2], f"DAY of {year}-{month:02d}", 1, days)
    start = start.replace(day=day)
    if len(words) == 3:
        return Period(start, start + dt.timedelta(days=1), f"{year}-{month:02d}-{day:02d}")
    hour = _int(words[3], "HOUR", 0, 23)
    start = start.replace(hour=hour)
    end = start + dt.timedelta(hours=1)
    return Period(start, end, f"{year}-{month:02d}-{day:02d} {hour:02d}:00 to "
                              f"{end:%H}:00")
