"""The receiver's refusal and close lines on real loopback sockets (issue 22): every reason
from an address is logged, repeats are counted when the window ends (a timer, not the next
refusal), and nothing a sender chooses can start a log line."""
from __future__ import annotations

import asyncio
import logging
import time

import pytest

from qss.protocol import FAILURE_REPLY, HEADER, MAX_DATA_LEN, encode_message
from simulator.devices import device_files, push
import sim_upmu
from sim_upmu import closed_without_reply, running, serial_of

PATH = b"/root/upmu_data/a.dat"


@pytest.fixture
def site(tmp_path):
    """(queue, upmuconfig path) with uPMU P3000000 configured."""
    with sim_upmu.site(tmp_path, 1) as queue_and_list:
        yield queue_and_list


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


async def bad_client(port: int, payload: bytes, *, eof: bool = False) -> bool:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    if eof:
        writer.write_eof()
    await writer.drain()
    closed = await closed_without_reply(reader)
    writer.close()
    return closed


def test_seven_different_errors_from_one_address_give_seven_lines(site, caplog):
    queue, upmuconfig = site
    caplog.set_level(logging.INFO, logger="receiver")
    payloads = [
        (HEADER.pack(0, 4, 4, 0), False),                                  # send_id 0
        (HEADER.pack(1, 0, 4, 0), False),                                  # empty path
        (HEADER.pack(1, 4096, 4, 0), False),                               # path too long
        (HEADER.pack(1, 4, 0, 0), False),                                  # empty serial
        (HEADER.pack(1, 4, 64, 0), False),                                 # serial too long
        (HEADER.pack(1, 4, 4, MAX_DATA_LEN + 1), False),                   # data too long
        (HEADER.pack(1, 4, 4, 0) + b"\xff\xfe\xfd\xfc" + b"P300", False),  # path not UTF-8
        (HEADER.pack(1, 4, 4, 0) + b"/abc", True),                         # closed mid-message
    ]

    async def scenario():
        async with running(queue, upmuconfig) as server:
            return await asyncio.gather(*(bad_client(server.port, p, eof=e) for p, e in payloads))

    assert asyncio.run(scenario()) == [True] * len(payloads)
    closes = [w for w in warnings(caplog) if w.startswith("uPMU 127.0.0.1:")
              and ": closed the connection: protocol error: " in w]
    assert len(closes) == len(payloads)
    reasons = {c.split(": protocol error: ", 1)[1].split(" (")[0] for c in closes}
    assert len(reasons) == len(payloads), reasons


def test_a_burst_of_one_reason_is_one_line_then_a_count_when_the_window_ends(site, caplog):
    queue, upmuconfig = site
    caplog.set_level(logging.INFO, logger="receiver")
    (path, data), = device_files("P3999999", 1)

    async def stall(port: int) -> bool:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(encode_message(1, path, serial_of(0), data)[:5000])
        closed = await closed_without_reply(reader)
        writer.close()
        return closed

    async def scenario():
        async with running(queue, upmuconfig, stall_timeout=0.4) as server:
            server.intake.refusals.window = 1.5   # stands in for the minute
            replies = [await push(server.port, "P3999999", [(path, data)]) for _ in range(5)]
            stalls = await asyncio.gather(*(stall(server.port) for _ in range(6)))
            lines_at_once = len(warnings(caplog))
            # No refusal follows: the counts come from the timer.
            deadline = time.monotonic() + 5
            while len(warnings(caplog)) < 4 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return replies, stalls, lines_at_once

    replies, stalls, lines_at_once = asyncio.run(scenario())
    assert replies == [[FAILURE_REPLY]] * 5 and stalls == [True] * 6
    assert lines_at_once == 2
    lines = warnings(caplog)
    assert len(lines) == 4, lines
    refused, stalled = lines[0], lines[1]
    assert "unknown serial 'P3999999'" in refused and "stalled mid-message" in stalled
    assert lines[2:] == [refused + " [4 more like it in the last 1.5 s]",
                         lines[3].split(" [")[0] + " [5 more like it in the last 1.5 s]"]
    assert "stalled mid-message" in lines[3]


def test_a_serial_or_path_with_line_breaks_or_escapes_is_one_line_per_event(site, caplog):
    queue, upmuconfig = site
    caplog.set_level(logging.INFO, logger="receiver")
    forged = "P3\nFAKE INFO Received\x1b[2J\r"   # 26 bytes: under the serial limit
    (path, data), = device_files(serial_of(0), 1)

    async def scenario():
        async with running(queue, upmuconfig) as server:
            refused = await push(server.port, forged, [(path, data)])
            stored = await push(server.port, serial_of(0), [(path + "\n\x1b]0;x\x07", data)])
            torn = await bad_client(server.port, encode_message(1, "/a\nFAKE", forged, b"xy")
                                    [:-1], eof=True)
            return refused, stored, torn

    refused, stored, torn = asyncio.run(scenario())
    assert refused == [FAILURE_REPLY] and stored != [FAILURE_REPLY] and torn
    messages = [r.getMessage() for r in caplog.records]
    for message in messages:
        assert not any(c in message for c in "\n\r\x1b\x07"), message
    about_it = [m for m in messages if "FAKE" in m]
    assert len(about_it) == 3, about_it   # the refusal, the stored file, the torn message
    assert all("P3\\nFAKE INFO Received" in m or "/a\\nFAKE" in m or "\\x1b]0;x\\x07" in m
               for m in about_it)
