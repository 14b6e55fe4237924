"""Daly "BMS monitor" protocol over UART or RS485 (protocol name `daly`).

Sources: Daly "UART_485 Communications Protocol V1.2" and "RS485+UART Protocol" PDFs, Daly's
error table as dreadnought/python-daly-bms lists it, and real captures; written up in
shared/vectors/PROTOCOLS.md section 4 (vectors: tests/vectors/daly.json). 9600 8N1.

Every frame, both ways, is 13 bytes::

    A5 | address | data id | 08 | 8 data bytes (big-endian) | checksum (sum of 0..11, low byte)

A request carries the **host's** address in byte 1 and eight zero bytes: 0x40 ("upper
computer", V1.2 and most captures) or 0x80 (some UART/BLE firmwares answer only to that one).
On a multi-board bus, board n is asked with host address 0x40 + n - 1. The reply carries the
board's own number (0x01 for a single BMS). `address` in this module is that board number
(1 for a single BMS) for the 0x40 scheme, or the raw host byte (0x40..0xFF) when given as such:
`poll_requests(0x80)` asks with host address 0x80, `poll_requests(1)` with 0x40.

    0x90 pack voltage, current, SOC         0x95 cell voltages, 3 per frame, several frames
    0x91 max/min cell voltage (and cell no) 0x96 temperatures, 7 per frame, several frames
    0x92 max/min temperature (and sensor)   0x97 balancing bits, one per cell
    0x93 state, MOSFETs, life, remaining    0x98 failure bits and fault code
    0x94 cell and sensor counts, cycles

**Multi-frame lists.** 0x95 and 0x96 are answered with several frames back to back, numbered
from 1 (every capture; V1.2 says 0, which is accepted too). `decode` of one such frame gives
that frame's three cells (or seven temperatures) with its number in `extra`
(`cell_frame` / `temperature_frame`); `merge_readings` would let the last frame overwrite the
others, so a whole poll is merged with this module's `merge_parts(readings)` (or `merge(frames)`
straight from bytes): cell lists concatenate in frame order and are cut to the cell count of
0x94, temperature lists to the sensor count (unused slots read 0, i.e. -40 °C). A missing frame
in the middle raises IncompleteError rather than shifting every later cell by three.
`expected_frames(request, known)` says how many frames a request returns, once 0x94 is known.

**Current sign.** The documents say current = (raw - 30000) x 0.1 A, positive when charging;
firmwares disagree in practice (dbus-serialbattery inverts it for some). `decode` of 0x90 uses
the documented sign; `merge_parts` then takes the direction from the 0x93 state byte when it
says charging or discharging, so the merged reading is right for either kind of firmware.

**0x98 failure bits** map onto the shared flags: a level-1 warning is an Alarm, a level-2 one a
Protection; pack ("sum") voltage limits share the cell-voltage flags; MOSFET, sensor and chip
faults are SYSTEM_ERROR. Nothing is lost: the raw bits stay in `extra` (`fault_bits`, hex) with
the names of every set bit (`faults`) and the fault code.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from bankwatch.drivers.errors import UsageError
from bankwatch.drivers.model import Alarm, Protection, Reading, merge_readings
from bankwatch.drivers.uart_common import (
    ChecksumError,
    FrameLengthError,
    IncompleteError,
    MalformedFrameError,
    UnknownCommandError,
    clamp,
)

__all__ = [
    "DATA_IDS",
    "DEFAULT_BAUD",
    "FRAME_LEN",
    "GAP_S",
    "HOST_PC",
    "HOST_UART_ALT",
    "PROTOCOL",
    "REPLY_TIMEOUT_S",
    "decode",
    "encode_reply",
    "encode_request",
    "expected_frames",
    "frame_address",
    "frame_length",
    "is_request",
    "merge",
    "merge_parts",
    "poll_requests",
]

PROTOCOL = "daly"
DEFAULT_BAUD = 9600
# Daly boards are slow to get ready for the next request; 50 ms is what working pollers leave.
GAP_S = 0.05
REPLY_TIMEOUT_S = 0.5

FRAME_LEN = 13
_START = 0xA5
_DATA_LEN = 0x08
HOST_PC = 0x40
HOST_UART_ALT = 0x80

# Names as the Daly documents give them (0 is "stationary": no current flowing).
_STATES = {0: "stationary", 1: "charging", 2: "discharging"}
_STATE_CODES = {name: code for code, name in _STATES.items()}

# 0x98: (byte, bit, name, protection, alarm). Level 1 = warning (Alarm), level 2 = Protection.
_P = Protection
_A = Alarm
_FAULTS: tuple[tuple[int, int, str, Protection | None, Alarm | None], ...] = (
    (0, 0, "cell_voltage_high_l1", None, _A.CELL_HIGH_VOLTAGE),
    (0, 1, "cell_voltage_high_l2", _P.CELL_OVERVOLTAGE, None),
    (0, 2, "cell_voltage_low_l1", None, _A.CELL_LOW_VOLTAGE),
    (0, 3, "cell_voltage_low_l2", _P.CELL_UNDERVOLTAGE, None),
    (0, 4, "pack_voltage_high_l1", None, _A.CELL_HIGH_VOLTAGE),
    (0, 5, "pack_voltage_high_l2", _P.CELL_OVERVOLTAGE, None),
    (0, 6, "pack_voltage_low_l1", None, _A.CELL_LOW_VOLTAGE),
    (0, 7, "pack_voltage_low_l2", _P.CELL_UNDERVOLTAGE, None),
    (1, 0, "charge_temperature_high_l1", None, _A.HIGH_TEMPERATURE),
    (1, 1, "charge_temperature_high_l2", _P.OVER_TEMPERATURE, None),
    (1, 2, "charge_temperature_low_l1", None, _A.LOW_TEMPERATURE),
    (1, 3, "charge_temperature_low_l2", _P.UNDER_TEMPERATURE, None),
    (1, 4, "discharge_temperature_high_l1", None, _A.HIGH_TEMPERATURE),
    (1, 5, "discharge_temperature_high_l2", _P.OVER_TEMPERATURE, None),
    (1, 6, "discharge_temperature_low_l1", None, _A.LOW_TEMPERATURE),
    (1, 7, "discharge_temperature_low_l2", _P.UNDER_TEMPERATURE, None),
    (2, 0, "charge_overcurrent_l1", None, _A.CHARGE_HIGH_CURRENT),
    (2, 1, "charge_overcurrent_l2", _P.CHARGE_OVERCURRENT, None),
    (2, 2, "discharge_overcurrent_l1", None, _A.DISCHARGE_HIGH_CURRENT),
    (2, 3, "discharge_overcurrent_l2", _P.DISCHARGE_OVERCURRENT, None),
    (2, 4, "soc_high_l1", None, None),
    (2, 5, "soc_high_l2", None, None),
    (2, 6, "soc_low_l1", None, None),
    (2, 7, "soc_low_l2", None, None),
    (3, 0, "cell_voltage_difference_l1", None, Alarm.CELL_IMBALANCE),
    (3, 1, "cell_voltage_difference_l2", None, Alarm.CELL_IMBALANCE),
    (3, 2, "temperature_difference_l1", None, None),
    (3, 3, "temperature_difference_l2", None, None),
    (4, 0, "charge_mos_over_temperature", _P.OVER_TEMPERATURE, None),
    (4, 1, "discharge_mos_over_temperature", _P.OVER_TEMPERATURE, None),
    (4, 2, "charge_mos_sensor_error", _P.SYSTEM_ERROR, None),
    (4, 3, "discharge_mos_sensor_error", _P.SYSTEM_ERROR, None),
    (4, 4, "charge_mos_stuck", _P.SYSTEM_ERROR, None),
    (4, 5, "discharge_mos_stuck", _P.SYSTEM_ERROR, None),
    (4, 6, "charge_mos_open_circuit", _P.SYSTEM_ERROR, None),
    (4, 7, "discharge_mos_open_circuit", _P.SYSTEM_ERROR, None),
    (5, 0, "afe_chip", _P.SYSTEM_ERROR, None),
    (5, 1, "cell_voltage_collection", _P.SYSTEM_ERROR, None),
    (5, 2, "cell_temperature_sensor", _P.SYSTEM_ERROR, None),
    (5, 3, "eeprom", _P.SYSTEM_ERROR, None),
    (5, 4, "rtc", _P.SYSTEM_ERROR, None),
    (5, 5, "precharge_failure", _P.SYSTEM_ERROR, None),
    (5, 6, "communication_failure", None, _A.INTERNAL_COMMUNICATION),
    (5, 7, "internal_communication_failure", None, _A.INTERNAL_COMMUNICATION),
    (6, 0, "current_module", _P.SYSTEM_ERROR, None),
    (6, 1, "pack_voltage_detection", _P.SYSTEM_ERROR, None),
    (6, 2, "short_circuit", _P.SHORT_CIRCUIT, None),
    (6, 3, "low_voltage_charge_forbidden", None, None),
)


def _checksum(frame: bytes) -> int:
    return sum(frame[:12]) & 0xFF


def _frame(address: int, data_id: int, data: bytes) -> bytes:
    body = bytes((_START, address, data_id, _DATA_LEN)) + data
    return body + bytes((sum(body) & 0xFF,))


def _host_byte(address: int) -> int:
    if 1 <= address < HOST_PC:
        return HOST_PC + address - 1
    if HOST_PC <= address <= 0xFF:
        return address
    raise UsageError(
        f"daly address {address}: give the board number (1 for a single BMS) or a host "
        "address 0x40..0xFF (0x80 for firmwares that answer only to it)"
    )


def _board(host: int) -> int:
    """The board a request with host address `host` goes to (0x40 and 0x80 schemes)."""
    base = HOST_UART_ALT if host >= HOST_UART_ALT else HOST_PC
    return host - base + 1


def encode_request(address: int, data_id: int) -> bytes:
    """The 13-byte read request for `data_id` to the pack at `address` (see module doc)."""
    return _frame(_host_byte(address), data_id, bytes(8))


# ---- framing -------------------------------------------------------------------------------


def frame_length(buf: bytes) -> int | None:
    """13 once the start byte and the length byte are right; None until 13 bytes are there."""
    if not buf:
        return None
    if buf[0] != _START:
        raise MalformedFrameError(f"daly: byte 0x{buf[0]:02X} cannot start a frame (0xA5 does)")
    if len(buf) >= 4 and buf[3] != _DATA_LEN:
        raise MalformedFrameError(f"daly: length byte 0x{buf[3]:02X}, frames carry 0x08")
    return FRAME_LEN if len(buf) >= FRAME_LEN else None


def _check(frame: bytes) -> None:
    if len(frame) != FRAME_LEN:
        raise FrameLengthError(f"daly: frame of {len(frame)} bytes, frames are {FRAME_LEN}")
    if frame[0] != _START:
        raise MalformedFrameError(f"daly: start byte 0x{frame[0]:02X}, expected 0xA5")
    if frame[3] != _DATA_LEN:
        raise MalformedFrameError(f"daly: length byte 0x{frame[3]:02X}, expected 0x08")
    want = _checksum(frame)
    if frame[12] != want:
        raise ChecksumError(
            f"daly: checksum 0x{frame[12]:02X} in frame, 0x{want:02X} computed "
            f"(data id 0x{frame[2]:02X})"
        )


def is_request(frame: bytes) -> bool:
    """Requests carry a host address (0x40 and up); replies the board number (below 0x40)."""
    return len(frame) > 1 and frame[1] >= HOST_PC


def frame_address(frame: bytes) -> int | None:
    """The board a frame is to (request) or from (reply): 1 for a single BMS."""
    if len(frame) < 2:
        return None
    return _board(frame[1]) if is_request(frame) else frame[1]


def poll_requests(address: int) -> list[bytes]:
    """0x90..0x98, 0x94 before the lists so the cell and sensor counts are known first."""
    return [encode_request(address, data_id) for data_id in DATA_IDS]


# ---- decoding ------------------------------------------------------------------------------


def _u16(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 2], "big")


def _decode_90(d: bytes) -> Reading:
    return Reading(
        pack_voltage_v=_u16(d, 0) / 10,
        current_a=(_u16(d, 4) - 30000) / 10,
        soc_pct=_u16(d, 6) / 10,
        extra=(("gathered_voltage_v", _u16(d, 2) / 10),),
    )


def _decode_91(d: bytes) -> Reading:
    return Reading(
        cell_voltage_max_v=_u16(d, 0) / 1000,
        cell_voltage_min_v=_u16(d, 3) / 1000,
        extra=(("cell_max_no", d[2]), ("cell_min_no", d[5])),
    )


def _decode_92(d: bytes) -> Reading:
    return Reading(
        cell_temperature_max_c=float(d[0] - 40),
        cell_temperature_min_c=float(d[2] - 40),
        extra=(("temperature_max_no", d[1]), ("temperature_min_no", d[3])),
    )


def _decode_93(d: bytes) -> Reading:
    return Reading(
        charge_enabled=bool(d[1]),
        discharge_enabled=bool(d[2]),
        remaining_ah=int.from_bytes(d[4:8], "big") / 1000,
        extra=(("state", _STATES.get(d[0], f"unknown_{d[0]}")), ("bms_life", d[3])),
    )


def _decode_94(d: bytes) -> Reading:
    return Reading(
        cycles=_u16(d, 5),
        extra=(
            ("cell_count", d[0]),
            ("temperature_sensor_count", d[1]),
            ("charger_present", bool(d[2])),
            ("load_present", bool(d[3])),
            ("dio_bits", d[4]),
        ),
    )


def _decode_95(d: bytes) -> Reading:
    cells = tuple(_u16(d, 1 + 2 * i) / 1000 for i in range(3))
    return Reading(cell_voltages_v=cells, extra=(("cell_frame", d[0]),))


def _decode_96(d: bytes) -> Reading:
    temps = tuple(float(b - 40) for b in d[1:8])
    return Reading(temperatures_c=temps, extra=(("temperature_frame", d[0]),))


def _decode_97(d: bytes) -> Reading:
    return Reading(extra=(("balance_bits", d.hex()), ("balancing", any(d))))


def _decode_98(d: bytes) -> Reading:
    protections = Protection.NONE
    alarms = Alarm.NONE
    names: list[str] = []
    for byte, bit, name, pflag, aflag in _FAULTS:
        if d[byte] >> bit & 1:
            names.append(name)
            if pflag is not None:
                protections |= pflag
            if aflag is not None:
                alarms |= aflag
    return Reading(
        protections=protections,
        alarms=alarms,
        extra=(("fault_bits", d[:7].hex()), ("fault_code", d[7]), ("faults", ",".join(names))),
    )


# ---- encoding (the simulator's side) -------------------------------------------------------


def _encode_90(r: Reading, _host: int) -> list[bytes] | None:
    data = struct.pack(
        ">HHHH",
        clamp((r.pack_voltage_v or 0.0) * 10, 0, 0xFFFF),
        0,
        clamp(30000 + (r.current_a or 0.0) * 10, 0, 0xFFFF),
        clamp((r.soc_pct or 0.0) * 10, 0, 1000),
    )
    return [data]


def _extreme_cells(r: Reading) -> tuple[float, int, float, int]:
    if r.cell_voltages_v:
        cells = r.cell_voltages_v
        hi = max(range(len(cells)), key=lambda i: cells[i])
        lo = min(range(len(cells)), key=lambda i: cells[i])
        return cells[hi], hi + 1, cells[lo], lo + 1
    return r.cell_voltage_max_v or 0.0, 1, r.cell_voltage_min_v or 0.0, 1


def _encode_91(r: Reading, _host: int) -> list[bytes] | None:
    hi_v, hi_no, lo_v, lo_no = _extreme_cells(r)
    return [
        struct.pack(
            ">HBHBH",
            clamp(hi_v * 1000, 0, 0xFFFF),
            hi_no,
            clamp(lo_v * 1000, 0, 0xFFFF),
            lo_no,
            0,
        )
    ]


def _encode_92(r: Reading, _host: int) -> list[bytes] | None:
    if r.temperatures_c:
        temps = r.temperatures_c
        hi = max(range(len(temps)), key=lambda i: temps[i])
        lo = min(range(len(temps)), key=lambda i: temps[i])
        hi_t, hi_no, lo_t, lo_no = temps[hi], hi + 1, temps[lo], lo + 1
    else:
        hi_t, hi_no = r.cell_temperature_max_c or 0.0, 1
        lo_t, lo_no = r.cell_temperature_min_c or 0.0, 1
    return [
        bytes(
            (clamp(hi_t + 40, 0, 255), hi_no, clamp(lo_t + 40, 0, 255), lo_no, 0, 0, 0, 0)
        )
    ]


def _state_of(r: Reading) -> int:
    state = dict(r.extra).get("state")
    if isinstance(state, str) and state in _STATE_CODES:
        return _STATE_CODES[state]
    tenths = round((r.current_a or 0.0) * 10)
    return 1 if tenths > 0 else 2 if tenths < 0 else 0


def _encode_93(r: Reading, _host: int) -> list[bytes] | None:
    life = dict(r.extra).get("bms_life", 0)
    return [
        bytes(
            (
                _state_of(r),
                r.charge_enabled is not False,
                r.discharge_enabled is not False,
                clamp(life if isinstance(life, int | float) else 0, 0, 255),
            )
        )
        + clamp((r.remaining_ah or 0.0) * 1000, 0, 0xFFFFFFFF).to_bytes(4, "big")
    ]


def _encode_94(r: Reading, _host: int) -> list[bytes] | None:
    extra = dict(r.extra)
    current = r.current_a or 0.0
    cells = len(r.cell_voltages_v or ()) or int(extra.get("cell_count", 0))
    sensors = len(r.temperatures_c or ()) or int(extra.get("temperature_sensor_count", 0))
    return [
        bytes(
            (
                clamp(cells, 0, 255),
                clamp(sensors, 0, 255),
                bool(extra.get("charger_present", current > 0)),
                bool(extra.get("load_present", current < 0)),
                clamp(int(extra.get("dio_bits", 0)), 0, 255),
            )
        )
        + clamp(r.cycles or 0, 0, 0xFFFF).to_bytes(2, "big")
        + b"\x00"
    ]


def _encode_95(r: Reading, _host: int) -> list[bytes] | None:
    if not r.cell_voltages_v:
        return None
    mv = [clamp(v * 1000, 0, 0xFFFF) for v in r.cell_voltages_v]
    out = []
    for n in range(math.ceil(len(mv) / 3)):
        chunk = [*mv[3 * n : 3 * n + 3], 0, 0][:3]
        out.append(struct.pack(">BHHHB", n + 1, *chunk, 0))
    return out


def _encode_96(r: Reading, _host: int) -> list[bytes] | None:
    if not r.temperatures_c:
        return None
    raw = [clamp(t + 40, 0, 255) for t in r.temperatures_c]
    return [
        bytes((n + 1, *[*raw[7 * n : 7 * n + 7], 0, 0, 0, 0, 0, 0][:7]))
        for n in range(math.ceil(len(raw) / 7))
    ]


def _encode_97(r: Reading, _host: int) -> list[bytes] | None:
    bits = dict(r.extra).get("balance_bits")
    if isinstance(bits, str) and len(bits) == 16:
        try:
            return [bytes.fromhex(bits)]
        except ValueError:
            pass
    return [bytes(8)]


def _encode_98(r: Reading, _host: int) -> list[bytes] | None:
    data = bytearray(8)
    done_p = Protection.NONE
    done_a = Alarm.NONE
    # The first bit of the table that maps to a flag stands for it.
    for byte, bit, _name, pflag, aflag in _FAULTS:
        if pflag is not None and r.protections and pflag in r.protections and pflag not in done_p:
            data[byte] |= 1 << bit
            done_p |= pflag
        if aflag is not None and r.alarms and aflag in r.alarms and aflag not in done_a:
            data[byte] |= 1 << bit
            done_a |= aflag
    return [bytes(data)]


@dataclass(frozen=True, slots=True)
class _Spec:
    data_id: int
    name: str
    decode: Callable[[bytes], Reading]
    encode: Callable[[Reading, int], list[bytes] | None]


_SPECS: dict[int, _Spec] = {
    s.data_id: s
    for s in (
        _Spec(0x90, "voltage/current/SOC", _decode_90, _encode_90),
        _Spec(0x91, "min/max cell voltage", _decode_91, _encode_91),
        _Spec(0x92, "min/max temperature", _decode_92, _encode_92),
        _Spec(0x93, "state/MOSFETs/remaining", _decode_93, _encode_93),
        _Spec(0x94, "status", _decode_94, _encode_94),
        _Spec(0x95, "cell voltages", _decode_95, _encode_95),
        _Spec(0x96, "temperatures", _decode_96, _encode_96),
        _Spec(0x97, "balance bits", _decode_97, _encode_97),
        _Spec(0x98, "failure bits", _decode_98, _encode_98),
    )
}
DATA_IDS: tuple[int, ...] = (0x90, 0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98)


def decode(frame: bytes, request: bytes | None = None) -> Reading:
    """One 13-byte frame to a partial Reading (a request decodes to an empty one).

    `request` is not needed: replies say their data id. Raises ChecksumError,
    FrameLengthError, MalformedFrameError or UnknownCommandError (all FrameError).
    """
    frame = bytes(frame)
    _check(frame)
    if is_request(frame):
        return Reading()
    spec = _SPECS.get(frame[2])
    if spec is None:
        raise UnknownCommandError(f"daly: data id 0x{frame[2]:02X} is not decoded")
    return spec.decode(frame[4:12])


def encode_reply(request: bytes, reading: Reading) -> bytes | None:
    """The frame(s) the board asked by `request` sends back for `reading`; 0x95/0x96 give
    several 13-byte frames back to back. Like a real board it answers 0x90..0x94 and 0x97/0x98
    whatever the reading lacks (zeros); None for other ids, and for 0x95/0x96 when the reading
    has no cells/temperatures. A malformed request raises FrameError."""
    request = bytes(request)
    _check(request)
    if not is_request(request):
        return None
    spec = _SPECS.get(request[2])
    if spec is None:
        return None
    datas = spec.encode(reading, request[1])
    if datas is None:
        return None
    board = _board(request[1])
    return b"".join(_frame(board, spec.data_id, d) for d in datas)


# ---- merging a poll ------------------------------------------------------------------------


def _count(reading: Reading, key: str) -> int | None:
    value = dict(reading.extra).get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _ordered(parts: dict[int, tuple[float, ...]], what: str) -> list[float]:
    numbers = sorted(parts)
    first = 0 if numbers[0] == 0 else 1
    expected = list(range(first, first + len(numbers)))
    if numbers != expected:
        missing = sorted(set(range(first, numbers[-1] + 1)) - set(numbers))
        raise IncompleteError(
            f"daly: {what} frames {', '.join(map(str, numbers))} received; "
            f"frame {', '.join(map(str, missing))} missing"
        )
    return [v for n in numbers for v in parts[n]]


def _cut(values: list[float], count: int | None, unused: float, what: str) -> tuple[float, ...]:
    if count is None:
        while values and values[-1] == unused:
            values.pop()
        return tuple(values)
    if len(values) < count:
        raise IncompleteError(f"daly: {len(values)} {what} received, the BMS reports {count}")
    return tuple(values[:count])


_Extra = tuple[tuple[str, float | int | str | bool], ...]


def _without(extra: _Extra, keys: set[str]) -> _Extra:
    return tuple((k, v) for k, v in extra if k not in keys)


def merge_parts(parts: Sequence[Reading]) -> Reading:
    """The decoded frames of one poll (any order) to one Reading; see the module doc."""
    base = Reading()
    cells: dict[int, tuple[float, ...]] = {}
    temps: dict[int, tuple[float, ...]] = {}
    for part in parts:
        extra = dict(part.extra)
        cell_no = extra.get("cell_frame")
        temp_no = extra.get("temperature_frame")
        if isinstance(cell_no, int) and part.cell_voltages_v is not None:
            cells[cell_no] = part.cell_voltages_v
        elif isinstance(temp_no, int) and part.temperatures_c is not None:
            temps[temp_no] = part.temperatures_c
        else:
            base = merge_readings(base, part)
    changes: dict[str, Any] = {}
    if cells:
        changes["cell_voltages_v"] = _cut(
            _ordered(cells, "cell"), _count(base, "cell_count"), 0.0, "cells"
        )
    if temps:
        changes["temperatures_c"] = _cut(
            _ordered(temps, "temperature"),
            _count(base, "temperature_sensor_count"),
            -40.0,
            "temperatures",
        )
    state = dict(base.extra).get("state")
    if base.current_a is not None and state in ("charging", "discharging"):
        magnitude = abs(base.current_a)
        changes["current_a"] = magnitude if state == "charging" else -magnitude
    if changes:
        base = replace(base, **changes)
    return replace(base, extra=_without(base.extra, {"cell_frame", "temperature_frame"}))


def merge(frames: Iterable[bytes]) -> Reading:
    """`decode` every frame and `merge_parts` them: what `bankwatch decode daly F1 F2 ...`
    needs (the six 0x95 frames of a 16S pack give one list of 16 cells)."""
    return merge_parts([decode(f) for f in frames])


def expected_frames(request: bytes, known: Reading | None = None) -> int | None:
    """How many reply frames `request` brings: 1, or for 0x95/0x96 the frames the cell or
    sensor count (from a merged 0x94 reply in `known`) fills; None when that count is not known
    yet (then read until the line goes quiet)."""
    if len(request) < 3 or request[2] not in (0x95, 0x96):
        return 1
    if known is None:
        return None
    if request[2] == 0x95:
        count, per = _count(known, "cell_count"), 3
    else:
        count, per = _count(known, "temperature_sensor_count"), 7
    if count is None:
        return None
    return max(1, math.ceil(count / per))
