"""The simulator's socketcand server against python-can's real socketcand client over loopback TCP.

python-can's client is blocking, so its calls run in worker threads while the server runs on the
test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import can
import pytest

from bankwatch.drivers.simulator.socketcand import SocketcandServer

HOST = "127.0.0.1"
QUIET = 0.2  # how long to listen before concluding nothing is coming


@pytest.fixture
async def server() -> AsyncIterator[SocketcandServer]:
    async with SocketcandServer(["can0", "can1"], HOST) as srv:
        yield srv


@contextlib.asynccontextmanager
async def bus_on(server: SocketcandServer, channel: str = "can0") -> AsyncIterator[can.BusABC]:
    """A python-can socketcand client, ready to receive once this yields.

    Counts clients to know when it is live, so no other client may be settling meanwhile.
    """
    before = server.stats[channel].clients
    bus = await asyncio.to_thread(
        can.Bus, interface="socketcand", host=HOST, port=server.port, channel=channel
    )
    try:
        await server.wait_for_clients(channel, before + 1, timeout=2.0)
        yield bus
    finally:
        bus.shutdown()


async def recv(bus: can.BusABC, timeout: float = 2.0) -> can.Message | None:
    return await asyncio.to_thread(bus.recv, timeout)


async def send(bus: can.BusABC, can_id: int, data: bytes, *, extended: bool = False) -> None:
    msg = can.Message(arbitration_id=can_id, data=data, is_extended_id=extended)
    await asyncio.to_thread(bus.send, msg)


def frame(msg: can.Message | None) -> tuple[int, bytes, bool]:
    assert msg is not None, "no frame arrived"
    return msg.arbitration_id, bytes(msg.data), msg.is_extended_id


async def wait_until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


class RawClient:
    """A bare TCP client, for saying things python-can never would."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection(HOST, port)
        client = cls(reader, writer)
        assert await client.read_reply() == "< hi >"
        return client

    async def say(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_reply(self, timeout: float = 2.0) -> str:
        async with asyncio.timeout(timeout):
            return (await self.reader.readuntil(b">")).decode("ascii")

    async def open_raw(self, server: SocketcandServer, channel: str = "can0") -> None:
        """Open ``channel`` in raw mode and wait until the server delivers to this client."""
        before = server.stats[channel].clients
        await self.say(f"< open {channel} >".encode())
        assert await self.read_reply() == "< ok >"
        await self.say(b"< rawmode >")
        assert await self.read_reply() == "< ok >"
        await server.wait_for_clients(channel, before + 1, timeout=2.0)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def test_client_receives_published_frames(server: SocketcandServer) -> None:
    async with bus_on(server) as bus:
        server.publish("can0", 0x123, b"\x01\x02\x03", timestamp=1234.5)
        server.publish("can0", 0x18FF50E5, bytes(range(8)), extended=True)
        server.publish("can0", 0x7FF, b"")
        server.publish("can0", 0x005, b"\xaa", extended=True)

        got = [await recv(bus) for _ in range(4)]

    assert all(m is not None for m in got)
    std, ext, empty, low_ext = (m for m in got if m is not None)
    assert frame(std) == (0x123, b"\x01\x02\x03", False)
    assert std.timestamp == pytest.approx(1234.5)
    assert frame(ext) == (0x18FF50E5, bytes(range(8)), True)
    assert frame(empty) == (0x7FF, b"", False)
    # A small id still travels as extended: the client goes by the id's width on the wire.
    assert (low_ext.arbitration_id, low_ext.is_extended_id) == (0x005, True)
    assert abs(ext.timestamp - time.time()) < 60
    assert server.stats["can0"].delivered == 4


async def test_sent_frames_reach_listeners_and_other_clients(server: SocketcandServer) -> None:
    heard: list[tuple[int, bytes, bool]] = []
    server.add_listener("can0", lambda can_id, data, ext: heard.append((can_id, data, ext)))

    async with bus_on(server) as sender, bus_on(server) as other:
        await send(sender, 0x321, b"\x10\x20")
        await send(sender, 0x1ABCDEF0, b"", extended=True)
        await wait_until(lambda: len(heard) == 2)

        first, second = await recv(other), await recv(other)
        echoed = await recv(sender, QUIET)

    assert heard == [(0x321, b"\x10\x20", False), (0x1ABCDEF0, b"", True)]
    assert frame(first) == (0x321, b"\x10\x20", False)
    assert frame(second) == (0x1ABCDEF0, b"", True)
    assert echoed is None, "a sender does not hear its own frame"
    assert server.stats["can0"].received == 2


async def test_channels_are_isolated(server: SocketcandServer) -> None:
    heard0: list[int] = []
    heard1: list[int] = []
    server.add_listener("can0", lambda can_id, _data, _ext: heard0.append(can_id))
    server.add_listener("can1", lambda can_id, _data, _ext: heard1.append(can_id))

    async with bus_on(server, "can0") as bus0, bus_on(server, "can1") as bus1:
        server.publish("can1", 0x101, b"\x01")
        msg1 = await recv(bus1)
        await send(bus0, 0x200, b"\x02")
        await wait_until(lambda: heard0 == [0x200])

        assert await recv(bus0, QUIET) is None
        assert await recv(bus1, QUIET) is None

    assert msg1 is not None and msg1.arbitration_id == 0x101
    assert heard1 == []
    assert server.stats["can0"].delivered == 0


async def test_silent_channel_delivers_nothing_until_resumed(server: SocketcandServer) -> None:
    async with bus_on(server) as bus:
        server.set_silent("can0", True)
        server.publish("can0", 0x111, b"\x01")
        server.publish_error("can0")
        assert await recv(bus, QUIET) is None

        server.set_silent("can0", False)
        server.publish("can0", 0x222, b"\x02")
        msg = await recv(bus)

    assert msg is not None and msg.arbitration_id == 0x222
    assert server.stats["can0"].silenced == 2
    assert server.stats["can0"].delivered == 1


async def test_error_frames_arrive_as_error_frames(server: SocketcandServer) -> None:
    async with bus_on(server) as bus:
        server.publish_error("can0")  # CAN_ERR_FLAG | CAN_ERR_CRTL
        server.publish_error("can0", 0x40)  # CAN_ERR_BUSOFF
        first, second = await recv(bus), await recv(bus)

    assert first is not None and second is not None
    assert first.is_error_frame and second.is_error_frame
    # python-can reports the error class, without CAN_ERR_FLAG.
    assert (first.arbitration_id, second.arbitration_id) == (0x004, 0x040)


async def test_garbage_from_a_client_does_not_hurt_the_server(server: SocketcandServer) -> None:
    heard: list[int] = []
    server.add_listener("can0", lambda can_id, _data, _ext: heard.append(can_id))

    rogue = await RawClient.connect(server.port)
    try:
        await rogue.say(b"\x00\xff\xfejunk")  # no '<': thrown away silently
        await rogue.say(b"< bogus >")
        assert await rogue.read_reply() == "< error unknown command >"
        await rogue.say(b"<>")
        assert await rogue.read_reply() == "< error unknown command >"
        await rogue.open_raw(server)
        await rogue.say(b"< \xc3\xa9\xff >")
        assert await rogue.read_reply() == "< error unknown command >"
        await rogue.say(b"< echo >")
        assert await rogue.read_reply() == "< echo >"
        bad_sends = [
            b"< send >",
            b"< send 123 >",
            b"< send 800 1 1 >",  # standard id out of range
            b"< send 20000000 0 >",  # extended id out of range
            b"< send XYZ 1 1 >",
            b"< send 123 9 1 2 3 4 5 6 7 8 9 >",
            b"< send 123 2 1 >",  # fewer bytes than the length says
            b"< send 123 1 100 >",
            b"< send 123 -1 >",
        ]
        await rogue.say(b"".join(bad_sends))
        await rogue.say(b"<" + b"x" * 10_000)  # unterminated and oversized
        await rogue.say(b">< send 7 1 ff >")  # still parses what follows
        await wait_until(lambda: heard == [0x007])
        assert server.stats["can0"].rejected == len(bad_sends)

        async with bus_on(server) as bus:
            server.publish("can0", 0x0AB, b"\xcd")
            msg = await recv(bus)
            assert frame(msg) == (0x0AB, b"\xcd", False)
    finally:
        await rogue.close()


async def test_client_survives_garbage_from_the_server(server: SocketcandServer) -> None:
    async with bus_on(server) as bus:
        server.send_garbage("can0", b"noise without brackets")
        server.publish("can0", 0x0CD, b"\x01")
        msg = await recv(bus)
    assert msg is not None and msg.arbitration_id == 0x0CD


async def test_unknown_channel_fails_the_constructor(server: SocketcandServer) -> None:
    with pytest.raises(can.CanError, match="could not open bus"):
        await asyncio.to_thread(
            can.Bus, interface="socketcand", host=HOST, port=server.port, channel="can9"
        )
    # The server ends that session, as the real daemon does, and keeps serving.
    await wait_until(lambda: all(s.clients == 0 for s in server.stats.values()))
    async with bus_on(server, "can1") as bus:
        server.publish("can1", 0x001, b"")
        assert await recv(bus) is not None


async def test_a_stalled_client_loses_frames_without_holding_up_others() -> None:
    async with SocketcandServer(["can0"], HOST, max_client_buffer=4096) as server:
        stalled = await RawClient.connect(server.port)
        await stalled.open_raw(server)
        # Reads as fast as it can, to show it loses nothing while the other is stalled.
        reader = await RawClient.connect(server.port)
        await reader.open_raw(server)
        received = 0

        async def drain() -> None:
            nonlocal received
            while chunk := await reader.reader.read(65536):
                received += chunk.count(b"< frame ")

        drainer = asyncio.create_task(drain())
        published = 0
        try:
            # The kernel takes a few MB for the stalled client before our buffer fills.
            while server.stats["can0"].dropped == 0 and published < 1_000_000:
                for _ in range(500):
                    server.publish("can0", 0x123, bytes(8), timestamp=0.0)
                published += 500
                await asyncio.sleep(0)
            await wait_until(lambda: received == published, timeout=3.0)
        finally:
            drainer.cancel()
            await stalled.close()
            await reader.close()

        stats = server.stats["can0"]
        assert stats.dropped > 0
        assert stats.delivered + stats.dropped == 2 * published


async def test_dropped_clients_are_gone(server: SocketcandServer) -> None:
    """What a dropped connection looks like to python-can's client, which the daemon relies on:
    after a close its ``recv`` keeps returning ``None`` (it never raises); after a reset the
    next ``recv`` raises ``CanError``."""
    async with bus_on(server, "can0") as closed_bus, bus_on(server, "can1") as reset_bus:
        await server.drop_clients("can0")
        assert server.stats["can0"].clients == 0
        assert server.stats["can1"].clients == 1
        assert await recv(closed_bus, QUIET) is None

        await server.drop_clients("can1", reset=True)
        with pytest.raises(can.CanError):
            await recv(reset_bus, QUIET)
    assert server.stats["can1"].clients == 0


async def test_stop_closes_everything() -> None:
    server = SocketcandServer(["can0"], HOST)
    await server.start()
    port = server.port
    rogue = await RawClient.connect(port)  # mid-handshake
    try:
        async with bus_on(server):
            await server.stop()
            assert await rogue.reader.read() == b""
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(HOST, port)
    finally:
        await rogue.close()


def test_publish_rejects_bad_frames() -> None:
    server = SocketcandServer(["can0"])
    with pytest.raises(ValueError, match="unknown channel"):
        server.publish("nope", 0x1, b"")
    with pytest.raises(ValueError, match="out of range"):
        server.publish("can0", 0x800, b"")
    with pytest.raises(ValueError, match="out of range"):
        server.publish("can0", 0x20000000, b"", extended=True)
    with pytest.raises(ValueError, match="at most 8"):
        server.publish("can0", 0x1, bytes(9))
    with pytest.raises(ValueError):
        SocketcandServer([])
    with pytest.raises(ValueError):
        SocketcandServer(["can 0"])
