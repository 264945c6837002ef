"""The uPMU push protocol (architecture §3) as a sans-IO state machine: bytes in, events out.

How this works
--------------
A uPMU pushes files over TCP, many per connection, strictly one after another::

    offset 0   send_id      uint32 LE, counts from 1, never 0
           4   path_len     uint32 LE, length of the file path on the device
           8   serial_len   uint32 LE, length of the serial number
          12   data_len     uint32 LE, length of the file contents
          16   path         path_len bytes, zero-padded to a multiple of 4
           ..  serial       serial_len bytes, zero-padded to a multiple of 4
           ..  data         data_len bytes

and waits for 4 bytes: its send_id on success (:func:`encode_reply`) or four zero bytes on
failure (:data:`FAILURE_REPLY`). It deletes the file only when the reply equals its send_id.

:class:`Connection` does no I/O and reads no clock (the h11 style). The caller feeds it
whatever arrived with :meth:`Connection.receive_data` (``b""`` means EOF) and calls
:meth:`Connection.next_event` until it returns :data:`NEED_DATA`. A message comes out in
pieces, so that no file is ever held whole by the protocol: a :class:`FileHeader` as soon
as the header, path and serial are in (the caller can refuse the file there, before any
of its data arrive), then a :class:`FileData` per received chunk of contents, then
:class:`EndOfMessage`. :class:`ConnectionClosed` is EOF between messages and
:class:`ProtocolError` anything else; the last two are terminal. On a protocol error the
caller logs the reason and closes the connection without a reply, as the original server
did; the device reconnects and resends. Any fragmentation works, from one byte per call
to several messages per chunk: bytes after a message belong to the next one (the
original Go receiver dropped them).

The header's lengths are checked against the limits before anything is allocated. The
header, path and serial are copied into buffers of their (limited) size; contents are not
copied at all: each :class:`FileData` is a read-only view of the bytes the caller passed
in, so what the protocol holds is only what was received and not yet returned as events
(:attr:`Connection.buffered_bytes`).

The path and serial are untrusted: they are only decoded (strict UTF-8). The path may be
absolute, contain ``..``, NUL or anything else; the queue layer sanitises it before it
comes near a file system, and the service checks the serial against ``upmuconfig.ini``.
"""
from __future__ import annotations

import enum
import struct
from collections import deque
from dataclasses import dataclass

from qss.logtext import escape

__all__ = [
    "FAILURE_REPLY", "HEADER", "MAX_DATA_LEN", "MAX_PATH_LEN", "MAX_SERIAL_LEN", "NEED_DATA",
    "Connection", "ConnectionClosed", "EndOfMessage", "Event", "FileData", "FileHeader",
    "NeedData", "ProtocolError", "encode_message", "encode_reply",
]

#: The fixed 16-byte header: send_id, path_len, serial_len, data_len.
HEADER = struct.Struct("<IIII")
_REPLY = struct.Struct("<I")
_UINT32_MAX = 0xFFFF_FFFF

#: The reply to a message the server did not store; the device keeps the file and retries.
FAILURE_REPLY = b"\0\0\0\0"

# The original server's sanity limits (architecture §3). Real paths are under 100 bytes and
# serials are 8 ('P' and seven digits); the data limit equals 200 base files of 378,720 bytes.
# A header over a limit is garbage or hostile, so the connection is closed rather than
# answered: a failure reply would only make the device resend the same thing.
MAX_PATH_LEN = 512
MAX_SERIAL_LEN = 32
MAX_DATA_LEN = 75_744_000


def _padded(length: int) -> int:
    return (length + 3) & ~3


class NeedData(enum.Enum):
    """The type of :data:`NEED_DATA`."""

    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return "NEED_DATA"

    __str__ = __repr__


#: Returned by :meth:`Connection.next_event` when it needs more bytes to go on.
NEED_DATA = NeedData.NEED_DATA


@dataclass(frozen=True, slots=True)
class FileHeader:
    """A message's header, path and serial have arrived; ``data_len`` bytes of contents
    follow (as :class:`FileData` events, then :class:`EndOfMessage`)."""

    send_id: int
    path: str
    serial: str
    data_len: int


