"""The bank as wired: bank → series strings (in parallel) → batteries, and the state it is in.

`Topology` is built once from the config and holds the nominal figures. `Topology.fold` takes
the latest Reading of each battery and the time, and returns a `BankState`: per string and bank
voltage, current, SOC and energy, obeying the physics of the wiring:

- in a series string the voltages add, one current flows through all, and the battery with the
  least charge governs (it reaches cutoff first and its BMS opens the whole string);
- strings in parallel share one voltage and their currents add;
- so the bank's SOC is the charge left in each string (its weakest battery) weighted by string
  capacity, not a mean of battery SOCs.

A reading older than its battery's stale time is kept for display as stale but never counted as
live. Time is passed in; nothing here reads a clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from bankwatch.daemon.config import Config, ModelConfig, SourceConfig
from bankwatch.drivers.chemistry import CELL_NOMINAL_V
from bankwatch.drivers.model import Reading

__all__ = [
    "IDLE_C_RATE",
    "BankState",
    "BatteryNode",
    "BatteryState",
    "StringNode",
    "StringState",
    "Topology",
]


@dataclass(frozen=True, slots=True)
class BatteryNode:
    name: str
    path: str  # bank/string/battery: the subject of its alerts and topics
    string: str
    position: int  # 0 = at the string's negative end
    model_name: str
    model: ModelConfig
    source: SourceConfig | None
    stale_after_s: float

    @property
    def cells(self) -> int:
        """Cells in series, from the model's voltage and chemistry (a 12.8 V LiFePO4 has 4)."""
        m = self.model
        return max(1, round(m.nominal_voltage_v / CELL_NOMINAL_V[m.chemistry]))


@dataclass(frozen=True, slots=True)
class StringNode:
    name: str
    path: str
    batteries: tuple[BatteryNode, ...]
    # Derived from the batteries once (the detectors ask for them every tick).
    nominal_voltage_v: float = field(init=False)
    capacity_ah: float = field(init=False)  # the smallest battery limits a series string
    cells: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "nominal_voltage_v", sum(b.model.nominal_voltage_v for b in self.batteries)
        )
        object.__setattr__(self, "capacity_ah", min(b.model.capacity_ah for b in self.batteries))
        object.__setattr__(self, "cells", sum(b.cells for b in self.batteries))

    @property
    def energy_wh(self) -> float:
        return self.nominal_voltage_v * self.capacity_ah


# Below this C-rate a battery, string or bank counts as idle: "time to empty" at a trickle is
# a number of weeks nobody can use, and the sign of a near-zero current is noise.
IDLE_C_RATE = 0.005


def _hours_to(ah: float | None, current_a: float | None, sign: int, capacity_ah: float) -> float:
    """Seconds until `ah` is moved at `current_a` flowing in direction `sign` (+1 charging,
    -1 discharging); NaN when idle or flowing the other way (the caller turns it into None)."""
    if ah is None or current_a is None or current_a * sign < IDLE_C_RATE * capacity_ah:
        return math.nan
    return max(0.0, ah) / abs(current_a) * 3600.0


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else x


