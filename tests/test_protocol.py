"""The uPMU push protocol state machine (qss.protocol, architecture §3).

Frames are built by `frame()` below, independently of the production encoder, which is
only checked against it.
"""
from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qss.protocol import (
    FAILURE_REPLY, MAX_DATA_LEN, MAX_PATH_LEN, MAX_SERIAL_LEN, NEED_DATA, Connection,
    ConnectionClosed, EndOfMessage, FileData, FileHeader, ProtocolError, encode_message,
    encode_reply,
)

PATH = b"/root/upmu_data/2015/Month_12/Day_18/Hour_08/P3001276_2015-12-18-08-14-57.dat"
SERIAL = b"P3001276"


def u32(value: int) -> bytes:
    return value.to_bytes(4, "little")


def frame(send_id: int, path: bytes = PATH, serial: bytes = SERIAL, data: bytes = b"",
          *, pad: int = 0, path_len: int | None = None, serial_len: int | None = None,
          data_len: int | None = None) -> bytes:
    """One message on the wire; the *_len overrides declare lengths that lie."""
    def padded(raw: bytes) -> bytes:
        return raw + bytes([pad]) * (-len(raw) % 4)
    return (u32(send_id) + u32(len(path) if path_len is None else path_len)
            + u32(len(serial) if serial_len is None else serial_len)
            + u32(len(data) if data_len is None else data_len)
            + padded(path) + padded(serial) + data)


@dataclass(frozen=True)
class Message:
    """A whole message, assembled from its FileHeader, FileData and EndOfMessage events."""

    send_id: int
    path: str
    serial: str
    data: bytes


def expected(send_id: int, path: bytes = PATH, serial: bytes = SERIAL,
             data: bytes = b"") -> Message:
    return Message(send_id, path.decode(), serial.decode(), data)


def drain(conn: Connection, partial: list | None = None) -> list:
    """Events until NEED_DATA or a terminal one, each message assembled into a Message.
    ``partial`` carries a message that is still arriving from one call to the next."""
    partial = [] if partial is None else partial
    events = []
    while (event := conn.next_event()) is not NEED_DATA:
        if isinstance(event, FileHeader):
            assert not partial, "a header inside a message"
            partial.append(event)
        elif isinstance(event, FileData):
            assert partial and len(event.data) > 0 and event.data.readonly
            partial.append(bytes(event.data))
        elif isinstance(event, EndOfMessage):
            header, *pieces = partial
            data = b"".join(pieces)
            assert len(data) == header.data_len
            events.append(Message(header.send_id, header.path, header.serial, data))
            partial.clear()
        else:
            events.append(event)
            if isinstance(event, (ProtocolError, ConnectionClosed)):
                break
    return events


def feed(chunks: Iterable[bytes], conn: Connection | None = None, *, eof: bool = False) -> list:
    conn = conn or Connection()
    events: list = []
    partial: list = []
    for chunk in chunks:
        if not chunk:
            continue  # b"" would mean EOF
        conn.receive_data(chunk)
        events += drain(conn, partial)
    if eof:
        conn.receive_data(b"")
        events += drain(conn, partial)
    return events


def whole(wire: bytes) -> list[bytes]:
    return [wire]


def bytewise(wire: bytes) -> list[bytes]:
    return [wire[i:i + 1] for i in range(len(wire))]


def in_threes(wire: bytes) -> list[bytes]:
    return [wire[i:i + 3] for i in range(0, len(wire), 3)]


SPLITTERS: list[Callable[[bytes], list[bytes]]] = [whole, bytewise, in_threes]


# -- field boundaries and padding ------------------------------------------------------

@pytest.mark.parametrize("split", SPLITTERS)
@pytest.mark.parametrize("path_len", [*range(1, 10), MAX_PATH_LEN - 1, MAX_PATH_LEN])
def test_every_path_length_and_padding(path_len: int, split) -> None:
    path = (b"/root/" + b"p" * path_len)[-path_len:]
    wire = frame(7, path, SERIAL, b"0123456789")
    assert feed(split(wire)) == [expected(7, path, SERIAL, b"0123456789")]


@pytest.mark.parametrize("split", SPLITTERS)
@pytest.mark.parametrize("serial_len", [*range(1, 10), MAX_SERIAL_LEN - 1, MAX_SERIAL_LEN])
def test_every_serial_length_and_padding(serial_len: int, split) -> None:
    serial = b"P3001276abcdefghijklmnopqrstuvwxyz"[:serial_len]
    wire = frame(8, PATH, serial, b"abc")
    assert feed(split(wire)) == [expected(8, PATH, serial, b"abc")]


