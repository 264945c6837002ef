"""The receiver service on real loopback sockets (receiver.server), in-process.

Every test binds 127.0.0.1 on a free port and stops its server, whatever happens.
"""
from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from qss.protocol import FAILURE_REPLY, HEADER, MAX_DATA_LEN, encode_message, encode_reply
from simulator.devices import device_files, push
import sim_upmu
from sim_upmu import closed_without_reply, running, serial_of, write_upmus
from waiting import wait_until_async


@pytest.fixture
def site(tmp_path):
    """(queue, upmuconfig path) with uPMUs P3000000..P3000049 configured."""
    with sim_upmu.site(tmp_path, 50) as queue_and_list:
        yield queue_and_list


def test_fifty_devices_at_once_every_file_once_with_identical_bytes(site):
    queue, upmuconfig = site
    files = {serial_of(i): device_files(serial_of(i), 3, extended=i % 2 == 0)
             for i in range(50)}

    async def scenario():
        async with running(queue, upmuconfig) as server:
            return await asyncio.gather(*(push(server.port, serial, fs, first_id=10 * i + 1)
                                          for i, (serial, fs) in enumerate(files.items())))

    replies = asyncio.run(scenario())
    for i, got in enumerate(replies):
        assert got == [encode_reply(10 * i + 1 + k) for k in range(3)]
    assert queue.serials() == sorted(files)
    for serial, fs in files.items():
        stored = list(queue.files(serial))
        assert [f.name for f in stored] == [path for path, _ in fs]
        for file, (_, data) in zip(stored, fs):
            assert bytes(queue.read(file)) == data


def test_pipelined_messages_get_their_replies_in_order(site):
    queue, upmuconfig = site
    fs = device_files(serial_of(1), 3)

    async def scenario():
        async with running(queue, upmuconfig) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            # All three in one write, and the last one split: the parser keeps every byte.
            wire = b"".join(encode_message(i + 1, p, serial_of(1), d) for i, (p, d) in enumerate(fs))
            writer.write(wire[:-5])
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(wire[-5:])
            replies = await reader.readexactly(12)
            writer.close()
            await writer.wait_closed()
            return replies

    assert asyncio.run(scenario()) == encode_reply(1) + encode_reply(2) + encode_reply(3)
    assert len(list(queue.files(serial_of(1)))) == 3


def test_unknown_serial_and_full_disk_reply_zeros_and_store_nothing(site):
    queue, upmuconfig = site
    (path, data), = device_files("P3999999", 1)
    disk = {"percent": 98.0}

    async def scenario():
        async with running(queue, upmuconfig, disk=lambda p: disk["percent"]) as server:
            unknown = await push(server.port, "P3999999", [(path, data)])
            full = await push(server.port, serial_of(2), device_files(serial_of(2), 2))
            disk["percent"] = 50.0
            after = await push(server.port, serial_of(3), device_files(serial_of(3), 1))
            return unknown, full, after

    unknown, full, after = asyncio.run(scenario())
    assert unknown == [FAILURE_REPLY]
    assert full == [FAILURE_REPLY, FAILURE_REPLY]     # the connection stays usable
    assert after == [encode_reply(1)]
    assert queue.serials() == [serial_of(3)]


