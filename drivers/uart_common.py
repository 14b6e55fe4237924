"""What the UART/RS485 BMS codecs (`daly`, `jbd`, `jk_b`, `jk_pb`) share: their FrameError
subclasses and a few byte helpers. Pure: no I/O.

The error classes let a caller tell a corrupt frame (ChecksumError: noise on the line, retry)
from a frame the codec does not know (UnknownCommandError: another device, a newer firmware)
without parsing messages; every one is a FrameError, which is all the contract promises.
"""

from __future__ import annotations

__all__ = [
    "ChecksumError",
    "ErrorReplyError",
    "FrameLengthError",
    "IncompleteError",
    "MalformedFrameError",
    "UnknownCommandError",
    "ascii_field",
    "clamp",
]

from bankwatch.drivers.errors import FrameError


class ChecksumError(FrameError):
    """The frame's checksum or CRC does not match its bytes (the message gives both values)."""


class FrameLengthError(FrameError):
    """The frame is shorter or longer than its header or its command says (both lengths given)."""


class MalformedFrameError(FrameError):
    """The bytes cannot be this protocol's frame: wrong start or end byte, impossible field."""


class UnknownCommandError(FrameError):
    """A well-formed frame with a command, register or data id this codec does not decode."""


class ErrorReplyError(FrameError):
    """The BMS answered, but with its error status instead of data."""


class IncompleteError(FrameError):
    """The parts of a multi-frame reply do not make a whole (a frame of a list is missing)."""


def ascii_field(data: bytes) -> str:
    """A fixed-width text field: NUL padding and surrounding blanks dropped, non-ASCII replaced."""
    return data.split(b"\x00", 1)[0].strip().decode("ascii", errors="replace")


def clamp(value: float, low: int, high: int) -> int:
    """`value` rounded into [low, high]: what an encoder puts in a fixed-width field."""
    return min(max(round(value), low), high)
