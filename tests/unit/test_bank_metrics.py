"""Bank-level metrics per bank, string and battery: energy left, time to empty and to full at the
present current, C-rate, and a bank SOC that is right for series-parallel banks (each string is
as full as its emptiest battery; a naive mean of battery SOCs is the mistake)."""

from __future__ import annotations

import pytest

from bankwatch.daemon.config import parse_config
from bankwatch.daemon.topology import Topology
from bankwatch.drivers.model import Reading
from tests.unit.test_topology import bank_toml, custom_bank_toml

NOW = 100.0


def r(**kw: float) -> Reading:
    return Reading(at=NOW, pack_voltage_v=13.2, **kw)  # type: ignore[arg-type]


def test_a_battery_discharging_has_time_to_empty_and_no_time_to_full() -> None:
    topo = Topology(parse_config(bank_toml(1, 1)))
    state = topo.fold({"S1B1": r(current_a=-20.0, soc_pct=50.0, remaining_ah=50.0)}, NOW)
    b = state.battery("S1B1")
    assert b.time_to_empty_s == pytest.approx(2.5 * 3600)
    assert b.time_to_full_s is None
    assert b.c_rate == pytest.approx(0.2)
    assert b.remaining_ah == 50.0


def test_charging_has_time_to_full_and_idle_has_neither() -> None:
    topo = Topology(parse_config(bank_toml(1, 1)))
    b = topo.fold({"S1B1": r(current_a=25.0, soc_pct=50.0)}, NOW).battery("S1B1")
    assert b.time_to_full_s == pytest.approx(2 * 3600)
    assert b.time_to_empty_s is None
    idle = topo.fold({"S1B1": r(current_a=0.3, soc_pct=50.0)}, NOW).battery("S1B1")
    assert idle.time_to_full_s is None and idle.time_to_empty_s is None  # under C/200


def test_an_aged_battery_holds_less_and_its_string_stops_with_it() -> None:
    """4S: A3 reports 80 Ah full (aged). At 100 % everywhere the string still holds only 80 Ah,
    and charging, it is full when A3 is."""
    topo = Topology(parse_config(bank_toml(4, 1)))
    readings = {
        f"S1B{i}": r(current_a=10.0, soc_pct=90.0, remaining_ah=90.0, full_charge_ah=100.0)
        for i in (1, 2, 4)
    }
    readings["S1B3"] = r(current_a=10.0, soc_pct=95.0, remaining_ah=76.0, full_charge_ah=80.0)
    s = topo.fold(readings, NOW).strings[0]
    assert s.remaining_ah == 76.0  # the emptiest battery, in Ah, not the lowest SOC
    assert s.headroom_ah == pytest.approx(4.0)  # A3 has 4 Ah of room; the others 10
    assert s.time_to_full_s == pytest.approx(0.4 * 3600)
    assert s.energy_wh == pytest.approx(76.0 * 51.2)
    assert s.soc_pct == 90.0


def test_the_weakest_string_governs_the_bank_soc_and_the_bank_adds_strings() -> None:
    topo = Topology(parse_config(custom_bank_toml([[100, 100], [200, 200]])))
    readings = {
        "S1B1": r(current_a=-10.0, soc_pct=80.0),
        "S1B2": r(current_a=-10.0, soc_pct=20.0),  # string 1 is as full as this one
        "S2B1": r(current_a=-30.0, soc_pct=60.0),
        "S2B2": r(current_a=-30.0, soc_pct=60.0),
    }
    state = topo.fold(readings, NOW)
    # (100 Ah × 20 % + 200 Ah × 60 %) / 300 Ah: neither the mean of batteries (55 %) nor of
    # string minimums (40 %).
    assert state.soc_pct == pytest.approx(140 / 3)
    assert state.remaining_ah == pytest.approx(20 + 120)
    # String 1 is full when its fullest battery is (20 Ah of room at 80 %), string 2 has 80.
    assert state.headroom_ah == pytest.approx(20 + 80)
    assert state.c_rate == pytest.approx(40 / 300)
    assert state.time_to_empty_s == pytest.approx(140 / 40 * 3600)
    assert state.time_to_full_s is None
    m = state.metrics()
    assert set(m) == {"bank", "bank/S1", "bank/S2", "bank/S1/S1B1", "bank/S1/S1B2",
                      "bank/S2/S2B1", "bank/S2/S2B2"}  # fmt: skip
    assert m["bank"]["energy_wh"] == pytest.approx(round(20 * 25.6 + 120 * 25.6))
    assert m["bank/S1"]["time_to_empty_s"] == pytest.approx(2 * 3600)
    assert m["bank/S2/S2B1"]["c_rate"] == pytest.approx(0.15)


def test_a_stale_battery_has_no_metrics_and_its_bank_none_either() -> None:
    topo = Topology(parse_config(bank_toml(1, 2, link_lost_after_s=10)))
    readings = {
        "S1B1": r(current_a=-10.0, soc_pct=50.0),
        "S2B1": Reading(at=NOW - 60, pack_voltage_v=13.2, current_a=-10.0, soc_pct=50.0),
    }
    state = topo.fold(readings, NOW)
    stale = state.battery("S2B1")
    assert (stale.remaining_ah, stale.c_rate, stale.time_to_empty_s) == (None, None, None)
    assert state.remaining_ah is None and state.time_to_empty_s is None
    assert state.metrics()["bank/S2/S2B1"]["soc_pct"] is None
