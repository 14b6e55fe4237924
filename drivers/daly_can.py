"""Daly BMS over CAN: request and response per BMS address, polled by the host.

Protocol: Daly CAN V1.0 and the Daly UART/RS485 V1.2 data tables (shared/vectors/PROTOCOLS.md
section 4). CAN 2.0B at 250 kbit/s, 29-bit ids `0x18 | data id | destination | source`: the host
(0x40) asks BMS 0x01 for SOC with id 0x18900140 and 8 zero bytes; the BMS answers with
0x18904001. The 8 data bytes of a reply are exactly the data bytes of the UART frame (no A5
header, length or checksum), big-endian:

    0x90  total voltage 0.1 V, (gathered voltage), current (raw - 30000) * 0.1 A, SOC 0.1 %
    0x91  max cell mV and its number, min cell mV and its number
    0x92  max temperature (°C + 40) and its sensor, min temperature and its sensor
    0x93  state (0 idle, 1 charging, 2 discharging), charge MOS, discharge MOS, life, mAh left
    0x94  cell count, temperature sensor count, charger, load, DI/DO bits, cycles
    0x95  frame number (1-based in every capture), three cell voltages mV
    0x96  frame number, seven temperatures (°C + 40)
    0x97  balancing bits, cell 1 = bit 0
    0x98  failure bits (level 1 = warning, level 2 = protection)

The payload tables (`PAYLOADS`) are plain data keyed by data id so that the UART driver
(`drivers/daly.py`, written in parallel) and this module can share them later: only the
framing differs.

Current sign: the document's formula gives + for raw > 30000, and firmwares disagree about
which way that is (dbus-serialbattery inverts it). The driver decides with the state byte of
0x93: a pack that says it is discharging cannot have a positive current; when the two disagree
the sign is flipped for good and a warning says so.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bankwatch.drivers.errors import FrameError
from bankwatch.drivers.model import Alarm, Protection, Reading

__all__ = [
    "BITRATE",
    "HOST_ADDRESS",
    "PAYLOADS",
    "POLL_IDS",
    "DalyCanDriver",
    "PayloadSpec",
    "bms_address_of",
    "decode_payload",
    "decode_reply",
    "encode_replies",
    "reply_id",
    "request_frame",
    "request_id",
    "split_id",
]

log = logging.getLogger(__name__)

BITRATE = 250_000
PRIORITY = 0x18
HOST_ADDRESS = 0x40  # "upper computer" in Daly's documents
CURRENT_OFFSET = 30000
TEMP_OFFSET = 40
CELLS_PER_FRAME = 3
TEMPS_PER_FRAME = 7
# What the driver asks for each poll cycle (0x97 balancing is left out: it rarely matters).
POLL_IDS: tuple[int, ...] = (0x90, 0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x98)

Fields = dict[str, Any]

_BE_U16 = struct.Struct(">H")
_S90 = struct.Struct(">HHHH")
_S91 = struct.Struct(">HBHB")
_S93 = struct.Struct(">BBBBI")


class DalyFrameError(FrameError):
    """A frame that is not a Daly CAN reply this codec can decode."""


def request_id(data_id: int, bms: int, host: int = HOST_ADDRESS) -> int:
    return (PRIORITY << 24) | (data_id << 16) | (bms << 8) | host


def reply_id(data_id: int, bms: int, host: int = HOST_ADDRESS) -> int:
    return (PRIORITY << 24) | (data_id << 16) | (host << 8) | bms


def split_id(can_id: int) -> tuple[int, int, int, int]:
    """(priority, data id, destination, source)."""
    return can_id >> 24, (can_id >> 16) & 0xFF, (can_id >> 8) & 0xFF, can_id & 0xFF


def request_frame(data_id: int, bms: int, host: int = HOST_ADDRESS) -> tuple[int, bytes, bool]:
    """The request for one data id: 8 zero bytes, extended id."""
    return request_id(data_id, bms, host), bytes(8), True


def bms_address_of(can_id: int, host: int = HOST_ADDRESS) -> int:
    """The BMS a frame is about: the source of a reply, the destination of a request."""
    _, _, dst, src = split_id(can_id)
    return dst if src == host else src


# --- payloads (shared with the UART protocol) ----------------------------------------------------


def _p90(d: bytes) -> Fields:
    total, gathered, current, soc = _S90.unpack_from(d)
    return {
        "pack_voltage_v": total / 10,
        "current_a": round((current - CURRENT_OFFSET) / 10, 1),
        "soc_pct": soc / 10,
        "extra": (("gathered_voltage_v", gathered / 10),),
    }


def _p91(d: bytes) -> Fields:
    vmax, nmax, vmin, nmin = _S91.unpack_from(d)
    return {
        "cell_voltage_max_v": vmax / 1000,
        "cell_voltage_max_id": str(nmax),
        "cell_voltage_min_v": vmin / 1000,
        "cell_voltage_min_id": str(nmin),
    }


def _p92(d: bytes) -> Fields:
    return {
        "cell_temperature_max_c": float(d[0] - TEMP_OFFSET),
        "cell_temperature_max_id": str(d[1]),
        "cell_temperature_min_c": float(d[2] - TEMP_OFFSET),
        "cell_temperature_min_id": str(d[3]),
    }


_STATES = ("idle", "charging", "discharging")


def _p93(d: bytes) -> Fields:
    state, charge_mos, discharge_mos, life, remaining_mah = _S93.unpack_from(d)
    return {
        "charge_enabled": bool(charge_mos),
        "discharge_enabled": bool(discharge_mos),
        "remaining_ah": remaining_mah / 1000,
        "extra": (
            ("state", _STATES[state] if state < len(_STATES) else f"unknown ({state})"),
            ("bms_life", life),
        ),
    }


def _p94(d: bytes) -> Fields:
    return {
        "cycles": _BE_U16.unpack_from(d, 5)[0],
        "extra": (
            ("cell_count", d[0]),
            ("temperature_sensor_count", d[1]),
            ("charger_connected", bool(d[2])),
            ("load_connected", bool(d[3])),
            ("dio_bits", d[4]),
        ),
    }


def _p95(d: bytes) -> Fields:
    cells = tuple(_BE_U16.unpack_from(d, 1 + 2 * i)[0] / 1000 for i in range(CELLS_PER_FRAME))
    return {"frame_no": d[0], "cells_v": cells}


def _p96(d: bytes) -> Fields:
    return {"frame_no": d[0], "temps_c": tuple(float(b - TEMP_OFFSET) for b in d[1:8])}


def _p97(d: bytes) -> Fields:
    bits = int.from_bytes(d[:6], "little")
    return {"extra": (("balancing_cells", bits.bit_count()),)}


# 0x98: (byte, bit) -> (is protection, flag). Level-1 bits warn, level-2 bits protect.
_FAULT_BITS: tuple[tuple[int, int, Protection | Alarm], ...] = (
    (0, 0, Alarm.CELL_HIGH_VOLTAGE),
    (0, 1, Protection.CELL_OVERVOLTAGE),
    (0, 2, Alarm.CELL_LOW_VOLTAGE),
    (0, 3, Protection.CELL_UNDERVOLTAGE),
    (0, 4, Alarm.CELL_HIGH_VOLTAGE),  # sum voltage high
    (0, 5, Protection.CELL_OVERVOLTAGE),
    (0, 6, Alarm.CELL_LOW_VOLTAGE),  # sum voltage low
    (0, 7, Protection.CELL_UNDERVOLTAGE),
    (1, 0, Alarm.HIGH_TEMPERATURE),  # charge
    (1, 1, Protection.OVER_TEMPERATURE),
    (1, 2, Alarm.LOW_TEMPERATURE),
    (1, 3, Protection.UNDER_TEMPERATURE),
    (1, 4, Alarm.HIGH_TEMPERATURE),  # discharge
    (1, 5, Protection.OVER_TEMPERATURE),
    (1, 6, Alarm.LOW_TEMPERATURE),
    (1, 7, Protection.UNDER_TEMPERATURE),
    (2, 0, Alarm.CHARGE_HIGH_CURRENT),
    (2, 1, Protection.CHARGE_OVERCURRENT),
    (2, 2, Alarm.DISCHARGE_HIGH_CURRENT),
    (2, 3, Protection.DISCHARGE_OVERCURRENT),
    (3, 0, Alarm.CELL_IMBALANCE),
    (3, 1, Alarm.CELL_IMBALANCE),
    (4, 0, Alarm.HIGH_TEMPERATURE),  # MOS over-temperature
    (4, 1, Alarm.HIGH_TEMPERATURE),
    (4, 2, Alarm.SYSTEM),
    (4, 3, Alarm.SYSTEM),
    (4, 4, Protection.SYSTEM_ERROR),  # MOS stuck
    (4, 5, Protection.SYSTEM_ERROR),
    (4, 6, Protection.SYSTEM_ERROR),  # MOS open circuit
    (4, 7, Protection.SYSTEM_ERROR),
    (5, 0, Protection.SYSTEM_ERROR),  # AFE
    (5, 1, Protection.SYSTEM_ERROR),
    (5, 2, Alarm.SYSTEM),
    (5, 3, Alarm.SYSTEM),
    (5, 4, Alarm.SYSTEM),
    (5, 5, Protection.SYSTEM_ERROR),  # precharge failed
    (5, 6, Alarm.INTERNAL_COMMUNICATION),
    (5, 7, Alarm.INTERNAL_COMMUNICATION),
    (6, 0, Protection.SYSTEM_ERROR),  # current module
    (6, 1, Protection.SYSTEM_ERROR),
    (6, 2, Protection.SHORT_CIRCUIT),
    (6, 3, Alarm.CELL_LOW_VOLTAGE),  # low-voltage charge forbidden
)


def _p98(d: bytes) -> Fields:
    p = Protection.NONE
    a = Alarm.NONE
    if any(d[:7]):
        for byte, bit, flag in _FAULT_BITS:
            if d[byte] >> bit & 1:
                if isinstance(flag, Protection):
                    p |= flag
                else:
                    a |= flag
    return {"protections": p, "alarms": a, "extra": (("fault_code", d[7]),)}


@dataclass(frozen=True, slots=True)
class PayloadSpec:
    data_id: int
    name: str
    decode: Callable[[bytes], Fields]


PAYLOADS: dict[int, PayloadSpec] = {
    p.data_id: p
    for p in (
        PayloadSpec(0x90, "voltage, current, SOC", _p90),
        PayloadSpec(0x91, "cell voltage extremes", _p91),
        PayloadSpec(0x92, "temperature extremes", _p92),
        PayloadSpec(0x93, "state, MOS, remaining capacity", _p93),
        PayloadSpec(0x94, "status: counts, cycles", _p94),
        PayloadSpec(0x95, "cell voltages", _p95),
        PayloadSpec(0x96, "temperatures", _p96),
        PayloadSpec(0x97, "balancing", _p97),
        PayloadSpec(0x98, "failures", _p98),
    )
}


def decode_payload(data_id: int, data: bytes) -> Fields:
    """The 8 data bytes of a reply (CAN) or of a UART frame, decoded for `data_id`.

    0x95/0x96 give their frame number and values (`frame_no`, `cells_v` / `temps_c`): putting
    the frames together is the driver's job.
    """
    spec = PAYLOADS.get(data_id)
    if spec is None:
        raise DalyFrameError(f"Daly data id 0x{data_id:02X} is not decoded")
    if len(data) != 8:
        raise DalyFrameError(f"Daly 0x{data_id:02X} ({spec.name}): {len(data)} data bytes, needs 8")
    return spec.decode(bytes(data))


def decode_reply(
    can_id: int, data: bytes, *, extended: bool = True, host: int = HOST_ADDRESS
) -> Fields:
    """One CAN frame from a BMS to `host`, decoded; FrameError for anything else."""
    if not extended:
        raise DalyFrameError(f"CAN id 0x{can_id:X} is a standard id; Daly CAN uses 29-bit ids")
    prio, data_id, dst, src = split_id(can_id)
    if prio != PRIORITY:
        raise DalyFrameError(f"CAN id 0x{can_id:08X}: priority 0x{prio:02X}, Daly uses 0x18")
    if src == host:
        raise DalyFrameError(
            f"CAN id 0x{can_id:08X} is a request (from host 0x{host:02X} to BMS 0x{dst:02X}), "
            "not a reply"
        )
    if dst != host:
        raise DalyFrameError(
            f"CAN id 0x{can_id:08X} is addressed to 0x{dst:02X}, not to the host 0x{host:02X}"
        )
    return decode_payload(data_id, data)


# --- the simulator's side -----------------------------------------------------------------------


def _be16(value: float) -> bytes:
    return _BE_U16.pack(min(max(round(value), 0), 0xFFFF))


def _temp_byte(celsius: float | None) -> int:
    return 0 if celsius is None else min(max(round(celsius) + TEMP_OFFSET, 0), 255)


def encode_replies(
    data_id: int, reading: Reading, bms: int, host: int = HOST_ADDRESS
) -> list[tuple[int, bytes]]:
    """The reply frames a BMS with this reading sends for one request (0x95/0x96: several)."""
    can_id = reply_id(data_id, bms, host)
    r = reading
    payloads: list[bytes] = []
    if data_id == 0x90 and r.pack_voltage_v is not None:
        payloads.append(
            _be16(r.pack_voltage_v * 10)
            + bytes(2)
            + _be16((r.current_a or 0) * 10 + CURRENT_OFFSET)
            + _be16((r.soc_pct or 0) * 10)
        )
    elif data_id == 0x91 and r.max_cell_v is not None and r.min_cell_v is not None:
        cells = r.cell_voltages_v or ()
        nmax = cells.index(max(cells)) + 1 if cells else 1
        nmin = cells.index(min(cells)) + 1 if cells else 1
        payloads.append(
            _be16(r.max_cell_v * 1000)
            + bytes((nmax,))
            + _be16(r.min_cell_v * 1000)
            + bytes((nmin, 0, 0))
        )
    elif data_id == 0x92 and r.temperatures_c:
        temps = r.temperatures_c
        hi, lo = max(temps), min(temps)
        payloads.append(
            bytes(
                (
                    _temp_byte(hi),
                    temps.index(hi) + 1,
                    _temp_byte(lo),
                    temps.index(lo) + 1,
                    0,
                    0,
                    0,
                    0,
                )
            )
        )
    elif data_id == 0x93:
        current = r.current_a or 0.0
        state = 1 if current > 0.05 else 2 if current < -0.05 else 0
        remaining = round((r.remaining_ah or 0) * 1000)
        payloads.append(
            _S93.pack(
                state,
                r.charge_enabled is not False,
                r.discharge_enabled is not False,
                0,
                min(max(remaining, 0), 0xFFFFFFFF),
            )
        )
    elif data_id == 0x94:
        n_cells = len(r.cell_voltages_v or ())
        n_temps = len(r.temperatures_c or ())
        payloads.append(bytes((n_cells, n_temps, 0, 0, 0)) + _be16(r.cycles or 0) + b"\x00")
    elif data_id == 0x95 and r.cell_voltages_v:
        cells = r.cell_voltages_v
        for n, start in enumerate(range(0, len(cells), CELLS_PER_FRAME), 1):
            chunk = cells[start : start + CELLS_PER_FRAME]
            body = b"".join(_be16(v * 1000) for v in chunk).ljust(6, b"\x00")
            payloads.append(bytes((n,)) + body + b"\x00")
    elif data_id == 0x96 and r.temperatures_c:
        sensors = r.temperatures_c
        for n, start in enumerate(range(0, len(sensors), TEMPS_PER_FRAME), 1):
            raw = [_temp_byte(t) for t in sensors[start : start + TEMPS_PER_FRAME]]
            payloads.append(bytes([n, *raw]).ljust(8, b"\x00"))
    elif data_id == 0x98:
        out = bytearray(8)
        for byte, bit, flag in _FAULT_BITS:
            on = (
                r.protections is not None and flag in r.protections
                if isinstance(flag, Protection)
                else r.alarms is not None and flag in r.alarms
            )
            # One bit per flag is enough for a round trip: the first bit that stands for it.
            if on and not any(
                out[b] >> t & 1 for b, t, f in _FAULT_BITS if f == flag and (b, t) != (byte, bit)
            ):
                out[byte] |= 1 << bit
        payloads.append(bytes(out))
    return [(can_id, p) for p in payloads]


# --- the driver ---------------------------------------------------------------------------------


class DalyCanDriver:
    """One Daly BMS on a CAN bus: what to ask (`requests`), and its replies merged.

    Sans-I/O: the link's poller sends `requests()` every poll interval; the link hands every
    frame to `on_frame`, which keeps the replies from this BMS to this host and ignores the rest
    (other BMS, other hosts' requests, the inverter's traffic).
    """

    protocol = "daly-can"

    def __init__(
        self,
        subject: str,
        address: int,
        *,
        host: int = HOST_ADDRESS,
        poll_ids: tuple[int, ...] = POLL_IDS,
        log_warnings: bool = True,
    ) -> None:
        if not 0 <= address <= 0xFF or address == host:
            raise ValueError(f"Daly BMS address {address} is not usable (host is {host})")
        self.subject = subject
        self.address = address
        self.host = host
        self.poll_ids = poll_ids
        self._log_warnings = log_warnings
        self._values: Fields = {"subject": subject}
        self._extra: dict[str, Any] = {}
        self._cells: dict[int, float] = {}
        self._temps: dict[int, float] = {}
        self._reading = Reading(subject=subject)
        self._notes: dict[str, str] = {}
        self._raw_current: float | None = None
        self._state: str | None = None
        self.current_sign = 1
        self._zero_based = False
        self.frames = 0
        self.ignored = 0
        # Replies a BMS sends to this host come with this id, whatever the data id.
        self._reply_mask = (PRIORITY << 24) | (host << 8) | address
        self._requests = [request_frame(i, address, host) for i in poll_ids]

    @property
    def reading(self) -> Reading:
        return self._reading

    @property
    def warnings(self) -> list[str]:
        return list(self._notes.values())

    def requests(self) -> list[tuple[int, bytes, bool]]:
        """The frames to send each poll cycle: one request per data id."""
        return self._requests

    def on_frame(self, can_id: int, data: bytes, extended: bool, now: float) -> bool:
        """Keep a reply from this BMS to this host (True); ignore anything else (False)."""
        if not extended or can_id & 0xFF00FFFF != self._reply_mask:
            self.ignored += 1
            return False
        data_id = (can_id >> 16) & 0xFF
        if data_id not in PAYLOADS:
            self.ignored += 1  # a version string, a settings reply: not read
            return False
        fields = decode_payload(data_id, data)
        self.frames += 1
        extra = fields.pop("extra", None)
        if extra is not None:
            self._extra.update(extra)
            self._values["extra"] = tuple(self._extra.items())
        if data_id == 0x95:
            fields = self._cells_from(fields)
        elif data_id == 0x96:
            fields = self._temps_from(fields)
        elif data_id == 0x90:
            self._raw_current = fields["current_a"]
            fields["current_a"] = self._signed_current()
        elif data_id == 0x93:
            self._state = self._extra.get("state")
            if self._raw_current is not None:
                fields["current_a"] = self._signed_current()
        self._values.update(fields)
        self._values["at"] = now
        # Polled at a few frames per second: merged as they come.
        self._reading = Reading(**self._values)
        return True

    def _signed_current(self) -> float:
        raw = self._raw_current
        assert raw is not None
        state = self._state
        if (state == "discharging" and raw * self.current_sign > 0.5) or (
            state == "charging" and raw * self.current_sign < -0.5
        ):
            self.current_sign = -self.current_sign
            self._note(
                "current",
                f"0x90 current sign disagrees with the 0x93 state ({state}); this firmware's "
                "current is read inverted from now on",
            )
        return raw * self.current_sign if raw else 0.0

    def _first_frame(self, frame_no: int) -> int:
        # Every capture numbers 0x95/0x96 frames from 1; the V1.2 document says from 0. A frame
        # 0 settles it for this BMS.
        if frame_no == 0 and not self._zero_based:
            self._zero_based = True
            self._cells.clear()
            self._temps.clear()
        return 0 if self._zero_based else 1

    def _cells_from(self, fields: Fields) -> Fields:
        base = (fields["frame_no"] - self._first_frame(fields["frame_no"])) * CELLS_PER_FRAME
        for i, volts in enumerate(fields["cells_v"]):
            self._cells[base + i] = volts
        count = self._extra.get("cell_count")
        if isinstance(count, int) and count and all(i in self._cells for i in range(count)):
            return {"cell_voltages_v": tuple(self._cells[i] for i in range(count))}
        return {}

    def _temps_from(self, fields: Fields) -> Fields:
        base = (fields["frame_no"] - self._first_frame(fields["frame_no"])) * TEMPS_PER_FRAME
        for i, celsius in enumerate(fields["temps_c"]):
            self._temps[base + i] = celsius
        count = self._extra.get("temperature_sensor_count")
        if isinstance(count, int) and count and all(i in self._temps for i in range(count)):
            return {"temperatures_c": tuple(self._temps[i] for i in range(count))}
        return {}

    def _note(self, key: str, message: str) -> None:
        if self._notes.get(key) == message:
            return
        self._notes[key] = message
        if self._log_warnings:
            log.warning("%s: %s", self.subject, message)
