"""Protocol `modbus-map`: any Modbus RTU BMS, described by a register map instead of code.

A map (written in TOML, validated by bankwatch.drivers.modbus_map_schema, shipped examples in
drivers/maps/) lists entries: where a value lives (function code, address), how it is
stored (u8/s8/u16/s16/u32/s32/f32/str/bits, byte and word order, mask and shift), how it
becomes a number (value = raw · scale + offset, in exact rational arithmetic so 5325 · 0.01 is
53.25 and not 53.2500000001) and which Reading field it fills; integer entries may instead carry
bit rules that set protections, alarms, switch states or extra facts.

This module holds the compiled map (plain frozen dataclasses; pydantic stays at the config
boundary) and the codec: adjacent entries are coalesced into as few reads as the map allows,
and a reply is decoded through the request it answers, so replies to somebody else's reads
(listen-only) decode too, as far as they cover whole entries.

Two addressing schemes exist in the wild: "register" (the Modbus standard: an address names a
16-bit register) and "byte" (JK-PB: an address names a byte of the BMS's memory image and a
read of N registers returns 2·N bytes starting there).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from fractions import Fraction
from typing import Any, Final, Literal

from bankwatch.drivers import modbus_rtu
from bankwatch.drivers.errors import FrameError
from bankwatch.drivers.modbus_rtu import (
    ExceptionReply,
    ExceptionReplyError,
    ModbusFrameError,
    ReadReply,
    ReadRequest,
)
from bankwatch.drivers.model import Alarm, Protection, Reading

__all__ = [
    "BOOL_FIELDS",
    "FLOAT_FIELDS",
    "INT_FIELDS",
    "PROTOCOL",
    "STR_FIELDS",
    "TUPLE_FIELDS",
    "BitRule",
    "MapEntry",
    "MapError",
    "ReadBlock",
    "RegisterMap",
    "RegisterMapCodec",
    "UnmappedReplyError",
    "reading_fields",
]

PROTOCOL: Final = "modbus-map"

DataType = Literal["u8", "s8", "u16", "s16", "u32", "s32", "f32", "str", "bits"]
Order = Literal["big", "little"]
Addressing = Literal["register", "byte"]
BitTarget = Literal["protection", "alarm", "field", "extra"]

FLOAT_FIELDS: Final = frozenset(
    {
        "pack_voltage_v",
        "current_a",
        "soc_pct",
        "soh_pct",
        "remaining_ah",
        "full_charge_ah",
        "design_ah",
        "cell_voltage_min_v",
        "cell_voltage_max_v",
        "cell_temperature_min_c",
        "cell_temperature_max_c",
        "mosfet_temperature_c",
        "charge_voltage_limit_v",
        "discharge_voltage_limit_v",
        "charge_current_limit_a",
        "discharge_current_limit_a",
    }
)
INT_FIELDS: Final = frozenset({"cycles", "modules_online"})
TUPLE_FIELDS: Final = frozenset({"cell_voltages_v", "temperatures_c"})
STR_FIELDS: Final = frozenset({"manufacturer", "model", "serial", "firmware"})
BOOL_FIELDS: Final = frozenset({"charge_enabled", "discharge_enabled"})
_MAGNITUDES: Final = frozenset({"charge_current_limit_a", "discharge_current_limit_a"})

_SIZE: Final[dict[str, int]] = {"u8": 1, "s8": 1, "u16": 2, "s16": 2, "u32": 4, "s32": 4, "f32": 4}
_SIGNED: Final = frozenset({"s8", "s16", "s32"})


class MapError(ValueError):
    """A register map that cannot work (overlapping fields, a list split over two reads ...).
    The config layer turns it into a ConfigError naming the map."""


class UnmappedReplyError(ModbusFrameError):
    """A reply (or request) that touches no entry of the map."""


@dataclass(frozen=True, slots=True)
class BitRule:
    """Any bit of `mask` set → the target is true (`invert` flips that, for "1 = off" bits)."""

    mask: int
    target: BitTarget
    name: str
    invert: bool = False


@dataclass(frozen=True, slots=True)
class MapEntry:
    function: int
    address: int
    type: DataType
    # Values in a list (cells); for "str" the number of bytes; for "bits" on coils the coils.
    count: int = 1
    scale: Fraction = Fraction(1)
    offset: Fraction = Fraction(0)
    byte_order: Order = "big"
    word_order: Order = "big"
    mask: int | None = None
    shift: int = 0
    ignore: frozenset[int] = frozenset()
    field: str | None = None
    extra: str | None = None
    bits: tuple[BitRule, ...] = ()
    # A list whose length the device states in a register of its own (a cell or sensor count):
    # only that many of the `count` slots are real, the rest are empty slots, not zeros.
    length_from: int | None = None
    # Bits entries: "protection" or "alarm" when a set bit no rule covers is an unknown one.
    unknown: str | None = None

    @property
    def coils(self) -> bool:
        return self.function in modbus_rtu.READ_BITS

    def size_bytes(self) -> int:
        if self.type == "str":
            return self.count
        if self.type == "bits":
            return 2  # a bits entry on registers reads one 16-bit register
        return _SIZE[self.type] * self.count

    def span(self, addressing: Addressing) -> int:
        """Address units the entry covers."""
        if self.coils:
            return self.count
        n = self.size_bytes()
        return n if addressing == "byte" else (n + 1) // 2

    def footprint(self, addressing: Addressing) -> tuple[int, int]:
        """The address units a read must cover to decode the entry: its own, and its length
        register when it has one (one 16-bit register: 2 units with byte addressing)."""
        start, end = self.address, self.address + self.span(addressing)
        if self.length_from is not None:
            width = 2 if addressing == "byte" else 1
            start, end = min(start, self.length_from), max(end, self.length_from + width)
        return start, end


@dataclass(frozen=True, slots=True)
class ReadBlock:
    function: int
    address: int
    count: int  # what the request asks for: registers or coils

    def request(self, slave: int) -> bytes:
        return modbus_rtu.encode_read_request(slave, self.function, self.address, self.count)


@dataclass(frozen=True, slots=True)
class RegisterMap:
    """A compiled, validated map. Build it with `RegisterMap.build`, which checks it."""

    name: str
    entries: tuple[MapEntry, ...]
    blocks: tuple[ReadBlock, ...]
    addressing: Addressing = "register"
    baud: int = 9600
    gap_s: float = 0.004
    reply_timeout_s: float = 0.5
    description: str = ""
    scan_addresses: tuple[int, ...] = ()

    @classmethod
    def build(
        cls,
        name: str,
        entries: Iterable[MapEntry],
        *,
        addressing: Addressing = "register",
        max_read: int = 125,
        max_gap: int = 0,
        baud: int = 9600,
        gap_s: float = 0.004,
        reply_timeout_s: float = 0.5,
        description: str = "",
        scan_addresses: tuple[int, ...] = (),
    ) -> RegisterMap:
        entries = tuple(entries)
        if not entries:
            raise MapError("a map needs at least one entry")
        _check_targets(entries)
        for e in entries:
            if e.length_from is not None and (e.field not in TUPLE_FIELDS or e.coils):
                raise MapError(
                    f"the entry at 0x{e.address:04X}: length_from belongs to a list of registers "
                    "(cell_voltages_v, temperatures_c)"
                )
        blocks = _coalesce(entries, addressing, max_read, max_gap)
        _check_grouped(entries, blocks, addressing)
        return cls(
            name,
            entries,
            blocks,
            addressing,
            baud,
            gap_s,
            reply_timeout_s,
            description,
            scan_addresses,
        )

    # --- where things are -----------------------------------------------------------------------

    def units_of(self, function: int, count: int) -> int:
        """Address units a read of `count` covers (byte addressing: 2 per register)."""
        if function in modbus_rtu.READ_BITS or self.addressing == "register":
            return count
        return 2 * count

    def entries_within(self, function: int, address: int, units: int) -> list[MapEntry]:
        return [
            e
            for e in self.entries
            if e.function == function
            and e.footprint(self.addressing)[0] >= address
            and e.footprint(self.addressing)[1] <= address + units
        ]

    def offset_of(self, address: int, start: int) -> int:
        """Byte offset of a register address in a register reply starting at `start`."""
        delta = address - start
        return delta if self.addressing == "byte" else 2 * delta

    def data_offset(self, entry: MapEntry, start: int) -> int:
        """Byte offset (registers) or bit offset (coils) of `entry` in a reply starting at
        `start`."""
        delta = entry.address - start
        if entry.coils or self.addressing == "byte":
            return delta
        return 2 * delta


# --- building -----------------------------------------------------------------------------------


def _check_targets(entries: tuple[MapEntry, ...]) -> None:
    scalars: dict[str, int] = {}
    for i, e in enumerate(entries):
        targets = [e.field, e.extra] + [r.name for r in e.bits if r.target in ("field", "extra")]
        for name in targets:
            if name is None or name in TUPLE_FIELDS:
                continue
            if name in scalars:
                raise MapError(
                    f"entries {scalars[name]} and {i} both fill {name!r}: each value has one home"
                )
            scalars[name] = i


def _coalesce(
    entries: tuple[MapEntry, ...], addressing: Addressing, max_read: int, max_gap: int
) -> tuple[ReadBlock, ...]:
    blocks: list[ReadBlock] = []
    for function in sorted({e.function for e in entries}):
        coils = function in modbus_rtu.READ_BITS
        limit_units = (2000 if coils else max_read) * (
            2 if addressing == "byte" and not coils else 1
        )
        spans = sorted(e.footprint(addressing) for e in entries if e.function == function)
        start, end = spans[0]
        for a, b in spans[1:]:
            if a - end <= max_gap and max(end, b) - start <= limit_units:
                end = max(end, b)
                continue
            blocks.append(_block(function, start, end, addressing))
            start, end = a, b
        blocks.append(_block(function, start, end, addressing))
    blocks.sort(key=lambda b: (b.address, b.function))
    for block in blocks:
        if block.address + block.count > 0x10000 and addressing == "register":
            raise MapError(f"a read at 0x{block.address:04X} runs past register 0xFFFF")
        limit = 2000 if block.function in modbus_rtu.READ_BITS else max_read
        if block.count > limit:
            raise MapError(
                f"the entry at 0x{block.address:04X} needs a read of {block.count}, "
                f"more than the {limit} one read may hold"
            )
    return tuple(blocks)


def _block(function: int, start: int, end: int, addressing: Addressing) -> ReadBlock:
    units = end - start
    if function in modbus_rtu.READ_BITS or addressing == "register":
        return ReadBlock(function, start, units)
    return ReadBlock(function, start, (units + 1) // 2)


def _group_keys(entry: MapEntry) -> list[str]:
    """Targets that must be decoded from one reply, or merging readings would lose parts."""
    keys = [entry.field] if entry.field in TUPLE_FIELDS else []
    keys += [r.target for r in entry.bits if r.target in ("protection", "alarm")]
    keys += [entry.unknown] if entry.unknown else []
    return [k for k in keys if k]


def _block_of(entry: MapEntry, blocks: tuple[ReadBlock, ...], addressing: Addressing) -> ReadBlock:
    start, end = entry.footprint(addressing)
    for block in blocks:
        units = block.count * (2 if addressing == "byte" and not entry.coils else 1)
        if (
            block.function == entry.function
            and block.address <= start
            and end <= block.address + units
        ):
            return block
    raise AssertionError("coalescing left an entry out")  # pragma: no cover


def _check_grouped(
    entries: tuple[MapEntry, ...], blocks: tuple[ReadBlock, ...], addressing: Addressing
) -> None:
    seen: dict[str, ReadBlock] = {}
    for e in entries:
        block = _block_of(e, blocks, addressing)
        for key in _group_keys(e):
            if key in seen and seen[key] != block:
                raise MapError(
                    f"the entries filling {key!r} fall into two reads (0x{seen[key].address:04X} "
                    f"and 0x{block.address:04X}): put them next to each other or raise max_gap"
                )
            seen[key] = block


# --- raw values ---------------------------------------------------------------------------------


def _ordered(raw: bytes, byte_order: Order, word_order: Order) -> bytes:
    """Bytes of one value rearranged to plain big-endian."""
    if len(raw) < 2:
        return raw
    words = [raw[i : i + 2] for i in range(0, len(raw), 2)]
    if byte_order == "little":
        words = [w[::-1] for w in words]
    if word_order == "little":
        words.reverse()
    return b"".join(words)


def _raw_values(entry: MapEntry, data: bytes, offset: int) -> list[int | float]:
    size = 2 if entry.type == "bits" else _SIZE[entry.type]
    out: list[int | float] = []
    for i in range(entry.count if entry.type != "bits" else 1):
        chunk = _ordered(
            data[offset + i * size : offset + (i + 1) * size], entry.byte_order, entry.word_order
        )
        if entry.type == "f32":
            out.append(float(struct.unpack(">f", chunk)[0]))
            continue
        value = int.from_bytes(chunk, "big")
        if entry.mask is not None or entry.shift:
            value = (value >> entry.shift) & (entry.mask if entry.mask is not None else -1)
        if entry.type in _SIGNED and value >= 1 << (8 * size - 1):
            value -= 1 << (8 * size)
        out.append(value)
    return out


def _coil_value(entry: MapEntry, data: bytes, bit_offset: int) -> int:
    value = 0
    for i in range(entry.count):
        n = bit_offset + i
        if data[n // 8] >> (n % 8) & 1:
            value |= 1 << i
    return value


def _scaled(entry: MapEntry, raw: int | float) -> Fraction:
    return Fraction(raw) * entry.scale + entry.offset


# --- the codec ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Accumulator:
    values: dict[str, Any] = field(default_factory=dict)
    lists: dict[str, list[float]] = field(default_factory=dict)
    extra: dict[str, float | int | str | bool] = field(default_factory=dict)
    protections: Protection | None = None
    alarms: Alarm | None = None

    def reading(self) -> Reading:
        changes: dict[str, Any] = dict(self.values)
        for name, items in self.lists.items():
            changes[name] = tuple(items)
        if self.protections is not None:
            changes["protections"] = self.protections
        if self.alarms is not None:
            changes["alarms"] = self.alarms
        if self.extra:
            changes["extra"] = tuple(self.extra.items())
        return replace(Reading(), **changes)


def _apply_value(
    acc: _Accumulator, entry: MapEntry, values: list[int | float], limit: int | None = None
) -> None:
    name = entry.field or entry.extra
    assert name is not None
    if limit is not None:
        values = values[: max(0, limit)]
    kept = [v for v in values if not (isinstance(v, int) and v in entry.ignore)]
    if entry.field in TUPLE_FIELDS:
        acc.lists.setdefault(name, []).extend(float(_scaled(entry, v)) for v in kept)
        return
    if not kept:
        return  # the device says "no value here"
    number = _scaled(entry, kept[0])
    if entry.field in INT_FIELDS:
        acc.values[name] = round(number)
    elif entry.field is not None:
        value = float(number)
        acc.values[name] = abs(value) if entry.field in _MAGNITUDES else value
    else:
        acc.extra[name] = round(number) if number.denominator == 1 else float(number)


def _apply_bits(acc: _Accumulator, entry: MapEntry, raw: int) -> None:
    for rule in entry.bits:
        hit = bool(raw & rule.mask) != rule.invert
        if rule.target == "protection":
            acc.protections = (acc.protections or Protection.NONE) | (
                Protection[rule.name.upper()] if hit else Protection.NONE
            )
        elif rule.target == "alarm":
            acc.alarms = (acc.alarms or Alarm.NONE) | (
                Alarm[rule.name.upper()] if hit else Alarm.NONE
            )
        elif rule.target == "field":
            acc.values[rule.name] = hit
        else:
            acc.extra[rule.name] = hit
    unnamed = raw & ~_covered(entry) & ((1 << _width(entry)) - 1)
    if entry.unknown and unnamed:
        names = [f"unknown_bit_{entry.address}.{i}" for i in range(32) if unnamed >> i & 1]
        if entry.unknown == "protection":
            acc.protections = (acc.protections or Protection.NONE) | Protection.UNKNOWN
            key = "protections_active"
        else:
            acc.alarms = (acc.alarms or Alarm.NONE) | Alarm.UNKNOWN
            key = "alarms_active"
        before = acc.extra.get(key)
        acc.extra[key] = ",".join([str(before), *names] if before else names)


def _covered(entry: MapEntry) -> int:
    out = 0
    for rule in entry.bits:
        out |= rule.mask
    return out


def _width(entry: MapEntry) -> int:
    """Bits an integer entry holds (a coil entry: its coils)."""
    if entry.coils:
        return entry.count
    return 16 if entry.type == "bits" else 8 * _SIZE[entry.type]


def _decode_entry(
    acc: _Accumulator, entry: MapEntry, data: bytes, offset: int, limit: int | None = None
) -> None:
    if entry.coils:
        raw: int | float = _coil_value(entry, data, offset)
        values: list[int | float] = [raw]
    elif entry.type == "str":
        text = _ordered(data[offset : offset + entry.count], entry.byte_order, "big")
        acc_name = entry.field or entry.extra
        assert acc_name is not None
        decoded = text.rstrip(b"\x00 ").decode("ascii", errors="replace")
        if entry.field is not None:
            acc.values[acc_name] = decoded
        else:
            acc.extra[acc_name] = decoded
        return
    else:
        values = _raw_values(entry, data, offset)
    if entry.bits:
        first = values[0]
        assert isinstance(first, int)
        _apply_bits(acc, entry, first)
    else:
        _apply_value(acc, entry, values, limit)


class RegisterMapCodec:
    """The serial codec contract (see SERIAL_CONTRACT.md) for one register map."""

    PROTOCOL: Final = PROTOCOL

    def __init__(self, register_map: RegisterMap) -> None:
        self.map = register_map
        self.DEFAULT_BAUD = register_map.baud
        self.GAP_S = register_map.gap_s
        self.REPLY_TIMEOUT_S = register_map.reply_timeout_s
        # Tried by `bankwatch scan` besides 0-15.
        self.SCAN_ADDRESSES = register_map.scan_addresses

    @staticmethod
    def frame_length(buf: bytes) -> int | None:
        return modbus_rtu.frame_length(buf)

    @staticmethod
    def frame_address(frame: bytes) -> int | None:
        return modbus_rtu.frame_address(frame)

    @staticmethod
    def is_request(frame: bytes) -> bool:
        return modbus_rtu.is_request(frame)

    def poll_requests(self, address: int) -> list[bytes]:
        return [block.request(address) for block in self.map.blocks]

    def _request_of(self, reply: ReadReply, request: bytes | None) -> ReadRequest:
        if request is not None:
            req = modbus_rtu.parse_request(request)
            if not isinstance(req, ReadRequest):
                raise UnmappedReplyError("the request given is not a read")
            if req.slave != reply.slave or req.function != reply.function:
                raise ModbusFrameError(
                    f"reply from slave {reply.slave} function 0x{reply.function:02X} does not "
                    f"answer the request to slave {req.slave} function 0x{req.function:02X}"
                )
            want = (
                2 * req.count if req.function in modbus_rtu.READ_REGISTERS else (req.count + 7) // 8
            )
            if len(reply.data) != want:
                raise ModbusFrameError(
                    f"reply holds {len(reply.data)} data bytes, the request asks for {want}"
                )
            return req
        matches = [
            b
            for b in self.map.blocks
            if b.function == reply.function
            and len(reply.data)
            == (2 * b.count if b.function in modbus_rtu.READ_REGISTERS else (b.count + 7) // 8)
        ]
        if len(matches) != 1:
            raise UnmappedReplyError(
                f"a function 0x{reply.function:02X} reply of {len(reply.data)} data bytes "
                f"{'matches several reads' if matches else 'matches no read'} of map "
                f"{self.map.name!r}: give the request it answers"
            )
        b = matches[0]
        return ReadRequest(reply.slave, b.function, b.address, b.count)

    def decode(self, frame: bytes, request: bytes | None = None) -> Reading:
        if len(frame) == 8 and modbus_rtu.is_request(frame):
            modbus_rtu.parse_request(frame)
            return Reading()
        reply = modbus_rtu.parse_reply(frame)
        if isinstance(reply, ExceptionReply):
            raise ExceptionReplyError(reply.slave, reply.function, reply.code)
        if not isinstance(reply, ReadReply):
            raise UnmappedReplyError(f"function 0x{frame[1]:02X} reply carries no values")
        req = self._request_of(reply, request)
        units = self.map.units_of(req.function, req.count)
        inside = self.map.entries_within(req.function, req.address, units)
        if not inside:
            raise UnmappedReplyError(
                f"registers 0x{req.address:04X}+{req.count} hold no entry of map {self.map.name!r}"
            )
        # A list or a flag set is only filled when every entry feeding it is here.
        complete = _complete_groups(self.map.entries, inside)
        acc = _Accumulator()
        for entry in inside:
            if all(k in complete for k in _group_keys(entry)):
                limit = None
                if entry.length_from is not None:
                    at = self.map.offset_of(entry.length_from, req.address)
                    limit = int.from_bytes(reply.data[at : at + 2], "big")
                _decode_entry(
                    acc, entry, reply.data, self.map.data_offset(entry, req.address), limit
                )
        return acc.reading()

    def _list_start(self, entry: MapEntry) -> int:
        return _list_start(self.map.entries, entry) if entry.field in TUPLE_FIELDS else 0

    def encode_reply(self, request: bytes, reading: Reading) -> bytes | None:
        """The simulator's side: the register image a device with this map would hold."""
        try:
            req = modbus_rtu.parse_request(request)
        except FrameError:
            return None
        if not isinstance(req, ReadRequest):
            return modbus_rtu.encode_exception(req.slave, request[1], 1)
        units = self.map.units_of(req.function, req.count)
        inside = self.map.entries_within(req.function, req.address, units)
        if not inside:
            return modbus_rtu.encode_exception(req.slave, req.function, 2)
        if req.function in modbus_rtu.READ_BITS:
            bits = [False] * req.count
            for entry in inside:
                raw = _encode_raw_int(entry, reading)
                for i in range(entry.count):
                    bits[entry.address - req.address + i] = bool(raw >> i & 1)
            return modbus_rtu.encode_read_reply(req.slave, req.function, modbus_rtu.pack_bits(bits))
        image = bytearray(2 * req.count)
        for entry in inside:
            offset = self.map.data_offset(entry, req.address)
            chunk = _encode_entry(entry, reading, self._list_start(entry))
            image[offset : offset + len(chunk)] = _merge_bits(
                bytes(image[offset : offset + len(chunk)]), chunk, entry
            )
            if entry.length_from is not None:
                # The device states how many slots of the list are real.
                items = getattr(reading, entry.field or "") or ()
                n = min(max(len(items) - self._list_start(entry), 0), entry.count)
                at = self.map.offset_of(entry.length_from, req.address)
                image[at : at + 2] = n.to_bytes(2, "big")
        regs = [int.from_bytes(image[i : i + 2], "big") for i in range(0, len(image), 2)]
        return modbus_rtu.encode_read_reply(req.slave, req.function, regs)