def test_every_combination_of_path_and_serial_padding_byte_by_byte() -> None:
    for path_len in range(1, 9):
        for serial_len in range(1, 9):
            path, serial = b"/" * path_len, b"P" * serial_len
            for data in (b"", b"d", b"data5"):
                wire = frame(1, path, serial, data)
                assert feed(bytewise(wire)) == [expected(1, path, serial, data)]


@pytest.mark.parametrize("data_len", [0, 1, 2, 3, 4, 5, 1000])
def test_data_lengths_including_empty_file(data_len: int) -> None:
    data = bytes(range(256)) * 4
    wire = frame(3, data=data[:data_len])
    assert feed(whole(wire)) == feed(bytewise(wire)) == [expected(3, data=data[:data_len])]


def test_split_at_every_offset_of_two_messages() -> None:
    first, second = frame(1, b"/a/b.dat", b"P1", b"0123456789"), frame(2, b"x", b"P12345", b"")
    wire = first + second
    want = [expected(1, b"/a/b.dat", b"P1", b"0123456789"), expected(2, b"x", b"P12345", b"")]
    for cut in range(len(wire) + 1):
        assert feed([wire[:cut], wire[cut:]], eof=True) == [*want, ConnectionClosed()], cut


def test_nonzero_padding_is_ignored_and_nothing_else_is_stripped() -> None:
    path, serial = b"/root/a\x00b.dat ", b"P3 "  # spaces and NUL are kept: untrusted, not ours
    wire = frame(9, path, serial, b"x", pad=0xAA)
    assert wire.count(0xAA) == 3  # two after the path, one after the serial
    assert feed(bytewise(wire)) == [expected(9, path, serial, b"x")]


def test_utf8_path_is_decoded() -> None:
    path = "/root/données/é.dat".encode()
    assert feed([frame(1, path)]) == [expected(1, path)]


# -- several messages, trailing bytes, random splits ----------------------------------

@pytest.mark.parametrize("split", SPLITTERS)
def test_several_messages_on_one_connection(split) -> None:
    messages = [(1, PATH, SERIAL, bytes(100)), (2, b"/p2", SERIAL, b""),
                (3, b"/root/three.dat", b"P3001277", b"\xff" * 7)]
    wire = b"".join(frame(*m) for m in messages)
    assert feed(split(wire), eof=True) == [*(expected(*m) for m in messages), ConnectionClosed()]


def test_trailing_bytes_in_the_same_chunk_belong_to_the_next_message() -> None:
    conn = Connection()
    first, second = frame(1, data=b"one"), frame(2, data=b"two")
    conn.receive_data(first + second[:5])
    assert drain(conn) == [expected(1, data=b"one")]
    assert conn.in_message and conn.message_bytes_received == 5
    conn.receive_data(second[5:] + frame(3)[:1])
    assert drain(conn) == [expected(2, data=b"two")]
    assert conn.in_message


message_strategy = st.tuples(
    st.integers(1, 0xFFFF_FFFF),
    st.text(min_size=1, max_size=100).map(str.encode),  # at most 400 bytes: under the limit
    st.text(min_size=1, max_size=8).map(str.encode),
    st.binary(max_size=300),
)


@settings(deadline=None, max_examples=150)
@given(messages=st.lists(message_strategy, max_size=4), data=st.data())
def test_random_splits_give_the_same_events(messages, data) -> None:
    wire = b"".join(frame(*m) for m in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=12)))
    chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)])]
    assert feed(chunks, eof=True) == [*(expected(*m) for m in messages), ConnectionClosed()]


# -- limits, zero lengths, send_id 0 -------------------------------------------------

