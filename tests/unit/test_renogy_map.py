"""The shipped Renogy smart LFP register map against register dumps of a real battery, what it
asks for (never the registers the battery refuses), its bits, the simulator's side and
`bankwatch decode` by map name."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bankwatch.daemon.decode import decode_frames
from bankwatch.drivers import modbus_rtu
from bankwatch.drivers.errors import FrameError, UsageError
from bankwatch.drivers.modbus_map import RegisterMapCodec
from bankwatch.drivers.modbus_map_schema import resolve_map
from bankwatch.drivers.model import Alarm, Protection, Reading, flag_names, merge_readings
from bankwatch.drivers.registry import serial_codecs
from tests.helpers import load_vectors

VECTORS = load_vectors("extra/renogy_modbus")
CODEC = RegisterMapCodec(resolve_map("renogy-smart-lfp"))


def _extra(r: Reading, key: str) -> Any:
    return dict(r.extra).get(key)


CHECKS: dict[str, Any] = {
    "cells_V": lambda r: list(r.cell_voltages_v or ()),
    "temps_C": lambda r: list(r.temperatures_c or ()),
    "current_A": lambda r: r.current_a,
    "voltage_V": lambda r: r.pack_voltage_v,
    "remaining_Ah": lambda r: r.remaining_ah,
    "full_charge_Ah": lambda r: r.full_charge_ah,
    "cycles": lambda r: r.cycles,
    "charge_voltage_limit_V": lambda r: r.charge_voltage_limit_v,
    "discharge_voltage_limit_V": lambda r: r.discharge_voltage_limit_v,
    "charge_current_limit_A": lambda r: r.charge_current_limit_a,
    "discharge_current_limit_A": lambda r: r.discharge_current_limit_a,
    "bms_board_temperature_C": lambda r: _extra(r, "bms_board_temperature_c"),
    "charge_fet": lambda r: r.charge_enabled,
    "discharge_fet": lambda r: r.discharge_enabled,
    "using_battery_power": lambda r: _extra(r, "using_battery_power"),
    "protections": lambda r: flag_names(r.protections),
    "alarms": lambda r: flag_names(r.alarms),
    "full_charge_request": lambda r: _extra(r, "full_charge_request"),
    "serial": lambda r: r.serial,
    "model": lambda r: r.model,
    "firmware": lambda r: r.firmware,
    "manufacturer": lambda r: r.manufacturer,
}


@pytest.mark.parametrize("vector", VECTORS, ids=[v["id"] for v in VECTORS])
def test_dumped_registers_decode_to_what_the_dump_shows(vector: dict[str, Any]) -> None:
    request = bytes.fromhex(vector["request_hex"])
    if vector["source"].startswith("github.com/Grmume"):
        assert request in CODEC.poll_requests(247), "the map asks exactly this"
    # aiobmsble's reads differ from the map's: decoded through their own request, as when
    # bankwatch listens to another master.
    r = CODEC.decode(bytes.fromhex(vector["frame_hex"]), request)
    for key, want in vector["expect"].items():
        got = CHECKS[key](r)
        if isinstance(want, float):
            assert got == pytest.approx(want, abs=1e-9), key
        else:
            assert got == want, key


def test_reads_skip_the_registers_the_battery_refuses() -> None:
    """The battery answers 5000-5033 and 5035-5052 and 5100-5141, nothing between (a read
    that touches 5034 or 5053-5099 gets no answer)."""
    answered = [*range(5000, 5034), *range(5035, 5053), *range(5100, 5142)]
    requests = CODEC.poll_requests(48)
    assert len(requests) == 5
    for raw in requests:
        req = modbus_rtu.parse_request(raw)
        assert isinstance(req, modbus_rtu.ReadRequest) and req.function == 3 and req.slave == 48
        assert set(range(req.address, req.address + req.count)) <= set(answered)
    assert CODEC.DEFAULT_BAUD == 9600 and 247 in CODEC.SCAN_ADDRESSES


def test_status_bits_become_protections_alarms_and_switches() -> None:
    charging = next(v for v in VECTORS if v["id"] == "renogy_charging_5106")
    request = bytes.fromhex(charging["request_hex"])
    regs = list(modbus_rtu.parse_reply(bytes.fromhex(charging["frame_hex"])).data)  # type: ignore[union-attr]
    words = [int.from_bytes(bytes(regs[i : i + 2]), "big") for i in range(0, len(regs), 2)]
    # status 1: cell UV (b7), discharge OC level 2 (b5), charge FET on (b1), discharge FET off
    words[0] = 0x0080 | 0x0020 | 0x0002
    # status 2: module low voltage warning (b2), discharge low temperature (b6), heater (b13)
    words[1] = 0x0004 | 0x0040 | 0x2000
    frame = modbus_rtu.encode_read_reply(247, 3, words)
    r = CODEC.decode(frame, request)
    assert r.protections == Protection.CELL_UNDERVOLTAGE | Protection.DISCHARGE_OVERCURRENT
    assert r.alarms == Alarm.CELL_LOW_VOLTAGE | Alarm.LOW_TEMPERATURE
    assert r.charge_enabled is True and r.discharge_enabled is False
    assert _extra(r, "heater_on") is True


def test_the_simulator_side_answers_what_the_map_decodes() -> None:
    truth = Reading(
        pack_voltage_v=13.3,
        current_a=-21.37,
        remaining_ah=61.234,
        full_charge_ah=100.0,
        cycles=42,
        cell_voltages_v=(3.3, 3.4, 3.3, 3.3),
        temperatures_c=(21.5, 0.0, -3.5),
        charge_voltage_limit_v=14.4,
        discharge_voltage_limit_v=10.0,
        charge_current_limit_a=50.0,
        discharge_current_limit_a=100.0,
        charge_enabled=True,
        discharge_enabled=False,
        protections=Protection.CELL_UNDERVOLTAGE,
        model="RBT100LFP12S",
        serial="SIM0001",
        firmware="0119",
        manufacturer="RENOGY",
    )
    got = Reading()
    for request in CODEC.poll_requests(48):
        reply = CODEC.encode_reply(request, truth)
        assert reply is not None
        got = merge_readings(got, CODEC.decode(reply, request))
    for name in (
        "pack_voltage_v",
        "current_a",
        "remaining_ah",
        "full_charge_ah",
        "cycles",
        "cell_voltages_v",
        "temperatures_c",
        "charge_voltage_limit_v",
        "discharge_voltage_limit_v",
        "charge_current_limit_a",
        "discharge_current_limit_a",
        "charge_enabled",
        "discharge_enabled",
        "protections",
        "model",
        "serial",
        "firmware",
        "manufacturer",
    ):
        assert getattr(got, name) == getattr(truth, name), name


def test_only_the_sensors_the_battery_counts_are_read() -> None:
    """Register 5017 says how many temperature slots are real: a battery with two sensors
    reports two, not two more at 0 °C that would drag the minimum down."""
    v = next(v for v in VECTORS if v["id"] == "aiobmsble_5000")
    r = CODEC.decode(bytes.fromhex(v["frame_hex"]), bytes.fromhex(v["request_hex"]))
    assert r.temperatures_c == (17.0, 17.0) and r.cell_voltages_v == (3.5, 3.3, 3.3, 3.3)


def test_decode_knows_the_map_by_name() -> None:
    frames = [
        x
        for v in VECTORS
        if v["id"].startswith("renogy_charging")
        for x in (v["request_hex"], v["frame_hex"])
    ]
    out = decode_frames("modbus-map:renogy-smart-lfp", frames)
    assert out["pack_voltage_v"] == 13.6 and out["current_a"] == 14.82
    assert out["cell_voltages_v"] == [3.4, 3.4, 3.4, 3.3]
    assert out["model"] == "RBT100LFP12SH-G1" and out["manufacturer"] == "RENOGY"
    assert "modbus-map:renogy-smart-lfp" in serial_codecs()
    with pytest.raises(UsageError, match=r"name a shipped register map.*renogy-smart-lfp"):
        decode_frames("modbus-map", frames)


FRAMES = [(bytes.fromhex(v["request_hex"]), bytes.fromhex(v["frame_hex"])) for v in VECTORS]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.sampled_from([None, *CODEC.poll_requests(247)]))
def test_random_frames_only_raise_frame_errors(data: bytes, request: bytes | None) -> None:
    with contextlib.suppress(FrameError):
        CODEC.decode(data, request)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FRAMES), st.integers(0, 200), st.integers(0, 255), st.booleans())
def test_mutated_and_truncated_dumps_only_raise_frame_errors(
    pair: tuple[bytes, bytes], pos: int, value: int, truncate: bool
) -> None:
    request, reply = pair
    frame = bytearray(reply)
    if truncate:
        frame = frame[: pos % len(frame)]
    else:
        frame[pos % len(frame)] = value
    with contextlib.suppress(FrameError):
        CODEC.decode(bytes(frame), request)


def test_length_from_belongs_to_a_list() -> None:
    from bankwatch.drivers.errors import ConfigError
    from bankwatch.drivers.modbus_map_schema import parse_map

    bad = {"entries": [{"address": 1, "length_from": 0, "field": "pack_voltage_v"}]}
    with pytest.raises(ConfigError, match="length_from belongs to a list of registers"):
        parse_map(bad, "bad-map")
