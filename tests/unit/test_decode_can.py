"""`bankwatch decode` for the whole CAN profile: dialects assembled the way the daemon does it,
contradictions as a `warnings` list, Daly CAN replies."""

from __future__ import annotations

import json

import pytest

from bankwatch.daemon.cli import main


def _decode(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert main(["decode", *args]) == 0
    out: dict[str, object] = json.loads(capsys.readouterr().out)
    return out


def test_discover_voltage_is_read_at_the_scale_its_limits_allow(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = _decode(
        capsys,
        "pylontech-can",
        "351#2E02040B040BB001",
        "356#0A0211FFBE000000",
        "370#446973636F766572",
        "371#2041455300000000",
    )
    assert out["pack_voltage_v"] == 52.2 and out["model"] == "Discover AES"
    assert "warnings" not in out  # nothing contradicts itself here


def test_contradictions_come_out_as_warnings_not_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = _decode(
        capsys,
        "pylontech-can",
        "351#1402C012C012C201",
        "355#3C0064001027",  # hi-res 100.00 % vs 60 %
        "356#E803F2FE6B01",  # 10.00 V / 100.0 V vs limits 45-53.2 V
        "359#0400000001504E",  # under-voltage protection ...
        "35C#C000",  # ... while both directions are enabled
    )
    warnings = out["warnings"]
    assert isinstance(warnings, list) and len(warnings) == 3
    assert any("0x355" in w for w in warnings)
    assert any("0x356" in w for w in warnings)
    assert any("0x35C" in w for w in warnings)
    assert out["protections"] == ["cell_undervoltage"]


def test_extended_profile_fields_have_canonical_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = _decode(
        capsys,
        "pylontech-can",
        "372#0400010000000000",
        "373#B90CC20C27012801",
        "374#5061636B2D303123",
        "378#400800002B070000",
        "379#9C00000000000000",
    )
    assert out["modules_online"] == 4 and out["modules_blocking_charge"] == 1
    assert out["cell_voltage_min_v"] == 3.257 and out["cell_voltage_max_v"] == 3.266
    assert out["cell_temperature_min_c"] == 21.85
    assert out["cell_voltage_min_id"] == "Pack-01#"
    assert out["charged_energy_kwh"] == 211.2 and out["discharged_energy_kwh"] == 183.5
    assert out["design_ah"] == 156.0


def test_daly_can_replies_decode_and_requests_are_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = _decode(capsys, "daly-can", "18904001#02100000753001F4", "18914001#0EC8050E9C0901F4")
    assert out["pack_voltage_v"] == 52.8 and out["soc_pct"] == 50.0
    assert out["cell_voltage_max_v"] == 3.784 and out["cell_voltage_min_id"] == "9"
    assert main(["decode", "daly-can", "18900140#0000000000000000"]) == 1
    err = capsys.readouterr().err
    assert "is a request" in err and len(err.strip().splitlines()) == 1
