"""Each detector of the suite on hand-built bank states, and through the analyzer over time:
what it raises, on which subject, with what evidence; the edges (noise around a threshold does
not flap, a stale battery is never compared as if live, a branch cut off by its BMS is not
blamed for its share)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pytest

from bankwatch.daemon.alerts import Condition, Severity
from bankwatch.daemon.config import parse_config
from bankwatch.daemon.detectors import (
    BankAnalyzer,
    DetectContext,
    DetectorMemory,
    detect_cell_imbalance,
    detect_current_imbalance,
    detect_cutoff,
    detect_series_current_mismatch,
    detect_soc_mismatch,
    detect_temperature,
    detect_voltage_inconsistency,
    run_detectors,
)
from bankwatch.daemon.topology import BankState, Topology
from bankwatch.drivers.model import Protection, Reading
from tests.unit.test_detectors import bank_toml, healthy

# --- building banks, states and contexts ---------------------------------------------------------


def topo(series: int, parallel: int, detect: str = "", **kwargs: object) -> Topology:
    """Banks of 12.8 V 100 Ah batteries A1.., B1..; `detect` is extra TOML for [detect.*]."""
    return Topology(parse_config(bank_toml(series, parallel, **kwargs) + detect))  # type: ignore[arg-type]


def ctx(
    t: Topology, latched: Mapping[str, Severity] | None = None, memory: DetectorMemory | None = None
) -> DetectContext:
    return DetectContext(t.config.detect, memory or DetectorMemory(), latched or {}, 0.0)


def readings(t: Topology, at: float, **per_battery: Mapping[str, object]) -> dict[str, Reading]:
    """Every battery healthy at `at`, with the changes given per battery name."""
    return {b.name: healthy(at, **per_battery.get(b.name, {})) for b in t.batteries()}


def fold(
    t: Topology, at: float, bank: Reading | None = None, **per_battery: Mapping[str, object]
) -> BankState:
    return t.fold(readings(t, at, **per_battery), at, bank)


def subjects(conds: Iterable[Condition], kind: str | None = None) -> dict[str, Condition]:
    """By subject (of one kind, when given): and never two of a kind on one subject."""
    out: dict[str, Condition] = {}
    for c in conds:
        if kind is not None and c.kind != kind:
            continue
        assert c.subject not in out, f"two conditions on {c.subject}"
        out[c.subject] = c
    return out


def run(
    t: Topology, frames: Sequence[tuple[float, dict[str, Reading], Reading | None]]
) -> list[tuple[float, str, str, str]]:
    """Drive the analyzer; (time, event, id, severity) for every event."""
    analyzer = BankAnalyzer(t, t.config.detect)
    out = []
    for now, rs, bank in frames:
        _, events = analyzer.step(rs, now, bank)
        out += [(now, e.event, e.alert.id, e.alert.severity) for e in events]
    return out


NOW = 1000.0

# --- soc_mismatch --------------------------------------------------------------------------------


def test_soc_outlier_in_a_series_string_is_named_with_its_gap() -> None:
    t = topo(4, 1)
    state = fold(t, NOW, A3={"soc_pct": 50.0})
    conds = subjects(detect_soc_mismatch(state, NOW, ctx(t)))
    assert list(conds) == ["home/A/A3"]
    c = conds["home/A/A3"]
    assert (c.kind, c.severity) == ("soc_mismatch", "warning")
    assert c.message.startswith("A3: 14.0 points below the other batteries of string A")
    assert "reaches cutoff first" in c.message
    assert c.evidence["gap_pct"] == -14.0
    assert c.evidence["group_soc_pct"] == 64.0


def test_soc_gap_severity_follows_the_thresholds() -> None:
    t = topo(4, 1)
    for soc, want in ((56.0, None), (53.9, "warning"), (40.0, "warning"), (38.9, "critical")):
        conds = subjects(detect_soc_mismatch(fold(t, NOW, A2={"soc_pct": soc}), NOW, ctx(t)))
        got = conds["home/A/A2"].severity if "home/A/A2" in conds else None
        assert got == want, (soc, got)


def test_a_pair_names_only_the_lower_battery() -> None:
    t = topo(2, 1)
    conds = subjects(detect_soc_mismatch(fold(t, NOW, A1={"soc_pct": 50.0}), NOW, ctx(t)))
    assert list(conds) == ["home/A/A1"]
    assert "below" in conds["home/A/A1"].message


def test_parallel_strings_compare_their_weakest_battery() -> None:
    t = topo(2, 3)  # strings A, B, C of two batteries
    state = fold(t, NOW, B2={"soc_pct": 40.0})
    conds = subjects(detect_soc_mismatch(state, NOW, ctx(t)))
    # B2 is below B1 in its string (a pair), and string B below the other strings.
    assert sorted(conds) == ["home/B", "home/B/B2"]
    assert conds["home/B"].message.startswith("string B: 24.0 points below the other branches")


def test_a_one_battery_branch_is_named_by_its_battery() -> None:
    t = topo(1, 4)
    conds = subjects(detect_soc_mismatch(fold(t, NOW, C1={"soc_pct": 90.0}), NOW, ctx(t)))
    assert list(conds) == ["home/C/C1"]
    assert conds["home/C/C1"].message.startswith("branch C (C1): 26.0 points above")


def test_a_stale_battery_is_not_compared_as_if_live() -> None:
    t = topo(4, 1, link_lost_after_s=10)
    rs = readings(t, NOW)
    rs["A3"] = healthy(NOW - 60, soc_pct=20.0)  # its last word, a minute old
    state = t.fold(rs, NOW)
    assert not state.battery("A3").live
    assert detect_soc_mismatch(state, NOW, ctx(t)) == []
    # And it does not drag the group: A1 far off the two live others is still seen.
    rs["A1"] = healthy(NOW, soc_pct=40.0)
    conds = subjects(detect_soc_mismatch(t.fold(rs, NOW), NOW, ctx(t)))
    assert list(conds) == ["home/A/A1"]
    assert conds["home/A/A1"].evidence["group_size"] == 3


def test_soc_noise_around_the_threshold_does_not_flap() -> None:
    """A gap that wanders 9.4 .. 10.6 points for two hours: raised once, never cleared while it
    wanders (hysteresis 2 points), cleared once it is really gone."""
    detect = "\n[detect.soc_mismatch]\nraise_after_s = 60\nclear_after_s = 300\n"
    t = topo(4, 1, detect=detect)
    frames = []
    for i in range(720):
        now = float(i * 10)
        gap = 10.0 + (0.6 if i % 3 == 0 else -0.6)
        if i >= 600:
            gap = 3.0
        frames.append((now, readings(t, now, A4={"soc_pct": 64.0 - gap}), None))
    events = run(t, frames)
    assert [(e, i) for _, e, i, _ in events] == [
        ("raised", "soc_mismatch:home/A/A4"),
        ("cleared", "soc_mismatch:home/A/A4"),
    ]
    assert events[1][0] >= 6000 + 300


def test_a_slow_drift_is_raised_early_as_info() -> None:
    """A4 falls behind by 2 points a day, starting level: the gap stays under the warning for
    days, but after two days of history the rate is known and an info alert names A4."""
    detect = "\n[detect.soc_mismatch]\nraise_after_s = 0\n"
    t = topo(4, 1, detect=detect)
    analyzer = BankAnalyzer(t, t.config.detect)
    first_info = None
    for i in range(0, 4 * 144):  # four days, every 10 minutes
        now = i * 600.0
        gap = 2.0 * now / 86_400
        _, events = analyzer.step(readings(t, now, A4={"soc_pct": 64.0 - gap}), now)
        for e in events:
            assert e.alert.id == "soc_mismatch:home/A/A4"
            assert e.alert.severity == "info"
            first_info = first_info or (now, e.alert)
    assert first_info is not None
    at, alert = first_info
    assert 2 * 86_400 <= at <= 2.1 * 86_400  # as soon as two days are known (gap ≥ 3 points)
    assert "drifting apart early" in alert.message
    assert alert.evidence["drift_pct_per_day"] == pytest.approx(-2.0, abs=0.15)


def test_no_drift_is_reported_for_a_steady_gap() -> None:
    t = topo(4, 1, detect="\n[detect.soc_mismatch]\nraise_after_s = 0\n")
    analyzer = BankAnalyzer(t, t.config.detect)
    for i in range(0, 3 * 144):
        now = i * 600.0
        _, events = analyzer.step(readings(t, now, A4={"soc_pct": 58.0}), now)  # 6 points, flat
        assert events == []


# --- current_imbalance ---------------------------------------------------------------------------


def amps(*values: float) -> dict[str, dict[str, object]]:
    return {f"{chr(ord('A') + i)}1": {"current_a": v} for i, v in enumerate(values)}


def test_a_branch_carrying_too_little_is_named() -> None:
    t = topo(1, 4)
    state = fold(t, NOW, **amps(-10, -10, -10, -4))
    conds = subjects(detect_current_imbalance(state, NOW, ctx(t)))
    assert list(conds) == ["home/D"]
    c = conds["home/D"]
    assert (c.severity, c.gist) == ("warning", "too little")
    assert c.message.startswith("branch D (D1): carries too little current: 12 % of the bank's")
    assert c.evidence["expected_share_pct"] == 25.0


def test_a_branch_carrying_too_much_is_named_among_several() -> None:
    t = topo(1, 4)
    conds = subjects(
        detect_current_imbalance(fold(t, NOW, **amps(-10, -10, -10, -16)), NOW, ctx(t))
    )
    assert list(conds) == ["home/D"]
    assert conds["home/D"].gist == "too much"


def test_in_a_pair_only_the_branch_carrying_too_little_is_named() -> None:
    t = topo(1, 2)
    conds = subjects(detect_current_imbalance(fold(t, NOW, **amps(-24, -12)), NOW, ctx(t)))
    assert list(conds) == ["home/B"]


def test_sharing_is_not_judged_at_a_small_current_or_near_the_knees() -> None:
    t = topo(1, 4)
    # 20 A is 0.05 C of 400 Ah; below it, nobody is blamed.
    assert detect_current_imbalance(fold(t, NOW, **amps(-5, -5, -5, -1)), NOW, ctx(t)) == []
    near_full = amps(10, 10, 10, 4)
    for changes in near_full.values():
        changes["soc_pct"] = 97.0
    state = fold(t, NOW, **near_full)
    assert detect_current_imbalance(state, NOW, ctx(t)) == []


def test_a_branch_cut_off_by_its_bms_is_not_blamed_and_its_siblings_share_among_themselves() -> (
    None
):
    t = topo(1, 4)
    changes = amps(-13, -13, -13, 0)
    changes["D1"].update(discharge_enabled=False, protections=Protection.CELL_UNDERVOLTAGE)
    assert detect_current_imbalance(fold(t, NOW, **changes), NOW, ctx(t)) == []


def test_an_open_branch_is_critical_and_the_others_are_not_blamed() -> None:
    t = topo(1, 4)
    changes = amps(-15, -15, -15, 0)
    # The open branch sits at its own rest voltage, off the bus its siblings share.
    changes["D1"]["pack_voltage_v"] = 13.40
    state = fold(t, NOW, **changes)
    c = ctx(t)
    ci = subjects(run_detectors(state, NOW, c), "current_imbalance")
    assert list(ci) == ["home/D"]
    assert (ci["home/D"].severity, ci["home/D"].gist) == ("critical", "open")
    assert "open branch" in ci["home/D"].message and "blown fuse" in ci["home/D"].message


def test_an_open_branch_is_reported_even_while_sharing_cannot_be_judged() -> None:
    """C1 near full puts the sharing out of judgment; D1's open fuse is still called out."""
    t = topo(1, 4)
    changes = amps(-15, -15, -15, 0)
    changes["C1"]["soc_pct"] = 97.0
    changes["D1"]["pack_voltage_v"] = 13.40
    ci = subjects(run_detectors(fold(t, NOW, **changes), NOW, ctx(t)), "current_imbalance")
    assert [(s, c.gist) for s, c in ci.items()] == [("home/D", "open")]


