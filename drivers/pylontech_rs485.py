"""The Pylontech RS485/RS232 protocol ("ASCII-hex", VER 0x20) and its variants on the same
framing: Seplos v2, Pace (VER 0x25) and EG4 LifePower4 (CID1 0x4A).

Sources: Pylontech "RS485-protocol-pylon-low-voltage-V3.3-20180821" and "PYLON LFP Battery
communication protocol - RS485 V2.8"; the Seplos "BMS Communication Protocol V2.0"; the Pace and
EG4 layouts as documented by nkinnan/esphome-pace-bms. See shared/vectors/PROTOCOLS.md section 2.

Framing (every variant):

    ~ VER ADR CID1 CID2/RTN LENGTH INFO CHKSUM \\r

`~` and CR are raw bytes; everything between is sent as upper-case ASCII hex, two characters a
byte. LENGTH is 16 bits: the low 12 are LENID, the number of ASCII characters of INFO, the high
4 a checksum of LENID's three nibbles. CHKSUM is the two's complement of the sum of every ASCII
character from VER to the end of INFO. A reply carries RTN (0 = normal) where the request had its
command, so a reply does not say what it answers: decoding it needs its request.

The variants differ in the INFO of each command (units and layout), in which commands they know
and in whether the request's INFO names the pack. They are data: one `RS485Variant` per protocol,
a table of commands each with its INFO decoder and encoder. Each variant object keeps the serial
codec contract (`bankwatch.drivers.serial_codec.SerialCodec`).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from bankwatch.drivers.bits import BitTable
from bankwatch.drivers.errors import (
    ChecksumError,
    ErrorReplyError,
    FrameError,
    FrameLengthError,
    UnknownCommandError,
)
from bankwatch.drivers.model import Alarm, Protection, Reading

__all__ = [
    "EG4",
    "PACE",
    "PYLONTECH",
    "SEPLOS_V2",
    "VARIANTS",
    "AsciiFrame",
    "ChecksumError",
    "ErrorReplyError",
    "FrameLengthError",
    "RS485Variant",
    "UnknownCommandError",
    "WrongProtocolError",
    "build_frame",
    "parse_frame",
]


class WrongProtocolError(FrameError):
    """A well-formed frame of another variant (CID1 of EG4 given to the Pylontech codec)."""


SOI = 0x7E
EOI = 0x0D
_HEADER_END = 13  # SOI + VER ADR CID1 CID2 (8 chars) + LENGTH (4 chars)
_TRAILER = 5  # CHKSUM (4 chars) + EOI
_HEX = frozenset(b"0123456789ABCDEFabcdef")

_RTN_TEXT: dict[int, str] = {
    0x00: "normal",
    0x01: "VER error",
    0x02: "CHKSUM error",
    0x03: "LCHKSUM error",
    0x04: "CID2 invalid",
    0x05: "command format error",
    0x06: "invalid data",
    0x90: "ADR error",
    0x91: "internal communication error",
}


# --- framing ---------------------------------------------------------------------------------


def _lchksum(lenid: int) -> int:
    return (-((lenid & 0xF) + (lenid >> 4 & 0xF) + (lenid >> 8 & 0xF))) & 0xF


def _chksum(body: bytes) -> int:
    return (-sum(body)) & 0xFFFF


def build_frame(ver: int, adr: int, cid1: int, cid2: int, info: bytes = b"") -> bytes:
    """The wire bytes of a frame."""
    lenid = len(info) * 2
    if lenid > 0xFFF:
        raise FrameLengthError(f"INFO of {len(info)} bytes does not fit a frame (max 2047)")
    length = _lchksum(lenid) << 12 | lenid
    body = (
        f"{ver:02X}{adr:02X}{cid1:02X}{cid2:02X}{length:04X}".encode() + info.hex().upper().encode()
    )
    return b"~" + body + f"{_chksum(body):04X}".encode() + b"\r"


@dataclass(frozen=True, slots=True)
class AsciiFrame:
    ver: int
    adr: int
    cid1: int
    cid2: int  # the command in a request, RTN in a reply
    info: bytes


def frame_length(buf: bytes) -> int | None:
    """Length of the complete frame at the start of `buf`, None if more bytes are needed.
    Raises FrameError as soon as `buf` cannot be the start of a frame."""
    if not buf:
        return None
    if buf[0] != SOI:
        raise FrameError(f"frame must start with '~' (0x7E), got 0x{buf[0]:02X}")
    head = buf[1:_HEADER_END]
    if any(c not in _HEX for c in head):
        raise FrameError(f"header is not ASCII hex: {bytes(head)!r}")
    if len(buf) < _HEADER_END:
        return None
    length = int(buf[9:13], 16)
    lenid = length & 0xFFF
    if length >> 12 != _lchksum(lenid):
        raise ChecksumError(
            f"LCHKSUM 0x{length >> 12:X} in the frame, 0x{_lchksum(lenid):X} computed "
            f"for LENID {lenid}"
        )
    if lenid % 2:
        raise FrameLengthError(f"LENID {lenid} is odd: INFO is whole bytes of two characters")
    total = _HEADER_END + lenid + _TRAILER
    # A new frame starting inside this one means this one was cut short: give it up.
    inner = buf[1 : min(len(buf), total - 1)]
    if SOI in inner or EOI in inner:
        cut = min(i for i in (inner.find(SOI), inner.find(EOI)) if i >= 0) + 1
        raise FrameLengthError(
            f"frame cut short: LENID says {total} bytes, a frame boundary comes at byte {cut}"
        )
    if len(buf) < total:
        return None
    if buf[total - 1] != EOI:
        raise FrameError(
            f"frame of {total} bytes does not end with CR (0x0D): 0x{buf[total - 1]:02X}"
        )
    return total


def parse_frame(frame: bytes) -> AsciiFrame:
    """Check a whole frame (length, hex, LCHKSUM, CHKSUM) and split it into its fields."""
    frame = bytes(frame)
    total = frame_length(frame)
    if total is None:
        need = ""
        if len(frame) >= _HEADER_END:
            need = f", LENGTH says {_HEADER_END + (int(frame[9:13], 16) & 0xFFF) + _TRAILER}"
        raise FrameLengthError(f"frame truncated: {len(frame)} bytes{need}")
    if total != len(frame):
        raise FrameLengthError(f"frame is {len(frame)} bytes, its LENGTH field says {total}")
    chk_text = frame[-5:-1]
    if any(c not in _HEX for c in chk_text):
        raise FrameError(f"CHKSUM is not ASCII hex: {chk_text!r}")
    given = int(chk_text, 16)
    computed = _chksum(frame[1:-5])
    if given != computed:
        raise ChecksumError(f"CHKSUM 0x{given:04X} in the frame, 0x{computed:04X} computed")
    info_text = frame[_HEADER_END:-5]
    if any(c not in _HEX for c in info_text):
        raise FrameError("INFO is not ASCII hex")
    return AsciiFrame(
        ver=int(frame[1:3], 16),
        adr=int(frame[3:5], 16),
        cid1=int(frame[5:7], 16),
        cid2=int(frame[7:9], 16),
        info=bytes.fromhex(info_text.decode("ascii")),
    )


# --- reading INFO ----------------------------------------------------------------------------


class _Info:
    """A cursor over INFO bytes; running past the end is a FrameLengthError naming the field."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise FrameLengthError(
                f"INFO is {len(self.data)} bytes, {what} needs bytes {self.pos}..{end - 1}"
            )
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return int(struct.unpack(">H", self.take(2, what))[0])

    def s16(self, what: str) -> int:
        return int(struct.unpack(">h", self.take(2, what))[0])

    def u24(self, what: str) -> int:
        return int.from_bytes(self.take(3, what), "big")

    def u32(self, what: str) -> int:
        return int(struct.unpack(">I", self.take(4, what))[0])

    @property
    def left(self) -> int:
        return len(self.data) - self.pos

    def done(self, reserved: int = 0) -> None:
        """The layout is read: exactly `reserved` bytes may remain. More or fewer means the
        frame has another layout (another variant's reply to the same command)."""
        if self.left != reserved:
            raise FrameLengthError(
                f"INFO is {len(self.data)} bytes, this layout has {self.pos + reserved} "
                "(a reply of another protocol variant?)"
            )


