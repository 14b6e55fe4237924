"""Load and charge profiles: the bank's power demand as a pure function of the time of day.

Power is positive into the bank (charging), like current everywhere in bankwatch, so a profile
returns solar minus loads. The caller turns watts into amps with the bank voltage of the moment
(`demand_a = demand_w / voltage_v`) and hands that to `SimBank.step`; the charger's voltage limit
is the caller's business too, which is why a profile never needs to know the bank's state.

Time of day is seconds since local midnight; any float is folded into one day, so a scenario may
pass its elapsed simulated time directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Protocol

__all__ = [
    "DEFAULT_BANK_WH",
    "PROFILE_NAMES",
    "SECONDS_PER_DAY",
    "ConstantProfile",
    "DayProfile",
    "Profile",
    "profile_from_name",
]

SECONDS_PER_DAY = 86_400.0
# The DOMAIN example: two strings of 4 × 12.8 V 100 Ah LiFePO4, 48 V 200 Ah.
DEFAULT_BANK_WH = 10_240.0


class Profile(Protocol):
    def demand_w(self, t_of_day_s: float) -> float: ...


def _hour(t_of_day_s: float) -> float:
    return (t_of_day_s % SECONDS_PER_DAY) / 3600.0


def _in_window(hour: float, start_h: float, end_h: float) -> bool:
    # A window may wrap past midnight (a night load from 22:00 to 06:00).
    if start_h <= end_h:
        return start_h <= hour < end_h
    return hour >= start_h or hour < end_h


@dataclass(frozen=True, slots=True)
class DayProfile:
    """A day of solar charging and household load.

    Solar is a half-sine between sunrise and sunset (a clear day; the shape of irradiance on a
    fixed panel is close enough for a monitor's purposes). Loads are a constant base (fridge,
    router, inverter idle), a morning bump and an evening block, each a flat step: real loads
    switch on and off, and steps exercise the detectors' debounce better than smooth ramps.
    """

    solar_peak_w: float
    base_load_w: float
    evening_load_w: float
    morning_load_w: float
    sunrise_h: float = 7.0
    sunset_h: float = 19.0
    morning_start_h: float = 6.0
    morning_end_h: float = 8.5
    evening_start_h: float = 18.0
    evening_end_h: float = 23.0

    def __post_init__(self) -> None:
        for name in ("solar_peak_w", "base_load_w", "evening_load_w", "morning_load_w"):
            if getattr(self, name) < 0:
                raise ValueError(f"DayProfile.{name} must be >= 0, got {getattr(self, name)}")
        for f in fields(self):
            if f.name.endswith("_h") and not 0.0 <= getattr(self, f.name) <= 24.0:
                raise ValueError(f"DayProfile.{f.name} must be within 0..24 h")
        if not self.sunrise_h < self.sunset_h:
            raise ValueError("DayProfile: sunrise_h must come before sunset_h")

    @classmethod
    def for_bank(cls, bank_wh: float = DEFAULT_BANK_WH) -> DayProfile:
        """Defaults sized to the bank so one day swings SOC the way a real off-grid day does.

        In C-rate terms (watts per watt-hour of bank): solar peaks at 0.25 C, the evening block
        adds 0.10 C for five hours, the base load is 0.015 C around the clock and the morning bump
        0.05 C. Overnight (19:00 to 07:00) that draws about 0.6 of the bank, so a full bank wakes
        up near 40 %; the sun (about 1.9 bank-fulls on a clear day) refills it by early afternoon
        and the charger's voltage limit takes over, as on a real system with enough panel.
        """
        if bank_wh <= 0:
            raise ValueError(f"bank_wh must be > 0, got {bank_wh}")
        return cls(
            solar_peak_w=0.25 * bank_wh,
            base_load_w=0.015 * bank_wh,
            evening_load_w=0.10 * bank_wh,
            morning_load_w=0.05 * bank_wh,
        )

    def solar_w(self, t_of_day_s: float) -> float:
        hour = _hour(t_of_day_s)
        if not self.sunrise_h < hour < self.sunset_h:
            return 0.0
        phase = (hour - self.sunrise_h) / (self.sunset_h - self.sunrise_h)
        return self.solar_peak_w * math.sin(math.pi * phase)

    def load_w(self, t_of_day_s: float) -> float:
        hour = _hour(t_of_day_s)
        load = self.base_load_w
        if _in_window(hour, self.morning_start_h, self.morning_end_h):
            load += self.morning_load_w
        if _in_window(hour, self.evening_start_h, self.evening_end_h):
            load += self.evening_load_w
        return load

    def demand_w(self, t_of_day_s: float) -> float:
        return self.solar_w(t_of_day_s) - self.load_w(t_of_day_s)


@dataclass(frozen=True, slots=True)
class ConstantProfile:
    """The same power all day: positive charges, negative discharges."""

    power_w: float

    def demand_w(self, t_of_day_s: float) -> float:
        return self.power_w


PROFILE_NAMES = ("solar-day", "constant")


def profile_from_name(name: str, **params: float) -> Profile:
    """Build a profile from a config or CLI name.

    "solar-day" takes `bank_wh` (sizes the defaults, 10 240 Wh if absent) and any `DayProfile`
    field to override; "constant" takes `power_w` (0 if absent).
    """
    if name == "solar-day":
        bank_wh = params.pop("bank_wh", DEFAULT_BANK_WH)
        profile = DayProfile.for_bank(bank_wh)
        known = {f.name for f in fields(DayProfile)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"profile 'solar-day' has no parameter {', '.join(unknown)}")
        return replace(profile, **params) if params else profile
    if name == "constant":
        power_w = params.pop("power_w", 0.0)
        if params:
            raise ValueError(f"profile 'constant' has no parameter {', '.join(sorted(params))}")
        return ConstantProfile(power_w)
    raise ValueError(f"unknown profile {name!r}; known: {', '.join(PROFILE_NAMES)}")