@dataclass(frozen=True, slots=True)
class FileData:
    """A piece of the current message's contents, never empty.

    ``data`` is a read-only view of bytes the caller passed to
    :meth:`Connection.receive_data` (no copy was made); it keeps that chunk alive.
    """

    data: memoryview

    def __repr__(self) -> str:
        return f"FileData(<{len(self.data)} bytes>)"


@dataclass(frozen=True, slots=True)
class EndOfMessage:
    """The current message's last byte has arrived; the device now waits for the reply."""


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """The peer broke the protocol; ``reason`` is one line for the log. Terminal.

    ``kind`` names the broken rule without the values (``"path too long"``,
    ``"closed mid-message"``, ...), for counting and rate-limiting log lines by reason.
    """

    reason: str
    kind: str


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed the connection cleanly, between messages. Terminal."""


Event = FileHeader | FileData | EndOfMessage | ProtocolError | ConnectionClosed


class _Part(enum.Enum):
    # Values name the part in messages ("got 3 of 8 padded path bytes").
    HEADER = "header"
    PATH = "padded path"
    SERIAL = "padded serial"
    DATA = "data"


class Connection:
    """The receiving side of one device connection.

    Limits are in bytes and default to the original server's (see :data:`MAX_PATH_LEN`,
    :data:`MAX_SERIAL_LEN`, :data:`MAX_DATA_LEN`); a header over one is a protocol error.

    Raises:
        ValueError: a limit is not between 1 and 2**32 - 1.
    """

    def __init__(self, *, max_path_len: int = MAX_PATH_LEN,
                 max_serial_len: int = MAX_SERIAL_LEN, max_data_len: int = MAX_DATA_LEN) -> None:
        for name, value in (("max_path_len", max_path_len), ("max_serial_len", max_serial_len),
                            ("max_data_len", max_data_len)):
            if not 1 <= value <= _UINT32_MAX:
                raise ValueError(f"{name} must be between 1 and {_UINT32_MAX}, not {value!r}")
        self._max_path_len = max_path_len
        self._max_serial_len = max_serial_len
        self._max_data_len = max_data_len
        # Unparsed input as the caller's chunks plus an offset into the first, so that
        # header bytes are copied once, straight into their part's buffer, and contents
        # are handed out as views of the chunks, whatever the chunking.
        self._chunks: deque[bytes] = deque()
        self._offset = 0
        self._buffered = 0
        self._eof = False
        self._terminal: ProtocolError | ConnectionClosed | None = None
        self._bytes_received = 0
        self._start_message()

    # -- public API ------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes received from the device; ``b""`` means the device closed (EOF).

        An empty slice passed by accident is EOF too. Objects other than ``bytes`` are
        copied, so the caller may reuse its buffer. Bytes arriving after a protocol error
        are discarded.

        Raises:
            RuntimeError: data after EOF (a bug in the caller).
        """
        if type(data) is not bytes:
            data = bytes(data)
        if not data:
            self._eof = True
            return
        if self._eof:
            raise RuntimeError("receive_data() called with data after EOF")
        self._bytes_received += len(data)
        if self._terminal is not None:
            return
        self._chunks.append(data)
        self._buffered += len(data)

    def next_event(self) -> Event | NeedData:
        """Parse what has been received; return the next event or :data:`NEED_DATA`.

        Call it until it returns :data:`NEED_DATA` or a terminal event. Terminal events
        (:class:`ProtocolError`, :class:`ConnectionClosed`) are sticky: every later call
        returns the same object again, so the caller must stop on them, not loop.
        """
        if self._terminal is not None:
            return self._terminal
        while True:
            if self._part is _Part.DATA:
                return self._next_data()
            if self._got < self._need:
                if not self._buffered:
                    return self._on_eof() if self._eof else NEED_DATA
                copied = self._copy_into(self._target, self._got, self._need - self._got)
                self._got += copied
                self._message_consumed += copied
                continue
            event = self._complete_part()
            if event is not None:
                return event

    @property
    def in_message(self) -> bool:
        """True when part of a message has arrived and the rest has not (the stall timer runs)."""
        return self._terminal is None and (self._message_consumed > 0 or self._buffered > 0)

    @property
    def bytes_received(self) -> int:
        """All bytes received on this connection; compare two readings to detect progress."""
        return self._bytes_received

    @property
    def buffered_bytes(self) -> int:
        """Bytes received and not yet returned in events (what this object holds)."""
        return self._buffered

    @property
    def message_bytes_received(self) -> int:
        """Bytes received since the last message ended (or since the start)."""
        return self._message_consumed + self._buffered

    @property
    def progress(self) -> str:
        """Where parsing stands, for a log line: ``got 1000 of 378720 data bytes (...)``."""
        if self._terminal is not None:
            return "connection finished"
        if not self.in_message:
            return "between messages"
        return f"got {self._got} of {self._need} {self._part.value} bytes{self._context()}"

    # -- internals -------------------------------------------------------------------

    def _start_message(self) -> None:
        self._message_consumed = 0
        self._send_id: int | None = None
        self._path: str | None = None
        self._serial: str | None = None
        self._path_len = self._serial_len = self._data_len = 0
        self._begin(_Part.HEADER, HEADER.size, bytearray(HEADER.size))

    def _begin(self, part: _Part, need: int, target: bytearray) -> None:
        self._part = part
        self._need = need
        self._got = 0
        self._target = target

    def _next_data(self) -> FileData | EndOfMessage | ProtocolError | NeedData:
        wanted = self._need - self._got
        if not wanted:
            self._start_message()
            return EndOfMessage()
        if not self._buffered:
            return self._on_eof() if self._eof else NEED_DATA
        # A view of (part of) the first chunk: no copy, whatever the chunking.
        chunk = self._chunks[0]
        offset = self._offset
        take = min(len(chunk) - offset, wanted)
        view = memoryview(chunk)
        if offset or take < len(chunk):
            view = view[offset:offset + take]
        if offset + take == len(chunk):
            self._chunks.popleft()
            self._offset = 0
        else:
            self._offset = offset + take
        self._buffered -= take
        self._got += take
        self._message_consumed += take
        return FileData(view)

    def _copy_into(self, target: bytearray, pos: int, wanted: int) -> int:
        copied = 0
        chunks = self._chunks
        while copied < wanted and chunks:
            chunk = chunks[0]
            available = len(chunk) - self._offset
            take = min(available, wanted - copied)
            target[pos:pos + take] = memoryview(chunk)[self._offset:self._offset + take]
            copied += take
            pos += take
            if take == available:
                chunks.popleft()
                self._offset = 0
            else:
                self._offset += take
        self._buffered -= copied
        return copied

    def _complete_part(self) -> Event | None:
        part = self._part
        if part is _Part.HEADER:
            return self._parse_header()
        if part is _Part.PATH:
            path = self._decode("path", self._path_len)
            if isinstance(path, ProtocolError):
                return self._finish(path)
            self._path = path
            padded = _padded(self._serial_len)
            self._begin(_Part.SERIAL, padded, bytearray(padded))
            return None
        assert part is _Part.SERIAL
        serial = self._decode("serial", self._serial_len)
        if isinstance(serial, ProtocolError):
            return self._finish(serial)
        self._serial = serial
        assert self._send_id is not None and self._path is not None
        self._begin(_Part.DATA, self._data_len, _NO_TARGET)
        return FileHeader(self._send_id, self._path, serial, self._data_len)

    def _parse_header(self) -> Event | None:
        send_id, path_len, serial_len, data_len = HEADER.unpack(self._target)
        if send_id == 0:
            # The device counts from 1; a 0 would be indistinguishable from FAILURE_REPLY.
            kind, problem = "send_id 0", "send_id is 0"
        elif path_len == 0:
            kind, problem = "empty path", "path length is 0"
        elif path_len > self._max_path_len:
            kind = "path too long"
            problem = f"path length {path_len} is over the limit of {self._max_path_len} bytes"
        elif serial_len == 0:
            kind, problem = "empty serial", "serial length is 0"
        elif serial_len > self._max_serial_len:
            kind = "serial too long"
            problem = (f"serial length {serial_len} is over the limit of "
                       f"{self._max_serial_len} bytes")
        elif data_len > self._max_data_len:
            kind = "data too long"
            problem = f"data length {data_len} is over the limit of {self._max_data_len} bytes"
        else:
            self._send_id, self._path_len = send_id, path_len
            self._serial_len, self._data_len = serial_len, data_len
            self._begin(_Part.PATH, _padded(path_len), bytearray(_padded(path_len)))
            return None
        return self._finish(ProtocolError(
            f"refused header: {problem} (send_id {send_id}, path_len {path_len}, "
            f"serial_len {serial_len}, data_len {data_len})", kind))

    def _decode(self, what: str, length: int) -> str | ProtocolError:
        # Padding bytes are ignored, not checked: the device's sender.c (in the original
        # SoftwareDefinedBuildings/uPMU-daemon, with receiver/receiver.go) builds the message
        # in an uninitialised stack buffer and strcpy()s the path and serial into it, so
        # only the first padding byte is reliably 0. The original Go receiver ignored them
        # too, and refusing them would strand files on the device for ever.
        raw = bytes(self._target[:length])
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return ProtocolError(f"{what} is not valid UTF-8 ({exc.reason} at byte {exc.start}):"
                                 f" {raw!r}{self._context()}", f"{what} not UTF-8")

    def _context(self) -> str:
        if self._send_id is None:
            return ""
        if self._path is None:
            return f" (send_id {self._send_id})"
        return f" (send_id {self._send_id}, path '{escape(self._path)}')"

    def _on_eof(self) -> ProtocolError | ConnectionClosed:
        if self._part is _Part.HEADER and self._got == 0:
            return self._finish(ConnectionClosed())
        return self._finish(ProtocolError(f"connection closed mid-message: {self.progress}",
                                          "closed mid-message"))

    def _finish(self, event: ProtocolError | ConnectionClosed) -> ProtocolError | ConnectionClosed:
        self._terminal = event
        self._message_consumed = 0
        # Free any buffered input now, not when the caller drops the connection object.
        self._chunks.clear()
        self._buffered = 0
        self._target = _NO_TARGET
        return event


