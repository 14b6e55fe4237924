"""The daemon's CAN link against a socketcand server in another process: a bus that goes silent
and returns, a burst of error frames, bus-off and garbage, and the server process dying and
coming back. Nothing crashes, and the link state is right throughout.

How the state is observed: the Monitor (the daemon's core, with its links, drivers, bank state
and detectors) runs in the test's process, and the battery's side runs in a separate process
(`tests/integration/socketcand_peer.py`, steered over its stdin). A sampler records every link
state the Monitor shows, so the test checks the whole sequence, not only the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from bankwatch.daemon.config import parse_config
from bankwatch.daemon.service import Monitor
from bankwatch.drivers.clock import SystemClock
from tests.helpers import REPO
from tests.integration.test_can_link import eventually


@dataclass
class Peer:
    proc: subprocess.Popen[str]
    port: int

    async def command(self, text: str) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        reply = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 10)
        assert reply.strip() == f"ok {text.split()[0]}", reply

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


async def start_peer(port: int = 0) -> Peer:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.socketcand_peer", str(port)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
    assert line.startswith("port "), line
    return Peer(proc, int(line.split()[1]))


def config(port: int) -> str:
    return f"""
[bank]
name = "rack"
chemistry = "lifepo4"
nominal_voltage_v = 48

[models.pack]
capacity_ah = 100
nominal_voltage_v = 51.2
chemistry = "lifepo4"

[links.bus]
type = "can"
interface = "socketcand"
host = "127.0.0.1"
port = {port}
channel = "can0"
silence_timeout_s = 0.6

[[strings]]
name = "S"
batteries = [
  {{ name = "p1", model = "pack", source = {{ link = "bus", protocol = "pylontech-can" }} }},
]

[detect]
link_lost_after_s = 1.5
clear_after_s = 0.5
"""


@dataclass
class Sampler:
    monitor: Monitor
    seen: list[tuple[str, str]] = field(default_factory=list)

    async def run(self) -> None:
        link = self.monitor.links["bus"]
        while True:
            s = link.status
            now = (s.state, s.bus_state)
            if not self.seen or self.seen[-1] != now:
                self.seen.append(now)
            await asyncio.sleep(0.01)

    def since(self, mark: int) -> list[tuple[str, str]]:
        return self.seen[mark:]


@contextlib.asynccontextmanager
async def daemon(port: int) -> AsyncIterator[tuple[Monitor, Sampler, asyncio.Task[None]]]:
    monitor = Monitor(parse_config(config(port)), SystemClock(), tick_s=0.1)
    sampler = Sampler(monitor)
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    sampling = asyncio.create_task(sampler.run())
    try:
        yield monitor, sampler, task
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        sampling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampling


def _alerts(monitor: Monitor) -> set[str]:
    return {a.kind for a in monitor.tracker.active.values()}


async def test_silence_errors_garbage_and_a_dead_server_are_survived() -> None:
    peer = await start_peer()
    try:
        async with daemon(peer.port) as (monitor, sampler, task):
            link = monitor.links["bus"]
            await eventually(lambda: link.status.state == "up", 20, "the link up")
            # A broadcast cycle is several frames: wait for the one that carries the voltage
            # (a tick may fall between the cycle's first frame and 0x356).
            await eventually(
                lambda: "p1" in monitor.readings
                and monitor.readings["p1"].pack_voltage_v is not None,
                10,
                "a reading with its voltage",
            )
            assert monitor.readings["p1"].pack_voltage_v == 52.4

            # 1. The bus goes silent: silent, link_lost raised; it returns: up, alert cleared.
            mark = len(sampler.seen)
            await peer.command("silent")
            await eventually(lambda: link.status.state == "silent", 10, "silent")
            await eventually(lambda: "link_lost" in _alerts(monitor), 10, "link_lost raised")
            await peer.command("resume")
            await eventually(lambda: link.status.state == "up", 20, "up after the silence")
            await eventually(lambda: "link_lost" not in _alerts(monitor), 10, "alert cleared")
            states = [s for s, _ in sampler.since(mark)]
            assert "silent" in states and "down" not in states, sampler.since(mark)

            # 2. A burst of error frames, then bus-off: counted and shown, the link stays up;
            # frames flowing again end bus-off (within the same batch here, too quick to sample).
            before = link.status.error_frames
            await peer.command("errors 25")
            await peer.command("busoff")
            await eventually(lambda: link.status.error_frames >= before + 26, 10, "26 error frames")
            assert link.status.bus_off == 1
            await eventually(lambda: link.status.bus_state == "active", 10, "bus active again")
            assert link.status.state == "up"

            # 3. Garbage python-can cannot parse: the link reopens by itself and reads again.
            reopens, frames = link.status.reopens, link.status.frames
            await peer.command("garbage")
            await eventually(
                lambda: link.status.frames > frames + 20 and link.status.state == "up",
                20,
                "frames after the garbage",
            )
            assert link.status.reopens >= reopens

            # 4. The server process dies: down; a new one on the same port: up, by itself.
            peer.kill()
            await eventually(lambda: link.status.state in ("down", "silent"), 20, "link lost")
            await eventually(lambda: "link_lost" in _alerts(monitor), 10, "link_lost raised")
            peer = await start_peer(peer.port)
            await eventually(lambda: link.status.state == "up", 40, "up with the new server")
            await eventually(lambda: "link_lost" not in _alerts(monitor), 10, "alert cleared")
            assert monitor.readings["p1"].soc_pct == 81
            assert not task.done(), "the daemon stopped"
            assert {s for s, _ in sampler.seen} <= {"starting", "up", "silent", "down"}
    finally:
        if peer.proc.poll() is None:
            with contextlib.suppress(Exception):
                await peer.command("quit")
            peer.proc.wait(10)