def _ascii(raw: bytes) -> str:
    return raw.replace(b"\x00", b" ").decode("ascii", errors="replace").strip()


def _kelvin(raw: int, offset: int) -> float:
    return round((raw - offset) / 10, 1)


def _clamp(value: float, lo: int, hi: int) -> int:
    return min(max(round(value), lo), hi)


class _Out:
    """Builds INFO bytes for the simulator's replies."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def u8(self, v: float) -> _Out:
        self.buf.append(_clamp(v, 0, 0xFF))
        return self

    def u16(self, v: float) -> _Out:
        self.buf += struct.pack(">H", _clamp(v, 0, 0xFFFF))
        return self

    def s16(self, v: float) -> _Out:
        self.buf += struct.pack(">h", _clamp(v, -0x8000, 0x7FFF))
        return self

    def u24(self, v: float) -> _Out:
        self.buf += _clamp(v, 0, 0xFFFFFF).to_bytes(3, "big")
        return self

    def u32(self, v: float) -> _Out:
        self.buf += struct.pack(">I", _clamp(v, 0, 0xFFFFFFFF))
        return self

    def raw(self, b: bytes) -> _Out:
        self.buf += b
        return self

    def bytes(self) -> bytes:
        return bytes(self.buf)


def _cell_temps(temps: Sequence[float], cell_sensors: slice) -> tuple[float | None, float | None]:
    group = list(temps[cell_sensors]) or list(temps)
    if not group:
        return None, None
    return min(group), max(group)


def _temperature_fields(temps: tuple[float, ...], cell_sensors: slice) -> dict[str, Any]:
    """A module's sensors as Reading fields: the cell group's extremes and the MOSFET (T6)."""
    tmin, tmax = _cell_temps(temps, cell_sensors)
    return {
        "temperatures_c": temps or None,
        "cell_temperature_min_c": tmin,
        "cell_temperature_max_c": tmax,
        "mosfet_temperature_c": temps[5] if len(temps) >= 6 else None,
    }


def _read_cells(p: _Info) -> tuple[float, ...]:
    """The cell count and that many cell voltages (mV), as every variant sends them."""
    m = p.u8("cell count")
    return tuple(p.u16(f"cell {i + 1} voltage") / 1000 for i in range(m))


def _read_temps(p: _Info, count: int, offset: int) -> tuple[float, ...]:
    """`count` temperatures in 0.1 K with the variant's offset (2731, or Pace's 2730)."""
    return tuple(_kelvin(p.u16(f"temperature {i + 1}"), offset) for i in range(count))


def _write_temps(out: _Out, temps: Sequence[float], offset: int, count: int | None = None) -> None:
    out.u8(len(temps) if count is None else count)
    for t in temps:
        out.u16(t * 10 + offset)


def _write_cells(out: _Out, r: Reading) -> tuple[float, ...]:
    cells = r.cell_voltages_v or ()
    out.u8(len(cells))
    for v in cells:
        out.u16(v * 1000)
    return cells


def _soc(remaining_ah: float, full_ah: float) -> float | None:
    return round(remaining_ah / full_ah * 100, 1) if full_ah > 0 else None


def _states_to_alarms(
    cells: Sequence[int], temps: Sequence[int], charge: int, voltage: int, discharge: int | None
) -> Alarm:
    """The Pylontech family's state bytes (0 normal, 1 below the lower limit, 2 above the upper
    limit, 0xF0 other error) as alarms."""
    a = Alarm.NONE
    if 2 in cells or voltage == 2:
        a |= Alarm.CELL_HIGH_VOLTAGE
    if 1 in cells or voltage == 1:
        a |= Alarm.CELL_LOW_VOLTAGE
    if 2 in temps:
        a |= Alarm.HIGH_TEMPERATURE
    if 1 in temps:
        a |= Alarm.LOW_TEMPERATURE
    if charge == 2:
        a |= Alarm.CHARGE_HIGH_CURRENT
    if discharge == 2:
        a |= Alarm.DISCHARGE_HIGH_CURRENT
    return a


def _alarm_states(
    r: Reading, n_cells: int, n_temps: int
) -> tuple[list[int], list[int], int, int, int]:
    """The reverse, for the simulator: mark the extreme cell and sensor."""
    a = r.alarms or Alarm.NONE
    cells = [0] * n_cells
    volts = r.cell_voltages_v or ()
    if volts and Alarm.CELL_HIGH_VOLTAGE in a:
        cells[max(range(len(volts)), key=volts.__getitem__)] = 2
    if volts and Alarm.CELL_LOW_VOLTAGE in a:
        cells[min(range(len(volts)), key=volts.__getitem__)] = 1
    temps = [0] * n_temps
    if n_temps and Alarm.HIGH_TEMPERATURE in a:
        temps[0] = 2
    if n_temps and Alarm.LOW_TEMPERATURE in a:
        temps[-1] = 1
    voltage = 2 if Alarm.CELL_HIGH_VOLTAGE in a and not volts else 0
    voltage = 1 if Alarm.CELL_LOW_VOLTAGE in a and not volts else voltage
    charge = 2 if Alarm.CHARGE_HIGH_CURRENT in a else 0
    discharge = 2 if Alarm.DISCHARGE_HIGH_CURRENT in a else 0
    return cells, temps, charge, voltage, discharge


def _wire_temps(r: Reading) -> list[float]:
    """The sensors a reply carries: the reading's, then its MOSFET sensor as the sixth when the
    reading has five (the Pylontech US3000/US5000 order)."""
    temps = list(r.temperatures_c or ())
    if r.mosfet_temperature_c is not None and len(temps) == 5:
        temps.append(r.mosfet_temperature_c)
    return temps


# --- the commands: INFO decoders and encoders --------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Ctx:
    """What an INFO decoder may need from the request: the pack address and the request's INFO
    command byte (0xFF asks a master for the whole stack)."""

    address: int
    command: int | None


Decoder = Callable[[bytes, _Ctx], list[Reading]]
Encoder = Callable[[Reading, int], bytes]


@dataclass(frozen=True, slots=True)
class _Command:
    cid2: int
    name: str
    # "address": the request's INFO is one byte naming the pack (0xFF = all); "none": empty.
    request_info: Literal["address", "none"]
    decode: Decoder
    encode: Encoder | None = None


# Pylontech ---------------------------------------------------------------------------------------

_PYLON_T_OFFSET = 2731

# Status 1 (byte 0 of the five status bytes): protection bits.
_PYLON_STATUS1 = BitTable.of_flags(
    (
        (0, 0, Protection.CELL_OVERVOLTAGE),  # module over-voltage
        (0, 1, Protection.CELL_UNDERVOLTAGE),
        (0, 2, Protection.CHARGE_OVERCURRENT),
        (0, 4, Protection.DISCHARGE_OVERCURRENT),
        (0, 5, Protection.OVER_TEMPERATURE),  # discharge over-temperature
        (0, 6, Protection.OVER_TEMPERATURE),  # charge over-temperature
        (0, 7, Protection.CELL_UNDERVOLTAGE),  # module under-voltage
    )
).with_unknown((range(8), Protection.UNKNOWN))  # status 1 bit 3 is unused
_CHARGE_FET = 0x02  # status 2
_DISCHARGE_FET = 0x04


def _pylon_module(p: _Info) -> Reading:
    cells = _read_cells(p)
    temps = _read_temps(p, p.u8("temperature count"), _PYLON_T_OFFSET)
    current = p.s16("current") / 10
    voltage = p.u16("module voltage") / 1000
    remaining = p.u16("remaining capacity")
    items = p.u8("user-defined item count")
    full = p.u16("total capacity")
    cycles = p.u16("cycle count")
    if items >= 4:
        remaining = p.u24("remaining capacity (24-bit)")
        full = p.u24("total capacity (24-bit)")
    cell_sensors = slice(1, 5)  # T1 is the BMS board
    return Reading(
        pack_voltage_v=voltage,
        current_a=current,
        soc_pct=_soc(remaining, full),
        remaining_ah=remaining / 1000,
        full_charge_ah=full / 1000,
        cycles=cycles,
        cell_voltages_v=cells or None,
        **_temperature_fields(temps, cell_sensors),
    )


def _pylon_analog(info: bytes, ctx: _Ctx) -> list[Reading]:
    p = _Info(info)
    p.u8("INFOFLAG")
    command = p.u8("COMMAND")
    # Asked for the whole stack (0xFF), the master puts the module count where the command was.
    count = command if ctx.command == 0xFF else 1
    modules = [_pylon_module(p) for _ in range(count)]
    p.done()
    return modules


def _pylon_analog_encode(r: Reading, address: int) -> bytes:
    out = _Out().u8(0x10).u8(address)
    _write_cells(out, r)
    temps = _wire_temps(r)
    _write_temps(out, temps, _PYLON_T_OFFSET)
    full_mah = (r.full_charge_ah or 0) * 1000
    remaining_mah = (r.remaining_ah or 0) * 1000
    big = full_mah > 0xFFFE
    out.s16((r.current_a or 0) * 10).u16((r.pack_voltage_v or 0) * 1000)
    out.u16(0xFFFF if big else remaining_mah).u8(4 if big else 2)
    out.u16(0xFFFF if big else full_mah).u16(r.cycles or 0)
    if big:
        out.u24(remaining_mah).u24(full_mah)
    return out.bytes()


def _pylon_alarm(info: bytes, ctx: _Ctx) -> list[Reading]:
    p = _Info(info)
    p.u8("DATAFLAG")
    p.u8("COMMAND")
    cells = p.take(p.u8("cell count"), "cell states")
    temps = p.take(p.u8("temperature count"), "temperature states")
    charge = p.u8("charge-current state")
    voltage = p.u8("module-voltage state")
    discharge = p.u8("discharge-current state")
    status = p.take(5, "status 1-5")
    extra: list[tuple[str, float | int | str | bool]] = []
    cell_errors = status[3] | status[4] << 8
    if cell_errors:
        extra.append(("cell_error_bits", cell_errors))
    found = _PYLON_STATUS1.decode_bytes(bytes(status))
    extra += _unknown_names("protections_active", found.names)
    p.done()
    return [
        Reading(
            protections=found.protections,
            alarms=_states_to_alarms(cells, temps, charge, voltage, discharge),
            charge_enabled=bool(status[1] & _CHARGE_FET),
            discharge_enabled=bool(status[1] & _DISCHARGE_FET),
            extra=tuple(extra),
        )
    ]


def _unknown_names(key: str, names: Sequence[str]) -> list[tuple[str, float | int | str | bool]]:
    """The numbers of the set bits a table cannot name, as `key` (empty when none)."""
    unknown = [n for n in names if n.startswith("unknown_bit_")]
    return [(key, ",".join(unknown))] if unknown else []


def _pylon_alarm_encode(r: Reading, address: int) -> bytes:
    n_cells = len(r.cell_voltages_v or ())
    n_temps = len(_wire_temps(r))
    cells, temps, charge, voltage, discharge = _alarm_states(r, n_cells, n_temps)
    status1 = _PYLON_STATUS1.encode(r.protections, None)
    status2 = (0 if r.charge_enabled is False else _CHARGE_FET) | (
        0 if r.discharge_enabled is False else _DISCHARGE_FET
    )
    current = r.current_a or 0.0
    status3 = (0x80 if current > 0.1 else 0) | (0x40 if current < -0.1 else 0)
    status3 |= 0x08 if (r.soc_pct or 0) >= 100 else 0
    out = _Out().u8(0).u8(address).u8(n_cells).raw(bytes(cells)).u8(n_temps).raw(bytes(temps))
    out.u8(charge).u8(voltage).u8(discharge)
    return out.u8(status1).u8(status2).u8(status3).u8(0).u8(0).bytes()


def _pylon_management(info: bytes, ctx: _Ctx) -> list[Reading]:
    p = _Info(info)
    p.u8("COMMAND")  # 0x92 replies have no INFOFLAG
    cvl = p.u16("charge voltage limit") / 1000
    dvl = p.u16("discharge voltage limit") / 1000
    ccl = abs(p.s16("charge current limit")) / 10
    dcl = abs(p.s16("discharge current limit")) / 10
    status = p.u8("charge/discharge status")
    p.done()
    return [
        Reading(
            charge_voltage_limit_v=cvl,
            discharge_voltage_limit_v=dvl,
            charge_current_limit_a=ccl,
            discharge_current_limit_a=dcl,
            charge_enabled=bool(status & 0x80),
            discharge_enabled=bool(status & 0x40),
            extra=(
                ("force_charge_request_1", bool(status & 0x20)),
                ("force_charge_request_2", bool(status & 0x10)),
                ("full_charge_request", bool(status & 0x08)),
            ),
        )
    ]


def _pylon_management_encode(r: Reading, address: int) -> bytes:
    status = (0 if r.charge_enabled is False else 0x80) | (
        0 if r.discharge_enabled is False else 0x40
    )
    out = _Out().u8(address)
    out.u16((r.charge_voltage_limit_v or 0) * 1000).u16((r.discharge_voltage_limit_v or 0) * 1000)
    # Pylontech sends the discharge limit negative (UP2500 and US5000 captures).
    out.s16((r.charge_current_limit_a or 0) * 10).s16(-(r.discharge_current_limit_a or 0) * 10)
    return out.u8(status).bytes()


_PARAM_NAMES = (
    ("cell_high_voltage_limit_v", 1000),
    ("cell_low_voltage_limit_v", 1000),
    ("cell_under_voltage_limit_v", 1000),
    ("charge_high_temperature_limit_c", None),
    ("charge_low_temperature_limit_c", None),
    ("max_charge_current_a", -10),
    ("module_high_voltage_limit_v", 1000),
    ("module_low_voltage_limit_v", 1000),
    ("module_under_voltage_limit_v", 1000),
    ("discharge_high_temperature_limit_c", None),
    ("discharge_low_temperature_limit_c", None),
    ("max_discharge_current_a", -10),
)


def _pylon_parameters(info: bytes, ctx: _Ctx) -> list[Reading]:
    """0x47 system parameters: protection thresholds, not live values, so they go to `extra`."""
    p = _Info(info)
    p.u8("INFOFLAG")
    extra: list[tuple[str, float | int | str | bool]] = []
    for name, scale in _PARAM_NAMES:
        if scale is None:
            extra.append((name, _kelvin(p.u16(name), _PYLON_T_OFFSET)))
        elif scale < 0:
            extra.append((name, abs(p.s16(name)) / -scale))
        else:
            extra.append((name, p.u16(name) / scale))
    p.done()
    return [Reading(extra=tuple(extra))]


def _manufacturer_info(info: bytes, ctx: _Ctx) -> list[Reading]:
    """0x51: device name (10 ASCII), software version (2 bytes), manufacturer (20 ASCII)."""
    p = _Info(info)
    name = _ascii(p.take(10, "device name"))
    version = p.take(2, "software version")
    maker = _ascii(p.take(20, "manufacturer name"))
    p.done()
    return [
        Reading(
            model=name or None,
            firmware=f"{version[0]}.{version[1]}",
            manufacturer=maker or None,
        )
    ]


def _manufacturer_info_encode(r: Reading, address: int) -> bytes:
    major, minor = 0, 0
    if r.firmware:
        parts = [int(x) for x in r.firmware.split(".")[:2] if x.isdigit()]
        major, minor = [*parts, 0, 0][:2]
    name = (r.model or "").encode("ascii", "replace")[:10].ljust(10, b" ")
    maker = (r.manufacturer or "").encode("ascii", "replace")[:20].ljust(20, b" ")
    return name + bytes((major & 0xFF, minor & 0xFF)) + maker


def _serial_number(info: bytes, ctx: _Ctx) -> list[Reading]:
    """0x93: COMMAND then 16 ASCII characters."""
    p = _Info(info)
    p.u8("COMMAND")
    serial = _ascii(p.take(16, "serial number"))
    p.done()
    return [Reading(serial=serial or None)]


def _serial_number_encode(r: Reading, address: int) -> bytes:
    return bytes((address,)) + (r.serial or "").encode("ascii", "replace")[:16].ljust(16, b" ")


def _protocol_version(info: bytes, ctx: _Ctx) -> list[Reading]:
    # The answer is the reply's VER field, which the INFO decoder does not see; nothing to add.
    return [Reading()]


# Seplos v2 ---------------------------------------------------------------------------------------

_SEPLOS_CUSTOM = 0x0A


def _seplos_analog(info: bytes, ctx: _Ctx) -> list[Reading]:
    p = _Info(info)
    p.u8("DATAFLAG")
    p.u8("pack number")
    cells = _read_cells(p)
    temps = _read_temps(p, p.u8("temperature count"), _PYLON_T_OFFSET)
    current = p.s16("current") / 100
    voltage = p.u16("pack voltage") / 100
    remaining = p.u16("residual capacity") / 100
    p.u8("custom item count")
    full = p.u16("battery capacity") / 100
    soc = p.u16("SOC") / 10
    design = p.u16("rated capacity") / 100
    cycles = p.u16("cycles")
    soh = p.u16("SOH") / 10
    port = p.u16("port voltage") / 100
    # T1-T4 cells, T5 environment, T6 power (MOSFET).
    cell_sensors = slice(0, 4)
    p.done(8)
    return [
        Reading(
            pack_voltage_v=voltage,
            current_a=current,
            soc_pct=soc,
            soh_pct=soh,
            remaining_ah=remaining,
            full_charge_ah=full,
            design_ah=design,
            cycles=cycles,
            cell_voltages_v=cells or None,
            **_temperature_fields(temps, cell_sensors),
            extra=(("port_voltage_v", port),),
        )
    ]


def _seplos_analog_encode(r: Reading, address: int) -> bytes:
    out = _Out().u8(0).u8(address)
    _write_cells(out, r)
    temps = _wire_temps(r)
    _write_temps(out, temps, _PYLON_T_OFFSET)
    out.s16((r.current_a or 0) * 100).u16((r.pack_voltage_v or 0) * 100)
    out.u16((r.remaining_ah or 0) * 100).u8(_SEPLOS_CUSTOM).u16((r.full_charge_ah or 0) * 100)
    out.u16((r.soc_pct or 0) * 10).u16((r.design_ah or r.full_charge_ah or 0) * 100)
    out.u16(r.cycles or 0).u16((r.soh_pct if r.soh_pct is not None else 100) * 10)
    port = dict(r.extra).get("port_voltage_v", r.pack_voltage_v or 0)
    out.u16(float(port) * 100)
    return out.raw(bytes(8)).bytes()


# Alarm events 1-8 and the on-off state byte of a Seplos 0x44 reply (Seplos V2.0 table 13; not
# verified against a capture, PROTOCOLS.md section 8). Offsets into the 20 custom bytes.
_SEPLOS_PROTECTIONS = BitTable.of_flags(
    (
        (0, 0, Protection.SYSTEM_ERROR),  # event 1: voltage sensing failure
        (0, 1, Protection.SYSTEM_ERROR),  # temperature sensing failure
        (0, 2, Protection.SYSTEM_ERROR),  # current sensing failure
        (1, 1, Protection.CELL_OVERVOLTAGE),
        (1, 3, Protection.CELL_UNDERVOLTAGE),
        (1, 5, Protection.CELL_OVERVOLTAGE),  # pack over-voltage
        (1, 7, Protection.CELL_UNDERVOLTAGE),  # pack under-voltage
        (2, 1, Protection.OVER_TEMPERATURE),  # charge high temperature
        (2, 3, Protection.UNDER_TEMPERATURE),  # charge low temperature
        (2, 5, Protection.OVER_TEMPERATURE),  # discharge high temperature
        (2, 7, Protection.UNDER_TEMPERATURE),  # discharge low temperature
        (3, 1, Protection.OVER_TEMPERATURE),  # environment high temperature
        (3, 3, Protection.UNDER_TEMPERATURE),  # environment low temperature
        (3, 5, Protection.OVER_TEMPERATURE),  # power (MOSFET) high temperature
        (4, 1, Protection.CHARGE_OVERCURRENT),
        (4, 3, Protection.DISCHARGE_OVERCURRENT),
        (4, 4, Protection.DISCHARGE_OVERCURRENT),  # transient over-current
        (4, 5, Protection.SHORT_CIRCUIT),
    )
).with_unknown((range(8), Protection.UNKNOWN))  # event 1: sensor and switch faults
_SEPLOS_ALARMS = BitTable.of_flags(
    (
        (1, 0, Alarm.CELL_HIGH_VOLTAGE),
        (1, 2, Alarm.CELL_LOW_VOLTAGE),
        (2, 0, Alarm.HIGH_TEMPERATURE),
        (2, 2, Alarm.LOW_TEMPERATURE),
        (2, 4, Alarm.HIGH_TEMPERATURE),
        (2, 6, Alarm.LOW_TEMPERATURE),
        (4, 0, Alarm.CHARGE_HIGH_CURRENT),
        (4, 2, Alarm.DISCHARGE_HIGH_CURRENT),
    )
)
_SEPLOS_ONOFF = 6  # on-off state: b0 discharge switch, b1 charge switch
_SEPLOS_EVENTS = 20


def _seplos_alarm(info: bytes, ctx: _Ctx) -> list[Reading]:
    p = _Info(info)
    p.u8("DATAFLAG")
    p.u8("pack number")
    cells = p.take(p.u8("cell count"), "cell alarms")
    temps = p.take(p.u8("temperature count"), "temperature alarms")
    p.u8("current alarm")
    voltage = p.u8("voltage alarm")
    count = p.u8("custom item count")
    events = p.take(max(count, _SEPLOS_ONOFF + 1), "alarm events")
    # One current state for both directions: event 5 says which, so the state byte is not used.
    alarms = _states_to_alarms(cells, temps, 0, voltage, None)
    alarms |= _SEPLOS_ALARMS.decode_bytes(bytes(events)).alarms
    onoff = events[_SEPLOS_ONOFF]
    found = _SEPLOS_PROTECTIONS.decode_bytes(bytes(events))
    p.done()
    return [
        Reading(
            protections=found.protections,
            alarms=alarms,
            discharge_enabled=bool(onoff & 0x01),
            charge_enabled=bool(onoff & 0x02),
            extra=tuple(_unknown_names("protections_active", found.names)),
        )
    ]


def _seplos_alarm_encode(r: Reading, address: int) -> bytes:
    n_cells = len(r.cell_voltages_v or ())
    n_temps = len(_wire_temps(r))
    cells, temps, charge, voltage, discharge = _alarm_states(r, n_cells, n_temps)
    word = _SEPLOS_PROTECTIONS.encode(r.protections, None) | _SEPLOS_ALARMS.encode(None, r.alarms)
    events = list(word.to_bytes(_SEPLOS_EVENTS, "little"))
    events[_SEPLOS_ONOFF] = (0 if r.discharge_enabled is False else 0x01) | (
        0 if r.charge_enabled is False else 0x02
    )
    out = _Out().u8(0).u8(address).u8(n_cells).raw(bytes(cells)).u8(n_temps).raw(bytes(temps))
    out.u8(max(charge, discharge)).u8(voltage).u8(_SEPLOS_EVENTS)
    return out.raw(bytes(events)).bytes()


# Pace v25 ----------------------------------------------------------------------------------------

# nkinnan's Pace decoder (whose test asserts the vector values) uses 2730, not 2731.
_PACE_T_OFFSET = 2730
_PACE_CONSTANT = 0x03


# After a pack's design capacity some firmware appends a tail: its own SOC (1 byte), then
# cumulative charged and discharged capacity (4 bytes each) and SOH (1 byte) as far as the tail
# reaches (the Gobel/Pace add-on's reading; a real three-pack capture carries the SOC alone).
_PACE_TAIL_SOC = 0
_PACE_TAIL_SOH = 9
_PACE_MAX_TAIL = 64
_PACE_FIXED = 13  # current, voltage, remaining, item count, full, cycles, design


def _pace_pack_end(info: bytes, start: int) -> int | None:
    """Where the pack starting at `start` ends before its tail; None past the INFO's end."""
    pos = start
    for _ in range(2):  # the cell list, then the temperature list
        if pos >= len(info):
            return None
        pos += 1 + 2 * info[pos]
    pos += _PACE_FIXED
    return pos if pos <= len(info) else None