def test_in_a_pair_an_isolated_branch_is_measured_against_the_other() -> None:
    t = topo(1, 2)
    changes = amps(-12, 0)
    changes["B1"].update(pack_voltage_v=13.31, soc_pct=85.0)  # 60 mV off the bus
    memory = DetectorMemory()
    run_detectors(fold(t, NOW, **changes), NOW, ctx(t, memory=memory))
    assert memory.links["home/B"].apart
    assert not memory.links["home/A"].apart


def test_a_connected_branch_at_the_bus_voltage_carrying_nothing_is_not_open() -> None:
    """A branch at a lower SOC may carry nothing at a light load; it sits at the bus's voltage,
    so it is connected, not open."""
    t = topo(1, 4)
    state = fold(t, NOW, **amps(-8, -8, -8, 0))
    conds = [c for c in run_detectors(state, NOW, ctx(t)) if c.kind == "current_imbalance"]
    assert all(c.gist != "open" for c in conds)


def test_a_raised_imbalance_is_held_while_it_cannot_be_judged() -> None:
    t = topo(1, 4, detect="\n[detect.current_imbalance]\nraise_after_s = 0\nclear_after_s = 60\n")
    frames = [(float(i), readings(t, float(i), **amps(-10, -10, -10, -4)), None) for i in range(5)]
    # Night: 2 A in all, nothing can be judged for an hour.
    frames += [
        (float(i), readings(t, float(i), **amps(-0.5, -0.5, -0.5, -0.5)), None)
        for i in range(5, 3600, 30)
    ]
    assert run(t, frames) == [(0.0, "raised", "current_imbalance:home/D", "warning")]


