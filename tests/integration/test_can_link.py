"""CanLink against real buses: the simulator's socketcand server over loopback TCP (in the test's
event loop, so python-can's real socketcand client talks to it), and python-can's in-process
virtual bus.

Conditions are polled with a deadline (`eventually`), never asserted after a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import can

from bankwatch.drivers.clock import SystemClock
from bankwatch.drivers.links.can import CanLink, CanLinkSettings
from bankwatch.drivers.simulator.socketcand import SocketcandServer

HOST = "127.0.0.1"
SILENCE_S = 0.5
Frame = tuple[int, bytes, bool]


async def eventually(pred: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Wait until `pred()` holds; fail after `timeout` seconds saying what was awaited."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or pred}")
        await asyncio.sleep(0.01)


@dataclass
class Rig:
    """A socketcand server, a CanLink on it and what the link's handler was given."""

    server: SocketcandServer
    link: CanLink
    frames: list[Frame] = field(default_factory=list)
    heartbeat: bool = True  # publish a steady frame so the silence watchdog stays quiet
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def heard(self, can_id: int) -> list[Frame]:
        return [f for f in self.frames if f[0] == can_id]

    @property
    def state(self) -> str:
        return self.link.status.state

    async def beat(self) -> None:
        while True:
            if self.heartbeat:
                with contextlib.suppress(RuntimeError):  # between servers: nothing to publish on
                    n = next(self._seq) & 0xFF
                    self.server.publish("can0", 0x100, bytes([n]))
            await asyncio.sleep(0.02)


HEARTBEAT_ID = 0x100


def link_config(port: int, **changes: Any) -> CanLinkSettings:
    fields: dict[str, Any] = {
        "interface": "socketcand",
        "host": HOST,
        "port": port,
        "channel": "can0",
        "silence_timeout_s": SILENCE_S,
    }
    fields.update(changes)
    return CanLinkSettings(**fields)


@contextlib.asynccontextmanager
async def running(link: CanLink) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(link.run(), name=f"link-{link.name}")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


@contextlib.asynccontextmanager
async def rig(
    handler: Callable[[Rig, int, bytes, bool, float], None] | None = None,
) -> AsyncIterator[Rig]:
    """A server on a free port, a link on it running, and the heartbeat going; the link is up
    when this yields."""
    server = SocketcandServer(["can0"], HOST)
    await server.start()
    r: Rig | None = None

    def on_frame(can_id: int, data: bytes, extended: bool, now: float) -> None:
        assert r is not None
        r.frames.append((can_id, data, extended))
        if handler is not None:
            handler(r, can_id, data, extended, now)

    link = CanLink("test", link_config(server.port), on_frame, SystemClock())
    r = Rig(server, link)
    beater = asyncio.create_task(r.beat())
    try:
        async with running(link) as task:
            await eventually(lambda: r.state == "up", what="the link to come up")
            yield r
            assert not task.done(), "the link's task ended"
    finally:
        beater.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beater
        await r.server.stop()


# --- socketcand ----------------------------------------------------------------------------------


async def test_frames_arrive_intact_and_the_link_is_up() -> None:
    async with rig() as r:
        sent: list[Frame] = [
            (0x351, bytes([0x2C, 0x02, 0xE8, 0x03, 0xE8, 0x03, 0xC2, 0x01]), False),
            (0x355, b"\x3c\x00\x64\x00", False),
            (0x18FF50E5, bytes(range(8)), True),
            (0x7FF, b"", False),
            (0x005, b"\xaa\x55", True),  # a small id sent as extended stays extended
        ]
        for can_id, data, ext in sent:
            r.server.publish("can0", can_id, data, extended=ext)
        await eventually(lambda: all(f in r.frames for f in sent), what="the published frames")

        others = [f for f in r.frames if f[0] != HEARTBEAT_ID]
        assert others == sent  # in order, nothing else, nothing twice
        status = r.link.status
        assert status.state == "up"
        assert status.name == "test"
        assert status.frames == len(r.frames)
        assert status.error_frames == 0
        assert status.last_frame_age_s is not None and status.last_frame_age_s >= 0
        assert "socketcand" in status.detail and "can0" in status.detail


async def test_a_silent_bus_is_marked_silent_and_the_link_reconnects_by_itself() -> None:
    async with rig() as r:
        connections_before = r.link.reopens
        r.server.set_silent("can0", True)
        await eventually(lambda: r.state == "silent", what="the silence watchdog")
        assert "no frame" in r.link.status.detail

        # It closes the bus and opens it again by itself, and stays silent while nothing comes.
        await eventually(lambda: r.link.reopens >= connections_before + 2, what="reconnects")
        await eventually(lambda: r.server.stats["can0"].clients == 1, what="a new connection")
        assert r.state == "silent"

        count = len(r.frames)
        r.server.set_silent("can0", False)
        await eventually(lambda: r.state == "up", what="the link to come back up")
        await eventually(lambda: len(r.frames) > count, what="frames after the silence")