def _pace_tail(info: bytes, start: int, packs: int) -> int:
    """The tail length every pack carries: the one that makes `packs` packs fill the INFO."""
    for tail in range(_PACE_MAX_TAIL + 1):
        pos: int | None = start
        for _ in range(packs):
            end = _pace_pack_end(info, pos) if pos is not None else None
            pos = None if end is None else end + tail
        if pos == len(info):
            return tail
    raise FrameLengthError(
        f"INFO is {len(info)} bytes: {packs} pack(s) of this layout, with any tail of up to "
        f"{_PACE_MAX_TAIL} bytes after each, do not fill it (a reply of another variant?)"
    )


def _pace_pack(p: _Info, tail: int) -> Reading:
    cells = _read_cells(p)
    temps = _read_temps(p, p.u8("temperature count"), _PACE_T_OFFSET)
    current = p.s16("current") / 100
    voltage = p.u16("pack voltage") / 1000
    remaining = p.u16("remaining capacity") / 100
    p.u8("constant")
    full = p.u16("full capacity") / 100
    cycles = p.u16("cycles")
    design = p.u16("design capacity") / 100
    extra = p.take(tail, "pack tail")
    soc = _soc(remaining, full)
    soh = min(100.0, round(full / design * 100, 1)) if design > 0 else None
    # The BMS's own figures where its tail carries them.
    if len(extra) > _PACE_TAIL_SOC:
        soc = float(extra[_PACE_TAIL_SOC])
    if len(extra) > _PACE_TAIL_SOH:
        soh = float(extra[_PACE_TAIL_SOH])
    return Reading(
        pack_voltage_v=voltage,
        current_a=current,
        soc_pct=soc,
        soh_pct=soh,
        remaining_ah=remaining,
        full_charge_ah=full,
        design_ah=design,
        cycles=cycles,
        cell_voltages_v=cells or None,
        **_temperature_fields(temps, slice(0, 4)),
    )


