"""The `[simulation]` table of the config file: the simulated day, per-battery physics and the
scheduled faults. Only `bankwatch simulate`, `demo` and the scenario runner read it; the
simulator itself takes a BankDescription (bankwatch.daemon.simulation builds it).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from bankwatch.daemon.config_base import PositiveFloat, Strict
from bankwatch.drivers.simulator.description import FaultKind, ProtectionName

__all__ = ["FAULT_VALUES", "FaultConfig", "SimBatteryConfig", "SimulationConfig"]


class SimBatteryConfig(Strict):
    initial_soc_pct: Annotated[float, Field(ge=0, le=100)] | None = None
    capacity_factor: Annotated[float, Field(gt=0, le=1.5)] | None = None
    internal_resistance_ohm: PositiveFloat | None = None
    cable_resistance_ohm: Annotated[float, Field(ge=0)] | None = None
    temperature_c: float | None = None
    # The battery as really built, when it differs from its model (a 24 V battery where the
    # config says 12 V).
    cell_count: Annotated[int, Field(ge=1, le=64)] | None = None


# Fault kinds that need a `value`, and what it means.
FAULT_VALUES: dict[str, str] = {
    "capacity_fade": "capacity factor, 0.8 = 80 % of the rating left",
    "cable_resistance": "the battery's cable resistance in ohms",
    "cell_drift": "one cell's SOC offset in percentage points (negative: a weak cell)",
    "heating": "kelvin the battery's surroundings are above the bank's ambient",
    "leak": "amps drawn from this battery alone",
    "current_sensor_offset": "amps the BMS's current reading is off by",
    "voltage_sensor_offset": "volts the BMS's pack voltage reading is off by",
}


class FaultConfig(Strict):
    at_s: Annotated[float, Field(ge=0)]
    # The battery of a cutoff, silent or recover fault.
    battery: str = ""
    # cutoff: the BMS trips (protection names the cause); silent: the battery stops talking;
    # recover: undo both. disconnect / connect: the branch's isolator opens / closes (the BMS
    # keeps talking). unplug: a serial link's adapter vanishes (its port closes and its path
    # goes away); replug: it comes back, under the same path. The rest change the battery by
    # `value` (see FAULT_VALUES).
    kind: FaultKind
    value: float | None = None
    # The serial link of an unplug or replug fault.
    link: str | None = None
    protection: ProtectionName = "cell_undervoltage"

    @model_validator(mode="after")
    def _target(self) -> FaultConfig:
        if self.kind in ("unplug", "replug"):
            if self.link is None:
                raise ValueError(f"a {self.kind} fault needs link (a serial link's name)")
        elif not self.battery:
            raise ValueError(f"a {self.kind} fault needs battery")
        return self

    @model_validator(mode="after")
    def _value_fits_kind(self) -> FaultConfig:
        meaning = FAULT_VALUES.get(self.kind)
        if meaning is None:
            if self.value is not None:
                raise ValueError(f"fault kind {self.kind!r} takes no value")
            return self
        if self.value is None:
            raise ValueError(f"fault kind {self.kind!r} needs a value: {meaning}")
        if self.kind == "capacity_fade" and not 0 < self.value <= 1.5:
            raise ValueError("capacity_fade value must be within (0, 1.5]")
        if self.kind == "cable_resistance" and self.value < 0:
            raise ValueError("cable_resistance value must be >= 0")
        if self.kind == "cell_drift" and not -50 <= self.value <= 50:
            raise ValueError("cell_drift value must be within -50..50 points")
        return self


class SimulationConfig(Strict):
    profile: Literal["solar-day", "constant"] = "solar-day"
    # constant profile: bank power in watts, + charging.
    power_w: float = -500.0
    # Where in the day the simulated clock starts, as "HH:MM".
    start_time: Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")] = "08:00"
    speed: PositiveFloat = 1.0
    step_s: PositiveFloat = 1.0
    seed: int = 0
    initial_soc_pct: Annotated[float, Field(ge=0, le=100)] = 70.0
    # The air the batteries cool toward (and start at, unless a battery says otherwise).
    ambient_c: Annotated[float, Field(ge=-40, le=70)] = 25.0
    batteries: dict[str, SimBatteryConfig] = Field(default_factory=dict)
    faults: list[FaultConfig] = Field(default_factory=list)
