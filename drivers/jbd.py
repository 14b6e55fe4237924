"""JBD / Xiaoxiang / Overkill Solar smart BMS over UART or RS485 (protocol name `jbd`).

Sources: the "Jiabaida communication protocol" PDF and captures in syssi/esphome-jbd-bms,
aiobmsble's JBD tests and notes; written up in shared/vectors/PROTOCOLS.md section 5 (vectors:
tests/vectors/jbd.json). 9600 8N1; the same frames travel over BLE.

    request  DD | A5 (read) or 5A (write) | register | len | data | checksum (2, BE) | 77
    reply    DD | register | status (00 ok, 80 error) | len | data | checksum (2, BE) | 77

checksum = 0x10000 - (sum of every byte between the 2-byte head and the checksum), low 16 bits.
Registers polled: 0x03 basic info (voltage, current, capacities, cycles, production date,
balance and protection bits, software version, SOC, FET bits, cell and NTC counts, NTCs),
0x04 cell voltages (u16 mV each), 0x05 the hardware/model string. 0xAA (protection event
counters) decodes too but is not polled.

The protocol has **no address**: one BMS per line (or per UART). `poll_requests` ignores its
argument and `frame_address` is always None. Newer firmware appends bytes after the NTCs in
0x03 (humidity, alarm word, full-charge capacity, remaining, balance current); they are read by
position after the NTC list, never by a fixed frame length, and kept raw in `extra` too.

Protection bits map onto the shared flags: cell and pack over/under-voltage share the cell
flags, charge and discharge temperatures share the temperature flags, front-end IC error and
software MOSFET lock are SYSTEM_ERROR; the raw word stays in `extra["protection_bits"]`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from bankwatch.drivers.bits import Bit, BitTable
from bankwatch.drivers.errors import (
    ChecksumError,
    ErrorReplyError,
    FrameLengthError,
    MalformedFrameError,
    UnknownCommandError,
)
from bankwatch.drivers.model import Protection, Reading
from bankwatch.drivers.uart_common import ascii_field, clamp

__all__ = [
    "DEFAULT_BAUD",
    "GAP_S",
    "PROTOCOL",
    "REGISTERS",
    "REPLY_TIMEOUT_S",
    "decode",
    "encode_reply",
    "encode_request",
    "frame_address",
    "frame_length",
    "is_request",
    "poll_requests",
]

PROTOCOL = "jbd"
DEFAULT_BAUD = 9600
GAP_S = 0.05
REPLY_TIMEOUT_S = 0.5

_START = 0xDD
_END = 0x77
_READ = 0xA5
_WRITE = 0x5A
_OK = 0x00
_BASIC_MIN = 23  # data bytes of 0x03 up to and including the NTC count

REGISTERS: tuple[int, ...] = (0x03, 0x04, 0x05)

# protection bit -> flag
_PROTECTION_BITS = BitTable(
    Bit(bit, name, flag)
    for bit, name, flag in (
        (0, "cell_overvoltage", Protection.CELL_OVERVOLTAGE),
        (1, "cell_undervoltage", Protection.CELL_UNDERVOLTAGE),
        (2, "pack_overvoltage", Protection.CELL_OVERVOLTAGE),
        (3, "pack_undervoltage", Protection.CELL_UNDERVOLTAGE),
        (4, "charge_over_temperature", Protection.OVER_TEMPERATURE),
        (5, "charge_under_temperature", Protection.UNDER_TEMPERATURE),
        (6, "discharge_over_temperature", Protection.OVER_TEMPERATURE),
        (7, "discharge_under_temperature", Protection.UNDER_TEMPERATURE),
        (8, "charge_overcurrent", Protection.CHARGE_OVERCURRENT),
        (9, "discharge_overcurrent", Protection.DISCHARGE_OVERCURRENT),
        (10, "short_circuit", Protection.SHORT_CIRCUIT),
        (11, "front_end_ic_error", Protection.SYSTEM_ERROR),
        (12, "software_mos_lock", Protection.SYSTEM_ERROR),
    )
).with_unknown((range(16), Protection.UNKNOWN))  # bits 13-15 are reserved
# 0xAA: protection event counters, in order.
_COUNTERS = (
    "short_circuit",
    "charge_overcurrent",
    "discharge_overcurrent",
    "cell_overvoltage",
    "cell_undervoltage",
    "charge_over_temperature",
    "charge_under_temperature",
    "discharge_over_temperature",
    "discharge_under_temperature",
    "pack_overvoltage",
    "pack_undervoltage",
)
_KELVIN_TENTHS = 2731


def _checksum(body: bytes) -> int:
    return (0x10000 - sum(body)) & 0xFFFF


def _frame(head: int, body: bytes) -> bytes:
    return bytes((_START, head)) + body + _checksum(body).to_bytes(2, "big") + bytes((_END,))


def encode_request(register: int, data: bytes = b"", *, write: bool = False) -> bytes:
    """A read (or write) request for `register`: `DD A5 03 00 FF FD 77` for 0x03."""
    return _frame(_WRITE if write else _READ, bytes((register, len(data))) + data)


def poll_requests(address: int) -> list[bytes]:
    """0x03, 0x04, 0x05. JBD has no address: `address` is ignored (one BMS per line)."""
    del address
    return [encode_request(r) for r in REGISTERS]


# ---- framing -------------------------------------------------------------------------------


def frame_length(buf: bytes) -> int | None:
    """7 + the length byte, once the start byte is 0xDD; the end byte must then be 0x77."""
    if not buf:
        return None
    if buf[0] != _START:
        raise MalformedFrameError(f"jbd: byte 0x{buf[0]:02X} cannot start a frame (0xDD does)")
    if len(buf) < 4:
        return None
    total = 7 + buf[3]
    if len(buf) < total:
        return None
    if buf[total - 1] != _END:
        raise MalformedFrameError(
            f"jbd: byte {total - 1} is 0x{buf[total - 1]:02X}, a {total}-byte frame ends in 0x77"
        )
    return total


def is_request(frame: bytes) -> bool:
    return len(frame) > 1 and frame[1] in (_READ, _WRITE)


def frame_address(frame: bytes) -> int | None:
    """JBD frames carry no address."""
    del frame
    return None


def _check(frame: bytes) -> None:
    if len(frame) < 7:
        raise FrameLengthError(f"jbd: frame of {len(frame)} bytes, the shortest is 7")
    if frame[0] != _START:
        raise MalformedFrameError(f"jbd: start byte 0x{frame[0]:02X}, expected 0xDD")
    if len(frame) != 7 + frame[3]:
        raise FrameLengthError(
            f"jbd: frame of {len(frame)} bytes, its length byte says {7 + frame[3]}"
        )
    if frame[-1] != _END:
        raise MalformedFrameError(f"jbd: end byte 0x{frame[-1]:02X}, expected 0x77")
    got = int.from_bytes(frame[-3:-1], "big")
    want = _checksum(frame[2:-3])
    if got != want:
        raise ChecksumError(f"jbd: checksum 0x{got:04X} in frame, 0x{want:04X} computed")


# ---- decoding ------------------------------------------------------------------------------


def _u16(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 2], "big")


def _date(raw: int) -> str:
    return f"{2000 + (raw >> 9)}-{(raw >> 5) & 0x0F:02d}-{raw & 0x1F:02d}"


def _decode_03(d: bytes) -> Reading:
    if len(d) < _BASIC_MIN:
        raise FrameLengthError(f"jbd: basic info of {len(d)} bytes, needs {_BASIC_MIN}")
    ntc = d[22]
    end = _BASIC_MIN + 2 * ntc
    if len(d) < end:
        raise FrameLengthError(f"jbd: basic info of {len(d)} bytes, {ntc} NTCs need {end}")
    (volt, current, remaining, nominal, cycles, date, bal_lo, bal_hi, prot) = struct.unpack_from(
        ">HhHHHHHHH", d
    )
    version, soc, fets, cells = d[18], d[19], d[20], d[21]
    found = _PROTECTION_BITS.decode(prot)
    protections, names = found.protections, found.names
    temps = tuple(round((_u16(d, _BASIC_MIN + 2 * i) - _KELVIN_TENTHS) / 10, 1) for i in range(ntc))
    ext = d[end:]
    extra: list[tuple[str, float | int | str | bool]] = [
        ("manufacturing_date", _date(date)),
        ("balance_bits", bal_lo | bal_hi << 16),
        ("protection_bits", prot),
        ("protections_active", ",".join(names)),
        ("cell_count", cells),
    ]
    full_charge = None
    if ext:
        extra.append(("extension_hex", ext.hex()))
        if len(ext) >= 3:
            extra.append(("alarm_bits", _u16(ext, 1)))
        if len(ext) >= 5:
            full_charge = _u16(ext, 3) / 100
    return Reading(
        pack_voltage_v=volt / 100,
        current_a=current / 100,
        remaining_ah=remaining / 100,
        design_ah=nominal / 100,
        full_charge_ah=full_charge,
        cycles=cycles,
        soc_pct=float(soc),
        firmware=f"{version >> 4}.{version & 0x0F}",
        charge_enabled=bool(fets & 0x01),
        discharge_enabled=bool(fets & 0x02),
        protections=protections,
        temperatures_c=temps,
        extra=tuple(extra),
    )


def _decode_04(d: bytes) -> Reading:
    if len(d) % 2:
        raise FrameLengthError(f"jbd: cell data of {len(d)} bytes, 2 per cell")
    return Reading(cell_voltages_v=tuple(_u16(d, i) / 1000 for i in range(0, len(d), 2)))


def _decode_05(d: bytes) -> Reading:
    return Reading(model=ascii_field(d) or None)


def _decode_aa(d: bytes) -> Reading:
    need = 2 * len(_COUNTERS)
    if len(d) < need:
        raise FrameLengthError(f"jbd: counters of {len(d)} bytes, needs {need}")
    extra: list[tuple[str, float | int | str | bool]] = [
        (f"events_{name}", _u16(d, 2 * i)) for i, name in enumerate(_COUNTERS)
    ]
    if len(d) > need:
        extra.append(("events_trailing_hex", d[need:].hex()))
    return Reading(extra=tuple(extra))


# ---- encoding (the simulator's side) -------------------------------------------------------


def _firmware_byte(firmware: str | None) -> int:
    try:
        major, minor = (firmware or "").split(".", 1)
        return clamp(int(major), 0, 15) << 4 | clamp(int(minor), 0, 15)
    except ValueError:
        return 0x10


def _date_raw(text: object) -> int:
    try:
        year, month, day = (int(p) for p in str(text).split("-"))
    except ValueError:
        return 0
    return clamp(year - 2000, 0, 127) << 9 | clamp(month, 0, 15) << 5 | clamp(day, 0, 31)


def _int_extra(r: Reading, key: str) -> int | None:
    value = dict(r.extra).get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _encode_03(r: Reading) -> bytes | None:
    prot = _int_extra(r, "protection_bits")
    if prot is None:
        prot = _PROTECTION_BITS.encode(r.protections, None)
    balance = _int_extra(r, "balance_bits") or 0
    temps = (r.temperatures_c or ())[: (255 - _BASIC_MIN) // 2]  # what the length byte allows
    cells = len(r.cell_voltages_v or ()) or (_int_extra(r, "cell_count") or 0)
    head = struct.pack(
        ">HhHHHHHHHBBBBB",
        clamp((r.pack_voltage_v or 0.0) * 100, 0, 0xFFFF),
        clamp((r.current_a or 0.0) * 100, -0x8000, 0x7FFF),
        clamp((r.remaining_ah or 0.0) * 100, 0, 0xFFFF),
        clamp((r.design_ah or r.full_charge_ah or 0.0) * 100, 0, 0xFFFF),
        clamp(r.cycles or 0, 0, 0xFFFF),
        _date_raw(dict(r.extra).get("manufacturing_date", "")),
        balance & 0xFFFF,
        balance >> 16 & 0xFFFF,
        prot & 0xFFFF,
        _firmware_byte(r.firmware),
        clamp(r.soc_pct or 0.0, 0, 100),
        (r.charge_enabled is not False) | (r.discharge_enabled is not False) << 1,
        clamp(cells, 0, 255),
        len(temps),
    )
    return head + b"".join(
        clamp(t * 10 + _KELVIN_TENTHS, 0, 0xFFFF).to_bytes(2, "big") for t in temps
    )


def _encode_04(r: Reading) -> bytes | None:
    if not r.cell_voltages_v:
        return None
    cells = r.cell_voltages_v[:127]  # what the length byte allows
    return b"".join(clamp(v * 1000, 0, 0xFFFF).to_bytes(2, "big") for v in cells)


def _encode_05(r: Reading) -> bytes | None:
    return (r.model or "").encode("ascii", errors="replace")[:255]


@dataclass(frozen=True, slots=True)
class _Register:
    register: int
    name: str
    decode: Callable[[bytes], Reading]
    encode: Callable[[Reading], bytes | None] | None


_SPECS: dict[int, _Register] = {
    s.register: s
    for s in (
        _Register(0x03, "basic info", _decode_03, _encode_03),
        _Register(0x04, "cell voltages", _decode_04, _encode_04),
        _Register(0x05, "hardware version", _decode_05, _encode_05),
        _Register(0xAA, "protection counters", _decode_aa, None),
    )
}


def decode(frame: bytes, request: bytes | None = None) -> Reading:
    """One complete frame to a partial Reading; a request decodes to an empty one.

    Replies name their register, so `request` is not needed. Raises ChecksumError,
    FrameLengthError, MalformedFrameError, ErrorReplyError or UnknownCommandError."""
    frame = bytes(frame)
    _check(frame)
    if is_request(frame):
        return Reading()
    register, status = frame[1], frame[2]
    if status != _OK:
        raise ErrorReplyError(
            f"jbd: the BMS answered register 0x{register:02X} with error status 0x{status:02X}"
        )
    spec = _SPECS.get(register)
    if spec is None:
        raise UnknownCommandError(f"jbd: register 0x{register:02X} is not decoded")
    return spec.decode(frame[4:-3])


def encode_reply(request: bytes, reading: Reading) -> bytes | None:
    """The reply a JBD BMS gives to a read request, from `reading` (zeros for what it lacks);
    None for writes, for registers it does not simulate, and for 0x04 without cells."""
    request = bytes(request)
    _check(request)
    if len(request) < 3 or request[1] != _READ:
        return None
    spec = _SPECS.get(request[2])
    if spec is None or spec.encode is None:
        return None
    data = spec.encode(reading)
    if data is None:
        return None
    return _frame(spec.register, bytes((_OK, len(data))) + data)
