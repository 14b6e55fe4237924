"""JK-PB "inverter BMS" (JK-PB2A16S15P/20P, firmware 15 and later) over RS485: the 0x55AA
frames of its bus-master protocol (protocol name `jk-pb`).

Sources: mr-manuel/venus-os_dbus-serialbattery `bms-docs/JKBMS-PB.md` and its captures, the JK
"BMS RS485 Modbus V1.1" register map (for what each offset means), syssi/esphome-jk-bms for the
same byte map over BLE; written up in shared/vectors/PROTOCOLS.md sections 3.1-3.2 (vectors:
tests/vectors/jk.json). 115200 8N1. The BMS's plain Modbus FC03 register map is served by the
`modbus-map` protocol, not here.

**Request**: a Modbus RTU FC 0x10 write of one register, value 0, to the slave at the pack's DIP
address: 0x1620 asks for the status frame, 0x161E for the settings, 0x161C for the "about"
(model, versions, serial)::

    ADR 10 16 20 00 01 02 00 00 CRC16(LE)

**Reply**: a 300-byte frame ``55 AA EB 90 | type | 00 | fields (LE) ... | sum`` (type 1
settings, 2 status, 3 about; byte 299 = low byte of the sum of bytes 0..298; the payload has
no address), then ``00``, the standard 8-byte FC 0x10 acknowledgement (which does carry the
slave address), and ``00``: 310 bytes on the wire. `frame_length` reports those 310 bytes as
one frame, so one request has one reply and the reply is attributed by the ACK's address;
it waits for the trailer once the 300 bytes are in, and reports 300 if the byte after them is
not the trailer's 00. `decode` takes the 310-byte wire form or the bare 300-byte payload
(what BLE captures and the vectors hold). A bare FC 0x10 ACK (8 bytes) decodes to an empty
Reading. Field offsets are the official register byte offsets + 6.

**Addressing.** The slave address is the pack's DIP switch, 1..15. **Address 0 makes a pack the
bus master**: it then polls packs 1..15 itself and the bus is its, so a polling host must never
share a bus with a DIP-0 pack and must not use address 0 (`poll_requests(0)` refuses); on such
a bus, listen: the master's requests and the slaves' replies are exactly these frames.

Alarm bits (official 0x12A0) map onto the shared flags: protections (OVP, UVP, OCP, SCP, OTP, UTP)
to Protection, the battery over-temperature warning and internal communication errors to Alarm,
MOSFET, sensor and wiring faults to SYSTEM_ERROR; the raw word stays in `extra["alarm_bits"]`.
The about frame's pass codes are never copied into a reading. Note on the vectors: `jk.json`
calls the text at about-offset 46 "serial"; JK's BLE device-info layout (the same bytes) names
it the user-settable device name and puts the factory serial number at offset 86, so this
codec gives `serial` from 86 and `extra["device_name"]` from 46.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from bankwatch.drivers import modbus_rtu
from bankwatch.drivers.bits import Bit, BitTable
from bankwatch.drivers.errors import (
    ChecksumError,
    FrameLengthError,
    MalformedFrameError,
    UnknownCommandError,
    UsageError,
)
from bankwatch.drivers.modbus_rtu import crc16
from bankwatch.drivers.model import Alarm, Protection, Reading, merge_readings
from bankwatch.drivers.uart_common import ascii_field, clamp

__all__ = [
    "DEFAULT_BAUD",
    "GAP_S",
    "PAYLOAD_LEN",
    "PROTOCOL",
    "REPLY_TIMEOUT_S",
    "TRIGGER_ABOUT",
    "TRIGGER_SETTINGS",
    "TRIGGER_STATUS",
    "WIRE_LEN",
    "crc16",
    "decode",
    "encode_reply",
    "encode_request",
    "frame_address",
    "frame_length",
    "is_request",
    "merge_parts",
    "poll_requests",
]

PROTOCOL = "jk-pb"
DEFAULT_BAUD = 115200
GAP_S = 0.05
REPLY_TIMEOUT_S = 0.5

PAYLOAD_LEN = 300
WIRE_LEN = 310  # payload + 00 + 8-byte FC10 ACK + 00
_MAGIC = b"\x55\xaa\xeb\x90"
_FC_WRITE_MULTIPLE = 0x10
_ACK_LEN = 8

TRIGGER_STATUS = 0x1620
TRIGGER_SETTINGS = 0x161E
TRIGGER_ABOUT = 0x161C
_TYPE_SETTINGS, _TYPE_STATUS, _TYPE_ABOUT = 1, 2, 3
_TYPE_OF_TRIGGER = {
    TRIGGER_SETTINGS: _TYPE_SETTINGS,
    TRIGGER_STATUS: _TYPE_STATUS,
    TRIGGER_ABOUT: _TYPE_ABOUT,
}
_TYPE_NAMES = {_TYPE_SETTINGS: "settings", _TYPE_STATUS: "status", _TYPE_ABOUT: "about"}
_MAX_CELLS = 32
_MAX_ADDRESS = 15


def encode_request(address: int, trigger: int) -> bytes:
    """The FC 0x10 write of 0 to `trigger` (0x1620, 0x161E, 0x161C) at slave `address`."""
    if not 1 <= address <= _MAX_ADDRESS:
        raise UsageError(
            f"jk-pb address {address}: give the pack's DIP address 1..15; address 0 makes a "
            "pack the bus master, and a host must not poll a bus that has one (listen instead)"
        )
    return modbus_rtu.encode_write_multiple_request(address, trigger, [0])


def poll_requests(address: int) -> list[bytes]:
    """Status, then about (model, firmware, serial), then settings (cell count, capacity)."""
    return [encode_request(address, t) for t in (TRIGGER_STATUS, TRIGGER_ABOUT, TRIGGER_SETTINGS)]


def _ack(address: int, trigger: int) -> bytes:
    return modbus_rtu.encode_write_multiple_reply(address, trigger, 1)


# ---- framing -------------------------------------------------------------------------------


def _crc_ok(frame: bytes) -> bool:
    return crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little")


def _valid_ack(chunk: bytes) -> bool:
    return len(chunk) == _ACK_LEN and chunk[1] == _FC_WRITE_MULTIPLE and _crc_ok(chunk)


def _modbus_length(buf: bytes) -> int | None:
    if buf[0] == 0:
        raise MalformedFrameError("jk-pb: byte 0x00 cannot start a frame (padding between frames)")
    if len(buf) < 2:
        return None
    if buf[1] != _FC_WRITE_MULTIPLE:
        raise MalformedFrameError(
            f"jk-pb: function code 0x{buf[1]:02X}, only 0x10 frames (and 55 AA replies) are used"
        )
    if len(buf) < 7:
        return None
    if _valid_ack(buf[:_ACK_LEN]):
        return _ACK_LEN
    count = int.from_bytes(buf[4:6], "big")
    if buf[6] == 2 * count:
        total = 9 + buf[6]
        if len(buf) < total:
            return None
        _check_crc(buf[:total])
        return total
    if len(buf) < _ACK_LEN:
        return None
    _check_crc(buf[:_ACK_LEN])  # not a request; as an ACK its CRC is wrong: say so
    return _ACK_LEN


def frame_length(buf: bytes) -> int | None:
    """310 for a 0x55AA reply with its trailer (300 if no trailer follows), 11 for a trigger
    request, 8 for a bare ACK; None while more bytes are needed."""
    if not buf:
        return None
    if buf[0] != _MAGIC[0]:
        return _modbus_length(buf)
    head = buf[: len(_MAGIC)]
    if head != _MAGIC[: len(head)]:
        raise MalformedFrameError(f"jk-pb: frame starts {head.hex(' ')}, expected 55 aa eb 90")
    if len(buf) <= PAYLOAD_LEN:
        return None
    if buf[PAYLOAD_LEN] != 0:
        return PAYLOAD_LEN
    if len(buf) < WIRE_LEN:
        return None
    ack = buf[PAYLOAD_LEN + 1 : WIRE_LEN - 1]
    if _valid_ack(ack) and buf[WIRE_LEN - 1] == 0:
        return WIRE_LEN
    if ack[1] == _FC_WRITE_MULTIPLE and buf[WIRE_LEN - 1] == 0:
        # Framed as the acknowledgement and in its place, but its CRC is wrong: a corrupt
        # acknowledgement, not a 300-byte frame followed by something else.
        _check_crc(ack)
    return PAYLOAD_LEN


def _check_crc(frame: bytes) -> None:
    got = int.from_bytes(frame[-2:], "little")
    want = crc16(frame[:-2])
    if got != want:
        raise ChecksumError(f"jk-pb: CRC 0x{got:04X} in frame, 0x{want:04X} computed")


def is_request(frame: bytes) -> bool:
    """The FC 0x10 trigger writes (longer than the 8-byte ACK) are requests."""
    return len(frame) > _ACK_LEN and frame[0] != _MAGIC[0] and frame[1] == _FC_WRITE_MULTIPLE


def frame_address(frame: bytes) -> int | None:
    """The slave a trigger goes to or an ACK (alone or in a 310-byte reply) comes from; None
    for a bare 300-byte payload, which carries no address."""
    if len(frame) < 2:
        return None
    if frame[0] == _MAGIC[0]:
        return frame[PAYLOAD_LEN + 1] if len(frame) == WIRE_LEN else None
    return frame[0]


# ---- decoding ------------------------------------------------------------------------------


def _u8(d: bytes, o: int) -> int:
    return d[o]


def _u16(d: bytes, o: int) -> int:
    return int(struct.unpack_from("<H", d, o)[0])


def _s16(d: bytes, o: int) -> int:
    return int(struct.unpack_from("<h", d, o)[0])


def _u32(d: bytes, o: int) -> int:
    return int(struct.unpack_from("<I", d, o)[0])


def _s32(d: bytes, o: int) -> int:
    return int(struct.unpack_from("<i", d, o)[0])


# Status: official alarm bit -> (name, protection, alarm).
_ALARM_BITS = BitTable(
    Bit(bit, name, p, a)
    for bit, name, p, a in (
        (0, "balance_wire_resistance", Protection.SYSTEM_ERROR, None),
        (1, "mosfet_over_temperature", Protection.OVER_TEMPERATURE, None),
        (2, "cell_count_mismatch", Protection.SYSTEM_ERROR, None),
        (3, "current_sensor_error", Protection.SYSTEM_ERROR, None),
        (4, "cell_overvoltage", Protection.CELL_OVERVOLTAGE, None),
        (5, "pack_overvoltage", Protection.CELL_OVERVOLTAGE, None),
        (6, "charge_overcurrent", Protection.CHARGE_OVERCURRENT, None),
        (7, "charge_short_circuit", Protection.SHORT_CIRCUIT, None),
        (8, "charge_over_temperature", Protection.OVER_TEMPERATURE, None),
        (9, "charge_under_temperature", Protection.UNDER_TEMPERATURE, None),
        (10, "internal_communication", None, Alarm.INTERNAL_COMMUNICATION),
        (11, "cell_undervoltage", Protection.CELL_UNDERVOLTAGE, None),
        (12, "pack_undervoltage", Protection.CELL_UNDERVOLTAGE, None),
        (13, "discharge_overcurrent", Protection.DISCHARGE_OVERCURRENT, None),
        (14, "discharge_short_circuit", Protection.SHORT_CIRCUIT, None),
        (15, "discharge_over_temperature", Protection.OVER_TEMPERATURE, None),
        (16, "charge_mosfet_fault", Protection.SYSTEM_ERROR, None),
        (17, "discharge_mosfet_fault", Protection.SYSTEM_ERROR, None),
        (18, "gps_disconnected", None, None),
        (19, "change_password", None, None),
        (20, "discharge_on_failed", Protection.SYSTEM_ERROR, None),
        (21, "battery_over_temperature_alarm", None, Alarm.HIGH_TEMPERATURE),
        (22, "temperature_sensor_anomaly", Protection.SYSTEM_ERROR, None),
        (23, "plc_module_anomaly", Protection.SYSTEM_ERROR, None),
    )
).with_unknown((range(32), Protection.UNKNOWN))
# Status temperatures: (presence bit in byte 214, payload offset). T3/T4 sit at 256/258 on
# every captured unit. Offset 254 (the official +6 rule's T3) is a second MOSFET sensor: equal
# to the first on some units, 7.6 K apart on firmware 15.38 (aiobmsble's capture), which
# aiobmsble reports as a MOSFET too; it is not a cell sensor.
_TEMPS = ((1, 162), (2, 164), (3, 256), (4, 258))
_MOS_PRESENT = 0x01
_MOS2 = 254
# Firmware before 14 has two battery sensors, yet sets every presence bit and sends 0 for T3
# and T4 (aiobmsble's 11.48 capture); 14.20 is the oldest with four real ones (syssi's).
_FOUR_SENSORS_SINCE = 14
# Sensors at exactly 0.0 °C are taken for absent when the real ones read at least this far
# from 0 °C (no pack is that uneven); nearer 0 °C they may be real.
_PHANTOM_MARGIN_C = 3.0
# Status fields beyond the official table (payload offsets, syssi's JK02_32S map; the charge
# stage checked against aiobmsble's asserted FLOAT and BULK).
_HEATING_CURRENT = 236
_CHARGER_PLUGGED = 245
_BATTERY_TYPE = 275
_STAGE_TIME = 278
_STAGE = 280
_CHARGE_STAGES = {0: "bulk", 1: "absorption", 2: "float"}
_BATTERY_TYPES = {0: "lfp", 1: "li-ion", 2: "lto"}


def _status_temps(d: bytes) -> tuple[float, ...]:
    sensors = d[214]
    present = [o for bit, o in _TEMPS if sensors >> bit & 1] if sensors else [162, 164]
    temps = [_s16(d, o) / 10 for o in present]
    # T3 and T4 both at exactly 0.0 °C: real only on a day near freezing, not beside warm T1/T2.
    phantom = (
        present == [o for _, o in _TEMPS]
        and _u16(d, 256) == _u16(d, 258) == 0
        and min(abs(temps[0]), abs(temps[1])) >= _PHANTOM_MARGIN_C
    )
    if phantom:
        temps = temps[:2]
    return tuple(temps)


def _firmware_major(firmware: str | None) -> int | None:
    head = (firmware or "").split(".", 1)[0].strip().lstrip("Vv")
    return int(head) if head.isdigit() else None


def merge_parts(parts: Sequence[Reading]) -> Reading:
    """One poll's frames as one Reading. The about frame's firmware decides how many battery
    sensors the status frame really has (see _FOUR_SENSORS_SINCE)."""
    out = Reading()
    for part in parts:
        out = merge_readings(out, part)
    major = _firmware_major(out.firmware)
    if major is not None and major < _FOUR_SENSORS_SINCE and out.temperatures_c:
        out = replace(out, temperatures_c=out.temperatures_c[:2])
    return out


def _decode_status(d: bytes) -> Reading:
    mask = _u32(d, 70)
    cells = tuple(_u16(d, 6 + 2 * n) / 1000 for n in range(_MAX_CELLS) if mask >> n & 1)
    raw_alarms = _u32(d, 166)
    found = _ALARM_BITS.decode(raw_alarms)
    protections, alarms, names = found.protections, found.alarms, found.names
    return Reading(
        cell_voltages_v=cells or None,
        mosfet_temperature_c=_s16(d, 144) / 10,
        pack_voltage_v=_u32(d, 150) / 1000,
        current_a=_s32(d, 158) / 1000,
        temperatures_c=_status_temps(d),
        protections=protections,
        alarms=alarms,
        soc_pct=float(d[173]),
        remaining_ah=_s32(d, 174) / 1000,
        full_charge_ah=_u32(d, 178) / 1000,
        cycles=_u32(d, 182),
        soh_pct=float(d[190]),
        charge_enabled=bool(d[198]),
        discharge_enabled=bool(d[199]),
        cell_voltage_max_id=str(d[78] + 1),
        cell_voltage_min_id=str(d[79] + 1),
        extra=(
            ("cell_voltage_average_v", _u16(d, 74) / 1000),
            ("cell_voltage_delta_v", _u16(d, 76) / 1000),
            ("bms_power_w", _u32(d, 154) / 1000),
            ("alarm_bits", raw_alarms),
            ("alarms_active", ",".join(names)),
            ("balance_current_a", _s16(d, 170) / 1000),
            ("balance_state", d[172]),
            ("cycle_capacity_ah", _u32(d, 186) / 1000),
            ("runtime_s", _u32(d, 194)),
            ("heater_on", bool(d[215])),
            ("mosfet_2_temperature_c", _s16(d, _MOS2) / 10),
            ("heating_current_a", _s16(d, _HEATING_CURRENT) / 1000),
            ("charger_present", bool(d[_CHARGER_PLUGGED])),
            ("battery_type", _BATTERY_TYPES.get(d[_BATTERY_TYPE], f"code {d[_BATTERY_TYPE]}")),
            ("charge_stage", _CHARGE_STAGES.get(d[_STAGE], f"code {d[_STAGE]}")),
            ("charge_stage_elapsed_s", _u16(d, _STAGE_TIME)),
        ),
    )


@dataclass(frozen=True, slots=True)
class _Setting:
    offset: int  # official byte offset (payload offset - 6)
    key: str
    scale: float = 1.0
    signed: bool = False


_SETTINGS: tuple[_Setting, ...] = (
    _Setting(0x00, "cell_smart_sleep_v", 0.001),
    _Setting(0x04, "cell_uvp_v", 0.001),
    _Setting(0x08, "cell_uvp_recovery_v", 0.001),
    _Setting(0x0C, "cell_ovp_v", 0.001),
    _Setting(0x10, "cell_ovp_recovery_v", 0.001),
    _Setting(0x14, "balance_trigger_v", 0.001),
    _Setting(0x18, "cell_soc100_v", 0.001),
    _Setting(0x1C, "cell_soc0_v", 0.001),
    _Setting(0x20, "cell_charge_v", 0.001),
    _Setting(0x24, "cell_float_v", 0.001),
    _Setting(0x28, "cell_power_off_v", 0.001),
    _Setting(0x2C, "charge_ocp_a", 0.001),
    _Setting(0x30, "charge_ocp_delay_s"),
    _Setting(0x34, "charge_ocp_recovery_s"),
    _Setting(0x38, "discharge_ocp_a", 0.001),
    _Setting(0x3C, "discharge_ocp_delay_s"),
    _Setting(0x40, "discharge_ocp_recovery_s"),
    _Setting(0x44, "scp_recovery_s"),
    _Setting(0x48, "balance_current_max_a", 0.001),
    _Setting(0x4C, "charge_otp_c", 0.1, True),
    _Setting(0x50, "charge_otp_recovery_c", 0.1, True),
    _Setting(0x54, "discharge_otp_c", 0.1, True),
    _Setting(0x58, "discharge_otp_recovery_c", 0.1, True),
    _Setting(0x5C, "charge_utp_c", 0.1, True),
    _Setting(0x60, "charge_utp_recovery_c", 0.1, True),
    _Setting(0x64, "mosfet_otp_c", 0.1, True),
    _Setting(0x68, "mosfet_otp_recovery_c", 0.1, True),
    _Setting(0x6C, "cell_count"),
    _Setting(0x70, "charge_switch"),
    _Setting(0x74, "discharge_switch"),
    _Setting(0x78, "balance_switch"),
    _Setting(0x7C, "design_capacity_mah"),
    _Setting(0x80, "scp_delay_us"),
    _Setting(0x84, "balance_start_v", 0.001),
    _Setting(0x108, "device_address"),
)


def _setting_raw(d: bytes, s: _Setting) -> int:
    return _s32(d, 6 + s.offset) if s.signed else _u32(d, 6 + s.offset)


def _decode_settings(d: bytes) -> Reading:
    extra: list[tuple[str, float | int | str | bool]] = []
    design = None
    for s in _SETTINGS:
        raw = _setting_raw(d, s)
        if s.key == "design_capacity_mah":
            design = raw / 1000
            continue
        extra.append((s.key, round(raw * s.scale, 6) if s.scale != 1.0 else raw))
    return Reading(design_ah=design, extra=tuple(extra))


def _decode_about(d: bytes) -> Reading:
    return Reading(
        model=ascii_field(d[6:22]) or None,
        firmware=ascii_field(d[30:38]) or None,
        serial=ascii_field(d[86:97]) or None,
        extra=(
            ("hardware_version", ascii_field(d[22:30])),
            ("runtime_s", _u32(d, 38)),
            ("power_on_count", _u32(d, 42)),
            ("device_name", ascii_field(d[46:62])),
            ("manufacturing_date", ascii_field(d[78:86])),
        ),
    )


_DECODERS: dict[int, Callable[[bytes], Reading]] = {
    _TYPE_SETTINGS: _decode_settings,
    _TYPE_STATUS: _decode_status,
    _TYPE_ABOUT: _decode_about,
}


def _check_payload(frame: bytes) -> bytes:
    if len(frame) not in (PAYLOAD_LEN, WIRE_LEN):
        raise FrameLengthError(
            f"jk-pb: 0x55AA frame of {len(frame)} bytes, expected {PAYLOAD_LEN} "
            f"(or {WIRE_LEN} with the ACK)"
        )
    if frame[:4] != _MAGIC:
        raise MalformedFrameError(f"jk-pb: frame starts {frame[:4].hex(' ')}, expected 55 aa eb 90")
    payload = frame[:PAYLOAD_LEN]
    want = sum(payload[:-1]) & 0xFF
    if payload[-1] != want:
        raise ChecksumError(f"jk-pb: checksum 0x{payload[-1]:02X} in frame, 0x{want:02X} computed")
    if len(frame) == WIRE_LEN:
        if frame[PAYLOAD_LEN] != 0 or frame[-1] != 0:
            raise MalformedFrameError("jk-pb: the ACK after the 0x55AA frame is not framed by 00")
        ack = frame[PAYLOAD_LEN + 1 : -1]
        if ack[1] != _FC_WRITE_MULTIPLE:
            raise MalformedFrameError(
                f"jk-pb: function code 0x{ack[1]:02X} in the ACK, expected 0x10"
            )
        _check_crc(ack)
    return payload


def decode(frame: bytes, request: bytes | None = None) -> Reading:
    """A 0x55AA reply (300 or 310 bytes) to a partial Reading; trigger requests and bare ACKs
    decode to an empty one. With `request`, a reply of another type than it asked for is an
    error. Raises ChecksumError, FrameLengthError, MalformedFrameError, UnknownCommandError."""
    frame = bytes(frame)
    if len(frame) < 2:
        raise FrameLengthError(f"jk-pb: frame of {len(frame)} bytes")
    if frame[0] != _MAGIC[0]:
        n = _modbus_length(frame)
        if n is None:
            raise FrameLengthError(f"jk-pb: Modbus frame of {len(frame)} bytes is incomplete")
        if n != len(frame):
            raise FrameLengthError(
                f"jk-pb: Modbus frame of {len(frame)} bytes, its header says {n}"
            )
        return Reading()
    payload = _check_payload(frame)
    kind = payload[4]
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise UnknownCommandError(f"jk-pb: frame type 0x{kind:02X} is not decoded")
    if request is not None and len(request) >= 4:
        asked = _TYPE_OF_TRIGGER.get(int.from_bytes(request[2:4], "big"))
        if asked is not None and asked != kind:
            raise UnknownCommandError(
                f"jk-pb: a {_TYPE_NAMES[kind]} frame answers a request for {_TYPE_NAMES[asked]}"
            )
    return decoder(payload)


# ---- encoding (the simulator's side) -------------------------------------------------------


def _payload(kind: int, fill: Callable[[bytearray], None]) -> bytes:
    out = bytearray(PAYLOAD_LEN)
    out[:4] = _MAGIC
    out[4] = kind
    fill(out)
    out[-1] = sum(out[:-1]) & 0xFF
    return bytes(out)


def _status(r: Reading) -> Callable[[bytearray], None]:
    def fill(out: bytearray) -> None:
        cells = (r.cell_voltages_v or ())[:_MAX_CELLS]
        for n, volts in enumerate(cells):
            struct.pack_into("<H", out, 6 + 2 * n, clamp(volts * 1000, 0, 0xFFFF))
        struct.pack_into("<I", out, 70, (1 << len(cells)) - 1)
        if cells:
            hi = max(range(len(cells)), key=lambda i: cells[i])
            lo = min(range(len(cells)), key=lambda i: cells[i])
            avg = sum(cells) / len(cells)
            struct.pack_into(
                "<HHBB", out, 74, clamp(avg * 1000, 0, 0xFFFF),
                clamp((cells[hi] - cells[lo]) * 1000, 0, 0xFFFF), hi, lo,
            )  # fmt: skip
        mos = clamp((r.mosfet_temperature_c or 0.0) * 10, -0x8000, 0x7FFF)
        struct.pack_into("<h", out, 144, mos)
        extra = dict(r.extra)
        mos2 = _number(extra.get("mosfet_2_temperature_c"))
        mos2_raw = mos if mos2 is None else clamp(mos2 * 10, -0x8000, 0x7FFF)
        struct.pack_into("<h", out, _MOS2, mos2_raw)
        volts = r.pack_voltage_v or 0.0
        current = r.current_a or 0.0
        struct.pack_into("<I", out, 150, clamp(volts * 1000, 0, 0xFFFFFFFF))
        struct.pack_into("<I", out, 154, clamp(abs(volts * current) * 1000, 0, 0xFFFFFFFF))
        struct.pack_into("<i", out, 158, clamp(current * 1000, -(2**31), 2**31 - 1))
        temps = (r.temperatures_c or ())[: len(_TEMPS)]
        sensors = _MOS_PRESENT
        for (bit, offset), temp in zip(_TEMPS, temps, strict=False):
            struct.pack_into("<h", out, offset, clamp(temp * 10, -0x8000, 0x7FFF))
            sensors |= 1 << bit
        out[214] = sensors
        struct.pack_into("<I", out, 166, _ALARM_BITS.encode(r.protections, r.alarms))
        out[173] = clamp(r.soc_pct or 0.0, 0, 100)
        struct.pack_into("<i", out, 174, clamp((r.remaining_ah or 0.0) * 1000, 0, 2**31 - 1))
        struct.pack_into("<I", out, 178, clamp((r.full_charge_ah or 0.0) * 1000, 0, 2**32 - 1))
        struct.pack_into("<I", out, 182, clamp(r.cycles or 0, 0, 2**32 - 1))
        out[190] = clamp(r.soh_pct if r.soh_pct is not None else 100, 0, 100)
        out[198] = r.charge_enabled is not False
        out[199] = r.discharge_enabled is not False
        out[215] = extra.get("heater_on") is True
        heat_a = _number(extra.get("heating_current_a"))
        if heat_a is not None:
            struct.pack_into("<h", out, _HEATING_CURRENT, clamp(heat_a * 1000, -0x8000, 0x7FFF))
        out[_CHARGER_PLUGGED] = extra.get("charger_present") is True
        out[_BATTERY_TYPE] = _code_of(_BATTERY_TYPES, extra.get("battery_type"))
        out[_STAGE] = _code_of(_CHARGE_STAGES, extra.get("charge_stage"))
        elapsed = _number(extra.get("charge_stage_elapsed_s"))
        if elapsed is not None:
            struct.pack_into("<H", out, _STAGE_TIME, clamp(elapsed, 0, 0xFFFF))

    return fill


def _number(value: object) -> float | None:
    """An extra's number (a bool is not one)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _code_of(table: dict[int, str], name: object) -> int:
    return next((code for code, text in table.items() if text == name), 0)