def _list_start(entries: tuple[MapEntry, ...], entry: MapEntry) -> int:
    """Where an entry's values start in the list its field collects (entries in map order)."""
    start = 0
    for e in entries:
        if e is entry:
            return start
        if e.field == entry.field:
            start += e.count
    return start


def _complete_groups(all_entries: tuple[MapEntry, ...], inside: list[MapEntry]) -> set[str]:
    here = {id(e) for e in inside}
    keys = {k for e in all_entries for k in _group_keys(e)}
    return {k for k in keys if all(id(e) in here for e in all_entries if k in _group_keys(e))}


# --- encoding (the simulator's direction) -------------------------------------------------------


def _reading_value(entry: MapEntry, reading: Reading) -> Any:
    if entry.field is not None:
        return getattr(reading, entry.field)
    if entry.extra is not None:
        return dict(reading.extra).get(entry.extra)
    return None


def _unscale(entry: MapEntry, value: float) -> int:
    if entry.scale == 0:
        return 0
    return round((Fraction(value) - entry.offset) / entry.scale)


def _encode_raw_int(entry: MapEntry, reading: Reading) -> int:
    """An integer entry's raw value (before mask/shift placement) from a reading."""
    if entry.bits:
        raw = 0
        for rule in entry.bits:
            want = _rule_state(rule, reading)
            if want != rule.invert:
                raw |= rule.mask & -rule.mask  # the rule's lowest bit says it
        unnamed = ~_covered(entry) & ((1 << _width(entry)) - 1)
        flags = reading.protections if entry.unknown == "protection" else reading.alarms
        unknown = Protection.UNKNOWN if entry.unknown == "protection" else Alarm.UNKNOWN
        if entry.unknown and unnamed and flags is not None and unknown in flags:
            raw |= unnamed & -unnamed  # the first bit no rule covers
        return raw
    value = _reading_value(entry, reading)
    if value is None or isinstance(value, str | tuple):
        return min(entry.ignore) if entry.ignore else 0
    return _unscale(entry, float(value))


