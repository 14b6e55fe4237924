"""The console view: what a person sees of the bank, in at most 100 columns.

States are folded from hand-made readings through the real Topology, alerts come from the real
detectors and tracker, and ConsoleView is driven by a real Monitor on a ManualClock (its links
are built but never opened).
"""

from __future__ import annotations

import io
import re

from bankwatch.daemon.config import Config, load_config, parse_config
from bankwatch.daemon.console import WIDTH, ConsoleView, render
from bankwatch.daemon.detectors import AlertTracker, Condition, detect_cutoff, detect_link_lost
from bankwatch.daemon.service import Monitor
from bankwatch.daemon.topology import BankState, Topology
from bankwatch.drivers.clock import ManualClock
from bankwatch.drivers.model import Alarm, Protection, Reading
from tests.helpers import REPO

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CLOCK = "2026-06-01 12:00:00"


def reading(at: float, volts: float, amps: float, soc: float, temp: float, **kw: object) -> Reading:
    fields: dict[str, object] = {
        "at": at,
        "pack_voltage_v": volts,
        "current_a": amps,
        "soc_pct": soc,
        "temperatures_c": (temp - 1.0, temp),
        "charge_enabled": True,
        "discharge_enabled": True,
        "protections": Protection.NONE,
        "alarms": Alarm.NONE,
    }
    fields.update(kw)
    return Reading(**fields)  # type: ignore[arg-type]


def sim_config() -> Config:
    return load_config(REPO / "configs" / "sim-48v-4s2p.toml")


# Distinct figures per battery, so a value found on a line belongs to that battery.
FIGURES = {
    "A1": (13.31, 6.2, 81.5, 24.5),
    "A2": (13.02, 0.0, 12.5, 31.5),
    "A3": (13.27, 6.4, 79.5, 25.5),
    "B1": (13.22, 5.8, 77.5, 26.5),
    "B2": (13.24, 5.7, 76.5, 27.5),
    "B3": (13.26, 5.9, 75.5, 28.5),
    "B4": (13.28, 6.1, 74.5, 29.5),
}


def readings_4s2p(now: float) -> dict[str, Reading]:
    """A1 fine; A2 cut off (both switches); A3 no discharge; A4 never heard; B1 stale."""
    out = {name: reading(now, *fig) for name, fig in FIGURES.items()}
    out["A2"] = reading(
        now,
        *FIGURES["A2"],
        charge_enabled=False,
        discharge_enabled=False,
        protections=Protection.CELL_UNDERVOLTAGE,
    )
    out["A3"] = reading(now, *FIGURES["A3"], discharge_enabled=False)
    out["B1"] = reading(now - 60.0, *FIGURES["B1"])  # stale: 60 s > link_lost_after_s = 10
    return out


def state_and_alerts_4s2p(now: float = 100.0) -> tuple[BankState, AlertTracker]:
    topo = Topology(sim_config())
    state = topo.fold(readings_4s2p(now), now)
    tracker = AlertTracker(raise_after_s=0)
    conditions: list[Condition] = detect_cutoff(state, now) + detect_link_lost(state, now)
    tracker.update(conditions, now)
    return state, tracker


def line_of(lines: list[str], name: str) -> str:
    """The one line whose first word is `name` (a battery row)."""
    hits = [ln for ln in lines if ln.split()[:1] == [name]]
    assert len(hits) == 1, f"{name}: {hits}"
    return hits[0]


def assert_fits(lines: list[str]) -> None:
    too_wide = [(len(ln), ln) for ln in lines if len(ln) > WIDTH]
    assert not too_wide, too_wide
    assert WIDTH == 100


# --- render ------------------------------------------------------------------------------------


