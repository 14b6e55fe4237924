"""Daly CAN: the payloads against the real UART captures (a CAN reply carries exactly the UART
frame's 8 data bytes), the ids, the driver's matching and assembly, and fuzzing."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bankwatch.drivers.daly_can import (
    HOST_ADDRESS,
    DalyCanDriver,
    decode_reply,
    encode_replies,
    reply_id,
    request_frame,
    split_id,
)
from bankwatch.drivers.daly_payload import DATA_IDS as PAYLOADS
from bankwatch.drivers.daly_payload import decode_payload
from bankwatch.drivers.errors import FrameError
from bankwatch.drivers.model import Alarm, Protection, Reading
from tests.helpers import load_vectors

VECTORS = load_vectors("daly")
RESPONSES = [v for v in VECTORS if v["direction"] == "response" and v["expect"]]


def _uart_data(vector: dict[str, Any]) -> tuple[int, int, bytes]:
    """(data id, BMS address, the 8 data bytes) of a UART frame `A5 addr id 08 d0..d7 sum`."""
    frame = bytes.fromhex(vector["frame_hex"])
    assert frame[0] == 0xA5 and frame[3] == 8 and len(frame) == 13
    assert sum(frame[:12]) & 0xFF == frame[12], "vector checksum"
    return frame[2], frame[1], frame[4:12]


def _check(driver: DalyCanDriver, data_id: int, data: bytes, key: str, want: Any) -> None:
    r = driver.reading
    extra = dict(r.extra)
    part = decode_payload(data_id, data)
    simple: dict[str, Any] = {
        "cumulative_voltage_V": r.pack_voltage_v,
        "gather_voltage_V": extra.get("gathered_voltage_v"),
        "current_A_raw_minus_30000_x0.1": r.current_a,
        "soc_pct": r.soc_pct,
        "max_cell_mV": None if r.cell_voltage_max_v is None else round(r.cell_voltage_max_v * 1e3),
        "min_cell_mV": None if r.cell_voltage_min_v is None else round(r.cell_voltage_min_v * 1e3),
        "max_cell_no": r.cell_voltage_max_id,
        "min_cell_no": r.cell_voltage_min_id,
        "max_temp_C": r.cell_temperature_max_c,
        "min_temp_C": r.cell_temperature_min_c,
        "max_temp_no": r.cell_temperature_max_id,
        "min_temp_no": r.cell_temperature_min_id,
        "charge_mos": None if r.charge_enabled is None else int(r.charge_enabled),
        "discharge_mos": None if r.discharge_enabled is None else int(r.discharge_enabled),
        "bms_life_cycles": extra.get("bms_life"),
        "remaining_mAh": None if r.remaining_ah is None else round(r.remaining_ah * 1000),
        "cell_count": extra.get("cell_count"),
        "temp_sensor_count": extra.get("temperature_sensor_count"),
        "charger": None if "charger_present" not in extra else int(extra["charger_present"]),
        "load": None if "load_present" not in extra else int(extra["load_present"]),
        "cycles": r.cycles,
    }
    if key in simple:
        got = simple[key]
        assert got is not None, f"{key} not decoded"
        if key.endswith("_no"):
            want = str(want)
        assert got == (pytest.approx(want) if isinstance(want, float) else want), key
    elif key == "current_raw":
        assert part.current_a is not None and round(part.current_a * 10) + 30000 == want
    elif key == "state":
        assert extra["state"] == ("stationary", "charging", "discharging")[want]
    elif key == "state_text":
        assert extra["state"] == want
    elif key == "dio_bits":
        assert extra["dio_bits"] == int(want, 16)
    elif key == "frame_no":
        part_extra = dict(part.extra)
        assert part_extra.get("cell_frame", part_extra.get("temperature_frame")) == want
    elif key == "cells_mV":
        assert part.cell_voltages_v is not None
        assert [round(v * 1000) for v in part.cell_voltages_v] == want
    elif key == "temps_C":
        assert part.temperatures_c is not None and list(part.temperatures_c) == want
    elif key == "balance_bits_hex":
        # bit 0 of byte 0 is cell 1; the count of set bits is the cells balancing
        assert extra["balance_bits"] == int.from_bytes(bytes.fromhex(want), "little")
        assert extra["balance_bits"].bit_count() == bin(int(want, 16)).count("1")
    elif key == "fault_bytes_hex":
        assert data.hex() == want.lower()
    elif key == "any_fault":
        assert (r.protections != Protection.NONE or r.alarms != Alarm.NONE) == want
    else:
        pytest.fail(f"vector key {key!r} has no check: extend _check")


@pytest.mark.parametrize("vector", RESPONSES, ids=[v["id"] for v in RESPONSES])
def test_uart_captures_decode_as_can_replies(vector: dict[str, Any]) -> None:
    data_id, address, data = _uart_data(vector)
    driver = DalyCanDriver("bms", address)
    # 0x95/0x96 are assembled against the cell and sensor counts of 0x94.
    got = driver.on_frame(reply_id(data_id, address), data, True, 1.0)
    assert got is True and driver.frames == 1
    for key, want in vector["expect"].items():
        _check(driver, data_id, data, key, want)


def test_a_whole_poll_cycle_assembles_cells_and_temperatures() -> None:
    tano = [v for v in RESPONSES if v["id"].startswith("daly_tano_")]
    order = sorted(tano, key=lambda v: v["data_id"] != "0x94")  # counts first
    driver = DalyCanDriver("bms", 1)
    for v in order:
        data_id, address, data = _uart_data(v)
        driver.on_frame(reply_id(data_id, address), data, True, 2.0)
    r = driver.reading
    assert r.cell_voltages_v is not None and len(r.cell_voltages_v) == 14
    # The cross-check the vectors promise: 0x91's extremes are cells 5 and 9 of 0x95.
    assert r.cell_voltages_v[4] == pytest.approx(r.cell_voltage_max_v)
    assert r.cell_voltages_v[8] == pytest.approx(r.cell_voltage_min_v)
    assert r.temperatures_c == (21.0,)
    assert r.pack_voltage_v == pytest.approx(52.8) and r.soc_pct == pytest.approx(50.0)
    assert driver.warnings == []


def test_ids_follow_the_daly_can_layout() -> None:
    can_id, data, extended = request_frame(0x90, 0x01)
    assert (can_id, data, extended) == (0x18900140, bytes(8), True)
    assert reply_id(0x90, 0x01) == 0x18904001
    assert split_id(0x18904001) == (0x18, 0x90, 0x40, 0x01)


def test_the_driver_keeps_only_replies_from_its_bms_to_its_host() -> None:
    d = DalyCanDriver("b2", 2)
    payload = bytes.fromhex("02100000753001F4")
    assert d.on_frame(0x18904001, payload, True, 0) is False  # BMS 1
    assert d.on_frame(0x18900240, payload, True, 0) is False  # a request to BMS 2
    assert d.on_frame(0x18904102, payload, True, 0) is False  # a reply to another host
    assert d.on_frame(0x351, payload, False, 0) is False  # Pylontech on the same bus
    assert d.on_frame(0x18624002, payload, True, 0) is False  # a data id not decoded
    assert d.ignored == 5 and d.frames == 0
    assert d.on_frame(0x18904002, payload, True, 0) is True
    assert [f[0] for f in d.requests()] == [0x18000240 | (i << 16) for i in d.poll_ids]


def test_current_sign_is_decided_by_the_state_byte() -> None:
    d = DalyCanDriver("b", 1)
    # raw 30000 + 250 = +25.0 A by the document's formula, while 0x93 says discharging.
    d.on_frame(0x18904001, bytes.fromhex("02100000762A01F4"), True, 0)
    assert d.reading.current_a == pytest.approx(25.0)
    d.on_frame(0x18934001, bytes.fromhex("0201011000004E20"), True, 0)
    assert d.reading.current_a == pytest.approx(-25.0)
    assert len(d.warnings) == 1 and "inverted" in d.warnings[0]
    d.on_frame(0x18904001, bytes.fromhex("02100000762A01F4"), True, 0)
    assert d.reading.current_a == pytest.approx(-25.0)  # stays inverted


def test_replies_round_trip_through_the_simulator_encoder() -> None:
    r = Reading(
        pack_voltage_v=53.1,
        current_a=-12.4,
        soc_pct=66.6,
        remaining_ah=66.6,
        cycles=321,
        cell_voltages_v=tuple(3.3 + i / 1000 for i in range(16)),
        temperatures_c=(21.0, 23.0, 19.0),
        charge_enabled=True,
        discharge_enabled=False,
        protections=Protection.DISCHARGE_OVERCURRENT,
        alarms=Alarm.CELL_IMBALANCE,
    )
    d = DalyCanDriver("b", 3)
    for data_id in (0x94, *sorted(set(PAYLOADS) - {0x94, 0x97})):
        for can_id, data in encode_replies(data_id, r, 3):
            d.on_frame(can_id, data, True, 0)
    back = d.reading
    for name in (
        "pack_voltage_v",
        "current_a",
        "soc_pct",
        "remaining_ah",
        "cycles",
        "cell_voltages_v",
        "temperatures_c",
        "charge_enabled",
        "discharge_enabled",
        "protections",
        "alarms",
    ):
        want = getattr(r, name)
        if isinstance(want, float | tuple):
            want = pytest.approx(want)
        assert getattr(back, name) == want, name
    assert back.cell_voltage_max_id == "16" and back.cell_temperature_min_id == "3"


def test_decode_reply_says_what_is_wrong() -> None:
    with pytest.raises(FrameError, match="standard id"):
        decode_reply(0x351, bytes(8), extended=False)
    with pytest.raises(FrameError, match="is a request"):
        decode_reply(0x18900140, bytes(8))
    with pytest.raises(FrameError, match="needs 8"):
        decode_reply(0x18904001, bytes(4))
    with pytest.raises(FrameError, match="not decoded"):
        decode_reply(0x18624001, bytes(8))
    assert HOST_ADDRESS == 0x40


@given(
    frames=st.lists(
        st.tuples(st.sampled_from((*PAYLOADS, 0x62)), st.binary(max_size=10)), max_size=20
    )
)
def test_random_payloads_only_raise_frame_error(frames: list[tuple[int, bytes]]) -> None:
    d = DalyCanDriver("fuzz", 1)
    for data_id, data in frames:
        try:
            d.on_frame(reply_id(data_id, 1), data, True, 0)
        except FrameError:
            continue
    assert isinstance(d.reading, Reading)