# --- series_current_mismatch ---------------------------------------------------------------------


def test_a_battery_reporting_another_current_than_its_string_is_named() -> None:
    t = topo(4, 1)
    state = fold(
        t, NOW, A3={"current_a": -15.0}, **{n: {"current_a": -10.0} for n in ["A1", "A2", "A4"]}
    )
    conds = subjects(detect_series_current_mismatch(state, NOW, ctx(t)))
    assert list(conds) == ["home/A/A3"]
    c = conds["home/A/A3"]
    assert c.message.startswith("A3: reports -15.0 A where the rest of string A reports -10.0 A")
    assert c.evidence["difference_a"] == -5.0


def test_currents_within_sensor_tolerance_are_fine() -> None:
    t = topo(4, 1)
    state = fold(
        t, NOW, A1={"current_a": -10.0}, A2={"current_a": -11.5}, A3={"current_a": -9.2},
        A4={"current_a": -10.0},
    )  # fmt: skip
    assert detect_series_current_mismatch(state, NOW, ctx(t)) == []


def test_a_pair_that_disagrees_names_the_string() -> None:
    t = topo(2, 1)
    state = fold(t, NOW, A1={"current_a": -10.0}, A2={"current_a": -16.0})
    conds = subjects(detect_series_current_mismatch(state, NOW, ctx(t)))
    assert list(conds) == ["home/A"]
    assert "A1 reports -10.0 A and A2 -16.0 A" in conds["home/A"].message


