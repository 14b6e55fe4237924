"""`bankwatch demo`: the simulated bank and the monitor in one process, no services needed.

The simulator and the daemon share one scaled clock and talk over python-can's in-process
virtual bus, through the same codecs, links and detectors as on a real bank: only the wire is
simulated. Every CAN link of the config is turned into a virtual channel of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from bankwatch.daemon.clock import ScaledClock
from bankwatch.daemon.config import CanLinkConfig, Config, SerialLinkConfig
from bankwatch.daemon.console import ConsoleView, status_line
from bankwatch.daemon.detectors import AlertEvent
from bankwatch.daemon.service import JsonAlertSink, Monitor, Sink, install_stop_signals
from bankwatch.daemon.topology import BankState
from bankwatch.drivers.simulator.serve import SimulatorRunner

__all__ = ["run_demo", "virtualize", "virtualize_serial"]

log = logging.getLogger(__name__)


def virtualize(config: Config, prefix: str = "demo") -> Config:
    """The same bank with every CAN link on an in-process virtual channel."""
    links = {
        name: (
            link.model_copy(
                update={
                    "interface": "virtual",
                    "channel": f"{prefix}-{name}",
                    "host": None,
                    "port": None,
                }
            )
            if isinstance(link, CanLinkConfig)
            else link
        )
        for name, link in config.links.items()
    }
    return config.model_copy(update={"links": links})


def virtualize_serial(config: Config, folder: str) -> Config:
    """The same bank with every serial link's port moved into `folder`: the simulator serves
    each on a PTY linked from there, so the demo never opens a real adapter."""
    links = {
        name: (
            link.model_copy(update={"port": str(Path(folder) / f"tty-{name}")})
            if isinstance(link, SerialLinkConfig)
            else link
        )
        for name, link in config.links.items()
    }
    return config.model_copy(update={"links": links})


class _Counter:
    """Counts alert events for the closing summary."""

    def __init__(self) -> None:
        self.raised: Counter[str] = Counter()
        self.events = 0

    def on_tick(self, monitor: Monitor, state: BankState, events: list[AlertEvent]) -> None:
        self.events += len(events)
        for ev in events:
            if ev.event == "raised":
                self.raised[ev.alert.kind] += 1


async def run_demo(
    config: Config,
    *,
    duration_s: float | None = None,
    speed: float | None = None,
    json_out: bool = False,
    out: TextIO | None = None,
    extra_sinks: Sequence[Sink] = (),
) -> int:
    out = out or sys.stdout
    serial_dir = tempfile.mkdtemp(prefix="bankwatch-demo-")
    config = virtualize_serial(virtualize(config), serial_dir)
    sim_speed = speed or (config.simulation.speed if config.simulation else 1.0)
    clock = ScaledClock(sim_speed)
    counter = _Counter()
    sinks: list[Sink] = [counter]
    if json_out:
        sinks.append(JsonAlertSink(out))
    runner = SimulatorRunner(config, clock)
    await runner.open()
    if not json_out:
        sinks.append(ConsoleView(out, clock_text=lambda: _bank_time(runner, sim_speed)))
    sinks.extend(extra_sinks)
    monitor = Monitor(config, clock, sinks)
    for sink in sinks:
        if isinstance(sink, ConsoleView):
            sink.capture_logs()
    stop = asyncio.Event()
    install_stop_signals(stop)
    try:
        async with asyncio.TaskGroup() as tg:
            sim_task = tg.create_task(runner.run(), name="simulator")
            mon_task = tg.create_task(monitor.run(stop), name="monitor")
            if duration_s is not None:
                await _wait_or_stop(stop, duration_s / sim_speed)
            else:
                await stop.wait()
            stop.set()
            await mon_task
            sim_task.cancel()
    finally:
        await runner.close()
        shutil.rmtree(serial_dir, ignore_errors=True)
    state = monitor.state
    summary = {
        "type": "summary",
        "bank": config.bank.name,
        "simulated_s": round(runner.sim.elapsed_s, 1),
        "speed": sim_speed,
        "frames": runner.frames_sent,
        "alerts_raised": dict(counter.raised),
        "active_alerts": [a.id for a in monitor.tracker.sorted_active()],
        "soc_pct": None if state is None or state.soc_pct is None else round(state.soc_pct, 1),
    }
    if json_out:
        out.write(json.dumps(summary) + "\n")
    else:
        out.write("\n")
        if state is not None:
            out.write(f"summary: {status_line(state, monitor)}\n")
        raised = ", ".join(f"{k} ×{n}" for k, n in counter.raised.items()) or "none"
        out.write(
            f"summary: {summary['simulated_s']:.0f} s of bank time at {sim_speed:g}x, "
            f"{runner.frames_sent} CAN frames{_serial_summary(runner)}, alerts raised: {raised}\n"
        )
    out.flush()
    return 0


def _serial_summary(runner: SimulatorRunner) -> str:
    buses = runner.serial_buses.values()
    if not buses:
        return ""
    return f", {sum(b.replies for b in buses)} serial replies"


def _bank_time(runner: SimulatorRunner, speed: float) -> str:
    """The simulated bank's day and time, which is what the demo's profile follows."""
    t = int(runner.sim.time_of_day_s)
    day, rest = divmod(t, 86400)
    return f"day {day + 1} {rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d} ×{speed:g}"


async def _wait_or_stop(stop: asyncio.Event, duration_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), duration_s)
