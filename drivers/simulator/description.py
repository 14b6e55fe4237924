"""The simulated bank as the simulator sees it: plain frozen data, no config file behind it.

The daemon builds one from its config (bankwatch.daemon.simulation.bank_description); tests and
other programs may build one directly. Everything the physics, the fault schedule and the
served links need is here, and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from bankwatch.drivers.links.can import CanLinkSettings
from bankwatch.drivers.links.serial import SerialLinkSettings
from bankwatch.drivers.serial_codec import SerialCodec

__all__ = [
    "BankDescription",
    "FaultKind",
    "ProtectionName",
    "SimBattery",
    "SimFault",
    "SimSource",
]

# cutoff: the BMS trips (protection names the cause); silent: the battery stops talking;
# recover: undo both. disconnect / connect: the branch's isolator opens / closes (the BMS keeps
# talking). unplug: a serial link's adapter vanishes (its port closes and its path goes away);
# replug: it comes back, under the same path. The rest change the battery by a value.
FaultKind = Literal[
    "cutoff",
    "silent",
    "recover",
    "disconnect",
    "connect",
    "unplug",
    "replug",
    "capacity_fade",
    "cable_resistance",
    "cell_drift",
    "heating",
    "leak",
    "current_sensor_offset",
    "voltage_sensor_offset",
]

# The causes a simulated BMS can trip on (names of bankwatch.drivers.model.Protection).
ProtectionName = Literal[
    "cell_overvoltage",
    "cell_undervoltage",
    "charge_overcurrent",
    "discharge_overcurrent",
    "over_temperature",
    "under_temperature",
    "short_circuit",
    "system_error",
]


@dataclass(frozen=True, slots=True)
class SimSource:
    """Where a simulated device talks: its link, protocol and bus address."""

    link: str
    protocol: str
    address: int | None = None
    # Serial protocols: the codec the device answers requests with (None on CAN).
    codec: SerialCodec | None = None


@dataclass(frozen=True, slots=True)
class SimBattery:
    """One battery as installed. The optional physics fields left None take the physics'
    default for the chemistry and size."""

    name: str
    # A chemistry of bankwatch.drivers.chemistry (lifepo4, nmc, lto, agm, flooded, gel).
    chemistry: str
    capacity_ah: float
    nominal_voltage_v: float
    source: SimSource | None = None
    initial_soc_pct: float = 70.0
    temperature_c: float = 25.0
    capacity_factor: float | None = None
    internal_resistance_ohm: float | None = None
    cable_resistance_ohm: float | None = None
    # The battery as really built, when it differs from its nominal voltage.
    cell_count: int | None = None


@dataclass(frozen=True, slots=True)
class SimFault:
    """Something done to the bank `at_s` simulated seconds after the start."""

    at_s: float
    kind: FaultKind
    # The battery of a battery fault; the serial link of an unplug or replug.
    battery: str = ""
    link: str | None = None
    # The amount of a fault that changes the battery (capacity factor, ohms, points, ...).
    value: float | None = None
    protection: ProtectionName = "cell_undervoltage"


@dataclass(frozen=True, slots=True)
class BankDescription:
    """A bank of series strings in parallel, its links, the day it lives and its faults."""

    name: str
    chemistry: str
    strings: tuple[tuple[SimBattery, ...], ...]
    # The charger's setpoint; None: a typical one for the chemistry and cell count.
    charger_voltage_v: float | None = None
    # Bank-level totals (a master battery's broadcast).
    source: SimSource | None = None
    links: Mapping[str, CanLinkSettings | SerialLinkSettings] = field(default_factory=dict)
    profile: Literal["solar-day", "constant"] = "solar-day"
    # constant profile: bank power in watts, + charging.
    power_w: float = -500.0
    # Where in the day the simulated clock starts, in seconds after midnight.
    start_of_day_s: float = 8 * 3600.0
    speed: float = 1.0
    step_s: float = 1.0
    seed: int = 0
    ambient_c: float = 25.0
    faults: tuple[SimFault, ...] = ()

    def batteries(self) -> Iterator[SimBattery]:
        for string in self.strings:
            yield from string
