"""Victron VE.Direct text protocol (protocol name `ve-direct`): a SmartShunt or BMV battery
monitor as the bank's meter, listened to on its VE.Direct port (the VE.Direct USB cable).

Sources: Victron's "VE.Direct Protocol" document (the text-mode field list, units and checksum,
as summarised in the projects below); real blocks from a BMV-702 (karioja's `bmv702.dump`,
kept in vemonitor/vedirect_m8 `vedirect/sim_data/`) and a SmartShunt 500A/50mV
(jblance/mpp-solar `tests/integration/test_protocol_ved.py`), in tests/vectors/extra/vedirect.json.
19200 baud 8N1. Nothing is ever sent: the device talks unasked, a block about once a second.

    block     "\\r\\n" label "\\t" value  ...  "\\r\\n" "Checksum" "\\t" <one byte>
    checksum  the byte that makes the sum of every byte of the block, from the leading "\\r\\n"
              through the checksum byte itself, 0 modulo 256 (it may be any byte, even "\\r")

A BMV or SmartShunt alternates two blocks: the live values (PID, V, VS/VM/DM/T, I, P, CE, SOC,
TTG, Alarm, Relay, AR, BMV, FW, MON) and the history (H1-H18). Units: mV, mA, W, mAh, per mille
(SOC, DM), minutes (TTG, -1 while not discharging), 0.01 kWh (H17/H18). "---" stands for "not
known" (a monitor that has not synchronised yet sends it for CE, SOC and TTG). The sign of I
is ours already: positive into the battery.

The same port also speaks the binary-in-hex HEX protocol (lines starting ":" and ending "\\n");
a device only answers in HEX when someone talks HEX to it, which a listener never does, but a
Venus/GX or another program on the same cable might. HEX lines are framed and skipped (an empty
reading), and a HEX line found inside a text block is left out before the checksum is summed.

Alarm reasons (AR) map onto the shared alarm flags where one fits (low/high voltage, low/high
temperature, mid-point deviation as cell imbalance); every set bit, named or not, is also listed
in `extra["alarms_active"]` and the raw word stays in `extra["alarm_bits"]`, so a bit
this table cannot name is still seen.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from bankwatch.drivers.errors import ChecksumError, FrameLengthError, MalformedFrameError
from bankwatch.drivers.model import Alarm, Reading

__all__ = [
    "ALARM_REASONS",
    "DEFAULT_BAUD",
    "GAP_S",
    "PROTOCOL",
    "REPLY_TIMEOUT_S",
    "TALKS_UNASKED",
    "UNASKED_PERIOD_S",
    "block_checksum",
    "decode",
    "encode_block",
    "encode_reply",
    "frame_address",
    "frame_length",
    "is_request",
    "poll_requests",
    "unasked_frames",
]

PROTOCOL: Final = "ve-direct"
DEFAULT_BAUD: Final = 19200
# Nothing is ever asked; these only satisfy the serial contract (and bound a scan's wait).
GAP_S: Final = 0.01
REPLY_TIMEOUT_S: Final = 1.5
# The device sends without being asked: a line carrying it only listens (drivers/links/serial.py),
# and the simulator sends its blocks every UNASKED_PERIOD_S.
TALKS_UNASKED: Final = True
UNASKED_PERIOD_S: Final = 1.0

_END: Final = b"\r\nChecksum\t"
# A real block is about 200 bytes; anything far longer without a checksum line is not a block.
_MAX_BLOCK: Final = 1024
_MAX_HEX: Final = 256
_HEX_LINE: Final = re.compile(rb":[0-9A-Fa-f]{3,}\n")

# AR bit -> (name, shared alarm flag or None). Bits 256-2048 are the inverters' (Phoenix) reasons.
ALARM_REASONS: Final[tuple[tuple[int, str, Alarm | None], ...]] = (
    (1, "low_voltage", Alarm.CELL_LOW_VOLTAGE),
    (2, "high_voltage", Alarm.CELL_HIGH_VOLTAGE),
    (4, "low_soc", None),
    (8, "low_starter_voltage", None),
    (16, "high_starter_voltage", None),
    (32, "low_temperature", Alarm.LOW_TEMPERATURE),
    (64, "high_temperature", Alarm.HIGH_TEMPERATURE),
    (128, "mid_voltage", Alarm.CELL_IMBALANCE),
    (256, "overload", None),
    (512, "dc_ripple", None),
    (1024, "low_ac_voltage", None),
    (2048, "high_ac_voltage", None),
)

# The first reason bit no row names (the simulator's unknown alarm).
_UNNAMED_REASON: Final = 4096

# Product ids of the battery monitors (PID) -> name, for a block whose BMV field is absent.
_PRODUCTS: Final[dict[int, str]] = {
    0x203: "BMV-700",
    0x204: "BMV-702",
    0x205: "BMV-700H",
    0xA381: "BMV-712 Smart",
    0xA382: "BMV-710H Smart",
    0xA383: "BMV-712 Smart Rev2",
    0xA389: "SmartShunt 500A/50mV",
    0xA38A: "SmartShunt 1000A/50mV",
    0xA38B: "SmartShunt 2000A/50mV",
}


# ---- framing ---------------------------------------------------------------------------------


def frame_length(buf: bytes) -> int | None:
    """Where the block (or HEX line) at the start of `buf` ends; None while it is incomplete.
    MalformedFrameError when `buf` cannot start one (the line drops a byte and looks again)."""
    if not buf:
        return None
    if buf[0] == 0x3A:  # ":" a HEX protocol line
        end = buf.find(b"\n")
        if end < 0:
            if len(buf) > _MAX_HEX:
                raise FrameLengthError(f"ve-direct: HEX line longer than {_MAX_HEX} bytes")
            return None
        return end + 1
    if buf[0] != 0x0D:
        raise MalformedFrameError(f"ve-direct: a block starts with CR LF, not 0x{buf[0]:02X}")
    if len(buf) >= 2 and buf[1] != 0x0A:
        raise MalformedFrameError("ve-direct: CR not followed by LF")
    end = buf.find(_END)
    if end < 0 or len(buf) < end + len(_END) + 1:
        if len(buf) > _MAX_BLOCK:
            raise FrameLengthError(
                f"ve-direct: {len(buf)} bytes and no checksum line (a block is under {_MAX_BLOCK})"
            )
        return None
    return end + len(_END) + 1


def frame_address(frame: bytes) -> int | None:
    """VE.Direct is point to point: no address."""
    del frame
    return None


def is_request(frame: bytes) -> bool:
    """Everything heard comes from the device (a HEX command from a GX is not ours to read)."""
    del frame
    return False


def poll_requests(address: int) -> list[bytes]:
    """Nothing to ask: the device talks unasked."""
    del address
    return []


def block_checksum(body: bytes) -> int:
    """The checksum byte that completes `body` (everything up to and including "Checksum\\t")."""
    return -sum(body) & 0xFF


_Extra = dict[str, float | int | str | bool]


# ---- decoding --------------------------------------------------------------------------------


def _strip_hex_lines(frame: bytes) -> bytes:
    """The block without the HEX lines a device wrote into it (":" hex digits LF, between the
    end of one field and the CR LF of the next)."""
    return _HEX_LINE.sub(b"", frame[:-1]) + frame[-1:]


def _fields(frame: bytes) -> list[tuple[str, str]]:
    body = frame[: -len(_END) - 1]
    out: list[tuple[str, str]] = []
    for line in body.split(b"\r\n")[1:]:
        if not line or line.startswith(b":"):
            continue
        label, tab, value = line.partition(b"\t")
        if not tab or not label:
            raise MalformedFrameError(f"ve-direct: line {line[:20]!r} has no label and tab")
        try:
            name = label.decode("ascii")
        except UnicodeDecodeError:
            raise MalformedFrameError(f"ve-direct: label {label[:20]!r} is not ASCII") from None
        if not name.isprintable() or " " in name:
            raise MalformedFrameError(f"ve-direct: label {name[:20]!r} is not a label")
        out.append((name, value.decode("latin-1")))
    return out


def _number(label: str, value: str) -> int | None:
    """An integer field; None for "---" (not known yet)."""
    if value.strip("-") == "" and value:
        return None
    try:
        return int(value)
    except ValueError:
        raise MalformedFrameError(f"ve-direct: {label} = {value[:20]!r} is not a number") from None


def _on_off(label: str, value: str) -> bool:
    if value not in ("ON", "OFF"):
        raise MalformedFrameError(f"ve-direct: {label} = {value[:20]!r}, not ON or OFF")
    return value == "ON"


def _firmware(value: str) -> str:
    """FW "0405" (or "405", or "C208" for a release candidate) -> "4.05"."""
    digits = value.strip()
    if len(digits) >= 3 and digits[-2:].isdigit():
        major = digits[:-2].lstrip("0") or "0"
        return f"{major}.{digits[-2:]}"
    return digits


# History fields: label -> (extra key, scale); H4 and H17/H18 fill Reading fields instead.
_HISTORY: Final[dict[str, tuple[str, float]]] = {
    "H1": ("deepest_discharge_ah", 0.001),
    "H2": ("last_discharge_ah", 0.001),
    "H3": ("average_discharge_ah", 0.001),
    "H5": ("full_discharges", 1),
    "H6": ("cumulative_drawn_ah", 0.001),
    "H7": ("lowest_voltage_v", 0.001),
    "H8": ("highest_voltage_v", 0.001),
    "H9": ("since_full_charge_s", 1),
    "H10": ("automatic_syncs", 1),
    "H11": ("low_voltage_alarms", 1),
    "H12": ("high_voltage_alarms", 1),
    "H15": ("lowest_starter_voltage_v", 0.001),
    "H16": ("highest_starter_voltage_v", 0.001),
}


def _scaled(raw: int, scale: float) -> float | int:
    return raw if scale == 1 else round(raw * scale, 6)


def decode(frame: bytes, request: bytes | None = None) -> Reading:
    """One block as a partial Reading (the live block and the history block fill different
    fields; the listener merges them). A HEX line decodes to an empty Reading."""
    del request
    if frame[:1] == b":":
        if not frame.endswith(b"\n") or len(frame) < 3:
            raise MalformedFrameError("ve-direct: a HEX line ends with LF")
        return Reading()
    if len(frame) < len(_END) + 1 or not frame.startswith(b"\r\n"):
        raise FrameLengthError(f"ve-direct: {len(frame)} bytes are not a whole block")
    if frame.find(_END) != len(frame) - len(_END) - 1:
        raise MalformedFrameError("ve-direct: the block does not end with its checksum line")
    text = _strip_hex_lines(frame)
    total = sum(text) & 0xFF
    if total:
        want = block_checksum(text[:-1])
        raise ChecksumError(
            f"ve-direct: checksum byte 0x{text[-1]:02X}, the block needs 0x{want:02X}"
        )
    return _reading(_fields(text))


def _reading(fields: list[tuple[str, str]]) -> Reading:
    values: dict[str, object] = {}
    extra: _Extra = {}
    for label, value in fields:
        handler = _LIVE.get(label)
        if handler is not None:
            handler(label, value, values, extra)
        elif label in _HISTORY:
            raw = _number(label, value)
            if raw is not None:
                key, scale = _HISTORY[label]
                extra[key] = _scaled(raw, scale)
        elif label == "H4":
            raw = _number(label, value)
            if raw is not None:
                values["cycles"] = raw
        elif label in ("H17", "H18"):
            raw = _number(label, value)
            if raw is not None:
                key = "discharged_energy_kwh" if label == "H17" else "charged_energy_kwh"
                values[key] = round(raw * 0.01, 2)
        # Other labels (an MPPT's PPV, CS ...; newer firmware's additions) are not the bank's.
    if extra:
        values["extra"] = tuple(extra.items())
    return Reading(**values)  # type: ignore[arg-type]


_Handler = Callable[[str, str, dict[str, object], _Extra], None]


def _field(name: str, scale: float) -> _Handler:
    def handle(label: str, value: str, values: dict[str, object], extra: _Extra) -> None:
        raw = _number(label, value)
        if raw is not None:
            values[name] = round(raw * scale, 6)

    return handle


def _extra_number(key: str, scale: float) -> _Handler:
    def handle(label: str, value: str, values: dict[str, object], extra: _Extra) -> None:
        raw = _number(label, value)
        if raw is not None:
            extra[key] = _scaled(raw, scale)

    return handle


def _pid(label: str, value: str, values: dict[str, object], extra: _Extra) -> None:
    try:
        pid = int(value, 16)
    except ValueError:
        raise MalformedFrameError(f"ve-direct: PID = {value[:20]!r} is not hex") from None
    extra["product_id"] = f"0x{pid:04X}"
    if pid in _PRODUCTS:
        values.setdefault("model", _PRODUCTS[pid])


def _ttg(label: str, value: str, values: dict[str, object], extra: _Extra) -> None:
    raw = _number(label, value)
    # -1: infinite (not discharging); left out rather than shown as a time. Sent in minutes.
    if raw is not None and raw >= 0:
        extra["time_to_go_s"] = raw * 60


def _temperature(label: str, value: str, values: dict[str, object], extra: _Extra) -> None:
    raw = _number(label, value)
    if raw is not None:
        values["temperatures_c"] = (float(raw),)


def _alarm(label: str, value: str, values: dict[str, object], extra: _Extra) -> None:
    extra["alarm_condition"] = _on_off(label, value)


def _relay(label: str, value: str, values: dict[str, object], extra: _Extra) -> None:
    extra["relay_on"] = _on_off(label, value)


def _alarm_reason(label: str, value: str, values: dict[str, object], extra: _Extra) -> None:
    raw = _number(label, value)
    if raw is None:
        return
    flags = Alarm.NONE
    names: list[str] = []
    known = 0
    for bit, name, flag in ALARM_REASONS:
        known |= bit
        if raw & bit:
            names.append(name)
            if flag is not None:
                flags |= flag
    unknown = raw & ~known
    names += [f"unknown_bit_{i}" for i in range(unknown.bit_length()) if unknown >> i & 1]
    if unknown:
        flags |= Alarm.UNKNOWN  # a reason this table cannot name still counts
    values["alarms"] = flags
    extra["alarm_bits"] = raw
    extra["alarms_active"] = ",".join(names)


def _text(name: str) -> _Handler:
    def handle(label: str, value: str, values: dict[str, object], extra: _Extra) -> None:
        if value.strip():
            values[name] = value.strip()

    return handle


def _fw(label: str, value: str, values: dict[str, object], extra: _Extra) -> None:
    values["firmware"] = _firmware(value)


_LIVE: Final[dict[str, _Handler]] = {
    "PID": _pid,
    "V": _field("pack_voltage_v", 0.001),
    "I": _field("current_a", 0.001),
    "SOC": _field("soc_pct", 0.1),
    "CE": _extra_number("consumed_ah", 0.001),
    "TTG": _ttg,
    "T": _temperature,
    "VS": _extra_number("starter_voltage_v", 0.001),
    "VM": _extra_number("midpoint_voltage_v", 0.001),
    "DM": _extra_number("midpoint_deviation_pct", 0.1),
    "Alarm": _alarm,
    "Relay": _relay,
    "AR": _alarm_reason,
    "BMV": _text("model"),
    "FW": _fw,
    "SER#": _text("serial"),
    "MON": _extra_number("monitor_mode", 1),
}


# ---- encoding (the simulator's side) -----------------------------------------------------------


def encode_block(fields: list[tuple[str, str]]) -> bytes:
    """A text block of `fields`, with its checksum."""
    body = b"".join(b"\r\n" + f"{k}\t{v}".encode("latin-1") for k, v in fields) + _END
    return body + bytes([block_checksum(body)])


def _ar_of(reading: Reading) -> int:
    extra = dict(reading.extra)
    raw = extra.get("alarm_bits")
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    bits = 0
    if reading.alarms is not None:
        for bit, _name, flag in ALARM_REASONS:
            if flag is not None and flag in reading.alarms:
                bits |= bit
        if Alarm.UNKNOWN in reading.alarms:
            bits |= _UNNAMED_REASON
    return bits


def unasked_frames(reading: Reading) -> list[bytes]:
    """What a SmartShunt showing `reading` sends each period: the live block, then the history
    block."""
    v = reading.pack_voltage_v or 0.0
    i = reading.current_a or 0.0
    live: list[tuple[str, str]] = [("PID", "0xA389"), ("V", str(round(v * 1000)))]
    if reading.temperatures_c:
        live.append(("T", str(round(reading.temperatures_c[0]))))
    live += [("I", str(round(i * 1000))), ("P", str(round(v * i)))]
    if reading.full_charge_ah is not None and reading.remaining_ah is not None:
        live.append(("CE", str(round((reading.remaining_ah - reading.full_charge_ah) * 1000))))
    else:
        live.append(("CE", "---"))
    live.append(("SOC", "---" if reading.soc_pct is None else str(round(reading.soc_pct * 10))))
    ttg = -1
    if i < 0 and reading.remaining_ah is not None:
        ttg = min(round(reading.remaining_ah / -i * 60), 0xFFFF)
    ar = _ar_of(reading)
    live += [
        ("TTG", str(ttg)),
        ("Alarm", "ON" if ar else "OFF"),
        ("Relay", "OFF"),
        ("AR", str(ar)),
        ("BMV", reading.model or "SmartShunt 500A/50mV"),
        ("FW", "0405"),
        ("MON", "0"),
    ]
    history: list[tuple[str, str]] = []
    if reading.cycles is not None:
        history.append(("H4", str(reading.cycles)))
    if reading.discharged_energy_kwh is not None:
        history.append(("H17", str(round(reading.discharged_energy_kwh * 100))))
    if reading.charged_energy_kwh is not None:
        history.append(("H18", str(round(reading.charged_energy_kwh * 100))))
    frames = [encode_block(live)]
    if history:
        frames.append(encode_block(history))
    return frames


def encode_reply(request: bytes, reading: Reading) -> bytes | None:
    """A VE.Direct device answers nothing in text mode (see `unasked_frames`)."""
    del request, reading
    return None