def test_a_stale_battery_current_is_not_compared() -> None:
    t = topo(4, 1, link_lost_after_s=10)
    rs = readings(t, NOW)
    rs["A2"] = healthy(NOW - 30, current_a=-40.0)
    assert detect_series_current_mismatch(t.fold(rs, NOW), NOW, ctx(t)) == []


# --- voltage_inconsistency -----------------------------------------------------------------------


def test_a_battery_voltage_that_no_battery_of_its_model_can_show() -> None:
    t = topo(2, 1)
    state = fold(t, NOW, A2={"pack_voltage_v": 26.5})
    conds = subjects(detect_voltage_inconsistency(state, NOW, ctx(t)))
    assert "home/A/A2" in conds
    assert "no 12.8 V lifepo4 battery (4 cells: 8.0-15.2 V)" in conds["home/A/A2"].message


def test_a_bank_voltage_that_does_not_fit_the_series_count_is_critical() -> None:
    t = topo(2, 1, bank_source=True)
    meter = healthy(NOW, pack_voltage_v=39.0, current_a=-4.5)
    conds = subjects(detect_voltage_inconsistency(fold(t, NOW, meter), NOW, ctx(t)))
    c = conds["home"]
    assert c.severity == "critical"
    assert "the bank meter reads 39.00 V" in c.message
    assert "2 in series (8 lifepo4 cells: 16.0-30.4 V)" in c.message


def test_a_string_against_the_bank_meter() -> None:
    t = topo(4, 2, bank_source=True)
    meter = healthy(NOW, pack_voltage_v=53.0, current_a=-9.0)
    state = fold(t, NOW, meter, B2={"pack_voltage_v": 13.25 + 1.5})
    conds = subjects(detect_voltage_inconsistency(state, NOW, ctx(t)))
    assert list(conds) == ["home/B"]
    assert conds["home/B"].message.startswith("string B: its batteries add up to 54.50 V")
    assert "the bank meter shows 53.00 V" in conds["home/B"].message