@pytest.mark.parametrize(("field", "value", "ok"), [
    ("path", MAX_PATH_LEN, True), ("path", MAX_PATH_LEN + 1, False),
    ("serial", MAX_SERIAL_LEN, True), ("serial", MAX_SERIAL_LEN + 1, False),
    ("data", 1000, True), ("data", 1001, False),
])
def test_each_limit_exactly_at_and_one_over(field: str, value: int, ok: bool) -> None:
    fields = {"path": PATH, "serial": SERIAL, "data": b""} | {field: b"z" * value}
    wire = frame(5, fields["path"], fields["serial"], fields["data"])
    conn = Connection(max_data_len=1000)
    if ok:
        assert feed(bytewise(wire), conn) == [expected(5, fields["path"], fields["serial"],
                                                        fields["data"])]
    else:  # refused on the header alone, before the rest arrives
        [error] = feed([wire[:16]], conn)
        assert error == ProtocolError(
            f"refused header: {field} length {value} is over the limit of {value - 1} bytes "
            f"(send_id 5, path_len {len(fields['path'])}, serial_len {len(fields['serial'])}, "
            f"data_len {len(fields['data'])})", f"{field} too long")


def test_limits_are_constructor_arguments() -> None:
    conn = Connection(max_path_len=4, max_serial_len=2, max_data_len=1)
    assert feed([frame(1, b"abcd", b"P1", b"x")], conn) == [expected(1, b"abcd", b"P1", b"x")]
    for bad in (0, -1, 2**32):
        with pytest.raises(ValueError, match="max_path_len"):
            Connection(max_path_len=bad)


@pytest.mark.parametrize(("header", "problem", "kind"), [
    (frame(0), "send_id is 0", "send_id 0"),
    (frame(1, b"", SERIAL), "path length is 0", "empty path"),
    (frame(1, PATH, b""), "serial length is 0", "empty serial"),
    (b"GET / HTTP/1.1\r\n", f"path length {int.from_bytes(b'/ HT', 'little')} is over the limit"
                            " of 512 bytes", "path too long"),
])
def test_bad_headers_are_protocol_errors(header: bytes, problem: str, kind: str) -> None:
    [error] = feed([header[:16]])
    assert isinstance(error, ProtocolError) and error.kind == kind
    assert error.reason.startswith(f"refused header: {problem} (send_id ")


def test_highest_send_id_is_accepted() -> None:
    assert feed([frame(0xFFFF_FFFF)]) == [expected(0xFFFF_FFFF)]


