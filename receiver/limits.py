"""What hostile senders may cost the receiver beyond memory: read time and disk.

No asyncio and no sockets here (the service keeps the clock and pauses connections).

- :class:`BulkRate`: one budget of bytes a second shared by every connection sending
  *bulk*: the contents of a refused file (thrown away as they arrive) and of a file too
  long for one piece (written to the queue as it arrives). uPMUs' own files fit in one
  piece and are never counted, so a flood of bulk cannot starve them of the event loop,
  the queue's lock or the disk: past the budget a bulk connection stops reading for as
  long as its share takes, and the senders wait in line (the later sender waits longer).
- :class:`UploadLimits`: how many files a serial may have arriving in pieces at once, and
  how many bytes (announced) all such files of a serial and of all serials may take on
  disk before they are committed. A known serial is no proof of a device: without these,
  one host knowing a serial could fill the disk with uploads it never finishes.
"""
from __future__ import annotations

from qss.protocol import MAX_DATA_LEN

__all__ = ["BulkRate", "UploadLimits"]

#: Bytes a second of bulk, all connections together. A file of the protocol's largest
#: size then takes 1.2 s; a flood of 100 senders gets 0.64 MB/s each.
BULK_RATE = 64 << 20
#: Bulk taken at once before any connection waits (an occasional long file never does).
BULK_BURST = 8 << 20

UPLOADS_PER_SERIAL = 2
#: One file of the largest size the protocol allows, with room for smaller ones.
UPLOAD_BYTES_PER_SERIAL = 2 * MAX_DATA_LEN
UPLOAD_BYTES = 1 << 30


class BulkRate:
    """A shared budget of ``rate`` bytes a second, ``burst`` bytes of which can be taken
    at once (the generic cell rate algorithm: the budget is the time when it is free
    again, so every charge queues behind the ones before it)."""

    def __init__(self, rate: float = BULK_RATE, burst: float = BULK_BURST) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be more than 0, not {rate}")
        self.rate = rate
        self.burst = burst
        self._free_at = float("-inf")

    def charge(self, nbytes: int, now: float) -> float:
        """Count ``nbytes`` received at ``now`` (seconds); return how long the connection
        must wait before reading more (0: go on)."""
        start = max(self._free_at, now - self.burst / self.rate)
        self._free_at = start + nbytes / self.rate
        return max(0.0, self._free_at - now)


class UploadLimits:
    """Files arriving in pieces, counted per serial from admission to commit or abort."""

    def __init__(self, per_serial: int = UPLOADS_PER_SERIAL,
                 bytes_per_serial: int = UPLOAD_BYTES_PER_SERIAL,
                 total_bytes: int = UPLOAD_BYTES) -> None:
        self.per_serial = per_serial
        self.bytes_per_serial = bytes_per_serial
        self.total_bytes = total_bytes
        self._serials: dict[str, list[int]] = {}   # serial -> [files, bytes]
        self.total = 0

    def reserve(self, serial: str, size: int) -> str | None:
        """Count a file of ``size`` bytes for ``serial``; or return why not (nothing is
        counted then)."""
        files, reserved = self._serials.get(serial, (0, 0))
        if files >= self.per_serial:
            return (f"{files} files of this uPMU are already arriving in pieces, the most "
                    f"allowed at once")
        if reserved + size > self.bytes_per_serial:
            return (f"its files arriving in pieces would take {reserved + size} bytes, more "
                    f"than the {self.bytes_per_serial} allowed per uPMU")
        if self.total + size > self.total_bytes:
            return (f"files arriving in pieces would take {self.total + size} bytes, more "
                    f"than the {self.total_bytes} allowed in all")
        self._serials[serial] = [files + 1, reserved + size]
        self.total += size
        return None

    def release(self, serial: str, size: int) -> None:
        """Forget a file counted by :meth:`reserve` (committed or aborted)."""
        entry = self._serials[serial]
        entry[0] -= 1
        entry[1] -= size
        self.total -= size
        if not entry[0]:
            del self._serials[serial]

    def held(self, serial: str) -> tuple[int, int]:
        """(files, bytes) counted for ``serial``."""
        files, reserved = self._serials.get(serial, (0, 0))
        return files, reserved