async def test_server_gone_is_down_and_a_new_server_on_the_same_port_brings_it_back() -> None:
    async with rig() as r:
        port = r.server.port
        await r.server.stop()
        await eventually(lambda: r.state == "down", what="the link to go down")
        detail = r.link.status.detail
        assert f"{HOST}:{port}" in detail, detail

        count = len(r.frames)
        r.server = SocketcandServer(["can0"], HOST, port)
        await r.server.start()
        await eventually(lambda: r.state == "up", what="the link to reconnect to the new server")
        await eventually(lambda: len(r.frames) > count, what="frames from the new server")
        assert r.server.stats["can0"].clients == 1


async def test_garbage_and_error_frames_do_not_break_the_link() -> None:
    async with rig() as r:
        for _ in range(5):
            r.server.publish_error("can0")
        r.server.send_garbage("can0", b"noise without brackets ")
        r.server.send_garbage("can0", b"< bogus command >")
        r.server.publish_error("can0", 0x20000040)  # bus-off
        for _ in range(4):
            r.server.publish_error("can0")
        await eventually(lambda: r.link.status.error_frames >= 10, what="ten error frames")
        assert r.link.status.error_frames == 10
        assert r.state == "up"

        # Frames python-can cannot parse at all make its receive raise: the link must reopen,
        # not die.
        r.server.send_garbage("can0", b"< frame XYZ notatime 00 >")
        r.server.send_garbage("can0", b"\xff\xfe< frame 12 >")
        r.server.publish("can0", 0x359, b"\x00\x00\x00\x00\x0a\x50\x4e\x00")
        await eventually(lambda: bool(r.heard(0x359)) or r.link.reopens > 0, what="recovery")

        count = len(r.frames)
        r.server.publish("can0", 0x35E, b"PYLON   ")
        await eventually(lambda: r.state == "up", what="the link up again")
        await eventually(lambda: len(r.frames) > count, what="frames after the garbage")
        # A frame published after the link is back arrives intact.
        await eventually(lambda: r.server.stats["can0"].clients == 1)
        r.server.publish("can0", 0x35C, b"\xc0\x00")
        await eventually(lambda: (0x35C, b"\xc0\x00", False) in r.frames, what="0x35C")


async def test_a_handler_that_raises_does_not_kill_the_link() -> None:
    def fragile(r: Rig, can_id: int, data: bytes, extended: bool, now: float) -> None:
        if can_id == 0x666:
            raise RuntimeError("decoder bug")
        if can_id == 0x667:
            raise ValueError("another decoder bug")

    async with rig(fragile) as r:
        for _ in range(3):
            r.server.publish("can0", 0x666, b"\x01")
            r.server.publish("can0", 0x667, b"\x02")
        r.server.publish("can0", 0x351, b"\x03")
        await eventually(lambda: bool(r.heard(0x351)), what="a frame after the failing ones")
        assert len(r.heard(0x666)) == 3 and len(r.heard(0x667)) == 3
        assert r.state == "up"
        assert r.link.reopens == 0  # the bus was not even reopened


# --- python-can virtual bus ----------------------------------------------------------------------


async def test_virtual_bus_frames_silence_and_recovery() -> None:
    channel = f"bankwatch-test-{id(object()):x}"
    frames: list[Frame] = []

    def on_frame(can_id: int, data: bytes, extended: bool, now: float) -> None:
        frames.append((can_id, data, extended))

    cfg = CanLinkSettings(interface="virtual", channel=channel, silence_timeout_s=SILENCE_S)
    link = CanLink("virt", cfg, on_frame, SystemClock())
    sender = can.Bus(interface="virtual", channel=channel)
    sending = True

    async def send_loop() -> None:
        n = 0
        while True:
            if sending:
                n += 1
                sender.send(
                    can.Message(
                        arbitration_id=0x356, data=bytes([n & 0xFF, 0x14]), is_extended_id=False
                    )
                )
                sender.send(
                    can.Message(
                        arbitration_id=0x1806E5F4, data=b"\x01\x02\x03", is_extended_id=True
                    )
                )
            await asyncio.sleep(0.02)

    loop_task = asyncio.create_task(send_loop())
    try:
        async with running(link) as task:
            await eventually(lambda: link.status.state == "up", what="the virtual link up")
            await eventually(lambda: (0x1806E5F4, b"\x01\x02\x03", True) in frames)
            std = [f for f in frames if f[0] == 0x356]
            assert std and all(len(f[1]) == 2 and f[1][1] == 0x14 and not f[2] for f in std)

            sending = False
            await eventually(lambda: link.status.state == "silent", what="silence on virtual")
            count = len(frames)
            sending = True
            await eventually(lambda: link.status.state == "up", what="virtual back up")
            await eventually(lambda: len(frames) > count, what="frames after the silence")
            assert not task.done()
    finally:
        loop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop_task
        sender.shutdown()