# What the captured JK-PB2A16S20P is set to, for settings a Reading does not carry.
_SETTING_DEFAULTS: dict[str, int] = {
    "cell_smart_sleep_v": 3500, "cell_uvp_v": 2700, "cell_uvp_recovery_v": 2901,
    "cell_ovp_v": 3650, "cell_ovp_recovery_v": 3444, "balance_trigger_v": 5,
    "cell_soc100_v": 3445, "cell_soc0_v": 2900, "cell_charge_v": 3450, "cell_float_v": 3350,
    "cell_power_off_v": 2500, "charge_ocp_a": 60000, "charge_ocp_delay_s": 3,
    "charge_ocp_recovery_s": 60, "discharge_ocp_a": 100000, "discharge_ocp_delay_s": 300,
    "discharge_ocp_recovery_s": 60, "scp_recovery_s": 5, "balance_current_max_a": 2000,
    "charge_otp_c": 350, "charge_otp_recovery_c": 320, "discharge_otp_c": 350,
    "discharge_otp_recovery_c": 320, "charge_utp_c": 50, "charge_utp_recovery_c": 70,
    "mosfet_otp_c": 800, "mosfet_otp_recovery_c": 700, "charge_switch": 1,
    "discharge_switch": 1, "balance_switch": 1, "scp_delay_us": 1500, "balance_start_v": 3440,
}  # fmt: skip


