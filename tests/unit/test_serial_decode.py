"""`bankwatch decode` for serial protocols: one JSON object from the wire hex, a reply after its
request, several replies merged, `modules` for a stack, and one-line errors with exit code 1."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from bankwatch.daemon.cli import main
from bankwatch.drivers.pylontech_rs485 import PYLONTECH, SEPLOS_V2
from tests.helpers import load_vectors

PYLON = {v["id"]: v["frame_hex"] for v in load_vectors("pylontech_rs485")}
SEPLOS = {v["id"]: v["frame_hex"] for v in load_vectors("seplos_v2_rs485")}


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = main(["decode", *argv])
    out = capsys.readouterr()
    return code, json.loads(out.out) if out.out.strip() else None, out.err


def test_a_reply_after_its_request(capsys: pytest.CaptureFixture[str]) -> None:
    code, got, err = _run(
        capsys,
        "pylontech-rs485",
        PYLONTECH.encode_request(0x42, 2).hex(),
        PYLON["pylon_us5000_0x42_single"],
    )
    assert code == 0 and err == ""
    assert got["pack_voltage_v"] == 51.849 and got["current_a"] == 0.0
    assert got["cell_voltages_v"][0] == 3.434 and len(got["cell_voltages_v"]) == 15
    assert got["mosfet_temperature_c"] == 29.2
    assert got["cell_voltage_min_v"] == 3.434 and got["cell_voltage_max_v"] == 3.463
    assert "design_ah" not in got  # fields a frame does not carry are left out
    assert "modules" not in got


def test_replies_merge_into_one_reading(capsys: pytest.CaptureFixture[str]) -> None:
    code, got, _ = _run(
        capsys,
        "pylontech-rs485",
        PYLONTECH.encode_request(0x42, 2).hex(),
        PYLON["pylon_up2500_single_0x42"],
        PYLON["pylon_req_0x92_adr2"],
        PYLON["pylon_up2500_0x92_mgmt"],
    )
    assert code == 0
    assert got["pack_voltage_v"] == 26.638  # from 0x42
    assert got["charge_voltage_limit_v"] == 28.4  # from 0x92
    assert got["discharge_current_limit_a"] == 55.5
    assert got["power_w"] == pytest.approx(26.638 * -0.6, abs=1e-3)


def test_a_stack_reply_lists_its_modules(capsys: pytest.CaptureFixture[str]) -> None:
    code, got, _ = _run(
        capsys,
        "pylontech-rs485",
        PYLONTECH.encode_request(0x42, 2, 0xFF).hex(),
        PYLON["pylon_us3000_4mod_0x42"],
    )
    assert code == 0
    assert got["modules_online"] == 4 and len(got["modules"]) == 4
    assert [m["current_a"] for m in got["modules"]] == [0.0, -6.8, -7.3, -6.9]
    assert got["current_a"] == -21.0  # the stack's total
    assert got["modules"][2]["cycles"] == 113


def test_ascii_form_is_accepted_for_the_ascii_protocols(capsys: pytest.CaptureFixture[str]) -> None:
    code, got, _ = _run(
        capsys,
        "seplos-v2",
        "~20004642E00200FD37",
        bytes.fromhex(SEPLOS["seplos_v2_0x42_pack0"]).decode().rstrip("\r"),
    )
    assert code == 0 and got["soc_pct"] == 78.7 and got["design_ah"] == 180.0
    assert SEPLOS_V2.PROTOCOL == "seplos-v2"


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (
            [PYLON["pylon_req_0x42_adr2"], PYLON["pylon_us5000_0x42_single"][:-10] + "303030300D"],
            r"frame 2 \(7E32.*\): CHKSUM 0x0000 in the frame, 0xE14F computed",
        ),
        ([PYLON["pylon_us5000_0x42_single"]], "give its request before it"),
        ([PYLON["pylon_req_0x42_adr2"]], "no reply among the frames"),
        ([PYLON["pylon_req_0x42_adr2"][:-2]], "frame 1 .*truncated"),
        ([PYLON["pylon_req_0x42_adr2"] + "00"], "frame 1 .*frame is 20 bytes, 21 were given"),
        (["7E3G"], "frame 1 .*not hex"),
        (["7E323"], "odd number of hex digits"),
    ],
)
def test_a_bad_frame_is_one_line_and_exit_code_1(
    capsys: pytest.CaptureFixture[str], frames: list[str], message: str
) -> None:
    code = main(["decode", "pylontech-rs485", *frames])
    out = capsys.readouterr()
    assert code == 1 and out.out == ""
    assert out.err.startswith("bankwatch: bad frame: ") and out.err.count("\n") == 1, out.err
    assert re.search(message, out.err), out.err


def test_jk_pb_bare_300_byte_frames_decode(capsys: pytest.CaptureFixture[str]) -> None:
    """BLE captures and every peer's tests hold the 300-byte frame without the RS485
    acknowledgement; given alone, it is whole. Cut short, it is still refused."""
    jk = {v["id"]: v["frame_hex"] for v in load_vectors("jk")}
    status = jk["jkpb_ble_jk02_32s_v19_cellinfo"]
    assert len(bytes.fromhex(status)) == 300
    code, got, err = _run(capsys, "jk-pb", status)
    assert code == 0 and err == ""
    assert got["pack_voltage_v"] == 54.028 and got["current_a"] == -0.727
    code = main(["decode", "jk-pb", status[:400]])
    out = capsys.readouterr()
    assert code == 1 and "truncated: 200 bytes" in out.err