def test_strings_against_each_other_without_a_meter() -> None:
    three = topo(4, 3)
    conds = subjects(
        detect_voltage_inconsistency(fold(three, NOW, C1={"pack_voltage_v": 14.6}), NOW, ctx(three))
    )
    assert list(conds) == ["home/C"]
    # Two strings: which one is wrong cannot be told, so the bank is the subject.
    two = topo(4, 2)
    conds = subjects(
        detect_voltage_inconsistency(fold(two, NOW, B1={"pack_voltage_v": 14.6}), NOW, ctx(two))
    )
    assert list(conds) == ["home"]
    assert "string A adds up to 53.00 V and string B to 54.35 V" in conds["home"].message


def test_the_bank_meter_current_against_the_branches() -> None:
    t = topo(1, 4, bank_source=True)
    meter = healthy(NOW, pack_voltage_v=13.25, current_a=-33.0)
    state = fold(t, NOW, meter, **amps(-10, -10, -10, -10))
    conds = subjects(detect_voltage_inconsistency(state, NOW, ctx(t)))
    assert list(conds) == ["home"]
    assert "reads -33.0 A but the branches add up to -40.0 A (+7.0 A unaccounted)" in (
        conds["home"].message
    )
    ok = fold(
        t, NOW, healthy(NOW, pack_voltage_v=13.25, current_a=-38.5), **amps(-10, -10, -10, -10)
    )
    assert detect_voltage_inconsistency(ok, NOW, ctx(t)) == []


def test_a_healthy_bank_has_consistent_voltages() -> None:
    t = topo(4, 2, bank_source=True)
    meter = healthy(NOW, pack_voltage_v=53.0, current_a=-9.0)
    assert detect_voltage_inconsistency(fold(t, NOW, meter), NOW, ctx(t)) == []


# --- cell_imbalance ------------------------------------------------------------------------------


def cells(spread_v: float) -> dict[str, object]:
    return {"cell_voltages_v": (3.30, 3.30 + spread_v, 3.30, 3.30)}


def test_cell_spread_levels_and_the_cell_named() -> None:
    t = topo(1, 2)
    for spread, want in ((0.05, None), (0.25, "warning"), (0.45, "critical")):
        conds = subjects(detect_cell_imbalance(fold(t, NOW, B1=cells(spread)), NOW, ctx(t)))
        got = conds["home/B/B1"].severity if conds else None
        assert got == want, spread
    c = subjects(detect_cell_imbalance(fold(t, NOW, B1=cells(0.25)), NOW, ctx(t)))["home/B/B1"]
    assert "B1: its cells are 250 mV apart" in c.message
    assert "cell 1 lowest at 3.300 V, cell 2 highest at 3.550 V" in c.message


def test_cell_spread_hysteresis() -> None:
    t = topo(1, 1)
    state = fold(t, NOW, A1=cells(0.18))
    assert detect_cell_imbalance(state, NOW, ctx(t)) == []  # under 0.20 and not on
    on = ctx(t, latched={"cell_imbalance:home/A/A1": "warning"})
    assert [c.severity for c in detect_cell_imbalance(state, NOW, on)] == ["warning"]
    assert detect_cell_imbalance(fold(t, NOW, A1=cells(0.16)), NOW, on) == []
    crit = ctx(t, latched={"cell_imbalance:home/A/A1": "critical"})
    assert [c.severity for c in detect_cell_imbalance(fold(t, NOW, A1=cells(0.38)), NOW, crit)] == [
        "critical"
    ]


# --- temperature ---------------------------------------------------------------------------------


def temps(*values: float) -> dict[str, object]:
    return {"temperatures_c": values}


def test_over_and_under_temperature() -> None:
    t = topo(1, 1)
    cases = [((30.0, 44.0), None), ((30.0, 46.0), "warning"), ((50.0, 56.0), "critical"),
             ((-1.0, 3.0), "warning"), ((-12.0, -9.0), "critical")]  # fmt: skip
    for values, want in cases:
        conds = subjects(detect_temperature(fold(t, NOW, A1=temps(*values)), NOW, ctx(t)))
        got = conds["home/A/A1"].severity if conds else None
        assert got == want, values
    c = subjects(detect_temperature(fold(t, NOW, A1=temps(-1.0, 3.0)), NOW, ctx(t)))["home/A/A1"]
    assert c.message.startswith("A1: -1.0 °C, at or under the 0 °C limit")