def _rule_state(rule: BitRule, reading: Reading) -> bool:
    if rule.target == "protection":
        return (
            reading.protections is not None and Protection[rule.name.upper()] in reading.protections
        )
    if rule.target == "alarm":
        return reading.alarms is not None and Alarm[rule.name.upper()] in reading.alarms
    if rule.target == "field":
        # A switch the reading does not mention is closed: the healthy state.
        return getattr(reading, rule.name) is not False
    return dict(reading.extra).get(rule.name) is True


def _pack(entry: MapEntry, raw: int) -> bytes:
    size = 2 if entry.type == "bits" else _SIZE[entry.type]
    if entry.mask is not None or entry.shift:
        raw = (
            raw & (entry.mask if entry.mask is not None else (1 << (8 * size)) - 1)
        ) << entry.shift
    bits = 8 * size
    if entry.type in _SIGNED:
        raw = min(max(raw, -(1 << (bits - 1))), (1 << (bits - 1)) - 1) & ((1 << bits) - 1)
    else:
        raw = min(max(raw, 0), (1 << bits) - 1)
    return _ordered(raw.to_bytes(size, "big"), entry.byte_order, entry.word_order)


def _encode_entry(entry: MapEntry, reading: Reading, list_start: int = 0) -> bytes:
    if entry.type == "str":
        value = _reading_value(entry, reading)
        text = (value if isinstance(value, str) else "").encode("ascii", errors="replace")
        return _ordered(text[: entry.count].ljust(entry.count, b"\x00"), entry.byte_order, "big")
    if entry.type == "f32":
        value = _reading_value(entry, reading)
        number = float(value) if isinstance(value, int | float) else 0.0
        packed = struct.pack(">f", float((Fraction(number) - entry.offset) / entry.scale))
        return _ordered(packed, entry.byte_order, entry.word_order)
    if entry.field in TUPLE_FIELDS:
        items = list(getattr(reading, entry.field) or ())[list_start:]
        out = b""
        filler = min(entry.ignore) if entry.ignore else 0
        for i in range(entry.count):
            raw = _unscale(entry, items[i]) if i < len(items) else filler
            out += _pack(entry, raw)
        return out
    return _pack(entry, _encode_raw_int(entry, reading))


def _merge_bits(old: bytes, new: bytes, entry: MapEntry) -> bytes:
    """Entries that share a register through masks (two u8 in one u16) OR into it."""
    if entry.mask is None and not entry.shift:
        return new
    return bytes(a | b for a, b in zip(old, new, strict=True))


def reading_fields() -> frozenset[str]:
    """Every Reading field a map entry may fill."""
    names = {f.name for f in fields(Reading)}
    allowed = FLOAT_FIELDS | INT_FIELDS | TUPLE_FIELDS | STR_FIELDS | BOOL_FIELDS
    assert allowed <= names
    return frozenset(allowed)
