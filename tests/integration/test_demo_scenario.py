"""`bankwatch demo --scenario FILE [--speed N|max] [--duration D] [--json]`: the simulator's
readings straight into the monitor on a manual clock; JSON alert events and a summary that says
whether the scenario showed what it declares; the exit code follows the verdict."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bankwatch.daemon.cli import main
from bankwatch.daemon.demo import run_scenario_demo
from bankwatch.daemon.scenario import load_scenario
from tests.helpers import REPO

LINK_LOST = REPO / "configs" / "scenarios" / "link_lost-silent-battery.toml"
CLI = [sys.executable, "-m", "bankwatch.daemon.cli"]


def lines_of(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_json_events_and_a_summary_with_the_verdict() -> None:
    out = io.StringIO()
    code = run_scenario_demo(load_scenario(LINK_LOST), json_out=True, out=out, name="ll")
    assert code == 0
    lines = lines_of(out.getvalue())
    *events, summary = lines
    assert [(e["event"], e["id"]) for e in events] == [
        ("raised", "link_lost:home/B/B3"),
        ("cleared", "link_lost:home/B/B3"),
    ]
    raised = events[0]
    assert set(raised) >= {"type", "event", "kind", "severity", "subject", "time", "message",
                           "evidence", "elapsed_s"}  # fmt: skip
    assert raised["type"] == "alert" and raised["severity"] == "warning"
    assert raised["subject"] == "home/B/B3" and raised["message"].startswith("B3: ")
    assert 130 <= raised["elapsed_s"] <= 135  # silent at 120 s, stale after 10 s
    assert events[1]["elapsed_s"] > 720  # heard again at 720 s
    assert summary["type"] == "summary"
    assert summary["passed"] is True
    assert summary["simulated_s"] == 1200
    assert summary["speed"] == "max"
    assert summary["alerts_raised"] == {"link_lost": 1}
    assert summary["active_alerts"] == []
    (exp,) = summary["expectations"]
    assert (exp["kind"], exp["subject"], exp["verdict"]) == ("link_lost", "home/B/B3", "met")
    assert summary["metrics"]["energy_wh"] > 0


def test_a_scenario_that_does_not_show_what_it_declares_exits_1(tmp_path: Path) -> None:
    text = LINK_LOST.read_text(encoding="utf-8").replace(
        'subject = "home/B/B3"\nseverity = "warning"', 'subject = "home/A/A2"\nseverity = "warning"'
    )
    bad = tmp_path / "link_lost-wrong-battery.toml"
    bad.write_text(text, encoding="utf-8")
    out = io.StringIO()
    assert run_scenario_demo(load_scenario(bad), json_out=True, out=out) == 1
    summary = lines_of(out.getvalue())[-1]
    assert summary["passed"] is False
    assert summary["expectations"][0]["verdict"] == "missed"


def test_a_duration_shorter_than_a_deadline_leaves_it_not_reached() -> None:
    out = io.StringIO()
    code = run_scenario_demo(load_scenario(LINK_LOST), duration_s=100, json_out=True, out=out)
    assert code == 0
    summary = lines_of(out.getvalue())[-1]
    assert summary["simulated_s"] == 100
    assert summary["expectations"][0]["verdict"] == "not reached"


def test_paced_runs_see_what_max_speed_sees() -> None:
    fast, paced = io.StringIO(), io.StringIO()
    config = load_scenario(LINK_LOST)
    run_scenario_demo(config, duration_s=200, json_out=True, out=fast)
    run_scenario_demo(config, duration_s=200, speed=2000, json_out=True, out=paced)
    pick = [(e["event"], e["id"], e["elapsed_s"]) for e in lines_of(fast.getvalue())[:-1]]
    assert pick == [(e["event"], e["id"], e["elapsed_s"]) for e in lines_of(paced.getvalue())[:-1]]
    assert lines_of(paced.getvalue())[-1]["speed"] == 2000


def test_the_command_prints_the_verdict_in_100_columns() -> None:
    scenario = REPO / "configs" / "scenarios" / "cutoff-series-low-cell.toml"
    proc = subprocess.run(
        [*CLI, "demo", "--scenario", str(scenario), "--speed", "max"],
        capture_output=True, text=True, timeout=120, cwd=REPO, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert "scenario passed" in lines
    assert any(ln.startswith("expect cutoff on home/B/B2 (critical or worse)") and "met at" in ln
               for ln in lines)  # fmt: skip
    assert any("alert raised: critical cutoff home/B/B2" in ln for ln in lines)
    assert all(len(ln) <= 100 for ln in lines), [ln for ln in lines if len(ln) > 100]


def test_speed_max_without_a_length_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--speed", "max"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "bankwatch: --speed max needs --duration (or a scenario file that declares its length)"
    )


def test_speed_max_runs_the_built_in_demo_bank(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--speed", "max", "--duration", "2m", "--json"]) == 0
    lines = lines_of(capsys.readouterr().out)
    ids = {(ln.get("event"), ln.get("id")) for ln in lines}
    # demo.toml: B3 silent from 20 s to 50 s, A2 cut off from 60 s to 100 s.
    assert ("raised", "link_lost:demo/B/B3") in ids
    assert ("raised", "cutoff:demo/A/A2") in ids
    assert lines[-1]["type"] == "summary" and lines[-1]["simulated_s"] == 120


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--scenario", "x.toml", "--config", "y.toml"],
        ["demo", "--speed", "fast"],
        ["demo", "--speed", "0"],
    ],
)
def test_bad_demo_options_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_a_scenario_without_simulation_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = tmp_path / "plain.toml"
    plain.write_text(
        (REPO / "configs" / "rack-48v-8p.toml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    assert main(["demo", "--scenario", str(plain)]) == 2
    assert "needs a [simulation] section" in capsys.readouterr().err


def test_without_speed_a_scenario_runs_at_its_own_speed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No --speed: the file's [simulation] speed, like the plain demo (here 4000 bank seconds a
    second, so 200 s of bank time take a twentieth of a second, not 200 s)."""
    text = LINK_LOST.read_text(encoding="utf-8").replace(
        'start_time = "10:00"', 'start_time = "10:00"\nspeed = 4000'
    )
    fast = tmp_path / "link_lost-fast.toml"
    fast.write_text(text, encoding="utf-8")
    assert main(["demo", "--scenario", str(fast), "--duration", "200", "--json"]) == 0
    summary = lines_of(capsys.readouterr().out)[-1]
    assert summary["speed"] == 4000
    assert summary["simulated_s"] == 200