def test_render_4s2p_shows_bank_strings_and_batteries_with_values_and_state() -> None:
    state, tracker = state_and_alerts_4s2p()
    lines = render(state, tracker.sorted_active(), [("can-A1", "up"), ("can-B1", "down")], CLOCK)
    text = "\n".join(lines)

    assert_fits(lines)
    assert "sim" in lines[0] and CLOCK in lines[0]
    assert any("string A" in ln for ln in lines)
    assert any("string B" in ln for ln in lines)

    for name, (volts, amps, soc, temp) in FIGURES.items():
        row = line_of(lines, name)
        assert f"{volts:.2f}" in row, row
        assert f"{amps:+.1f}" in row, row
        assert f"{soc:.1f}" in row, row
        assert f"{temp:.1f}" in row, row

    assert line_of(lines, "A1").rstrip().endswith("charge")
    assert line_of(lines, "A2").rstrip().endswith("CUTOFF")
    assert line_of(lines, "A3").rstrip().endswith("NO DSG")
    assert line_of(lines, "A4").rstrip().endswith("no data")
    assert line_of(lines, "B1").rstrip().endswith("STALE")
    # A battery never heard has no numbers to show.
    assert not re.search(r"\d", line_of(lines, "A4").strip().removeprefix("A4"))
    assert "can-B1" in text  # the link that is not up is named
    assert "no active alerts" not in text


def test_render_lists_active_alerts_critical_first() -> None:
    state, tracker = state_and_alerts_4s2p()
    alerts = tracker.sorted_active()
    # A2 (critical cutoff), A3 (discharge off: critical), A4 never heard and B1 stale (warnings).
    assert {a.id for a in alerts} == {
        "cutoff:sim/A/A2",
        "cutoff:sim/A/A3",
        "link_lost:sim/A/A4",
        "link_lost:sim/B/B1",
    }
    lines = render(state, alerts, [], CLOCK)
    assert_fits(lines)

    start = next(i for i, ln in enumerate(lines) if ln.startswith("active alerts"))
    assert "(4)" in lines[start]
    section = lines[start + 1 :]
    severities = [ln.split()[0] for ln in section if ln.split()[:1] in (["CRITICAL"], ["WARNING"])]
    assert severities == ["CRITICAL", "CRITICAL", "WARNING", "WARNING"]
    # Each alert names its battery, in the order the alerts came.
    heads = [ln for ln in section if ln.split()[:1] in (["CRITICAL"], ["WARNING"])]
    for head, alert in zip(heads, alerts, strict=True):
        assert alert.kind in head
        assert alert.subject.rsplit("/", 1)[1] + ":" in head


def test_render_with_no_alerts_says_so() -> None:
    topo = Topology(sim_config())
    now = 5.0
    readings = {b.name: reading(now, 13.3, -2.0, 60.0, 25.0) for b in topo.batteries()}
    lines = render(topo.fold(readings, now), [], [], CLOCK)
    assert_fits(lines)
    assert "no active alerts" in lines
    assert all(line_of(lines, b.name).rstrip().endswith("discharge") for b in topo.batteries())


def rack_config(names: list[str], strings: list[str]) -> Config:
    lines = [
        "[bank]",
        'name = "server-room-rack-48v-lfp-16p"',
        'chemistry = "lifepo4"',
        "nominal_voltage_v = 51.2",
        "",
        "[models.rack-module-100ah]",
        "capacity_ah = 100",
        "nominal_voltage_v = 51.2",
        'chemistry = "lifepo4"',
        "",
    ]
    for name in names:
        lines += [f"[links.{name}]", 'type = "can"', 'interface = "virtual"', f'channel = "{name}"']
    for name, string in zip(names, strings, strict=True):
        lines += [
            "[[strings]]",
            f'name = "{string}"',
            f'batteries = [{{ name = "{name}", model = "rack-module-100ah", '
            f'source = {{ link = "{name}", protocol = "pylontech-can" }} }}]',
        ]
    return parse_config("\n".join(lines))


RACK_NAMES = [f"east-rack-shelf{i // 4 + 1}-module-{i % 4 + 1:02d}" for i in range(16)]
RACK_STRINGS = [f"east-rack-branch-{i + 1:02d}" for i in range(16)]


