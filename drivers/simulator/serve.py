"""The simulator on real links: `bankwatch simulate CONFIG` and the demo's in-process bank.

Each CAN link of the bank description is served the way the daemon will open it:
- `socketcand` links: a socketcand server on the link's host and port (one server per
  host:port, one channel per link), so `bankwatch run` in another process connects to it with
  python-can's socketcand interface exactly as it would to a real socketcand on a Pi;
- `virtual` links: python-can's in-process virtual bus (the demo);
- anything else (socketcan, slcan) is real hardware the simulator cannot be: it says so.

Physics runs on simulated time: every broadcast period (one simulated second, as a Pylontech
master does) the bank is advanced and every talking battery's frames go out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import can

from bankwatch.drivers.clock import Clock, ScaledClock, SystemClock
from bankwatch.drivers.errors import LinkError
from bankwatch.drivers.links.can import CanLinkSettings
from bankwatch.drivers.links.serial import SerialLinkSettings
from bankwatch.drivers.serial_codec import SerialCodec
from bankwatch.drivers.simulator.bank import BankSimulator
from bankwatch.drivers.simulator.description import BankDescription
from bankwatch.drivers.simulator.serial_server import SerialBus, SimDevice
from bankwatch.drivers.simulator.socketcand import SocketcandServer

__all__ = ["SimulatorRunner", "serve"]

log = logging.getLogger(__name__)

Publish = Callable[[int, bytes], None]
BROADCAST_PERIOD_S = 1.0
# The bank's meter among the simulated devices; battery names are letters, digits, ".", "_"
# and "-", so none can clash with it.
_BANK = "(bank)"


class SimulatorRunner:
    """Advances a BankSimulator on a clock and publishes its frames on the configured links."""

    def __init__(
        self, bank: BankDescription, clock: Clock, *, period_s: float = BROADCAST_PERIOD_S
    ):
        self.sim = BankSimulator(bank)
        self.clock = clock
        self.period_s = period_s
        self.frames_sent = 0
        self._publishers: dict[str, Publish] = {}
        self._servers: list[SocketcandServer] = []
        self._buses: list[can.BusABC] = []
        # Serial links, each on a PTY whose path the link's `port` symlinks to.
        self.serial_buses: dict[str, SerialBus] = {}
        self._serial_tasks: list[asyncio.Task[None]] = []

    async def open(self) -> None:
        links = self.sim.can_links()
        by_server: dict[tuple[str, int], list[tuple[str, CanLinkSettings]]] = {}
        for name, link in links.items():
            if link.interface == "socketcand":
                assert link.host is not None and link.port is not None
                by_server.setdefault((link.host, link.port), []).append((name, link))
            elif link.interface == "virtual":
                bus = can.Bus(interface="virtual", channel=link.channel)
                self._buses.append(bus)
                self._publishers[name] = _virtual_publisher(bus)
            else:
                raise LinkError(
                    f"link {name}: the simulator serves socketcand and virtual CAN links, "
                    f"not {link.interface!r} (that is real hardware)"
                )
        for (host, port), members in by_server.items():
            server = SocketcandServer([link.channel for _, link in members], host, port)
            try:
                await server.start()
            except OSError as exc:
                raise LinkError(f"cannot serve socketcand on {host}:{port}: {exc}") from exc
            self._servers.append(server)
            log.info(
                "socketcand server on %s:%d serving %s",
                host,
                server.port,
                ", ".join(link.channel for _, link in members),
            )
            for name, link in members:
                self._publishers[name] = _socketcand_publisher(server, link.channel)
        self._open_serial()

    def _open_serial(self) -> None:
        """A PTY per serial link some battery talks on, answering through the codecs."""
        devices: dict[str, list[SimDevice]] = {}
        # The batteries, and the bank's own meter when it is on a serial link (a shunt).
        sources = [(b.name, b.source) for b in self.sim.bank.batteries()]
        sources.append((_BANK, self.sim.bank.source))
        for name, src in sources:
            if src is None or src.codec is None:
                continue
            devices.setdefault(src.link, []).append(
                self._sim_device(name, src.address or 0, src.codec)
            )
        for name, devs in devices.items():
            link = self.sim.bank.links.get(name)
            if not isinstance(link, SerialLinkSettings):
                continue
            bus = SerialBus(name, link, devs, speed=self.clock.speed)
            try:
                pty = bus.plug()
            except LinkError:
                for other in self.serial_buses.values():
                    other.close()
                raise
            self.serial_buses[name] = bus
            log.info("serial link %s on %s -> %s (%d baud)", name, link.port, pty, link.baud)
            self._serial_tasks.append(asyncio.create_task(bus.run(), name=f"serial-sim-{name}"))

    def _sim_device(self, name: str, address: int, codec: SerialCodec) -> SimDevice:
        if name == _BANK:
            return SimDevice(
                name=name,
                address=address,
                codec=codec,
                reading=lambda: self.sim.physics.bank_reading(self.clock.monotonic()),
                talking=lambda: True,
            )
        return SimDevice(
            name=name,
            address=address,
            codec=codec,
            reading=lambda: self.sim.reading(name, self.clock.monotonic()),
            talking=lambda: name not in self.sim.silent,
        )

    def _sync_plugs(self) -> None:
        for name, bus in self.serial_buses.items():
            if name in self.sim.unplugged and bus.plugged:
                bus.unplug()
                log.warning("serial link %s: unplugged (%s removed)", name, bus.path)
            elif name not in self.sim.unplugged and not bus.plugged:
                pty = bus.plug()
                log.warning("serial link %s: plugged back in (%s -> %s)", name, bus.path, pty)

    async def close(self) -> None:
        for task in self._serial_tasks:
            task.cancel()
        if self._serial_tasks:
            # Bounded, as in the MQTT sink: closing must never hang on a slow task.
            await asyncio.wait(self._serial_tasks, timeout=5.0)
        for serial_bus in self.serial_buses.values():
            serial_bus.close()
        for server in self._servers:
            await server.stop()
        for bus in self._buses:
            with contextlib.suppress(Exception):
                bus.shutdown()

    def publish_all(self) -> None:
        at = self.clock.monotonic()
        for bc in self.sim.broadcasts(at):
            publish = self._publishers.get(bc.link)
            if publish is None:
                continue
            for can_id, data in bc.frames:
                publish(can_id, data)
                self.frames_sent += 1

    async def run(self, duration_s: float | None = None) -> None:
        """Broadcast every period until cancelled or `duration_s` of simulated time passed."""
        applied = 0
        while duration_s is None or self.sim.elapsed_s < duration_s:
            self.sim.advance(self.period_s)
            for at, fault in self.sim.fault_log[applied:]:
                log.warning(
                    "simulator: t=%.0f s: %s on %s%s",
                    at,
                    fault.kind,
                    fault.link if fault.link is not None else fault.battery,
                    f" ({fault.protection})"
                    if fault.kind == "cutoff"
                    else (f" ({fault.value:g})" if fault.value is not None else ""),
                )
            applied = len(self.sim.fault_log)
            self._sync_plugs()
            self.publish_all()
            await asyncio.sleep(self.period_s / self.clock.speed)


def _virtual_publisher(bus: can.BusABC) -> Publish:
    def publish(can_id: int, data: bytes) -> None:
        bus.send(can.Message(arbitration_id=can_id, data=data, is_extended_id=can_id > 0x7FF))

    return publish


def _socketcand_publisher(server: SocketcandServer, channel: str) -> Publish:
    def publish(can_id: int, data: bytes) -> None:
        server.publish(channel, can_id, data, extended=can_id > 0x7FF)

    return publish


async def serve(
    bank: BankDescription,
    stop: asyncio.Event,
    *,
    duration_s: float | None = None,
    speed: float | None = None,
) -> int:
    """`bankwatch simulate`: serve the bank until `stop` is set (the caller sets it on SIGTERM
    or Ctrl-C) or the duration ends."""
    sim_speed = speed or bank.speed
    clock: Clock = SystemClock() if sim_speed == 1.0 else ScaledClock(sim_speed)
    runner = SimulatorRunner(bank, clock)
    await runner.open()
    for name, bus in runner.serial_buses.items():
        # The paths to use: the link's port (what `bankwatch run` opens) and the PTY behind it.
        print(f"serial link {name}: {bus.path} -> {bus.pty_path}", flush=True)
    log.info(
        "simulating bank %s: %d batteries, speed %gx%s",
        bank.name,
        len(runner.sim.physics.names),
        sim_speed,
        f", for {duration_s:g} s" if duration_s else "",
    )
    task = asyncio.create_task(runner.run(duration_s), name="simulator")
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (task, stopper):
            t.cancel()
        await asyncio.gather(task, stopper, return_exceptions=True)
        await runner.close()
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise LinkError(f"simulator failed: {task.exception()}")
    log.info(
        "simulator stopped after %.0f simulated s, %d frames",
        runner.sim.elapsed_s,
        runner.frames_sent,
    )
    return 0
