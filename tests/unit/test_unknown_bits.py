"""A protection or warning bit a codec cannot name is surfaced, in every codec: the flag
Protection.UNKNOWN (or Alarm.UNKNOWN), the bit's number in `protections_active` /
`alarms_active`, and a `cutoff` alert that names the bit. Each frame here carries a bit the
codec's table reserves, as a newer firmware might set it."""

from __future__ import annotations

from typing import Any

from bankwatch.daemon.detectors import detect_cutoff
from bankwatch.drivers import daly, jbd, jk_b, jk_pb, modbus_rtu, seplos_v3
from bankwatch.drivers.model import Alarm, Protection, Reading
from bankwatch.drivers.pylontech_rs485 import EG4, PACE, PYLONTECH, SEPLOS_V2, build_frame
from bankwatch.drivers.registry import serial_codecs
from tests.unit.test_detectors import all_healthy, by_subject, healthy, topology

UNKNOWN_P = Reading(protections=Protection.UNKNOWN, alarms=Alarm.NONE, cell_voltages_v=(3.3,) * 4)


def _extra(r: Reading, key: str) -> Any:
    return dict(r.extra).get(key)


def test_jbd_reserved_protection_bit() -> None:
    request = jbd.encode_request(0x03)
    reply = jbd.encode_reply(request, UNKNOWN_P)
    assert reply is not None
    r = jbd.decode(reply, request)
    assert r.protections == Protection.UNKNOWN
    assert _extra(r, "protection_bits") == 1 << 13
    assert _extra(r, "protections_active") == "unknown_bit_13"


def test_jk_pb_undocumented_alarm_bit() -> None:
    request = jk_pb.encode_request(1, jk_pb.TRIGGER_STATUS)
    reply = jk_pb.encode_reply(request, UNKNOWN_P)
    assert reply is not None
    r = jk_pb.decode(reply, request)
    assert r.protections == Protection.UNKNOWN
    assert _extra(r, "alarm_bits") == 1 << 24
    assert "unknown_bit_24" in _extra(r, "alarms_active")


def test_jk_b_undocumented_warning_bit() -> None:
    request = jk_b.poll_requests(0)[0]
    reply = jk_b.encode_reply(request, Reading(alarms=Alarm.UNKNOWN, cell_voltages_v=(3.3,) * 4))
    assert reply is not None
    r = jk_b.decode(reply, request)
    assert r.alarms is not None and Alarm.UNKNOWN in r.alarms
    assert "unknown_bit_14" in _extra(r, "alarms_active")


def test_daly_undefined_failure_bit() -> None:
    request = daly.encode_request(1, 0x98)
    reply = daly.encode_reply(request, UNKNOWN_P)
    assert reply is not None
    r = daly.decode(reply, request)
    assert r.protections == Protection.UNKNOWN
    assert _extra(r, "faults") == "unknown_bit_28"  # byte 3, bit 4


def test_pylontech_family_status_bits() -> None:
    for variant, address, number in ((PYLONTECH, 2, 3), (SEPLOS_V2, 0, 3), (PACE, 1, 7)):
        request = variant.encode_request(0x44, address)
        reply = variant.encode_reply(request, UNKNOWN_P)
        assert reply is not None, variant
        r = variant.decode(reply, request)
        assert r.protections == Protection.UNKNOWN, variant
        assert _extra(r, "protections_active") == f"unknown_bit_{number}", variant


def test_eg4_event_words_are_unknown_warnings() -> None:
    request = EG4.encode_request(0x44, 1)
    reply = EG4.encode_reply(request, Reading(cell_voltages_v=(3.3,) * 4, temperatures_c=(25.0,)))
    assert reply is not None
    info = bytearray(bytes.fromhex(reply[13:-5].decode()))
    cells = info[2]
    temps = info[3 + cells]
    voltage_event = 3 + cells + 1 + temps + 3 + 1
    info[voltage_event] = 0x05
    frame = build_frame(EG4.ver, 1, EG4.cid1, 0x00, bytes(info))
    r = EG4.decode(frame, request)
    assert r.alarms is not None and Alarm.UNKNOWN in r.alarms
    assert _extra(r, "alarms_active") == "voltage_event_bit_0,voltage_event_bit_2"


def test_seplos_v3_reserved_event_bit_in_the_codec_and_the_shipped_map() -> None:
    request = seplos_v3.poll_requests(1)[2]  # PIC coils
    reply = seplos_v3.encode_reply(request, UNKNOWN_P)
    assert reply is not None
    r = seplos_v3.decode(reply, request)
    assert r.protections == Protection.UNKNOWN
    assert _extra(r, "protections_active") == "unknown_bit_23"  # TB04 bit 7, reserved
    # Current events 2 bit 1 (reserved), set by hand: the map names it by entry and bit.
    parsed = modbus_rtu.parse_reply(reply)
    assert isinstance(parsed, modbus_rtu.ReadReply)
    coils = bytearray(parsed.data)
    coils[9:15] = bytes(6)
    coils[9 + 4] = 0x02
    frame = modbus_rtu.encode_read_reply(1, 1, bytes(coils))
    assert seplos_v3.decode(frame, request).protections == Protection.UNKNOWN
    by_map = serial_codecs()["modbus-map:seplos-v3-pack"].decode(frame, request)
    assert by_map.protections == Protection.UNKNOWN
    assert _extra(by_map, "protections_active") == f"unknown_bit_{0x1268}.1"


def test_a_cutoff_names_the_bit() -> None:
    topo = topology(4, 2)
    readings = all_healthy(topo, 50.0)
    readings["A2"] = healthy(
        50.0,
        discharge_enabled=False,
        protections=Protection.UNKNOWN,
        extra=(("protections_active", "unknown_bit_13"),),
    )
    conds = by_subject(detect_cutoff(topo.fold(readings, 50.0), 50.0))
    c = conds["home/A/A2"]
    assert c.kind == "cutoff" and "unknown bit 13" in c.message
