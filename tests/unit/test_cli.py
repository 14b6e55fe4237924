"""The command line: exit codes and plain one-line errors, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bankwatch.daemon.cli import main
from tests.helpers import REPO


def test_run_with_a_missing_config_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.toml"
    assert main(["run", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "file not found" in err
    assert "Traceback" not in err


def test_decode_merges_frames_into_one_reading(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["decode", "pylontech-can", "351#1402C012C012C201", "355#58005E00", "356#7A13F2FE6B01"]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["charge_voltage_limit_v"] == 53.2
    assert out["soc_pct"] == 88 and out["soh_pct"] == 94
    assert out["pack_voltage_v"] == 49.86 and out["current_a"] == -27.0
    assert out["power_w"] == pytest.approx(49.86 * -27.0, abs=0.01)
    assert "cell_voltages_v" not in out  # a field no frame carried is left out


@pytest.mark.parametrize(
    ("frames", "needle"),
    [
        (["356#7A13"], "2 data bytes, needs at least 6"),
        (["35X#00"], "not a CAN frame in candump notation"),
        (["351#123"], "odd number of hex digits"),
        (["7FF#00"], "not in the Pylontech profile"),
        (["351#000000000000000000"], "a frame holds 8"),
    ],
)
def test_decode_of_a_bad_frame_exits_1_with_one_line(
    frames: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["decode", "pylontech-can", *frames]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], captured.err


def test_decode_of_an_unknown_protocol_lists_the_known_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["decode", "no-such-bms", "351#00"]) == 2
    assert "pylontech-can" in capsys.readouterr().err


def test_simulate_refuses_links_it_cannot_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (REPO / "configs" / "cabin-24v-2s.toml").read_text(encoding="utf-8")
    cfg = tmp_path / "cabin.toml"
    cfg.write_text(text, encoding="utf-8")
    assert main(["simulate", str(cfg), "--duration", "1"]) == 3
    err = capsys.readouterr().err
    assert "socketcan" in err and "real hardware" in err and "Traceback" not in err


@pytest.mark.parametrize("value", ["0", "-5", "soon", "5x"])
def test_bad_durations_are_usage_errors(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--duration", value])
    assert exc.value.code == 2
    assert "duration" in capsys.readouterr().err
