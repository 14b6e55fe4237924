"""The [scenario] section: what a fault scenario runs for and which alerts it must and must
not raise. Read by the scenario runner (`scenario.py`: `bankwatch demo --scenario` and the
scenario tests); `bankwatch run` ignores it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field

from bankwatch.daemon.alerts import Severity
from bankwatch.daemon.config_base import PositiveFloat, Strict, raw_array, raw_table
from bankwatch.daemon.detect_config import AlertKind

__all__ = ["ExpectConfig", "ForbidConfig", "ScenarioConfig", "check_scenario_subjects"]


class ExpectConfig(Strict):
    """An alert a scenario must raise: of this kind, on this subject (a path: bank,
    bank/string or bank/string/battery; any subject when left out), within this many simulated
    seconds from the start (by the end when left out), at least this severe."""

    kind: AlertKind
    subject: str | None = None
    within_s: PositiveFloat | None = None
    severity: Severity = "info"


class ForbidConfig(Strict):
    """Alerts a scenario must not raise: those matching every field given (a kind, a subject,
    at least a severity); `{ severity = "warning" }` alone forbids every warning and critical."""

    kind: AlertKind | None = None
    subject: str | None = None
    severity: Severity = "info"


class ScenarioConfig(Strict):
    """A fault scenario: a bank with [simulation], run for `duration_s` with the monitor
    sampling every `tick_s`, and what it must and must not raise. Read by `bankwatch demo
    --scenario` and the scenario tests; `bankwatch run` ignores it."""

    description: str = ""
    duration_s: PositiveFloat
    tick_s: Annotated[float, Field(gt=0, le=600)] = 1.0
    expect: list[ExpectConfig] = Field(default_factory=list)
    forbid: list[ForbidConfig] = Field(default_factory=list)


def check_scenario_subjects(data: Mapping[str, Any]) -> list[str]:
    """Every subject an expect or forbid names must be a path of the bank: what pydantic cannot
    see one model at a time. Works on the raw TOML data, defensively (the schema check reports
    what is missing or mistyped)."""
    bank_name = raw_table(data.get("bank")).get("name")
    scenario = raw_table(data.get("scenario"))
    if not isinstance(bank_name, str) or not scenario:
        return []
    paths = {bank_name}
    for string in raw_array(data.get("strings")):
        string = raw_table(string)
        sname = string.get("name")
        paths.add(f"{bank_name}/{sname}")
        for battery in raw_array(string.get("batteries")):
            paths.add(f"{bank_name}/{sname}/{raw_table(battery).get('name')}")
    problems: list[str] = []
    for section in ("expect", "forbid"):
        for i, entry in enumerate(raw_array(scenario.get(section))):
            subject = raw_table(entry).get("subject")
            if isinstance(subject, str) and subject not in paths:
                problems.append(
                    f"scenario.{section}[{i}].subject: no bank, string or battery at "
                    f"{subject!r} (paths look like {bank_name}/STRING/BATTERY)"
                )
    return problems