@dataclass(frozen=True, slots=True)
class BatteryState:
    node: BatteryNode
    reading: Reading | None  # the last reading, live or stale
    live: bool
    age_s: float | None

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def path(self) -> str:
        return self.node.path

    @property
    def energy_wh(self) -> float | None:
        r = self.reading if self.live else None
        if r is None:
            return None
        if r.remaining_ah is not None and r.pack_voltage_v is not None:
            return r.remaining_ah * r.pack_voltage_v
        if r.soc_pct is not None:
            return self.node.model.capacity_ah * self.node.model.nominal_voltage_v * r.soc_pct / 100
        return None

    # --- metrics, from the live reading only (a stale battery has none) ----------------------

    @property
    def capacity_ah(self) -> float:
        """What the battery holds when full: the BMS's full-charge capacity (it shrinks as the
        battery ages), else the rating scaled by SOH, else the rating."""
        r = self.reading if self.live else None
        rated = self.node.model.capacity_ah
        if r is not None and r.full_charge_ah:
            return r.full_charge_ah
        if r is not None and r.soh_pct:
            return rated * r.soh_pct / 100
        return rated

    @property
    def remaining_ah(self) -> float | None:
        r = self.reading if self.live else None
        if r is None:
            return None
        if r.remaining_ah is not None:
            return r.remaining_ah
        if r.soc_pct is not None:
            return self.capacity_ah * r.soc_pct / 100
        return None

    @property
    def current_a(self) -> float | None:
        r = self.reading if self.live else None
        return None if r is None else r.current_a

    @property
    def c_rate(self) -> float | None:
        """|current| over the rated capacity: 0.5 = half a C."""
        i = self.current_a
        return None if i is None else abs(i) / self.node.model.capacity_ah

    @property
    def time_to_empty_s(self) -> float | None:
        """At the present discharge current; None when idle or charging."""
        return _none_if_nan(
            _hours_to(self.remaining_ah, self.current_a, -1, self.node.model.capacity_ah)
        )

    @property
    def time_to_full_s(self) -> float | None:
        """At the present charge current; None when idle or discharging."""
        rem = self.remaining_ah
        headroom = None if rem is None else self.capacity_ah - rem
        return _none_if_nan(_hours_to(headroom, self.current_a, +1, self.node.model.capacity_ah))


@dataclass(frozen=True, slots=True)
class StringState:
    node: StringNode
    batteries: tuple[BatteryState, ...]
    voltage_v: float | None  # sum of the live batteries' voltages, when all are live
    current_a: float | None  # + charging; what the live batteries agree flows through the string
    soc_pct: float | None  # the weakest live battery's SOC
    energy_wh: float | None  # what the string can deliver before its weakest battery is empty
    live: int  # batteries heard from in time
    # The charge the string can deliver (its emptiest battery's) and take (its fullest
    # battery's room): a series string stops at whichever battery gets there first.
    remaining_ah: float | None = None
    headroom_ah: float | None = None

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def c_rate(self) -> float | None:
        i = self.current_a
        return None if i is None else abs(i) / self.node.capacity_ah

    @property
    def time_to_empty_s(self) -> float | None:
        return _none_if_nan(_hours_to(self.remaining_ah, self.current_a, -1, self.node.capacity_ah))

    @property
    def time_to_full_s(self) -> float | None:
        return _none_if_nan(_hours_to(self.headroom_ah, self.current_a, +1, self.node.capacity_ah))

    @property
    def path(self) -> str:
        return self.node.path

    @property
    def complete(self) -> bool:
        return self.live == len(self.batteries)


@dataclass(frozen=True, slots=True)
class BankState:
    at: float
    name: str
    strings: tuple[StringState, ...]
    voltage_v: float | None
    current_a: float | None
    soc_pct: float | None
    energy_wh: float | None
    bank_reading: Reading | None  # from the bank-level source, when configured and live
    # Summed over the strings (strings in parallel add their charge); None with a string unknown.
    remaining_ah: float | None = None
    headroom_ah: float | None = None
    capacity_ah: float = 0.0  # rated: the sum of the strings' (each its smallest battery's)

    @property
    def c_rate(self) -> float | None:
        if self.current_a is None or not self.capacity_ah:
            return None
        return abs(self.current_a) / self.capacity_ah

    @property
    def time_to_empty_s(self) -> float | None:
        """At the present bank current, with the strings sharing it as they do now."""
        return _none_if_nan(_hours_to(self.remaining_ah, self.current_a, -1, self.capacity_ah))

    @property
    def time_to_full_s(self) -> float | None:
        return _none_if_nan(_hours_to(self.headroom_ah, self.current_a, +1, self.capacity_ah))

    def metrics(self) -> dict[str, dict[str, float | None]]:
        """Energy left, time to empty and to full, C-rate and SOC per bank, string and battery,
        by subject path: what sinks publish and the demo summary prints."""
        out: dict[str, dict[str, float | None]] = {
            self.name: _metrics(
                self.soc_pct,
                self.energy_wh,
                self.remaining_ah,
                self.c_rate,
                self.time_to_empty_s,
                self.time_to_full_s,
            )
        }
        for s in self.strings:
            out[s.path] = _metrics(
                s.soc_pct,
                s.energy_wh,
                s.remaining_ah,
                s.c_rate,
                s.time_to_empty_s,
                s.time_to_full_s,
            )
            for b in s.batteries:
                r = b.reading if b.live else None
                out[b.path] = _metrics(
                    None if r is None else r.soc_pct,
                    b.energy_wh,
                    b.remaining_ah,
                    b.c_rate,
                    b.time_to_empty_s,
                    b.time_to_full_s,
                )
        return out

    @property
    def power_w(self) -> float | None:
        if self.voltage_v is None or self.current_a is None:
            return None
        return self.voltage_v * self.current_a

    def batteries(self) -> tuple[BatteryState, ...]:
        return tuple(b for s in self.strings for b in s.batteries)

    def battery(self, name: str) -> BatteryState:
        for b in self.batteries():
            if b.name == name:
                return b
        raise KeyError(name)


