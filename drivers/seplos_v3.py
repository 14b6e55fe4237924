"""Seplos v3 ("10E"/3rd-gen, SP05B/SP57B) BMS over Modbus RTU: protocol `seplos-v3`.

Sources: shared/vectors/PROTOCOLS.md section 6 (from the XZH "BMS Modbus-RTU Protocol" PDF as
used by syssi/esphome-seplos-bms, aiobmsble and dbus-serialbattery), checked against the
captures in tests/vectors/seplos_v3_modbus.json. RS485, 19200 8N1, standard Modbus CRC.

Each pack answers at its DIP address (1..15) with three blocks:

    PIA  FC 0x04  0x1000  17 registers  voltage 10 mV, current s16 10 mA (+ charging),
                                        remaining / total capacity 10 mAh, SOC / SOH 0.1 %,
                                        cycles, cell extremes mV, temperature extremes 0.1 K,
                                        max discharge / charge current A
    PIB  FC 0x04  0x1100  26 registers  16 cells mV, 4 cell temperatures + 4 spare slots
                                        (0x0AAB = unused), ambient, power (MOSFET), all 0.1 K
    PIC  FC 0x01  0x1200  0x90 coils    alarm and state bits (see _PIC_* below)

The master pack (address 0) also serves the bank's aggregates:

    EIA  FC 0x04  0x2000  26 registers  32-bit values LOW WORD FIRST: voltage 10 mV, current
                                        0.1 A, remaining / total capacity 10 mAh, total
                                        discharged 10 Ah, rated capacity 10 mAh, online and
                                        protected pack bits, max discharge / charge current
                                        0.1 A; reg 20/21 suggested pack OV/UV 0.1 V, 22 pack
                                        count, 23 cycles, 24 SOC 0.1 %, 25 SOH 0.1 %
    EIB  FC 0x04  0x2100  22 registers  max / min cell mV and their cell ids, max / min pack
                                        voltage 10 mV and their pack ids, max / min / average
                                        cell temperature and the cells holding the extremes

The EIA/EIB layout is the XZH "BMS Modbus-RTU Protocol" table (in syssi/esphome-seplos-bms
docs/), checked against a SG16S200A master's reply and aiobmsble's two-pack system.
    EIC  FC 0x01  0x2200  0x50 coils    byte 7: b0 discharge FET, b1 charge FET,
                                        b2 current-limit FET, b3 heater

Temperatures in 0.1 K use 273.1 K as 0 °C (raw 2731 = 0.0 °C), which is what the vectors and
aiobmsble do. A reply carries no register address, so `decode` needs the request it answers
unless the reply's function and size name one block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from bankwatch.drivers import modbus_rtu
from bankwatch.drivers.bits import BitTable
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
    "BLOCKS",
    "DEFAULT_BAUD",
    "GAP_S",
    "MASTER_ADDRESS",
    "PROTOCOL",
    "REPLY_TIMEOUT_S",
    "Block",
    "UnknownBlockError",
    "block_for",
    "decode",
    "encode_reply",
    "frame_address",
    "frame_length",
    "is_request",
    "poll_requests",
]

PROTOCOL: Final = "seplos-v3"
DEFAULT_BAUD: Final = 19200
# Modbus asks for 3.5 character times of silence between frames: 4 ms at 9600 baud.
GAP_S: Final = 0.004
REPLY_TIMEOUT_S: Final = 0.5
MASTER_ADDRESS: Final = 0

_ZERO_C_RAW: Final = 2731  # 0.1 K
_UNUSED_TEMPERATURE: Final = 0x0AAB


class UnknownBlockError(ModbusFrameError):
    """A request or reply for registers that are not one of the Seplos v3 blocks."""


# --- value helpers ------------------------------------------------------------------------------


def _s16(raw: int) -> int:
    return raw - 0x10000 if raw & 0x8000 else raw


def _u32_lo_first(regs: tuple[int, ...], i: int) -> int:
    return regs[i] | regs[i + 1] << 16


def _s32_lo_first(regs: tuple[int, ...], i: int) -> int:
    value = _u32_lo_first(regs, i)
    return value - 0x1_0000_0000 if value & 0x8000_0000 else value


def _kelvin10_to_c(raw: int) -> float:
    return (raw - _ZERO_C_RAW) / 10


def _to_u16(value: float) -> int:
    return min(max(round(value), 0), 0xFFFF)


def _to_s16(value: float) -> int:
    return min(max(round(value), -0x8000), 0x7FFF) & 0xFFFF


def _c_to_kelvin10(value: float | None) -> int:
    return _to_u16(_ZERO_C_RAW + 10 * (value if value is not None else 0.0))


def _u32_words(value: float) -> tuple[int, int]:
    v = min(max(round(value), 0), 0xFFFF_FFFF)
    return v & 0xFFFF, v >> 16


def _s32_words(value: float) -> tuple[int, int]:
    v = min(max(round(value), -0x8000_0000), 0x7FFF_FFFF) & 0xFFFF_FFFF
    return v & 0xFFFF, v >> 16


def _any_bit(data: bytes, byte_indexes: tuple[int, ...]) -> bool:
    return any(data[i] for i in byte_indexes)


# --- the blocks ---------------------------------------------------------------------------------


def _decode_pia(regs: tuple[int, ...]) -> Reading:
    return Reading(
        pack_voltage_v=regs[0] / 100,
        current_a=_s16(regs[1]) / 100,
        remaining_ah=regs[2] / 100,
        full_charge_ah=regs[3] / 100,
        soc_pct=regs[5] / 10,
        soh_pct=regs[6] / 10,
        cycles=regs[7],
        cell_voltage_max_v=regs[10] / 1000,
        cell_voltage_min_v=regs[11] / 1000,
        cell_temperature_max_c=_kelvin10_to_c(regs[12]),
        cell_temperature_min_c=_kelvin10_to_c(regs[13]),
        discharge_current_limit_a=float(regs[15]),
        charge_current_limit_a=float(regs[16]),
    )


def _encode_pia(r: Reading) -> tuple[int, ...]:
    cells = r.cell_voltages_v or ()
    temps = r.temperatures_c or ()
    avg_cell = sum(cells) / len(cells) if cells else 0.0
    avg_temp = sum(temps) / len(temps) if temps else r.cell_temperature_max_c
    max_temp = max(temps) if temps else r.cell_temperature_max_c
    min_temp = min(temps) if temps else r.cell_temperature_min_c
    return (
        _to_u16((r.pack_voltage_v or 0.0) * 100),
        _to_s16((r.current_a or 0.0) * 100),
        _to_u16((r.remaining_ah or 0.0) * 100),
        _to_u16((r.full_charge_ah or 0.0) * 100),
        0,
        _to_u16((r.soc_pct or 0.0) * 10),
        _to_u16((r.soh_pct if r.soh_pct is not None else 100.0) * 10),
        _to_u16(r.cycles or 0),
        _to_u16(avg_cell * 1000),
        _c_to_kelvin10(avg_temp),
        _to_u16((r.max_cell_v or 0.0) * 1000),
        _to_u16((r.min_cell_v or 0.0) * 1000),
        _c_to_kelvin10(max_temp),
        _c_to_kelvin10(min_temp),
        0,
        _to_u16(r.discharge_current_limit_a or 0.0),
        _to_u16(r.charge_current_limit_a or 0.0),
    )


def _decode_pib(regs: tuple[int, ...]) -> Reading:
    cells = list(regs[0:16])
    while cells and cells[-1] == 0:  # a pack with fewer than 16 cells reads 0 past its last
        cells.pop()
    temps = [_kelvin10_to_c(raw) for raw in regs[16:20]]
    temps += [_kelvin10_to_c(raw) for raw in regs[20:24] if raw != _UNUSED_TEMPERATURE]
    return Reading(
        cell_voltages_v=tuple(mv / 1000 for mv in cells) or None,
        temperatures_c=tuple(temps),
        mosfet_temperature_c=_kelvin10_to_c(regs[25]),
        extra=(("ambient_temperature_c", _kelvin10_to_c(regs[24])),),
    )


def _encode_pib(r: Reading) -> tuple[int, ...]:
    cells = [_to_u16(v * 1000) for v in (r.cell_voltages_v or ())[:16]]
    cells += [0] * (16 - len(cells))
    temps = list(r.temperatures_c or ())
    cell_temps = [_c_to_kelvin10(t) for t in temps[:4]]
    cell_temps += [_c_to_kelvin10(r.temperature_c)] * (4 - len(cell_temps))
    spare = [_c_to_kelvin10(t) for t in temps[4:8]]
    spare += [_UNUSED_TEMPERATURE] * (4 - len(spare))
    ambient = dict(r.extra).get("ambient_temperature_c")
    ambient_c = float(ambient) if isinstance(ambient, int | float) else r.temperature_c
    mosfet = r.mosfet_temperature_c if r.mosfet_temperature_c is not None else r.temperature_c
    return (
        *cells,
        *cell_temps,
        *spare,
        _c_to_kelvin10(ambient_c),
        _c_to_kelvin10(mosfet),
    )


# PIC coil bytes (coil 0x1200 + 8·byte + bit). Bytes 0-5 are per-cell alarm bitmaps; byte 15
# is the FET state (coil 0x1278 discharge, 0x1279 charge, per dbus-serialbattery). No capture
# with bits set exists (PROTOCOLS.md section 8): these follow the vendor table, unverified.
_PIC_ALARMS: Final[tuple[tuple[tuple[int, ...], Alarm], ...]] = (
    ((0, 1), Alarm.CELL_LOW_VOLTAGE),
    ((2, 3), Alarm.CELL_HIGH_VOLTAGE),
    ((4,), Alarm.LOW_TEMPERATURE),
    ((5,), Alarm.HIGH_TEMPERATURE),
)
_PIC_BALANCING: Final = (6, 7)
_PIC_FET_BYTE: Final = 15
_PIC_HARD_FAULT_BYTE: Final = 17

# The six event-code bytes (XZH tables TB02, TB03, TB04, TB05, TB16, TB06), the same in a
# pack's PIC (from byte 9, coil 0x1248) and the master's EIC (from byte 1, coil 0x2208):
# (byte, bit, name, protection, alarm). Bits the table reserves are condition bits too: a
# firmware that starts using one is surfaced as unknown, not dropped.
_P = Protection
_A = Alarm
_EVENT_ROWS: Final[tuple[tuple[int, int, str, Protection | None, Alarm | None], ...]] = (
    (0, 0, "cell_high_voltage_alarm", None, _A.CELL_HIGH_VOLTAGE),
    (0, 1, "cell_overvoltage_protection", _P.CELL_OVERVOLTAGE, None),
    (0, 2, "cell_low_voltage_alarm", None, _A.CELL_LOW_VOLTAGE),
    (0, 3, "cell_undervoltage_protection", _P.CELL_UNDERVOLTAGE, None),
    (0, 4, "pack_high_voltage_alarm", None, _A.CELL_HIGH_VOLTAGE),
    (0, 5, "pack_overvoltage_protection", _P.CELL_OVERVOLTAGE, None),
    (0, 6, "pack_low_voltage_alarm", None, _A.CELL_LOW_VOLTAGE),
    (0, 7, "pack_undervoltage_protection", _P.CELL_UNDERVOLTAGE, None),
    (1, 0, "charge_high_temperature_alarm", None, _A.HIGH_TEMPERATURE),
    (1, 1, "charge_over_temperature_protection", _P.OVER_TEMPERATURE, None),
    (1, 2, "charge_low_temperature_alarm", None, _A.LOW_TEMPERATURE),
    (1, 3, "charge_under_temperature_protection", _P.UNDER_TEMPERATURE, None),
    (1, 4, "discharge_high_temperature_alarm", None, _A.HIGH_TEMPERATURE),
    (1, 5, "discharge_over_temperature_protection", _P.OVER_TEMPERATURE, None),
    (1, 6, "discharge_low_temperature_alarm", None, _A.LOW_TEMPERATURE),
    (1, 7, "discharge_under_temperature_protection", _P.UNDER_TEMPERATURE, None),
    (2, 0, "environment_high_temperature_alarm", None, _A.HIGH_TEMPERATURE),
    (2, 1, "environment_over_temperature_protection", _P.OVER_TEMPERATURE, None),
    (2, 2, "environment_low_temperature_alarm", None, _A.LOW_TEMPERATURE),
    (2, 3, "environment_under_temperature_protection", _P.UNDER_TEMPERATURE, None),
    (2, 4, "power_high_temperature_alarm", None, _A.HIGH_TEMPERATURE),
    (2, 5, "power_over_temperature_protection", _P.OVER_TEMPERATURE, None),
    (2, 6, "cell_low_temperature_heating", None, None),  # a state, not a condition
    (3, 0, "charge_current_alarm", None, _A.CHARGE_HIGH_CURRENT),
    (3, 1, "charge_overcurrent_protection", _P.CHARGE_OVERCURRENT, None),
    (3, 2, "charge_overcurrent_protection_2", _P.CHARGE_OVERCURRENT, None),
    (3, 3, "discharge_current_alarm", None, _A.DISCHARGE_HIGH_CURRENT),
    (3, 4, "discharge_overcurrent_protection", _P.DISCHARGE_OVERCURRENT, None),
    (3, 5, "discharge_overcurrent_protection_2", _P.DISCHARGE_OVERCURRENT, None),
    (3, 6, "output_short_circuit_protection", _P.SHORT_CIRCUIT, None),
    (4, 0, "output_short_latch_up", _P.SHORT_CIRCUIT, None),
    (4, 2, "charge_overcurrent_latch_up", _P.CHARGE_OVERCURRENT, None),
    (4, 3, "discharge_overcurrent_latch_up", _P.DISCHARGE_OVERCURRENT, None),
    (5, 2, "soc_alarm", None, None),
    # The pack is empty enough that the BMS has opened its switch.
    (5, 3, "soc_protection", _P.CELL_UNDERVOLTAGE, None),
    (5, 4, "cell_difference_alarm", None, _A.CELL_IMBALANCE),
)
# One table per event byte: the simulator sets, in each byte, the first bit of each condition
# (as the register-map codec does per entry).
_EVENTS: Final = tuple(
    BitTable.by_byte(row for row in _EVENT_ROWS if row[0] == byte).with_unknown(
        (range(8 * byte, 8 * byte + 8), _P.UNKNOWN)
    )
    for byte in range(6)
)
_EVENT_BYTES: Final = 6
_PIC_EVENTS: Final = 9
_EIC_EVENTS: Final = 1


def _events(data: bytes, start: int) -> tuple[Protection, Alarm, str]:
    word = int.from_bytes(data[start : start + _EVENT_BYTES], "little")
    protections, alarms = Protection.NONE, Alarm.NONE
    names: list[str] = []
    for table in _EVENTS:
        found = table.decode(word)
        protections |= found.protections
        alarms |= found.alarms
        # The flags name the rest; a bit the table reserves is named by its number.
        names += [n for n in found.names if n.startswith("unknown_bit_")]
    return protections, alarms, ",".join(names)


def _encode_events(out: bytearray, start: int, r: Reading) -> None:
    word = 0
    protections = r.protections
    for table in _EVENTS:
        bits = table.encode(protections, r.alarms)
        if protections is not None and bits & ~table.encode(protections & ~_P.UNKNOWN, r.alarms):
            protections &= ~_P.UNKNOWN  # one unknown bit says it; the first free one
        word |= bits
    out[start : start + _EVENT_BYTES] = word.to_bytes(_EVENT_BYTES, "little")


_FET_DISCHARGE: Final = 0x01
_FET_CHARGE: Final = 0x02


def _decode_pic(data: bytes) -> Reading:
    protections, alarms, names = _events(data, _PIC_EVENTS)
    for byte_indexes, flag in _PIC_ALARMS:
        if _any_bit(data, byte_indexes):
            alarms |= flag
    fets = data[_PIC_FET_BYTE]
    return Reading(
        protections=protections,
        alarms=alarms,
        discharge_enabled=bool(fets & _FET_DISCHARGE),
        charge_enabled=bool(fets & _FET_CHARGE),
        extra=(
            ("balancing", _any_bit(data, _PIC_BALANCING)),
            ("hard_fault", bool(data[_PIC_HARD_FAULT_BYTE])),
            *((("protections_active", names),) if names else ()),
        ),
    )


def _encode_pic(r: Reading) -> bytes:
    out = bytearray(18)
    extra = dict(r.extra)
    if extra.get("balancing") is True:
        out[_PIC_BALANCING[0]] = 0x01
    if extra.get("hard_fault") is True:
        out[_PIC_HARD_FAULT_BYTE] = 0x01
    for byte_indexes, flag in _PIC_ALARMS:
        if r.alarms is not None and flag in r.alarms:
            out[byte_indexes[0]] = 0x01
    _encode_events(out, _PIC_EVENTS, r)
    out[_PIC_FET_BYTE] = (_FET_DISCHARGE if r.discharge_enabled is not False else 0) | (
        _FET_CHARGE if r.charge_enabled is not False else 0
    )
    return bytes(out)


def _decode_eia(regs: tuple[int, ...]) -> Reading:
    """The bank: the XZH table's EIA (0x2000-0x2019), 32-bit values low word first. Packs
    are counted online from their flag bits; the rest of the configured packs are offline."""
    packs = regs[22]
    online_bits = _u32_lo_first(regs, 12)
    online = bin(online_bits).count("1")
    return Reading(
        pack_voltage_v=_u32_lo_first(regs, 0) / 100,
        current_a=_s32_lo_first(regs, 2) / 10,
        remaining_ah=_u32_lo_first(regs, 4) / 100,
        full_charge_ah=_u32_lo_first(regs, 6) / 100,
        design_ah=_u32_lo_first(regs, 10) / 100,
        discharge_current_limit_a=_u32_lo_first(regs, 16) / 10,
        charge_current_limit_a=_u32_lo_first(regs, 18) / 10,
        modules_online=online if online_bits else packs,
        modules_offline=max(packs - online, 0) if online_bits else None,
        cycles=regs[23],
        soc_pct=regs[24] / 10,
        soh_pct=regs[25] / 10,
        extra=(
            ("discharged_capacity_ah", _u32_lo_first(regs, 8) * 10),
            ("packs_online_bits", online_bits),
            ("packs_protected_bits", _u32_lo_first(regs, 14)),
            ("suggested_pack_ov_v", regs[20] / 10),
            ("suggested_pack_uv_v", regs[21] / 10),
        ),
    )


def _encode_eia(r: Reading) -> tuple[int, ...]:
    regs = [0] * 26
    extra = dict(r.extra)
    packs = r.modules_online if r.modules_online is not None else 1
    regs[0:2] = _u32_words((r.pack_voltage_v or 0.0) * 100)
    regs[2:4] = _s32_words((r.current_a or 0.0) * 10)
    regs[4:6] = _u32_words((r.remaining_ah or 0.0) * 100)
    regs[6:8] = _u32_words((r.full_charge_ah or 0.0) * 100)
    regs[10:12] = _u32_words((r.design_ah or r.full_charge_ah or 0.0) * 100)
    regs[12:14] = _u32_words((1 << min(packs, 32)) - 1)
    protected = extra.get("packs_protected_bits")
    if isinstance(protected, int) and not isinstance(protected, bool):
        regs[14:16] = _u32_words(protected)
    regs[16:18] = _u32_words((r.discharge_current_limit_a or 0.0) * 10)
    regs[18:20] = _u32_words((r.charge_current_limit_a or 0.0) * 10)
    regs[22] = _to_u16(packs)
    regs[23] = _to_u16(r.cycles or 0)
    regs[24] = _to_u16((r.soc_pct or 0.0) * 10)
    regs[25] = _to_u16((r.soh_pct if r.soh_pct is not None else 100.0) * 10)
    return tuple(regs)


# The XZH table gives EIB temperatures in 0.1 K; the captured firmware sends 0.1 °C (its 250
# beside packs at 25.0 °C). No cell is at 150 °C, and none at -120 °C: a value above this is
# kelvin.
_EIB_KELVIN_ABOVE: Final = 1500


def _eib_temperature(raw: int) -> float:
    value = _s16(raw)
    return _kelvin10_to_c(value) if value > _EIB_KELVIN_ABOVE else value / 10


def _decode_eib(regs: tuple[int, ...]) -> Reading:
    """The bank's extremes (XZH EIB 0x2100-0x210C): cell voltages and temperatures with the
    cell that holds each, pack voltages. Registers after 0x210C are not read: the captured
    firmware does not follow the table there."""
    return Reading(
        cell_voltage_max_v=regs[0] / 1000,
        cell_voltage_min_v=regs[1] / 1000,
        cell_voltage_max_id=str(regs[2]),
        cell_voltage_min_id=str(regs[3]),
        cell_temperature_max_c=_eib_temperature(regs[8]),
        cell_temperature_min_c=_eib_temperature(regs[9]),
        cell_temperature_max_id=str(regs[11]),
        cell_temperature_min_id=str(regs[12]),
        extra=(
            ("pack_voltage_max_v", regs[4] / 100),
            ("pack_voltage_min_v", regs[5] / 100),
            ("pack_voltage_max_id", regs[6]),
            ("pack_voltage_min_id", regs[7]),
            ("cell_temperature_average_c", _eib_temperature(regs[10])),
        ),
    )


def _id_of(value: str | None) -> int:
    return int(value) if value is not None and value.isdigit() else 0


def _encode_eib(r: Reading) -> tuple[int, ...]:
    regs = [0] * 22
    temps = r.temperatures_c or ()
    avg = sum(temps) / len(temps) if temps else (r.temperature_c or 0.0)
    volts = r.pack_voltage_v or 0.0
    hot = r.cell_temperature_max_c if r.cell_temperature_max_c is not None else avg
    cold = r.cell_temperature_min_c if r.cell_temperature_min_c is not None else avg
    regs[0] = _to_u16((r.max_cell_v or 0.0) * 1000)
    regs[1] = _to_u16((r.min_cell_v or 0.0) * 1000)
    regs[2] = _id_of(r.cell_voltage_max_id)
    regs[3] = _id_of(r.cell_voltage_min_id)
    regs[4] = regs[5] = _to_u16(volts * 100)
    regs[8] = _to_s16(hot * 10)
    regs[9] = _to_s16(cold * 10)
    regs[10] = _to_s16(avg * 10)
    regs[11] = _id_of(r.cell_temperature_max_id)
    regs[12] = _id_of(r.cell_temperature_min_id)
    return tuple(regs)


_EIC_FET_BYTE: Final = 7
_EIC_LIMIT: Final = 0x04
_EIC_HEATER: Final = 0x08


def _decode_eic(data: bytes) -> Reading:
    fets = data[_EIC_FET_BYTE]
    protections, alarms, names = _events(data, _EIC_EVENTS)
    return Reading(
        protections=protections,
        alarms=alarms,
        discharge_enabled=bool(fets & _FET_DISCHARGE),
        charge_enabled=bool(fets & _FET_CHARGE),
        extra=(
            ("current_limit_active", bool(fets & _EIC_LIMIT)),
            ("heater_on", bool(fets & _EIC_HEATER)),
            *((("protections_active", names),) if names else ()),
        ),
    )


def _encode_eic(r: Reading) -> bytes:
    out = bytearray(10)
    _encode_events(out, _EIC_EVENTS, r)
    extra = dict(r.extra)
    out[_EIC_FET_BYTE] = (
        (_FET_DISCHARGE if r.discharge_enabled is not False else 0)
        | (_FET_CHARGE if r.charge_enabled is not False else 0)
        | (_EIC_LIMIT if extra.get("current_limit_active") is True else 0)
        | (_EIC_HEATER if extra.get("heater_on") is True else 0)
    )
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Block:
    """One read the protocol defines. Register blocks decode from and encode to a register
    tuple; coil blocks from and to the packed bytes of the reply."""

    name: str
    function: int
    address: int
    count: int
    master: bool
    decode_registers: Callable[[tuple[int, ...]], Reading] | None = None
    encode_registers: Callable[[Reading], tuple[int, ...]] | None = None
    decode_bits: Callable[[bytes], Reading] | None = None
    encode_bits: Callable[[Reading], bytes] | None = None

    @property
    def reply_bytes(self) -> int:
        return (
            2 * self.count if self.function in modbus_rtu.READ_REGISTERS else (self.count + 7) // 8
        )

    def request(self, slave: int) -> bytes:
        return modbus_rtu.encode_read_request(slave, self.function, self.address, self.count)


BLOCKS: Final[tuple[Block, ...]] = (
    Block("PIA", 0x04, 0x1000, 0x11, False, _decode_pia, _encode_pia),
    Block("PIB", 0x04, 0x1100, 0x1A, False, _decode_pib, _encode_pib),
    Block("PIC", 0x01, 0x1200, 0x90, False, decode_bits=_decode_pic, encode_bits=_encode_pic),
    Block("EIA", 0x04, 0x2000, 0x1A, True, _decode_eia, _encode_eia),
    Block("EIB", 0x04, 0x2100, 0x16, True, _decode_eib, _encode_eib),
    Block("EIC", 0x01, 0x2200, 0x50, True, decode_bits=_decode_eic, encode_bits=_encode_eic),
)


def block_for(function: int, address: int, count: int) -> Block | None:
    for block in BLOCKS:
        if (block.function, block.address, block.count) == (function, address, count):
            return block
    return None


# --- the codec contract -------------------------------------------------------------------------

frame_length = modbus_rtu.frame_length
frame_address = modbus_rtu.frame_address


def is_request(frame: bytes) -> bool:
    return modbus_rtu.is_request(frame)


def poll_requests(address: int) -> list[bytes]:
    """The master (address 0) is asked for the bank's aggregates, a pack for its own blocks."""
    master = address == MASTER_ADDRESS
    return [block.request(address) for block in BLOCKS if block.master == master]


