"""`bankwatch demo`: the simulated bank and the monitor in one process, no services needed.

The simulator and the daemon share one scaled clock and talk over python-can's in-process
virtual bus, through the same codecs, links and detectors as on a real bank: only the wire is
simulated. Every CAN link of the config is turned into a virtual channel of its own.

With `--scenario FILE` or `--speed max` there is no bus: the simulator and the monitor are
stepped together on a manual clock and each battery's reading goes straight into the monitor
(`scenario.py`), so a week of bank life runs in seconds and the monitor sees everything the
BMS knows, cell voltages included (over Pylontech CAN it would not).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import signal
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from bankwatch.daemon.config import Config
from bankwatch.daemon.console import WIDTH, ConsoleView
from bankwatch.daemon.link_config import CanLinkConfig, SerialLinkConfig
from bankwatch.daemon.report import status_line
from bankwatch.daemon.scenario import ScenarioResult, ScenarioRun
from bankwatch.daemon.service import JsonAlertSink, Monitor, install_stop_signals
from bankwatch.daemon.simulation import bank_description
from bankwatch.daemon.tick import Sink, Tick
from bankwatch.drivers.clock import ScaledClock
from bankwatch.drivers.errors import UsageError
from bankwatch.drivers.simulator.serve import SimulatorRunner

__all__ = ["run_demo", "run_scenario_demo", "virtualize", "virtualize_serial"]

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

    def on_tick(self, tick: Tick) -> None:
        self.events += len(tick.events)
        for ev in tick.events:
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
    runner = SimulatorRunner(bank_description(config), clock)
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
            out.write(f"summary: {status_line(state, len(monitor.tracker.active))}\n")
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


# --- scenarios and --speed max: the simulator's readings straight into the monitor -------------


class _ScenarioJson:
    """Alert events as JSON lines, with the simulated time they happened at."""

    def __init__(self, out: TextIO, start: float) -> None:
        self.out = out
        self.start = start

    def on_tick(self, tick: Tick) -> None:
        for ev in tick.events:
            line = ev.to_json(round(tick.wall_at(ev.at), 3))
            line["elapsed_s"] = round(ev.at - self.start, 1)
            self.out.write(json.dumps(line) + "\n")
        if tick.events:
            self.out.flush()


def run_scenario_demo(
    config: Config,
    *,
    duration_s: float | None = None,
    speed: float | None = None,
    json_out: bool = False,
    out: TextIO | None = None,
    name: str = "",
) -> int:
    """`bankwatch demo --scenario FILE` and `demo --speed max`: the simulator and the monitor
    stepped together on a manual clock (scenario.py). `speed` None is as fast as the machine
    allows; a number paces the ticks in real time. Returns 1 when the scenario's expectations
    were not met (an alert it must raise missed, or one it must not raise raised), else 0."""
    out = out or sys.stdout
    scenario = config.scenario
    if duration_s is None:
        if scenario is None:
            raise UsageError(
                "--speed max needs --duration (or a scenario file that declares its length)"
            )
        duration_s = scenario.duration_s
    run = ScenarioRun(config)
    run.monitor.sinks.extend(_scenario_sinks(run, out, json_out=json_out, speed=speed))
    result = _run_until_signal(run, duration_s, speed)
    summary = _scenario_summary(config, run, result, speed, name)
    if json_out:
        out.write(json.dumps(summary) + "\n")
    else:
        _write_scenario_text(out, run, result)
    out.flush()
    return 0 if result.passed else 1


def _scenario_sinks(
    run: ScenarioRun, out: TextIO, *, json_out: bool, speed: float | None
) -> list[Sink]:
    """JSON lines of the alert events, or the console view: at full speed a status line per
    simulated hour; paced, the demo's usual view."""
    if json_out:
        return [_ScenarioJson(out, run.clock.monotonic())]
    view = ConsoleView(
        out,
        live=False if speed is None else None,
        every_s=3600.0 if speed is None else 10.0,
        clock_text=lambda: _sim_time(run.sim.time_of_day_s, speed),
    )
    view.capture_logs()
    return [view]


def _run_until_signal(run: ScenarioRun, duration_s: float, speed: float | None) -> ScenarioResult:
    """Run for `duration_s` of bank time; SIGINT or SIGTERM ends the run early (with its
    summary), and the previous handlers are back afterwards."""
    stopping = False

    def stop_now(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop_now) for sig in (signal.SIGINT, signal.SIGTERM)}
    pace = None if speed is None else (lambda tick_s: time.sleep(tick_s / speed))
    try:
        return run.run(duration_s, stop=lambda: stopping, pace=pace)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _scenario_summary(
    config: Config, run: ScenarioRun, result: ScenarioResult, speed: float | None, name: str
) -> dict[str, object]:
    """The run's closing JSON line: what ran, what was raised, and each expectation's verdict."""
    scenario = config.scenario
    state = result.state
    return {
        "type": "summary",
        "bank": config.bank.name,
        "scenario": name or None,
        "description": None if scenario is None else scenario.description,
        "simulated_s": round(result.simulated_s, 1),
        "speed": "max" if speed is None else speed,
        "ticks": result.ticks,
        "wall_s": round(result.wall_s, 2),
        "alerts_raised": dict(result.raised()),
        "active_alerts": [a.id for a in run.monitor.tracker.sorted_active()],
        "soc_pct": None if state is None or state.soc_pct is None else round(state.soc_pct, 1),
        "metrics": None if state is None else state.metrics()[config.bank.name],
        "expectations": [e.to_json() for e in result.expectations],
        "forbidden_raised": [
            {
                "id": t.event.alert.id,
                "severity": t.event.alert.severity,
                "elapsed_s": round(t.elapsed_s, 1),
            }
            for t in result.forbidden
        ],
        "passed": result.passed,
    }


def _write_scenario_text(out: TextIO, run: ScenarioRun, result: ScenarioResult) -> None:
    """The closing summary for a person: the bank's status, what was raised, and each
    expectation's verdict, wrapped to the console's width."""
    out.write("\n")
    if result.state is not None:
        out.write(f"summary: {status_line(result.state, len(run.monitor.tracker.active))}\n")
    raised = ", ".join(f"{k} ×{n}" for k, n in result.raised().items()) or "none"
    lines = [
        f"summary: {result.simulated_s:.0f} s of bank time in {result.wall_s:.1f} s, "
        f"{result.ticks} ticks, alerts raised: {raised}"
    ]
    for e in result.expectations:
        x = e.expect
        where = f" on {x.subject}" if x.subject else ""
        when = f" at {e.at_s:.0f} s" if e.at_s is not None else ""
        lines.append(
            f"expect {x.kind}{where} ({x.severity} or worse) within {e.deadline_s:.0f} s: "
            f"{e.verdict}{when}"
        )
    for t in result.forbidden:
        a = t.event.alert
        lines.append(f"must not raise: {a.severity} {a.id} at {t.elapsed_s:.0f} s")
    for line in lines:
        out.write("\n".join(textwrap.wrap(line, WIDTH, subsequent_indent="    ")) + "\n")
    scenario = run.config.scenario
    if scenario is not None and (scenario.expect or scenario.forbid):
        out.write(f"scenario {'passed' if result.passed else 'FAILED'}\n")


def _sim_time(time_of_day_s: float, speed: float | None) -> str:
    t = int(time_of_day_s)
    day, rest = divmod(t, 86400)
    pace = "max" if speed is None else f"{speed:g}"
    return f"day {day + 1} {rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d} ×{pace}"
