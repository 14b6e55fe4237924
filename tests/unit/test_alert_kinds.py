"""The table of alert kinds (detectors.ALERT_KINDS): the one place config, the detector suite and
MQTT discovery learn which kinds there are. Every row must be complete, and the spelled-out
copies the type checker needs (DetectConfig's fields, the AlertKind type) must follow it."""

from __future__ import annotations

from dataclasses import replace
from typing import get_args

import pytest

from bankwatch.daemon import detectors
from bankwatch.daemon.alerts import RANK, Condition
from bankwatch.daemon.detect_config import AlertKind, DetectConfig, KindConfig
from bankwatch.daemon.detectors import ALERT_KINDS, Detector, check_kind_schemas, run_detectors
from bankwatch.daemon.history import DetectContext
from bankwatch.daemon.topology import BankState, Topology
from tests.driven_bank import quiet_demo_config


def test_every_row_has_a_detector_a_schema_and_its_place_in_home_assistant() -> None:
    names = set()
    for name, kind in ALERT_KINDS.items():
        assert kind.name == name
        assert callable(kind.detector), name
        assert issubclass(kind.schema, KindConfig) and kind.schema is not KindConfig, name
        # The schema's defaults are a valid table: a kind needs no settings to run.
        assert isinstance(DetectConfig().kind(name), kind.schema), name
        assert kind.subjects and kind.subjects <= {"battery", "string", "bank"}, name
        assert kind.severities and kind.severities <= set(RANK), name
        assert kind.ha_name and kind.ha_name not in names, name
        names.add(kind.ha_name)
        # Whatever its alerts are about, Home Assistant shows it somewhere: on the battery's
        # device, or on the bank's (strings have no device).
        if "battery" in kind.subjects:
            assert "battery" in kind.ha_sensors, name
        if kind.subjects & {"string", "bank"}:
            assert {"bank", "bank-any"} & set(kind.ha_sensors), name
        assert "bank" not in kind.ha_sensors or "bank" in kind.subjects, name


def test_the_config_and_the_kind_type_follow_the_table() -> None:
    assert get_args(AlertKind) == tuple(ALERT_KINDS)
    check_kind_schemas(ALERT_KINDS)


def test_a_row_without_its_config_table_fails_the_check() -> None:
    fewer = {k: v for k, v in ALERT_KINDS.items() if k != "temperature"}
    with pytest.raises(TypeError, match="temperature"):
        check_kind_schemas(fewer)
    other_schema = dict(ALERT_KINDS)
    other_schema["cutoff"] = replace(ALERT_KINDS["cutoff"], schema=KindConfig)
    with pytest.raises(TypeError, match="kind tables"):
        check_kind_schemas(other_schema)


def test_the_suite_runs_each_enabled_row_and_skips_a_disabled_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The dispatch reads the table: each row's detector runs, in the table's order, unless its
    kind is switched off in [detect.KIND]."""
    seen: list[str] = []

    def recorder(name: str) -> Detector:
        def detect(state: BankState, now: float, ctx: DetectContext) -> list[Condition]:
            seen.append(name)
            return []

        return detect

    config = quiet_demo_config()
    state = Topology(config).fold({}, 0.0)
    off = config.detect.temperature.model_copy(update={"enabled": False})
    detect = config.detect.model_copy(update={"temperature": off})
    table = {k: replace(v, detector=recorder(k)) for k, v in ALERT_KINDS.items()}
    monkeypatch.setattr(detectors, "ALERT_KINDS", table)
    run_detectors(state, 0.0, DetectContext(detect))
    assert seen == [k for k in ALERT_KINDS if k != "temperature"]