def test_a_battery_much_warmer_than_its_siblings() -> None:
    t = topo(1, 4)
    state = fold(t, NOW, D1=temps(33.0, 35.0))  # the others: 24.0 and 26.5, hottest 26.5
    conds = subjects(detect_temperature(state, NOW, ctx(t)))
    assert list(conds) == ["home/D/D1"]
    assert conds["home/D/D1"].gist == "warmer"
    assert "8.5 °C warmer than the bank's other batteries" in conds["home/D/D1"].message
    pair = topo(1, 2)
    conds = subjects(detect_temperature(fold(pair, NOW, B1=temps(33.0, 35.0)), NOW, ctx(pair)))
    assert list(conds) == ["home/B/B1"]  # the warmer of the two, not the cooler


def test_one_check_latched_lends_no_hysteresis_to_another() -> None:
    """On for "warmer", at 44 °C (inside the hot limit's hysteresis band): it must not start
    claiming it is over the 45 °C limit."""
    t = topo(1, 4)
    memory = DetectorMemory()
    key = "temperature:home/D/D1"
    first = subjects(
        detect_temperature(fold(t, NOW, D1=temps(40.0, 44.0)), NOW, ctx(t, memory=memory))
    )
    assert first["home/D/D1"].gist == "warmer"
    again = subjects(
        detect_temperature(
            fold(t, NOW, D1=temps(40.0, 44.0)), NOW, ctx(t, {key: "warning"}, memory)
        )
    )
    assert again["home/D/D1"].gist == "warmer"
    assert "limit" not in again["home/D/D1"].message


def test_a_stale_battery_is_not_a_sibling() -> None:
    t = topo(1, 3, link_lost_after_s=10)
    rs = readings(t, NOW)
    rs["C1"] = healthy(NOW - 60, temperatures_c=(70.0,))
    assert detect_temperature(t.fold(rs, NOW), NOW, ctx(t)) == []


# --- pre_parallel_mismatch -----------------------------------------------------------------------


def test_a_branch_apart_from_the_bank_far_off_in_soc_then_joining() -> None:
    t = topo(1, 4)
    memory = DetectorMemory()
    # D1 cabled in with its breaker open: it carries nothing, its voltage off the bus.
    apart = amps(-5, -5, -5, 0)
    apart["D1"].update(soc_pct=20.0, pack_voltage_v=13.05)
    state = fold(t, NOW, **apart)
    conds = subjects(run_detectors(state, NOW, ctx(t, memory=memory)), "pre_parallel_mismatch")
    c = conds["home/D"]
    assert (c.severity, c.gist) == ("warning", "apart")
    assert "-44 SOC points" in c.message
    # The breaker closes: 130 A rush into it (1.3 C): critical, with the gap it joined at.
    joined = amps(+40, +40, +40, 130)
    joined["D1"].update(soc_pct=20.0)
    state = fold(t, NOW + 5, **joined)
    conds = subjects(run_detectors(state, NOW + 5, ctx(t, memory=memory)), "pre_parallel_mismatch")
    c = conds["home/D"]
    assert (c.severity, c.gist) == ("critical", "joined")
    assert c.evidence["inrush_a"] == 130.0
    assert c.evidence["join_gap_soc_pct"] == -44.0
    # Ten minutes later the join is history.
    later = fold(t, NOW + 700, **amps(-5, -5, -5, -5))
    assert "home/D" not in subjects(
        c
        for c in run_detectors(later, NOW + 700, ctx(t, memory=memory))
        if c.kind == "pre_parallel_mismatch"
    )


def test_a_branch_apart_near_its_siblings_is_fine() -> None:
    t = topo(1, 4)
    apart = amps(-5, -5, -5, 0)
    apart["D1"].update(soc_pct=60.0, pack_voltage_v=13.40)
    conds = run_detectors(fold(t, NOW, **apart), NOW, ctx(t))
    assert not [c for c in conds if c.kind == "pre_parallel_mismatch"]