def _settings(r: Reading, address: int) -> Callable[[bytearray], None]:
    def fill(out: bytearray) -> None:
        values = dict(_SETTING_DEFAULTS)
        values["cell_count"] = len(r.cell_voltages_v or ())
        values["design_capacity_mah"] = clamp((r.design_ah or 0.0) * 1000, 0, 2**31 - 1)
        values["device_address"] = address
        for s in _SETTINGS:
            struct.pack_into("<i" if s.signed else "<I", out, 6 + s.offset, values[s.key])

    return fill


def _text(value: str | None, length: int) -> bytes:
    return (value or "").encode("ascii", errors="replace")[:length].ljust(length, b"\x00")


def _about(r: Reading) -> Callable[[bytearray], None]:
    def fill(out: bytearray) -> None:
        out[6:22] = _text(r.model, 16)
        out[22:30] = _text("15A", 8)
        out[30:38] = _text(r.firmware, 8)
        out[86:97] = _text(r.serial, 11)

    return fill


def encode_reply(request: bytes, reading: Reading) -> bytes | None:
    """The 310 bytes a slave sends for a trigger request (payload, 00, ACK, 00); None for
    requests it does not answer. A malformed request raises FrameError."""
    request = bytes(request)
    if not request or request[0] == _MAGIC[0] or _modbus_length(request) != len(request):
        raise MalformedFrameError(f"jk-pb: {request.hex()} is not a trigger request")
    if not is_request(request):
        return None
    address, trigger = request[0], int.from_bytes(request[2:4], "big")
    kind = _TYPE_OF_TRIGGER.get(trigger)
    if kind is None or not 1 <= address <= _MAX_ADDRESS:
        return None
    if kind == _TYPE_STATUS:
        payload = _payload(kind, _status(reading))
    elif kind == _TYPE_SETTINGS:
        payload = _payload(kind, _settings(reading, address))
    else:
        payload = _payload(kind, _about(reading))
    return payload + b"\x00" + _ack(address, trigger) + b"\x00"