def _pace_analog(info: bytes, ctx: _Ctx) -> list[Reading]:
    """One pack, or with request INFO 0xFF the whole stack: the byte after the flag is then
    the number of packs that follow."""
    p = _Info(info)
    p.u8("flag")
    second = p.u8("bus id")
    if ctx.command == 0xFF:
        if second < 1:
            raise FrameLengthError("a stack reply with no pack in it")
        counts = [second]
    elif second >= 2 and second != ctx.address:
        # Some stack masters answer a request for one pack with the whole stack: the second
        # byte is then their pack count, not the address asked.
        counts = [second, 1]
    else:
        counts = [1, second] if second >= 2 else [1]
    error: FrameLengthError | None = None
    for packs in counts:
        try:
            tail = _pace_tail(info, p.pos, packs)
        except FrameLengthError as exc:
            error = error or exc
            continue
        out = [_pace_pack(p, tail) for _ in range(packs)]
        p.done()
        return out
    raise error if error is not None else FrameLengthError("no pack layout fits the INFO")


def _pace_analog_encode(r: Reading, address: int) -> bytes:
    out = _Out().u8(0).u8(address)
    _write_cells(out, r)
    temps = _wire_temps(r)
    _write_temps(out, temps, _PACE_T_OFFSET)
    out.s16((r.current_a or 0) * 100).u16((r.pack_voltage_v or 0) * 1000)
    out.u16((r.remaining_ah or 0) * 100).u8(_PACE_CONSTANT).u16((r.full_charge_ah or 0) * 100)
    return out.u16(r.cycles or 0).u16((r.design_ah or r.full_charge_ah or 0) * 100).bytes()


