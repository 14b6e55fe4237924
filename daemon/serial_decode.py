"""`bankwatch decode` for serial protocols: frames as the hex of their wire bytes, one JSON reading.

A reply that does not say what it answers (Pylontech-family replies carry RTN where the command
was; Modbus replies carry no register address) is decoded with the request given before it.
Several replies merge into one reading (the six 0x95 frames of a Daly pack give one list of
cells); a reply covering several packs (a Pylontech master's 0x42 for the whole stack) also puts
one object per pack in `modules`. Any bad frame is a FrameError naming which frame and why.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from bankwatch.drivers.errors import FrameError, UsageError
from bankwatch.drivers.model import Reading
from bankwatch.drivers.registry import MAP_PREFIX, serial_codecs, serial_protocols
from bankwatch.drivers.serial_codec import SerialCodec, merge_parts

__all__ = ["decode_serial_frames", "parse_wire_hex"]

_SEPARATORS = re.compile(r"[\s:_-]")


def parse_wire_hex(text: str) -> bytes:
    """The bytes of a frame written as hex (`7E3230...0D`, spaces, colons or dashes allowed).
    For the ASCII protocols the frame may also be given as its characters (`~2002...FD33`)."""
    t = text.strip()
    if t.startswith("~"):
        t = t.removesuffix("\\r")
        return t.encode("ascii", errors="replace") + (b"" if t.endswith("\r") else b"\r")
    t = _SEPARATORS.sub("", t)
    if t[:2].lower() == "0x":
        t = t[2:]
    if not t:
        raise FrameError("empty frame")
    if len(t) % 2:
        raise FrameError(f"odd number of hex digits ({len(t)})")
    try:
        return bytes.fromhex(t)
    except ValueError:
        bad = next(c for c in t if c not in "0123456789abcdefABCDEF")
        raise FrameError(f"not hex: {bad!r}") from None


def _label(i: int, text: str) -> str:
    t = text.strip()
    return f"frame {i + 1} ({t[:16]}{'…' if len(t) > 16 else ''})"


def _whole_frame(codec: SerialCodec, raw: bytes) -> None:
    n = codec.frame_length(raw)
    if n is None:
        # On a live line the codec waits for what may still follow (JK-PB's acknowledgement
        # after a 300-byte frame); given alone, a frame that decodes is whole as it is.
        try:
            codec.decode(raw)
        except FrameError:
            raise FrameError(f"truncated: {len(raw)} bytes and the frame is not complete") from None
        return
    if n != len(raw):
        raise FrameError(f"length: the frame is {n} bytes, {len(raw)} were given")


def decode_serial_frames(protocol: str, frames: list[str]) -> dict[str, Any]:
    codecs = serial_protocols()
    if protocol not in codecs:
        # A shipped map by name: only then load the map schema (pydantic) and the map files.
        codecs = serial_codecs()
    codec = codecs.get(protocol)
    if codec is None:
        maps = ", ".join(n for n in codecs if n.startswith(MAP_PREFIX))
        if protocol == "modbus-map" or protocol.startswith(MAP_PREFIX):
            raise UsageError(f"{protocol!r}: name a shipped register map ({maps})")
        raise UsageError(f"protocol {protocol!r} is not a serial protocol")
    decode_modules: Callable[[bytes, bytes | None], list[Reading]] | None = getattr(
        codec, "decode_modules", None
    )
    found: list[Reading] = []
    modules: list[Reading] = []
    request: bytes | None = None
    replies = 0
    for i, text in enumerate(frames):
        try:
            raw = parse_wire_hex(text)
            _whole_frame(codec, raw)
            if codec.is_request(raw):
                codec.decode(raw, None)  # checks it (checksum, known command)
                request = raw
                continue
            parts = [] if decode_modules is None else decode_modules(raw, request)
            # With several packs in one reply, decode() gives the stack's totals.
            part = parts[0] if len(parts) == 1 else codec.decode(raw, request)
        except FrameError as exc:
            raise FrameError(f"{_label(i, text)}: {exc}") from None
        replies += 1
        if len(parts) > 1:
            modules.extend(parts)
        found.append(part)
    if not replies:
        raise FrameError("no reply among the frames: a request alone carries no reading")
    # Several replies merge into one reading, the codec's way (Daly's 0x95 frames: one list).
    out = merge_parts(codec, found).to_json()
    if modules:
        out["modules_online"] = len(modules)
        out["modules"] = [m.to_json() for m in modules]
    return out
