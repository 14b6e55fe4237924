"""`bankwatch decode`: frames given on the command line, merged into one reading, as JSON.

CAN frames are written as candump does (`ID#DATA`, hex: `351#1402C012C012C201`); an id of more
than three hex digits is extended. A frame that cannot be decoded raises FrameError naming it.

The frames go through the protocol's driver, the same code the daemon runs, so what the daemon
would flag as contradicting itself (a 0x356 voltage that fits the 0x351 limits at neither scale,
a protection while 0x35C enables both directions ...) comes out as a `warnings` list.
"""

from __future__ import annotations

import re
from typing import Any

from bankwatch.drivers.errors import FrameError, UsageError
from bankwatch.drivers.model import Reading
from bankwatch.drivers.registry import MAP_PREFIX, PROTOCOLS, CanDriver, protocol_info

__all__ = ["decode_frames", "parse_candump"]

_CANDUMP = re.compile(r"^([0-9A-Fa-f]{1,8})#([0-9A-Fa-f]*)$")


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
    info = protocol_info(protocol)
    if info is None:
        known = ", ".join(sorted(PROTOCOLS))
        raise UsageError(
            f"unknown protocol {protocol!r} (known: {known}; a shipped register map as "
            f"{MAP_PREFIX}NAME)"
        )
    if info.link_kind == "serial":
        from bankwatch.daemon.serial_decode import decode_serial_frames

        return decode_serial_frames(protocol, frames)
    validate = info.can_decode
    make = info.can_driver
    if validate is None or make is None:
        raise UsageError(f"protocol {protocol!r} has no frame decoder yet")
    parsed = [parse_candump(text) for text in frames]
    assembler: CanDriver | None = None
    for text, (can_id, data, extended) in zip(frames, parsed, strict=True):
        try:
            validate(can_id, data, extended)  # one clear error for a frame that is not ours
            if assembler is None:
                # An addressed protocol's device is the one the first frame is from.
                address = None if info.can_address_of is None else info.can_address_of(can_id)
                assembler = make("", address, log_warnings=False)
            assembler.on_frame(can_id, data, extended, 0.0)
        except FrameError as exc:
            raise FrameError(f"{text}: {exc}") from None
    out = Reading().to_json() if assembler is None else assembler.reading.to_json()
    if assembler is not None and assembler.warnings:
        out["warnings"] = assembler.warnings
    return out
