"""The alert lifecycle beyond one tick: the gist decides what is an update, value hysteresis
through the latched severities, merged conditions, and active alerts that survive a restart of
the daemon (the state file: atomic, written only on change, corrupt files set aside)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from bankwatch.daemon.alert_state import AlertStore, default_state_dir
from bankwatch.daemon.alerts import Alert, AlertTracker, Condition, level, merge_conditions
from bankwatch.daemon.config import parse_config
from bankwatch.daemon.service import Monitor
from bankwatch.drivers.clock import ManualClock
from bankwatch.drivers.model import Protection
from tests.unit.test_detectors import bank_toml, healthy


def cond(
    message: str, severity: str = "warning", gist: str | None = "gap", **ev: float
) -> Condition:
    return Condition("soc_mismatch", "home/A/A1", severity, message, dict(ev), gist)  # type: ignore[arg-type]


# --- the tracker --------------------------------------------------------------------------------


def test_figures_moving_in_the_message_are_no_update_but_are_kept_fresh() -> None:
    tracker = AlertTracker(raise_after_s=0, clear_after_s=5)
    events = tracker.update([cond("A1: 11.2 points below", gap_pct=-11.2)], 0.0)
    assert [e.event for e in events] == ["raised"]
    for i, gap in enumerate((11.5, 12.1, 12.9), start=1):
        assert tracker.update([cond(f"A1: {gap} points below", gap_pct=-gap)], float(i)) == []
    active = tracker.active["soc_mismatch:home/A/A1"]
    assert active.message == "A1: 12.9 points below"
    assert active.evidence["gap_pct"] == -12.9
    # What it is about changes: that is an update.
    events = tracker.update([cond("A1: 13 points above", gist="above")], 5.0)
    assert [(e.event, e.alert.gist) for e in events] == [("updated", "above")]


def test_latched_reports_active_and_pending_severities() -> None:
    tracker = AlertTracker(raise_after_s=0, clear_after_s=5, per_kind={"temperature": (60, 5)})
    hot = Condition("temperature", "home/A/A2", "critical", "A2: hot")
    tracker.update([cond("A1: gap"), hot], 0.0)
    assert tracker.latched() == {
        "soc_mismatch:home/A/A1": "warning",  # raised at once
        "temperature:home/A/A2": "critical",  # waiting out its minute
    }
    assert list(tracker.active) == ["soc_mismatch:home/A/A1"]


def test_level_has_hysteresis_in_value() -> None:
    assert level(9.9, 10, 20, 2, None) is None
    assert level(10.0, 10, 20, 2, None) == "warning"
    assert level(8.5, 10, 20, 2, "warning") == "warning"
    assert level(7.9, 10, 20, 2, "warning") is None
    assert level(19.0, 10, 20, 2, "critical") == "critical"
    assert level(17.9, 10, 20, 2, "critical") == "warning"
    # A latched info (an early drift notice) lends nothing to the warning threshold.
    assert level(9.0, 10, 20, 2, "info") is None


def test_conditions_on_one_subject_merge_into_one_alert() -> None:
    a = Condition("voltage_inconsistency", "home", "warning", "meter current off", {"x": 1}, "i")
    b = Condition("voltage_inconsistency", "home", "critical", "series count off", {"y": 2}, "v")
    other = Condition("voltage_inconsistency", "home/A", "warning", "string off")
    merged = merge_conditions([a, other, b])
    assert len(merged) == 2
    m = next(c for c in merged if c.subject == "home")
    assert m.severity == "critical"
    assert m.message == "meter current off; series count off"
    assert m.evidence == {"x": 1, "y": 2}
    assert m.about == "i; v"


def test_restored_alerts_are_held_then_clear_normally() -> None:
    tracker = AlertTracker(raise_after_s=0, clear_after_s=5)
    old = Alert("cutoff:home/A/A1", "cutoff", "home/A/A1", "critical", "A1: cut", {}, -50.0)
    tracker.restore([old], hold_until=20.0)
    for t in range(0, 20):
        assert tracker.update([], float(t)) == []  # nothing heard yet: no clear
    events = []
    for t in range(20, 40):
        events += tracker.update([], float(t))
    assert [(e.event, e.at) for e in events] == [("cleared", 25.0)]


def test_a_restored_alert_whose_condition_holds_is_not_raised_again() -> None:
    tracker = AlertTracker(raise_after_s=0, clear_after_s=5)
    c = Condition("cutoff", "home/A/A1", "critical", "A1: cut")
    old = Alert(c.key, "cutoff", "home/A/A1", "critical", "A1: cut", {}, -50.0, gist="A1: cut")
    tracker.restore([old], hold_until=10.0)
    for t in range(30):
        assert tracker.update([c], float(t)) == []
    assert tracker.active[c.key].raised_at == -50.0


# --- the state file -----------------------------------------------------------------------------


def alert(id_: str = "cutoff:home/A/A1", raised_at: float = 100.0) -> Alert:
    kind, subject = id_.split(":")
    return Alert(id_, kind, subject, "critical", "A1: cut", {"soc_pct": 3.0}, raised_at, "cut")


def test_state_round_trip_maps_times_onto_the_new_clock(tmp_path: Path) -> None:
    store = AlertStore(tmp_path, "home")
    # Saved at monotonic 500 (wall 10_500): raised 400 s before the save.
    assert store.save([alert(raised_at=100.0)], {"drift": {}}, 500.0, 10_500.0)
    # After a reboot: monotonic restarted at 0; the wall clock moved on by 60 s.
    saved = store.load(now_mono=3.0, now_wall=10_563.0)
    (a,) = saved.alerts
    # Raised at wall 10_100, 463 s before now (wall 10_563): monotonic 3 - 463 on the new clock.
    assert a == alert(raised_at=3.0 - 463.0)
    assert saved.shift_s == pytest.approx(3.0 - 10_563.0 + (10_500.0 - 500.0))
    data = json.loads(store.path.read_text(encoding="utf-8"))
    assert data["version"] == 1 and data["bank"] == "home"
    assert data["alerts"][0]["raised_wall"] == 10_100.0
    # Nothing is left behind by the atomic write.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alerts-home.json"]


def test_a_missing_state_file_is_a_first_start(tmp_path: Path) -> None:
    saved = AlertStore(tmp_path / "new", "home").load(0.0, 0.0)
    assert saved.alerts == () and dict(saved.memory) == {}


@pytest.mark.parametrize(
    "text",
    ["{not json", '{"version": 99, "alerts": []}', '{"version": 1, "alerts": [{"id": 3}]}',
     '{"version": 1, "saved_wall": 1, "saved_monotonic": 1, "alerts": [{"kind": "cutoff", '
     '"subject": "x", "severity": "fatal", "message": "m", "raised_wall": 0}]}'],
)  # fmt: skip
def test_a_corrupt_state_file_is_set_aside_with_a_warning(
    tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = AlertStore(tmp_path, "home")
    store.path.write_text(text, encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        saved = store.load(0.0, 0.0)
    assert saved.alerts == ()
    assert "corrupt" in caplog.text
    assert not store.path.exists()
    assert (tmp_path / "alerts-home.json.corrupt").read_text(encoding="utf-8") == text


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_state_dir_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    store = AlertStore(ro, "home")
    with caplog.at_level(logging.WARNING):
        assert not store.save([alert()], {}, 1.0, 1.0)
        assert not store.save([alert()], {}, 2.0, 2.0)
    assert caplog.text.count("cannot save alert state") == 1


def test_a_state_dir_that_is_a_file_fails_softly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("not a folder", encoding="utf-8")
    store = AlertStore(blocker, "home")
    with caplog.at_level(logging.WARNING):
        assert not store.save([alert()], {}, 1.0, 1.0)
    assert "cannot save alert state" in caplog.text


def test_default_state_dir() -> None:
    assert default_state_dir({"STATE_DIRECTORY": "/var/lib/bankwatch:/x", "HOME": "/h"}) == Path(
        "/var/lib/bankwatch"
    )
    assert default_state_dir({"XDG_STATE_HOME": "/xdg", "HOME": "/h"}) == Path("/xdg/bankwatch")
    assert default_state_dir({"HOME": "/home/pi"}) == Path("/home/pi/.local/state/bankwatch")


# --- a restart of the monitor ---------------------------------------------------------------------


def monitor(tmp_path: Path, clock: ManualClock) -> Monitor:
    config = parse_config(bank_toml(4, 2, link_lost_after_s=10))
    return Monitor(config, clock, open_links=False, store=AlertStore(tmp_path, "home"))


def feed(m: Monitor, now: float, cut: bool) -> None:
    for b in m.topology.batteries():
        m.readings[b.name] = healthy(now)
    if cut:
        m.readings["A2"] = healthy(
            now, discharge_enabled=False, protections=Protection.CELL_UNDERVOLTAGE
        )


def test_a_restart_neither_forgets_nor_raises_again(tmp_path: Path) -> None:
    clock = ManualClock(start_wall=2_000_000.0, start_monotonic=5_000.0)
    first = monitor(tmp_path, clock)
    raised = []
    for _ in range(30):
        clock.advance(1)
        feed(first, clock.monotonic(), cut=True)
        raised += first.tick(clock.monotonic())[1]
    assert [(e.event, e.alert.id) for e in raised] == [("raised", "cutoff:home/A/A2")]
    # Every write is a new file renamed over the old one: a new inode.
    written = first.store.path.stat().st_ino if first.store else 0
    # Nothing changed for 30 ticks: the file was written once, when the alert was raised.
    for _ in range(30):
        clock.advance(1)
        feed(first, clock.monotonic(), cut=True)
        first.tick(clock.monotonic())
    assert first.store is not None and first.store.path.stat().st_ino == written

    # The daemon restarts (a reboot: a new monotonic clock), the cutoff still there.
    clock2 = ManualClock(start_wall=2_000_100.0, start_monotonic=0.0)
    second = monitor(tmp_path, clock2)
    assert list(second.tracker.active) == ["cutoff:home/A/A2"]
    # The first seconds: nothing heard yet. The alert is not forgotten.
    events = []
    for _ in range(8):
        clock2.advance(1)
        events += second.tick(clock2.monotonic())[1]
    assert [e for e in events if e.alert.id == "cutoff:home/A/A2"] == []
    # Heard, still cut off: not raised again.
    for _ in range(30):
        clock2.advance(1)
        feed(second, clock2.monotonic(), cut=True)
        events += second.tick(clock2.monotonic())[1]
    assert [e for e in events if e.alert.id == "cutoff:home/A/A2"] == []
    assert second.tracker.active["cutoff:home/A/A2"].raised_at < 0  # before this run began
    # The BMS recovers: cleared once, and the file says so.
    for _ in range(30):
        clock2.advance(1)
        feed(second, clock2.monotonic(), cut=False)
        events += second.tick(clock2.monotonic())[1]
    assert [(e.event, e.alert.id) for e in events] == [("cleared", "cutoff:home/A/A2")]
    data = json.loads(second.store.path.read_text(encoding="utf-8")) if second.store else {}
    assert data["alerts"] == []


def test_a_restored_alert_for_a_battery_no_longer_configured_is_dropped(tmp_path: Path) -> None:
    store = AlertStore(tmp_path, "home")
    store.save([alert("cutoff:home/C/C9")], {}, 1.0, 1.0)
    m = monitor(tmp_path, ManualClock())
    assert m.tracker.active == {}


def test_a_clean_stop_writes_only_what_changed(tmp_path: Path) -> None:
    clock = ManualClock()
    m = monitor(tmp_path, clock)
    assert m.store is not None
    m.flush_state()
    assert not m.store.path.exists()  # nothing happened: nothing written
    for _ in range(5):
        clock.advance(1)
        feed(m, clock.monotonic(), cut=True)
        m.tick(clock.monotonic())
    before = m.store.path.stat().st_ino  # every write is a new file: a new inode
    m.flush_state()
    assert m.store.path.stat().st_ino == before  # the raise was written at once
    m.analyzer.memory.dirty = True  # e.g. an hour of drift history closed
    m.flush_state()
    assert m.store.path.stat().st_ino != before
