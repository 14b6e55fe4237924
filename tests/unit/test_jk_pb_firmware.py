"""JK-PB frames of four firmware generations (11.x, 14.x, 15.x, 19.x) from the peers' test suites:
what each sends, the sensors an 11.x unit only pretends to have, the fields the status frame
carries beyond the basics, and the acknowledgement's own CRC."""

from __future__ import annotations

from typing import Any

import pytest

from bankwatch.drivers import jk_pb
from bankwatch.drivers.errors import FrameError
from bankwatch.drivers.model import Reading
from tests.helpers import load_vectors

VECTORS = load_vectors("extra/jk_pb_firmware")
BY_ID = {v["id"]: bytes.fromhex(v["frame_hex"]) for v in VECTORS}


def _extra(r: Reading, key: str) -> Any:
    return dict(r.extra).get(key)


CHECKS: dict[str, Any] = {
    "voltage_V": lambda r: r.pack_voltage_v,
    "current_A": lambda r: r.current_a,
    "soc_pct": lambda r: r.soc_pct,
    "cycles": lambda r: r.cycles,
    "cells_V": lambda r: list(r.cell_voltages_v or ()),
    "temps_C": lambda r: list(r.temperatures_c or ()),
    "mosfet_C": lambda r: r.mosfet_temperature_c,
    "mosfet_2_C": lambda r: _extra(r, "mosfet_2_temperature_c"),
    "sensor_byte": lambda r: None,  # a fact about the frame, checked below
    "t3_raw": lambda r: None,
    "t4_raw": lambda r: None,
    "charge_fet": lambda r: r.charge_enabled,
    "discharge_fet": lambda r: r.discharge_enabled,
    "charge_stage": lambda r: _extra(r, "charge_stage"),
    "charge_stage_elapsed_s": lambda r: _extra(r, "charge_stage_elapsed_s"),
    "battery_type": lambda r: _extra(r, "battery_type"),
    "heating_current_A": lambda r: _extra(r, "heating_current_a"),
    "heating": lambda r: _extra(r, "heater_on"),
    "balance_current_A": lambda r: _extra(r, "balance_current_a"),
    "model": lambda r: r.model,
    "firmware": lambda r: r.firmware,
    "hardware": lambda r: _extra(r, "hardware_version"),
}


@pytest.mark.parametrize("vector", VECTORS, ids=[v["id"] for v in VECTORS])
def test_frames_of_every_firmware_decode_to_what_the_peers_assert(vector: dict[str, Any]) -> None:
    frame = bytes.fromhex(vector["frame_hex"])
    r = jk_pb.decode(frame)
    for key, want in vector["expect"].items():
        assert key in CHECKS, f"vector key {key!r} has no check"
        if want is None or key in ("sensor_byte", "t3_raw", "t4_raw"):
            continue
        got = CHECKS[key](r)
        if isinstance(want, float) or (
            isinstance(want, list) and want and isinstance(want[0], float)
        ):
            assert got == pytest.approx(want, abs=1e-6), key
        else:
            assert got == want, key


def test_an_11x_unit_has_two_sensors_not_four() -> None:
    """Firmware 11.48 says every sensor is present (0xFF) and sends 0 for T3 and T4: two
    phantom sensors at 0 °C would drag the pack's minimum down and raise a cold-charge alert."""
    status = BY_ID["jk02_32s_fw11_48_status"]
    assert status[214] == 0xFF and status[256:260] == bytes(4)
    alone = jk_pb.decode(status)
    assert alone.temperatures_c == (28.4, 29.2)
    about = jk_pb.decode(BY_ID["jk02_32s_fw11_48_about"])
    merged = jk_pb.merge_parts([alone, about])
    assert merged.firmware == "11.48" and merged.temperatures_c == (28.4, 29.2)


def test_a_real_zero_degrees_is_kept_and_the_firmware_decides() -> None:
    """On firmware 14 and later T3/T4 are real: a cold morning's 0.0 °C beside T1/T2 near 0 °C
    stays. An 11.x unit has two sensors whatever its frame says."""
    frame = bytearray(BY_ID["jk02_32s_fw15_38_status"])
    for offset, tenths in ((162, 5), (164, 3), (256, 0), (258, 0)):
        frame[offset : offset + 2] = tenths.to_bytes(2, "little", signed=True)
    frame[299] = sum(frame[:299]) & 0xFF
    cold = jk_pb.decode(bytes(frame))
    assert cold.temperatures_c == (0.5, 0.3, 0.0, 0.0)
    newer = jk_pb.merge_parts([cold, jk_pb.decode(BY_ID["jk02_32s_fw15_38_about"])])
    assert newer.temperatures_c == (0.5, 0.3, 0.0, 0.0)
    older = jk_pb.merge_parts([cold, jk_pb.decode(BY_ID["jk02_32s_fw11_48_about"])])
    assert older.temperatures_c == (0.5, 0.3)


def test_the_second_mosfet_sensor_is_its_own() -> None:
    r = jk_pb.decode(BY_ID["jk02_32s_fw15_38_status"])
    assert r.mosfet_temperature_c == 12.9 and _extra(r, "mosfet_2_temperature_c") == 20.5
    assert 20.5 not in (r.temperatures_c or ())  # a MOSFET is not a cell sensor


def test_a_bad_crc_in_the_acknowledgement_is_a_checksum_error() -> None:
    payload = BY_ID["jk02_32s_fw19_27_status"]
    request = jk_pb.encode_request(1, jk_pb.TRIGGER_STATUS)
    wire = jk_pb.encode_reply(request, jk_pb.decode(payload))
    assert wire is not None and jk_pb.frame_length(wire) == jk_pb.WIRE_LEN
    bad = bytearray(wire)
    bad[-2] ^= 0x01  # the ACK's CRC high byte
    with pytest.raises(FrameError, match="CRC"):
        jk_pb.frame_length(bytes(bad))
    with pytest.raises(FrameError, match="CRC"):
        jk_pb.decode(bytes(bad), request)


def test_the_simulator_sends_the_new_fields() -> None:
    r = jk_pb.decode(BY_ID["jk02_32s_fw15_38_status"])
    request = jk_pb.encode_request(2, jk_pb.TRIGGER_STATUS)
    wire = jk_pb.encode_reply(request, r)
    assert wire is not None
    back = jk_pb.decode(wire, request)
    for key in ("charge_stage", "charge_stage_elapsed_s", "mosfet_2_temperature_c"):
        assert _extra(back, key) == _extra(r, key), key
    assert back.temperatures_c == r.temperatures_c