def _block_of_reply(reply: ReadReply, request: bytes | None) -> Block:
    if request is not None:
        req = modbus_rtu.parse_request(request)
        if not isinstance(req, ReadRequest):
            raise UnknownBlockError(
                "the request given is not a read: Seplos v3 replies answer reads"
            )
        block = block_for(req.function, req.address, req.count)
        if block is None:
            raise UnknownBlockError(
                f"request for {req.count} items at 0x{req.address:04X} (function "
                f"0x{req.function:02X}) is not a Seplos v3 block"
            )
        if req.slave != reply.slave or req.function != reply.function:
            raise ModbusFrameError(
                f"reply from slave {reply.slave} function 0x{reply.function:02X} does not answer "
                f"the request to slave {req.slave} function 0x{req.function:02X}"
            )
        if len(reply.data) != block.reply_bytes:
            raise ModbusFrameError(
                f"Seplos v3 {block.name} reply holds {len(reply.data)} data bytes, "
                f"expected {block.reply_bytes}"
            )
        return block
    matches = [
        b for b in BLOCKS if b.function == reply.function and b.reply_bytes == len(reply.data)
    ]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UnknownBlockError(
            f"no Seplos v3 block is answered by function 0x{reply.function:02X} with "
            f"{len(reply.data)} data bytes"
        )
    names = " or ".join(b.name for b in matches)
    raise UnknownBlockError(
        f"a reply of {len(reply.data)} data bytes could be {names}: give the request it answers"
    )


