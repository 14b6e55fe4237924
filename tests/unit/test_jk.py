"""JK codecs: `jk-b` (0x4E 0x57 read-all) and `jk-pb` (0x55AA bus-master frames), against the
captured frames, plus round trips and fuzzing."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bankwatch.drivers import jk_b, jk_pb
from bankwatch.drivers.errors import ChecksumError, FrameError, UnknownCommandError, UsageError
from bankwatch.drivers.model import Alarm, Protection, Reading, merge_readings
from tests.codec_checks import check_contract, mutate, only_frame_errors, truncations_raise
from tests.helpers import load_vectors

VECTORS = load_vectors("jk")
JKB = [v for v in VECTORS if v["protocol"].startswith("JK-B")]
JKPB = [v for v in VECTORS if v["protocol"].startswith("JK-PB")]
JKB_FRAMES = [bytes.fromhex(v["frame_hex"]) for v in JKB]
JKPB_FRAMES = [bytes.fromhex(v["frame_hex"]) for v in JKPB]


def _frame(vector: dict[str, Any]) -> bytes:
    return bytes.fromhex(vector["frame_hex"])


def _wire(vector: dict[str, Any]) -> bytes:
    """A JK-PB reply as it travels on RS485: payload, 00, the FC10 ACK, 00."""
    return _frame(vector) + b"\x00" + bytes.fromhex(vector["trailing_ack_hex"]) + b"\x00"


def _extra(r: Reading, key: str) -> Any:
    extra = dict(r.extra)
    assert key in extra, f"extra {key!r} not decoded"
    return extra[key]


def _x(key: str, factor: float = 1.0) -> Any:
    """An `extra` value in the vector's unit (factor: from our SI unit to theirs)."""
    return lambda r: _extra(r, key) * factor if factor != 1.0 else _extra(r, key)


def _setting(key: str, factor: int) -> Any:
    return lambda r: round(_extra(r, key) * factor)


def _temp(i: int) -> Any:
    return lambda r: r.temperatures_c[i]


# Vector key -> what the reading must hold. Every key of every vector must be in its table.
JKB_CHECKS: dict[str, Any] = {
    "cells_mV": lambda r: [round(v * 1000) for v in r.cell_voltages_v],
    "mosfet_C": lambda r: r.mosfet_temperature_c,
    "t1_C": _temp(0),
    "t2_C": _temp(1),
    "voltage_V": lambda r: r.pack_voltage_v,
    "current_A": lambda r: r.current_a,
    "soc_pct": lambda r: r.soc_pct,
    "temp_sensors": _x("temperature_sensor_count"),
    "cycles": lambda r: r.cycles,
    "cell_strings": _x("cell_strings"),
    "warnings": lambda r: hex(_extra(r, "alarm_bits")),
    "status": lambda r: hex(_extra(r, "status_bits")),
    "capacity_setting_Ah": lambda r: r.design_ah,
    "battery_type": _x("battery_type"),
    "sw": lambda r: r.firmware,
    "mfr": lambda r: r.manufacturer,
    "protocol_version_C0": _x("protocol_version"),
    "runtime_min": lambda r: _extra(r, "runtime_s") / 60,
    "total_runtime_min": lambda r: _extra(r, "runtime_s") / 60,
    "low_soc_alarm_pct": _x("low_soc_alarm_pct"),
    "status_bits": lambda r: {
        "charge_mosfet": r.charge_enabled,
        "discharge_mosfet": r.discharge_enabled,
        "balancer": _extra(r, "balancing"),
    },
}

