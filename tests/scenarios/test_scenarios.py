"""Every fault scenario in configs/scenarios/ run on the simulated clock, as fast as the machine
allows: the alerts it must raise come within the time it states, on the subject it names, and
none of those it must not raise; the healthy banks raise no warning or critical alert at all.

A scenario file is a bank config with [simulation] and [scenario]; its name says what it is about
(`KIND-description.toml`, or `healthy-description.toml`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bankwatch.daemon.alerts import RANK
from bankwatch.daemon.detectors import ALERT_KINDS
from bankwatch.daemon.scenario import ScenarioRun, load_scenario
from bankwatch.daemon.topology import Topology
from tests.helpers import REPO

SCENARIOS = sorted((REPO / "configs" / "scenarios").glob("*.toml"))
WEEK_S = 7 * 86_400


def _kind_of(path: Path) -> str:
    return path.stem.split("-", 1)[0]


def test_every_alert_kind_has_a_scenario_and_there_are_healthy_banks() -> None:
    kinds = {_kind_of(p) for p in SCENARIOS}
    assert set(ALERT_KINDS) <= kinds, f"no scenario for {sorted(set(ALERT_KINDS) - kinds)}"
    assert kinds <= set(ALERT_KINDS) | {"healthy"}, f"badly named: {sorted(kinds)}"
    for p in SCENARIOS:
        assert "-" in p.stem and p.stem.split("-", 1)[1], f"{p.name}: KIND-description.toml"


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_file_declares_what_it_shows(path: Path) -> None:
    config = load_scenario(path)
    scenario = config.scenario
    assert scenario is not None, f"{path.name} has no [scenario]"
    assert scenario.description
    kind = _kind_of(path)
    if kind == "healthy":
        # Nothing at warning or above, of any kind, on any subject.
        assert any(f.kind is None and f.subject is None and f.severity == "warning"
                   for f in scenario.forbid)  # fmt: skip
    else:
        assert any(e.kind == kind and e.subject for e in scenario.expect), (
            f"{path.name} must expect a {kind} alert on a named subject"
        )
        assert scenario.forbid, f"{path.name} must say what it must not raise"


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path) -> None:
    config = load_scenario(path)
    assert config.scenario is not None
    result = ScenarioRun(config, start_wall=1_780_000_000.0).run(config.scenario.duration_s)

    assert result.simulated_s == pytest.approx(
        config.scenario.duration_s, abs=config.scenario.tick_s
    )
    for e in result.expectations:
        x = e.expect
        assert e.verdict == "met", (
            f"{path.name}: expected {x.kind} on {x.subject} ({x.severity}+) within "
            f"{e.deadline_s:.0f} s; raised: {_raised(result)}"
        )
        assert e.at_s is not None and e.at_s <= e.deadline_s
        if x.subject is not None:
            assert e.subject == x.subject
    assert not result.forbidden, f"{path.name}: raised what it must not: " + ", ".join(
        f"{t.event.alert.severity} {t.event.alert.id} at {t.elapsed_s:.0f} s"
        for t in result.forbidden
    )

    # The alerts it expects name their subject in plain words, and carry their evidence.
    for e in result.expectations:
        hit = next(
            t.event.alert
            for t in result.events
            if t.event.alert.kind == e.expect.kind and t.event.alert.subject == e.subject
        )
        name = hit.subject.rsplit("/", 1)[-1]
        assert name in hit.message, f"{hit.id}: the message does not name {name}: {hit.message}"
        assert hit.evidence, f"{hit.id} carries no evidence"

    # Every alert is of a kind of the table, about a subject at a level and with a severity
    # its row declares (what MQTT discovery and the docs rely on).
    levels = ("bank", "string", "battery")
    for t in result.events:
        a = t.event.alert
        info = ALERT_KINDS[a.kind]
        assert levels[a.subject.count("/")] in info.subjects, f"{a.id}: not a subject of {a.kind}"
        assert a.severity in info.severities, f"{a.id}: {a.severity} is not a {a.kind} severity"

    if _kind_of(path) == "healthy":
        loud = [t for t in result.events if RANK[t.event.alert.severity] >= RANK["warning"]]
        assert not loud, [(t.elapsed_s, t.event.alert.id) for t in loud]


def _raised(result: object) -> str:
    events = getattr(result, "events", [])
    return (
        ", ".join(
            f"{t.event.event} {t.event.alert.severity} {t.event.alert.id} at {t.elapsed_s:.0f} s"
            for t in events
        )
        or "nothing"
    )


@pytest.mark.parametrize(
    ("name", "shape"),
    [("healthy-4s2p-week.toml", "4S2P"), ("healthy-rack-16p-week.toml", "1S16P")],
)
def test_the_healthy_banks_run_a_week(name: str, shape: str) -> None:
    """The two healthy banks the issue asks for: their run is the parametrized test above."""
    config = load_scenario(REPO / "configs" / "scenarios" / name)
    assert Topology(config).shape == shape
    assert config.scenario is not None and config.scenario.duration_s >= WEEK_S
