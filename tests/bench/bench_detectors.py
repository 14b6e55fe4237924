"""Benchmark: what the detector suite costs per bank snapshot, for 16 and 64 batteries.

Not collected by pytest (the name does not start with test_). Run it from the repository:

    .venv/bin/python tests/bench/bench_detectors.py

For each bank it simulates a day (30 s physics steps) and keeps one snapshot of readings a
minute, then times, over those snapshots:

- fold: readings → BankState (topology.py);
- detectors: the whole suite with its memory (run_detectors);
- step: fold + detectors + the alert tracker (BankAnalyzer.step: what the daemon does per tick);

and the memory the analyzer holds after the run (tracemalloc). Then it runs the two healthy
week-long scenarios at full speed and prints their wall time. Figures go in the README.
"""

from __future__ import annotations

import gc
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

from bankwatch.daemon.config import Config, parse_config
from bankwatch.daemon.detectors import BankAnalyzer, DetectContext, run_detectors
from bankwatch.daemon.scenario import ScenarioRun, load_scenario
from bankwatch.daemon.simulation import bank_description
from bankwatch.daemon.topology import Topology
from bankwatch.drivers.model import Reading
from bankwatch.drivers.simulator.bank import BankSimulator

REPO = Path(__file__).resolve().parents[2]
TICK_S = 60.0
SNAPSHOTS = 1440  # a day at 60 s


def bank_config(series: int, parallel: int) -> Config:
    """`parallel` strings of `series` batteries; 12.8 V batteries in series, 51.2 V packs alone."""
    volts, model = (51.2, "pack") if series == 1 else (12.8, "lfp")
    lines = [
        "[bank]", 'name = "b"', 'chemistry = "lifepo4"', "nominal_voltage_v = 48",
        f"charger_voltage_v = {55.2 if series > 1 else 56.0}",
        'source = { link = "can-bank", protocol = "pylontech-can" }',
        f"[models.{model}]", "capacity_ah = 100", f"nominal_voltage_v = {volts}",
        'chemistry = "lifepo4"',
    ]  # fmt: skip
    names = [[f"S{p + 1}B{s + 1}" for s in range(series)] for p in range(parallel)]
    for n in [x for row in names for x in row] + ["bank"]:
        lines += [f"[links.can-{n}]", 'type = "can"', 'interface = "virtual"', f'channel = "{n}"']
    for p, row in enumerate(names):
        lines += ["[[strings]]", f'name = "S{p + 1}"', "batteries = ["]
        lines += [
            f'  {{ name = "{n}", model = "{model}", '
            f'source = {{ link = "can-{n}", protocol = "pylontech-can" }} }},'
            for n in row
        ]
        lines.append("]")
    lines += ["[simulation]", 'start_time = "06:00"', "initial_soc_pct = 50", "step_s = 30"]
    return parse_config("\n".join(lines) + "\n", f"{series}S{parallel}P")


def snapshots(config: Config) -> list[tuple[float, dict[str, Reading], Reading]]:
    sim = BankSimulator(bank_description(config))
    names = [b.name for _, b in config.batteries()]
    out = []
    for i in range(SNAPSHOTS):
        sim.advance(TICK_S)
        now = (i + 1) * TICK_S
        out.append(
            (
                now,
                {n: sim.physics.reading(n, now) for n in names},
                sim.physics.bank_reading(now),
            )
        )
    return out


def per_snapshot_us(fn: object, snaps: list[tuple[float, dict[str, Reading], Reading]]) -> float:
    """The median of five passes over every snapshot, in microseconds per snapshot."""
    runs = []
    for _ in range(5):
        gc.collect()
        t0 = time.perf_counter()
        for now, readings, bank in snaps:
            fn(now, readings, bank)  # type: ignore[operator]
        runs.append((time.perf_counter() - t0) / len(snaps) * 1e6)
    return statistics.median(runs)


def bench_bank(series: int, parallel: int) -> None:
    config = bank_config(series, parallel)
    topo = Topology(config)
    n = len(topo.batteries())
    snaps = snapshots(config)

    fold_us = per_snapshot_us(lambda now, r, bank: topo.fold(r, now, bank), snaps)

    states = [topo.fold(r, now, bank) for now, r, bank in snaps]
    ctx = DetectContext(config.detect)
    t_detect = []
    for _ in range(5):
        gc.collect()
        ctx = DetectContext(config.detect)
        t0 = time.perf_counter()
        for s in states:
            run_detectors(s, s.at, ctx)
        t_detect.append((time.perf_counter() - t0) / len(states) * 1e6)
    detect_us = statistics.median(t_detect)

    analyzer = BankAnalyzer(topo, config.detect)
    step_us = per_snapshot_us(lambda now, r, bank: analyzer.step(r, now, bank), snaps)

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    fresh = BankAnalyzer(topo, config.detect)
    for now, r, bank in snaps:
        fresh.step(r, now, bank)
    gc.collect()
    held = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()

    print(
        f"{topo.shape:>6} {n:>3} batteries: fold {fold_us:7.0f} µs, detectors {detect_us:7.0f} µs "
        f"({detect_us / n:5.1f} µs/battery), fold+detectors+tracker {step_us:7.0f} µs per "
        f"snapshot; memory held after a day {held / 1024:6.0f} KiB"
    )


def bench_scenarios() -> None:
    for name in ("healthy-4s2p-week.toml", "healthy-rack-16p-week.toml"):
        config = load_scenario(REPO / "configs" / "scenarios" / name)
        assert config.scenario is not None
        result = ScenarioRun(config).run(config.scenario.duration_s)
        print(
            f"{name}: {result.simulated_s / 86400:.0f} simulated days, {result.ticks} ticks, "
            f"{result.wall_s:.1f} s wall, passed={result.passed}"
        )


def main() -> None:
    print(f"Python {sys.version.split()[0]} on {platform.machine()} ({platform.node()})")
    print(f"{SNAPSHOTS} snapshots per bank (a simulated day at {TICK_S:g} s), median of 5 passes")
    for series, parallel in ((1, 16), (4, 4), (1, 64), (4, 16)):
        bench_bank(series, parallel)
    bench_scenarios()


if __name__ == "__main__":
    main()