_SETTING_KEYS = {
    "VolSmartSleep_mV": ("cell_smart_sleep_v", 1000),
    "VolCellUV_mV": ("cell_uvp_v", 1000),
    "VolCellUVPR_mV": ("cell_uvp_recovery_v", 1000),
    "VolCellOV_mV": ("cell_ovp_v", 1000),
    "VolCellOVPR_mV": ("cell_ovp_recovery_v", 1000),
    "VolBalanTrig_mV": ("balance_trigger_v", 1000),
    "VolSOC100_mV": ("cell_soc100_v", 1000),
    "VolSOC0_mV": ("cell_soc0_v", 1000),
    "VolCellRCV_mV": ("cell_charge_v", 1000),
    "VolCellRFV_mV": ("cell_float_v", 1000),
    "VolSysPwrOff_mV": ("cell_power_off_v", 1000),
    "CurBatCOC_mA": ("charge_ocp_a", 1000),
    "TIMBatCOCPDly_s": ("charge_ocp_delay_s", 1),
    "TIMBatCOCPRDly_s": ("charge_ocp_recovery_s", 1),
    "CurBatDcOC_mA": ("discharge_ocp_a", 1000),
    "TIMBatDcOCPDly_s": ("discharge_ocp_delay_s", 1),
    "TIMBatDcOCPRDly_s": ("discharge_ocp_recovery_s", 1),
    "TIMBatSCPRDly_s": ("scp_recovery_s", 1),
    "CurBalanMax_mA": ("balance_current_max_a", 1000),
    "TMPBatCOT_0.1C": ("charge_otp_c", 10),
    "TMPBatCOTPR_0.1C": ("charge_otp_recovery_c", 10),
    "TMPBatDcOT_0.1C": ("discharge_otp_c", 10),
    "TMPBatDcOTPR_0.1C": ("discharge_otp_recovery_c", 10),
    "TMPBatCUT_0.1C": ("charge_utp_c", 10),
    "TMPBatCUTPR_0.1C": ("charge_utp_recovery_c", 10),
    "TMPMosOT_0.1C": ("mosfet_otp_c", 10),
    "TMPMosOTPR_0.1C": ("mosfet_otp_recovery_c", 10),
    "CellCount": ("cell_count", 1),
    "BatChargeEN": ("charge_switch", 1),
    "BatDisChargeEN": ("discharge_switch", 1),
    "BalanEN": ("balance_switch", 1),
    "SCPDelay_us": ("scp_delay_us", 1),
    "VolStartBalan_mV": ("balance_start_v", 1000),
    "DevAddr": ("device_address", 1),
}
JKPB_CHECKS: dict[str, Any] = {
    "cells_mV": lambda r: [round(v * 1000) for v in r.cell_voltages_v],
    "cell_avg_mV": lambda r: round(_extra(r, "cell_voltage_average_v") * 1000),
    "cell_delta_mV": lambda r: round(_extra(r, "cell_voltage_delta_v") * 1000),
    "mosfet_temp_C": lambda r: r.mosfet_temperature_c,
    "voltage_V": lambda r: r.pack_voltage_v,
    "power_W": _x("bms_power_w"),
    "current_A": lambda r: r.current_a,
    "t1_C": _temp(0),
    "t2_C": _temp(1),
    "t3_C": _temp(2),
    "t4_C": _temp(3),
    "alarms": lambda r: (
        hex(_extra(r, "alarm_bits"))
        if r.protections == Protection.NONE and r.alarms == Alarm.NONE
        else "flags set"
    ),
    "soc_pct": lambda r: r.soc_pct,
    "remaining_Ah": lambda r: r.remaining_ah,
    "full_charge_cap_Ah": lambda r: r.full_charge_ah,
    "cycles": lambda r: r.cycles,
    "soh_pct": lambda r: r.soh_pct,
    "runtime_s": _x("runtime_s"),
    "charge_fet": lambda r: int(r.charge_enabled),
    "discharge_fet": lambda r: int(r.discharge_enabled),
    "CapBatCell_mAh": lambda r: round(r.design_ah * 1000),
    **{name: _setting(key, factor) for name, (key, factor) in _SETTING_KEYS.items()},
    "device_id": lambda r: r.model,
    "hw_version": _x("hardware_version"),
    "sw_version": lambda r: r.firmware,
    "odd_runtime_s": _x("runtime_s"),
    "power_on_times": _x("power_on_count"),
    # The vector names the text at about-offset 46 "serial"; JK's device-info layout calls it
    # the (user-set) device name and has the factory serial at 86 (see drivers/jk_pb.py).
    "serial": _x("device_name"),
}


def _check(checks: dict[str, Any], reading: Reading, vector: dict[str, Any]) -> None:
    assert vector["expect"], "a reply vector without expected values"
    for key, want in vector["expect"].items():
        assert key in checks, f"vector key {key!r} has no check: extend the table"
        got = checks[key](reading)
        assert got is not None, key
        if isinstance(want, float):
            assert got == pytest.approx(want, abs=1e-6), key
        else:
            assert got == want, key


# ---- jk-b ----------------------------------------------------------------------------------

JKB_REPLIES = [v for v in JKB if v["direction"] == "response"]