def test_misbehaving_clients_do_not_disturb_the_others(site, caplog):
    queue, upmuconfig = site
    caplog.set_level(logging.INFO, logger="receiver")
    good = {serial_of(i): device_files(serial_of(i), 2) for i in range(5)}

    async def bad_client(port: int, payload: bytes) -> bool:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        await writer.drain()
        closed = await closed_without_reply(reader)
        writer.close()
        return closed

    async def staller(port: int) -> tuple[bool, float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        path, data = good[serial_of(0)][0]
        writer.write(encode_message(1, path, serial_of(0), data)[:100_000])   # then nothing
        started = time.monotonic()
        closed = await closed_without_reply(reader)
        writer.close()
        return closed, time.monotonic() - started

    async def scenario():
        async with running(queue, upmuconfig, stall_timeout=0.6) as server:
            port = server.port
            stalled = asyncio.create_task(staller(port))
            results = await asyncio.gather(
                bad_client(port, b"\0" * 64),                               # send_id 0
                bad_client(port, HEADER.pack(1, 8, 8, MAX_DATA_LEN + 1)),   # oversized data
                bad_client(port, HEADER.pack(1, 100_000, 8, 10)),           # oversized path
                bad_client(port, HEADER.pack(1, 4, 4, 0) + b"\xff\xfe\xfd\xfc" + b"P300"),
                *(push(port, serial, fs) for serial, fs in good.items()))
            return results, await stalled

    results, (stall_closed, stall_seconds) = asyncio.run(scenario())
    assert results[:4] == [True] * 4
    assert all(replies == [encode_reply(1), encode_reply(2)] for replies in results[4:])
    assert stall_closed and 0.5 <= stall_seconds < 3
    for serial, fs in good.items():
        assert [f.name for f in queue.files(serial)] == [p for p, _ in fs]
    # The stalled half-file was never stored.
    assert len(list(queue.files(serial_of(0)))) == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # One line per address and reason: four different reasons from 127.0.0.1.
    assert len([w for w in warnings if ": closed the connection: protocol error: " in w]) == 4
    stalls = [w for w in warnings if "closed the connection: stalled mid-message for" in w]
    assert len(stalls) == 1 and "data bytes" in stalls[0]


def test_closing_mid_message_stores_nothing(site):
    queue, upmuconfig = site
    (path, data), = device_files(serial_of(4), 1)

    async def scenario():
        async with running(queue, upmuconfig) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(encode_message(1, path, serial_of(4), data)[:-1])
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            await wait_until_async(lambda: (len(server.connections), len(server.storing)),
                                   until=lambda now: now == (0, 0),
                                   what="the server done with the closed connection "
                                        "(connections, files being stored)")
            return await push(server.port, serial_of(5), device_files(serial_of(5), 1))

    assert asyncio.run(scenario()) == [encode_reply(1)]
    assert queue.serials() == [serial_of(5)]


def test_idle_connections_are_closed(site):
    queue, upmuconfig = site

    async def scenario():
        async with running(queue, upmuconfig, idle_timeout=0.4) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            closed = await closed_without_reply(reader)
            writer.close()
            return closed

    assert asyncio.run(scenario())


def test_upmu_list_edited_while_running_is_picked_up(site):
    queue, upmuconfig = site
    fs = device_files("P3777777", 2)

    async def scenario():
        async with running(queue, upmuconfig) as server:
            before = await push(server.port, "P3777777", fs[:1])
            await asyncio.to_thread(write_upmus, upmuconfig, ["P3777777"])
            after = await push(server.port, "P3777777", fs, first_id=2)
            return before, after

    before, after = asyncio.run(scenario())
    assert before == [FAILURE_REPLY]
    assert after == [encode_reply(2), encode_reply(3)]
    assert [f.name for f in queue.files("P3777777")] == [p for p, _ in fs]


class SlowQueue:
    """Wraps a queue; a put of a name in ``slow`` waits for ``release``."""

    def __init__(self, queue, slow: set[str]) -> None:
        self.queue = queue
        self.slow = slow
        self.release = threading.Event()
        self.entered = threading.Event()
        self.storage_dir = queue.storage_dir

    def put(self, serial, name, data, **kwargs):
        if name in self.slow:
            self.entered.set()
            self.release.wait(10)
        return self.queue.put(serial, name, data, **kwargs)


def test_a_slow_write_does_not_freeze_other_connections(site):
    queue, upmuconfig = site
    (slow_path, slow_data), = device_files(serial_of(6), 1)
    slow = SlowQueue(queue, {slow_path})

    async def scenario():
        async with running(slow, upmuconfig, writers=2) as server:
            stuck = asyncio.create_task(push(server.port, serial_of(6), [(slow_path, slow_data)]))
            await asyncio.to_thread(slow.entered.wait, 5)
            started = time.monotonic()
            others = await push(server.port, serial_of(7), device_files(serial_of(7), 2))
            took = time.monotonic() - started
            slow.release.set()
            return others, took, await stuck

    others, took, stuck = asyncio.run(scenario())
    assert others == [encode_reply(1), encode_reply(2)] and took < 2
    assert stuck == [encode_reply(1)]


def test_stop_finishes_the_file_being_stored_and_replies(site):
    queue, upmuconfig = site
    (path, data), = device_files(serial_of(8), 1)
    slow = SlowQueue(queue, {path})

    async def scenario():
        async with running(slow, upmuconfig) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(encode_message(5, path, serial_of(8), data))
            await asyncio.to_thread(slow.entered.wait, 5)
            idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", server.port)
            await wait_until_async(lambda: len(server.connections), until=lambda n: n == 2,
                                   what="the server to accept the idle connection")
            stopping = asyncio.create_task(server.stop())
            # Once stop has closed the idle connection, only the store can hold it up.
            await wait_until_async(lambda: len(server.connections), until=lambda n: n < 2,
                                   what="stop to close the idle connection")
            assert not stopping.done()            # waits for the store
            slow.release.set()
            await stopping
            reply = await reader.read(8)          # the reply, then EOF
            idle = await idle_reader.read(4)
            writer.close()
            idle_writer.close()
            return reply, idle

    reply, idle = asyncio.run(scenario())
    assert reply == encode_reply(5)
    assert idle == b""
    assert [f.name for f in queue.files(serial_of(8))] == [path]


def test_the_committer_stores_the_files_waiting_together_and_replies_to_each():
    from receiver.committer import Committer
    calls: list[list] = []
    gate = threading.Event()

    def store(jobs):
        calls.append(jobs)
        gate.wait(5)
        if "bug" in jobs:
            raise RuntimeError("a bug")
        return [f"ok {job}".encode() for job in jobs]

    async def scenario():
        committer = Committer(store, asyncio.get_running_loop(), threads=1, batch=True)
        first = committer.submit("a")
        await wait_until_async(lambda: len(calls), until=lambda n: n == 1,
                               what="the first file to be stored")
        waiting = [committer.submit(job) for job in ("b", "c", "d")]   # while "a" commits
        gate.set()
        replies = await asyncio.gather(first, *waiting)
        failed = await committer.submit("bug")
        committer.close()
        return replies, failed

    replies, failed = asyncio.run(scenario())
    assert replies == [b"ok a", b"ok b", b"ok c", b"ok d"]
    assert calls[:2] == [["a"], ["b", "c", "d"]]   # the three waiting went in one batch
    assert failed == FAILURE_REPLY


def test_a_store_answering_too_few_replies_fails_every_file_even_under_python_O():
    # An assert would vanish under -O, and the files without a reply would hang their
    # connections; run where asserts are off.
    script = textwrap.dedent("""
        import asyncio, threading
        from receiver.committer import Committer
        gate = threading.Event()

        def store(jobs):
            gate.wait(5)
            return [b"ok"] * (len(jobs) - 1)     # a bug: one reply short

        async def scenario():
            committer = Committer(store, asyncio.get_running_loop(), threads=1, batch=True)
            futures = [committer.submit(job) for job in "ab"]
            gate.set()
            replies = await asyncio.wait_for(asyncio.gather(*futures), 10)
            committer.close()
            return replies

        print(asyncio.run(scenario()))
    """)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root, os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-O", "-c", script], capture_output=True,
                          text=True, env=env, cwd=root, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{[FAILURE_REPLY, FAILURE_REPLY]}\n"
    assert "RuntimeError" in done.stderr    # logged as the bug it is


def test_a_mongodb_queue_takes_files_in_parallel_threads_and_long_files_whole(tmp_path):
    mongomock = pytest.importorskip("mongomock")
    from qss.queue.mongo import MongoQueue
    from receiver.server import PIECE
    upmuconfig = str(tmp_path / "upmuconfig.ini")
    write_upmus(upmuconfig, [serial_of(i) for i in range(4)])
    queue = MongoQueue(client=mongomock.MongoClient())
    files = {serial_of(i): device_files(serial_of(i), 2) for i in range(3)}
    long_file = ("/root/upmu_data/long.dat", bytes(range(256)) * (3 * PIECE // 256 + 7))

    async def scenario():
        async with running(queue, upmuconfig) as server:
            assert not queue.group_commit
            return await asyncio.gather(
                *(push(server.port, serial, fs) for serial, fs in files.items()),
                push(server.port, serial_of(3), [long_file]))

    try:
        replies = asyncio.run(scenario())
        assert replies == [[encode_reply(1), encode_reply(2)]] * 3 + [[encode_reply(1)]]
        for serial, fs in files.items():
            for path, data in fs:
                assert bytes(queue.read(queue.get(serial, path))) == data
        assert bytes(queue.read(queue.get(serial_of(3), long_file[0]))) == long_file[1]
    finally:
        queue.close()
