"""A simulated bank driven by hand, for sink tests: the simulator's physics gives every battery's
reading (cells included), the real Monitor folds them and runs the detectors on a ManualClock,
and each step hands state and alert events to the sinks as the daemon's ticker does.

No CAN link is opened: the sinks are what is under test, and the Pylontech CAN broadcast the
demo speaks carries no per-cell voltages, which the InfluxDB cell measurement and the Grafana
cell panels need.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from bankwatch.daemon.cli import demo_config
from bankwatch.daemon.config import Config
from bankwatch.daemon.detectors import AlertEvent
from bankwatch.daemon.service import Monitor
from bankwatch.daemon.simulation import bank_description
from bankwatch.daemon.tick import Sink
from bankwatch.drivers.clock import ManualClock
from bankwatch.drivers.simulator.bank import BankSimulator
from bankwatch.drivers.simulator.description import SimFault


def quiet_demo_config(**update: object) -> Config:
    """The demo bank (48 V 4S2P) without its scheduled faults: tests inject their own."""
    config = demo_config()
    assert config.simulation is not None
    sim = config.simulation.model_copy(update={"faults": []})
    return config.model_copy(update={"simulation": sim, **update})


class DrivenBank:
    def __init__(
        self,
        sinks: Sequence[Sink],
        config: Config | None = None,
        *,
        start_wall: float | None = None,
    ) -> None:
        self.config = config or quiet_demo_config()
        self.clock = ManualClock(start_wall=time.time() if start_wall is None else start_wall)
        self.sim = BankSimulator(bank_description(self.config))
        self.sinks = list(sinks)
        self.monitor = Monitor(self.config, self.clock, self.sinks)
        self.events: list[AlertEvent] = []

    def step(self, seconds: float = 1.0) -> list[AlertEvent]:
        self.sim.advance(seconds)
        self.clock.advance(seconds)
        now = self.clock.monotonic()
        for name in self.sim.physics.names:
            if name not in self.sim.silent:
                self.monitor.readings[name] = self.sim.reading(name, now)
        state, events = self.monitor.tick(now)
        tick = self.monitor.snapshot(state, events)
        for sink in self.sinks:
            sink.on_tick(tick)
        self.events += events
        return events

    def run(self, steps: int, seconds: float = 1.0) -> list[AlertEvent]:
        out: list[AlertEvent] = []
        for _ in range(steps):
            out += self.step(seconds)
        return out

    def cutoff(self, battery: str, protection: str = "cell_undervoltage") -> None:
        self.sim.apply(
            SimFault(at_s=0, battery=battery, kind="cutoff", protection=protection)  # type: ignore[arg-type]
        )

    def recover(self, battery: str) -> None:
        self.sim.apply(SimFault(at_s=0, battery=battery, kind="recover"))

    def until_event(self, kind: str, event: str = "raised", max_steps: int = 60) -> AlertEvent:
        for _ in range(max_steps):
            for ev in self.step():
                if ev.alert.kind == kind and ev.event == event:
                    return ev
        raise AssertionError(f"no {event} {kind} alert within {max_steps} steps")
