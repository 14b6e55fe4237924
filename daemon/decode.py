"""`bankwatch decode`: frames given on the command line, merged into one reading, as JSON.

CAN frames are written as candump does (`ID#DATA`, hex: `351#1402C012C012C201`); an id of more
than three hex digits is extended. A frame that cannot be decoded raises FrameError naming it.
"""

from __future__ import annotations

import re
from typing import Any

from bankwatch.daemon.errors import FrameError, UsageError
from bankwatch.daemon.model import Reading, merge_readings
from bankwatch.drivers import pylontech_can
from bankwatch.drivers.registry import PROTOCOLS

__all__ = ["decode_frames", "parse_candump"]

_CANDUMP = re.compile(r"^([0-9A-Fa-f]{1,8})#([0-9A-Fa-f]*)$")
_CAN_DECODERS = {"pylontech-can": pylontech_can.decode_frame}


def parse_candump(text: str) -> tuple[int, bytes, bool]:
    """`351#1402C0` → (0x351, b'\\x14\\x02\\xc0', False)."""
    m = _CANDUMP.match(text.strip())
    if m is None:
        raise FrameError(f"{text!r}: not a CAN frame in candump notation ID#DATA (hex)")
    ident, data = m.groups()
    if len(data) % 2:
        raise FrameError(f"{text!r}: odd number of hex digits in the data")
    can_id = int(ident, 16)
    extended = len(ident) > 3
    if can_id > (0x1FFFFFFF if extended else 0x7FF):
        raise FrameError(f"{text!r}: CAN id out of range")
    return can_id, bytes.fromhex(data), extended


def decode_frames(protocol: str, frames: list[str]) -> dict[str, Any]:
    info = PROTOCOLS.get(protocol)
    if info is None:
        known = ", ".join(sorted(PROTOCOLS))
        raise UsageError(f"unknown protocol {protocol!r} (known: {known})")
    if info.link_kind == "serial":
        from bankwatch.daemon.serial_decode import decode_serial_frames

        return decode_serial_frames(protocol, frames)
    decoder = _CAN_DECODERS.get(protocol)
    if decoder is None:
        raise UsageError(f"protocol {protocol!r} has no frame decoder yet")
    reading = Reading()
    for text in frames:
        can_id, data, extended = parse_candump(text)
        try:
            part = decoder(can_id, data, extended=extended)
        except FrameError as exc:
            raise FrameError(f"{text}: {exc}") from None
        reading = merge_readings(reading, part)
    return reading.to_json()
