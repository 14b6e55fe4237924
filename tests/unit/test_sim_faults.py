"""The simulator's faults for the detector suite: each does to the bank what it says, on time,
through the config's [[simulation.faults]]."""

from __future__ import annotations

import re

import pytest

from bankwatch.daemon.config import parse_config
from bankwatch.daemon.simulation import bank_description
from bankwatch.drivers.errors import ConfigError
from bankwatch.drivers.simulator.bank import BankSimulator
from tests.helpers import REPO

SIM = (REPO / "configs" / "sim-48v-4s2p.toml").read_text(encoding="utf-8")
HEAD = SIM.partition("[[simulation.faults]]")[0].replace(
    'profile = "solar-day"', 'profile = "constant"\npower_w = -1000'
)


def sim(*faults: str, extra: str = "") -> BankSimulator:
    text = HEAD + extra
    for f in faults:
        text += f"[[simulation.faults]]\n{f}\n"
    return BankSimulator(bank_description(parse_config(text, "sim.toml")))


def test_a_leak_discharges_one_battery_and_its_bms_sees_it() -> None:
    s = sim('at_s = 10\nbattery = "A2"\nkind = "leak"\nvalue = 5.0')
    s.advance(9)
    assert s.reading("A2").current_a == s.reading("A1").current_a
    s.advance(3600)
    a1, a2 = s.reading("A1"), s.reading("A2")
    assert (a2.current_a or 0) - (a1.current_a or 0) == pytest.approx(-5.0, abs=0.15)
    assert (a1.soc_pct or 0) - (a2.soc_pct or 0) == pytest.approx(5.0, abs=0.3)  # 5 Ah of 100


def test_disconnect_opens_the_branch_and_connect_closes_it() -> None:
    s = sim(
        'at_s = 5\nbattery = "B3"\nkind = "disconnect"',
        'at_s = 65\nbattery = "B3"\nkind = "connect"',
    )
    s.advance(60)
    snap = s.physics.snapshot()
    assert snap.string_currents_a[1] == 0.0
    assert snap.string_currents_a[0] == pytest.approx(snap.bank_current_a)
    r = s.reading("B1")
    assert r.current_a == 0.0 and r.charge_enabled and r.discharge_enabled  # BMS: all fine
    s.advance(60)
    assert s.physics.snapshot().string_currents_a[1] < -1.0


def test_heating_warms_one_battery() -> None:
    s = sim('at_s = 0\nbattery = "A4"\nkind = "heating"\nvalue = 15')
    s.advance(4 * 3600)
    assert (s.reading("A4").temperature_c or 0) - (s.reading("A3").temperature_c or 0) > 8


def test_cell_drift_pulls_one_cell_away_near_the_knee() -> None:
    s = sim('at_s = 0\nbattery = "B1"\nkind = "cell_drift"\nvalue = -25',
            extra="[simulation.batteries.B1]\ninitial_soc_pct = 28\n")  # fmt: skip
    s.advance(60)
    b1 = s.reading("B1")
    assert (b1.max_cell_v or 0) - (b1.min_cell_v or 0) > 0.2
    b2 = s.reading("B2")
    assert (b2.max_cell_v or 0) - (b2.min_cell_v or 0) < 0.03


def test_sensor_offsets_change_the_reading_not_the_battery() -> None:
    s = sim('at_s = 0\nbattery = "A1"\nkind = "current_sensor_offset"\nvalue = 6',
            'at_s = 0\nbattery = "A1"\nkind = "voltage_sensor_offset"\nvalue = 1.5')  # fmt: skip
    s.advance(30)
    truth = s.physics.snapshot().battery("A1")
    r = s.reading("A1")
    assert r.current_a == pytest.approx(truth.current_a + 6, abs=0.06)
    assert r.pack_voltage_v == pytest.approx(truth.voltage_v + 1.5, abs=0.002)


def test_capacity_fade_and_cable_resistance_on_time() -> None:
    s = sim('at_s = 20\nbattery = "A3"\nkind = "capacity_fade"\nvalue = 0.7',
            'at_s = 20\nbattery = "B2"\nkind = "cable_resistance"\nvalue = 0.02')  # fmt: skip
    s.advance(10)
    assert s.reading("A3").full_charge_ah == 100.0
    s.advance(20)
    assert s.reading("A3").full_charge_ah == 70.0
    snap = s.physics.snapshot()
    assert abs(snap.string_currents_a[1]) < abs(snap.string_currents_a[0])  # B's cable


def test_ambient_and_cell_count_from_the_config() -> None:
    text = HEAD.replace("initial_soc_pct = 60", "initial_soc_pct = 60\nambient_c = -5")
    extra = "[simulation.batteries.A1]\ncell_count = 8\n"
    s = BankSimulator(bank_description(parse_config(text + extra)))
    assert s.reading("A2").temperature_c == pytest.approx(-5, abs=0.5)
    # A1 is a 25.6 V battery where the model says 12.8 V.
    assert (s.reading("A1").pack_voltage_v or 0) == pytest.approx(
        2 * (s.reading("A2").pack_voltage_v or 0), rel=0.02
    )


@pytest.mark.parametrize(
    ("fault", "problem"),
    [
        ('kind = "leak"', "needs a value"),
        ('kind = "silent"\nvalue = 3', "takes no value"),
        ('kind = "capacity_fade"\nvalue = 2', "within (0, 1.5]"),
        ('kind = "cable_resistance"\nvalue = -1', ">= 0"),
        ('kind = "melt"', "must be"),
    ],
)
def test_bad_faults_are_config_errors(fault: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)):
        parse_config(HEAD + f'[[simulation.faults]]\nat_s = 1\nbattery = "A1"\n{fault}\n')