@pytest.mark.parametrize("vector", JKB_REPLIES, ids=[v["id"] for v in JKB_REPLIES])
def test_jkb_vector_decodes_to_expected(vector: dict[str, Any]) -> None:
    frame = _frame(vector)
    assert jk_b.frame_length(frame) == len(frame)
    _check(JKB_CHECKS, jk_b.decode(frame), vector)
    assert not jk_b.is_request(frame) and jk_b.frame_address(frame) is None


def test_jkb_request_encodes_to_the_captured_bytes() -> None:
    (vector,) = [v for v in JKB if v["direction"] == "request"]
    assert jk_b.poll_requests(1) == [_frame(vector)]
    assert jk_b.poll_requests(5) == [_frame(vector)]  # no address on the wire
    assert jk_b.is_request(_frame(vector)) and jk_b.decode(_frame(vector)) == Reading()


def test_jkb_contract() -> None:
    check_contract(jk_b)
    assert jk_b.PROTOCOL == "jk-b" and jk_b.DEFAULT_BAUD == 115200


def test_jkb_never_copies_the_password() -> None:
    r = jk_b.decode(JKB_FRAMES[0])
    assert "123456" not in repr(r)  # the captured unit's 0xB2 password


def test_jkb_current_encodings() -> None:
    def with_current(raw: int, version: int | None) -> Reading:
        items = {0x84: raw.to_bytes(2, "big")}
        if version is not None:
            items[0xC0] = bytes((version,))
        return jk_b._decode_items(items)

    assert with_current(0x80D0, 1).current_a == pytest.approx(2.08)
    assert with_current(0x0045, 1).current_a == pytest.approx(-0.69)
    assert with_current(0x0045, None).current_a == pytest.approx(-0.69)  # no 0xC0: version 1
    assert with_current(10000 - 250, 0).current_a == pytest.approx(2.5)


def test_jkb_negative_temperatures_and_warnings() -> None:
    r = jk_b._decode_items({0x80: b"\x00\x69", 0x81: b"\x00\x64", 0x8B: b"\x06\x22"})
    assert r.mosfet_temperature_c == -5.0 and r.temperatures_c == (100.0,)
    # bits 1, 5, 9, 10: MOS over-temp, charge OC, low temp, cell OV
    assert r.alarms == (
        Alarm.HIGH_TEMPERATURE
        | Alarm.CHARGE_HIGH_CURRENT
        | Alarm.LOW_TEMPERATURE
        | Alarm.CELL_HIGH_VOLTAGE
    )
    assert dict(r.extra)["alarms_active"] == (
        "mosfet_over_temperature,charge_overcurrent,battery_low_temperature,cell_overvoltage"
    )


def test_jkb_bad_frames_say_what_is_wrong() -> None:
    good = JKB_FRAMES[0]
    bad = good[:-1] + bytes(((good[-1] + 1) & 0xFF,))
    with pytest.raises(ChecksumError, match="checksum 0x000054D2 in frame, 0x000054D1 computed"):
        jk_b.decode(bad)
    with pytest.raises(FrameError, match="frame of 284 bytes, its length field says 285"):
        jk_b.decode(good[:-1])
    unknown = jk_b._frame(0x06, 0, 1, b"\x88\x00\x01")
    with pytest.raises(UnknownCommandError, match="data id 0x88"):
        jk_b.decode(unknown)
    with pytest.raises(UnknownCommandError, match="command 0x02"):
        jk_b.decode(jk_b._frame(0x02, 0, 1, b""))
    with pytest.raises(FrameError, match="length field 5000"):
        jk_b.frame_length(b"\x4e\x57\x13\x88")


# only the alarms JK-B's warning bits can say
_JKB_ALARMS = sorted(jk_b._WARNINGS.alarms(), key=lambda a: a.value)
_printable = st.characters(min_codepoint=33, max_codepoint=126)


@st.composite
def jkb_readings(draw: st.DrawFn) -> Reading:
    temps = draw(st.lists(st.integers(-40, 100), min_size=2, max_size=2))
    return Reading(
        cell_voltages_v=tuple(
            c / 1000 for c in draw(st.lists(st.integers(1000, 4500), min_size=1, max_size=32))
        ),
        temperatures_c=tuple(float(t) for t in temps),
        mosfet_temperature_c=float(draw(st.integers(-40, 100))),
        pack_voltage_v=draw(st.integers(0, 0xFFFF)) / 100,
        current_a=draw(st.integers(-0x7FFF, 0x7FFF)) / 100,
        soc_pct=float(draw(st.integers(0, 100))),
        cycles=draw(st.integers(0, 0xFFFF)),
        design_ah=float(draw(st.integers(0, 2000))),
        alarms=Alarm(sum(a.value for a in draw(st.sets(st.sampled_from(_JKB_ALARMS))))),
        charge_enabled=draw(st.booleans()),
        discharge_enabled=draw(st.booleans()),
        serial=draw(st.text(_printable, min_size=1, max_size=8)),
        firmware=draw(st.text(_printable, min_size=1, max_size=15)),
        manufacturer=draw(st.text(_printable, min_size=1, max_size=24)),
    )


