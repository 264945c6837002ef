"""The one request read from protobuf's wire format by hand: ``ArrowInsertParams``.

Decoding it with the generated class copies its megabytes of Arrow payload twice (into
the message, then into a ``bytes`` on ``request.arrowBytes``): 0.2-0.9 ms for sync2q's
2.8 MB calls, 3 % of the server's CPU in an import (perf). Here the payload is a view
into the request where that keeps the Arrow columns 8-byte aligned (the compiled kernels
want aligned arrays), as it does for the official client's requests under 2 MiB (uuid,
merge policy, then the payload at offset 24 of a 16-byte aligned ``bytes``); elsewhere
(from 2 MiB on, its length takes 4 bytes and it starts at offset 25: sync2q's and
distil's 172,800-point calls) it is copied once, into a numpy buffer of its own: numpy
copies without holding the GIL (``bytes()`` held it: a fifth of the samples that found
the GIL held during a stream of such inserts, py-spy). Sans-IO.

Wire format (protobuf encoding): a sequence of (tag varint = field << 3 | wire type,
value); wire type 0 varint, 1 fixed 8 bytes, 2 varint length + bytes, 5 fixed 4 bytes.
For a field given twice, the last value counts (proto3 scalars and bytes).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .errors import WrongArgs

#: ``ArrowInsertParams`` field numbers (btrdb.proto): uuid, sync, merge_policy,
#: rounding (unused, as by the generated decoder's users), arrowBytes.
_UUID, _SYNC, _MERGE, _ARROW = 1, 2, 3, 5


@dataclasses.dataclass
class ArrowInsertRequest:
    """The fields of an ``ArrowInsertParams`` the server uses (same names)."""

    uuid: bytes = b""
    sync: bool = False
    merge_policy: int = 0
    arrowBytes: bytes | memoryview = b""


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise WrongArgs("malformed ArrowInsert request (varint)")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def parse_arrow_insert(raw: bytes) -> ArrowInsertRequest:
    """The request's fields from its serialized bytes; unknown fields are skipped.

    Raises WrongArgs for bytes that are not a well-formed message."""
    data = memoryview(raw)
    req = ArrowInsertRequest()
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        field, kind = tag >> 3, tag & 7
        if kind == 0:
            value, pos = _varint(data, pos)
            if field == _SYNC:
                req.sync = value != 0
            elif field == _MERGE:
                req.merge_policy = value if value < 1 << 31 else value - (1 << 64)
        elif kind == 2:
            size, pos = _varint(data, pos)
            end = pos + size
            if end > len(data):
                raise WrongArgs("malformed ArrowInsert request (length)")
            if field == _UUID:
                req.uuid = bytes(data[pos:end])
            elif field == _ARROW:
                req.arrowBytes = data[pos:end] if _aligned(raw, pos) else \
                    memoryview(np.frombuffer(data[pos:end], np.uint8).copy())  # aligned
            pos = end
        elif kind == 1:
            pos += 8
        elif kind == 5:
            pos += 4
        else:
            raise WrongArgs(f"malformed ArrowInsert request (wire type {kind})")
        if field == 0 or pos > len(data):
            raise WrongArgs("malformed ArrowInsert request")
    return req


def _aligned(raw: bytes, pos: int) -> bool:
    """Whether byte ``pos`` of ``raw`` lies at an address that is a multiple of 8."""
    return (np.frombuffer(raw, np.uint8, 0).ctypes.data + pos) % 8 == 0
