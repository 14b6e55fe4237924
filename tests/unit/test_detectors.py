"""Detectors on hand-built bank states, and the alert lifecycle (debounce, hysteresis) over time.

Banks are built from small TOML configs with `parse_config`, states with `Topology.fold`: the
same path the daemon takes, with time passed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bankwatch.daemon.config import parse_config
from bankwatch.daemon.detectors import (
    AlertEvent,
    AlertTracker,
    Condition,
    detect_cutoff,
    detect_link_lost,
)
from bankwatch.daemon.topology import BankState, Topology
from bankwatch.drivers.model import Alarm, Protection, Reading

# --- building banks and readings -----------------------------------------------------------------


def bank_toml(
    series: int,
    parallel: int,
    *,
    name: str = "home",
    sources: bool = True,
    unsourced: Sequence[str] = (),
    bank_source: bool = False,
    link_lost_after_s: float = 10,
    stale_after_s: Mapping[str, float] | None = None,
) -> str:
    """`parallel` strings A, B, ... of `series` 12.8 V 100 Ah batteries A1..An, B1..Bn.

    With `sources`, each battery speaks Pylontech CAN on a link of its own (can-A1, ...), except
    the batteries named in `unsourced`; with `bank_source`, a bank master talks on can-bank.
    """
    stale_after_s = stale_after_s or {}
    names = [[f"{chr(ord('A') + p)}{s + 1}" for s in range(series)] for p in range(parallel)]
    lines = [
        "[bank]",
        f'name = "{name}"',
        'chemistry = "lifepo4"',
        f"nominal_voltage_v = {12.8 * series:g}",
    ]
    if bank_source:
        lines.append('source = { link = "can-bank", protocol = "pylontech-can" }')
    lines += [
        "",
        "[models.lfp100]",
        "capacity_ah = 100",
        "nominal_voltage_v = 12.8",
        'chemistry = "lifepo4"',
        "",
    ]
    linked = [n for row in names for n in row if sources and n not in unsourced]
    if bank_source:
        linked.append("bank")
    for n in linked:
        lines += [
            f"[links.can-{n}]",
            'type = "can"',
            'interface = "virtual"',
            f'channel = "{n}"',
            "",
        ]
    for row in names:
        lines += ["[[strings]]", f'name = "{row[0][0]}"', "batteries = ["]
        for n in row:
            extra = ""
            if n in linked:
                extra += f', source = {{ link = "can-{n}", protocol = "pylontech-can" }}'
            if n in stale_after_s:
                extra += f", stale_after_s = {stale_after_s[n]}"
            lines.append(f'  {{ name = "{n}", model = "lfp100"{extra} }},')
        lines += ["]", ""]
    lines += ["[detect]", f"link_lost_after_s = {link_lost_after_s}", ""]
    return "\n".join(lines)


def topology(series: int, parallel: int, **kwargs: object) -> Topology:
    return Topology(parse_config(bank_toml(series, parallel, **kwargs)))  # type: ignore[arg-type]


def healthy(at: float, **changes: object) -> Reading:
    """A battery resting in the middle of its range, both switches closed, nothing flagged."""
    fields: dict[str, object] = {
        "at": at,
        "pack_voltage_v": 13.25,
        "current_a": -4.5,
        "soc_pct": 64.0,
        "temperatures_c": (24.0, 26.5),
        "cell_voltage_min_v": 3.30,
        "cell_voltage_max_v": 3.32,
        "charge_enabled": True,
        "discharge_enabled": True,
        "protections": Protection.NONE,
        "alarms": Alarm.NONE,
    }
    fields.update(changes)
    return Reading(**fields)  # type: ignore[arg-type]


def all_healthy(topo: Topology, at: float) -> dict[str, Reading]:
    return {b.name: healthy(at) for b in topo.batteries()}


def by_subject(conditions: list[Condition]) -> dict[str, Condition]:
    subjects = [c.subject for c in conditions]
    assert len(subjects) == len(set(subjects)), f"one condition per subject: {subjects}"
    return {c.subject: c for c in conditions}


# --- detect_cutoff -------------------------------------------------------------------------------


def test_no_cutoff_on_a_healthy_bank() -> None:
    topo = topology(4, 2)
    state = topo.fold(all_healthy(topo, 100.0), 100.0)
    assert detect_cutoff(state, 100.0) == []


def test_discharge_off_in_a_series_string_is_critical_and_says_the_string_is_down() -> None:
    topo = topology(4, 2)
    readings = all_healthy(topo, 50.0)
    readings["A2"] = healthy(
        50.0,
        discharge_enabled=False,
        protections=Protection.CELL_UNDERVOLTAGE,
        current_a=0.0,
        soc_pct=3.0,
        pack_voltage_v=11.6,
    )
    state = topo.fold(readings, 50.0)

    conds = by_subject(detect_cutoff(state, 50.0))

    assert list(conds) == ["home/A/A2"]
    c = conds["home/A/A2"]
    assert (c.kind, c.severity, c.key) == ("cutoff", "critical", "cutoff:home/A/A2")
    assert c.message.startswith("A2: ")
    assert "discharge" in c.message
    assert "cell_undervoltage" in c.message
    # Only discharge is blocked: the string still takes charge, so it is not "down".
    assert "string A cannot discharge" in c.message and "down" not in c.message
    # What is left of the bank: one string of two, 100 of 200 Ah.
    assert "1 of 2 strings" in c.message
    assert "100 of 200 Ah" in c.message


def test_both_switches_off_in_a_parallel_bank_says_the_branch_is_lost() -> None:
    topo = topology(1, 4)  # four batteries in parallel: A1, B1, C1, D1
    readings = all_healthy(topo, 5.0)
    readings["C1"] = healthy(5.0, charge_enabled=False, discharge_enabled=False)
    state = topo.fold(readings, 5.0)

    conds = by_subject(detect_cutoff(state, 5.0))

    c = conds["home/C/C1"]
    assert c.severity == "critical"
    assert c.message.startswith("C1: ")
    assert "branch C is lost" in c.message
    assert "is down (series)" not in c.message
    assert "3 of 4 strings" in c.message
    assert "300 of 400 Ah" in c.message


def test_cutoff_of_a_single_string_bank_says_there_is_no_power() -> None:
    topo = topology(4, 1)
    readings = all_healthy(topo, 5.0)
    readings["A3"] = healthy(5.0, discharge_enabled=False)
    c = by_subject(detect_cutoff(topo.fold(readings, 5.0), 5.0))["home/A/A3"]
    assert c.severity == "critical"
    assert "only string" in c.message


def test_only_charge_off_is_a_warning() -> None:
    topo = topology(4, 2)
    readings = all_healthy(topo, 5.0)
    readings["B4"] = healthy(5.0, charge_enabled=False, protections=Protection.CELL_OVERVOLTAGE)
    c = by_subject(detect_cutoff(topo.fold(readings, 5.0), 5.0))["home/B/B4"]
    assert c.severity == "warning"
    assert c.message.startswith("B4: ")
    assert "charge switch" in c.message
    assert "discharge" not in c.message
    assert "cell_overvoltage" in c.message
    # It can still deliver: the string is not down.
    assert "is down" not in c.message


def test_protection_flag_with_switches_closed_is_reported_without_claiming_an_outage() -> None:
    topo = topology(4, 2)
    readings = all_healthy(topo, 5.0)
    readings["A1"] = healthy(5.0, protections=Protection.OVER_TEMPERATURE)
    c = by_subject(detect_cutoff(topo.fold(readings, 5.0), 5.0))["home/A/A1"]
    assert c.severity == "warning"
    assert c.message.startswith("A1: ")
    assert "over_temperature" in c.message
    assert c.evidence["charge_enabled"] is True
    assert c.evidence["discharge_enabled"] is True
    # The switches are closed: current still flows, so nothing is down or lost yet.
    assert "is down" not in c.message
    assert "lost" not in c.message
    assert "runs on" not in c.message


def test_cutoff_evidence_carries_what_a_person_needs() -> None:
    topo = topology(4, 2)
    readings = all_healthy(topo, 5.0)
    readings["B2"] = healthy(
        5.0,
        discharge_enabled=False,
        charge_enabled=True,
        protections=Protection.DISCHARGE_OVERCURRENT | Protection.OVER_TEMPERATURE,
        alarms=Alarm.HIGH_TEMPERATURE,
        pack_voltage_v=12.9,
        current_a=-0.2,
        soc_pct=41.5,
        temperatures_c=(38.0, 61.5),
    )
    c = by_subject(detect_cutoff(topo.fold(readings, 5.0), 5.0))["home/B/B2"]
    ev = c.evidence
    assert ev["protections"] == ["discharge_overcurrent", "over_temperature"]
    assert ev["alarms"] == ["high_temperature"]
    assert ev["charge_enabled"] is True
    assert ev["discharge_enabled"] is False
    assert ev["pack_voltage_v"] == 12.9
    assert ev["current_a"] == -0.2
    assert ev["soc_pct"] == 41.5
    assert ev["temperature_c"] == 61.5  # the hottest sensor
    assert ev["stale"] is False
    # Both causes are named in the message.
    assert "discharge_overcurrent" in c.message and "over_temperature" in c.message


def test_a_stale_reading_keeps_an_existing_cutoff() -> None:
    topo = topology(4, 2, link_lost_after_s=10)
    readings = all_healthy(topo, 0.0)
    readings["A2"] = healthy(0.0, discharge_enabled=False, protections=Protection.SHORT_CIRCUIT)
    # Everyone else keeps talking; A2 went quiet after its cutoff.
    readings.update({n: healthy(300.0) for n in readings if n != "A2"})
    state = topo.fold(readings, 300.0)
    assert not state.battery("A2").live

    conds = by_subject(detect_cutoff(state, 300.0))
    c = conds["home/A/A2"]
    assert c.severity == "critical"
    assert c.evidence["stale"] is True

    # And through the tracker: the alert stays, it is not cleared by losing contact.
    tracker = AlertTracker(raise_after_s=0, clear_after_s=5)
    fresh = dict(readings, A2=readings["A2"])
    events = tracker.update(detect_cutoff(topo.fold(fresh, 5.0), 5.0), 5.0)
    assert [(e.event, e.alert.id) for e in events] == [("raised", "cutoff:home/A/A2")]
    for now in range(6, 400, 7):
        events = tracker.update(detect_cutoff(topo.fold(readings, float(now)), now), now)
        assert not [e for e in events if e.event == "cleared"], f"cleared at {now}"
    assert "cutoff:home/A/A2" in tracker.active


def test_bank_level_reading_cutoff_has_the_bank_as_subject() -> None:
    topo = topology(4, 2, name="garage", bank_source=True)
    master = healthy(
        7.0,
        discharge_enabled=False,
        charge_enabled=True,
        protections=Protection.CELL_UNDERVOLTAGE,
        soc_pct=2.0,
    )
    state = topo.fold(all_healthy(topo, 7.0), 7.0, bank_reading=master)

    conds = by_subject(detect_cutoff(state, 7.0))

    assert list(conds) == ["garage"]
    c = conds["garage"]
    assert c.key == "cutoff:garage"
    assert c.severity == "critical"
    assert "cell_undervoltage" in c.message
    assert c.evidence["discharge_enabled"] is False
    assert c.evidence["protections"] == ["cell_undervoltage"]
    assert c.evidence["soc_pct"] == 2.0


def test_healthy_bank_master_raises_nothing() -> None:
    topo = topology(2, 2, bank_source=True)
    state = topo.fold(all_healthy(topo, 7.0), 7.0, bank_reading=healthy(7.0))
    assert detect_cutoff(state, 7.0) == []


# --- detect_link_lost ----------------------------------------------------------------------------


def test_link_lost_waits_for_the_stale_time_after_start() -> None:
    topo = topology(2, 2, link_lost_after_s=10)
    started = 1000.0
    assert detect_link_lost(topo.fold({}, started + 0.0), started + 0.0, started) == []
    assert detect_link_lost(topo.fold({}, started + 9.5), started + 9.5, started) == []

    conds = by_subject(detect_link_lost(topo.fold({}, started + 11), started + 11, started))

    assert sorted(conds) == ["home/A/A1", "home/A/A2", "home/B/B1", "home/B/B2"]
    c = conds["home/B/B2"]
    assert (c.kind, c.severity) == ("link_lost", "warning")
    assert c.message.startswith("B2: ")
    assert "can-B2" in c.message
    assert c.evidence["link"] == "can-B2"
    assert c.evidence["protocol"] == "pylontech-can"


def test_link_lost_after_a_battery_stops_talking() -> None:
    topo = topology(2, 1, link_lost_after_s=10, stale_after_s={"A2": 30})
    readings = {"A1": healthy(100.0), "A2": healthy(100.0)}
    assert detect_link_lost(topo.fold(readings, 109.0), 109.0) == []

    conds = by_subject(detect_link_lost(topo.fold(readings, 111.0), 111.0))
    assert list(conds) == ["home/A/A1"]  # A2 has a stale time of its own: 30 s
    assert "can-A1" in conds["home/A/A1"].message
    assert conds["home/A/A1"].evidence["last_seen_age_s"] == 11.0

    conds = by_subject(detect_link_lost(topo.fold(readings, 131.0), 131.0))
    assert sorted(conds) == ["home/A/A1", "home/A/A2"]


def test_no_link_lost_for_batteries_without_a_source() -> None:
    topo = topology(2, 2, unsourced=("A2", "B1"))
    conds = by_subject(detect_link_lost(topo.fold({}, 500.0), 500.0))
    assert sorted(conds) == ["home/A/A1", "home/B/B2"]

    no_sources = topology(2, 2, sources=False)
    assert detect_link_lost(no_sources.fold({}, 500.0), 500.0) == []


def test_link_lost_message_is_the_same_while_the_silence_goes_on() -> None:
    topo = topology(2, 1)
    heard = {"A1": healthy(0.0)}  # A1 heard once; A2 never
    messages: dict[str, set[str]] = {"home/A/A1": set(), "home/A/A2": set()}
    for now in (11.0, 12.0, 37.5, 600.0, 86_400.0):
        for c in detect_link_lost(topo.fold(heard, now), now):
            messages[c.subject].add(c.message)
    assert all(len(m) == 1 for m in messages.values()), messages


def test_link_lost_lifecycle_raises_once_and_clears_when_heard_again() -> None:
    topo = topology(2, 1, link_lost_after_s=10)
    tracker = AlertTracker(raise_after_s=0, clear_after_s=5)
    events: list[tuple[float, str, str]] = []
    readings: dict[str, Reading] = {}
    for t in range(200):
        now = float(t)
        readings["A1"] = healthy(now)
        if not 20 <= t < 80:  # A2 is silent from 20 s to 80 s
            readings["A2"] = healthy(now)
        state = topo.fold(readings, now)
        for ev in tracker.update(detect_link_lost(state, now), now):
            events.append((now, ev.event, ev.alert.id))

    assert [(e, i) for _, e, i in events] == [
        ("raised", "link_lost:home/A/A2"),
        ("cleared", "link_lost:home/A/A2"),
    ]
    (raised_at, _, _), (cleared_at, _, _) = events
    assert 29 < raised_at <= 31  # stale after 10 s of silence
    assert 80 <= cleared_at <= 86  # heard at 80 s, gone for clear_after_s


# --- AlertTracker --------------------------------------------------------------------------------


def cond(
    subject: str = "home/A/A1",
    severity: str = "warning",
    message: str = "A1: something",
    kind: str = "cutoff",
    **evidence: float,
) -> Condition:
    return Condition(kind, subject, severity, message, dict(evidence))  # type: ignore[arg-type]


def run(
    tracker: AlertTracker, timeline: Sequence[Sequence[Condition]], start: float = 0.0
) -> list[tuple[float, str, str]]:
    """Feed one list of conditions per second; return (time, event, id) for every event."""
    out = []
    for i, conds in enumerate(timeline):
        now = start + i
        for ev in tracker.update(list(conds), now):
            out.append((now, ev.event, ev.alert.id))
    return out


def test_raise_after_debounces_short_conditions() -> None:
    tracker = AlertTracker(raise_after_s=5, clear_after_s=0)
    c = cond()
    # On for 4 s (short of 5), off, on for 3 s, off: never raised.
    timeline = [[c]] * 5 + [[]] + [[c]] * 3 + [[]] * 3
    assert run(tracker, timeline) == []
    assert tracker.active == {}

    # On for long enough: raised once, at 5 s after it started.
    events = run(tracker, [[c]] * 10, start=100.0)
    assert events == [(105.0, "raised", "cutoff:home/A/A1")]
    assert tracker.active["cutoff:home/A/A1"].raised_at == 105.0


def test_clear_after_is_hysteresis_for_flickering_conditions() -> None:
    tracker = AlertTracker(raise_after_s=0, clear_after_s=4)
    c = cond()
    # Flickers: present, absent for 3 s (< 4), present, absent 1 s, ... then gone for good.
    timeline = (
        [[c]] + [[]] * 3 + [[c]] + [[]] + [[c]] * 2 + [[]] * 3 + [[c]] + [[]] * 2 + [[c]]
    ) * 3 + [[]] * 10
    events = run(tracker, timeline)
    last_present = max(i for i, conds in enumerate(timeline) if conds)
    assert events == [
        (0.0, "raised", "cutoff:home/A/A1"),
        (last_present + 5.0, "cleared", "cutoff:home/A/A1"),
    ]


def test_updated_only_when_severity_or_message_changes() -> None:
    tracker = AlertTracker(raise_after_s=0, clear_after_s=5)
    timeline = [
        [cond(message="A1: hot", temperature_c=50)],
        [cond(message="A1: hot", temperature_c=51)],  # evidence moves: no event
        [cond(message="A1: hot", temperature_c=52)],
        [cond(message="A1: hot", severity="critical", temperature_c=60)],  # severity: updated
        [cond(message="A1: hot", severity="critical", temperature_c=61)],
        [cond(message="A1: very hot", severity="critical", temperature_c=70)],  # message
        [cond(message="A1: very hot", severity="critical", temperature_c=71)],
    ]
    tracker_events: list[AlertEvent] = []
    for i, conds in enumerate(timeline):
        tracker_events += tracker.update(conds, float(i))
    assert [(e.at, e.event) for e in tracker_events] == [
        (0.0, "raised"),
        (3.0, "updated"),
        (5.0, "updated"),
    ]
    upd = tracker_events[1].alert
    assert (upd.severity, upd.message, upd.raised_at) == ("critical", "A1: hot", 0.0)
    final = tracker.active["cutoff:home/A/A1"]
    assert (final.severity, final.message, final.raised_at) == ("critical", "A1: very hot", 0.0)
    # Evidence is kept fresh even without an event (the last tick said 71).
    assert final.evidence["temperature_c"] == 71


def test_ids_are_stable_kind_and_subject() -> None:
    tracker = AlertTracker(raise_after_s=0, clear_after_s=0)
    events = tracker.update(
        [
            cond("home/A/A1", kind="cutoff"),
            cond("home/A/A1", kind="link_lost"),
            cond("home", kind="cutoff", message="bank master opened discharge"),
        ],
        1.0,
    )
    assert sorted(e.alert.id for e in events) == [
        "cutoff:home",
        "cutoff:home/A/A1",
        "link_lost:home/A/A1",
    ]
    again = tracker.update([cond("home/A/A1", kind="cutoff", message="A1: changed")], 2.0)
    by_event = {(e.event, e.alert.id) for e in again}
    assert ("updated", "cutoff:home/A/A1") in by_event
    assert ("cleared", "link_lost:home/A/A1") in by_event
    assert ("cleared", "cutoff:home") in by_event
    assert all(e.alert.id == f"{e.alert.kind}:{e.alert.subject}" for e in events + again)
    # The JSON form carries the same id.
    assert again[0].to_json()["id"] == again[0].alert.id


def test_sorted_active_puts_critical_first() -> None:
    tracker = AlertTracker(raise_after_s=0)
    tracker.update(
        [
            cond("home/A/A1", "info"),
            cond("home/B/B2", "warning"),
            cond("home/A/A3", "critical"),
            cond("home/A/A2", "warning"),
            cond("home/B/B1", "critical"),
        ],
        0.0,
    )
    order = [(a.severity, a.subject) for a in tracker.sorted_active()]
    assert order == [
        ("critical", "home/A/A3"),
        ("critical", "home/B/B1"),
        ("warning", "home/A/A2"),
        ("warning", "home/B/B2"),
        ("info", "home/A/A1"),
    ]


@settings(max_examples=300, deadline=None)
@given(
    pattern=st.lists(st.lists(st.booleans(), min_size=2, max_size=2), min_size=1, max_size=120),
    raise_after_s=st.integers(min_value=0, max_value=6),
    clear_after_s=st.integers(min_value=0, max_value=6),
    severity_flips=st.lists(st.booleans(), min_size=120, max_size=120),
)
def test_events_alternate_raised_and_cleared(
    pattern: list[list[bool]],
    raise_after_s: int,
    clear_after_s: int,
    severity_flips: list[bool],
) -> None:
    """Two independent conditions switched on and off at random, sampled at 1 s: for each id
    the events go raised, (updated...), cleared, raised, ...; a raise follows `raise_after_s` of
    the condition holding, a clear `clear_after_s` of it being gone."""
    tracker = AlertTracker(raise_after_s=raise_after_s, clear_after_s=clear_after_s)
    subjects = ("home/A/A1", "home/B/B1")
    history: dict[str, list[bool]] = {s: [] for s in subjects}
    last: dict[str, str] = {}
    for t, (on_a, on_b) in enumerate(pattern):
        conds = []
        for subject, on in zip(subjects, (on_a, on_b), strict=True):
            history[subject].append(on)
            if on:
                sev = "critical" if severity_flips[t] else "warning"
                conds.append(cond(subject, sev))
        for ev in tracker.update(conds, float(t)):
            key = ev.alert.id
            subject = ev.alert.subject
            seen = history[subject]
            prev = last.get(key)
            if ev.event == "raised":
                assert prev in (None, "cleared"), f"{key}: raised after {prev} at {t}"
                # The condition held for the whole debounce window.
                assert all(seen[-(raise_after_s + 1) :])
                assert len(seen) >= raise_after_s + 1
            elif ev.event == "updated":
                assert prev in ("raised", "updated"), f"{key}: updated after {prev} at {t}"
                assert seen[-1]
            else:
                assert prev in ("raised", "updated"), f"{key}: cleared after {prev} at {t}"
                # Gone for the whole hysteresis window.
                assert not any(seen[-(clear_after_s + 1) :])
            last[key] = ev.event
        # Whatever is active is what the events say is active.
        assert set(tracker.active) == {k for k, e in last.items() if e != "cleared"}
    # A condition that held long enough was raised; one gone long enough is not active.
    for subject in subjects:
        seen = history[subject]
        key = f"cutoff:{subject}"
        if len(seen) > raise_after_s and all(seen[-(raise_after_s + 1) :]):
            assert key in tracker.active
        if len(seen) > clear_after_s and not any(seen[-(clear_after_s + 1) :]):
            assert key not in tracker.active


def test_tracker_over_a_bank_raises_each_battery_once() -> None:
    """detect_cutoff + AlertTracker on a bank whose battery trips, stays off and recovers."""
    topo = topology(4, 2)
    tracker = AlertTracker(raise_after_s=2, clear_after_s=5)
    seen: list[tuple[float, str, str, str]] = []
    for t in range(120):
        now = float(t)
        readings = all_healthy(topo, now)
        if 30 <= t < 70:
            readings["B3"] = healthy(
                now,
                discharge_enabled=False,
                charge_enabled=False,
                protections=Protection.UNDER_TEMPERATURE,
                temperatures_c=(-2.0 + t / 100,),  # evidence moves every tick
            )
        state: BankState = topo.fold(readings, now)
        for ev in tracker.update(detect_cutoff(state, now), now):
            seen.append((now, ev.event, ev.alert.id, ev.alert.severity))
    assert seen == [
        (32.0, "raised", "cutoff:home/B/B3", "critical"),
        (75.0, "cleared", "cutoff:home/B/B3", "critical"),  # gone at 70 s, + 5 s
    ]


@pytest.mark.parametrize("raise_after_s", [0, 3])
def test_a_condition_that_vanishes_before_raising_leaves_nothing_pending(
    raise_after_s: float,
) -> None:
    tracker = AlertTracker(raise_after_s=raise_after_s, clear_after_s=2)
    c = cond()
    events = run(tracker, [[c], [], [c], [], [c]])
    if raise_after_s == 0:
        # Raised at once and never gone long enough to clear.
        assert events == [(0.0, "raised", "cutoff:home/A/A1")]
    else:
        assert events == []
        assert tracker.active == {}


def test_both_switches_off_in_a_series_string_says_the_string_is_down() -> None:
    topo = topology(4, 2)
    readings = all_healthy(topo, 5.0)
    readings["B3"] = healthy(5.0, charge_enabled=False, discharge_enabled=False)
    (c,) = detect_cutoff(topo.fold(readings, 5.0), 5.0)
    assert c.subject == "home/B/B3"
    assert "string B is down: the bank runs on 1 of 2 strings, 100 of 200 Ah" in c.message


def test_charge_off_only_says_charging_goes_elsewhere() -> None:
    topo = topology(4, 2)
    readings = all_healthy(topo, 5.0)
    readings["A1"] = healthy(5.0, charge_enabled=False, protections=Protection.CELL_OVERVOLTAGE)
    (c,) = detect_cutoff(topo.fold(readings, 5.0), 5.0)
    assert c.severity == "warning"
    assert "string A cannot take charge: charging goes to 1 of 2 strings" in c.message