_JKB_FIELDS = (
    "cell_voltages_v",
    "temperatures_c",
    "mosfet_temperature_c",
    "pack_voltage_v",
    "current_a",
    "soc_pct",
    "cycles",
    "design_ah",
    "alarms",
    "charge_enabled",
    "discharge_enabled",
    "serial",
    "firmware",
    "manufacturer",
)


@settings(max_examples=150, deadline=None)
@given(jkb_readings())
def test_jkb_round_trip(reading: Reading) -> None:
    (req,) = jk_b.poll_requests(1)
    reply = jk_b.encode_reply(req, reading)
    assert reply is not None and jk_b.frame_length(reply) == len(reply)
    back = jk_b.decode(reply, req)
    for name in _JKB_FIELDS:
        assert getattr(back, name) == getattr(reading, name), name


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_jkb_random_bytes_only_raise_frame_error(data: bytes) -> None:
    only_frame_errors(jk_b, data)
    only_frame_errors(jk_b, b"\x4e\x57" + data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_jkb_random_items_behind_a_good_checksum_only_raise_frame_error(data: bytes) -> None:
    only_frame_errors(jk_b, jk_b._frame(0x06, 0, 1, data))
    only_frame_errors(jk_b, jk_b._frame(0x06, 0, 1, b"\x79" + data))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(JKB_FRAMES),
    st.lists(st.integers(0, 300), min_size=1, max_size=4),
    st.lists(st.integers(0, 255), min_size=1, max_size=4),
)
def test_jkb_mutated_frames_only_raise_frame_error(
    frame: bytes, positions: list[int], values: list[int]
) -> None:
    only_frame_errors(jk_b, mutate(frame, positions, values))


@pytest.mark.parametrize("frame", JKB_FRAMES, ids=[v["id"] for v in JKB])
def test_jkb_truncations_raise_frame_error(frame: bytes) -> None:
    truncations_raise(jk_b, frame)


# ---- jk-pb ---------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", JKPB, ids=[v["id"] for v in JKPB])
def test_jkpb_vector_decodes_to_expected(vector: dict[str, Any]) -> None:
    frame = _frame(vector)
    _check(JKPB_CHECKS, jk_pb.decode(frame), vector)
    assert jk_pb.frame_address(frame) is None  # the bare payload carries no address
    assert not jk_pb.is_request(frame)


WIRE = [v for v in JKPB if "trigger_request_hex" in v]


@pytest.mark.parametrize("vector", WIRE, ids=[v["id"] for v in WIRE])
def test_jkpb_requests_and_wire_replies(vector: dict[str, Any]) -> None:
    request = bytes.fromhex(vector["trigger_request_hex"])
    address = request[0]
    assert request in jk_pb.poll_requests(address)
    assert jk_pb.is_request(request) and jk_pb.frame_address(request) == address
    assert jk_pb.frame_length(request + b"\x55") == len(request)
    wire = _wire(vector)
    assert jk_pb.frame_length(wire) == jk_pb.WIRE_LEN
    assert jk_pb.frame_length(wire[:-1]) is None  # waits for the trailer
    assert jk_pb.frame_length(_frame(vector) + b"\x55") == jk_pb.PAYLOAD_LEN  # no trailer
    assert jk_pb.frame_address(wire) == address
    # same reading with or without the trailer, and the request it answers is checked
    assert jk_pb.decode(wire, request) == jk_pb.decode(_frame(vector))
    other = jk_pb.encode_request(address, jk_pb.TRIGGER_ABOUT)
    if request != other:
        with pytest.raises(UnknownCommandError, match="answers a request for about"):
            jk_pb.decode(wire, other)
    # the ACK alone is an 8-byte frame from the slave
    ack = bytes.fromhex(vector["trailing_ack_hex"])
    assert jk_pb.frame_length(ack) == 8 and jk_pb.frame_address(ack) == address
    assert not jk_pb.is_request(ack) and jk_pb.decode(ack) == Reading()
    # the simulator's reply ends in the same ACK
    reply = jk_pb.encode_reply(request, jk_pb.decode(wire))
    assert reply is not None and reply[-9:-1] == ack