# The nine status bytes after the three current/voltage warnings: protection 1, protection 2,
# system status, configuration, fault, balance high, balance low, warning 1, warning 2.
_PACE_PROTECTIONS = BitTable.of_flags(
    (
        (0, 0, Protection.CELL_OVERVOLTAGE),
        (0, 1, Protection.CELL_UNDERVOLTAGE),
        (0, 2, Protection.CELL_OVERVOLTAGE),  # pack over-voltage
        (0, 3, Protection.CELL_UNDERVOLTAGE),  # pack under-voltage
        (0, 4, Protection.CHARGE_OVERCURRENT),
        (0, 5, Protection.DISCHARGE_OVERCURRENT),
        (0, 6, Protection.SHORT_CIRCUIT),
        (1, 0, Protection.OVER_TEMPERATURE),  # charge high temperature
        (1, 1, Protection.OVER_TEMPERATURE),  # discharge high temperature
        (1, 2, Protection.UNDER_TEMPERATURE),  # charge low temperature
        (1, 3, Protection.UNDER_TEMPERATURE),  # discharge low temperature
        (1, 4, Protection.OVER_TEMPERATURE),  # MOSFET high temperature
        (1, 5, Protection.OVER_TEMPERATURE),  # environment high temperature
        (1, 6, Protection.UNDER_TEMPERATURE),  # environment low temperature
        (4, 0, Protection.SYSTEM_ERROR),  # fault: charge MOSFET
        (4, 1, Protection.SYSTEM_ERROR),  # discharge MOSFET
        (4, 2, Protection.SYSTEM_ERROR),  # NTC
        (4, 4, Protection.SYSTEM_ERROR),  # cell
        (4, 5, Protection.SYSTEM_ERROR),  # sampling
    )
).with_unknown(  # protection 1 and 2, fault: every bit is a condition
    ([*range(0, 16), *range(32, 40)], Protection.UNKNOWN)
)
_PACE_ALARMS = BitTable.of_flags(
    (
        (7, 0, Alarm.CELL_HIGH_VOLTAGE),
        (7, 1, Alarm.CELL_LOW_VOLTAGE),
        (7, 2, Alarm.CELL_HIGH_VOLTAGE),  # pack high voltage
        (7, 3, Alarm.CELL_LOW_VOLTAGE),  # pack low voltage
        (7, 4, Alarm.CHARGE_HIGH_CURRENT),
        (7, 5, Alarm.DISCHARGE_HIGH_CURRENT),
        (8, 0, Alarm.HIGH_TEMPERATURE),
        (8, 1, Alarm.HIGH_TEMPERATURE),
        (8, 2, Alarm.LOW_TEMPERATURE),
        (8, 3, Alarm.LOW_TEMPERATURE),
        (8, 4, Alarm.HIGH_TEMPERATURE),
        (8, 5, Alarm.LOW_TEMPERATURE),
        (8, 6, Alarm.HIGH_TEMPERATURE),
    )
).with_unknown((range(56, 72), Alarm.UNKNOWN))  # warning 1 and 2
_PACE_SYSTEM = 2  # b1 charge MOSFET on, b2 discharge MOSFET on, b3 discharging, b5 charging