def rack_view() -> list[str]:
    """1S16P: sixteen 48 V modules in parallel, long names, one cut off, one stale, one
    never heard, one overheating, several alerts."""
    config = rack_config(RACK_NAMES, RACK_STRINGS)
    topo = Topology(config)
    now = 1000.0
    readings: dict[str, Reading] = {}
    for i, name in enumerate(RACK_NAMES):
        readings[name] = reading(now, 53.0 + i / 100, -12.5 - i / 10, 50.0 + i, 20.0 + i)
    readings[RACK_NAMES[3]] = reading(
        now, 51.1, 0.0, 1.0, 22.0, discharge_enabled=False, protections=Protection.CELL_UNDERVOLTAGE
    )
    readings[RACK_NAMES[7]] = reading(now - 500.0, 53.07, -13.2, 57.0, 27.0)
    del readings[RACK_NAMES[11]]
    readings[RACK_NAMES[14]] = reading(
        now, 53.14, -13.9, 64.0, 71.0, charge_enabled=False, protections=Protection.OVER_TEMPERATURE
    )
    state = topo.fold(readings, now)
    tracker = AlertTracker(raise_after_s=0)
    tracker.update(detect_cutoff(state, now) + detect_link_lost(state, now), now)
    alerts = tracker.sorted_active()
    assert len(alerts) == 4
    links = [(name, "up") for name in RACK_NAMES]
    links[7] = (RACK_NAMES[7], "silent")
    links[11] = (RACK_NAMES[11], "down")
    return render(state, alerts, links, CLOCK)


def test_render_16_battery_rack_fits_in_100_columns() -> None:
    lines = rack_view()
    assert_fits(lines)
    text = "\n".join(lines)
    assert "server-room-rack" in text
    # Every battery has its row, and the rows carry their own figures and state.
    # battery rows are indented four; wrapped alert text that names a module is indented more
    rows = [ln for ln in lines if ln.startswith("    east-rack-shelf")]
    assert len(rows) == 16
    assert sum("53.00" in r for r in rows) == 1  # the first module's voltage, on one row only
    states = [r.split()[-1] for r in rows]
    assert states.count("STALE") == 1
    assert states.count("DSG") == 1  # "NO DSG"
    assert states.count("CHG") == 1  # "NO CHG"
    assert "no data" in text
    heads = [ln.split()[0] for ln in lines if ln.split()[:1] in (["CRITICAL"], ["WARNING"])]
    assert heads == ["CRITICAL", "WARNING", "WARNING", "WARNING"]


def test_render_16_battery_rack_names_every_battery_and_string_in_full() -> None:
    """Names of 20-odd characters fit in 100 columns beside the figures; clipping them to a
    fixed width makes sixteen rows that all read "east-rack-shelf1-" or similar, and a person
    cannot tell which module is the one cut off."""
    lines = rack_view()
    assert_fits(lines)
    for name in RACK_NAMES:
        assert sum(name in ln for ln in lines) >= 1, f"{name} is not shown in full"
    for string in RACK_STRINGS:
        assert any(string in ln for ln in lines), f"string {string} is not shown in full"


# --- ConsoleView -------------------------------------------------------------------------------


def monitor_4s2p(sink: ConsoleView) -> tuple[Monitor, ManualClock]:
    clock = ManualClock(start_monotonic=0.0)
    config = sim_config().model_copy(
        update={"detect": sim_config().detect.model_copy(update={"clear_after_s": 3.0})}
    )
    return Monitor(config, clock, [sink]), clock


def all_fine(now: float) -> dict[str, Reading]:
    names = [f"{s}{i}" for s in "AB" for i in range(1, 5)]
    return {n: reading(now, 13.3, -3.0, 70.0, 25.0) for n in names}


def drive(monitor: Monitor, clock: ManualClock, seconds: int, cut_a2: range) -> None:
    """One tick per second; A2 is cut off during `cut_a2` (in elapsed seconds)."""
    for _ in range(seconds):
        now = clock.monotonic()
        monitor.readings.update(all_fine(now))
        if int(clock.elapsed) in cut_a2:
            monitor.readings["A2"] = reading(
                now,
                13.0,
                0.0,
                70.0,
                25.0,
                discharge_enabled=False,
                protections=Protection.OVER_TEMPERATURE,
            )
        state, events = monitor.tick(now)
        tick = monitor.snapshot(state, events)
        for sink in monitor.sinks:
            sink.on_tick(tick)
        clock.advance(1.0)


