"""Daly "BMS monitor" payloads 0x90-0x98: the 8 data bytes both framings carry.

Sources: Daly "UART_485 Communications Protocol V1.2" and "RS485+UART Protocol" PDFs, Daly CAN
V1.0, Daly's error table as dreadnought/python-daly-bms lists it, and real captures; written up
in shared/vectors/PROTOCOLS.md section 4 (vectors: tests/vectors/daly.json).

A UART frame (`drivers/daly.py`: ``A5 | address | data id | 08 | 8 bytes | checksum``) and a
CAN frame (`drivers/daly_can.py`: 29-bit id ``0x18 | data id | destination | source``) carry
exactly the same 8 data bytes, big-endian. This module reads and writes them once, so a
quantity has the same name, unit and sign whichever transport it came over; the two framing
modules only wrap and unwrap them.

    0x90 pack voltage, current, SOC         0x95 cell voltages, 3 per frame, several frames
    0x91 max/min cell voltage (and cell no) 0x96 temperatures, 7 per frame, several frames
    0x92 max/min temperature (and sensor)   0x97 balancing bits, one per cell
    0x93 state, MOSFETs, life, remaining    0x98 failure bits and fault code
    0x94 cell and sensor counts, cycles

**Multi-frame lists.** 0x95 and 0x96 are answered with several frames, numbered from 1 (every
capture; V1.2 says 0, which is accepted too). One such payload decodes to its three cells (or
seven temperatures) with its number in `extra` (`cell_frame` / `temperature_frame`);
`merge_parts` puts a poll together: lists concatenate in frame order and are cut to the cell
count of 0x94, temperature lists to the sensor count (unused slots read 0, i.e. -40 °C).

**Current sign.** The documents say current = (raw - 30000) x 0.1 A, positive when charging;
firmwares disagree in practice (dbus-serialbattery inverts it for some) and no capture has a
non-zero current whose direction is known otherwise. So, as PROTOCOLS.md advises, the 0x93
state byte decides: `decode_payload` of 0x90 gives the documented sign, and `merge_parts` gives
the magnitude the sign of the state when it says charging or discharging (the documented sign
when it says stationary). It is a function of one poll's payloads, so a UART poll, a CAN poll,
`bankwatch decode` and a replay all give the same current for the same bytes.

**0x98 failure bits** map onto the shared flags: a level-1 warning is an Alarm, a level-2 one a
Protection; pack ("sum") voltage limits share the cell-voltage flags; MOSFET, sensor and chip
faults are SYSTEM_ERROR. The raw bits stay in `extra` (`fault_bits`, hex) with the names of
every set bit (`faults`) and the fault code.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from bankwatch.drivers.bits import BitTable
from bankwatch.drivers.errors import FrameLengthError, IncompleteError, UnknownCommandError
from bankwatch.drivers.model import Alarm, Protection, Reading, merge_readings
from bankwatch.drivers.uart_common import clamp

__all__ = [
    "CELLS_PER_FRAME",
    "DATA_IDS",
    "FAULTS",
    "PAYLOAD_LEN",
    "STATES",
    "TEMPS_PER_FRAME",
    "count_of",
    "decode_payload",
    "encode_payload",
    "expected_frames",
    "merge_parts",
    "payload_name",
    "sign_disagrees",
    "signed_current",
]

PAYLOAD_LEN = 8
CELLS_PER_FRAME = 3
TEMPS_PER_FRAME = 7
_CURRENT_OFFSET = 30000
_TEMP_OFFSET = 40
_BALANCE_BYTES = 6

# 0x93 byte 0, as the Daly documents and the captures name it (0: no current flowing).
STATES = {0: "stationary", 1: "charging", 2: "discharging"}
_STATE_CODES = {name: code for code, name in STATES.items()}

# 0x98: (byte, bit, name, protection, alarm). Level 1 = warning (Alarm), level 2 = Protection.
_P = Protection
_A = Alarm
FAULTS = BitTable.by_byte(
    (
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
).with_unknown((range(56), _P.UNKNOWN))  # failure bytes 0-6; byte 7 is the fault code


def _u16(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 2], "big")


# ---- decoding ------------------------------------------------------------------------------


def _decode_90(d: bytes) -> Reading:
    return Reading(
        pack_voltage_v=_u16(d, 0) / 10,
        current_a=round((_u16(d, 4) - _CURRENT_OFFSET) / 10, 1),
        soc_pct=_u16(d, 6) / 10,
        extra=(("gathered_voltage_v", _u16(d, 2) / 10),),
    )


def _decode_91(d: bytes) -> Reading:
    return Reading(
        cell_voltage_max_v=_u16(d, 0) / 1000,
        cell_voltage_max_id=str(d[2]),
        cell_voltage_min_v=_u16(d, 3) / 1000,
        cell_voltage_min_id=str(d[5]),
    )


def _decode_92(d: bytes) -> Reading:
    return Reading(
        cell_temperature_max_c=float(d[0] - _TEMP_OFFSET),
        cell_temperature_max_id=str(d[1]),
        cell_temperature_min_c=float(d[2] - _TEMP_OFFSET),
        cell_temperature_min_id=str(d[3]),
    )


def _decode_93(d: bytes) -> Reading:
    return Reading(
        charge_enabled=bool(d[1]),
        discharge_enabled=bool(d[2]),
        remaining_ah=int.from_bytes(d[4:8], "big") / 1000,
        extra=(("state", STATES.get(d[0], f"unknown_{d[0]}")), ("bms_life", d[3])),
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
    cells = tuple(_u16(d, 1 + 2 * i) / 1000 for i in range(CELLS_PER_FRAME))
    return Reading(cell_voltages_v=cells, extra=(("cell_frame", d[0]),))


def _decode_96(d: bytes) -> Reading:
    temps = tuple(float(b - _TEMP_OFFSET) for b in d[1 : 1 + TEMPS_PER_FRAME])
    return Reading(temperatures_c=temps, extra=(("temperature_frame", d[0]),))


def _decode_97(d: bytes) -> Reading:
    # Bit 0 of byte 0 is cell 1 (PROTOCOLS.md: bit0 = cell 1 ... bit47 = cell 48); bytes 6-7
    # hold no cell, and 48 bits stay a signed 64-bit integer for InfluxDB.
    bits = int.from_bytes(d[:_BALANCE_BYTES], "little")
    return Reading(extra=(("balance_bits", bits), ("balancing", bits != 0)))


def _decode_98(d: bytes) -> Reading:
    found = FAULTS.decode_bytes(d[:7])
    return Reading(
        protections=found.protections,
        alarms=found.alarms,
        extra=(
            ("fault_bits", d[:7].hex()),
            ("fault_code", d[7]),
            ("faults", ",".join(found.names)),
        ),
    )


# ---- encoding (the simulator's side) -------------------------------------------------------


def _encode_90(r: Reading) -> list[bytes] | None:
    gathered = dict(r.extra).get("gathered_voltage_v", 0.0)
    return [
        struct.pack(
            ">HHHH",
            clamp((r.pack_voltage_v or 0.0) * 10, 0, 0xFFFF),
            clamp(gathered * 10 if isinstance(gathered, int | float) else 0, 0, 0xFFFF),
            clamp(_CURRENT_OFFSET + (r.current_a or 0.0) * 10, 0, 0xFFFF),
            clamp((r.soc_pct or 0.0) * 10, 0, 1000),
        )
    ]


def _extreme(
    values: tuple[float, ...] | None, hi: float | None, lo: float | None
) -> tuple[float, int, float, int]:
    """(max, its 1-based number, min, its number) from a list, else from the given extremes."""
    if values:
        top = max(range(len(values)), key=lambda i: values[i])
        bottom = min(range(len(values)), key=lambda i: values[i])
        return values[top], top + 1, values[bottom], bottom + 1
    return hi or 0.0, 1, lo or 0.0, 1


def _encode_91(r: Reading) -> list[bytes] | None:
    hi_v, hi_no, lo_v, lo_no = _extreme(
        r.cell_voltages_v, r.cell_voltage_max_v, r.cell_voltage_min_v
    )
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


def _encode_92(r: Reading) -> list[bytes] | None:
    hi_t, hi_no, lo_t, lo_no = _extreme(
        r.temperatures_c, r.cell_temperature_max_c, r.cell_temperature_min_c
    )
    return [
        bytes(
            (
                clamp(hi_t + _TEMP_OFFSET, 0, 255),
                hi_no,
                clamp(lo_t + _TEMP_OFFSET, 0, 255),
                lo_no,
                0,
                0,
                0,
                0,
            )
        )
    ]


def _state_of(r: Reading) -> int:
    state = dict(r.extra).get("state")
    if isinstance(state, str) and state in _STATE_CODES:
        return _STATE_CODES[state]
    tenths = round((r.current_a or 0.0) * 10)
    return 1 if tenths > 0 else 2 if tenths < 0 else 0


def _encode_93(r: Reading) -> list[bytes] | None:
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


def _encode_94(r: Reading) -> list[bytes] | None:
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


def _encode_95(r: Reading) -> list[bytes] | None:
    if not r.cell_voltages_v:
        return None
    mv = [clamp(v * 1000, 0, 0xFFFF) for v in r.cell_voltages_v]
    out = []
    for n in range(math.ceil(len(mv) / CELLS_PER_FRAME)):
        chunk = [*mv[CELLS_PER_FRAME * n : CELLS_PER_FRAME * (n + 1)], 0, 0][:CELLS_PER_FRAME]
        out.append(struct.pack(">BHHHB", n + 1, *chunk, 0))
    return out


def _encode_96(r: Reading) -> list[bytes] | None:
    if not r.temperatures_c:
        return None
    raw = [clamp(t + _TEMP_OFFSET, 0, 255) for t in r.temperatures_c]
    per = TEMPS_PER_FRAME
    return [
        bytes((n + 1, *[*raw[per * n : per * (n + 1)], *([0] * per)][:per]))
        for n in range(math.ceil(len(raw) / per))
    ]


def _encode_97(r: Reading) -> list[bytes] | None:
    bits = dict(r.extra).get("balance_bits", 0)
    if not isinstance(bits, int) or isinstance(bits, bool) or not 0 <= bits < 1 << 48:
        bits = 0
    return [bits.to_bytes(_BALANCE_BYTES, "little") + bytes(PAYLOAD_LEN - _BALANCE_BYTES)]


def _encode_98(r: Reading) -> list[bytes] | None:
    return [FAULTS.encode_bytes(r.protections, r.alarms, PAYLOAD_LEN)]


@dataclass(frozen=True, slots=True)
class _Spec:
    data_id: int
    name: str
    decode: Callable[[bytes], Reading]
    encode: Callable[[Reading], list[bytes] | None]


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
# 0x94 before the lists in a poll, so the cell and sensor counts are known first.
DATA_IDS: tuple[int, ...] = tuple(_SPECS)


def payload_name(data_id: int) -> str | None:
    spec = _SPECS.get(data_id)
    return None if spec is None else spec.name


def decode_payload(data_id: int, data: bytes) -> Reading:
    """The 8 data bytes for `data_id` to a partial Reading (current with the documented sign).

    Raises UnknownCommandError for a data id this module does not read and FrameLengthError
    for a payload that is not 8 bytes (both FrameError)."""
    spec = _SPECS.get(data_id)
    if spec is None:
        raise UnknownCommandError(f"daly: data id 0x{data_id:02X} is not decoded")
    if len(data) != PAYLOAD_LEN:
        raise FrameLengthError(
            f"daly 0x{data_id:02X} ({spec.name}): {len(data)} data bytes, needs {PAYLOAD_LEN}"
        )
    return spec.decode(bytes(data))


def encode_payload(data_id: int, reading: Reading) -> list[bytes] | None:
    """The payload(s) a board with `reading` answers `data_id` with; several for 0x95/0x96.

    Like a real board it answers 0x90..0x94 and 0x97/0x98 whatever the reading lacks (zeros);
    None for other ids, and for 0x95/0x96 when the reading has no cells/temperatures."""
    spec = _SPECS.get(data_id)
    return None if spec is None else spec.encode(reading)


# ---- a poll's payloads as one reading ------------------------------------------------------


def signed_current(current_a: float, state: object) -> float:
    """The 0x90 current with the direction the 0x93 state says (see the module doc)."""
    if state == "charging":
        return abs(current_a)
    if state == "discharging":
        return -abs(current_a)
    return current_a


def sign_disagrees(current_a: float, state: object) -> bool:
    """True when the documented sign and the state contradict each other by more than noise:
    the sign of a firmware that reports current inverted."""
    return (state == "discharging" and current_a > 0.5) or (
        state == "charging" and current_a < -0.5
    )


def count_of(reading: Reading, key: str) -> int | None:
    """`cell_count` or `temperature_sensor_count` of a merged 0x94, if known."""
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


def _list(
    parts: dict[int, tuple[float, ...]], count: int | None, unused: float, what: str, strict: bool
) -> tuple[float, ...] | None:
    if strict:
        return _cut(_ordered(parts, what), count, unused, f"{what}s")
    if count is None:
        return None  # a listener does not guess the length: it waits for 0x94
    try:
        return _cut(_ordered(parts, what), count, unused, f"{what}s")
    except IncompleteError:
        return None


_Extra = tuple[tuple[str, float | int | str | bool], ...]


def _without(extra: _Extra, keys: set[str]) -> _Extra:
    return tuple((k, v) for k, v in extra if k not in keys)


def merge_parts(parts: Sequence[Reading], *, strict: bool = True) -> Reading:
    """The decoded payloads of one poll (any order; later ones win) to one Reading.

    strict (a whole poll at hand): a list with a frame missing raises IncompleteError, and
    without a cell count trailing unused slots are dropped. Not strict (a listener folding
    replies in as they come): a list is left out until 0x94 and all its frames are there."""
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
        got = _list(cells, count_of(base, "cell_count"), 0.0, "cell", strict)
        if got is not None:
            changes["cell_voltages_v"] = got
    if temps:
        got = _list(temps, count_of(base, "temperature_sensor_count"), -40.0, "temperature", strict)
        if got is not None:
            changes["temperatures_c"] = got
    if base.current_a is not None:
        changes["current_a"] = signed_current(base.current_a, dict(base.extra).get("state"))
    if changes:
        base = replace(base, **changes)
    return replace(base, extra=_without(base.extra, {"cell_frame", "temperature_frame"}))


def expected_frames(data_id: int, known: Reading | None = None) -> int | None:
    """How many payloads a request for `data_id` brings: 1, or for 0x95/0x96 the frames the
    cell or sensor count (from a merged 0x94 reply in `known`) fills; None when that count is
    not known yet."""
    if data_id not in (0x95, 0x96):
        return 1
    if known is None:
        return None
    if data_id == 0x95:
        count, per = count_of(known, "cell_count"), CELLS_PER_FRAME
    else:
        count, per = count_of(known, "temperature_sensor_count"), TEMPS_PER_FRAME
    if count is None:
        return None
    return max(1, math.ceil(count / per))
