"""Topology: the nominal arithmetic of series, parallel and series-parallel banks (DOMAIN.md), and
fold(): live readings become string and bank state by the physics of the wiring."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bankwatch.daemon.config import Config, parse_config
from bankwatch.daemon.topology import Topology
from bankwatch.drivers.model import Reading

# --- building configs ----------------------------------------------------------------------------


def bank_toml(
    series: int,
    parallel: int,
    capacity_ah: float = 100,
    voltage_v: float = 12.8,
    *,
    bank_voltage_v: float | None = None,
    link_lost_after_s: float | None = None,
    stale_after_s: dict[str, float] | None = None,
) -> str:
    """A bank of `parallel` identical strings of `series` identical batteries.

    Strings are named S1..Sp, batteries S<i>B<j> (j = 1 at the negative end).
    """
    caps = [[capacity_ah] * series for _ in range(parallel)]
    return custom_bank_toml(
        caps,
        voltage_v,
        bank_voltage_v=bank_voltage_v,
        link_lost_after_s=link_lost_after_s,
        stale_after_s=stale_after_s,
    )


def custom_bank_toml(
    capacities: Sequence[Sequence[float]],
    voltage_v: float = 12.8,
    *,
    bank_voltage_v: float | None = None,
    link_lost_after_s: float | None = None,
    stale_after_s: dict[str, float] | None = None,
) -> str:
    """One string per row of `capacities`; each battery gets a model of its capacity."""
    stale_after_s = stale_after_s or {}
    series = max(len(row) for row in capacities)
    lines = [
        "[bank]",
        'name = "bank"',
        'chemistry = "lifepo4"',
        f"nominal_voltage_v = {bank_voltage_v or series * voltage_v}",
        "",
    ]
    for cap in sorted({c for row in capacities for c in row}):
        lines += [
            f"[models.m{cap:g}]",
            f"capacity_ah = {cap}",
            f"nominal_voltage_v = {voltage_v}",
            'chemistry = "lifepo4"',
            "",
        ]
    if link_lost_after_s is not None:
        lines += ["[detect]", f"link_lost_after_s = {link_lost_after_s}", ""]
    for si, row in enumerate(capacities, 1):
        lines += ["[[strings]]", f'name = "S{si}"', "batteries = ["]
        for bi, cap in enumerate(row, 1):
            name = f"S{si}B{bi}"
            stale = f", stale_after_s = {stale_after_s[name]}" if name in stale_after_s else ""
            lines.append(f'  {{ name = "{name}", model = "m{cap:g}"{stale} }},')
        lines += ["]", ""]
    return "\n".join(lines)


def topology(text: str) -> Topology:
    config: Config = parse_config(text, "test.toml")
    return Topology(config)


def reading(name: str, at: float = 100.0, **fields: float | None) -> Reading:
    return Reading(subject=name, at=at, **fields)  # type: ignore[arg-type]


NOW = 100.0

# --- nominal arithmetic (DOMAIN.md's examples) --------------------------------------------------


def test_two_in_series() -> None:
    topo = topology(bank_toml(2, 1))
    assert topo.nominal_voltage_v == pytest.approx(25.6)
    assert topo.capacity_ah == pytest.approx(100)
    assert topo.energy_wh == pytest.approx(2560)
    assert topo.series_count == 2
    assert topo.parallel_count == 1
    assert topo.shape == "2S1P"


def test_two_in_parallel() -> None:
    topo = topology(bank_toml(1, 2))
    assert topo.nominal_voltage_v == pytest.approx(12.8)
    assert topo.capacity_ah == pytest.approx(200)
    assert topo.energy_wh == pytest.approx(2560)
    assert topo.series_count == 1
    assert topo.parallel_count == 2
    assert topo.shape == "1S2P"


def test_same_batteries_same_energy_either_way() -> None:
    series = topology(bank_toml(2, 1))
    parallel = topology(bank_toml(1, 2))
    assert series.energy_wh == pytest.approx(parallel.energy_wh)
    assert series.nominal_voltage_v == pytest.approx(2 * parallel.nominal_voltage_v)
    assert parallel.capacity_ah == pytest.approx(2 * series.capacity_ah)


def test_4s2p_of_12v_100ah() -> None:
    topo = topology(bank_toml(4, 2))
    assert topo.nominal_voltage_v == pytest.approx(51.2)
    assert topo.capacity_ah == pytest.approx(200)
    assert topo.energy_wh == pytest.approx(10240)
    assert topo.shape == "4S2P"
    assert [s.name for s in topo.strings] == ["S1", "S2"]
    for s in topo.strings:
        assert s.nominal_voltage_v == pytest.approx(51.2)
        assert s.capacity_ah == pytest.approx(100)
        assert s.energy_wh == pytest.approx(5120)
        assert [b.position for b in s.batteries] == [0, 1, 2, 3]


def test_paths_and_lookup() -> None:
    topo = topology(bank_toml(2, 2))
    b = topo.battery("S2B1")
    assert b.path == "bank/S2/S2B1"
    assert b.string == "S2"
    assert b.position == 0
    assert b.model_name == "m100"
    assert topo.strings[1].path == "bank/S2"
    assert [x.name for x in topo.batteries()] == ["S1B1", "S1B2", "S2B1", "S2B2"]
    with pytest.raises(KeyError):
        topo.battery("nope")


def test_series_string_limited_by_smallest_capacity() -> None:
    topo = topology(custom_bank_toml([[100, 50, 100, 100]]))
    s = topo.strings[0]
    assert s.capacity_ah == pytest.approx(50)
    assert s.nominal_voltage_v == pytest.approx(51.2)
    assert s.energy_wh == pytest.approx(51.2 * 50)
    assert topo.capacity_ah == pytest.approx(50)


def test_parallel_strings_of_unequal_capacity_add() -> None:
    topo = topology(custom_bank_toml([[100, 100], [200, 200]]))
    assert topo.capacity_ah == pytest.approx(300)
    assert topo.energy_wh == pytest.approx(25.6 * 300)


def test_shape_with_unequal_string_lengths() -> None:
    topo = topology(custom_bank_toml([[100] * 4, [100] * 3], bank_voltage_v=48))
    assert topo.shape == "3/4S2P"
    assert topo.series_count == 4
    # The bus sits at the higher string's voltage.
    assert topo.nominal_voltage_v == pytest.approx(51.2)


@settings(max_examples=60, deadline=None)
@given(
    series=st.integers(1, 16),
    parallel=st.integers(1, 16),
    capacity=st.sampled_from([50, 100, 105, 200, 280]),
    voltage=st.sampled_from([3.2, 12.8, 25.6, 51.2]),
)
def test_nominal_figures_of_any_sxp_bank(
    series: int, parallel: int, capacity: float, voltage: float
) -> None:
    topo = topology(bank_toml(series, parallel, capacity, voltage))
    assert topo.shape == f"{series}S{parallel}P"
    assert topo.series_count == series
    assert topo.parallel_count == parallel
    assert topo.nominal_voltage_v == pytest.approx(series * voltage)
    assert topo.capacity_ah == pytest.approx(parallel * capacity)
    assert topo.energy_wh == pytest.approx(series * parallel * voltage * capacity)
    assert len(topo.batteries()) == series * parallel


# --- fold: series ---------------------------------------------------------------------------------


def test_series_voltages_add_and_one_current_flows() -> None:
    topo = topology(bank_toml(4, 1))
    readings = {
        f"S1B{i}": reading(f"S1B{i}", pack_voltage_v=v, current_a=-20.0, soc_pct=80.0)
        for i, v in zip(range(1, 5), [13.1, 13.2, 13.0, 13.3], strict=True)
    }
    state = topo.fold(readings, NOW)
    s = state.strings[0]
    assert s.complete
    assert s.live == 4
    assert s.voltage_v == pytest.approx(52.6)
    assert s.current_a == pytest.approx(-20.0)
    assert state.voltage_v == pytest.approx(52.6)
    assert state.current_a == pytest.approx(-20.0)
    assert state.power_w == pytest.approx(52.6 * -20.0)


def test_series_current_is_what_the_batteries_agree_on() -> None:
    topo = topology(bank_toml(2, 1))
    readings = {
        "S1B1": reading("S1B1", pack_voltage_v=13.0, current_a=10.2, soc_pct=50.0),
        "S1B2": reading("S1B2", pack_voltage_v=13.0, current_a=9.8, soc_pct=50.0),
    }
    s = topo.fold(readings, NOW).strings[0]
    # Not the sum: the same current flows through every battery in series.
    assert s.current_a == pytest.approx(10.0)


def test_series_soc_is_the_weakest_battery() -> None:
    topo = topology(bank_toml(4, 1))
    socs = [90.0, 85.0, 40.0, 88.0]
    readings = {
        f"S1B{i}": reading(f"S1B{i}", pack_voltage_v=13.0, current_a=0.0, soc_pct=soc)
        for i, soc in zip(range(1, 5), socs, strict=True)
    }
    state = topo.fold(readings, NOW)
    assert state.strings[0].soc_pct == pytest.approx(40.0)
    assert state.soc_pct == pytest.approx(40.0)
    # What the string can deliver before its weakest battery is empty.
    assert state.strings[0].energy_wh == pytest.approx(51.2 * 100 * 0.40)
    assert state.energy_wh == pytest.approx(51.2 * 100 * 0.40)


# --- fold: parallel -------------------------------------------------------------------------------


def test_parallel_currents_add_and_voltage_is_shared() -> None:
    topo = topology(bank_toml(1, 4))
    amps = [-30.0, -25.0, -28.0, -17.0]
    readings = {
        f"S{i}B1": reading(f"S{i}B1", pack_voltage_v=13.2, current_a=a, soc_pct=70.0)
        for i, a in zip(range(1, 5), amps, strict=True)
    }
    state = topo.fold(readings, NOW)
    assert state.current_a == pytest.approx(-100.0)
    assert state.voltage_v == pytest.approx(13.2)
    assert [s.current_a for s in state.strings] == pytest.approx(amps)
    assert state.soc_pct == pytest.approx(70.0)


def test_4s2p_fold() -> None:
    topo = topology(bank_toml(4, 2))
    readings = {}
    for si, amps in ((1, -12.0), (2, -8.0)):
        for bi in range(1, 5):
            name = f"S{si}B{bi}"
            readings[name] = reading(name, pack_voltage_v=13.0, current_a=amps, soc_pct=60.0)
    state = topo.fold(readings, NOW)
    assert [s.voltage_v for s in state.strings] == pytest.approx([52.0, 52.0])
    assert state.voltage_v == pytest.approx(52.0)
    assert state.current_a == pytest.approx(-20.0)
    assert state.soc_pct == pytest.approx(60.0)
    assert state.energy_wh == pytest.approx(10240 * 0.6)
    assert state.bank_reading is None
    assert state.at == NOW
    assert state.name == "bank"


def test_bank_soc_is_capacity_weighted_over_weakest_in_each_string() -> None:
    # String S1: 2 × 100 Ah at 90 % and 30 % → the string has 30 % of 100 Ah left.
    # String S2: 2 × 200 Ah at 80 % and 80 % → 80 % of 200 Ah.
    topo = topology(custom_bank_toml([[100, 100], [200, 200]]))
    socs = {"S1B1": 90.0, "S1B2": 30.0, "S2B1": 80.0, "S2B2": 80.0}
    readings = {
        n: reading(n, pack_voltage_v=13.0, current_a=0.0, soc_pct=soc) for n, soc in socs.items()
    }
    state = topo.fold(readings, NOW)
    want = (30.0 * 100 + 80.0 * 200) / 300  # 63.33 %
    naive_mean = sum(socs.values()) / len(socs)  # 70 %
    mean_of_string_mins = (30.0 + 80.0) / 2  # 55 %
    assert state.soc_pct == pytest.approx(want)
    assert not math.isclose(state.soc_pct or 0, naive_mean, abs_tol=1)
    assert not math.isclose(state.soc_pct or 0, mean_of_string_mins, abs_tol=1)
    assert state.energy_wh == pytest.approx(25.6 * (100 * 0.30 + 200 * 0.80))


@settings(max_examples=80, deadline=None)
@given(
    socs=st.integers(1, 4).flatmap(
        lambda n: st.lists(
            st.lists(st.floats(0, 100), min_size=n, max_size=n).map(tuple),
            min_size=1,
            max_size=4,
        )
    ),
    caps=st.lists(st.sampled_from([50, 100, 200]), min_size=4, max_size=4),
)
def test_bank_soc_property(socs: list[tuple[float, ...]], caps: list[int]) -> None:
    capacities = [[caps[si]] * len(row) for si, row in enumerate(socs)]
    topo = topology(custom_bank_toml(capacities))
    readings = {
        f"S{si}B{bi}": reading(f"S{si}B{bi}", pack_voltage_v=13.0, current_a=1.0, soc_pct=soc)
        for si, row in enumerate(socs, 1)
        for bi, soc in enumerate(row, 1)
    }
    state = topo.fold(readings, NOW)
    string_caps = [caps[si] for si in range(len(socs))]
    want = sum(min(row) * c for row, c in zip(socs, string_caps, strict=True)) / sum(string_caps)
    assert state.soc_pct == pytest.approx(want)
    mins = [min(row) for row in socs]
    assert min(mins) - 1e-9 <= (state.soc_pct or 0) <= max(mins) + 1e-9
    assert state.current_a == pytest.approx(len(socs) * 1.0)


# --- stale readings -------------------------------------------------------------------------------


def test_stale_battery_is_not_live_and_its_string_has_no_voltage_or_soc() -> None:
    topo = topology(bank_toml(2, 2, link_lost_after_s=10))
    readings = {
        "S1B1": reading("S1B1", at=NOW - 5, pack_voltage_v=13.0, current_a=-5.0, soc_pct=80.0),
        "S1B2": reading("S1B2", at=NOW - 30, pack_voltage_v=12.0, current_a=-5.0, soc_pct=10.0),
        "S2B1": reading("S2B1", at=NOW, pack_voltage_v=13.1, current_a=-6.0, soc_pct=70.0),
        "S2B2": reading("S2B2", at=NOW, pack_voltage_v=13.1, current_a=-6.0, soc_pct=70.0),
    }
    state = topo.fold(readings, NOW)
    stale = state.battery("S1B2")
    assert not stale.live
    assert stale.age_s == pytest.approx(30)
    assert stale.reading is readings["S1B2"]  # kept for display as stale
    assert stale.energy_wh is None
    assert state.battery("S1B1").live
    s1, s2 = state.strings
    assert s1.live == 1
    assert not s1.complete
    # Never the stale battery's values shown as live: no voltage, no SOC for its string.
    assert s1.voltage_v is None
    assert s1.soc_pct is None
    assert s1.energy_wh is None
    assert s2.complete
    assert s2.voltage_v == pytest.approx(26.2)
    # The bank cannot know its SOC or energy with a string unknown, and does not make one up
    # from the stale 10 %.
    assert state.soc_pct is None
    assert state.energy_wh is None
    assert state.voltage_v == pytest.approx(26.2)


def test_reading_exactly_at_the_limit_is_live_and_just_past_is_stale() -> None:
    topo = topology(bank_toml(1, 1, link_lost_after_s=10))
    r = reading("S1B1", at=NOW - 10, pack_voltage_v=13.0, current_a=0.0, soc_pct=50.0)
    assert topo.fold({"S1B1": r}, NOW).battery("S1B1").live
    assert not topo.fold({"S1B1": r}, NOW + 0.001).battery("S1B1").live


def test_battery_stale_after_overrides_the_detect_default() -> None:
    text = bank_toml(2, 1, link_lost_after_s=10, stale_after_s={"S1B1": 60})
    topo = topology(text)
    assert topo.battery("S1B1").stale_after_s == 60
    assert topo.battery("S1B2").stale_after_s == 10
    readings = {
        "S1B1": reading("S1B1", at=NOW - 30, pack_voltage_v=13.0, soc_pct=50.0),
        "S1B2": reading("S1B2", at=NOW - 30, pack_voltage_v=13.0, soc_pct=50.0),
    }
    state = topo.fold(readings, NOW)
    assert state.battery("S1B1").live
    assert not state.battery("S1B2").live
    assert state.strings[0].voltage_v is None


def test_default_stale_time_is_ten_seconds() -> None:
    topo = topology(bank_toml(1, 1))
    assert topo.battery("S1B1").stale_after_s == 10


def test_battery_never_heard_from() -> None:
    topo = topology(bank_toml(2, 1))
    state = topo.fold({"S1B1": reading("S1B1", pack_voltage_v=13.0, soc_pct=50.0)}, NOW)
    missing = state.battery("S1B2")
    assert missing.reading is None
    assert not missing.live
    assert missing.age_s is None
    assert state.strings[0].voltage_v is None
    assert state.strings[0].soc_pct is None
    assert state.soc_pct is None


def test_no_readings_at_all() -> None:
    state = topology(bank_toml(4, 2)).fold({}, NOW)
    assert state.voltage_v is None
    assert state.current_a is None
    assert state.soc_pct is None
    assert state.energy_wh is None
    assert state.power_w is None
    assert all(s.live == 0 for s in state.strings)


def test_all_stale_bank_shows_nothing_live() -> None:
    topo = topology(bank_toml(2, 2, link_lost_after_s=5))
    readings = {
        b.name: reading(b.name, at=NOW - 6, pack_voltage_v=13.0, current_a=-3.0, soc_pct=55.0)
        for b in topo.batteries()
    }
    state = topo.fold(readings, NOW)
    assert not any(b.live for b in state.batteries())
    assert state.voltage_v is None
    assert state.current_a is None
    assert state.soc_pct is None
    assert all(s.current_a is None for s in state.strings)


# --- bank-level reading ---------------------------------------------------------------------------


def _full_readings(topo: Topology, at: float = NOW) -> dict[str, Reading]:
    return {
        b.name: reading(b.name, at=at, pack_voltage_v=13.0, current_a=-10.0, soc_pct=50.0)
        for b in topo.batteries()
    }


def test_live_bank_reading_overrides_voltage_and_current() -> None:
    topo = topology(bank_toml(4, 2))
    bank = Reading(subject="bank", at=NOW - 1, pack_voltage_v=51.9, current_a=-25.0, soc_pct=48.0)
    state = topo.fold(_full_readings(topo), NOW, bank_reading=bank)
    assert state.bank_reading is bank
    assert state.voltage_v == pytest.approx(51.9)
    assert state.current_a == pytest.approx(-25.0)
    # SOC stays the strings' figure when they are all known.
    assert state.soc_pct == pytest.approx(50.0)


def test_stale_bank_reading_is_ignored() -> None:
    topo = topology(bank_toml(4, 2, link_lost_after_s=10))
    bank = Reading(subject="bank", at=NOW - 11, pack_voltage_v=40.0, current_a=-99.0, soc_pct=5.0)
    state = topo.fold(_full_readings(topo), NOW, bank_reading=bank)
    assert state.bank_reading is None
    assert state.voltage_v == pytest.approx(52.0)
    assert state.current_a == pytest.approx(-20.0)
    assert state.soc_pct == pytest.approx(50.0)


def test_bank_stale_after_argument() -> None:
    topo = topology(bank_toml(1, 1, link_lost_after_s=10))
    bank = Reading(subject="bank", at=NOW - 20, pack_voltage_v=13.3, current_a=4.0)
    assert topo.fold({}, NOW, bank_reading=bank, bank_stale_after_s=30).bank_reading is bank
    assert topo.fold({}, NOW, bank_reading=bank, bank_stale_after_s=15).bank_reading is None


def test_bank_reading_fills_in_when_batteries_are_silent() -> None:
    topo = topology(bank_toml(4, 2))
    bank = Reading(subject="bank", at=NOW, pack_voltage_v=52.4, current_a=12.5, soc_pct=77.0)
    state = topo.fold({}, NOW, bank_reading=bank)
    assert state.voltage_v == pytest.approx(52.4)
    assert state.current_a == pytest.approx(12.5)
    assert state.soc_pct == pytest.approx(77.0)
    assert state.power_w == pytest.approx(52.4 * 12.5)


def test_stale_bank_reading_does_not_fill_in() -> None:
    topo = topology(bank_toml(4, 2, link_lost_after_s=10))
    bank = Reading(subject="bank", at=NOW - 60, pack_voltage_v=52.4, current_a=12.5, soc_pct=77.0)
    state = topo.fold({}, NOW, bank_reading=bank)
    assert state.voltage_v is None
    assert state.current_a is None
    assert state.soc_pct is None


def test_bank_reading_without_current_keeps_the_strings_sum() -> None:
    topo = topology(bank_toml(1, 2))
    bank = Reading(subject="bank", at=NOW, pack_voltage_v=13.4)
    state = topo.fold(_full_readings(topo), NOW, bank_reading=bank)
    assert state.voltage_v == pytest.approx(13.4)
    assert state.current_a == pytest.approx(-20.0)


# --- energy ---------------------------------------------------------------------------------------


def test_battery_energy_from_remaining_ah_or_soc() -> None:
    topo = topology(bank_toml(2, 1))
    readings = {
        "S1B1": reading("S1B1", pack_voltage_v=13.0, remaining_ah=40.0, soc_pct=99.0),
        "S1B2": reading("S1B2", pack_voltage_v=13.0, soc_pct=25.0),
    }
    state = topo.fold(readings, NOW)
    # Measured charge × measured voltage wins over the nominal estimate.
    assert state.battery("S1B1").energy_wh == pytest.approx(40.0 * 13.0)
    assert state.battery("S1B2").energy_wh == pytest.approx(100 * 12.8 * 0.25)


def test_battery_energy_unknown_without_soc_or_charge() -> None:
    topo = topology(bank_toml(1, 1))
    state = topo.fold({"S1B1": reading("S1B1", pack_voltage_v=13.0)}, NOW)
    assert state.battery("S1B1").energy_wh is None
    assert state.strings[0].soc_pct is None
    assert state.energy_wh is None


def test_bank_energy_sums_strings() -> None:
    topo = topology(custom_bank_toml([[100], [200], [100]]))
    socs = {"S1B1": 50.0, "S2B1": 25.0, "S3B1": 100.0}
    state = topo.fold({n: reading(n, pack_voltage_v=13.0, soc_pct=s) for n, s in socs.items()}, NOW)
    assert state.energy_wh == pytest.approx(12.8 * (50 + 50 + 100))
    assert state.soc_pct == pytest.approx(200 / 400 * 100)