def _pace_alarm(info: bytes, ctx: _Ctx) -> list[Reading]:
    p = _Info(info)
    p.u8("flag")
    p.u8("bus id")
    cells = p.take(p.u8("cell count"), "cell warnings")
    temps = p.take(p.u8("temperature count"), "temperature warnings")
    charge = p.u8("charge-current warning")
    voltage = p.u8("total-voltage warning")
    discharge = p.u8("discharge-current warning")
    status = p.take(9, "protection, status, fault and warning bytes")
    alarms = _states_to_alarms(cells, temps, charge, voltage, discharge)
    system = status[_PACE_SYSTEM]
    found = _PACE_PROTECTIONS.decode_bytes(bytes(status))
    warnings = _PACE_ALARMS.decode_bytes(bytes(status))
    p.done()
    return [
        Reading(
            protections=found.protections,
            alarms=alarms | warnings.alarms,
            charge_enabled=bool(system & 0x02),
            discharge_enabled=bool(system & 0x04),
            extra=tuple(
                _unknown_names("protections_active", found.names)
                + _unknown_names("alarms_active", warnings.names)
            ),
        )
    ]


def _pace_alarm_encode(r: Reading, address: int) -> bytes:
    n_cells = len(r.cell_voltages_v or ())
    n_temps = len(_wire_temps(r))
    cells, temps, charge, voltage, discharge = _alarm_states(r, n_cells, n_temps)
    word = _PACE_PROTECTIONS.encode(r.protections, None) | _PACE_ALARMS.encode(None, r.alarms)
    status = list(word.to_bytes(9, "little"))
    current = r.current_a or 0.0
    system = (0 if r.charge_enabled is False else 0x02) | (
        0 if r.discharge_enabled is False else 0x04
    )
    system |= (0x20 if current > 0.05 else 0) | (0x08 if current < -0.05 else 0)
    status[_PACE_SYSTEM] = system
    out = _Out().u8(0).u8(address).u8(n_cells).raw(bytes(cells)).u8(n_temps).raw(bytes(temps))
    return out.u8(charge).u8(voltage).u8(discharge).raw(bytes(status)).bytes()


def _pace_hardware(info: bytes, ctx: _Ctx) -> list[Reading]:
    model = _ascii(info)
    return [Reading(model=model or None)]


def _pace_serial(info: bytes, ctx: _Ctx) -> list[Reading]:
    serial = _ascii(info)
    return [Reading(serial=serial or None)]


def _ascii_encoder(attr: Literal["model", "serial"], size: int) -> Encoder:
    def encode(r: Reading, address: int) -> bytes:
        return (getattr(r, attr) or "").encode("ascii", "replace")[:size].ljust(size, b" ")

    return encode


# EG4 LifePower4 ----------------------------------------------------------------------------------

_EG4_T_OFFSET = 2730
_EG4_CONSTANT = 0x0F
# After the temperatures: current, voltage, remaining, full, cycles (2 each), the constant (1),
# SOC, SOH, max cell, min cell, max difference, max temp, min temp (2 each), six u32 totals and
# two u16 counts.
_EG4_ANALOG_TAIL = 2 * 5 + 1 + 2 * 7 + 4 * 6 + 2 * 2
# After the temperature warnings: current, voltage, constant, balance event, voltage event (1
# each), temperature event (2), current event, remaining capacity, FET status, system status (1
# each), balancing bits (4), reserved (1).
_EG4_STATUS_TAIL = 5 + 2 + 4 + 4 + 1


def _eg4_temp_count(p: _Info, declared: int, tail: int) -> int:
    """EG4 says 4 temperatures and sends 6 (cells, then environment and MOSFET): believe the
    length rather than the count."""
    sent, odd = divmod(p.left - tail, 2 if tail == _EG4_ANALOG_TAIL else 1)
    if odd or sent < 0:
        raise FrameLengthError(f"INFO of {len(p.data)} bytes does not fit the EG4 layout")
    return sent if sent in (declared, 6) else declared


def _eg4_analog(info: bytes, ctx: _Ctx) -> list[Reading]:
    p = _Info(info)
    p.u8("DATAFLAG")
    p.u8("pack number")
    cells = _read_cells(p)
    n = _eg4_temp_count(p, p.u8("temperature count"), _EG4_ANALOG_TAIL)
    temps = _read_temps(p, n, _EG4_T_OFFSET)
    current = p.s16("current") / 100
    voltage = p.u16("pack voltage") / 100
    remaining = p.u16("remaining capacity") / 100
    full = p.u16("full capacity") / 100
    cycles = p.u16("cycles")
    p.u8("constant")
    soc = p.u16("SOC")
    soh = p.u16("SOH")
    p.take(2 * 5, "cell and temperature extremes")
    cell_sensors = slice(0, 4)
    p.done(4 * 6 + 2 * 2)
    return [
        Reading(
            pack_voltage_v=voltage,
            current_a=current,
            soc_pct=float(soc),
            soh_pct=float(soh),
            remaining_ah=remaining,
            full_charge_ah=full,
            cycles=cycles,
            cell_voltages_v=cells or None,
            **_temperature_fields(temps, cell_sensors),
        )
    ]