def decode(frame: bytes, request: bytes | None = None) -> Reading:
    """A Seplos v3 frame to a partial Reading. A request decodes to an empty Reading (it
    carries no values) once its block is known."""
    if len(frame) == 8 and modbus_rtu.is_request(frame):
        req = modbus_rtu.parse_request(frame)
        if (
            not isinstance(req, ReadRequest)
            or block_for(req.function, req.address, req.count) is None
        ):
            raise UnknownBlockError(f"request {frame.hex()} is not for a Seplos v3 block")
        return Reading()
    reply = modbus_rtu.parse_reply(frame)
    if isinstance(reply, ExceptionReply):
        raise ExceptionReplyError(reply.slave, reply.function, reply.code)
    if not isinstance(reply, ReadReply):
        raise UnknownBlockError(f"function 0x{frame[1]:02X} reply carries no Seplos v3 values")
    block = _block_of_reply(reply, request)
    if block.decode_registers is not None:
        return block.decode_registers(modbus_rtu.registers_of(reply))
    assert block.decode_bits is not None
    return block.decode_bits(reply.data)


def encode_reply(request: bytes, reading: Reading) -> bytes | None:
    """What a Seplos v3 pack (or the master, at address 0) answers. A read inside a block gets
    its slice of the block; anything else gets the exception a Modbus slave would send."""
    try:
        req = modbus_rtu.parse_request(request)
    except FrameError:
        return None  # a slave stays silent on a frame it cannot read
    if not isinstance(req, ReadRequest):
        return modbus_rtu.encode_exception(req.slave, request[1], 1)
    master = req.slave == MASTER_ADDRESS
    for block in BLOCKS:
        if block.function != req.function or block.master != master:
            continue
        start = req.address - block.address
        if start < 0 or start + req.count > block.count:
            continue
        if block.encode_registers is not None:
            regs = block.encode_registers(reading)
            return modbus_rtu.encode_read_reply(
                req.slave, req.function, regs[start : start + req.count]
            )
        assert block.encode_bits is not None
        packed = block.encode_bits(reading)
        bits = [bool(packed[i // 8] >> (i % 8) & 1) for i in range(start, start + req.count)]
        return modbus_rtu.encode_read_reply(req.slave, req.function, modbus_rtu.pack_bits(bits))
    return modbus_rtu.encode_exception(req.slave, req.function, 2)
