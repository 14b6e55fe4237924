"""Physics of a simulated battery bank: series strings of batteries, strings in parallel.

No I/O and no clock: the caller passes the step length and the demanded current, so a week of bank
life runs in seconds and the same seed gives the same bank every time.

The model, per battery:
- an open-circuit voltage from a per-chemistry OCV–SOC table (per cell, times the cell count);
- an internal resistance (rising in the cold) plus its share of the branch cabling;
- coulomb counting for SOC, and cycles from discharged Ah;
- cells with small fixed SOC and voltage offsets, so one cell reaches a limit before the average;
- a BMS (LiFePO4, NMC) with switches, thresholds and hysteresis; lead-acid has none;
- a lumped thermal mass heated by I²R and cooled toward ambient, and a MOSFET sensor above it.

Per bank: each string is the series sum of its batteries' OCVs and resistances; the strings meet
at one node whose voltage is solved so the branch currents add up to the bank current. A string
conducts in a direction only if every battery in it allows that direction (the current of a series
string passes every BMS); an open switch's MOSFET body diode still passes the other direction.

Numerical stability: the OCV's dependence on the charge moved during the step is folded into the
solve as an extra resistance (backward Euler on the cell's "capacitance" dQ/dV), so steep knees
and the top of charge stay stable at any step length from 0.1 s to a minute.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from bankwatch.drivers.model import Alarm, Protection, Reading

__all__ = [
    "CHEMISTRIES",
    "BankSnapshot",
    "BatterySpec",
    "BatteryState",
    "SimBank",
    "cell_ocv_v",
]

# --- chemistry ------------------------------------------------------------------------------------

# OCV tables: (SOC %, volts per cell) at rest, 25 °C. The table runs 2 % past each end: a full
# cell pushed on rises steeply (polarisation, the reason a CV charge tapers to a tail), an empty
# one pulled on collapses. That charge relaxes back to the 0–100 % range at rest and is never
# reported; within 0–100 % SOC is plain coulomb counting.
_LFP_OCV = (
    (-2.0, 1.80), (-1.0, 2.20), (0.0, 2.50), (2.0, 2.85), (5.0, 3.05), (10.0, 3.20),
    (15.0, 3.25), (20.0, 3.27), (30.0, 3.29), (40.0, 3.30), (50.0, 3.305), (60.0, 3.31),
    (70.0, 3.318), (80.0, 3.325), (90.0, 3.33), (95.0, 3.34), (98.0, 3.38), (100.0, 3.45),
    (100.5, 3.55), (101.0, 3.62), (101.5, 3.70), (102.0, 3.90),
)  # fmt: skip
_NMC_OCV = (
    (-2.0, 2.50), (-1.0, 2.80), (0.0, 3.00), (2.0, 3.20), (5.0, 3.35), (10.0, 3.45),
    (20.0, 3.55), (30.0, 3.62), (40.0, 3.67), (50.0, 3.73), (60.0, 3.80), (70.0, 3.87),
    (80.0, 3.95), (90.0, 4.05), (100.0, 4.15), (100.5, 4.20), (101.0, 4.25), (102.0, 4.40),
)  # fmt: skip
# Lead-acid per 2 V cell: 11.9 V (0 %) to 12.7 V (100 %) rest for a 12 V block, near linear; the
# top band is gassing (14.4 V absorption = 2.40 V/cell), the bottom the fall toward 10.5 V.
_LEAD_OCV = (
    (-2.0, 1.75), (-1.0, 1.90), (0.0, 1.983), (25.0, 2.017), (50.0, 2.05), (75.0, 2.083),
    (100.0, 2.117), (100.5, 2.30), (101.0, 2.40), (101.5, 2.48), (102.0, 2.60),
)  # fmt: skip

_SOC_MIN = -2.0
_SOC_MAX = 102.0
# The tables are resampled onto a uniform grid so a lookup is an index, not a search: step() runs
# millions of times in a week-long scenario. Every table knot is a multiple of the grid step, so
# interpolating the grid is exactly interpolating the table.
_GRID_PER_PCT = 20
_GRID_LAST = int((_SOC_MAX - _SOC_MIN) * _GRID_PER_PCT)


def _resample(points: tuple[tuple[float, float], ...]) -> tuple[float, ...]:
    out: list[float] = []
    j = 0
    for i in range(_GRID_LAST + 1):
        x = _SOC_MIN + i / _GRID_PER_PCT
        while j < len(points) - 2 and x > points[j + 1][0]:
            j += 1
        (x0, y0), (x1, y1) = points[j], points[j + 1]
        out.append(y0 + (y1 - y0) * (x - x0) / (x1 - x0))
    return tuple(out)


def _lookup(grid: tuple[float, ...], soc: float) -> float:
    x = (soc - _SOC_MIN) * _GRID_PER_PCT
    if x <= 0.0:
        return grid[0]
    if x >= _GRID_LAST:
        return grid[_GRID_LAST]
    i = int(x)
    y0 = grid[i]
    return y0 + (grid[i + 1] - y0) * (x - i)


@dataclass(frozen=True, slots=True)
class _Bms:
    """Thresholds of a BMS: per cell volts, °C, seconds. Trips at `*_trip`, releases at
    `*_release`; the gap is the hysteresis that keeps a switch from chattering."""

    ov_trip_v: float
    ov_release_v: float
    uv_trip_v: float
    uv_release_v: float
    cell_high_alarm_v: float
    cell_low_alarm_v: float
    # What the BMS tells the inverter to charge to and stop discharging at.
    charge_limit_v: float
    discharge_limit_v: float
    ot_charge_trip_c: float = 50.0
    ot_charge_release_c: float = 45.0
    ot_discharge_trip_c: float = 60.0
    ot_discharge_release_c: float = 50.0
    ut_charge_trip_c: float = 0.0
    ut_charge_release_c: float = 5.0
    ut_discharge_trip_c: float = -20.0
    ut_discharge_release_c: float = -15.0
    high_temp_alarm_c: float = 45.0
    low_temp_alarm_c: float = 5.0
    # Over-current must last longer than the delay (inrush and motor starts do not trip), then
    # the switch stays open for the release time, as common JK/Daly/Seplos defaults do.
    oc_delay_s: float = 5.0
    oc_release_s: float = 60.0
    # A short circuit trips at once, at this multiple of the discharge limit.
    short_circuit_factor: float = 4.0
    high_current_alarm_fraction: float = 0.9


@dataclass(frozen=True, slots=True)
class _Chemistry:
    cell_nominal_v: float
    grid: tuple[float, ...]
    # Pack resistance per cell of a 100 Ah battery, cells plus interconnects and BMS switches;
    # scales inversely with capacity (bigger cells, more parallel MOSFETs).
    r_cell_100ah_ohm: float
    # For the thermal mass: pack Wh per kg and J/(kg·K).
    wh_per_kg: float
    heat_capacity_j_per_kg_k: float
    # Charge stored per charge put in; lead-acid loses some to gassing even below full.
    charge_efficiency: float
    bms: _Bms | None


_LFP_BMS = _Bms(
    ov_trip_v=3.65,
    ov_release_v=3.40,
    uv_trip_v=2.50,
    uv_release_v=3.10,
    # 3.60 rather than 3.55: with a 3.55 V/cell absorption a healthy pack's top cell sits at
    # 3.55–3.59 V every sunny afternoon, and a warning that fires daily on a good bank is noise.
    cell_high_alarm_v=3.60,
    cell_low_alarm_v=2.80,
    charge_limit_v=3.55,
    discharge_limit_v=3.00,
)
_NMC_BMS = _Bms(
    ov_trip_v=4.25,
    ov_release_v=4.10,
    uv_trip_v=2.80,
    uv_release_v=3.20,
    cell_high_alarm_v=4.20,
    cell_low_alarm_v=3.00,
    charge_limit_v=4.15,
    discharge_limit_v=3.20,
    ot_charge_trip_c=45.0,
    ot_charge_release_c=40.0,
    high_temp_alarm_c=42.0,
)

CHEMISTRIES: dict[str, _Chemistry] = {
    "lifepo4": _Chemistry(3.2, _resample(_LFP_OCV), 0.0020, 90.0, 1100.0, 1.0, _LFP_BMS),
    "nmc": _Chemistry(3.7, _resample(_NMC_OCV), 0.0016, 150.0, 1000.0, 1.0, _NMC_BMS),
    "lead-acid": _Chemistry(2.0, _resample(_LEAD_OCV), 0.0009, 35.0, 850.0, 0.90, None),
}

_CHEM_CODE = {"lifepo4": "LFP", "nmc": "NMC", "lead-acid": "PB"}


def cell_ocv_v(chemistry: str, soc_pct: float) -> float:
    """Rest voltage of one cell at `soc_pct` (0–100) and 25 °C."""
    return _lookup(_chemistry(chemistry).grid, min(100.0, max(0.0, soc_pct)))


def _chemistry(name: str) -> _Chemistry:
    try:
        return CHEMISTRIES[name]
    except KeyError:
        known = ", ".join(sorted(CHEMISTRIES))
        raise ValueError(f"unknown chemistry {name!r}; known: {known}") from None


# Resistance rises in the cold (electrolyte conductivity, charge-transfer kinetics): about 2 % per
# kelvin, doubling near -10 °C; the floor keeps a hot battery from looking like a superconductor.
_R_TEMP_COEFF = 0.02
_R_TEMP_MIN_FACTOR = 0.6
# Surface charge past 100 % (or below 0 %) relaxes back with this time constant at rest; at a
# held charge voltage it sets the tail current (0.5 % of capacity per hour at 3.55 V/cell LFP).
_RELAX_TAU_S = 3600.0
# Per-cell SOC spread (± %) and the matching voltage offset (V per % of spread): a few mV on the
# plateau, tens of mV on the knees, as a real pack without fresh top balancing shows.
_CELL_SOC_SPREAD_PCT = 0.2
_CELL_V_PER_SPREAD_PCT = 0.010
_SENSOR_SPREAD_C = 0.4
# MOSFET board: its share of the pack resistance at 100 Ah, its heatsink conductance and time
# constant (a small aluminium plate: minutes, not hours).
_FET_R_100AH_OHM = 0.0010
_FET_G_W_PER_K = 0.8
_FET_TAU_S = 120.0
# Surface cooling of a battery case: W/K per kg^(2/3); gives a thermal time constant of two to
# three hours for 12–50 kg packs, about what a boxed battery on a shelf has.
_COOLING_W_PER_K_KG23 = 0.35


# --- public data ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatterySpec:
    """One battery as installed. Optional fields left None take a default for the chemistry and
    size, so a spec needs only a name, a chemistry, a capacity and a voltage."""

    name: str
    chemistry: str
    capacity_ah: float
    nominal_voltage_v: float
    internal_resistance_ohm: float | None = None
    # This battery's share of its branch cabling (lugs, busbar, fuse): in series with it.
    cable_resistance_ohm: float = 0.0005
    initial_soc_pct: float = 80.0
    # 0.8 = an aged battery holding 80 % of its rating.
    capacity_factor: float = 1.0
    temperature_c: float = 25.0
    cell_count: int | None = None
    max_charge_current_a: float | None = None
    max_discharge_current_a: float | None = None
    initial_cycles: int = 0


@dataclass(frozen=True, slots=True)
class BatteryState:
    """A battery's true state at the end of the last step (not rounded, not a BMS's view)."""

    name: str
    string: int
    voltage_v: float
    ocv_v: float
    current_a: float
    soc_pct: float
    temperature_c: float
    mosfet_temperature_c: float | None
    cell_min_v: float
    cell_max_v: float
    full_charge_ah: float
    cycles: int
    charge_enabled: bool
    discharge_enabled: bool
    protections: Protection
    alarms: Alarm


@dataclass(frozen=True, slots=True)
class BankSnapshot:
    """The whole bank after the last step. `string_voltages_v` is the sum of the string's battery
    terminal voltages; it differs from `bank_voltage_v` by the string's cable drop."""

    elapsed_s: float
    bank_voltage_v: float
    bank_current_a: float
    string_currents_a: tuple[float, ...]
    string_voltages_v: tuple[float, ...]
    batteries: tuple[BatteryState, ...]

    def battery(self, name: str) -> BatteryState:
        for b in self.batteries:
            if b.name == name:
                return b
        raise KeyError(f"no battery {name!r} in the bank")


