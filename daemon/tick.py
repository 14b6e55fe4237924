"""What a sink gets once per tick: a frozen snapshot of the bank, and the sink protocols.

The monitor takes the snapshot after the detectors have run and hands the same object to every
sink (the console, MQTT, InfluxDB, systemd, the alert log). A sink reads only this: it never sees
the monitor, so it can be built and tested with a hand-made `Tick`, and nothing here imports the
service (which imports the sinks).

`monotonic` and `wall` are the clock's two readings at the same moment; `state.at` and every
event's `at` are on the monotonic clock, `to_wall` turns them into wall time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    # Types only: the links module imports python-can, which a sink has no need of.
    from bankwatch.daemon.alerts import Alert, AlertEvent
    from bankwatch.daemon.topology import BankState
    from bankwatch.drivers.links.can import LinkStatus

__all__ = ["RunningSink", "Sink", "Tick"]


@dataclass(frozen=True, slots=True)
class Tick:
    """One tick of the monitor, as the sinks see it."""

    state: BankState
    # The alert events of this tick (raised, updated, cleared), in the order they happened.
    events: tuple[AlertEvent, ...]
    # Every active alert after this tick, most severe first.
    alerts: tuple[Alert, ...]
    # Every open link, CAN buses first, then serial lines.
    links: tuple[LinkStatus, ...]
    monotonic: float
    wall: float

    @property
    def to_wall(self) -> float:
        """Add to a monotonic time to get the wall time (Unix seconds)."""
        return self.wall - self.monotonic

    def wall_at(self, at: float) -> float:
        """The wall time of the monotonic time `at`."""
        return at + self.wall - self.monotonic

    @property
    def links_up(self) -> int:
        return sum(s.state == "up" for s in self.links)


class Sink(Protocol):
    """Where each tick goes: the console, MQTT, InfluxDB. Called on the event loop once per
    tick; must not block (a slow sink queues and does its I/O in its own task)."""

    def on_tick(self, tick: Tick) -> None: ...


@runtime_checkable
class RunningSink(Sink, Protocol):
    """A sink with I/O of its own (a broker, a database): `run` is its task in the daemon's
    task group, draining what `on_tick` queued; it is cancelled when the daemon stops."""

    async def run(self) -> None: ...