def test_console_view_without_a_terminal_prints_events_and_status_lines() -> None:
    out = io.StringIO()
    view = ConsoleView(out, every_s=10.0)
    assert view.live is False  # StringIO is not a terminal
    monitor, clock = monitor_4s2p(view)

    drive(monitor, clock, 25, cut_a2=range(5, 12))

    text = out.getvalue()
    assert "\x1b" not in text
    assert_fits(text.splitlines())
    # an alert event may wrap: continuation lines are indented; join them to read the event
    lines: list[str] = []
    for ln in text.splitlines():
        if ln.startswith("    ") and lines:
            lines[-1] += " " + ln.strip()
        else:
            lines.append(ln)
    events = [ln for ln in lines if " alert " in ln]
    assert len(events) == 2, events
    raised, cleared = events
    assert "alert raised: critical cutoff sim/A/A2" in raised
    assert "over_temperature" in raised
    assert "alert cleared:" in cleared and "sim/A/A2" in cleared
    status = [ln for ln in lines if ln not in events]
    # Every 10 s of bank time (t = 0, 10, 20), not every tick.
    assert len(status) == 3, status
    assert all("sim:" in ln and "8/8 batteries live" in ln for ln in status)
    assert "1 active alert" in status[1]
    assert "0 active alert" in status[2]


def test_console_view_on_a_terminal_redraws_the_view() -> None:
    out = io.StringIO()
    view = ConsoleView(out, live=True)
    monitor, clock = monitor_4s2p(view)

    drive(monitor, clock, 8, cut_a2=range(3, 20))

    frames = [f for f in out.getvalue().split("\x1b[H\x1b[2J") if f]
    assert len(frames) == 8  # one full redraw per tick
    last = frames[-1].splitlines()
    assert_fits(last)
    assert ANSI.search(frames[-1]) is None
    assert line_of(last, "A2").rstrip().endswith("NO DSG")
    assert any(ln.split()[:2] == ["CRITICAL", "cutoff"] for ln in last)
    assert any("links:" in ln for ln in last)


def test_console_view_without_a_terminal_keeps_lines_within_100_columns() -> None:
    out = io.StringIO()
    monitor, clock = monitor_4s2p(ConsoleView(out, every_s=10.0))
    drive(monitor, clock, 25, cut_a2=range(5, 12))
    lines = out.getvalue().splitlines()
    assert any(" alert raised:" in ln for ln in lines)
    assert_fits(lines)


def test_the_bank_row_says_when_the_bank_is_empty_or_full() -> None:
    from bankwatch.daemon.console import fmt_duration

    assert [fmt_duration(s) for s in (59, 2700, 3600 * 5 + 600, 86_400 * 3 + 7200)] == [
        "0m",
        "45m",
        "5h10m",
        "3d2h",
    ]
    topo = Topology(sim_config())
    now = 100.0

    def bank_row(amps: float) -> str:
        readings = {
            b.name: Reading(at=now, pack_voltage_v=13.2, current_a=amps, soc_pct=50.0)
            for b in topo.batteries()
        }
        lines = render(topo.fold(readings, now), [], [], CLOCK)
        assert_fits(lines)
        return next(ln for ln in lines if ln.startswith("bank "))

    # 2 strings × 50 Ah left, 20 A out of each: 2.5 h. Charging: 50 Ah of room each at 25 A.
    assert bank_row(-20.0).endswith(", empty in 2h30m")
    assert bank_row(25.0).endswith(", full in 2h00m")
    assert "empty in" not in bank_row(0.0) and "full in" not in bank_row(0.0)
    # No links (the scenario runner feeds readings straight in): said so, not "0/0 up".
    readings = {b.name: Reading(at=now, pack_voltage_v=13.2) for b in topo.batteries()}
    assert "links: none open" in render(topo.fold(readings, now), [], [], CLOCK)