def test_both_switches_open_puts_a_branch_apart() -> None:
    t = topo(1, 3)
    cut = {"C1": {"charge_enabled": False, "discharge_enabled": False, "soc_pct": 30.0,
                  "current_a": 0.0}}  # fmt: skip
    conds = [c for c in run_detectors(fold(t, NOW, **cut), NOW, ctx(t))
             if c.kind == "pre_parallel_mismatch"]  # fmt: skip
    assert [c.subject for c in conds] == ["home/C"]


# --- cutoff: what preceded it --------------------------------------------------------------------


def test_cutoff_says_what_preceded_it_and_keeps_saying_the_same() -> None:
    t = topo(4, 2)
    analyzer = BankAnalyzer(t, t.config.detect)
    events = []
    for i in range(120):
        now = float(i)
        changes: dict[str, dict[str, object]] = {}
        if i < 60:  # sagging under a heavy load
            changes["A2"] = {
                "current_a": -80.0,
                "cell_voltage_min_v": 3.0 - i * 0.004,
                "cell_voltage_max_v": 3.28,
                "temperatures_c": (31.0, 33.5),
            }
        else:  # the switch opens; the BMS says nothing about why
            changes["A2"] = {"current_a": 0.0, "discharge_enabled": False,
                             "cell_voltage_min_v": 2.9, "protections": Protection.NONE}  # fmt: skip
        _, evs = analyzer.step(readings(t, now, **changes), now)
        events += evs
    assert [(e.event, e.alert.id) for e in events] == [("raised", "cutoff:home/A/A2")]
    a = analyzer.tracker.active["cutoff:home/A/A2"]
    assert "no cause reported; the minute before points to cell under-voltage" in a.message
    assert "in the minute before: cells 2.764-3.280 V, up to 33.5 °C, -80.0 A" in a.message
    assert a.evidence["before_cell_min_v"] == pytest.approx(2.764)
    assert a.evidence["before_current_min_a"] == -80.0
    assert "string A cannot discharge: loads run on 1 of 2 strings" in a.message


def test_cutoff_without_history_says_nothing_about_before() -> None:
    t = topo(4, 2)
    state = fold(t, NOW, B1={"discharge_enabled": False, "protections": Protection.SHORT_CIRCUIT})
    (c,) = detect_cutoff(state, NOW, ctx(t))
    assert "before" not in c.message
    assert c.evidence["before_cell_min_v"] is None


def test_a_second_cutoff_elsewhere_shows_in_what_is_left() -> None:
    t = topo(1, 3)
    off = {"discharge_enabled": False, "protections": Protection.CELL_UNDERVOLTAGE}
    conds = subjects(detect_cutoff(fold(t, NOW, A1=off, B1=off), NOW, ctx(t)))
    assert "loads run on 1 of 3 strings, 100 of 300 Ah" in conds["home/A/A1"].message
    conds = subjects(detect_cutoff(fold(t, NOW, A1=off, B1=off, C1=off), NOW, ctx(t)))
    assert "no other string can: no power for the loads" in conds["home/C/C1"].message


# --- the suite -----------------------------------------------------------------------------------


def test_a_healthy_bank_raises_nothing_at_all() -> None:
    for series, parallel in ((4, 2), (1, 16), (2, 1), (16, 4)):
        t = topo(series, parallel, bank_source=True)
        meter = healthy(NOW, pack_voltage_v=13.25 * series, current_a=-4.5 * parallel)
        assert run_detectors(fold(t, NOW, meter), NOW, ctx(t)) == [], (series, parallel)


def test_a_disabled_kind_is_not_run() -> None:
    t = topo(4, 1, detect="\n[detect.soc_mismatch]\nenabled = false\n")
    state = fold(t, NOW, A3={"soc_pct": 10.0})
    assert [c.kind for c in run_detectors(state, NOW, ctx(t))] == []


def test_each_kind_has_its_own_debounce() -> None:
    detect = (
        "\n[detect.temperature]\nraise_after_s = 30\n[detect.cell_imbalance]\nraise_after_s = 0\n"
    )
    t = topo(1, 1, detect=detect)
    frames = [
        (float(i), readings(t, float(i), A1={"temperatures_c": (50.0,), **cells(0.3)}), None)
        for i in range(40)
    ]
    events = run(t, frames)
    assert events == [
        (0.0, "raised", "cell_imbalance:home/A/A1", "warning"),
        (30.0, "raised", "temperature:home/A/A1", "warning"),
    ]