def test_largest_data_length_is_accepted_and_contents_are_never_copied_or_held() -> None:
    header_path_serial = frame(1, data_len=MAX_DATA_LEN)
    piece = b"\x01" * 65536
    tracemalloc.start()
    try:
        conn = Connection()
        conn.receive_data(header_path_serial)
        assert conn.next_event() == FileHeader(1, PATH.decode(), SERIAL.decode(), MAX_DATA_LEN)
        assert conn.next_event() is NEED_DATA
        # The whole file in 64 KiB pieces, each dropped once seen (as a refusal does).
        for _ in range(MAX_DATA_LEN // len(piece)):
            conn.receive_data(piece)
            event = conn.next_event()
            assert isinstance(event, FileData) and event.data.obj is piece   # a view, no copy
            assert conn.next_event() is NEED_DATA and conn.buffered_bytes == 0
        assert tracemalloc.get_traced_memory()[1] < 200_000
        conn.receive_data(b"")
        assert conn.next_event() == ProtocolError(
            f"connection closed mid-message: got {MAX_DATA_LEN // len(piece) * len(piece)} of "
            f"{MAX_DATA_LEN} data bytes (send_id 1, path {PATH.decode()!r})", "closed mid-message")
    finally:
        tracemalloc.stop()


def test_the_header_comes_out_before_any_contents_arrive() -> None:
    conn = Connection()
    conn.receive_data(frame(4, b"/x.dat", b"P3009999", b"abcdef")[:32])
    assert conn.next_event() == FileHeader(4, "/x.dat", "P3009999", 6)
    assert conn.next_event() is NEED_DATA
    assert conn.in_message and conn.progress == "got 0 of 6 data bytes (send_id 4, path '/x.dat')"


def test_contents_come_out_as_views_of_each_chunk_received() -> None:
    wire = frame(2, data=b"0123456789") + frame(3, data=b"ab")
    cut = len(wire) - len(frame(3, data=b"ab")) - 4   # 6 bytes of the first file in chunk one
    first, second = wire[:cut], wire[cut:]
    conn = Connection()
    conn.receive_data(first)
    assert isinstance(conn.next_event(), FileHeader)
    data = conn.next_event()
    assert data == FileData(memoryview(b"012345")) and data.data.obj is first
    assert conn.next_event() is NEED_DATA and conn.buffered_bytes == 0
    conn.receive_data(second)
    assert conn.buffered_bytes == len(second)
    rest = conn.next_event()
    assert bytes(rest.data) == b"6789" and rest.data.obj is second
    assert conn.next_event() == EndOfMessage()
    assert conn.buffered_bytes == len(second) - 4
    assert isinstance(conn.next_event(), FileHeader)
    assert bytes(conn.next_event().data) == b"ab"
    assert conn.next_event() == EndOfMessage() and conn.next_event() is NEED_DATA
    assert repr(data) == "FileData(<6 bytes>)"


def test_an_empty_file_is_a_header_then_its_end() -> None:
    conn = Connection()
    conn.receive_data(frame(9, data=b""))
    assert [conn.next_event() for _ in range(3)] == [
        FileHeader(9, PATH.decode(), SERIAL.decode(), 0), EndOfMessage(), NEED_DATA]


def test_one_over_the_data_limit_is_refused_before_allocating() -> None:
    tracemalloc.start()
    try:
        [error] = feed([frame(1, data_len=MAX_DATA_LEN + 1)])
        assert tracemalloc.get_traced_memory()[1] < 100_000
    finally:
        tracemalloc.stop()
    assert isinstance(error, ProtocolError) and "data length 75744001 is over" in error.reason


# -- EOF -------------------------------------------------------------------------------

def test_eof_before_any_message_is_a_clean_close() -> None:
    assert feed([], eof=True) == [ConnectionClosed()]


def test_eof_between_messages_is_a_clean_close() -> None:
    assert feed([frame(1), frame(2)], eof=True) == [expected(1), expected(2), ConnectionClosed()]


@pytest.mark.parametrize(("cut", "reason"), [
    (1, "got 1 of 16 header bytes"),
    (15, "got 15 of 16 header bytes"),
    (16, "got 0 of 8 padded path bytes (send_id 7)"),
    (19, "got 3 of 8 padded path bytes (send_id 7)"),
    (24, "got 0 of 8 padded serial bytes (send_id 7, path '/root/a')"),
    (31, "got 7 of 8 padded serial bytes (send_id 7, path '/root/a')"),
    (32, "got 0 of 378720 data bytes (send_id 7, path '/root/a')"),
    (1032, "got 1000 of 378720 data bytes (send_id 7, path '/root/a')"),
    (378751, "got 378719 of 378720 data bytes (send_id 7, path '/root/a')"),
])
def test_eof_mid_message_names_the_part_and_the_missing_bytes(cut: int, reason: str) -> None:
    wire = frame(1) + frame(7, b"/root/a", SERIAL, bytes(378720))
    events = feed([wire[:len(frame(1)) + cut]], eof=True)
    assert events == [expected(1), ProtocolError(f"connection closed mid-message: {reason}",
                                                 "closed mid-message")]


def test_eof_at_every_offset_inside_a_message_is_an_error() -> None:
    wire = frame(4, b"/p/q.dat", b"P12", b"12345")
    for cut in range(1, len(wire)):
        [error] = feed([wire[:cut]], eof=True)
        assert isinstance(error, ProtocolError), cut
        assert error.reason.startswith("connection closed mid-message: got "), cut


# -- encoding of names -----------------------------------------------------------------

@pytest.mark.parametrize("field", ["path", "serial"])
def test_non_utf8_name_is_refused_with_the_raw_bytes(field: str) -> None:
    raw = b"/root/\xff\xfe.dat" if field == "path" else b"P30\x80"
    wire = frame(2, **{field: raw}, data_len=10)  # refused before any data arrives
    [error] = feed([wire])
    assert isinstance(error, ProtocolError) and error.kind == f"{field} not UTF-8"
    assert error.reason.startswith(f"{field} is not valid UTF-8 (invalid ")
    assert repr(raw) in error.reason


# -- terminal events and progress ------------------------------------------------------

def test_protocol_error_is_sticky_and_later_bytes_are_discarded() -> None:
    conn = Connection()
    [error] = feed([frame(0) + frame(1)], conn)
    conn.receive_data(frame(2))
    assert conn.next_event() is error and conn.next_event() is error
    assert not conn.in_message and conn.message_bytes_received == 0
    conn.receive_data(b"")
    assert conn.next_event() is error


def test_connection_closed_is_sticky_and_data_after_eof_is_a_caller_bug() -> None:
    conn = Connection()
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed() == conn.next_event()
    conn.receive_data(b"")  # a second EOF is harmless
    with pytest.raises(RuntimeError, match="after EOF"):
        conn.receive_data(b"x")


def test_progress_for_the_stall_timer() -> None:
    conn = Connection()
    wire = frame(6, b"/p", SERIAL, b"x" * 100)
    assert (conn.in_message, conn.bytes_received, conn.progress) == (False, 0, "between messages")
    conn.receive_data(wire[:40])
    assert conn.in_message and conn.message_bytes_received == 40  # before parsing, too
    partial: list = []
    assert drain(conn, partial) == []
    assert conn.progress == "got 12 of 100 data bytes (send_id 6, path '/p')"
    conn.receive_data(bytearray(wire[40:]))
    assert drain(conn, partial) == [expected(6, b"/p", SERIAL, b"x" * 100)]
    assert (conn.in_message, conn.bytes_received, conn.message_bytes_received) == (
        False, len(wire), 0)


def test_a_path_that_could_fake_a_log_line_is_escaped_in_progress() -> None:
    conn = Connection()
    conn.receive_data(frame(6, b"/a\nFAKE INFO Received\x1b[2J", SERIAL, b"xy")[:-1])
    drain(conn)
    assert conn.progress == ("got 1 of 2 data bytes (send_id 6, path "
                             "'/a\\nFAKE INFO Received\\x1b[2J')")


def test_caller_may_reuse_a_bytearray_it_passed_in() -> None:
    conn = Connection()
    buffer = bytearray(frame(1, data=b"keep"))
    conn.receive_data(buffer)
    buffer[:] = bytes(len(buffer))
    assert drain(conn) == [expected(1, data=b"keep")]


def test_byte_by_byte_feeding_is_linear() -> None:
    def feed_bytewise(data: bytes) -> float:
        wire = frame(1, data=data)
        conn = Connection()
        kinds, received = [], bytearray()   # the events are not kept: only the parser is timed
        started = time.perf_counter()
        for i in range(len(wire)):
            conn.receive_data(wire[i:i + 1])
            while (event := conn.next_event()) is not NEED_DATA:
                if type(event) is FileData:
                    received += event.data
                else:
                    kinds.append(type(event))
        elapsed = time.perf_counter() - started
        assert kinds == [FileHeader, EndOfMessage] and received == data
        return elapsed

    small = min(feed_bytewise(bytes(range(256)) * 200) for _ in range(2))  # about 50 KB
    large = feed_bytewise(bytes(range(256)) * 800)                         # four times that
    # Linear: about 4 times as long (quadratic would be 16); per byte, an event is made.
    assert large < 8 * small, f"{large:.2f} s for 200 KB against {small:.2f} s for 50 KB"
    assert large < 5.0


# -- the encoders ----------------------------------------------------------------------

@pytest.mark.parametrize("message", [
    (1, "/a", "P3001276", b""), (2, "/ab", "P1", b"x" * 7), (3, "/abc", "P12", bytearray(5)),
    (0xFFFF_FFFF, "/abcd", "P123", memoryview(b"data")),
])
def test_encode_message_matches_the_independent_encoder(message) -> None:
    send_id, path, serial, data = message
    assert encode_message(*message) == frame(send_id, path.encode(), serial.encode(), bytes(data))


@settings(deadline=None, max_examples=100)
@given(messages=st.lists(message_strategy, min_size=1, max_size=3))
def test_encoder_and_decoder_agree(messages) -> None:
    wire = b"".join(encode_message(i, p.decode(), s.decode(), d) for i, p, s, d in messages)
    assert feed(bytewise(wire)) == [expected(*m) for m in messages]


@pytest.mark.parametrize(("args", "match"), [
    ((0, "/a", "P1", b""), "send_id"), ((2**32, "/a", "P1", b""), "send_id"),
    ((1, "", "P1", b""), "empty"), ((1, "/a", "", b""), "empty"),
])
def test_encode_message_refuses_what_no_device_sends(args, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        encode_message(*args)


def test_replies() -> None:
    assert encode_reply(1) == b"\x01\0\0\0"
    assert encode_reply(0x04030201) == b"\x01\x02\x03\x04"
    assert encode_reply(0xFFFF_FFFF) == b"\xff\xff\xff\xff"
    assert FAILURE_REPLY == bytes(4)
    for bad in (0, -1, 2**32):
        with pytest.raises(ValueError, match="send_id"):
            encode_reply(bad)