def _eg4_analog_encode(r: Reading, address: int) -> bytes:
    out = _Out().u8(0x10).u8(address)
    cells = _write_cells(out, r)
    temps = _wire_temps(r)
    # EG4 counts four temperatures when it sends six (see _eg4_temp_count).
    _write_temps(out, temps, _EG4_T_OFFSET, count=4 if len(temps) == 6 else len(temps))
    out.s16((r.current_a or 0) * 100).u16((r.pack_voltage_v or 0) * 100)
    out.u16((r.remaining_ah or 0) * 100).u16((r.full_charge_ah or 0) * 100).u16(r.cycles or 0)
    out.u8(_EG4_CONSTANT).u16(r.soc_pct or 0).u16(r.soh_pct if r.soh_pct is not None else 100)
    vmax = max(cells) if cells else 0.0
    vmin = min(cells) if cells else 0.0
    out.u16(vmax * 1000).u16(vmin * 1000).u16((vmax - vmin) * 1000)
    tmax = max(temps) if temps else 0.0
    tmin = min(temps) if temps else 0.0
    out.u16(tmax * 10 + _EG4_T_OFFSET).u16(tmin * 10 + _EG4_T_OFFSET)
    return out.raw(bytes(4 * 6 + 2 * 2)).bytes()


def _eg4_status(info: bytes, ctx: _Ctx) -> list[Reading]:
    p = _Info(info)
    p.u8("DATAFLAG")
    p.u8("pack number")
    cells = p.take(p.u8("cell count"), "cell warnings")
    n = _eg4_temp_count(p, p.u8("temperature count"), _EG4_STATUS_TAIL)
    temps = p.take(n, "temperature warnings")
    p.u8("current warning")
    voltage = p.u8("voltage warning")
    p.u8("constant")
    events = (
        ("balance_event_bits", p.u8("balance event")),
        ("voltage_event_bits", p.u8("voltage event")),
        ("temperature_event_bits", p.u16("temperature event")),
        ("current_event_bits", p.u8("current event")),
        ("remaining_capacity_bits", p.u8("remaining capacity")),
    )
    fet = p.u8("FET status")
    p.u8("system status")
    p.u32("balancing bits")
    # The event bit tables are not documented well enough to name protections: raw, when set,
    # and each set bit of a condition word surfaced as an unknown warning with its number.
    p.done(1)
    unknown = [
        f"{key.removesuffix('_bits')}_bit_{bit}"
        for key, value in events
        if key != "balance_event_bits"
        for bit in range(16)
        if value >> bit & 1
    ]
    alarms = _states_to_alarms(cells, temps, 0, voltage, None)
    if unknown:
        alarms |= Alarm.UNKNOWN
    return [
        Reading(
            # The one current state does not say which direction: left out.
            alarms=alarms,
            discharge_enabled=bool(fet & 0x01),
            charge_enabled=bool(fet & 0x02),
            extra=tuple((k, v) for k, v in events if v)
            + ((("alarms_active", ",".join(unknown)),) if unknown else ()),
        )
    ]


def _eg4_status_encode(r: Reading, address: int) -> bytes:
    n_cells = len(r.cell_voltages_v or ())
    temps_n = len(_wire_temps(r))
    cells, temps, charge, voltage, discharge = _alarm_states(r, n_cells, temps_n)
    fet = (0 if r.discharge_enabled is False else 0x01) | (0 if r.charge_enabled is False else 0x02)
    current = r.current_a or 0.0
    system = (0x02 if current > 0.05 else 0) | (0x01 if current < -0.05 else 0)
    out = _Out().u8(0x10).u8(address).u8(n_cells).raw(bytes(cells))
    out.u8(4 if temps_n == 6 else temps_n).raw(bytes(temps))
    out.u8(max(charge, discharge)).u8(voltage).u8(0x09)
    out.u8(0).u8(0).u16(0).u8(0).u8(0).u8(fet).u8(system).u32(0)
    return out.u8(0).bytes()


# --- the variants ----------------------------------------------------------------------------


def _table(*commands: _Command) -> Mapping[int, _Command]:
    return {c.cid2: c for c in commands}


_PYLON_COMMANDS = _table(
    _Command(0x42, "analog values", "address", _pylon_analog, _pylon_analog_encode),
    _Command(0x44, "alarm info", "address", _pylon_alarm, _pylon_alarm_encode),
    _Command(0x47, "system parameters", "none", _pylon_parameters),
    _Command(0x4F, "protocol version", "none", _protocol_version),
    _Command(0x51, "manufacturer info", "none", _manufacturer_info, _manufacturer_info_encode),
    _Command(
        0x92, "charge/discharge management", "address", _pylon_management, _pylon_management_encode
    ),
    _Command(0x93, "serial number", "address", _serial_number, _serial_number_encode),
)


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class RS485Variant:
    """One protocol of the family: its framing constants and its table of commands."""

    PROTOCOL: str
    DEFAULT_BAUD: int
    GAP_S: float
    REPLY_TIMEOUT_S: float
    ver: int
    cid1: int
    commands: Mapping[int, _Command]
    # Each poll cycle, in this order: the switch states of the status reply come last so they
    # win over the management reply's enable flags when both are merged.
    poll: tuple[int, ...]
    # Asked until answered once.
    info: tuple[int, ...] = ()
    summary: str = field(default="")

    def __repr__(self) -> str:
        return f"<{self.PROTOCOL} codec>"

    # --- requests ------------------------------------------------------------------------------

    def encode_request(self, cid2: int, address: int, command: int | None = None) -> bytes:
        """A request for `cid2` to the pack at `address`; `command` overrides the INFO byte
        (0xFF asks a Pylontech master for the whole stack)."""
        cmd = self.commands.get(cid2)
        if cmd is None:
            raise UnknownCommandError(self._unknown(cid2))
        info = (
            bytes((address if command is None else command,))
            if cmd.request_info == "address"
            else b""
        )
        return build_frame(self.ver, address, self.cid1, cid2, info)

    def poll_requests(self, address: int) -> list[bytes]:
        return [self.encode_request(c, address) for c in self.poll]

    def info_requests(self, address: int) -> list[bytes]:
        return [self.encode_request(c, address) for c in self.info]

    # --- framing -------------------------------------------------------------------------------

    def frame_length(self, buf: bytes) -> int | None:
        return frame_length(buf)

    def frame_address(self, frame: bytes) -> int | None:
        if len(frame) < 5 or frame[0] != SOI or any(c not in _HEX for c in frame[3:5]):
            return None
        return int(frame[3:5], 16)

    def is_request(self, frame: bytes) -> bool:
        if len(frame) < 9 or any(c not in _HEX for c in frame[7:9]):
            raise FrameError("too short to hold CID2")
        return int(frame[7:9], 16) not in _RTN_TEXT

    # --- decoding ------------------------------------------------------------------------------

    def _unknown(self, cid2: int) -> str:
        known = ", ".join(f"0x{c:02X}" for c in self.commands)
        return f"command 0x{cid2:02X} is not one {self.PROTOCOL} decodes (known: {known})"

    def _check(self, f: AsciiFrame) -> None:
        if f.cid1 != self.cid1:
            raise WrongProtocolError(
                f"CID1 0x{f.cid1:02X} is not {self.PROTOCOL}'s 0x{self.cid1:02X}"
                + (" (an EG4 frame?)" if f.cid1 == 0x4A else "")
            )

    def _reply_and_command(
        self, frame: bytes, request: bytes | None
    ) -> tuple[AsciiFrame, _Command, _Ctx]:
        f = parse_frame(frame)
        self._check(f)
        if f.cid2 not in _RTN_TEXT:
            raise FrameError(f"not a reply: command 0x{f.cid2:02X} is a request")
        if f.cid2 != 0:
            raise ErrorReplyError(f"the BMS answered RTN 0x{f.cid2:02X} ({_RTN_TEXT[f.cid2]})")
        if request is None:
            raise FrameError(
                f"a {self.PROTOCOL} reply does not say which command it answers: "
                "give its request before it"
            )
        q = parse_frame(request)
        self._check(q)
        if q.cid2 in _RTN_TEXT:
            raise FrameError("the frame given as the request is a reply")
        cmd = self.commands.get(q.cid2)
        if cmd is None:
            raise UnknownCommandError(self._unknown(q.cid2))
        # A stack request (INFO 0xFF) is answered by the master under its own address.
        if f.adr != q.adr and q.info[:1] != b"\xff":
            raise FrameError(f"reply from address {f.adr}, its request was to address {q.adr}")
        command = q.info[0] if q.info else None
        return f, cmd, _Ctx(q.adr, command)

    def decode_modules(self, frame: bytes, request: bytes | None = None) -> list[Reading]:
        """A reply as one Reading per pack (several for a stack's 0x42 with INFO 0xFF)."""
        f, cmd, ctx = self._reply_and_command(frame, request)
        return cmd.decode(f.info, ctx)

    # INFO decoders check that they used every byte: a reply of another variant (the same
    # framing, another layout) is then an error, not a reading of nonsense.

    def decode(self, frame: bytes, request: bytes | None = None) -> Reading:
        """One frame to a partial Reading. A well-formed request carries no reading: an empty
        Reading. A stack reply (several packs) gives the stack's totals."""
        if request is None:
            f = parse_frame(frame)
            self._check(f)
            if f.cid2 not in _RTN_TEXT:
                if f.cid2 not in self.commands:
                    raise UnknownCommandError(self._unknown(f.cid2))
                return Reading()
        modules = self.decode_modules(frame, request)
        return modules[0] if len(modules) == 1 else stack_total(modules)

    # --- the simulator's side ------------------------------------------------------------------

    def encode_reply(self, request: bytes, reading: Reading) -> bytes | None:
        try:
            q = parse_frame(request)
        except FrameError:
            return None
        cmd = self.commands.get(q.cid2)
        if q.cid1 != self.cid1 or cmd is None or cmd.encode is None:
            return None
        if cmd.request_info == "address" and q.info[:1] == b"\xff":
            return None  # the whole stack: only a master answers that
        return build_frame(self.ver, q.adr, self.cid1, 0x00, cmd.encode(reading, q.adr))

    def encode_error_reply(self, request: bytes, rtn: int) -> bytes:
        q = parse_frame(request)
        return build_frame(self.ver, q.adr, self.cid1, rtn)


