"""Pylontech low-voltage CAN: the broadcast a master battery sends its inverter once a second.

Protocol: "CAN-Bus-protocol-PYLON-low-voltage-V1.2-20180408" (Pylontech), with the SMA/Victron
discharge voltage limit in 0x351 bytes 6-7 that real Pylontech frames carry; see
shared/vectors/PROTOCOLS.md section 1. CAN 2.0A, 11-bit ids, 500 kbit/s, little-endian.

    0x351  charge voltage limit, charge and discharge current limits, [discharge voltage limit]
    0x355  SOC, SOH, [high-resolution SOC]
    0x356  voltage (0.01 V), current (0.1 A, + charging), temperature (0.1 °C)
    0x359  protection and alarm flags, module count, "PN"
    0x35C  request flags: charge enable, discharge enable, force charge, full charge
    0x35E  manufacturer name, ASCII

The codec is pure (sans-I/O): `decode_frame` turns one frame into a partial Reading,
`encode_reading` turns a Reading into the frames a battery would send (the simulator's side),
and `PylontechCanDriver` merges a battery's frames into one Reading as they arrive.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, replace

from bankwatch.daemon.errors import FrameError
from bankwatch.daemon.model import Alarm, Protection, Reading, merge_readings

__all__ = [
    "FRAME_IDS",
    "FrameLengthError",
    "PylontechCanDriver",
    "UnknownFrameError",
    "decode_frame",
    "encode_frame",
    "encode_reading",
]


class UnknownFrameError(FrameError):
    """A CAN id this codec does not decode (an inverter's 0x305, another device's frames)."""


class FrameLengthError(FrameError):
    """A known id with too few data bytes."""


# Bit tables: data, not chains of `if`. (byte index, bit) -> flag.
_PROTECTION_BITS: tuple[tuple[int, int, Protection], ...] = (
    (0, 1, Protection.CELL_OVERVOLTAGE),
    (0, 2, Protection.CELL_UNDERVOLTAGE),
    (0, 3, Protection.OVER_TEMPERATURE),
    (0, 4, Protection.UNDER_TEMPERATURE),
    (0, 7, Protection.DISCHARGE_OVERCURRENT),
    (1, 0, Protection.CHARGE_OVERCURRENT),
    (1, 3, Protection.SYSTEM_ERROR),
)
_ALARM_BITS: tuple[tuple[int, int, Alarm], ...] = (
    (2, 1, Alarm.CELL_HIGH_VOLTAGE),
    (2, 2, Alarm.CELL_LOW_VOLTAGE),
    (2, 3, Alarm.HIGH_TEMPERATURE),
    (2, 4, Alarm.LOW_TEMPERATURE),
    (2, 7, Alarm.DISCHARGE_HIGH_CURRENT),
    (3, 0, Alarm.CHARGE_HIGH_CURRENT),
    (3, 3, Alarm.INTERNAL_COMMUNICATION),
)
# 0x35C byte 0.
_CHARGE_ENABLE = 0x80
_DISCHARGE_ENABLE = 0x40
_FORCE_CHARGE_1 = 0x20
_FORCE_CHARGE_2 = 0x10
_FULL_CHARGE = 0x08

_U16 = struct.Struct("<H")
_S16 = struct.Struct("<h")


def _u16(data: bytes, offset: int) -> int:
    return int(_U16.unpack_from(data, offset)[0])


def _s16(data: bytes, offset: int) -> int:
    return int(_S16.unpack_from(data, offset)[0])


def _ascii(data: bytes) -> str:
    return data.rstrip(b"\x00 ").decode("ascii", errors="replace")


def _decode_351(data: bytes) -> Reading:
    dvl = _u16(data, 6) / 10 if len(data) >= 8 else None
    return Reading(
        charge_voltage_limit_v=_u16(data, 0) / 10,
        # Pylon sends both limits positive; some emulators send the discharge limit negative.
        charge_current_limit_a=abs(_s16(data, 2)) / 10,
        discharge_current_limit_a=abs(_s16(data, 4)) / 10,
        discharge_voltage_limit_v=dvl or None,
    )


def _decode_355(data: bytes) -> Reading:
    soc: float = _u16(data, 0)
    if len(data) >= 6:
        # SMA/Victron add a 0.01 % SOC; new Pylontech firmware sends 0 there. Trust it only
        # when it agrees with the whole-percent value.
        hires = _u16(data, 4) / 100
        if hires and abs(hires - soc) < 1.0:
            soc = hires
    return Reading(soc_pct=soc, soh_pct=_u16(data, 2))


def _decode_356(data: bytes) -> Reading:
    return Reading(
        pack_voltage_v=_s16(data, 0) / 100,
        current_a=_s16(data, 2) / 10,
        temperatures_c=(_s16(data, 4) / 10,),
    )


def _decode_359(data: bytes) -> Reading:
    protections = Protection.NONE
    for byte, bit, pflag in _PROTECTION_BITS:
        if data[byte] >> bit & 1:
            protections |= pflag
    alarms = Alarm.NONE
    for byte, bit, aflag in _ALARM_BITS:
        if data[byte] >> bit & 1:
            alarms |= aflag
    modules = data[4] if len(data) >= 5 else None
    return Reading(protections=protections, alarms=alarms, modules_online=modules)


def _decode_35c(data: bytes) -> Reading:
    flags = data[0]
    return Reading(
        charge_enabled=bool(flags & _CHARGE_ENABLE),
        discharge_enabled=bool(flags & _DISCHARGE_ENABLE),
        extra=(
            ("force_charge_request_1", bool(flags & _FORCE_CHARGE_1)),
            ("force_charge_request_2", bool(flags & _FORCE_CHARGE_2)),
            ("full_charge_request", bool(flags & _FULL_CHARGE)),
        ),
    )


def _decode_35e(data: bytes) -> Reading:
    return Reading(manufacturer=_ascii(data))


def _encode_351(r: Reading) -> bytes | None:
    if r.charge_voltage_limit_v is None:
        return None
    return struct.pack(
        "<HhhH",
        _clamp_u16(r.charge_voltage_limit_v * 10),
        _clamp_s16((r.charge_current_limit_a or 0) * 10),
        _clamp_s16((r.discharge_current_limit_a or 0) * 10),
        _clamp_u16((r.discharge_voltage_limit_v or 0) * 10),
    )


def _encode_355(r: Reading) -> bytes | None:
    if r.soc_pct is None:
        return None
    return struct.pack(
        "<HH", _clamp_u16(r.soc_pct), _clamp_u16(r.soh_pct if r.soh_pct is not None else 100)
    )


def _encode_356(r: Reading) -> bytes | None:
    if r.pack_voltage_v is None:
        return None
    temp = r.temperature_c if r.temperature_c is not None else 0.0
    return struct.pack(
        "<hhh",
        _clamp_s16(r.pack_voltage_v * 100),
        _clamp_s16((r.current_a or 0) * 10),
        _clamp_s16(temp * 10),
    )


def _encode_359(r: Reading) -> bytes | None:
    if r.protections is None and r.alarms is None:
        return None
    out = bytearray(7)
    for byte, bit, pflag in _PROTECTION_BITS:
        if r.protections is not None and pflag in r.protections:
            out[byte] |= 1 << bit
    for byte, bit, aflag in _ALARM_BITS:
        if r.alarms is not None and aflag in r.alarms:
            out[byte] |= 1 << bit
    out[4] = min(max(r.modules_online or 1, 0), 255)
    out[5:7] = b"PN"
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


def _encode_35e(r: Reading) -> bytes | None:
    if not r.manufacturer:
        return None
    return r.manufacturer.encode("ascii", errors="replace")[:8].ljust(8, b" ")


def _clamp_u16(value: float) -> int:
    return min(max(round(value), 0), 0xFFFF)


def _clamp_s16(value: float) -> int:
    return min(max(round(value), -0x8000), 0x7FFF)


@dataclass(frozen=True, slots=True)
class _FrameSpec:
    can_id: int
    min_len: int
    name: str
    decode: Callable[[bytes], Reading]
    encode: Callable[[Reading], bytes | None]


_SPECS: dict[int, _FrameSpec] = {
    s.can_id: s
    for s in (
        _FrameSpec(0x351, 6, "limits", _decode_351, _encode_351),
        _FrameSpec(0x355, 4, "soc/soh", _decode_355, _encode_355),
        _FrameSpec(0x356, 6, "voltage/current/temperature", _decode_356, _encode_356),
        _FrameSpec(0x359, 4, "protection/alarm flags", _decode_359, _encode_359),
        _FrameSpec(0x35C, 1, "request flags", _decode_35c, _encode_35c),
        _FrameSpec(0x35E, 1, "manufacturer", _decode_35e, _encode_35e),
    )
}

FRAME_IDS: tuple[int, ...] = tuple(_SPECS)


def decode_frame(can_id: int, data: bytes, *, extended: bool = False) -> Reading:
    """One frame to a partial Reading (only the fields that frame carries).

    Raises UnknownFrameError for an id outside the profile and FrameLengthError when a known
    frame is too short; never returns half-decoded fields.
    """
    spec = None if extended else _SPECS.get(can_id)
    if spec is None:
        kind = "extended" if extended else "standard"
        raise UnknownFrameError(f"CAN id 0x{can_id:X} ({kind}) is not in the Pylontech profile")
    if len(data) > 8:
        raise FrameLengthError(f"CAN id 0x{can_id:03X}: {len(data)} data bytes, a frame holds 8")
    if len(data) < spec.min_len:
        raise FrameLengthError(
            f"CAN id 0x{can_id:03X} ({spec.name}): {len(data)} data bytes, "
            f"needs at least {spec.min_len}"
        )
    return spec.decode(bytes(data))


def encode_frame(can_id: int, reading: Reading) -> bytes | None:
    """One frame of the broadcast from a Reading; None when the reading lacks its fields."""
    spec = _SPECS.get(can_id)
    if spec is None:
        raise UnknownFrameError(f"CAN id 0x{can_id:X} is not in the Pylontech profile")
    return spec.encode(reading)


def encode_reading(reading: Reading) -> list[tuple[int, bytes]]:
    """The frames a Pylontech battery broadcasts for this reading, in broadcast order."""
    frames: list[tuple[int, bytes]] = []
    for can_id, spec in _SPECS.items():
        data = spec.encode(reading)
        if data is not None:
            frames.append((can_id, data))
    return frames


class PylontechCanDriver:
    """Merges one battery's broadcast frames into its latest Reading.

    Sans-I/O: the CAN link calls `on_frame` for each frame it receives and gets back the merged
    reading, or None for frames outside the profile (counted, not errors: a shared bus carries
    the inverter's frames too). A short frame raises FrameError for the link to log.
    """

    protocol = "pylontech-can"

    def __init__(self, subject: str) -> None:
        self.subject = subject
        self._reading = Reading(subject=subject)
        self.frames = 0
        self.ignored = 0

    def on_frame(self, can_id: int, data: bytes, extended: bool, now: float) -> Reading | None:
        try:
            part = decode_frame(can_id, data, extended=extended)
        except UnknownFrameError:
            self.ignored += 1
            return None
        self.frames += 1
        self._reading = replace(merge_readings(self._reading, part), at=now)
        return self._reading

    @property
    def reading(self) -> Reading:
        return self._reading