def test_jkpb_contract_and_address_zero() -> None:
    check_contract(jk_pb)
    assert jk_pb.PROTOCOL == "jk-pb" and jk_pb.DEFAULT_BAUD == 115200
    with pytest.raises(UsageError, match="bus master"):
        jk_pb.poll_requests(0)
    with pytest.raises(UsageError, match=r"1\.\.15"):
        jk_pb.poll_requests(16)
    assert jk_pb.crc16(b"\x01\x03\x12\x90\x00\x02") == 0x5EC1  # PROTOCOLS.md 3.1 example


def test_jkpb_alarm_bits() -> None:
    status = next(v for v in JKPB if v["id"] == "jkpb_rs485_status_0x55aa")
    payload = bytearray(_frame(status))
    # b4 cell OVP, b10 internal communication, b13 discharge OCP, b21 battery OT alarm
    payload[166:170] = ((1 << 4) | (1 << 10) | (1 << 13) | (1 << 21)).to_bytes(4, "little")
    payload[299] = sum(payload[:299]) & 0xFF
    r = jk_pb.decode(bytes(payload))
    assert r.protections == Protection.CELL_OVERVOLTAGE | Protection.DISCHARGE_OVERCURRENT
    assert r.alarms == Alarm.INTERNAL_COMMUNICATION | Alarm.HIGH_TEMPERATURE
    assert dict(r.extra)["alarms_active"] == (
        "cell_overvoltage,internal_communication,discharge_overcurrent,"
        "battery_over_temperature_alarm"
    )


def test_jkpb_about_reads_the_serial_and_no_pass_codes() -> None:
    about = jk_pb.decode(_frame(next(v for v in JKPB if v["id"] == "jkpb_rs485_about_0x55aa")))
    assert about.serial == "40119491480" and about.model == "JK_PB2A16S20P"
    assert "1234" not in repr(about.extra) and "136913" not in repr(about)


def test_jkpb_bad_frames_say_what_is_wrong() -> None:
    good = JKPB_FRAMES[0]
    bad = good[:-1] + bytes(((good[-1] + 1) & 0xFF,))
    with pytest.raises(ChecksumError, match="checksum 0x22 in frame, 0x21 computed"):
        jk_pb.decode(bad)
    with pytest.raises(FrameError, match="frame of 299 bytes, expected 300"):
        jk_pb.decode(good[:-1])
    req = jk_pb.encode_request(3, jk_pb.TRIGGER_STATUS)
    with pytest.raises(ChecksumError, match=r"CRC 0x92CF in frame, 0x91CF computed"):
        jk_pb.decode(req[:-1] + b"\x92")
    with pytest.raises(FrameError, match="function code 0x03"):
        jk_pb.frame_length(b"\x01\x03\x12\x90")
    with pytest.raises(FrameError, match="0x00 cannot start a frame"):
        jk_pb.frame_length(b"\x00\x03\x10")
    other_type = bytearray(good)
    other_type[4] = 9
    other_type[299] = sum(other_type[:299]) & 0xFF
    with pytest.raises(UnknownCommandError, match="frame type 0x09"):
        jk_pb.decode(bytes(other_type))


def test_jkpb_stream_of_a_polled_bus() -> None:
    """What a listener hears: request, 310-byte reply, request, ... split into frames."""
    stream = b""
    for v in WIRE:
        stream += bytes.fromhex(v["trigger_request_hex"]) + _wire(v)
    frames = []
    while stream:
        n = jk_pb.frame_length(stream)
        assert n is not None
        frames.append(stream[:n])
        stream = stream[n:]
    assert [len(f) for f in frames] == [11, 310] * len(WIRE)
    assert [jk_pb.is_request(f) for f in frames] == [True, False] * len(WIRE)
    assert {jk_pb.frame_address(f) for f in frames} == {3}


_PB_ALARMS = [Alarm.INTERNAL_COMMUNICATION, Alarm.HIGH_TEMPERATURE]


