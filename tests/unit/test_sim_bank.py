"""The simulated bank a config describes: overrides, scheduled faults and what goes on the wire."""

from __future__ import annotations

import pytest

from bankwatch.daemon.config import parse_config
from bankwatch.daemon.simulation import bank_description
from bankwatch.drivers.errors import ConfigError
from bankwatch.drivers.model import Protection
from bankwatch.drivers.pylontech_can import PylontechCanDriver
from bankwatch.drivers.simulator.bank import BankSimulator
from tests.helpers import REPO

SIM = (REPO / "configs" / "sim-48v-4s2p.toml").read_text(encoding="utf-8")
HEAD = SIM.partition("[[simulation.faults]]")[0]


def _sim(extra: str = "") -> BankSimulator:
    return BankSimulator(bank_description(parse_config(HEAD + extra, "sim.toml")))


def test_overrides_reach_the_physics() -> None:
    sim = _sim(
        "[simulation.batteries.A2]\ninitial_soc_pct = 40\ncapacity_factor = 0.8\n"
        "cable_resistance_ohm = 0.004\n"
    )
    snap = sim.physics.snapshot()
    assert snap.battery("A2").soc_pct == pytest.approx(40, abs=0.5)
    assert snap.battery("A1").soc_pct == pytest.approx(60, abs=0.5)  # simulation.initial_soc_pct
    assert snap.battery("A2").full_charge_ah == pytest.approx(80, abs=0.5)


def test_faults_happen_on_time_and_recover() -> None:
    sim = _sim(
        '[[simulation.faults]]\nat_s = 10\nbattery = "B1"\nkind = "cutoff"\n'
        'protection = "discharge_overcurrent"\n'
        '[[simulation.faults]]\nat_s = 20\nbattery = "A4"\nkind = "silent"\n'
        '[[simulation.faults]]\nat_s = 30\nbattery = "B1"\nkind = "recover"\n'
        '[[simulation.faults]]\nat_s = 30\nbattery = "A4"\nkind = "recover"\n'
    )
    sim.advance(9)
    assert sim.reading("B1").discharge_enabled is True
    sim.advance(2)
    r = sim.reading("B1")
    assert r.discharge_enabled is False and r.protections is not None
    assert Protection.DISCHARGE_OVERCURRENT in r.protections
    talking = {bc.subject for bc in sim.broadcasts()}
    assert "A4" in talking
    sim.advance(10)
    assert "A4" not in {bc.subject for bc in sim.broadcasts()}
    sim.advance(10)
    assert sim.reading("B1").discharge_enabled is True
    assert "A4" in {bc.subject for bc in sim.broadcasts()}
    assert [round(t) for t, _ in sim.fault_log] == [10, 20, 30, 30]


def test_what_goes_on_the_wire_decodes_to_what_the_battery_is() -> None:
    sim = _sim()
    sim.advance(60)
    for bc in sim.broadcasts(at=5.0):
        truth = sim.reading(bc.subject)
        driver = PylontechCanDriver(bc.subject)
        for can_id, data in bc.frames:
            driver.on_frame(can_id, data, False, 5.0)
        got = driver.reading
        assert got.pack_voltage_v == pytest.approx(truth.pack_voltage_v, abs=0.011)
        assert got.current_a == pytest.approx(truth.current_a, abs=0.051)
        assert got.soc_pct == round(truth.soc_pct or 0)
        assert got.charge_enabled == truth.charge_enabled
        assert got.discharge_enabled == truth.discharge_enabled
        assert bc.link == f"can-{bc.subject}"


def test_a_cutoff_fault_on_lead_acid_is_refused() -> None:
    text = HEAD.replace('chemistry = "lifepo4"\nmax_series', 'chemistry = "agm"\nmax_series')
    text = text.replace('chemistry = "lifepo4"\nnominal', 'chemistry = "agm"\nnominal')
    text = text.replace("nominal_voltage_v = 12.8", "nominal_voltage_v = 12")
    text = text.replace("charger_voltage_v = 56.8", "charger_voltage_v = 57.6")
    with pytest.raises(ConfigError, match="no BMS"):
        BankSimulator(
            bank_description(
                parse_config(
                    text + '[[simulation.faults]]\nat_s = 1\nbattery = "A1"\nkind = "cutoff"\n',
                    "agm.toml",
                )
            )
        )


def test_the_config_becomes_a_description_of_plain_data() -> None:
    config = parse_config(SIM, "sim.toml")
    bank = bank_description(config)
    assert bank.name == config.bank.name
    assert bank.start_of_day_s == 12 * 3600
    assert [b.name for b in bank.batteries()] == [b.name for _, b in config.batteries()]
    assert config.simulation is not None
    assert len(bank.faults) == len(config.simulation.faults) > 0
    assert all(type(f).__module__ == "bankwatch.drivers.simulator.description" for f in bank.faults)
    assert set(bank.links) == set(config.links)