_NO_TARGET = bytearray()


def encode_reply(send_id: int) -> bytes:
    """The 4-byte success reply to the message ``send_id``.

    Raises:
        ValueError: send_id is not between 1 and 2**32 - 1 (a failure is :data:`FAILURE_REPLY`).
    """
    if not 1 <= send_id <= _UINT32_MAX:
        raise ValueError(f"send_id must be between 1 and {_UINT32_MAX}, not {send_id!r}")
    return _REPLY.pack(send_id)


def encode_message(send_id: int, path: str, serial: str,
                   data: bytes | bytearray | memoryview) -> bytes:
    """One message as the device sends it (for the uPMU simulator and tests).

    The receiver's size limits are not applied here, so oversized messages can be built
    to test them.

    Raises:
        ValueError: send_id is not between 1 and 2**32 - 1, path or serial is empty, or a
            length does not fit in 32 bits.
    """
    if not 1 <= send_id <= _UINT32_MAX:
        raise ValueError(f"send_id must be between 1 and {_UINT32_MAX}, not {send_id!r}")
    raw_path = path.encode("utf-8")
    raw_serial = serial.encode("utf-8")
    data_len = memoryview(data).nbytes
    if not raw_path or not raw_serial:
        raise ValueError(f"path and serial must not be empty: {path!r}, {serial!r}")
    if max(len(raw_path), len(raw_serial), data_len) > _UINT32_MAX:
        raise ValueError("path, serial and data must each be shorter than 4 GiB")
    return b"".join((
        HEADER.pack(send_id, len(raw_path), len(raw_serial), data_len),
        raw_path, bytes(_padded(len(raw_path)) - len(raw_path)),
        raw_serial, bytes(_padded(len(raw_serial)) - len(raw_serial)),
        data,
    ))
