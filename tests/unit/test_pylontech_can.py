"""Pylontech CAN codec against the real captured frames, plus round trips and fuzzing."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bankwatch.daemon.errors import FrameError
from bankwatch.daemon.model import Alarm, Protection, Reading
from bankwatch.drivers.pylontech_can import (
    FRAME_IDS,
    FrameLengthError,
    PylontechCanDriver,
    UnknownFrameError,
    decode_frame,
    encode_reading,
)
from tests.helpers import load_vectors

VECTORS = load_vectors("pylontech_can")
IN_PROFILE = [v for v in VECTORS if int(v["can_id"], 16) in FRAME_IDS]
OUT_OF_PROFILE = [v for v in VECTORS if int(v["can_id"], 16) not in FRAME_IDS]


def _check(reading: Reading, key: str, want: Any) -> None:
    """One expected value of a vector against the decoded reading."""
    extra = dict(reading.extra)
    simple = {
        "charge_voltage_limit_V": reading.charge_voltage_limit_v,
        "charge_current_limit_A": reading.charge_current_limit_a,
        "discharge_current_limit_A": reading.discharge_current_limit_a,
        "discharge_voltage_limit_V_bytes6_7": reading.discharge_voltage_limit_v,
        "soc_pct": None if reading.soc_pct is None else round(reading.soc_pct),
        "soc_hires_pct_bytes4_5": reading.soc_pct,
        "soh_pct": reading.soh_pct,
        "voltage_V_0.01": reading.pack_voltage_v,
        "current_A": reading.current_a,
        "temperature_C": reading.temperatures_c[0] if reading.temperatures_c else None,
        "module_count": reading.modules_online,
        "charge_enable": reading.charge_enabled,
        "discharge_enable": reading.discharge_enabled,
        "force_charge_I_bit5": extra.get("force_charge_request_1"),
        "force_charge_II_bit4": extra.get("force_charge_request_2"),
        "full_charge_request_bit3": extra.get("full_charge_request"),
    }
    if key in simple:
        got = simple[key]
        assert got is not None, f"{key} not decoded"
        if isinstance(want, float):
            assert got == pytest.approx(want, abs=1e-6), key
        else:
            assert got == want, key
    elif key == "ascii":
        assert reading.manufacturer == want.rstrip(), key
    elif key in ("protection_byte0", "protection_byte1"):
        assert int(want, 16) == 0 and reading.protections == Protection.NONE, key
    elif key in ("alarm_byte2", "alarm_byte3"):
        assert int(want, 16) == 0 and reading.alarms == Alarm.NONE, key
    elif key == "no_alarms":
        assert reading.alarms == Alarm.NONE and reading.protections == Protection.NONE
    elif key == "flags":
        flags = (0x80 if reading.charge_enabled else 0) | (0x40 if reading.discharge_enabled else 0)
        assert flags == int(want, 16) & 0xC0
    elif key == "tag":
        pass  # the "PN" marker carries no value
    else:
        pytest.fail(f"vector key {key!r} has no check: extend _check")


@pytest.mark.parametrize("vector", IN_PROFILE, ids=[v["id"] for v in IN_PROFILE])
def test_vector_decodes_to_expected(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["data_hex"])
    assert len(data) == vector["dlc"]
    reading = decode_frame(int(vector["can_id"], 16), data)
    for key, want in vector["expect"].items():
        _check(reading, key, want)


def test_every_profile_id_has_a_vector() -> None:
    covered = {int(v["can_id"], 16) for v in IN_PROFILE}
    assert covered == set(FRAME_IDS)


@pytest.mark.parametrize("vector", OUT_OF_PROFILE, ids=[v["id"] for v in OUT_OF_PROFILE])
def test_ids_outside_the_profile_are_unknown_not_misread(vector: dict[str, Any]) -> None:
    with pytest.raises(UnknownFrameError):
        decode_frame(int(vector["can_id"], 16), bytes.fromhex(vector["data_hex"]))


def test_a_whole_broadcast_merges_into_one_reading() -> None:
    driver = PylontechCanDriver("bank")
    for v in VECTORS:
        if v["id"].startswith("pylon_us5000_oldfw_"):
            driver.on_frame(int(v["can_id"], 16), bytes.fromhex(v["data_hex"]), False, 12.5)
    r = driver.reading
    assert (r.subject, r.at) == ("bank", 12.5)
    assert r.pack_voltage_v == pytest.approx(49.86)
    assert r.current_a == pytest.approx(-27.0)
    assert r.soc_pct == 88 and r.soh_pct == 94
    assert r.charge_voltage_limit_v == pytest.approx(53.2)
    assert r.charge_enabled is True and r.discharge_enabled is True
    assert r.manufacturer == "PYLON" and r.modules_online == 6
    assert r.power_w == pytest.approx(49.86 * -27.0)


def test_driver_ignores_foreign_frames_and_counts_them() -> None:
    driver = PylontechCanDriver("b1")
    assert driver.on_frame(0x305, bytes(8), False, 1.0) is None  # the inverter's keep-alive
    assert driver.on_frame(0x18900140, bytes(8), True, 1.0) is None
    assert driver.ignored == 2 and driver.frames == 0


@pytest.mark.parametrize(
    ("byte", "bit", "flag"),
    [
        (0, 1, Protection.CELL_OVERVOLTAGE),
        (0, 2, Protection.CELL_UNDERVOLTAGE),
        (0, 3, Protection.OVER_TEMPERATURE),
        (0, 4, Protection.UNDER_TEMPERATURE),
        (0, 7, Protection.DISCHARGE_OVERCURRENT),
        (1, 0, Protection.CHARGE_OVERCURRENT),
        (1, 3, Protection.SYSTEM_ERROR),
    ],
)
def test_protection_bits_follow_the_pylon_table(byte: int, bit: int, flag: Protection) -> None:
    data = bytearray(b"\x00\x00\x00\x00\x01PN")
    data[byte] = 1 << bit
    assert decode_frame(0x359, bytes(data)).protections == flag


@pytest.mark.parametrize(
    ("byte", "bit", "flag"),
    [
        (2, 1, Alarm.CELL_HIGH_VOLTAGE),
        (2, 2, Alarm.CELL_LOW_VOLTAGE),
        (2, 3, Alarm.HIGH_TEMPERATURE),
        (2, 4, Alarm.LOW_TEMPERATURE),
        (2, 7, Alarm.DISCHARGE_HIGH_CURRENT),
        (3, 0, Alarm.CHARGE_HIGH_CURRENT),
        (3, 3, Alarm.INTERNAL_COMMUNICATION),
    ],
)
def test_alarm_bits_follow_the_pylon_table(byte: int, bit: int, flag: Alarm) -> None:
    data = bytearray(b"\x00\x00\x00\x00\x01PN")
    data[byte] = 1 << bit
    assert decode_frame(0x359, bytes(data)).alarms == flag


def test_unused_bits_set_no_flag() -> None:
    data = bytes((0x61, 0x76, 0x61, 0x76, 1)) + b"PN"  # bits 0, 5, 6 of byte 0; 1, 2, 4-6 of 1
    r = decode_frame(0x359, data)
    assert r.protections == Protection.NONE and r.alarms == Alarm.NONE


def test_high_resolution_soc_is_used_only_when_it_agrees() -> None:
    assert decode_frame(0x355, bytes.fromhex("3C00640084170000")).soc_pct == pytest.approx(60.2)
    # new Pylontech firmware: 6 bytes with zero where the hi-res SOC would be
    assert decode_frame(0x355, bytes.fromhex("540060000000")).soc_pct == 84
    # disagreeing hi-res value: keep the whole percent
    assert decode_frame(0x355, bytes.fromhex("3C0064001027")).soc_pct == 60


def test_short_frames_say_what_is_wrong() -> None:
    with pytest.raises(FrameLengthError, match=r"0x356.*2 data bytes, needs at least 6"):
        decode_frame(0x356, b"\x01\x02")
    with pytest.raises(FrameLengthError, match="a frame holds 8"):
        decode_frame(0x351, bytes(9))


def test_round_trip_of_a_reading() -> None:
    r = Reading(
        pack_voltage_v=52.31,
        current_a=-41.7,
        temperatures_c=(27.4,),
        soc_pct=63,
        soh_pct=98,
        charge_voltage_limit_v=56.8,
        discharge_voltage_limit_v=44.8,
        charge_current_limit_a=100.0,
        discharge_current_limit_a=150.0,
        charge_enabled=True,
        discharge_enabled=False,
        protections=Protection.CELL_UNDERVOLTAGE,
        alarms=Alarm.CELL_LOW_VOLTAGE | Alarm.LOW_TEMPERATURE,
        modules_online=4,
        manufacturer="PYLON",
    )
    driver = PylontechCanDriver("x")
    for can_id, data in encode_reading(r):
        driver.on_frame(can_id, data, False, 0.0)
    back = driver.reading
    for name in (
        "pack_voltage_v",
        "current_a",
        "temperatures_c",
        "soc_pct",
        "soh_pct",
        "charge_voltage_limit_v",
        "discharge_voltage_limit_v",
        "charge_current_limit_a",
        "discharge_current_limit_a",
        "charge_enabled",
        "discharge_enabled",
        "protections",
        "alarms",
        "modules_online",
        "manufacturer",
    ):
        assert getattr(back, name) == getattr(r, name), name


@given(
    can_id=st.sampled_from((*FRAME_IDS, 0x305, 0x35A, 0x7FF)),
    data=st.binary(max_size=12),
)
def test_random_bytes_only_raise_frame_error(can_id: int, data: bytes) -> None:
    try:
        reading = decode_frame(can_id, data)
    except FrameError:
        return
    assert isinstance(reading, Reading)
