"""The [detect.KIND] tables and [scenario]: defaults, what a user may tune, and the mistakes
that are caught at load time (with the key's path)."""

from __future__ import annotations

import pytest

from bankwatch.daemon.config import parse_config
from bankwatch.daemon.detect_config import DetectConfig
from bankwatch.daemon.detectors import ALERT_KINDS
from bankwatch.drivers.errors import ConfigError
from tests.unit.test_detectors import bank_toml

BASE = bank_toml(2, 2)


def test_every_kind_has_a_table_with_defaults() -> None:
    d = DetectConfig()
    for kind in ALERT_KINDS:
        assert d.kind(kind).enabled
    # cutoff and link_lost follow the [detect] timing; the slow kinds have their own.
    assert d.debounce("cutoff") == (0.0, 5.0)
    assert d.debounce("soc_mismatch") == (600.0, 86_400.0)
    assert d.debounce("current_imbalance") == (120.0, 300.0)


def test_tuning_a_kind_and_the_global_timing() -> None:
    text = BASE + (
        "raise_after_s = 3\nclear_after_s = 7\n"
        "[detect.soc_mismatch]\nwarning_pct = 6\ncritical_pct = 15\nclear_after_s = 60\n"
        "[detect.link_lost]\nraise_after_s = 1\n"
    )
    d = parse_config(text).detect
    assert d.soc_mismatch.warning_pct == 6
    assert d.debounce("soc_mismatch") == (600.0, 60.0)
    assert d.debounce("link_lost") == (1.0, 7.0)
    assert d.debounce("cutoff") == (3.0, 7.0)


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ("[detect.soc_mismatch]\nwarning_pc = 6\n", "detect.soc_mismatch.warning_pc: unknown key"),
        ("[detect.temperatur]\nenabled = false\n", "detect.temperatur: unknown key"),
        ("[detect.cell_imbalance]\nwarning_v = 0.5\ncritical_v = 0.3\n", "critical threshold"),
        ("[detect.current_imbalance]\nshare_error_pct = -3\n", "greater than 0"),
        ("state_dir = 5\n", "detect.state_dir"),
    ],
)
def test_detect_mistakes_are_named(extra: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(BASE + extra, "bank.toml")
    assert problem in str(err.value)


def test_scenario_subjects_must_exist_in_the_bank() -> None:
    text = BASE + (
        "[scenario]\nduration_s = 60\n"
        '[[scenario.expect]]\nkind = "cutoff"\nsubject = "home/A/A9"\n'
        '[[scenario.forbid]]\nsubject = "home/C"\n'
        '[[scenario.forbid]]\nkind = "link_lost"\nsubject = "home/B/B2"\n'
    )
    with pytest.raises(ConfigError) as err:
        parse_config(text, "s.toml")
    msg = str(err.value)
    assert "scenario.expect[0].subject: no bank, string or battery at 'home/A/A9'" in msg
    assert "scenario.forbid[0].subject: no bank, string or battery at 'home/C'" in msg
    assert "forbid[1]" not in msg


def test_a_scenario_needs_a_length_and_known_kinds() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(BASE + "[scenario]\ntick_s = 5\n")
    assert "scenario.duration_s: required key is missing" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config(BASE + '[scenario]\nduration_s = 5\n[[scenario.expect]]\nkind = "fire"\n')
    assert "scenario.expect[0].kind: must be 'cutoff'" in str(err.value)