def _metrics(
    soc: float | None,
    energy: float | None,
    remaining: float | None,
    c_rate: float | None,
    to_empty: float | None,
    to_full: float | None,
) -> dict[str, float | None]:
    def r(x: float | None, nd: int) -> float | None:
        return None if x is None else round(x, nd)

    return {
        "soc_pct": r(soc, 1),
        "energy_wh": r(energy, 0),
        "remaining_ah": r(remaining, 2),
        "c_rate": r(c_rate, 3),
        "time_to_empty_s": r(to_empty, 0),
        "time_to_full_s": r(to_full, 0),
    }


class Topology:
    """The bank's wiring, from config; folds readings into BankState."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.name = config.bank.name
        strings: list[StringNode] = []
        for s in config.strings:
            path = f"{self.name}/{s.name}"
            nodes = tuple(
                BatteryNode(
                    name=b.name,
                    path=f"{path}/{b.name}",
                    string=s.name,
                    position=i,
                    model_name=b.model,
                    model=config.models[b.model],
                    source=b.source,
                    stale_after_s=b.stale_after_s or config.detect.link_lost_after_s,
                )
                for i, b in enumerate(s.batteries)
            )
            strings.append(StringNode(name=s.name, path=path, batteries=nodes))
        self.strings: tuple[StringNode, ...] = tuple(strings)
        self._by_name = {b.name: b for s in self.strings for b in s.batteries}
        self._capacity_ah = sum(s.capacity_ah for s in self.strings)

    # --- nominal figures ---------------------------------------------------------------------

    @property
    def series_count(self) -> int:
        return max(len(s.batteries) for s in self.strings)

    @property
    def parallel_count(self) -> int:
        return len(self.strings)

    @property
    def nominal_voltage_v(self) -> float:
        # Strings in parallel share a voltage; with unequal strings (a wiring error `check`
        # reports) the highest one is what the bus sits at.
        return max(s.nominal_voltage_v for s in self.strings)

    @property
    def capacity_ah(self) -> float:
        return sum(s.capacity_ah for s in self.strings)

    @property
    def energy_wh(self) -> float:
        return sum(s.energy_wh for s in self.strings)

    @property
    def shape(self) -> str:
        """ "4S2P"-style description."""
        counts = {len(s.batteries) for s in self.strings}
        series = "/".join(str(c) for c in sorted(counts))
        return f"{series}S{self.parallel_count}P"

    def battery(self, name: str) -> BatteryNode:
        return self._by_name[name]

    def batteries(self) -> tuple[BatteryNode, ...]:
        return tuple(self._by_name.values())

    # --- folding readings --------------------------------------------------------------------

    def fold(
        self,
        readings: Mapping[str, Reading],
        now: float,
        bank_reading: Reading | None = None,
        bank_stale_after_s: float | None = None,
    ) -> BankState:
        """The bank at `now` from each battery's latest reading (by battery name)."""
        strings = tuple(self._fold_string(s, readings, now) for s in self.strings)
        if bank_reading is not None:
            limit = bank_stale_after_s or self.config.detect.link_lost_after_s
            if now - bank_reading.at > limit:
                bank_reading = None

        voltages = [s.voltage_v for s in strings if s.voltage_v is not None]
        currents = [s.current_a for s in strings if s.current_a is not None]
        all_strings_known = len(currents) == len(strings)
        voltage = sum(voltages) / len(voltages) if voltages else None
        current = sum(currents) if all_strings_known else None
        if bank_reading is not None:
            # A bank-level meter measures the totals directly; it wins over the sum.
            if bank_reading.pack_voltage_v is not None:
                voltage = bank_reading.pack_voltage_v
            if bank_reading.current_a is not None:
                current = bank_reading.current_a

        energies = [s.energy_wh for s in strings]
        energy = sum(e for e in energies if e is not None) if None not in energies else None
        soc = self._bank_soc(strings)
        if soc is None and bank_reading is not None:
            soc = bank_reading.soc_pct
        rem = [s.remaining_ah for s in strings]
        room = [s.headroom_ah for s in strings]
        return BankState(
            at=now,
            name=self.name,
            strings=strings,
            voltage_v=voltage,
            current_a=current,
            soc_pct=soc,
            energy_wh=energy,
            bank_reading=bank_reading,
            remaining_ah=None if None in rem else sum(x for x in rem if x is not None),
            headroom_ah=None if None in room else sum(x for x in room if x is not None),
            capacity_ah=self._capacity_ah,
        )

    def _fold_string(
        self, node: StringNode, readings: Mapping[str, Reading], now: float
    ) -> StringState:
        states: list[BatteryState] = []
        for b in node.batteries:
            r = readings.get(b.name)
            if r is None:
                states.append(BatteryState(node=b, reading=None, live=False, age_s=None))
                continue
            age = now - r.at
            states.append(BatteryState(node=b, reading=r, live=age <= b.stale_after_s, age_s=age))
        live = [s.reading for s in states if s.live and s.reading is not None]
        complete = len(live) == len(states)

        volts = [r.pack_voltage_v for r in live if r.pack_voltage_v is not None]
        voltage = sum(volts) if complete and len(volts) == len(states) else None
        # One current flows through a series string; each BMS measures it. The mean of what
        # they say is the best estimate (a disagreement is a detector's business, not ours).
        amps = [r.current_a for r in live if r.current_a is not None]
        current = sum(amps) / len(amps) if amps else None

        socs = [r.soc_pct for r in live if r.soc_pct is not None]
        soc = min(socs) if complete and len(socs) == len(states) else None
        energy = remaining = headroom = None
        if soc is not None:
            rems = [b.remaining_ah for b in states]
            if None not in rems:
                caps = [b.capacity_ah for b in states]
                remaining = min(x for x in rems if x is not None)
                headroom = min(c - (x or 0.0) for c, x in zip(caps, rems, strict=True))
            else:
                remaining = node.capacity_ah * soc / 100
                headroom = node.capacity_ah - remaining
            energy = node.nominal_voltage_v * remaining
        return StringState(
            node=node,
            batteries=tuple(states),
            voltage_v=voltage,
            current_a=current,
            soc_pct=soc,
            energy_wh=energy,
            live=len(live),
            remaining_ah=remaining,
            headroom_ah=headroom,
        )

    @staticmethod
    def _bank_soc(strings: tuple[StringState, ...]) -> float | None:
        known = [s for s in strings if s.soc_pct is not None]
        if not known or len(known) != len(strings):
            return None
        total_ah = sum(s.node.capacity_ah for s in known)
        return sum(s.soc_pct * s.node.capacity_ah for s in known if s.soc_pct is not None) / (
            total_ah
        )
