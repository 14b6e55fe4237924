"""Older JK BMS (JK-B2A24S, BD6A...) over UART-TTL or RS485: the "0x4E 0x57" protocol
(protocol name `jk-b`).

Sources: syssi/esphome-jk-bms `docs/protocol-design-uart-ttl-gps-port.md` and its captures,
JK "BMS protocol V2.5"; written up in shared/vectors/PROTOCOLS.md section 3.3 (vectors:
tests/vectors/jk.json). 115200 8N1 on the GPS/RS485 port.

    4E 57 | LEN (2, BE) | terminal (4) | command | frame source | transmission type | data |
    record number (4) | 68 | checksum (4)

LEN counts from itself to the end (total length - 2). The checksum's upper two bytes are 0, the
lower two the 16-bit sum of every byte from 4E through 68. Commands: 0x01 activate, 0x02 write,
0x03 read one identifier, 0x05 password, 0x06 read all. Frame source: 0 BMS, 1 Bluetooth,
2 GPS, 3 PC. Transmission type: 0 request, 1 response, 2 active upload.

The data of a reply is a list of `id value` items; every id has a fixed length except 0x79
(cells: a length byte, then `cell-no mV-hi mV-lo` per cell). An id this codec does not know
makes the rest of the list unreadable, so it is an error, not a skip.

Current (0x84): with protocol version (0xC0) 1, which every captured unit sends, bit 15 set means
charging and bits 14..0 are 10 mA; with version 0 it is (10000 - raw) x 10 mA. A reply without
0xC0 is read as version 1. Temperatures: 0..100 are °C, above 100 mean -(raw - 100) °C.

The protocol has **no bus address**: one BMS per line. `poll_requests` ignores its argument and
`frame_address` is None. The BMS's password (id 0xB2) is never copied into a reading.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bankwatch.drivers.bits import Bit, BitTable
from bankwatch.drivers.errors import (
    ChecksumError,
    FrameLengthError,
    MalformedFrameError,
    UnknownCommandError,
)
from bankwatch.drivers.model import Alarm, Reading
from bankwatch.drivers.uart_common import ascii_field, clamp

__all__ = [
    "DEFAULT_BAUD",
    "GAP_S",
    "PROTOCOL",
    "READ_ALL",
    "REPLY_TIMEOUT_S",
    "decode",
    "encode_reply",
    "frame_address",
    "frame_length",
    "is_request",
    "poll_requests",
]

PROTOCOL = "jk-b"
DEFAULT_BAUD = 115200
GAP_S = 0.05
REPLY_TIMEOUT_S = 0.5

_MAGIC = b"\x4e\x57"
_END = 0x68
_MIN_LEN_FIELD = 18  # a frame with no data at all
_MAX_LEN_FIELD = 1024  # read-all replies are under 300 bytes; more is garbage, not a frame
READ_ALL = 0x06
_READ_ONE = 0x03
_SOURCE_PC = 0x03
_REQUEST, _RESPONSE = 0, 1

_Extra = tuple[tuple[str, float | int | str | bool], ...]


@dataclass(frozen=True, slots=True)
class _Item:
    ident: int
    length: int
    key: str | None = None  # the `extra` key, for ids with no Reading field
    scale: float = 1.0  # value x scale (ids with a key), for settings in V or A
    signed: bool = False


# id -> value length; 0x79 is variable. Names for the settings worth showing; the rest are
# still parsed (their length keeps the list readable) and re-encoded by the simulator.
_ITEMS: dict[int, _Item] = {
    i.ident: i
    for i in (
        _Item(0x80, 2),  # MOSFET temperature
        _Item(0x81, 2),  # box temperature (T1)
        _Item(0x82, 2),  # battery temperature (T2)
        _Item(0x83, 2),  # pack voltage 10 mV
        _Item(0x84, 2),  # current
        _Item(0x85, 1),  # SOC %
        _Item(0x86, 1, "temperature_sensor_count"),
        _Item(0x87, 2),  # cycles
        _Item(0x89, 4, "cycle_capacity_ah"),
        _Item(0x8A, 2, "cell_count"),
        _Item(0x8B, 2, "alarm_bits"),
        _Item(0x8C, 2, "status_bits"),
        _Item(0x8E, 2, "pack_ovp_v", 0.01),
        _Item(0x8F, 2, "pack_uvp_v", 0.01),
        _Item(0x90, 2, "cell_ovp_v", 0.001),
        _Item(0x91, 2, "cell_ovp_recovery_v", 0.001),
        _Item(0x92, 2, "cell_ovp_delay_s"),
        _Item(0x93, 2, "cell_uvp_v", 0.001),
        _Item(0x94, 2, "cell_uvp_recovery_v", 0.001),
        _Item(0x95, 2, "cell_uvp_delay_s"),
        _Item(0x96, 2, "cell_difference_protection_v", 0.001),
        _Item(0x97, 2, "discharge_ocp_a"),
        _Item(0x98, 2, "discharge_ocp_delay_s"),
        _Item(0x99, 2, "charge_ocp_a"),
        _Item(0x9A, 2, "charge_ocp_delay_s"),
        _Item(0x9B, 2, "balance_start_v", 0.001),
        _Item(0x9C, 2, "balance_trigger_v", 0.001),
        _Item(0x9D, 1, "balance_switch"),
        _Item(0x9E, 2, "mosfet_otp_c"),
        _Item(0x9F, 2, "mosfet_otp_recovery_c"),
        _Item(0xA0, 2, "battery_otp_c"),
        _Item(0xA1, 2, "battery_otp_recovery_c"),
        _Item(0xA2, 2, "temperature_difference_protection_c"),
        _Item(0xA3, 2, "charge_otp_c"),
        _Item(0xA4, 2, "discharge_otp_c"),
        _Item(0xA5, 2, "charge_utp_c", signed=True),
        _Item(0xA6, 2, "charge_utp_recovery_c", signed=True),
        _Item(0xA7, 2, "discharge_utp_c", signed=True),
        _Item(0xA8, 2, "discharge_utp_recovery_c", signed=True),
        _Item(0xA9, 1, "cell_strings"),
        _Item(0xAA, 4),  # capacity setting, Ah
        _Item(0xAB, 1, "charge_switch"),
        _Item(0xAC, 1, "discharge_switch"),
        _Item(0xAD, 2, "current_calibration"),
        _Item(0xAE, 1, "device_address"),
        _Item(0xAF, 1, "battery_type"),
        _Item(0xB0, 2, "sleep_wait_s"),
        _Item(0xB1, 1, "low_soc_alarm_pct"),
        _Item(0xB2, 10),  # password: never copied out
        _Item(0xB3, 1, "dedicated_charger"),
        _Item(0xB4, 8),  # device id -> serial
        _Item(0xB5, 4, "manufacturing_date"),
        _Item(0xB6, 4, "runtime_s", 60),  # minutes on the wire
        _Item(0xB7, 15),  # software version -> firmware
        _Item(0xB8, 1, "calibration_active"),
        _Item(0xB9, 4, "actual_capacity_ah"),
        _Item(0xBA, 24),  # manufacturer id -> manufacturer
        _Item(0xC0, 1, "protocol_version"),
    )
}
_CELLS = 0x79
_TEXT_IDS = {0xB5: "manufacturing_date"}

# 0x8B warning bit -> alarm (every set bit is named in extra["alarms_active"]).
_WARNINGS = BitTable(
    Bit(bit, name, None, flag)
    for bit, name, flag in (
        (0, "low_capacity", None),
        (1, "mosfet_over_temperature", Alarm.HIGH_TEMPERATURE),
        (2, "charge_overvoltage", Alarm.CELL_HIGH_VOLTAGE),
        (3, "discharge_undervoltage", Alarm.CELL_LOW_VOLTAGE),
        (4, "battery_over_temperature", Alarm.HIGH_TEMPERATURE),
        (5, "charge_overcurrent", Alarm.CHARGE_HIGH_CURRENT),
        (6, "discharge_overcurrent", Alarm.DISCHARGE_HIGH_CURRENT),
        (7, "cell_voltage_difference", Alarm.CELL_IMBALANCE),
        (8, "box_over_temperature", Alarm.HIGH_TEMPERATURE),
        (9, "battery_low_temperature", Alarm.LOW_TEMPERATURE),
        (10, "cell_overvoltage", Alarm.CELL_HIGH_VOLTAGE),
        (11, "cell_undervoltage", Alarm.CELL_LOW_VOLTAGE),
        (12, "309_a_protection", None),
        (13, "309_b_protection", None),
    )
).with_unknown((range(16), Alarm.UNKNOWN))  # bits 14-15 are not documented


def _checksum(body: bytes) -> int:
    return sum(body) & 0xFFFF


def _frame(command: int, source: int, kind: int, data: bytes, record: int = 0) -> bytes:
    length = 2 + 4 + 3 + len(data) + 4 + 1 + 4
    body = (
        _MAGIC
        + length.to_bytes(2, "big")
        + bytes(4)
        + bytes((command, source, kind))
        + data
        + record.to_bytes(4, "big")
        + bytes((_END,))
    )
    return body + _checksum(body).to_bytes(4, "big")


def poll_requests(address: int) -> list[bytes]:
    """One read-all request. JK-B has no bus address: `address` is ignored."""
    del address
    return [_frame(READ_ALL, _SOURCE_PC, _REQUEST, b"\x00")]


# ---- framing -------------------------------------------------------------------------------


def frame_length(buf: bytes) -> int | None:
    """LEN + 2 once the 4E 57 head and LEN are there; the byte before the checksum must be 68."""
    for i, want in enumerate(_MAGIC[: len(buf)]):
        if buf[i] != want:
            raise MalformedFrameError(
                f"jk-b: byte {i} is 0x{buf[i]:02X}, a frame starts with 4E 57"
            )
    if len(buf) < 4:
        return None
    length = int.from_bytes(buf[2:4], "big")
    if not _MIN_LEN_FIELD <= length <= _MAX_LEN_FIELD:
        raise FrameLengthError(
            f"jk-b: length field {length}, frames have {_MIN_LEN_FIELD}..{_MAX_LEN_FIELD}"
        )
    total = length + 2
    if len(buf) < total:
        return None
    if buf[total - 5] != _END:
        raise MalformedFrameError(
            f"jk-b: byte {total - 5} is 0x{buf[total - 5]:02X}, the end marker is 0x68"
        )
    return total


def _check(frame: bytes) -> None:
    if len(frame) < _MIN_LEN_FIELD + 2:
        raise FrameLengthError(
            f"jk-b: frame of {len(frame)} bytes, the shortest is {_MIN_LEN_FIELD + 2}"
        )
    if frame[:2] != _MAGIC:
        raise MalformedFrameError(f"jk-b: frame starts {frame[:2].hex(' ')}, expected 4e 57")
    length = int.from_bytes(frame[2:4], "big")
    if length + 2 != len(frame):
        raise FrameLengthError(
            f"jk-b: frame of {len(frame)} bytes, its length field says {length + 2}"
        )
    if frame[-5] != _END:
        raise MalformedFrameError(f"jk-b: end marker 0x{frame[-5]:02X}, expected 0x68")
    got = int.from_bytes(frame[-4:], "big")
    want = _checksum(frame[:-4])
    if got != want:
        raise ChecksumError(f"jk-b: checksum 0x{got:08X} in frame, 0x{want:08X} computed")


def is_request(frame: bytes) -> bool:
    """Transmission type 0 is a request; 1 (response) and 2 (active upload) come from the BMS."""
    return len(frame) > 10 and frame[10] == _REQUEST


def frame_address(frame: bytes) -> int | None:
    """JK-B frames carry no bus address."""
    del frame
    return None


# ---- decoding ------------------------------------------------------------------------------


def _temperature(raw: int) -> float:
    return float(raw if raw <= 100 else -(raw - 100))


def _items(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        ident = data[i]
        if ident == _CELLS:
            if i + 1 >= len(data):
                raise FrameLengthError("jk-b: cell list 0x79 without its length byte")
            length = data[i + 1]
            start = i + 2
        else:
            item = _ITEMS.get(ident)
            if item is None:
                raise UnknownCommandError(
                    f"jk-b: data id 0x{ident:02X} at data byte {i} is not known; "
                    "the rest of the list cannot be read"
                )
            length = item.length
            start = i + 1
        if start + length > len(data):
            raise FrameLengthError(
                f"jk-b: data id 0x{ident:02X} needs {length} bytes, {len(data) - start} left"
            )
        out[ident] = data[start : start + length]
        i = start + length
    return out


def _cells(value: bytes) -> tuple[float, ...]:
    if len(value) % 3:
        raise FrameLengthError(f"jk-b: cell list of {len(value)} bytes, 3 per cell")
    by_no = {value[i]: int.from_bytes(value[i + 1 : i + 3], "big") for i in range(0, len(value), 3)}
    return tuple(by_no[n] / 1000 for n in sorted(by_no))


def _decode_items(items: dict[int, bytes]) -> Reading:
    def num(ident: int) -> int | None:
        value = items.get(ident)
        return None if value is None else int.from_bytes(value, "big")

    extra: list[tuple[str, float | int | str | bool]] = []
    for ident, value in items.items():
        item = _ITEMS.get(ident)
        if item is None or item.key is None:
            continue
        if ident in _TEXT_IDS:
            extra.append((item.key, ascii_field(value)))
            continue
        raw = int.from_bytes(value, "big", signed=item.signed)
        if float(item.scale).is_integer():
            # a whole-number unit change (minutes to seconds) keeps an integer, as other codecs
            # send the same key: InfluxDB fixes a field's type at its first point
            extra.append((item.key, raw * int(item.scale)))
        else:
            extra.append((item.key, round(raw * item.scale, 6)))

    current = None
    raw_current = num(0x84)
    if raw_current is not None:
        if num(0xC0) == 0:
            current = (10000 - raw_current) / 100
        else:
            magnitude = (raw_current & 0x7FFF) / 100
            current = magnitude if raw_current & 0x8000 else -magnitude
            current = current or 0.0  # no -0.0

    alarms = None
    warnings = num(0x8B)
    if warnings is not None:
        found = _WARNINGS.decode(warnings)
        alarms = found.alarms
        extra.append(("alarms_active", ",".join(found.names)))
    status = num(0x8C)
    if status is not None:
        extra.append(("balancing", bool(status & 0x04)))

    temps = tuple(_temperature(t) for i in (0x81, 0x82) if (t := num(i)) is not None)
    mos = num(0x80)
    volts, soc, cycles, capacity = num(0x83), num(0x85), num(0x87), num(0xAA)
    return Reading(
        cell_voltages_v=_cells(items[_CELLS]) if _CELLS in items else None,
        mosfet_temperature_c=None if mos is None else _temperature(mos),
        temperatures_c=temps or None,
        pack_voltage_v=None if volts is None else volts / 100,
        current_a=current,
        soc_pct=None if soc is None else float(soc),
        cycles=cycles,
        design_ah=None if capacity is None else float(capacity),
        alarms=alarms,
        charge_enabled=None if status is None else bool(status & 0x01),
        discharge_enabled=None if status is None else bool(status & 0x02),
        serial=ascii_field(items[0xB4]) if 0xB4 in items else None,
        firmware=ascii_field(items[0xB7]) if 0xB7 in items else None,
        manufacturer=ascii_field(items[0xBA]) if 0xBA in items else None,
        extra=tuple(extra),
    )


def decode(frame: bytes, request: bytes | None = None) -> Reading:
    """One complete frame to a partial Reading (a request decodes to an empty one).

    Raises ChecksumError, FrameLengthError, MalformedFrameError or UnknownCommandError."""
    frame = bytes(frame)
    _check(frame)
    if is_request(frame):
        return Reading()
    command = frame[8]
    if command not in (READ_ALL, _READ_ONE):
        raise UnknownCommandError(f"jk-b: command 0x{command:02X} is not decoded")
    return _decode_items(_items(frame[11:-9]))


# ---- encoding (the simulator's side) -------------------------------------------------------

# What a 14S JK-B2A24S sends for the items a Reading does not carry (its captured settings).
_DEFAULTS: dict[int, int] = {
    0x89: 0, 0x8E: 0x1626, 0x8F: 0x10AE, 0x90: 0x0FD2, 0x91: 0x0FA0, 0x92: 5, 0x93: 0x0BEA,
    0x94: 0x0C1C, 0x95: 5, 0x96: 0x012C, 0x97: 7, 0x98: 3, 0x99: 5, 0x9A: 5, 0x9B: 0x0CE4,
    0x9C: 8, 0x9D: 1, 0x9E: 0x5A, 0x9F: 0x46, 0xA0: 0x64, 0xA1: 0x64, 0xA2: 0x14, 0xA3: 0x46,
    0xA4: 0x46, 0xA5: 0xFFEC, 0xA6: 0xFFF6, 0xA7: 0xFFEC, 0xA8: 0xFFF6, 0xAB: 1, 0xAC: 1,
    0xAD: 0x0411, 0xAE: 1, 0xAF: 1, 0xB0: 10, 0xB1: 20, 0xB3: 0, 0xB6: 0, 0xB8: 0, 0xB9: 0,
}  # fmt: skip


def _temperature_raw(celsius: float) -> int:
    value = round(celsius)
    return clamp(value, 0, 100) if value >= 0 else clamp(100 - value, 101, 0xFFFF)


def _text(value: str | None, length: int) -> bytes:
    return (value or "").encode("ascii", errors="replace")[:length].ljust(length, b"\x00")


def _encode_items(r: Reading) -> bytes:
    cells = r.cell_voltages_v or ()
    temps = r.temperatures_c or ()
    current = r.current_a or 0.0
    tenths_ma = clamp(abs(current) * 100, 0, 0x7FFF)
    warnings = _WARNINGS.encode(None, r.alarms)
    values: dict[int, int] = dict(_DEFAULTS)
    values.update(
        {
            0x80: _temperature_raw(r.mosfet_temperature_c or 0.0),
            0x81: _temperature_raw(temps[0] if temps else 0.0),
            0x82: _temperature_raw(temps[1] if len(temps) > 1 else 0.0),
            0x83: clamp((r.pack_voltage_v or 0.0) * 100, 0, 0xFFFF),
            0x84: tenths_ma | (0x8000 if current > 0 else 0),
            0x85: clamp(r.soc_pct or 0.0, 0, 100),
            0x86: len(temps[:2]),
            0x87: clamp(r.cycles or 0, 0, 0xFFFF),
            0x8A: len(cells),
            0x8B: warnings,
            0x8C: (r.charge_enabled is not False) | (r.discharge_enabled is not False) << 1 | 0x08,
            0xA9: len(cells),
            0xAA: clamp(r.design_ah or r.full_charge_ah or 0.0, 0, 0xFFFFFFFF),
            0xC0: 1,
        }
    )
    out = bytearray((_CELLS, 3 * len(cells)))
    for n, volts in enumerate(cells, start=1):
        out += bytes((n,)) + clamp(volts * 1000, 0, 0xFFFF).to_bytes(2, "big")
    for ident, item in _ITEMS.items():
        out.append(ident)
        if ident == 0xB2:
            out += _text("000000", item.length)
        elif ident == 0xB4:
            out += _text(r.serial, item.length)
        elif ident == 0xB5:
            out += _text("2101", item.length)
        elif ident == 0xB7:
            out += _text(r.firmware, item.length)
        elif ident == 0xBA:
            out += _text(r.manufacturer, item.length)
        else:
            out += values[ident].to_bytes(item.length, "big")
    return bytes(out)


def encode_reply(request: bytes, reading: Reading) -> bytes | None:
    """The read-all reply a JK-B gives for `reading`; None for any other request. Cells beyond
    the 85 the 0x79 length byte can count are left out."""
    request = bytes(request)
    _check(request)
    if not is_request(request) or request[8] != READ_ALL:
        return None
    cells = (reading.cell_voltages_v or ())[:85]
    data = _encode_items(replace(reading, cell_voltages_v=cells))
    return _frame(READ_ALL, 0x00, _RESPONSE, data)
