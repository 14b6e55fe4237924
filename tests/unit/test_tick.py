"""What the sinks get: one frozen snapshot per tick, the same object for every sink, holding
what they used to reach into the monitor for (active alerts, link statuses, the clock)."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from bankwatch.daemon.tick import Tick
from tests.driven_bank import DrivenBank


class Recorder:
    def __init__(self) -> None:
        self.ticks: list[Tick] = []

    def on_tick(self, tick: Tick) -> None:
        self.ticks.append(tick)


class Broken:
    def on_tick(self, tick: Tick) -> None:
        raise RuntimeError("this sink always fails")


def _step(bank: DrivenBank) -> None:
    """One tick the way the daemon's ticker runs it: `Monitor.step`, sinks and all."""
    bank.sim.advance(1.0)
    bank.clock.advance(1.0)
    now = bank.clock.monotonic()
    for name in bank.sim.physics.names:
        bank.monitor.readings[name] = bank.sim.reading(name, now)
    bank.monitor.step(now)


def test_every_sink_gets_one_frozen_snapshot_of_the_tick(caplog: pytest.LogCaptureFixture) -> None:
    first, last = Recorder(), Recorder()
    bank = DrivenBank([])
    monitor = bank.monitor
    monitor.sinks[:] = [first, Broken(), last]
    for _ in range(3):
        _step(bank)
    bank.cutoff("B2")
    for _ in range(30):
        _step(bank)

    # A failing sink is logged and the ones after it are still called, every tick.
    assert len(first.ticks) == len(last.ticks) == 33
    assert "this sink always fails" in caplog.text
    assert all(a is b for a, b in zip(first.ticks, last.ticks, strict=True))

    tick = last.ticks[-1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        tick.state = tick.state  # type: ignore[misc]
    assert tick.state is monitor.state
    assert tick.alerts == tuple(monitor.tracker.sorted_active())
    assert any(a.kind == "cutoff" and a.subject.endswith("/B2") for a in tick.alerts)
    raised = [ev for t in last.ticks for ev in t.events if ev.event == "raised"]
    assert any(ev.alert.kind == "cutoff" for ev in raised)
    # The demo bank's CAN link is built but not run here: it is still on its first attempt.
    assert [s.name for s in tick.links] == [s.name for s in monitor.link_statuses()]
    assert tick.links and tick.links_up == 0
    assert tick.monotonic == bank.clock.monotonic()
    assert tick.wall == bank.clock.wall()
    assert tick.wall_at(tick.state.at) == pytest.approx(tick.wall - tick.monotonic + tick.state.at)


def test_a_tick_without_events_is_still_handed_out(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    rec = Recorder()
    bank = DrivenBank([])
    bank.monitor.sinks[:] = [rec]
    _step(bank)
    (tick,) = rec.ticks
    assert tick.events == () and tick.alerts == ()
    assert caplog.text == ""
