"""What one battery said at one moment, in units the rest of bankwatch uses.

Every field but the subject and time is optional because protocols differ: the Pylontech CAN
broadcast has no cell voltages, a JK BMS has no charge-voltage limit. Current is positive when
charging, whatever sign the wire uses; the codec fixes the sign. Current limits are positive
magnitudes whatever the wire says.

The field names are the canonical JSON names (`bankwatch decode` prints them, MQTT and InfluxDB
use them), so a name means the same thing everywhere.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields, replace
from typing import Any

__all__ = [
    "Alarm",
    "Protection",
    "Reading",
    "flag_names",
    "merge_readings",
]


class Protection(enum.Flag):
    """Protections a BMS reports as active: it has opened (or is about to open) a switch."""

    NONE = 0
    CELL_OVERVOLTAGE = enum.auto()
    CELL_UNDERVOLTAGE = enum.auto()
    CHARGE_OVERCURRENT = enum.auto()
    DISCHARGE_OVERCURRENT = enum.auto()
    OVER_TEMPERATURE = enum.auto()
    UNDER_TEMPERATURE = enum.auto()
    SHORT_CIRCUIT = enum.auto()
    SYSTEM_ERROR = enum.auto()
    # A protection bit the codec cannot name: still a protection (it raises `cutoff`); its
    # number is in the reading's `protections_active` ("unknown_bit_N").
    UNKNOWN = enum.auto()


class Alarm(enum.Flag):
    """Warnings a BMS reports before protection trips."""

    NONE = 0
    CELL_HIGH_VOLTAGE = enum.auto()
    CELL_LOW_VOLTAGE = enum.auto()
    CHARGE_HIGH_CURRENT = enum.auto()
    DISCHARGE_HIGH_CURRENT = enum.auto()
    HIGH_TEMPERATURE = enum.auto()
    LOW_TEMPERATURE = enum.auto()
    INTERNAL_COMMUNICATION = enum.auto()
    # SMA/Victron-profile CAN (0x35A) warns of these too.
    CELL_IMBALANCE = enum.auto()
    SYSTEM = enum.auto()
    # A warning bit the codec cannot name; its number is in `alarms_active`.
    UNKNOWN = enum.auto()


def flag_names(flags: enum.Flag | None) -> list[str]:
    """Lower-case names of the set members, for evidence, messages and JSON."""
    if flags is None:
        return []
    return [m.name.lower() for m in type(flags) if m.value and m in flags and m.name]


@dataclass(frozen=True, slots=True)
class Reading:
    """One battery (or the bank's master, subject "bank"), one moment.

    `at` is the daemon clock's monotonic time when the reading was complete; codecs that do not
    know the time leave it 0 and the driver stamps it.
    """

    subject: str = ""
    at: float = 0.0
    pack_voltage_v: float | None = None
    current_a: float | None = None
    soc_pct: float | None = None
    soh_pct: float | None = None
    remaining_ah: float | None = None
    full_charge_ah: float | None = None
    design_ah: float | None = None
    cycles: int | None = None
    cell_voltages_v: tuple[float, ...] | None = None
    # Protocols that send only the extremes (CAN 0x373) fill these; with cells they are derived.
    cell_voltage_min_v: float | None = None
    cell_voltage_max_v: float | None = None
    temperatures_c: tuple[float, ...] | None = None
    cell_temperature_min_c: float | None = None
    cell_temperature_max_c: float | None = None
    mosfet_temperature_c: float | None = None
    charge_voltage_limit_v: float | None = None
    discharge_voltage_limit_v: float | None = None
    charge_current_limit_a: float | None = None
    discharge_current_limit_a: float | None = None
    # Switch states: True = closed (current may flow), False = the BMS has opened it.
    charge_enabled: bool | None = None
    discharge_enabled: bool | None = None
    protections: Protection | None = None
    alarms: Alarm | None = None
    modules_online: int | None = None
    # Bank-level CAN broadcasts (0x372): modules that stopped talking or block a direction.
    modules_offline: int | None = None
    modules_blocking_charge: int | None = None
    modules_blocking_discharge: int | None = None
    # Which cell holds the extreme (CAN 0x374-0x377: an id string such as "Pack-01#" or "2").
    cell_voltage_min_id: str | None = None
    cell_voltage_max_id: str | None = None
    cell_temperature_min_id: str | None = None
    cell_temperature_max_id: str | None = None
    # Lifetime energy counters (CAN 0x378).
    charged_energy_kwh: float | None = None
    discharged_energy_kwh: float | None = None
    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None
    firmware: str | None = None
    # Protocol-specific facts with no canonical home (force-charge requests, raw flag bytes).
    extra: tuple[tuple[str, float | int | str | bool], ...] = field(default=())

    @property
    def power_w(self) -> float | None:
        if self.pack_voltage_v is None or self.current_a is None:
            return None
        return self.pack_voltage_v * self.current_a

    @property
    def temperature_c(self) -> float | None:
        """The hottest sensor: what protection and the user care about."""
        if self.temperatures_c:
            return max(self.temperatures_c)
        return self.cell_temperature_max_c

    @property
    def min_cell_v(self) -> float | None:
        if self.cell_voltages_v:
            return min(self.cell_voltages_v)
        return self.cell_voltage_min_v

    @property
    def max_cell_v(self) -> float | None:
        if self.cell_voltages_v:
            return max(self.cell_voltages_v)
        return self.cell_voltage_max_v

    def with_subject(self, subject: str, at: float | None = None) -> Reading:
        return replace(self, subject=subject, at=self.at if at is None else at)

    def to_json(self) -> dict[str, Any]:
        """The canonical JSON object: fields the reading does not carry are left out."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in ("subject", "at", "extra"):
                continue
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, enum.Flag):
                out[f.name] = flag_names(value)
            elif isinstance(value, tuple):
                out[f.name] = list(value)
            else:
                out[f.name] = value
        power = self.power_w
        if power is not None:
            out["power_w"] = round(power, 3)
        if self.cell_voltages_v:
            out.setdefault("cell_voltage_min_v", min(self.cell_voltages_v))
            out.setdefault("cell_voltage_max_v", max(self.cell_voltages_v))
        for key, val in self.extra:
            out[key] = val
        return out


def merge_readings(older: Reading, newer: Reading) -> Reading:
    """Fold `newer` over `older`: fields `newer` carries win, the rest are kept.

    Broadcast protocols spread one reading over several frames (0x351, 0x355, 0x356 ...), serial
    ones over several replies; this is how they become one.
    """
    changes: dict[str, Any] = {}
    for f in fields(newer):
        if f.name in ("subject", "extra"):
            continue
        value = getattr(newer, f.name)
        if value is not None:
            changes[f.name] = value
    if newer.extra:
        merged = dict(older.extra)
        merged.update(newer.extra)
        changes["extra"] = tuple(merged.items())
    return replace(older, **changes)
