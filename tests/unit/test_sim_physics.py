"""The simulator's physics: series and parallel wiring, Ohm's law between branches, coulomb
counting, BMS cutoffs and what they do to a series string, the charger's voltage limit, a week of
solar days on a healthy bank, and determinism. Also the load profiles."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from bankwatch.drivers.model import Alarm, Protection
from bankwatch.drivers.simulator.physics import (
    BankSnapshot,
    BatterySpec,
    SimBank,
    cell_ocv_v,
)
from bankwatch.drivers.simulator.profile import (
    ConstantProfile,
    DayProfile,
    profile_from_name,
)

R_INT = 0.008  # a 12.8 V 100 Ah LFP pack, explicit so Ohm's-law checks do not lean on defaults


def lfp(name: str, **kw: Any) -> BatterySpec:
    return BatterySpec(name, "lifepo4", 100.0, 12.8, **kw)


def bank(series: int, parallel: int, *, seed: int = 0, **kw: Any) -> SimBank:
    """Strings A, B, ... of batteries A1..An: the naming a real install label would use."""
    strings = [
        [lfp(f"{chr(ord('A') + p)}{s + 1}", **kw) for s in range(series)] for p in range(parallel)
    ]
    return SimBank(strings, seed=seed)


def string_of(snap: BankSnapshot, k: int) -> list[float]:
    return [b.current_a for b in snap.batteries if b.string == k]


# --- chemistry ------------------------------------------------------------------------------------


def test_lfp_ocv_curve_has_a_flat_plateau_and_steep_knees() -> None:
    assert cell_ocv_v("lifepo4", 0) == pytest.approx(2.50)
    assert cell_ocv_v("lifepo4", 100) == pytest.approx(3.45)
    # 20–90 %: within 70 mV; the last 5 % at either end moves more than that.
    assert cell_ocv_v("lifepo4", 90) - cell_ocv_v("lifepo4", 20) < 0.07
    assert cell_ocv_v("lifepo4", 100) - cell_ocv_v("lifepo4", 95) > 0.1
    assert cell_ocv_v("lifepo4", 10) - cell_ocv_v("lifepo4", 0) > 0.5
    assert 3.29 <= cell_ocv_v("lifepo4", 50) <= 3.33
    socs = [x / 2 for x in range(201)]
    for chem in ("lifepo4", "nmc", "lead-acid"):
        ocv = [cell_ocv_v(chem, s) for s in socs]
        assert all(b > a for a, b in itertools.pairwise(ocv)), chem
    assert 6 * cell_ocv_v("lead-acid", 0) == pytest.approx(11.9, abs=0.05)
    assert 6 * cell_ocv_v("lead-acid", 100) == pytest.approx(12.7, abs=0.05)


# --- wiring ---------------------------------------------------------------------------------------


def test_series_voltages_add_and_series_currents_agree() -> None:
    b = bank(4, 1, internal_resistance_ohm=R_INT)
    rest = b.snapshot()
    assert rest.bank_voltage_v == pytest.approx(4 * 4 * cell_ocv_v("lifepo4", 80), abs=1e-6)

    b.step(1.0, -40.0)
    snap = b.snapshot()
    assert snap.bank_current_a == pytest.approx(-40.0)
    assert string_of(snap, 0) == pytest.approx([-40.0] * 4)
    cable = 4 * 0.0005
    # Bank = the batteries' terminal voltages in series plus the cable drop (Ohm's law).
    assert snap.string_voltages_v[0] == pytest.approx(sum(x.voltage_v for x in snap.batteries))
    assert snap.bank_voltage_v == pytest.approx(snap.string_voltages_v[0] - 40.0 * cable, abs=1e-9)
    for x in snap.batteries:
        assert x.voltage_v == pytest.approx(x.ocv_v + (-40.0) * R_INT, abs=2e-3)
    # 48 V nominal: four 12.8 V batteries in series.
    assert 50.0 < snap.bank_voltage_v < 54.0


def test_parallel_branch_currents_add_to_the_bank_current() -> None:
    b = bank(2, 3, internal_resistance_ohm=R_INT)
    for demand in (-90.0, 45.0, -3.0):
        b.step(1.0, demand)
        snap = b.snapshot()
        assert sum(snap.string_currents_a) == pytest.approx(demand, abs=1e-9)
        assert snap.bank_current_a == pytest.approx(demand, abs=1e-9)
        # Equal strings share equally.
        assert snap.string_currents_a == pytest.approx([demand / 3] * 3, abs=1e-9)


def test_double_cable_resistance_carries_less_by_ohms_law() -> None:
    b = SimBank(
        [
            [lfp("A1", internal_resistance_ohm=R_INT, cable_resistance_ohm=0.001)],
            [lfp("B1", internal_resistance_ohm=R_INT, cable_resistance_ohm=0.002)],
        ]
    )
    b.step(0.1, -100.0)
    snap = b.snapshot()
    i_a, i_b = snap.string_currents_a
    assert i_a + i_b == pytest.approx(-100.0, abs=1e-9)
    r_a, r_b = R_INT + 0.001, R_INT + 0.002
    # Same OCV, same node voltage: currents split inversely to the branch resistance.
    assert i_a / i_b == pytest.approx(r_b / r_a, rel=1e-4)
    assert i_a == pytest.approx(-100.0 * r_b / (r_a + r_b), rel=1e-4)
    ocv = snap.battery("A1").ocv_v
    assert snap.bank_voltage_v == pytest.approx(ocv + i_a * r_a, abs=1e-3)
    # The harder-working branch heats more.
    for _ in range(360):
        b.step(10.0, -100.0)
    snap = b.snapshot()
    assert snap.battery("A1").temperature_c > snap.battery("B1").temperature_c > 25.0
    assert snap.battery("A1").soc_pct < snap.battery("B1").soc_pct


def test_strings_at_different_ocv_circulate_current_at_zero_load() -> None:
    b = SimBank(
        [
            [lfp("A1", initial_soc_pct=5.0, internal_resistance_ohm=R_INT)],
            [lfp("B1", initial_soc_pct=95.0, internal_resistance_ohm=R_INT)],
        ]
    )
    snap = b.snapshot()
    i_a, i_b = snap.string_currents_a
    assert snap.bank_current_a == pytest.approx(0.0, abs=1e-9)
    expected = (snap.battery("B1").ocv_v - snap.battery("A1").ocv_v) / (2 * (R_INT + 0.0005))
    assert i_a == pytest.approx(expected, rel=1e-3)
    assert i_a > 5.0 and i_b == pytest.approx(-i_a)


# --- coulomb counting -----------------------------------------------------------------------------


@pytest.mark.parametrize("current_a", [10.0, -10.0])
def test_an_hour_at_10_a_moves_a_100_ah_battery_by_10_points(current_a: float) -> None:
    b = SimBank([[lfp("A1", initial_soc_pct=50.0)]])
    for _ in range(360):
        b.step(10.0, current_a)
    assert b.snapshot().battery("A1").soc_pct == pytest.approx(50.0 + current_a, abs=1e-6)
    # The same Ah in 0.1 s steps lands in the same place.
    fine = SimBank([[lfp("A1", initial_soc_pct=50.0)]])
    for _ in range(36_000):
        fine.step(0.1, current_a)
    assert fine.snapshot().battery("A1").soc_pct == pytest.approx(50.0 + current_a, abs=1e-6)


def test_cycles_count_discharged_capacity() -> None:
    b = SimBank([[lfp("A1", initial_soc_pct=100.0, capacity_factor=0.5)]])
    for _ in range(2):
        for _ in range(45):
            b.step(60.0, -50.0)  # 37.5 Ah out of a 50 Ah battery
        for _ in range(45):
            b.step(60.0, 50.0)
    assert b.reading("A1", 0.0).cycles == 1  # 75 Ah discharged / 50 Ah


# --- BMS cutoffs ----------------------------------------------------------------------------------


def test_aged_battery_in_a_series_string_trips_first_and_the_other_string_carries_on() -> None:
    strings = [
        [lfp(f"{c}{s + 1}", capacity_factor=0.7 if (c, s) == ("A", 1) else 1.0) for s in range(4)]
        for c in "AB"
    ]
    b = SimBank(strings)
    demand = -50.0
    for _ in range(2000):
        b.step(10.0, demand)
        if b.snapshot().battery("A2").protections:
            break
    snap = b.snapshot()
    aged = snap.battery("A2")
    assert aged.protections == Protection.CELL_UNDERVOLTAGE
    assert not aged.discharge_enabled and aged.charge_enabled
    # It got there first: its siblings in the same string still hold a good share.
    assert aged.soc_pct < 2.0
    assert all(snap.battery(n).soc_pct > 15.0 for n in ("A1", "A3", "A4"))
    assert not any(x.protections for x in snap.batteries if x.name != "A2")
    reading = b.reading("A2", 1.0)
    assert reading.discharge_enabled is False
    assert reading.protections == Protection.CELL_UNDERVOLTAGE
    assert reading.min_cell_v is not None and reading.min_cell_v <= 2.5 + 0.001
    assert reading.alarms is not None and Alarm.CELL_LOW_VOLTAGE in reading.alarms
    # The open switch stops the whole series string; string B takes the whole load.
    b.step(10.0, demand)
    snap = b.snapshot()
    assert snap.string_currents_a[0] == 0.0
    assert string_of(snap, 0) == [0.0] * 4
    assert snap.string_currents_a[1] == pytest.approx(demand)
    assert snap.bank_current_a == pytest.approx(demand)
    bank = b.bank_reading(2.0)
    assert bank.protections == Protection.CELL_UNDERVOLTAGE
    assert bank.discharge_enabled is True  # string B still can
    assert bank.discharge_current_limit_a == pytest.approx(100.0)  # only string B's limit


def test_trip_opens_the_switch_and_reset_closes_it() -> None:
    b = bank(2, 2)
    b.trip("A2", Protection.CELL_UNDERVOLTAGE)
    r = b.reading("A2", 0.0)
    assert r.discharge_enabled is False and r.charge_enabled is True
    assert r.protections == Protection.CELL_UNDERVOLTAGE
    assert r.discharge_current_limit_a == 0.0
    b.step(1.0, -60.0)
    snap = b.snapshot()
    assert snap.string_currents_a == pytest.approx((0.0, -60.0))
    # Body diode: the string still takes charge through the open discharge switch (a hair more
    # than half, since string B has just given a little charge away and sits a mV lower).
    b.step(1.0, 60.0)
    i_a, i_b = b.snapshot().string_currents_a
    assert i_a + i_b == pytest.approx(60.0) and i_a == pytest.approx(30.0, abs=0.1)

    b.reset("A2")
    r = b.reading("A2", 1.0)
    assert r.discharge_enabled is True and r.protections == Protection.NONE
    b.step(1.0, -60.0)
    assert b.snapshot().string_currents_a[0] < -25.0

    b.trip("B1", Protection.OVER_TEMPERATURE)  # both switches
    b.trip("A1", Protection.CELL_OVERVOLTAGE)  # charge only
    b.step(1.0, 60.0)
    snap = b.snapshot()
    assert snap.bank_current_a == 0.0  # nobody can take charge: the charger gets nothing
    b.step(1.0, -60.0)
    assert b.snapshot().string_currents_a == pytest.approx((-60.0, 0.0))
    b.reset("B1")
    b.reset("A1")
    b.step(1.0, 60.0)
    assert b.snapshot().string_currents_a == pytest.approx((30.0, 30.0), abs=0.5)


def test_every_string_cut_off_leaves_the_bank_at_zero_current() -> None:
    b = bank(1, 2)
    b.trip("A1", Protection.CELL_UNDERVOLTAGE)
    b.trip("B1", Protection.DISCHARGE_OVERCURRENT)
    b.step(1.0, -50.0)
    snap = b.snapshot()
    assert snap.bank_current_a == 0.0 and snap.string_currents_a == (0.0, 0.0)
    assert snap.bank_voltage_v == pytest.approx(snap.battery("A1").ocv_v, abs=1e-6)


def test_over_current_trips_after_a_delay_and_releases_after_a_timeout() -> None:
    b = bank(1, 1)
    for _ in range(50):  # 5 s at 150 A: not yet
        b.step(0.1, -150.0)
    assert b.snapshot().batteries[0].discharge_enabled
    assert Alarm.DISCHARGE_HIGH_CURRENT in b.snapshot().batteries[0].alarms
    b.step(0.1, -150.0)
    first = b.snapshot().batteries[0]
    assert first.protections == Protection.DISCHARGE_OVERCURRENT and not first.discharge_enabled
    b.step(1.0, -150.0)
    assert b.snapshot().bank_current_a == 0.0
    for _ in range(60):
        b.step(1.0, -50.0)
    assert b.snapshot().batteries[0].discharge_enabled
    assert b.snapshot().bank_current_a == pytest.approx(-50.0)


def test_cell_over_voltage_trips_charge_without_a_charger_limit() -> None:
    b = bank(1, 1, initial_soc_pct=99.0)
    for _ in range(600):
        b.step(10.0, 20.0)  # a charger with no voltage limit
        if not b.snapshot().batteries[0].charge_enabled:
            break
    x = b.snapshot().batteries[0]
    assert x.protections == Protection.CELL_OVERVOLTAGE
    # One cell got there first: the pack average is still short of 3.65 V.
    assert x.cell_max_v >= 3.65 > x.voltage_v / 4
    b.step(10.0, 20.0)
    assert b.snapshot().bank_current_a == 0.0


def test_lead_acid_has_no_bms() -> None:
    b = SimBank([[BatterySpec("L1", "lead-acid", 100.0, 12.0, initial_soc_pct=1.0)]])
    for _ in range(120):
        b.step(10.0, -20.0)
    snap = b.snapshot().batteries[0]
    assert snap.charge_enabled and snap.discharge_enabled and snap.protections == Protection.NONE
    assert b.snapshot().bank_current_a == pytest.approx(-20.0)
    r = b.reading("L1", 0.0)
    assert r.cell_voltages_v is None and r.protections is None and r.charge_enabled is None
    with pytest.raises(ValueError):
        b.trip("L1", Protection.CELL_UNDERVOLTAGE)


# --- charging -------------------------------------------------------------------------------------


def test_the_charger_never_pushes_the_bank_above_its_voltage_limit() -> None:
    b = bank(4, 2, initial_soc_pct=90.0)
    limit = 4 * 14.2
    currents = []
    for dt in [0.1] * 50 + [10.0] * 200 + [60.0] * 100:
        b.step(dt, 80.0, charge_voltage_v=limit)
        assert b.snapshot().bank_voltage_v <= limit + 1e-9
        currents.append(b.current_a)
    snap = b.snapshot()
    assert currents[0] == pytest.approx(80.0)  # constant current first
    assert snap.bank_voltage_v == pytest.approx(limit)  # then constant voltage
    assert 0.0 < snap.bank_current_a < 2.0  # tapered to a tail
    assert all(x.soc_pct == pytest.approx(100.0) for x in snap.batteries)
    assert not any(x.protections for x in snap.batteries)
    # Never a current above what was offered, and the taper only goes down once it starts.
    assert max(currents) <= 80.0 + 1e-9
    tail = currents[currents.index(min(c for c in currents if c < 79.9)) :]
    assert all(later <= earlier + 1e-6 for earlier, later in itertools.pairwise(tail))


# --- a week -----------------------------------------------------------------------------------


def run_days(b: SimBank, days: int, dt_s: float = 10.0) -> tuple[float, float, set[str]]:
    profile = DayProfile.for_bank(8 * 1280.0)
    limit = b.bank_reading(0.0).charge_voltage_limit_v
    assert limit == pytest.approx(4 * 14.2)
    soc_lo, soc_hi = 100.0, 0.0
    tripped: set[str] = set()
    for k in range(int(days * 86_400 / dt_s)):
        b.step(dt_s, profile.demand_w(k * dt_s) / b.voltage_v, charge_voltage_v=limit)
        if k % 30 == 0:  # every 5 minutes
            for x in b.snapshot().batteries:
                soc_lo = min(soc_lo, x.soc_pct)
                soc_hi = max(soc_hi, x.soc_pct)
                if x.protections:
                    tripped.add(x.name)
    return soc_lo, soc_hi, tripped


def test_a_healthy_4s2p_bank_runs_a_week_of_solar_days_untripped() -> None:
    b = bank(4, 2)
    soc_lo, soc_hi, tripped = run_days(b, 7)
    assert not tripped
    assert soc_lo >= 5.0 and soc_hi <= 100.0
    # The days did something: the bank filled every afternoon and drained every night.
    assert soc_hi == pytest.approx(100.0) and soc_lo < 50.0
    snap = b.snapshot()
    assert snap.elapsed_s == pytest.approx(7 * 86_400)
    assert all(x.temperature_c < 35.0 for x in snap.batteries)
    assert b.bank_reading(1.0).cycles in (3, 4, 5)


# --- determinism ----------------------------------------------------------------------------------


def drive(b: SimBank, steps: int) -> BankSnapshot:
    profile = ConstantProfile(-600.0)
    for k in range(steps):
        b.step(10.0, profile.demand_w(k * 10.0) / b.voltage_v)
    return b.snapshot()


def test_same_seed_same_bank() -> None:
    one, two, other = bank(4, 2, seed=7), bank(4, 2, seed=7), bank(4, 2, seed=8)
    assert drive(one, 500) == drive(two, 500)
    assert one.reading("B3", 5.0) == two.reading("B3", 5.0)
    drive(other, 500)
    assert one.reading("B3", 5.0).cell_voltages_v != other.reading("B3", 5.0).cell_voltages_v


# --- readings -------------------------------------------------------------------------------------


def test_reading_looks_like_a_bms_report() -> None:
    b = bank(4, 2)
    b.set_capacity_factor("A3", 0.8)
    b.step(10.0, -40.0)
    r = b.reading("A3", 12.5)
    assert r.subject == "A3" and r.at == 12.5
    assert r.current_a == pytest.approx(-20.0)
    assert r.soh_pct == 80.0 and r.full_charge_ah == 80.0 and r.design_ah == 100.0
    assert r.cell_voltages_v is not None and len(r.cell_voltages_v) == 4
    assert r.pack_voltage_v is not None
    assert r.pack_voltage_v == pytest.approx(sum(r.cell_voltages_v), abs=0.005)
    for v in (r.pack_voltage_v, *r.cell_voltages_v):
        assert round(v, 3) == v
    assert r.temperatures_c is not None and all(round(t, 1) == t for t in r.temperatures_c)
    assert r.charge_voltage_limit_v == pytest.approx(14.2)
    assert r.discharge_current_limit_a == 100.0 and r.charge_enabled and r.discharge_enabled
    assert r.protections == Protection.NONE and r.alarms == Alarm.NONE

    bank_r = b.bank_reading(12.5)
    assert bank_r.current_a == pytest.approx(-40.0)
    assert bank_r.pack_voltage_v == pytest.approx(b.voltage_v, abs=1e-3)
    assert bank_r.soc_pct == pytest.approx(min(x.soc_pct for x in b.snapshot().batteries), abs=0.1)
    assert bank_r.full_charge_ah == pytest.approx(180.0)  # string A is as big as its A3
    assert bank_r.charge_current_limit_a == 200.0


def test_unknown_names_and_bad_specs_are_refused() -> None:
    b = bank(1, 1)
    with pytest.raises(KeyError):
        b.reading("Z9", 0.0)
    with pytest.raises(ValueError):
        SimBank([[lfp("A1"), lfp("A1")]])
    with pytest.raises(ValueError):
        SimBank([[BatterySpec("X", "unobtainium", 100.0, 12.8)]])
    with pytest.raises(ValueError):
        b.set_capacity_factor("A1", 0.0)


# --- profiles -------------------------------------------------------------------------------------


def test_solar_day_profile_shape() -> None:
    p = DayProfile.for_bank(10_000.0)
    assert p.solar_peak_w == 2_500.0 and p.evening_load_w == 1_000.0
    assert p.demand_w(3 * 3600) == -p.base_load_w  # night: base load only
    assert p.demand_w(13 * 3600) == pytest.approx(p.solar_peak_w - p.base_load_w)
    assert p.demand_w(20 * 3600) == -(p.base_load_w + p.evening_load_w)
    assert p.demand_w(7.5 * 3600) < p.demand_w(9 * 3600)  # the morning bump
    assert p.demand_w(86_400 + 13 * 3600) == p.demand_w(13 * 3600)  # days fold
    # A day's energy: the sun brings more than the loads take, the night takes about 0.6 bank.
    day = [p.demand_w(t) for t in range(0, 86_400, 60)]
    assert sum(day) * 60 / 3600 > 0
    night = sum(-p.demand_w(t) for t in range(19 * 3600, 31 * 3600, 60)) * 60 / 3600
    assert 0.5 * 10_000 < night < 0.7 * 10_000


def test_profile_from_name() -> None:
    p = profile_from_name("solar-day", bank_wh=5_000.0, evening_load_w=0.0)
    assert isinstance(p, DayProfile) and p.solar_peak_w == 1_250.0 and p.evening_load_w == 0.0
    c = profile_from_name("constant", power_w=-300.0)
    assert c.demand_w(0.0) == c.demand_w(50_000.0) == -300.0
    bad: list[tuple[str, dict[str, float]]] = [
        ("nope", {}),
        ("constant", {"watts": 1.0}),
        ("solar-day", {"sunrise": 6.0}),
    ]
    for name, params in bad:
        with pytest.raises(ValueError):
            profile_from_name(name, **params)
