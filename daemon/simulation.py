"""From a config to the simulator: the daemon's side of `bankwatch simulate`, `demo` and the
scenario runner. The simulator (bankwatch.drivers.simulator) takes a BankDescription of plain
frozen data; this module builds it from the config's bank, models, links and [simulation].
"""

from __future__ import annotations

import asyncio

from bankwatch.daemon.config import Config, SourceConfig
from bankwatch.daemon.service import install_stop_signals
from bankwatch.daemon.simulation_config import FaultConfig, SimulationConfig
from bankwatch.drivers.registry import PROTOCOLS, serial_codec_for
from bankwatch.drivers.simulator.description import (
    BankDescription,
    SimBattery,
    SimFault,
    SimSource,
)
from bankwatch.drivers.simulator.serve import serve

__all__ = ["bank_description", "sim_fault", "simulate"]


def bank_description(config: Config) -> BankDescription:
    """The bank the config describes, as the simulator takes it. Raises ConfigError when a
    battery's register map cannot be found or is invalid."""
    sim = config.simulation if config.simulation is not None else SimulationConfig()
    strings: list[tuple[SimBattery, ...]] = []
    for s in config.strings:
        batteries = []
        for b in s.batteries:
            m = config.models[b.model]
            o = sim.batteries.get(b.name)
            batteries.append(
                SimBattery(
                    name=b.name,
                    chemistry=m.chemistry,
                    capacity_ah=m.capacity_ah,
                    nominal_voltage_v=m.nominal_voltage_v,
                    source=_source(config, b.source),
                    initial_soc_pct=sim.initial_soc_pct
                    if o is None or o.initial_soc_pct is None
                    else o.initial_soc_pct,
                    temperature_c=sim.ambient_c
                    if o is None or o.temperature_c is None
                    else o.temperature_c,
                    capacity_factor=None if o is None else o.capacity_factor,
                    internal_resistance_ohm=None if o is None else o.internal_resistance_ohm,
                    cable_resistance_ohm=None if o is None else o.cable_resistance_ohm,
                    cell_count=None if o is None else o.cell_count,
                )
            )
        strings.append(tuple(batteries))
    hours, minutes = (int(x) for x in sim.start_time.split(":"))
    return BankDescription(
        name=config.bank.name,
        chemistry=config.bank.chemistry,
        strings=tuple(strings),
        charger_voltage_v=config.bank.charger_voltage_v,
        source=_source(config, config.bank.source),
        links={name: link.settings() for name, link in config.links.items()},
        profile=sim.profile,
        power_w=sim.power_w,
        start_of_day_s=float(hours * 3600 + minutes * 60),
        speed=sim.speed,
        step_s=sim.step_s,
        seed=sim.seed,
        ambient_c=sim.ambient_c,
        faults=tuple(sim_fault(f) for f in sim.faults),
    )


def sim_fault(fault: FaultConfig) -> SimFault:
    return SimFault(
        at_s=fault.at_s,
        kind=fault.kind,
        battery=fault.battery,
        link=fault.link,
        value=fault.value,
        protection=fault.protection,
    )


def _source(config: Config, src: SourceConfig | None) -> SimSource | None:
    if src is None:
        return None
    info = PROTOCOLS.get(src.protocol)
    codec = None
    if info is not None and info.link_kind == "serial":
        codec = serial_codec_for(src.protocol, src.map, config.modbus_maps, config.source_dir)
    return SimSource(link=src.link, protocol=src.protocol, address=src.address, codec=codec)


async def simulate(
    config: Config, *, duration_s: float | None = None, speed: float | None = None
) -> int:
    """`bankwatch simulate`: serve the config's bank until SIGTERM, Ctrl-C or the duration."""
    bank = bank_description(config)
    stop = asyncio.Event()
    install_stop_signals(stop)
    return await serve(bank, stop, duration_s=duration_s, speed=speed)