# --- one battery ----------------------------------------------------------------------------------

# Which switch each protection opens: (charge, discharge).
_OPENS: dict[Protection, tuple[bool, bool]] = {
    Protection.CELL_OVERVOLTAGE: (True, False),
    Protection.CELL_UNDERVOLTAGE: (False, True),
    Protection.CHARGE_OVERCURRENT: (True, False),
    Protection.DISCHARGE_OVERCURRENT: (False, True),
    Protection.OVER_TEMPERATURE: (True, True),
    Protection.UNDER_TEMPERATURE: (True, False),
    Protection.SHORT_CIRCUIT: (False, True),
    Protection.SYSTEM_ERROR: (True, True),
}


class _Battery:
    __slots__ = (
        "a_fet",
        "a_relax",
        "a_temp",
        "ambient_offset_c",
        "bms",
        "cable_ohm",
        "capacity_factor",
        "cell_d",
        "cell_max_v",
        "cell_min_v",
        "cell_v",
        "charge_on",
        "current_a",
        "cycles0",
        "d_max",
        "d_min",
        "discharge_on",
        "discharged_ah",
        "dt_s",
        "emf_v",
        "eta",
        "fet_c",
        "forced",
        "full_ah",
        "g_cool",
        "grid",
        "heat_cap",
        "i_offset_a",
        "isolated",
        "k_pct_per_a",
        "leak_a",
        "max_charge_a",
        "max_discharge_a",
        "n",
        "name",
        "oc_c_t",
        "oc_d_t",
        "occ",
        "ocd",
        "otc",
        "otd",
        "ov",
        "r25_ohm",
        "r_fet_ohm",
        "r_ohm",
        "sc_t",
        "scd",
        "sensor_offsets",
        "slope_v",
        "soc",
        "spec",
        "string",
        "temp_c",
        "utc",
        "utd",
        "uv",
        "v_max_off",
        "v_min_off",
        "v_offset_v",
        "voltage_v",
    )

    def __init__(self, spec: BatterySpec, string: int, rng: random.Random) -> None:
        chem = _chemistry(spec.chemistry)
        if spec.capacity_ah <= 0:
            raise ValueError(f"{spec.name}: capacity_ah must be > 0")
        if spec.nominal_voltage_v <= 0:
            raise ValueError(f"{spec.name}: nominal_voltage_v must be > 0")
        if not 0.0 <= spec.initial_soc_pct <= 100.0:
            raise ValueError(f"{spec.name}: initial_soc_pct must be within 0..100")
        if spec.cable_resistance_ohm < 0:
            raise ValueError(f"{spec.name}: cable_resistance_ohm must be >= 0")
        n = spec.cell_count
        if n is None:
            n = round(spec.nominal_voltage_v / chem.cell_nominal_v)
        if n < 1:
            raise ValueError(f"{spec.name}: cell_count must be >= 1")
        r25 = spec.internal_resistance_ohm
        if r25 is None:
            r25 = n * chem.r_cell_100ah_ohm * 100.0 / spec.capacity_ah
        if r25 <= 0:
            raise ValueError(f"{spec.name}: internal_resistance_ohm must be > 0")

        self.spec = spec
        self.name = spec.name
        self.string = string
        self.grid = chem.grid
        self.bms = chem.bms
        self.n = n
        self.eta = chem.charge_efficiency
        self.r25_ohm = r25
        self.r_ohm = r25
        self.cable_ohm = spec.cable_resistance_ohm
        self.capacity_factor = 1.0
        self.full_ah = spec.capacity_ah
        self.set_capacity_factor(spec.capacity_factor)
        # Without a BMS nothing limits current; inf makes every over-current test false.
        lithium = chem.bms is not None
        self.max_charge_a = float(
            spec.max_charge_current_a
            if spec.max_charge_current_a is not None
            else (spec.capacity_ah if lithium else math.inf)
        )
        self.max_discharge_a = float(
            spec.max_discharge_current_a
            if spec.max_discharge_current_a is not None
            else (spec.capacity_ah if lithium else math.inf)
        )
        self.cycles0 = spec.initial_cycles
        self.discharged_ah = 0.0

        # Cells: zero-mean SOC offsets; the voltage offset follows the SOC offset so the
        # fullest cell is always the highest one and two lookups find both extremes.
        raw = [rng.uniform(-_CELL_SOC_SPREAD_PCT, _CELL_SOC_SPREAD_PCT) for _ in range(n)]
        mean = sum(raw) / n
        self.cell_d = tuple(d - mean for d in raw)
        self.cell_v = tuple(d * _CELL_V_PER_SPREAD_PCT for d in self.cell_d)
        self.d_max = max(self.cell_d)
        self.d_min = min(self.cell_d)
        self.v_max_off = self.d_max * _CELL_V_PER_SPREAD_PCT
        self.v_min_off = self.d_min * _CELL_V_PER_SPREAD_PCT
        sensors = max(2, n // 4)
        self.sensor_offsets = tuple(
            rng.uniform(-_SENSOR_SPREAD_C, _SENSOR_SPREAD_C) for _ in range(sensors)
        )

        # Thermal: lumped mass from the pack's energy.
        mass_kg = spec.capacity_ah * spec.nominal_voltage_v / chem.wh_per_kg
        self.heat_cap = mass_kg * chem.heat_capacity_j_per_kg_k
        self.g_cool = _COOLING_W_PER_K_KG23 * mass_kg ** (2.0 / 3.0)
        self.r_fet_ohm = _FET_R_100AH_OHM * 100.0 / spec.capacity_ah if lithium else 0.0
        self.temp_c = spec.temperature_c
        self.fet_c = spec.temperature_c
        self.r_ohm = self._r_at(self.temp_c)

        self.soc = spec.initial_soc_pct
        self.current_a = 0.0
        self.dt_s = -1.0
        self.k_pct_per_a = 0.0
        self.a_temp = self.a_fet = self.a_relax = 1.0
        self._set_emf()
        self.voltage_v = self.emf_v
        self.cell_max_v = self.cell_min_v = self.emf_v / n

        self.forced = Protection.NONE
        self.ov = self.uv = self.occ = self.ocd = self.scd = False
        self.otc = self.otd = self.utc = self.utd = False
        self.oc_c_t = self.oc_d_t = self.sc_t = 0.0
        self.charge_on = self.discharge_on = True

        # Injected faults beyond a BMS trip (see SimBank's fault methods).
        self.leak_a = 0.0
        self.ambient_offset_c = 0.0
        self.isolated = False
        self.i_offset_a = 0.0
        self.v_offset_v = 0.0

    # -- state helpers

    def set_cell_offset(self, offset_pct: float) -> None:
        """One cell (the first) sits `offset_pct` SOC points away from the pack's mean: a weak or
        self-discharging cell. The others keep their small spread."""
        d = list(self.cell_d)
        d[0] = offset_pct
        self.cell_d = tuple(d)
        # The cell's voltage follows its own SOC on the OCV curve; its small fixed voltage
        # offset (`cell_v`) is the one it had. The extremes are the cells with the extreme SOC.
        i_max = max(range(self.n), key=d.__getitem__)
        i_min = min(range(self.n), key=d.__getitem__)
        self.d_max = d[i_max]
        self.d_min = d[i_min]
        self.v_max_off = self.cell_v[i_max]
        self.v_min_off = self.cell_v[i_min]

    def set_capacity_factor(self, factor: float) -> None:
        if not 0.0 < factor <= 1.5:
            raise ValueError(f"{self.name}: capacity_factor must be within (0, 1.5], got {factor}")
        self.capacity_factor = factor
        self.full_ah = float(self.spec.capacity_ah * factor)
        self.dt_s = -1.0  # the %-per-amp factor depends on it

    def _r_at(self, temp_c: float) -> float:
        factor = math.exp(_R_TEMP_COEFF * (25.0 - temp_c))
        return self.r25_ohm * (factor if factor > _R_TEMP_MIN_FACTOR else _R_TEMP_MIN_FACTOR)

    def _set_emf(self) -> None:
        grid = self.grid
        x = (self.soc - _SOC_MIN) * _GRID_PER_PCT
        i = int(x)
        if i >= _GRID_LAST:
            i = _GRID_LAST - 1
        y0 = grid[i]
        dy = grid[i + 1] - y0
        self.emf_v = self.n * (y0 + dy * (x - i))
        # V per % SOC for the whole battery; the tables are strictly increasing, so > 0.
        self.slope_v = self.n * dy * _GRID_PER_PCT

    def set_dt(self, dt_s: float) -> None:
        self.dt_s = dt_s
        self.k_pct_per_a = dt_s * 100.0 / (self.full_ah * 3600.0)
        self.a_temp = math.exp(-dt_s * self.g_cool / self.heat_cap)
        self.a_fet = math.exp(-dt_s / _FET_TAU_S)
        self.a_relax = math.exp(-dt_s / _RELAX_TAU_S)

    def relax(self) -> None:
        """Let charge past either end of the table relax back over this step, before the solve,
        so the solve sees the OCV the step starts from (relaxing after the coulomb count would
        make the CV tail depend on the step length)."""
        soc = self.soc
        if soc > 100.0:
            self.soc = 100.0 + (soc - 100.0) * self.a_relax
            self._set_emf()
        elif soc < 0.0:
            self.soc = soc * self.a_relax
            self._set_emf()

    def r_step(self) -> float:
        """Resistance the node solve sees for this step: ohmic plus the OCV's rise with the charge
        the step moves (backward Euler), so a steep knee cannot overshoot."""
        return self.r_ohm + self.slope_v * self.k_pct_per_a + self.cable_ohm

    # -- one step

    def advance(self, current_a: float, dt_s: float, ambient_c: float) -> None:
        # `current_a` is the string's; a leak (a load tapped off this battery alone) is drawn on
        # top of it, so this battery's own current is the string's minus the leak.
        current_a -= self.leak_a
        ambient_c += self.ambient_offset_c
        self.current_a = current_a
        # The terminal voltage the solve assumed: consistent with the node voltage to rounding.
        v = self.emf_v + current_a * (self.r_ohm + self.slope_v * self.k_pct_per_a)
        self.voltage_v = v

        if current_a > 0.0:
            soc = self.soc + current_a * self.k_pct_per_a * self.eta
        else:
            soc = self.soc + current_a * self.k_pct_per_a
            self.discharged_ah -= current_a * dt_s / 3600.0
        if soc > _SOC_MAX:
            soc = _SOC_MAX
        elif soc < _SOC_MIN:
            soc = _SOC_MIN
        self.soc = soc
        self._set_emf()

        n = self.n
        grid = self.grid
        ocv_cell = self.emf_v / n
        per_cell = v / n
        self.cell_max_v = per_cell + self.v_max_off + _lookup(grid, soc + self.d_max) - ocv_cell
        self.cell_min_v = per_cell + self.v_min_off + _lookup(grid, soc + self.d_min) - ocv_cell

        # Heat: I²R into the lumped mass (exact exponential step toward the steady state).
        i2 = current_a * current_a
        t_ss = ambient_c + i2 * self.r_ohm / self.g_cool
        temp = t_ss + (self.temp_c - t_ss) * self.a_temp
        self.temp_c = temp
        fet_ss = temp + i2 * self.r_fet_ohm / _FET_G_W_PER_K
        self.fet_c = fet_ss + (self.fet_c - fet_ss) * self.a_fet
        self.r_ohm = self._r_at(temp)

        if self.bms is not None:
            self._protect(self.bms, current_a, dt_s)

    def _protect(self, bms: _Bms, current_a: float, dt_s: float) -> None:
        cmax = self.cell_max_v
        cmin = self.cell_min_v
        temp = self.temp_c

        if self.ov:
            self.ov = cmax > bms.ov_release_v
        else:
            self.ov = cmax >= bms.ov_trip_v
        # While the discharge switch is open for under-voltage, charge still flows (body diode,
        # and most BMS close the FET once they see charge current); the latch itself holds until
        # the cells recover, so a weak battery does not chatter on every step.
        if self.uv:
            self.uv = cmin < bms.uv_release_v
        else:
            self.uv = cmin <= bms.uv_trip_v

        if self.occ:
            self.oc_c_t += dt_s
            if self.oc_c_t >= bms.oc_release_s:
                self.occ = False
                self.oc_c_t = 0.0
        elif current_a > self.max_charge_a:
            self.oc_c_t += dt_s
            if self.oc_c_t > bms.oc_delay_s:
                self.occ = True
                self.oc_c_t = 0.0
        else:
            self.oc_c_t = 0.0

        if self.scd:
            self.sc_t += dt_s
            if self.sc_t >= bms.oc_release_s:
                self.scd = False
                self.sc_t = 0.0
        elif -current_a > self.max_discharge_a * bms.short_circuit_factor:
            self.scd = True
            self.sc_t = 0.0
        if self.ocd:
            self.oc_d_t += dt_s
            if self.oc_d_t >= bms.oc_release_s:
                self.ocd = False
                self.oc_d_t = 0.0
        elif -current_a > self.max_discharge_a and not self.scd:
            self.oc_d_t += dt_s
            if self.oc_d_t > bms.oc_delay_s:
                self.ocd = True
                self.oc_d_t = 0.0
        else:
            self.oc_d_t = 0.0

        if self.otc:
            self.otc = temp > bms.ot_charge_release_c
        else:
            self.otc = temp >= bms.ot_charge_trip_c
        if self.otd:
            self.otd = temp > bms.ot_discharge_release_c
        else:
            self.otd = temp >= bms.ot_discharge_trip_c
        if self.utc:
            self.utc = temp < bms.ut_charge_release_c
        else:
            self.utc = temp <= bms.ut_charge_trip_c
        if self.utd:
            self.utd = temp < bms.ut_discharge_release_c
        else:
            self.utd = temp <= bms.ut_discharge_trip_c

        self._set_switches()

    def _set_switches(self) -> None:
        if self.bms is None:
            self.charge_on = self.discharge_on = True
            return
        forced_c = forced_d = False
        if self.forced:
            for flag, (opens_c, opens_d) in _OPENS.items():
                if flag in self.forced:
                    forced_c = forced_c or opens_c
                    forced_d = forced_d or opens_d
        self.charge_on = not (self.ov or self.occ or self.otc or self.utc or forced_c)
        self.discharge_on = not (
            self.uv or self.ocd or self.scd or self.otd or self.utd or forced_d
        )

    # -- views

    @property
    def soc_pct(self) -> float:
        soc = self.soc
        return 100.0 if soc > 100.0 else (0.0 if soc < 0.0 else soc)

    @property
    def cycles(self) -> int:
        return self.cycles0 + int(self.discharged_ah / self.full_ah)

    def protections(self) -> Protection:
        p = self.forced
        if self.ov:
            p |= Protection.CELL_OVERVOLTAGE
        if self.uv:
            p |= Protection.CELL_UNDERVOLTAGE
        if self.occ:
            p |= Protection.CHARGE_OVERCURRENT
        if self.ocd:
            p |= Protection.DISCHARGE_OVERCURRENT
        if self.scd:
            p |= Protection.SHORT_CIRCUIT
        if self.otc or self.otd:
            p |= Protection.OVER_TEMPERATURE
        if self.utc or self.utd:
            p |= Protection.UNDER_TEMPERATURE
        return p

    def alarms(self) -> Alarm:
        bms = self.bms
        a = Alarm.NONE
        if bms is None:
            return a
        if self.cell_max_v >= bms.cell_high_alarm_v:
            a |= Alarm.CELL_HIGH_VOLTAGE
        if self.cell_min_v <= bms.cell_low_alarm_v:
            a |= Alarm.CELL_LOW_VOLTAGE
        frac = bms.high_current_alarm_fraction
        if self.current_a > frac * self.max_charge_a:
            a |= Alarm.CHARGE_HIGH_CURRENT
        if -self.current_a > frac * self.max_discharge_a:
            a |= Alarm.DISCHARGE_HIGH_CURRENT
        temps = self.sensor_temps()
        if max(max(temps), self.fet_c) >= bms.high_temp_alarm_c:
            a |= Alarm.HIGH_TEMPERATURE
        if min(temps) <= bms.low_temp_alarm_c:
            a |= Alarm.LOW_TEMPERATURE
        return a

    def sensor_temps(self) -> tuple[float, ...]:
        return tuple(self.temp_c + off for off in self.sensor_offsets)

    def cell_voltages(self) -> tuple[float, ...]:
        grid = self.grid
        soc = self.soc
        base = self.voltage_v / self.n - _lookup(grid, soc)
        return tuple(
            [
                base + v_off + _lookup(grid, soc + d)
                for d, v_off in zip(self.cell_d, self.cell_v, strict=True)
            ]
        )

    def limits(self) -> tuple[float, float, float, float] | None:
        """(charge V, discharge V, charge A, discharge A) as the BMS would advertise them."""
        bms = self.bms
        if bms is None:
            return None
        ccl = self.max_charge_a if self.charge_on else 0.0
        dcl = self.max_discharge_a if self.discharge_on else 0.0
        # Real BMS throttle the inverter before they have to cut it off.
        if self.cell_max_v >= bms.cell_high_alarm_v:
            ccl *= 0.1
        if self.cell_min_v <= bms.cell_low_alarm_v:
            dcl *= 0.1
        if self.temp_c <= bms.low_temp_alarm_c:
            ccl *= 0.5
        return (self.n * bms.charge_limit_v, self.n * bms.discharge_limit_v, ccl, dcl)

    def state(self) -> BatteryState:
        return BatteryState(
            name=self.name,
            string=self.string,
            voltage_v=self.voltage_v,
            ocv_v=self.emf_v,
            current_a=self.current_a,
            soc_pct=self.soc_pct,
            temperature_c=self.temp_c,
            mosfet_temperature_c=self.fet_c if self.bms is not None else None,
            cell_min_v=self.cell_min_v,
            cell_max_v=self.cell_max_v,
            full_charge_ah=self.full_ah,
            cycles=self.cycles,
            charge_enabled=self.charge_on,
            discharge_enabled=self.discharge_on,
            protections=self.protections(),
            alarms=self.alarms(),
        )


# --- the node solve -------------------------------------------------------------------------------

# Which way a string can conduct.
_NONE, _CHARGE_ONLY, _DISCHARGE_ONLY, _BOTH = 0, 1, 2, 3


def _branch_current(v: float, emf: float, g: float, mode: int) -> float:
    i = g * (v - emf)
    if mode == _BOTH:
        return i
    if mode == _CHARGE_ONLY:
        return i if i > 0.0 else 0.0
    if mode == _DISCHARGE_ONLY:
        return i if i < 0.0 else 0.0
    return 0.0


def _bank_current(v: float, emf: list[float], g: list[float], mode: list[int]) -> float:
    return sum(_branch_current(v, e, gk, m) for e, gk, m in zip(emf, g, mode, strict=True))


def _solve_node(emf: list[float], g: list[float], mode: list[int], target_a: float) -> float:
    """The node voltage at which the branch currents add up to `target_a` (which must be
    reachable). The bank current is a non-decreasing, piecewise-linear function of the node
    voltage, with kinks at the OCVs of strings that conduct one way only."""
    if all(m == _BOTH for m in mode):
        return (target_a + sum(gk * e for gk, e in zip(g, emf, strict=True))) / sum(g)
    if target_a == 0.0 and _BOTH not in mode:
        # Without a two-way string the zero-current set can be an interval: below the lowest
        # charge-only OCV nothing charges, above the highest discharge-only OCV nothing
        # discharges. The bus floats there; a meter reads the highest OCV that fits.
        below = max((e for e, m in zip(emf, mode, strict=True) if m == _DISCHARGE_ONLY),
                    default=-math.inf)  # fmt: skip
        above = min((e for e, m in zip(emf, mode, strict=True) if m == _CHARGE_ONLY),
                    default=math.inf)  # fmt: skip
        if below <= above:
            return min(max(max(emf), below), above)
    one_way = (_CHARGE_ONLY, _DISCHARGE_ONLY)
    kinks = sorted({e for e, m in zip(emf, mode, strict=True) if m in one_way})
    for lo, hi in itertools.pairwise([-math.inf, *kinks, math.inf]):
        sg = sge = 0.0
        for e, gk, m in zip(emf, g, mode, strict=True):
            if m == _BOTH or (m == _CHARGE_ONLY and e <= lo) or (m == _DISCHARGE_ONLY and e >= hi):
                sg += gk
                sge += gk * e
        if sg == 0.0:
            continue
        v = (target_a + sge) / sg
        # The tolerance covers rounding when the answer sits exactly on a kink.
        if lo - 1e-9 <= v <= hi + 1e-9:
            return v
    # Only reachable targets come here (the caller checks), so this is rounding at a kink.
    return kinks[-1] if target_a > 0 else kinks[0]


# --- the bank -------------------------------------------------------------------------------------


class SimBank:
    """A series-parallel bank: `strings` are connected in parallel, the batteries of a string in
    series. `ambient_c` is the air the batteries cool toward (an attribute: a scenario may change
    it between steps); `seed` fixes the cell and sensor offsets, the only randomness there is."""

    def __init__(
        self,
        strings: Sequence[Sequence[BatterySpec]],
        *,
        ambient_c: float = 25.0,
        seed: int = 0,
    ) -> None:
        if not strings or any(not s for s in strings):
            raise ValueError("a bank needs at least one string and every string a battery")
        rng = random.Random(seed)
        self._strings: list[list[_Battery]] = [
            [_Battery(spec, k, rng) for spec in string] for k, string in enumerate(strings)
        ]
        self._all = [b for s in self._strings for b in s]
        self._by_name = {b.name: b for b in self._all}
        if len(self._by_name) != len(self._all):
            raise ValueError("battery names must be unique within a bank")
        self.names: tuple[str, ...] = tuple(b.name for b in self._all)
        self.ambient_c = ambient_c
        self._elapsed_s = 0.0
        self._voltage_v = 0.0
        self._current_a = 0.0
        self._string_currents: list[float] = [0.0] * len(self._strings)
        # Settle the terminal state without moving time: at rest, strings at different OCVs
        # already show their circulating current.
        self.step(0.0, 0.0)

    # -- stepping

    def step(self, dt_s: float, demand_a: float, *, charge_voltage_v: float | None = None) -> None:
        """Advance `dt_s` seconds with `demand_a` at the bank terminals (+ charging).

        With `charge_voltage_v` set, a charging demand is held back to the current that keeps the
        bank voltage at that limit (constant current, then constant voltage). A demand no string
        can carry (every string's discharge switch open, say) leaves the bank current at 0.
        """
        if dt_s < 0.0:
            raise ValueError("dt_s must be >= 0")
        for b in self._all:
            if b.dt_s != dt_s:
                b.set_dt(dt_s)
            b.relax()

        emf: list[float] = []
        g: list[float] = []
        mode: list[int] = []
        for string in self._strings:
            e = r = 0.0
            can_c = can_d = True
            for b in string:
                rb = b.r_step()
                # A leak on one battery lowers its terminal voltage by its own drop.
                e += b.emf_v - b.leak_a * rb if b.leak_a else b.emf_v
                r += rb
                can_c = can_c and b.charge_on and not b.isolated
                can_d = can_d and b.discharge_on and not b.isolated
            emf.append(e)
            g.append(1.0 / r)
            mode.append((_CHARGE_ONLY if can_c else 0) | (_DISCHARGE_ONLY if can_d else 0))

        target = demand_a
        # A demand no string can carry is not met at all: the load or charger drops out.
        way = _CHARGE_ONLY if target > 0.0 else _DISCHARGE_ONLY
        if target != 0.0 and not any(m & way for m in mode):
            target = 0.0
        v = _solve_node(emf, g, mode, target)
        if charge_voltage_v is not None and target > 0.0 and v > charge_voltage_v:
            if _bank_current(charge_voltage_v, emf, g, mode) >= 0.0:
                v = charge_voltage_v
            else:
                # The bank rests above the charger's voltage on its own: the charger idles.
                v = _solve_node(emf, g, mode, 0.0)

        currents = [_branch_current(v, e, gk, m) for e, gk, m in zip(emf, g, mode, strict=True)]
        ambient = self.ambient_c
        for string, i in zip(self._strings, currents, strict=True):
            for b in string:
                b.advance(i, dt_s, ambient)
        self._voltage_v = v
        self._current_a = sum(currents)
        self._string_currents = currents
        self._elapsed_s += dt_s

    # -- faults

    def trip(self, name: str, protection: Protection) -> None:
        """Force a BMS cutoff with this cause until `reset`: opens the switch(es) that protection
        opens (charge for over-voltage, discharge for under-voltage, both for temperature ...)."""
        b = self._battery(name)
        if b.bms is None:
            raise ValueError(f"{name}: a {b.spec.chemistry} battery has no BMS to trip")
        if not protection:
            raise ValueError("trip needs a protection flag, not Protection.NONE")
        b.forced |= protection
        b._set_switches()

    def reset(self, name: str) -> None:
        """Clear a forced trip; protections the battery's own state holds stay until released."""
        b = self._battery(name)
        b.forced = Protection.NONE
        b._set_switches()

    def set_capacity_factor(self, name: str, factor: float) -> None:
        """Age a battery: it keeps its SOC in %, so its remaining Ah shrink with the factor."""
        self._battery(name).set_capacity_factor(factor)

    def set_cable_resistance(self, name: str, ohm: float) -> None:
        if ohm < 0:
            raise ValueError(f"{name}: cable resistance must be >= 0")
        self._battery(name).cable_ohm = ohm

    def set_cell_offset(self, name: str, offset_pct: float) -> None:
        """One cell of the battery drifts `offset_pct` SOC points from the others (negative: a
        weak cell that empties first and pulls the cell spread open near the knees)."""
        if not -50.0 <= offset_pct <= 50.0:
            raise ValueError(f"{name}: a cell offset must be within -50..50 points")
        self._battery(name).set_cell_offset(offset_pct)

    def set_leak(self, name: str, amps: float) -> None:
        """A load tapped off this battery alone (a 12 V device wired to one battery of a 48 V
        string): it discharges this battery and no other, and its BMS sees the extra current."""
        self._battery(name).leak_a = amps

    def set_heating(self, name: str, kelvin: float) -> None:
        """The air around this battery is `kelvin` warmer (or colder) than the bank's: a heater,
        an engine, sun on one side of the rack, or a failing cell's own heat."""
        self._battery(name).ambient_offset_c = kelvin

    def set_isolated(self, name: str, isolated: bool) -> None:
        """Open (or close) the isolator of the battery's branch: the whole string stops
        conducting while the BMS keeps talking and its switches stay closed."""
        self._battery(name).isolated = isolated

    def set_sensor_offsets(
        self, name: str, *, current_a: float | None = None, voltage_v: float | None = None
    ) -> None:
        """A BMS that measures wrong: its reported current and pack voltage are off by these."""
        b = self._battery(name)
        if current_a is not None:
            b.i_offset_a = current_a
        if voltage_v is not None:
            b.v_offset_v = voltage_v

    # -- views

    @property
    def voltage_v(self) -> float:
        """Bank terminal voltage after the last step (cheap; for converting watts to amps)."""
        return self._voltage_v

    @property
    def current_a(self) -> float:
        return self._current_a

    @property
    def elapsed_s(self) -> float:
        return self._elapsed_s

    def string_of(self, name: str) -> int:
        return self._battery(name).string

    def snapshot(self) -> BankSnapshot:
        return BankSnapshot(
            elapsed_s=self._elapsed_s,
            bank_voltage_v=self._voltage_v,
            bank_current_a=self._current_a,
            string_currents_a=tuple(self._string_currents),
            string_voltages_v=tuple(sum(b.voltage_v for b in s) for s in self._strings),
            batteries=tuple(b.state() for b in self._all),
        )

    def reading(self, name: str, at: float) -> Reading:
        """The battery as its BMS would report it, rounded as a BMS does (mV, 0.1 A, 0.1 °C).
        A lead-acid battery has no BMS: this is what a shunt monitor beside it would show."""
        b = self._battery(name)
        spec = b.spec
        soc = b.soc_pct
        chem = _CHEM_CODE[spec.chemistry]
        common: dict[str, Any] = {
            "subject": name,
            "at": at,
            "pack_voltage_v": round(b.voltage_v + b.v_offset_v, 3),
            "current_a": round(b.current_a + b.i_offset_a, 1),
            "soc_pct": round(soc, 1),
            "remaining_ah": round(soc / 100.0 * b.full_ah, 2),
            "full_charge_ah": round(b.full_ah, 2),
            "design_ah": float(spec.capacity_ah),
            "temperatures_c": tuple([round(t, 1) for t in b.sensor_temps()]),
            "manufacturer": "bankwatch",
            "model": f"SIM-{chem}-{spec.nominal_voltage_v:g}V-{spec.capacity_ah:g}Ah",
            "serial": f"SIM-{name}",
        }
        limits = b.limits()
        if limits is None:
            return Reading(**common)
        cvl, dvl, ccl, dcl = limits
        # One constructor call, not a replace() of a base reading: a week of a 64-pack rack
        # asks for millions of these.
        return Reading(
            **common,
            soh_pct=round(min(100.0, 100.0 * b.capacity_factor), 1),
            cycles=b.cycles,
            cell_voltages_v=tuple([round(c, 3) for c in b.cell_voltages()]),
            mosfet_temperature_c=round(b.fet_c, 1),
            charge_voltage_limit_v=round(cvl, 3),
            discharge_voltage_limit_v=round(dvl, 3),
            charge_current_limit_a=round(ccl, 1),
            discharge_current_limit_a=round(dcl, 1),
            charge_enabled=b.charge_on,
            discharge_enabled=b.discharge_on,
            protections=b.protections(),
            alarms=b.alarms(),
        )

    def bank_reading(self, at: float) -> Reading:
        """What a master battery's CAN broadcast says for the whole bank: the bank's voltage and
        summed current, the weakest string's SOC (a series string is as full as its emptiest
        battery), limits a string at a time (a string takes what its most limited battery
        allows; strings add), and the OR of every battery's protections and alarms."""
        strings = self._strings
        batteries = self._all
        temps = [t for b in batteries for t in b.sensor_temps()]
        base = Reading(
            subject="bank",
            at=at,
            pack_voltage_v=round(self._voltage_v, 3),
            current_a=round(self._current_a, 1),
            soc_pct=round(min(min(b.soc_pct for b in s) for s in strings), 1),
            remaining_ah=round(
                sum(min(b.soc_pct / 100.0 * b.full_ah for b in s) for s in strings), 2
            ),
            full_charge_ah=round(sum(min(b.full_ah for b in s) for s in strings), 2),
            design_ah=float(sum(min(b.spec.capacity_ah for b in s) for s in strings)),
            cell_voltage_min_v=round(min(b.cell_min_v for b in batteries), 3),
            cell_voltage_max_v=round(max(b.cell_max_v for b in batteries), 3),
            cell_temperature_min_c=round(min(temps), 1),
            cell_temperature_max_c=round(max(temps), 1),
            modules_online=len(batteries),
            manufacturer="bankwatch",
            model="SIM-BANK",
        )
        per_string: list[tuple[float, float, float, float]] = []
        for s in strings:
            lims = [lim for lim in (b.limits() for b in s) if lim is not None]
            if len(lims) != len(s):
                # Any battery without a BMS: nobody on the bank speaks for limits or flags.
                return base
            per_string.append(
                (
                    sum(lim[0] for lim in lims),
                    sum(lim[1] for lim in lims),
                    min(lim[2] for lim in lims),
                    min(lim[3] for lim in lims),
                )
            )
        protections = Protection.NONE
        alarms = Alarm.NONE
        for b in batteries:
            protections |= b.protections()
            alarms |= b.alarms()
        return replace(
            base,
            soh_pct=round(min(100.0, 100.0 * min(b.capacity_factor for b in batteries)), 1),
            cycles=max(b.cycles for b in batteries),
            mosfet_temperature_c=round(max(b.fet_c for b in batteries), 1),
            # A charger target must not overcharge the shortest string; the inverter must stop
            # before the longest string's cells are empty.
            charge_voltage_limit_v=round(min(p[0] for p in per_string), 3),
            discharge_voltage_limit_v=round(max(p[1] for p in per_string), 3),
            charge_current_limit_a=round(sum(p[2] for p in per_string), 1),
            discharge_current_limit_a=round(sum(p[3] for p in per_string), 1),
            charge_enabled=any(all(b.charge_on for b in s) for s in strings),
            discharge_enabled=any(all(b.discharge_on for b in s) for s in strings),
            protections=protections,
            alarms=alarms,
        )

    def _battery(self, name: str) -> _Battery:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no battery {name!r} in the bank") from None
