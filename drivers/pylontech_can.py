"""Pylontech low-voltage CAN, and the SMA/Victron/BYD "CAN-bus BMS" superset it grew into: the
broadcast a master battery sends its inverter once a second.

Protocol: "CAN-Bus-protocol-PYLON-low-voltage-V1.2-20180408" (Pylontech) for 0x351-0x35E, the
SMA/Victron extensions (0x35A, 0x35F, 0x370-0x382) as the SMA mapping, the MG Master LV guide and
the BYD LVS reverse-engineering describe them; see shared/vectors/PROTOCOLS.md section 1.
CAN 2.0A, 11-bit ids, 500 kbit/s, little-endian.

    0x351  charge voltage limit, charge and discharge current limits, [discharge voltage limit]
    0x354  (Discover only) nominal and remaining capacity, Ah
    0x355  SOC, SOH, [high-resolution SOC, 0.01 %]
    0x356  voltage (0.01 V; some makers 0.1 V), current (0.1 A, + charging), temperature (0.1 °C)
    0x359  protection and alarm flags, module count, "PN" (old Pylontech firmware, Pytes "PY")
    0x35A  SMA/Victron alarm and warning two-bit pairs (new Pylontech firmware: all zero = OK)
    0x35C  request flags: charge enable, discharge enable, force charge, full charge
    0x35E  manufacturer name, ASCII
    0x35F  product code, firmware version, capacity
    0x370  0x371  product name, ASCII, in two halves; 0x382 product name (BYD)
    0x372  modules online, blocking charge, blocking discharge, offline
    0x373  min and max cell voltage (mV) and temperature (K)
    0x374-0x377  ids of the min-V, max-V, min-T and max-T cells, ASCII
    0x378  charged and discharged energy, u32 each (0.1 kWh as BYD sends; MG says 0.01 kWh)
    0x379  installed capacity, Ah

Dialects disagree (all in PROTOCOLS.md): the 0x356 voltage scale (Discover AES sends 0.1 V),
which alarm frame is sent (0x359 or 0x35A), what "OK" looks like in 0x35A (SMA/Victron/BYD send
the pair `10`, Pylontech sends zeros; bankwatch reads only `01` as active, which fits both), the
unit of the 0x378 energy counters. Frames are decoded for what they say (`decode_frame`, pure);
`PylontechCanDriver` merges a battery's frames, picks the 0x356 scale that fits the 0x351 limits,
and flags what contradicts itself (`warnings`), never raising for it.

Per-frame decoding is on the hot path of a busy bus: precompiled struct unpackers, flag masks
looked up in tables built at import, no enum iteration and no pydantic per frame.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bankwatch.drivers.errors import FrameLengthError, UnknownCommandError
from bankwatch.drivers.model import Alarm, Protection, Reading

__all__ = [
    "BROADCAST_IDS",
    "ENERGY_KWH_PER_COUNT",
    "FRAME_IDS",
    "FrameLengthError",
    "PylontechCanDriver",
    "UnknownCommandError",
    "decode_fields",
    "decode_frame",
    "encode_frame",
    "encode_reading",
]

log = logging.getLogger(__name__)


# 0x359 bit tables (Pylon V1.2): data, not chains of `if`. (byte index, bit) -> flag.
# Byte 1 bit 7 and byte 3 bit 7 are unused in the PDF; Battery-Emulator and ArminJo's emulator
# put "system error" / "system warning" there. Nothing else uses those bits, so both are read.
_PROTECTION_BITS: tuple[tuple[int, int, Protection], ...] = (
    (0, 1, Protection.CELL_OVERVOLTAGE),
    (0, 2, Protection.CELL_UNDERVOLTAGE),
    (0, 3, Protection.OVER_TEMPERATURE),
    (0, 4, Protection.UNDER_TEMPERATURE),
    (0, 7, Protection.DISCHARGE_OVERCURRENT),
    (1, 0, Protection.CHARGE_OVERCURRENT),
    (1, 3, Protection.SYSTEM_ERROR),
    (1, 7, Protection.SYSTEM_ERROR),
)
_ALARM_BITS: tuple[tuple[int, int, Alarm], ...] = (
    (2, 1, Alarm.CELL_HIGH_VOLTAGE),
    (2, 2, Alarm.CELL_LOW_VOLTAGE),
    (2, 3, Alarm.HIGH_TEMPERATURE),
    (2, 4, Alarm.LOW_TEMPERATURE),
    (2, 7, Alarm.DISCHARGE_HIGH_CURRENT),
    (3, 0, Alarm.CHARGE_HIGH_CURRENT),
    (3, 3, Alarm.INTERNAL_COMMUNICATION),
    (3, 7, Alarm.SYSTEM),
)
# 0x35A: two bits per condition, `01` = active, `10` = clear, `11` = not supported, `00` = clear
# (new Pylontech firmware). Bytes 0-3 are alarms (the battery protects itself), bytes 4-7 the
# matching warnings. (byte, pair) -> alarm-level flag, warning-level flag.
_SMA_PAIRS: tuple[tuple[int, int, Protection | Alarm, Alarm], ...] = (
    (0, 0, Protection.SYSTEM_ERROR, Alarm.SYSTEM),  # general
    (0, 1, Protection.CELL_OVERVOLTAGE, Alarm.CELL_HIGH_VOLTAGE),
    (0, 2, Protection.CELL_UNDERVOLTAGE, Alarm.CELL_LOW_VOLTAGE),
    (0, 3, Protection.OVER_TEMPERATURE, Alarm.HIGH_TEMPERATURE),
    (1, 0, Protection.UNDER_TEMPERATURE, Alarm.LOW_TEMPERATURE),
    (1, 1, Protection.OVER_TEMPERATURE, Alarm.HIGH_TEMPERATURE),  # while charging
    (1, 2, Protection.UNDER_TEMPERATURE, Alarm.LOW_TEMPERATURE),  # while charging
    (1, 3, Protection.DISCHARGE_OVERCURRENT, Alarm.DISCHARGE_HIGH_CURRENT),
    (2, 0, Protection.CHARGE_OVERCURRENT, Alarm.CHARGE_HIGH_CURRENT),
    (2, 1, Protection.SYSTEM_ERROR, Alarm.SYSTEM),  # contactor
    (2, 2, Protection.SHORT_CIRCUIT, Alarm.SYSTEM),
    (2, 3, Protection.SYSTEM_ERROR, Alarm.INTERNAL_COMMUNICATION),  # BMS internal
    (3, 0, Alarm.CELL_IMBALANCE, Alarm.CELL_IMBALANCE),
)
# 0x35C byte 0.
_CHARGE_ENABLE = 0x80
_DISCHARGE_ENABLE = 0x40
_FORCE_CHARGE_1 = 0x20
_FORCE_CHARGE_2 = 0x10
_FULL_CHARGE = 0x08

# How many kWh one count of the 0x378 energy counters is. BYD LVS captures fit 0.1 kWh (211.2
# kWh charged on a two-year-old 10 kWh tower); the MG Master LV guide says 0.01 kWh.
ENERGY_KWH_PER_COUNT = 0.1
_KELVIN = 273.15


def _masks(table: Iterable[tuple[int, int, int]]) -> tuple[tuple[int, ...], ...]:
    """Per byte position, the OR of the flag values its set bits stand for, for all 256 values."""
    by_byte: dict[int, list[tuple[int, int]]] = {}
    for byte, bit_mask, value in table:
        by_byte.setdefault(byte, []).append((bit_mask, value))
    out: list[tuple[int, ...]] = []
    for byte in range(8):
        entries = by_byte.get(byte, [])
        out.append(
            tuple(
                _or(value for bit_mask, value in entries if raw & bit_mask == bit_mask)
                for raw in range(256)
            )
        )
    return tuple(out)


def _or(values: Iterable[int]) -> int:
    acc = 0
    for v in values:
        acc |= v
    return acc


def _sma_tables(kind: type[Protection] | type[Alarm]) -> tuple[tuple[int, ...], ...]:
    """Per byte of 0x35A, raw value -> mask of `kind` flags whose pair reads `01`."""
    out: list[list[int]] = [[0] * 256 for _ in range(8)]
    for level in (0, 1):
        for byte, pair, alarm_flag, warn_flag in _SMA_PAIRS:
            flag = alarm_flag if level == 0 else warn_flag
            if not isinstance(flag, kind):
                continue
            pos = byte + 4 * level
            for raw in range(256):
                if (raw >> (2 * pair)) & 0b11 == 0b01:
                    out[pos][raw] |= flag.value
    # A pair no row names reading `01`: an unknown protection (bytes 0-3) or warning (4-7).
    named = {(byte, pair) for byte, pair, _, _ in _SMA_PAIRS}
    unknown = Protection.UNKNOWN if kind is Protection else Alarm.UNKNOWN
    for pos in range(4) if kind is Protection else range(4, 8):
        for pair in range(4):
            if (pos % 4, pair) in named:
                continue
            for raw in range(256):
                if (raw >> (2 * pair)) & 0b11 == 0b01:
                    out[pos][raw] |= unknown.value
    return tuple(tuple(t) for t in out)


def _unnamed(table: Iterable[tuple[int, int, object]], byte_range: range) -> list[tuple[int, int]]:
    """(byte, bit) of the bits no row of `table` names, in `byte_range`."""
    named = {(byte, bit) for byte, bit, _ in table}
    return [(b, bit) for b in byte_range for bit in range(8) if (b, bit) not in named]


# A bit of a protection byte (0-1) or an alarm byte (2-3) that no row names is an unknown
# protection or warning: surfaced, not dropped (bankwatch.drivers.bits).
_UNNAMED_P359 = _unnamed(_PROTECTION_BITS, range(2))
_UNNAMED_A359 = _unnamed(_ALARM_BITS, range(2, 4))
_P359 = _masks(
    [(b, 1 << bit, f.value) for b, bit, f in _PROTECTION_BITS]
    + [(b, 1 << bit, Protection.UNKNOWN.value) for b, bit in _UNNAMED_P359]
)
_A359 = _masks(
    [(b, 1 << bit, f.value) for b, bit, f in _ALARM_BITS]
    + [(b, 1 << bit, Alarm.UNKNOWN.value) for b, bit in _UNNAMED_A359]
)
_P35A = _sma_tables(Protection)
_A35A = _sma_tables(Alarm)

# Flag objects by mask: building an enum.Flag from an int per frame is slow; there are few
# distinct masks in practice, so they are made once and kept.
_PROTECTIONS: dict[int, Protection] = {}
_ALARMS: dict[int, Alarm] = {}


def _protection(mask: int) -> Protection:
    flag = _PROTECTIONS.get(mask)
    if flag is None:
        flag = _PROTECTIONS[mask] = Protection(mask)
    return flag


def _alarm(mask: int) -> Alarm:
    flag = _ALARMS.get(mask)
    if flag is None:
        flag = _ALARMS[mask] = Alarm(mask)
    return flag


_LIMITS8 = struct.Struct("<HhhH")
_LIMITS6 = struct.Struct("<Hhh")
_U16U16 = struct.Struct("<HH")
_U16 = struct.Struct("<H")
_S16X3 = struct.Struct("<hhh")
_U32U32 = struct.Struct("<II")
_U16X4 = struct.Struct("<HHHH")


def _ascii(data: bytes) -> str:
    return data.split(b"\x00", 1)[0].strip().decode("ascii", errors="replace")


# --- decoders: one frame -> the Reading fields it carries ----------------------------------------

Fields = dict[str, Any]


def _decode_351(data: bytes) -> Fields:
    if len(data) >= 8:
        cvl, ccl, dcl, dvl = _LIMITS8.unpack_from(data)
    else:
        cvl, ccl, dcl = _LIMITS6.unpack_from(data)
        dvl = 0
    # Pylon sends both current limits positive; some emulators send the discharge limit negative.
    return {
        "charge_voltage_limit_v": cvl / 10,
        "charge_current_limit_a": abs(ccl) / 10,
        "discharge_current_limit_a": abs(dcl) / 10,
        "discharge_voltage_limit_v": dvl / 10 if dvl else None,
    }


def _decode_354(data: bytes) -> Fields:
    nominal, remaining = _U16U16.unpack_from(data)
    return {"design_ah": float(nominal), "remaining_ah": float(remaining)}


def _decode_355(data: bytes) -> Fields:
    soc, soh = _U16U16.unpack_from(data)
    value: float = soc
    if len(data) >= 6:
        # SMA/Victron add a 0.01 % SOC; new Pylontech firmware sends 0 there. It is used only
        # when it agrees with the whole-percent value (the driver flags it when it does not).
        hires = _U16.unpack_from(data, 4)[0] / 100
        if hires and abs(hires - soc) < 1.0:
            value = hires
    return {"soc_pct": value, "soh_pct": soh}


def _decode_356(data: bytes) -> Fields:
    volts, current, temp = _S16X3.unpack_from(data)
    return {
        "pack_voltage_v": volts / 100,
        "current_a": current / 10,
        "temperatures_c": (temp / 10,),
    }


def _decode_359(data: bytes) -> Fields:
    b0, b1, b2, b3 = data[0], data[1], data[2], data[3]
    out: Fields = {
        "protections": _protection(_P359[0][b0] | _P359[1][b1]),
        "alarms": _alarm(_A359[2][b2] | _A359[3][b3]),
    }
    if len(data) >= 5:
        out["modules_online"] = data[4]
    unknown = _unknown_359(data)
    if unknown:
        out["extra"] = unknown
    return out


def _unknown_359(data: bytes) -> tuple[tuple[str, str], ...]:
    """The numbers (8 x byte + bit) of set bits no row names, as the other codecs give them."""
    out = []
    for key, cells in (("protections_active", _UNNAMED_P359), ("alarms_active", _UNNAMED_A359)):
        names = [f"unknown_bit_{8 * b + bit}" for b, bit in cells if data[b] >> bit & 1]
        if names:
            out.append((key, ",".join(names)))
    return tuple(out)


def _decode_35a(data: bytes) -> Fields:
    p = a = 0
    for i, raw in enumerate(data):
        p |= _P35A[i][raw]
        a |= _A35A[i][raw]
    return {"protections": _protection(p), "alarms": _alarm(a)}


def _decode_35c(data: bytes) -> Fields:
    flags = data[0]
    return {
        "charge_enabled": bool(flags & _CHARGE_ENABLE),
        "discharge_enabled": bool(flags & _DISCHARGE_ENABLE),
        "extra": (
            ("force_charge_request_1", bool(flags & _FORCE_CHARGE_1)),
            ("force_charge_request_2", bool(flags & _FORCE_CHARGE_2)),
            ("full_charge_request", bool(flags & _FULL_CHARGE)),
        ),
    }


def _decode_35e(data: bytes) -> Fields:
    return {"manufacturer": _ascii(data)}


def _decode_35f(data: bytes) -> Fields:
    code = data[0:2]
    product = code.decode("ascii") if code.isalpha() else f"0x{code.hex().upper()}"
    extra: list[tuple[str, str | int]] = [("product_code", product)]
    if len(data) >= 6:
        # SMA: "online capacity"; BYD: "available capacity" (it tracks remaining Ah there).
        extra.append(("capacity_35f_ah", _U16.unpack_from(data, 4)[0]))
    return {"firmware": f"{data[2]:x}.{data[3]:02x}", "extra": tuple(extra)}


def _decode_name(data: bytes) -> Fields:
    return {"model": _ascii(data)}


def _decode_372(data: bytes) -> Fields:
    counts = _U16X4.unpack_from(data.ljust(8, b"\x00"))
    n = len(data) // 2
    names = (
        "modules_online",
        "modules_blocking_charge",
        "modules_blocking_discharge",
        "modules_offline",
    )
    return {names[i]: counts[i] for i in range(n)}


def _decode_373(data: bytes) -> Fields:
    vmin, vmax = _U16U16.unpack_from(data)
    out: Fields = {"cell_voltage_min_v": vmin / 1000, "cell_voltage_max_v": vmax / 1000}
    if len(data) >= 8:
        tmin, tmax = _U16U16.unpack_from(data, 4)
        out["cell_temperature_min_c"] = round(tmin - _KELVIN, 2)
        out["cell_temperature_max_c"] = round(tmax - _KELVIN, 2)
    return out


def _id_decoder(field: str) -> Callable[[bytes], Fields]:
    def decode(data: bytes) -> Fields:
        return {field: _ascii(data)}

    return decode


def _decode_378(data: bytes) -> Fields:
    charged, discharged = _U32U32.unpack_from(data)
    return {
        "charged_energy_kwh": round(charged * ENERGY_KWH_PER_COUNT, 3),
        "discharged_energy_kwh": round(discharged * ENERGY_KWH_PER_COUNT, 3),
    }


def _decode_379(data: bytes) -> Fields:
    return {"design_ah": float(_U16.unpack_from(data)[0])}


# --- encoders: a Reading -> the frame a battery would send (the simulator's side) ----------------


def _clamp_u16(value: float) -> int:
    return min(max(round(value), 0), 0xFFFF)


def _clamp_s16(value: float) -> int:
    return min(max(round(value), -0x8000), 0x7FFF)


def _clamp_u32(value: float) -> int:
    return min(max(round(value), 0), 0xFFFFFFFF)


def _encode_351(r: Reading) -> bytes | None:
    if r.charge_voltage_limit_v is None:
        return None
    return _LIMITS8.pack(
        _clamp_u16(r.charge_voltage_limit_v * 10),
        _clamp_s16((r.charge_current_limit_a or 0) * 10),
        _clamp_s16((r.discharge_current_limit_a or 0) * 10),
        _clamp_u16((r.discharge_voltage_limit_v or 0) * 10),
    )


def _encode_354(r: Reading) -> bytes | None:
    if r.design_ah is None or r.remaining_ah is None:
        return None
    return _U16U16.pack(_clamp_u16(r.design_ah), _clamp_u16(r.remaining_ah))


def _encode_355(r: Reading) -> bytes | None:
    if r.soc_pct is None:
        return None
    soh = r.soh_pct if r.soh_pct is not None else 100
    return _U16U16.pack(_clamp_u16(r.soc_pct), _clamp_u16(soh))


def _encode_356(r: Reading) -> bytes | None:
    if r.pack_voltage_v is None:
        return None
    temp = r.temperature_c if r.temperature_c is not None else 0.0
    return _S16X3.pack(
        _clamp_s16(r.pack_voltage_v * 100),
        _clamp_s16((r.current_a or 0) * 10),
        _clamp_s16(temp * 10),
    )


def _encode_359(r: Reading) -> bytes | None:
    if r.protections is None and r.alarms is None:
        return None
    out = bytearray(7)
    for byte, bit, pflag in _PROTECTION_BITS:
        if bit == 7 and byte == 1:
            continue  # the emulators' spelling of system error; bit 3 is the PDF's
        if r.protections is not None and pflag in r.protections:
            out[byte] |= 1 << bit
    for byte, bit, aflag in _ALARM_BITS:
        if r.alarms is not None and aflag in r.alarms:
            out[byte] |= 1 << bit
    out[4] = min(max(r.modules_online or 1, 0), 255)
    out[5:7] = b"PN"
    return bytes(out)


def _encode_35a(r: Reading) -> bytes | None:
    if r.protections is None and r.alarms is None:
        return None
    out = bytearray(8)
    for level in (0, 1):
        for byte, pair, alarm_flag, warn_flag in _SMA_PAIRS:
            flag = alarm_flag if level == 0 else warn_flag
            active = (
                flag in r.protections
                if isinstance(flag, Protection) and r.protections is not None
                else isinstance(flag, Alarm) and r.alarms is not None and flag in r.alarms
            )
            pos = byte + 4 * level
            shift = 2 * pair
            if out[pos] >> shift & 0b11 == 0b01:
                continue  # another condition of the same pair is already active
            out[pos] = (out[pos] & ~(0b11 << shift)) | ((0b01 if active else 0b10) << shift)
    return bytes(out)


def _encode_35c(r: Reading) -> bytes | None:
    if r.charge_enabled is None and r.discharge_enabled is None:
        return None
    flags = 0
    if r.charge_enabled is not False:
        flags |= _CHARGE_ENABLE
    if r.discharge_enabled is not False:
        flags |= _DISCHARGE_ENABLE
    extra = dict(r.extra)
    for key, bit in (
        ("force_charge_request_1", _FORCE_CHARGE_1),
        ("force_charge_request_2", _FORCE_CHARGE_2),
        ("full_charge_request", _FULL_CHARGE),
    ):
        if extra.get(key):
            flags |= bit
    return bytes((flags, 0))


def _ascii8(text: str | None) -> bytes | None:
    if not text:
        return None
    return text.encode("ascii", errors="replace")[:8].ljust(8, b" ")


def _encode_35e(r: Reading) -> bytes | None:
    return _ascii8(r.manufacturer)


def _encode_370(r: Reading) -> bytes | None:
    return _ascii8(r.model)


def _encode_371(r: Reading) -> bytes | None:
    if not r.model or len(r.model) <= 8:
        return None
    return _ascii8(r.model[8:16])


def _encode_372(r: Reading) -> bytes | None:
    if r.modules_online is None:
        return None
    return _U16X4.pack(
        _clamp_u16(r.modules_online),
        _clamp_u16(r.modules_blocking_charge or 0),
        _clamp_u16(r.modules_blocking_discharge or 0),
        _clamp_u16(r.modules_offline or 0),
    )


def _encode_373(r: Reading) -> bytes | None:
    vmin, vmax = r.min_cell_v, r.max_cell_v
    if vmin is None or vmax is None:
        return None
    tmin = r.cell_temperature_min_c
    tmax = r.cell_temperature_max_c
    if tmin is None or tmax is None:
        return _U16U16.pack(_clamp_u16(vmin * 1000), _clamp_u16(vmax * 1000))
    return _U16X4.pack(
        _clamp_u16(vmin * 1000),
        _clamp_u16(vmax * 1000),
        _clamp_u16(tmin + _KELVIN),
        _clamp_u16(tmax + _KELVIN),
    )


def _id_encoder(field: str) -> Callable[[Reading], bytes | None]:
    def encode(r: Reading) -> bytes | None:
        value = getattr(r, field)
        return _ascii8(value if isinstance(value, str) else None)

    return encode


def _encode_378(r: Reading) -> bytes | None:
    if r.charged_energy_kwh is None or r.discharged_energy_kwh is None:
        return None
    return _U32U32.pack(
        _clamp_u32(r.charged_energy_kwh / ENERGY_KWH_PER_COUNT),
        _clamp_u32(r.discharged_energy_kwh / ENERGY_KWH_PER_COUNT),
    )


def _encode_379(r: Reading) -> bytes | None:
    if r.design_ah is None:
        return None
    return _U16.pack(_clamp_u16(r.design_ah)).ljust(8, b"\x00")


def _no_encoder(r: Reading) -> bytes | None:
    return None


@dataclass(frozen=True, slots=True)
class _FrameSpec:
    can_id: int
    min_len: int
    name: str
    decode: Callable[[bytes], Fields]
    encode: Callable[[Reading], bytes | None]


_SPECS: dict[int, _FrameSpec] = {
    s.can_id: s
    for s in (
        _FrameSpec(0x351, 6, "limits", _decode_351, _encode_351),
        _FrameSpec(0x354, 4, "capacity (Discover)", _decode_354, _encode_354),
        _FrameSpec(0x355, 4, "soc/soh", _decode_355, _encode_355),
        _FrameSpec(0x356, 6, "voltage/current/temperature", _decode_356, _encode_356),
        _FrameSpec(0x359, 4, "protection/alarm flags", _decode_359, _encode_359),
        _FrameSpec(0x35A, 1, "alarm/warning pairs", _decode_35a, _encode_35a),
        _FrameSpec(0x35C, 1, "request flags", _decode_35c, _encode_35c),
        _FrameSpec(0x35E, 1, "manufacturer", _decode_35e, _encode_35e),
        _FrameSpec(0x35F, 4, "product/firmware", _decode_35f, _no_encoder),
        _FrameSpec(0x370, 1, "product name 1/2", _decode_name, _encode_370),
        _FrameSpec(0x371, 1, "product name 2/2", _decode_name, _encode_371),
        _FrameSpec(0x372, 2, "module counts", _decode_372, _encode_372),
        _FrameSpec(0x373, 4, "cell extremes", _decode_373, _encode_373),
        _FrameSpec(
            0x374,
            1,
            "min-voltage cell id",
            _id_decoder("cell_voltage_min_id"),
            _id_encoder("cell_voltage_min_id"),
        ),
        _FrameSpec(
            0x375,
            1,
            "max-voltage cell id",
            _id_decoder("cell_voltage_max_id"),
            _id_encoder("cell_voltage_max_id"),
        ),
        _FrameSpec(
            0x376,
            1,
            "min-temperature cell id",
            _id_decoder("cell_temperature_min_id"),
            _id_encoder("cell_temperature_min_id"),
        ),
        _FrameSpec(
            0x377,
            1,
            "max-temperature cell id",
            _id_decoder("cell_temperature_max_id"),
            _id_encoder("cell_temperature_max_id"),
        ),
        _FrameSpec(0x378, 8, "energy counters", _decode_378, _encode_378),
        _FrameSpec(0x379, 2, "installed capacity", _decode_379, _encode_379),
        _FrameSpec(0x382, 1, "product name", _decode_name, _encode_370),
    )
}

FRAME_IDS: tuple[int, ...] = tuple(_SPECS)
# What a Pylontech battery with the V1.2 firmware broadcasts (the simulator's default).
BROADCAST_IDS: tuple[int, ...] = (0x351, 0x355, 0x356, 0x359, 0x35C, 0x35E)


def _spec_for(can_id: int, data: bytes, extended: bool) -> _FrameSpec:
    spec = None if extended else _SPECS.get(can_id)
    if spec is None:
        kind = "extended" if extended else "standard"
        raise UnknownCommandError(f"CAN id 0x{can_id:X} ({kind}) is not in the Pylontech profile")
    n = len(data)
    if n > 8:
        raise FrameLengthError(f"CAN id 0x{can_id:03X}: {n} data bytes, a frame holds 8")
    if n < spec.min_len:
        raise FrameLengthError(
            f"CAN id 0x{can_id:03X} ({spec.name}): {n} data bytes, needs at least {spec.min_len}"
        )
    return spec


def decode_fields(can_id: int, data: bytes, *, extended: bool = False) -> Fields:
    """One frame to the Reading fields it carries, as a dict (the hot path's form).

    Raises UnknownCommandError for an id outside the profile and FrameLengthError when a known
    frame is too short; never returns half-decoded fields.
    """
    spec = _spec_for(can_id, data, extended)
    return spec.decode(bytes(data))


def decode_frame(can_id: int, data: bytes, *, extended: bool = False) -> Reading:
    """One frame to a partial Reading (only the fields that frame carries).

    The frame alone is read as it says; 0x356's voltage is at 0.01 V (the driver checks the
    scale against 0x351). Errors as `decode_fields`.
    """
    fields = decode_fields(can_id, data, extended=extended)
    return Reading(**{k: v for k, v in fields.items() if v is not None})


def encode_frame(can_id: int, reading: Reading) -> bytes | None:
    """One frame of the broadcast from a Reading; None when the reading lacks its fields."""
    spec = _SPECS.get(can_id)
    if spec is None:
        raise UnknownCommandError(f"CAN id 0x{can_id:X} is not in the Pylontech profile")
    return spec.encode(reading)


def encode_reading(reading: Reading, ids: Iterable[int] = BROADCAST_IDS) -> list[tuple[int, bytes]]:
    """The frames a battery broadcasts for this reading, in broadcast order (by default the
    Pylontech V1.2 set; pass `ids` for the SMA/Victron extensions)."""
    frames: list[tuple[int, bytes]] = []
    for can_id in ids:
        data = encode_frame(can_id, reading)
        if data is not None:
            frames.append((can_id, data))
    return frames


# --- the driver: one battery's frames merged, and checked against each other ---------------------


class PylontechCanDriver:
    """One battery's broadcast: its latest frame per id, and the Reading they make together.

    Sans-I/O. The CAN link calls `on_frame` for every frame; it keeps the frame when the id is
    in the profile (True) and ignores the rest (False, counted: a shared bus carries the
    inverter's frames too). A frame of the wrong length raises FrameError for the link to log.
    Per frame that is a table lookup, a length check and a dict store: the broadcast repeats
    every frame each second, so the frames are decoded only when the Reading is asked for (the
    daemon asks once per tick), never more often than they change.

    What contradicts itself is flagged, never raised: `warnings` lists the current
    contradictions (logged once when they appear, and when they go). The 0x356 voltage scale
    is chosen here, by which of 0.01 V and 0.1 V fits the 0x351 limits.
    """

    protocol = "pylontech-can"

    def __init__(self, subject: str, *, log_warnings: bool = True) -> None:
        self.subject = subject
        self._log_warnings = log_warnings
        self._frames: dict[int, bytes] = {}
        self._at = 0.0
        self._dirty = False
        self._reading = Reading(subject=subject)
        self._notes: dict[str, str] = {}
        self.frames = 0
        self.ignored = 0
        self.voltage_scale_v = 0.01

    def on_frame(self, can_id: int, data: bytes, extended: bool, now: float) -> bool:
        spec = None if extended else _SPECS.get(can_id)
        if spec is None:
            self.ignored += 1
            return False
        if not spec.min_len <= len(data) <= 8:
            _spec_for(can_id, data, extended)  # raises the FrameLengthError that says why
        self._frames[can_id] = data
        self._at = now
        self._dirty = True
        self.frames += 1
        return True

    @property
    def reading(self) -> Reading:
        if self._dirty:
            self._build()
        return self._reading

    @property
    def warnings(self) -> list[str]:
        if self._dirty:
            self._build()
        return list(self._notes.values())

    # --- assembling: decode the latest frames, then check them against each other ------------

    def _build(self) -> None:
        self._dirty = False
        frames = self._frames
        values: Fields = {"subject": self.subject, "at": self._at}
        extra: dict[str, Any] = {}
        decoded: dict[int, Fields] = {}
        for can_id, spec in _SPECS.items():
            data = frames.get(can_id)
            if data is None:
                continue
            fields = decoded[can_id] = spec.decode(data)
            for key, value in fields.items():
                if key == "extra":
                    extra.update(value)
                elif value is not None:
                    values[key] = value
        notes: dict[str, str] = {}
        self._limits(decoded, values, notes)
        self._voltage(decoded, values, notes)
        self._flags(decoded, values, notes)
        self._names(values)
        self._modules(decoded, notes)
        self._cells(decoded, notes)
        if 0x355 in frames:
            self._soc(frames[0x355], notes)
        if extra:
            values["extra"] = tuple(extra.items())
        self._reading = Reading(**values)
        self._log_changes(notes)

    def _limits(self, decoded: dict[int, Fields], values: Fields, notes: dict[str, str]) -> None:
        f = decoded.get(0x351)
        if f is None:
            return
        cvl, dvl = f["charge_voltage_limit_v"], f["discharge_voltage_limit_v"]
        if dvl is not None and dvl >= cvl:
            notes["limits"] = (
                f"0x351: discharge voltage limit {dvl:g} V is not below the charge voltage "
                f"limit {cvl:g} V"
            )

    def _voltage(self, decoded: dict[int, Fields], values: Fields, notes: dict[str, str]) -> None:
        """0.01 V (the Pylon PDF, every Pylontech/BYD/Victron capture) or 0.1 V (Discover AES,
        Sol-Ark's document): whichever puts the 0x356 voltage between the 0x351 limits."""
        limits = decoded.get(0x351)
        if 0x356 not in decoded or limits is None:
            return
        raw = _S16X3.unpack_from(self._frames[0x356])[0]
        cvl, dvl = limits["charge_voltage_limit_v"], limits["discharge_voltage_limit_v"]
        low = (dvl if dvl else cvl * 0.75) * 0.8
        high = cvl * 1.15
        for scale in (0.01, 0.1):
            volts = round(raw * scale, 3)
            if low <= volts <= high:
                if scale != self.voltage_scale_v and self._log_warnings:
                    log.info(
                        "%s: 0x356 voltage is sent in %g V steps (%g V fits the 0x351 limits)",
                        self.subject,
                        scale,
                        volts,
                    )
                self.voltage_scale_v = scale
                values["pack_voltage_v"] = volts
                return
        span = f"{dvl:g}-{cvl:g} V" if dvl else f"charge limit {cvl:g} V"
        notes["voltage"] = (
            f"0x356: voltage {raw / 100:g} V (or {raw / 10:g} V at 0.1 V) fits the 0x351 "
            f"limits ({span}) at neither scale"
        )
        values["pack_voltage_v"] = round(raw * self.voltage_scale_v, 3)

    def _flags(self, decoded: dict[int, Fields], values: Fields, notes: dict[str, str]) -> None:
        # Old and new firmware frames on one bus (0x359 and 0x35A): either one's flags count.
        p = a = 0
        for can_id in (0x359, 0x35A):
            f = decoded.get(can_id)
            if f is not None:
                p |= f["protections"].value
                a |= f["alarms"].value
        if 0x359 in decoded or 0x35A in decoded:
            values["protections"] = protections = _protection(p)
            values["alarms"] = _alarm(a)
            if protections and values.get("charge_enabled") and values.get("discharge_enabled"):
                names = ", ".join(str(m.name).lower() for m in _members(protections))
                notes["protection"] = (
                    f"protection active ({names}) while 0x35C enables charge and discharge"
                )

    def _names(self, values: Fields) -> None:
        frames = self._frames
        first = frames.get(0x370)
        if first is not None:
            second = frames.get(0x371, b"")
            # The second half keeps its leading space ("Discover" + " AES").
            tail = second.split(b"\x00", 1)[0].decode("ascii", errors="replace").rstrip()
            values["model"] = (_ascii(first) + tail).strip() or values.get("model")

    def _modules(self, decoded: dict[int, Fields], notes: dict[str, str]) -> None:
        f = decoded.get(0x372)
        if f is None:
            return
        online = f.get("modules_online")
        worst = max(f.get("modules_blocking_charge", 0), f.get("modules_blocking_discharge", 0))
        if online is not None and worst > online:
            notes["modules"] = f"0x372: {worst} modules blocking, but only {online} online"

    def _cells(self, decoded: dict[int, Fields], notes: dict[str, str]) -> None:
        f = decoded.get(0x373)
        if f is None:
            return
        vmin, vmax = f["cell_voltage_min_v"], f["cell_voltage_max_v"]
        problems = []
        if vmin > vmax:
            problems.append(f"min cell voltage {vmin:g} V above max {vmax:g} V")
        if not (0.5 <= vmin <= 5.0 and 0.5 <= vmax <= 5.0):
            problems.append(f"cell voltages {vmin:g}/{vmax:g} V are no cell's")
        tmin, tmax = f.get("cell_temperature_min_c"), f.get("cell_temperature_max_c")
        if tmin is not None and tmax is not None and tmin > tmax:
            problems.append(f"min cell temperature {tmin:g} °C above max {tmax:g} °C")
        if problems:
            notes["cells"] = "0x373: " + "; ".join(problems)

    def _soc(self, data: bytes, notes: dict[str, str]) -> None:
        if len(data) < 6:
            return
        soc = _U16.unpack_from(data)[0]
        hires = _U16.unpack_from(data, 4)[0] / 100
        if hires and abs(hires - soc) >= 1.0:
            notes["soc"] = (
                f"0x355: high-resolution SOC {hires:g} % disagrees with SOC {soc} %; using {soc} %"
            )

    def _log_changes(self, notes: dict[str, str]) -> None:
        old, self._notes = self._notes, notes
        if not self._log_warnings or old == notes:
            return
        for key, message in notes.items():
            if key not in old:
                log.warning("%s: %s", self.subject, message)
        for key, message in old.items():
            if key not in notes:
                log.info("%s: resolved: %s", self.subject, message)


def _members(flags: Protection) -> list[Protection]:
    return [m for m in Protection if m.value and m in flags]