@st.composite
def jkpb_readings(draw: st.DrawFn) -> Reading:
    return Reading(
        cell_voltages_v=tuple(
            c / 1000 for c in draw(st.lists(st.integers(1000, 4500), min_size=1, max_size=32))
        ),
        temperatures_c=tuple(
            t / 10 for t in draw(st.lists(st.integers(-400, 1200), min_size=1, max_size=4))
        ),
        mosfet_temperature_c=draw(st.integers(-400, 1200)) / 10,
        pack_voltage_v=draw(st.integers(0, 100_000)) / 1000,
        current_a=draw(st.integers(-500_000, 500_000)) / 1000,
        soc_pct=float(draw(st.integers(0, 100))),
        soh_pct=float(draw(st.integers(0, 100))),
        remaining_ah=draw(st.integers(0, 1_000_000)) / 1000,
        full_charge_ah=draw(st.integers(0, 1_000_000)) / 1000,
        design_ah=draw(st.integers(0, 1_000_000)) / 1000,
        cycles=draw(st.integers(0, 100_000)),
        protections=Protection(
            sum(p.value for p in draw(st.sets(st.sampled_from([p for p in Protection if p.value]))))
        ),
        alarms=Alarm(sum(a.value for a in draw(st.sets(st.sampled_from(_PB_ALARMS))))),
        charge_enabled=draw(st.booleans()),
        discharge_enabled=draw(st.booleans()),
        model=draw(st.text(_printable, min_size=1, max_size=16)),
        firmware=draw(st.text(_printable, min_size=1, max_size=8)),
        serial=draw(st.text(_printable, min_size=1, max_size=11)),
    )


@settings(max_examples=150, deadline=None)
@given(jkpb_readings(), st.integers(1, 15))
def test_jkpb_round_trip(reading: Reading, address: int) -> None:
    back = Reading()
    for req in jk_pb.poll_requests(address):
        reply = jk_pb.encode_reply(req, reading)
        assert reply is not None and jk_pb.frame_length(reply) == len(reply) == jk_pb.WIRE_LEN
        assert jk_pb.frame_address(reply) == address
        back = merge_readings(back, jk_pb.decode(reply, req))
    for name in (
        "cell_voltages_v",
        "temperatures_c",
        "mosfet_temperature_c",
        "pack_voltage_v",
        "current_a",
        "soc_pct",
        "soh_pct",
        "remaining_ah",
        "full_charge_ah",
        "design_ah",
        "cycles",
        "protections",
        "alarms",
        "charge_enabled",
        "discharge_enabled",
        "model",
        "firmware",
        "serial",
    ):
        assert getattr(back, name) == getattr(reading, name), name
    assert dict(back.extra)["device_address"] == address
    assert dict(back.extra)["cell_count"] == len(reading.cell_voltages_v or ())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40), st.binary(max_size=320))
def test_jkpb_random_bytes_only_raise_frame_error(short: bytes, long: bytes) -> None:
    only_frame_errors(jk_pb, short)
    only_frame_errors(jk_pb, b"\x03\x10" + short)
    only_frame_errors(jk_pb, b"\x55\xaa\xeb\x90" + long)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([1, 2, 3, 7]), st.binary(min_size=294, max_size=294))
def test_jkpb_random_payload_behind_a_good_checksum(kind: int, body: bytes) -> None:
    payload = bytearray(b"\x55\xaa\xeb\x90" + bytes((kind, 0)) + body[:293] + b"\x00")
    payload[299] = sum(payload[:299]) & 0xFF
    only_frame_errors(jk_pb, bytes(payload))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(JKPB_FRAMES + [_wire(v) for v in WIRE]),
    st.lists(st.integers(0, 400), min_size=1, max_size=4),
    st.lists(st.integers(0, 255), min_size=1, max_size=4),
)
def test_jkpb_mutated_frames_only_raise_frame_error(
    frame: bytes, positions: list[int], values: list[int]
) -> None:
    only_frame_errors(jk_pb, mutate(frame, positions, values))


@pytest.mark.parametrize("frame", JKPB_FRAMES, ids=[v["id"] for v in JKPB])
def test_jkpb_truncations_raise_frame_error(frame: bytes) -> None:
    truncations_raise(jk_pb, frame)


@pytest.mark.parametrize("vector", WIRE, ids=[v["id"] for v in WIRE])
def test_jkpb_wire_truncations(vector: dict[str, Any]) -> None:
    wire = _wire(vector)
    for k in range(len(wire)):
        if k == jk_pb.PAYLOAD_LEN:
            continue  # the bare payload is itself a frame
        with pytest.raises(FrameError):
            jk_pb.decode(wire[:k])
    request = bytes.fromhex(vector["trigger_request_hex"])
    truncations_raise(jk_pb, request)
