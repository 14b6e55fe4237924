"""Byte helpers the UART/RS485 BMS codecs (`daly`, `jbd`, `jk_b`, `jk_pb`) share. Pure: no I/O.
Their errors are the FrameError kinds of drivers/errors.py."""

from __future__ import annotations

__all__ = [
    "ascii_field",
    "clamp",
]


def ascii_field(data: bytes) -> str:
    """A fixed-width text field: NUL padding and surrounding blanks dropped, non-ASCII replaced."""
    return data.split(b"\x00", 1)[0].strip().decode("ascii", errors="replace")


def clamp(value: float, low: int, high: int) -> int:
    """`value` rounded into [low, high]: what an encoder puts in a fixed-width field."""
    return min(max(round(value), low), high)