def stack_total(modules: Sequence[Reading]) -> Reading:
    """The whole stack from its modules: currents and capacities add, voltages average (packs in
    parallel share one voltage), the oldest pack's cycles."""
    volts = [m.pack_voltage_v for m in modules if m.pack_voltage_v is not None]
    currents = [m.current_a for m in modules if m.current_a is not None]
    remaining = sum(m.remaining_ah or 0 for m in modules)
    full = sum(m.full_charge_ah or 0 for m in modules)
    mins = [v for m in modules if (v := m.min_cell_v) is not None]
    maxs = [v for m in modules if (v := m.max_cell_v) is not None]
    return Reading(
        pack_voltage_v=round(sum(volts) / len(volts), 3) if volts else None,
        current_a=round(sum(currents), 1) if currents else None,
        soc_pct=_soc(remaining, full),
        remaining_ah=round(remaining, 3) if full else None,
        full_charge_ah=round(full, 3) if full else None,
        cycles=max((m.cycles for m in modules if m.cycles is not None), default=None),
        cell_voltage_min_v=min(mins) if mins else None,
        cell_voltage_max_v=max(maxs) if maxs else None,
        modules_online=len(modules),
    )


PYLONTECH = RS485Variant(
    PROTOCOL="pylontech-rs485",
    DEFAULT_BAUD=9600,
    GAP_S=0.02,
    REPLY_TIMEOUT_S=0.5,
    ver=0x20,
    cid1=0x46,
    commands=_PYLON_COMMANDS,
    poll=(0x42, 0x92, 0x44),
    info=(0x51, 0x93),
    summary="Pylontech RS485 (ASCII-hex, VER 0x20): 0x42 analog, 0x44 alarms, 0x92 limits, "
    "0x51/0x93 identity; packs by address (master 2)",
)

SEPLOS_V2 = RS485Variant(
    PROTOCOL="seplos-v2",
    DEFAULT_BAUD=19200,
    GAP_S=0.02,
    REPLY_TIMEOUT_S=0.5,
    ver=0x20,
    cid1=0x46,
    commands=_table(
        _Command(0x42, "telemetry", "address", _seplos_analog, _seplos_analog_encode),
        _Command(0x44, "telesignalling (alarms)", "address", _seplos_alarm, _seplos_alarm_encode),
        _Command(0x47, "system parameters", "none", lambda info, ctx: [Reading()]),
        _Command(0x4F, "protocol version", "none", _protocol_version),
        _Command(0x51, "manufacturer info", "none", _manufacturer_info, _manufacturer_info_encode),
    ),
    poll=(0x42, 0x44),
    info=(0x51,),
    summary="Seplos BMS v2 (Pylontech framing): 0x42 telemetry, 0x44 alarms and switches, "
    "0x51 identity; packs by address (first pack 0)",
)

PACE = RS485Variant(
    PROTOCOL="pace",
    DEFAULT_BAUD=9600,
    GAP_S=0.02,
    REPLY_TIMEOUT_S=0.5,
    ver=0x25,
    cid1=0x46,
    commands=_table(
        _Command(0x42, "analog values", "address", _pace_analog, _pace_analog_encode),
        _Command(0x44, "status", "address", _pace_alarm, _pace_alarm_encode),
        _Command(0xC1, "hardware version", "none", _pace_hardware, _ascii_encoder("model", 20)),
        _Command(0xC2, "serial number", "none", _pace_serial, _ascii_encoder("serial", 40)),
    ),
    poll=(0x42, 0x44),
    info=(0xC1, 0xC2),
    summary="Pace BMS (paceic VER 0x25): 0x42 analog, 0x44 status, 0xC1/0xC2 identity",
)

EG4 = RS485Variant(
    PROTOCOL="eg4",
    DEFAULT_BAUD=9600,
    GAP_S=0.02,
    REPLY_TIMEOUT_S=0.5,
    ver=0x20,
    cid1=0x4A,
    commands=_table(
        _Command(0x42, "analog values", "none", _eg4_analog, _eg4_analog_encode),
        _Command(0x44, "status", "none", _eg4_status, _eg4_status_encode),
    ),
    poll=(0x42, 0x44),
    summary="EG4 LifePower4 (Pylontech framing, CID1 0x4A): 0x42 analog, 0x44 status",
)

VARIANTS: dict[str, RS485Variant] = {v.PROTOCOL: v for v in (PYLONTECH, SEPLOS_V2, PACE, EG4)}
