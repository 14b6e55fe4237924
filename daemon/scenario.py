"""Scenarios: a simulated bank and the monitor, stepped together on a manual clock.

A scenario file (`configs/scenarios/KIND-description.toml`) is a bank config with a
`[simulation]` (profile, per-battery physics, faults) and a `[scenario]` (how long, how often
the monitor samples, which alerts it must raise and which it must not). `ScenarioRun` advances
the simulator by one tick, hands every talking battery's reading straight to the Monitor (no
wire: the reading is what the BMS knows, cell voltages included) and runs the Monitor's tick,
as fast as the machine allows: a week of a 16-pack rack takes seconds.

Nothing here reads the real clock except to report how long a run took; `pace` (the demo at a
finite speed) sleeps between ticks, which changes nothing the monitor sees.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bankwatch.daemon.alerts import RANK, AlertEvent
from bankwatch.daemon.config import Config, load_config
from bankwatch.daemon.scenario_config import ExpectConfig, ForbidConfig
from bankwatch.daemon.service import Monitor
from bankwatch.daemon.simulation import bank_description
from bankwatch.daemon.tick import Sink
from bankwatch.daemon.topology import BankState
from bankwatch.drivers.clock import ManualClock
from bankwatch.drivers.errors import ConfigError
from bankwatch.drivers.simulator.bank import BankSimulator

__all__ = [
    "ExpectationResult",
    "ScenarioResult",
    "ScenarioRun",
    "TimedEvent",
    "load_scenario",
]


def load_scenario(path: str | Path) -> Config:
    """A config that a scenario run can use: it must have a [simulation] section."""
    config = load_config(path)
    if config.simulation is None:
        raise ConfigError(str(path), ["a scenario needs a [simulation] section"])
    return config


@dataclass(frozen=True, slots=True)
class TimedEvent:
    """An alert event and when it happened, in simulated seconds from the start."""

    elapsed_s: float
    event: AlertEvent


@dataclass(frozen=True, slots=True)
class ExpectationResult:
    expect: ExpectConfig
    deadline_s: float
    # "met", "missed" (its deadline passed without it), or "not reached" (the run stopped
    # before its deadline).
    verdict: str
    at_s: float | None = None
    subject: str | None = None

    def to_json(self) -> dict[str, object]:
        e = self.expect
        return {
            "kind": e.kind,
            "subject": e.subject,
            "severity": e.severity,
            "within_s": self.deadline_s,
            "verdict": self.verdict,
            "at_s": None if self.at_s is None else round(self.at_s, 1),
            "raised_on": self.subject,
        }


@dataclass(slots=True)
class ScenarioResult:
    simulated_s: float = 0.0
    ticks: int = 0
    wall_s: float = 0.0
    events: list[TimedEvent] = field(default_factory=list)
    expectations: list[ExpectationResult] = field(default_factory=list)
    forbidden: list[TimedEvent] = field(default_factory=list)
    state: BankState | None = None

    @property
    def passed(self) -> bool:
        return not self.forbidden and all(e.verdict != "missed" for e in self.expectations)

    def raised(self) -> Counter[str]:
        return Counter(t.event.alert.kind for t in self.events if t.event.event == "raised")


def _matches(ev: AlertEvent, kind: str | None, subject: str | None, severity: str) -> bool:
    a = ev.alert
    return (
        ev.event in ("raised", "updated")
        and (kind is None or a.kind == kind)
        and (subject is None or a.subject == subject)
        and RANK[a.severity] >= RANK[severity]
    )


class ScenarioRun:
    """The simulator and the Monitor in lock step on a ManualClock."""

    def __init__(
        self,
        config: Config,
        *,
        sinks: Sequence[Sink] = (),
        tick_s: float | None = None,
        start_wall: float | None = None,
    ) -> None:
        self.config = config
        scenario = config.scenario
        self.tick_s = tick_s or (scenario.tick_s if scenario is not None else 1.0)
        self.clock = ManualClock(start_wall=time.time() if start_wall is None else start_wall)
        self.sim = BankSimulator(bank_description(config))
        self.monitor = Monitor(config, self.clock, sinks, tick_s=self.tick_s, open_links=False)
        self.start = self.clock.monotonic()
        self.result = ScenarioResult()
        self._talking = [b.name for _, b in config.batteries() if b.source is not None]
        self._bank_source = config.bank.source is not None

    @property
    def elapsed_s(self) -> float:
        return self.clock.monotonic() - self.start

    def step(self) -> tuple[BankState, list[AlertEvent]]:
        """One tick: the bank moves on, every talking battery is heard, the monitor judges."""
        self.sim.advance(self.tick_s)
        self.clock.advance(self.tick_s)
        now = self.clock.monotonic()
        physics = self.sim.physics
        readings = self.monitor.readings
        silent = self.sim.silent
        for name in self._talking:
            if name not in silent:
                readings[name] = physics.reading(name, now)
        if self._bank_source:
            self.monitor.bank_reading = physics.bank_reading(now)
        state, events = self.monitor.tick(now)
        if self.monitor.sinks:
            tick = self.monitor.snapshot(state, events)
            for sink in self.monitor.sinks:
                sink.on_tick(tick)
        elapsed = now - self.start
        self.result.events.extend(TimedEvent(elapsed, ev) for ev in events)
        self.result.ticks += 1
        return state, events

    def run(
        self,
        duration_s: float,
        *,
        stop: Callable[[], bool] | None = None,
        pace: Callable[[float], None] | None = None,
    ) -> ScenarioResult:
        """Run until `duration_s` of simulated time (or `stop()` says so); `pace(tick_s)` is
        called after every tick (the demo sleeps there at a finite speed)."""
        t0 = time.perf_counter()
        try:
            while self.elapsed_s < duration_s - 1e-9:
                self.step()
                if pace is not None:
                    pace(self.tick_s)
                if stop is not None and stop():
                    break
        finally:
            self.result.wall_s = time.perf_counter() - t0
            self.result.simulated_s = self.elapsed_s
            self.result.state = self.monitor.state
            self._judge()
        return self.result

    def _judge(self) -> None:
        scenario = self.config.scenario
        result = self.result
        result.expectations = []
        result.forbidden = []
        if scenario is None:
            return
        ran = result.simulated_s
        for e in scenario.expect:
            deadline = e.within_s if e.within_s is not None else scenario.duration_s
            hit = next(
                (
                    t
                    for t in result.events
                    if t.elapsed_s <= deadline + 1e-6
                    and _matches(t.event, e.kind, e.subject, e.severity)
                ),
                None,
            )
            if hit is not None:
                verdict = "met"
            elif ran + 1e-6 >= deadline:
                verdict = "missed"
            else:
                verdict = "not reached"
            result.expectations.append(
                ExpectationResult(
                    e,
                    deadline,
                    verdict,
                    None if hit is None else hit.elapsed_s,
                    None if hit is None else hit.event.alert.subject,
                )
            )
        result.forbidden = [t for t in result.events if _forbidden(t.event, scenario.forbid)]


def _forbidden(ev: AlertEvent, rules: Sequence[ForbidConfig]) -> bool:
    return any(_matches(ev, f.kind, f.subject, f.severity) for f in rules)
