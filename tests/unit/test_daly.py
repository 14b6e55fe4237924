"""Daly 0xA5 codec against the captured frames, plus round trips, merging and fuzzing."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bankwatch.drivers import daly, daly_payload
from bankwatch.drivers.errors import (
    ChecksumError,
    FrameError,
    IncompleteError,
    UnknownCommandError,
    UsageError,
)
from bankwatch.drivers.model import Alarm, Protection, Reading
from tests.codec_checks import (
    check_contract,
    mutate,
    only_frame_errors,
    truncations_raise,
)
from tests.helpers import load_vectors

VECTORS = load_vectors("daly")
REPLIES = [v for v in VECTORS if v["direction"] == "response"]
REQUESTS = [v for v in VECTORS if v["direction"] == "request"]
FRAMES = [bytes.fromhex(v["frame_hex"]) for v in VECTORS]


def _frame(vector: dict[str, Any]) -> bytes:
    return bytes.fromhex(vector["frame_hex"])


def _mv(volts: float | None) -> int:
    assert volts is not None
    return round(volts * 1000)


def _extra(r: Reading, key: str) -> Any:
    extra = dict(r.extra)
    assert key in extra, f"extra {key!r} not decoded"
    return extra[key]


# Vector key -> what the reading must hold. Every key of every vector must be here.
_STATE_CODES = {"stationary": 0, "charging": 1, "discharging": 2}
CHECKS: dict[str, Any] = {
    "cumulative_voltage_V": lambda r: r.pack_voltage_v,
    "gather_voltage_V": lambda r: _extra(r, "gathered_voltage_v"),
    "current_raw": lambda r: round(r.current_a * 10) + 30000,
    "current_A_raw_minus_30000_x0.1": lambda r: r.current_a,
    "soc_pct": lambda r: r.soc_pct,
    "max_cell_mV": lambda r: _mv(r.cell_voltage_max_v),
    "max_cell_no": lambda r: int(r.cell_voltage_max_id),
    "min_cell_mV": lambda r: _mv(r.cell_voltage_min_v),
    "min_cell_no": lambda r: int(r.cell_voltage_min_id),
    "max_temp_C": lambda r: r.cell_temperature_max_c,
    "max_temp_no": lambda r: int(r.cell_temperature_max_id),
    "min_temp_C": lambda r: r.cell_temperature_min_c,
    "min_temp_no": lambda r: int(r.cell_temperature_min_id),
    "state": lambda r: _STATE_CODES[_extra(r, "state")],
    "state_text": lambda r: _extra(r, "state"),
    "charge_mos": lambda r: int(r.charge_enabled),
    "discharge_mos": lambda r: int(r.discharge_enabled),
    "bms_life_cycles": lambda r: _extra(r, "bms_life"),
    "remaining_mAh": lambda r: round(r.remaining_ah * 1000),
    "cell_count": lambda r: _extra(r, "cell_count"),
    "temp_sensor_count": lambda r: _extra(r, "temperature_sensor_count"),
    "charger": lambda r: int(_extra(r, "charger_present")),
    "load": lambda r: int(_extra(r, "load_present")),
    "dio_bits": lambda r: f"0x{_extra(r, 'dio_bits'):02X}",
    "cycles": lambda r: r.cycles,
    "frame_no": lambda r: dict(r.extra).get("cell_frame", dict(r.extra).get("temperature_frame")),
    "cells_mV": lambda r: [round(v * 1000) for v in r.cell_voltages_v],
    "temps_C": lambda r: list(r.temperatures_c),
    # bit 0 of byte 0 is cell 1
    "balance_bits_hex": lambda r: _extra(r, "balance_bits").to_bytes(8, "little").hex().upper(),
    "fault_bytes_hex": lambda r: (
        _extra(r, "fault_bits") + f"{_extra(r, 'fault_code'):02x}"
    ).upper(),
    "any_fault": lambda r: bool(r.protections or r.alarms or _extra(r, "faults")),
}


@pytest.mark.parametrize("vector", REPLIES, ids=[v["id"] for v in REPLIES])
def test_vector_decodes_to_expected(vector: dict[str, Any]) -> None:
    reading = daly.decode(_frame(vector))
    assert vector["expect"], "a reply vector without expected values"
    for key, want in vector["expect"].items():
        assert key in CHECKS, f"vector key {key!r} has no check: extend CHECKS"
        got = CHECKS[key](reading)
        assert got is not None, key
        if isinstance(want, float):
            assert got == pytest.approx(want, abs=1e-6), key
        else:
            assert got == want, key
    assert daly.frame_address(_frame(vector)) == int(vector["address"], 16)
    assert daly.is_request(_frame(vector)) is False


@pytest.mark.parametrize("vector", REQUESTS, ids=[v["id"] for v in REQUESTS])
def test_requests_encode_to_the_captured_bytes(vector: dict[str, Any]) -> None:
    frame = _frame(vector)
    assert daly.encode_request(1, int(vector["data_id"], 16)) == frame
    assert frame in daly.poll_requests(1)
    assert daly.is_request(frame) and daly.frame_address(frame) == 1
    assert daly.decode(frame) == Reading()


def test_contract_names() -> None:
    check_contract(daly)
    assert daly.PROTOCOL == "daly" and daly.DEFAULT_BAUD == 9600


def test_host_addresses_and_boards() -> None:
    assert [r[1] for r in daly.poll_requests(1)] == [0x40] * 9
    assert [r[2] for r in daly.poll_requests(1)] == list(range(0x90, 0x99))
    assert daly.poll_requests(0x80)[0] == bytes.fromhex("A5809008" + "00" * 8) + bytes(
        (sum(bytes.fromhex("A5809008")) & 0xFF,)
    )
    req = daly.poll_requests(3)[0]
    assert req[1] == 0x42 and daly.frame_address(req) == 3
    assert daly.frame_address(daly.poll_requests(0x80)[0]) == 1
    with pytest.raises(UsageError, match="board number"):
        daly.poll_requests(0)
    # the reply to board 3 says 3
    reply = daly.encode_reply(req, Reading(pack_voltage_v=26.4, current_a=0.0, soc_pct=50))
    assert reply is not None and reply[1] == 3 and daly.frame_address(reply) == 3


def test_the_captured_pack_merges_into_one_reading() -> None:
    tano = [_frame(v) for v in VECTORS if v["id"].startswith("daly_tano_")]
    r = daly.merge(tano)
    assert r.cell_voltages_v is not None
    assert [round(v * 1000) for v in r.cell_voltages_v] == [
        3776, 3778, 3783, 3784, 3784, 3782, 3778, 3778, 3740, 3780, 3780, 3780, 3779, 3776,
    ]  # fmt: skip
    # 14 cells from 5 frames: the 15th slot is cut by 0x94's cell count
    assert r.temperatures_c == (21.0,)  # one sensor: the -40 °C slots are unused
    assert r.max_cell_v == r.cell_voltage_max_v == pytest.approx(3.784)
    assert r.min_cell_v == r.cell_voltage_min_v == pytest.approx(3.740)
    assert r.pack_voltage_v == pytest.approx(52.8) and r.soc_pct == 50.0
    assert r.remaining_ah == pytest.approx(20.0) and r.cycles == 0
    assert r.protections == Protection.NONE and r.alarms == Alarm.NONE
    assert "cell_frame" not in dict(r.extra) and "temperature_frame" not in dict(r.extra)


def test_frame_order_does_not_matter_but_gaps_do() -> None:
    cells = [_frame(v) for v in VECTORS if v["id"].startswith("daly_tano_0x95_")]
    forward = daly.merge(cells)
    assert daly.merge(list(reversed(cells))) == forward
    assert forward.cell_voltages_v is not None and len(forward.cell_voltages_v) == 15
    with pytest.raises(IncompleteError, match="frame 3 missing"):
        daly.merge(cells[:2] + cells[3:])
    status = next(_frame(v) for v in VECTORS if v["id"] == "daly_tano_0x94")  # 14 cells
    with pytest.raises(IncompleteError, match="9 cells received, the BMS reports 14"):
        daly.merge([status, *cells[:3]])


def test_without_a_cell_count_trailing_empty_slots_are_dropped() -> None:
    req = daly.encode_request(1, 0x95)
    reply = daly.encode_reply(req, Reading(cell_voltages_v=(3.3, 3.31, 3.32, 3.33)))
    assert reply is not None and len(reply) == 26  # two frames, 2 empty slots in the second
    merged = daly.merge([reply[:13], reply[13:]])
    assert merged.cell_voltages_v == (3.3, 3.31, 3.32, 3.33)


def test_zero_based_frame_numbers_are_accepted() -> None:
    frames = [
        daly._frame(0x01, 0x95, bytes((n, 0x0C, 0xE4, 0x0C, 0xE5, 0x0C, 0xE6, 0))) for n in (0, 1)
    ]
    assert daly.merge(frames).cell_voltages_v == (3.3, 3.301, 3.302) * 2


def test_current_direction_comes_from_the_state_byte() -> None:
    def frame(data_id: int, data: bytes) -> bytes:
        return daly._frame(0x01, data_id, data)

    # raw 29500: -50 A by the document's formula
    v90 = frame(0x90, bytes.fromhex("0210000073 3C 01F4".replace(" ", "")))
    charging = frame(0x93, bytes.fromhex("0101011000004E20"))
    discharging = frame(0x93, bytes.fromhex("0201011000004E20"))
    stationary = frame(0x93, bytes.fromhex("0001011000004E20"))
    assert daly.decode(v90).current_a == pytest.approx(-50.0)
    assert daly.merge([v90, charging]).current_a == pytest.approx(50.0)
    assert daly.merge([discharging, v90]).current_a == pytest.approx(-50.0)
    assert daly.merge([v90, stationary]).current_a == pytest.approx(-50.0)  # document's sign
    assert daly.merge([v90]).current_a == pytest.approx(-50.0)


def test_the_airep_16s_frames_continue_a_list() -> None:
    f5, f6 = (_frame(v) for v in VECTORS if v["id"].startswith("daly_airep34_"))
    assert dict(daly.decode(f6).extra)["cell_frame"] == 6
    with pytest.raises(IncompleteError, match="frame 1, 2, 3, 4 missing"):
        daly.merge([f5, f6])


@pytest.mark.parametrize(
    ("byte", "bit", "protection", "alarm", "name"),
    [
        (0, 0, Protection.NONE, Alarm.CELL_HIGH_VOLTAGE, "cell_voltage_high_l1"),
        (0, 1, Protection.CELL_OVERVOLTAGE, Alarm.NONE, "cell_voltage_high_l2"),
        (0, 3, Protection.CELL_UNDERVOLTAGE, Alarm.NONE, "cell_voltage_low_l2"),
        (0, 5, Protection.CELL_OVERVOLTAGE, Alarm.NONE, "pack_voltage_high_l2"),
        (1, 2, Protection.NONE, Alarm.LOW_TEMPERATURE, "charge_temperature_low_l1"),
        (1, 5, Protection.OVER_TEMPERATURE, Alarm.NONE, "discharge_temperature_high_l2"),
        (2, 1, Protection.CHARGE_OVERCURRENT, Alarm.NONE, "charge_overcurrent_l2"),
        (2, 2, Protection.NONE, Alarm.DISCHARGE_HIGH_CURRENT, "discharge_overcurrent_l1"),
        (2, 7, Protection.NONE, Alarm.NONE, "soc_low_l2"),
        (4, 4, Protection.SYSTEM_ERROR, Alarm.NONE, "charge_mos_stuck"),
        (5, 7, Protection.NONE, Alarm.INTERNAL_COMMUNICATION, "internal_communication_failure"),
        (6, 2, Protection.SHORT_CIRCUIT, Alarm.NONE, "short_circuit"),
    ],
)
def test_failure_bits(byte: int, bit: int, protection: Protection, alarm: Alarm, name: str) -> None:
    data = bytearray(8)
    data[byte] = 1 << bit
    data[7] = 0x2A
    r = daly.decode(daly._frame(0x01, 0x98, bytes(data)))
    assert r.protections == protection and r.alarms == alarm
    extra = dict(r.extra)
    assert extra["faults"] == name and extra["fault_code"] == 0x2A
    assert extra["fault_bits"] == bytes(data[:7]).hex()


def test_bad_frames_say_what_is_wrong() -> None:
    good = _frame(REPLIES[0])
    bad = good[:12] + bytes(((good[12] + 1) & 0xFF,))
    with pytest.raises(ChecksumError, match=r"checksum 0xEB in frame, 0xEA computed"):
        daly.decode(bad)
    with pytest.raises(FrameError, match="frame of 12 bytes, frames are 13"):
        daly.decode(good[:12])
    with pytest.raises(FrameError, match="byte 0x5A cannot start a frame"):
        daly.frame_length(b"\x5a\xa5")
    with pytest.raises(UnknownCommandError, match="data id 0x62"):
        daly.decode(daly._frame(0x01, 0x62, bytes(8)))


def test_frame_length_finds_frames_in_a_stream() -> None:
    stream = b"".join(FRAMES)
    n = 0
    while stream:
        length = daly.frame_length(stream)
        assert length == 13
        daly.decode(stream[:length])
        stream = stream[length:]
        n += 1
    assert n == len(FRAMES)


def test_every_polled_id_is_answered_even_from_an_empty_reading() -> None:
    """A real board answers 0x90..0x98 whatever it measures; only empty lists go unanswered."""
    answered = [daly.encode_reply(req, Reading()) for req in daly.poll_requests(1)]
    assert [a is not None for a in answered] == [True] * 5 + [False, False] + [True] * 2
    merged = daly.merge([a for a in answered if a])
    assert merged.pack_voltage_v == 0.0 and merged.soc_pct == 0.0
    assert merged.protections == Protection.NONE and merged.alarms == Alarm.NONE


def test_unanswered_requests() -> None:
    assert daly.encode_reply(daly.encode_request(1, 0x62), Reading(pack_voltage_v=1.0)) is None
    assert daly.encode_reply(daly.encode_request(1, 0x95), Reading(pack_voltage_v=1.0)) is None
    assert daly.encode_reply(_frame(REPLIES[0]), Reading(pack_voltage_v=1.0)) is None
    assert daly.expected_frames(daly.encode_request(1, 0x90)) == 1
    assert daly.expected_frames(daly.encode_request(1, 0x95)) is None
    known = daly.decode(next(_frame(v) for v in VECTORS if v["id"] == "daly_tano_0x94"))
    assert daly.expected_frames(daly.encode_request(1, 0x95), known) == 5
    assert daly.expected_frames(daly.encode_request(1, 0x96), known) == 1


# ---- round trips ---------------------------------------------------------------------------

_flags_p = st.sets(st.sampled_from([p for p in Protection if p.value])).map(
    lambda s: Protection(sum(p.value for p in s))
)
# only the alarms Daly's failure bits can say
_flags_a = st.sets(
    st.sampled_from(sorted(daly_payload.FAULTS.alarms(), key=lambda a: a.value))
).map(lambda s: Alarm(sum(a.value for a in s)))


@st.composite
def readings(draw: st.DrawFn) -> Reading:
    cells = draw(st.lists(st.integers(1000, 4500), min_size=1, max_size=48))
    temps = draw(st.lists(st.integers(-40, 215), min_size=1, max_size=16))
    return Reading(
        pack_voltage_v=draw(st.integers(0, 0xFFFF)) / 10,
        current_a=draw(st.integers(-3000, 3000)) / 10,
        soc_pct=draw(st.integers(0, 1000)) / 10,
        remaining_ah=draw(st.integers(0, 2_000_000)) / 1000,
        cycles=draw(st.integers(0, 0xFFFF)),
        cell_voltages_v=tuple(c / 1000 for c in cells),
        temperatures_c=tuple(float(t) for t in temps),
        charge_enabled=draw(st.booleans()),
        discharge_enabled=draw(st.booleans()),
        protections=draw(_flags_p),
        alarms=draw(_flags_a),
    )


def _poll(reading: Reading, address: int = 1) -> list[bytes]:
    frames = []
    for req in daly.poll_requests(address):
        reply = daly.encode_reply(req, reading)
        assert reply is not None, f"no reply to 0x{req[2]:02X}"
        while reply:
            n = daly.frame_length(reply)
            assert n is not None
            frames.append(reply[:n])
            reply = reply[n:]
    return frames


@settings(max_examples=150, deadline=None)
@given(readings(), st.sampled_from([1, 2, 0x80]))
def test_round_trip(reading: Reading, address: int) -> None:
    frames = _poll(reading, address)
    assert all(not daly.is_request(f) for f in frames)
    back = daly.merge(frames)
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
        assert getattr(back, name) == getattr(reading, name), name
    assert back.cell_voltage_max_v == max(reading.cell_voltages_v or ())
    assert back.cell_temperature_min_c == min(reading.temperatures_c or ())


# ---- fuzzing -------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=40))
def test_random_bytes_only_raise_frame_error(data: bytes) -> None:
    only_frame_errors(daly, data)
    only_frame_errors(daly, b"\xa5" + data)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(FRAMES),
    st.lists(st.integers(0, 12), min_size=1, max_size=4),
    st.lists(st.integers(0, 255), min_size=1, max_size=4),
)
def test_mutated_frames_only_raise_frame_error(
    frame: bytes, positions: list[int], values: list[int]
) -> None:
    only_frame_errors(daly, mutate(frame, positions, values))


@pytest.mark.parametrize("frame", FRAMES, ids=[v["id"] for v in VECTORS])
def test_truncations_raise_frame_error(frame: bytes) -> None:
    truncations_raise(daly, frame)


@settings(max_examples=100, deadline=None)
@given(readings())
def test_encoded_replies_survive_mutation_as_frame_errors(reading: Reading) -> None:
    for frame in _poll(reading):
        for pos in range(len(frame)):
            only_frame_errors(daly, mutate(frame, [pos], [frame[pos] ^ 0x5A]))
