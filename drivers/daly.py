"""Daly "BMS monitor" protocol over UART or RS485 (protocol name `daly`).

Sources: Daly "UART_485 Communications Protocol V1.2" and "RS485+UART Protocol" PDFs, Daly's
error table as dreadnought/python-daly-bms lists it, and real captures; written up in
shared/vectors/PROTOCOLS.md section 4 (vectors: tests/vectors/daly.json). 9600 8N1.

Every frame, both ways, is 13 bytes::

    A5 | address | data id | 08 | 8 data bytes (big-endian) | checksum (sum of 0..11, low byte)

A request carries the **host's** address in byte 1 and eight zero bytes: 0x40 ("upper
computer", V1.2 and most captures) or 0x80 (some UART/BLE firmwares answer only to that one).
On a multi-board bus, board n is asked with host address 0x40 + n - 1. The reply carries the
board's own number (0x01 for a single BMS). `address` in this module is that board number
(1 for a single BMS) for the 0x40 scheme, or the raw host byte (0x40..0xFF) when given as such:
`poll_requests(0x80)` asks with host address 0x80, `poll_requests(1)` with 0x40.

The payloads (0x90-0x98: what each means, the multi-frame cell and temperature lists, the
current sign, the failure bits) are `drivers/daly_payload.py`, shared with Daly CAN; this module
is the UART framing around them. `decode` of one 0x95/0x96 frame gives that frame's values with
its number in `extra` (`cell_frame` / `temperature_frame`); a whole poll is merged with
`merge_parts(readings)` (or `merge(frames)` straight from bytes), which also takes the current's
direction from the 0x93 state. A missing frame in the middle of a list raises IncompleteError
rather than shifting every later cell by three. `expected_frames(request, known)` says how many
frames a request returns, once 0x94 is known.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bankwatch.drivers import daly_payload
from bankwatch.drivers.errors import (
    ChecksumError,
    FrameLengthError,
    MalformedFrameError,
    UsageError,
)
from bankwatch.drivers.model import Reading

__all__ = [
    "DATA_IDS",
    "DEFAULT_BAUD",
    "FRAME_LEN",
    "GAP_S",
    "HOST_PC",
    "HOST_UART_ALT",
    "PROTOCOL",
    "REPLY_TIMEOUT_S",
    "decode",
    "encode_reply",
    "encode_request",
    "expected_frames",
    "frame_address",
    "frame_length",
    "is_request",
    "merge",
    "merge_parts",
    "poll_requests",
]

PROTOCOL = "daly"
DEFAULT_BAUD = 9600
# Daly boards are slow to get ready for the next request; 50 ms is what working pollers leave.
GAP_S = 0.05
REPLY_TIMEOUT_S = 0.5

FRAME_LEN = 13
DATA_IDS = daly_payload.DATA_IDS
_START = 0xA5
_DATA_LEN = 0x08
HOST_PC = 0x40
HOST_UART_ALT = 0x80


def _checksum(frame: bytes) -> int:
    return sum(frame[:12]) & 0xFF


def _frame(address: int, data_id: int, data: bytes) -> bytes:
    body = bytes((_START, address, data_id, _DATA_LEN)) + data
    return body + bytes((sum(body) & 0xFF,))


def _host_byte(address: int) -> int:
    if 1 <= address < HOST_PC:
        return HOST_PC + address - 1
    if HOST_PC <= address <= 0xFF:
        return address
    raise UsageError(
        f"daly address {address}: give the board number (1 for a single BMS) or a host "
        "address 0x40..0xFF (0x80 for firmwares that answer only to it)"
    )


def _board(host: int) -> int:
    """The board a request with host address `host` goes to (0x40 and 0x80 schemes)."""
    base = HOST_UART_ALT if host >= HOST_UART_ALT else HOST_PC
    return host - base + 1


def encode_request(address: int, data_id: int) -> bytes:
    """The 13-byte read request for `data_id` to the pack at `address` (see module doc)."""
    return _frame(_host_byte(address), data_id, bytes(8))


# ---- framing -------------------------------------------------------------------------------


def frame_length(buf: bytes) -> int | None:
    """13 once the start byte and the length byte are right; None until 13 bytes are there."""
    if not buf:
        return None
    if buf[0] != _START:
        raise MalformedFrameError(f"daly: byte 0x{buf[0]:02X} cannot start a frame (0xA5 does)")
    if len(buf) >= 4 and buf[3] != _DATA_LEN:
        raise MalformedFrameError(f"daly: length byte 0x{buf[3]:02X}, frames carry 0x08")
    return FRAME_LEN if len(buf) >= FRAME_LEN else None


def _check(frame: bytes) -> None:
    if len(frame) != FRAME_LEN:
        raise FrameLengthError(f"daly: frame of {len(frame)} bytes, frames are {FRAME_LEN}")
    if frame[0] != _START:
        raise MalformedFrameError(f"daly: start byte 0x{frame[0]:02X}, expected 0xA5")
    if frame[3] != _DATA_LEN:
        raise MalformedFrameError(f"daly: length byte 0x{frame[3]:02X}, expected 0x08")
    want = _checksum(frame)
    if frame[12] != want:
        raise ChecksumError(
            f"daly: checksum 0x{frame[12]:02X} in frame, 0x{want:02X} computed "
            f"(data id 0x{frame[2]:02X})"
        )


def is_request(frame: bytes) -> bool:
    """Requests carry a host address (0x40 and up); replies the board number (below 0x40)."""
    return len(frame) > 1 and frame[1] >= HOST_PC


def frame_address(frame: bytes) -> int | None:
    """The board a frame is to (request) or from (reply): 1 for a single BMS."""
    if len(frame) < 2:
        return None
    return _board(frame[1]) if is_request(frame) else frame[1]


def poll_requests(address: int) -> list[bytes]:
    """0x90..0x98, 0x94 before the lists so the cell and sensor counts are known first."""
    return [encode_request(address, data_id) for data_id in DATA_IDS]


# ---- decoding ------------------------------------------------------------------------------


def decode(frame: bytes, request: bytes | None = None) -> Reading:
    """One 13-byte frame to a partial Reading (a request decodes to an empty one).

    `request` is not needed: replies say their data id. Raises ChecksumError,
    FrameLengthError, MalformedFrameError or UnknownCommandError (all FrameError).
    """
    frame = bytes(frame)
    _check(frame)
    if is_request(frame):
        return Reading()
    return daly_payload.decode_payload(frame[2], frame[4:12])


def encode_reply(request: bytes, reading: Reading) -> bytes | None:
    """The frame(s) the board asked by `request` sends back for `reading`; 0x95/0x96 give
    several 13-byte frames back to back. Like a real board it answers 0x90..0x94 and 0x97/0x98
    whatever the reading lacks (zeros); None for other ids, and for 0x95/0x96 when the reading
    has no cells/temperatures. A malformed request raises FrameError."""
    request = bytes(request)
    _check(request)
    if not is_request(request):
        return None
    datas = daly_payload.encode_payload(request[2], reading)
    if datas is None:
        return None
    board = _board(request[1])
    return b"".join(_frame(board, request[2], d) for d in datas)


# ---- merging a poll ------------------------------------------------------------------------


def merge_parts(parts: Sequence[Reading]) -> Reading:
    """The decoded frames of one poll (any order) to one Reading; see daly_payload.merge_parts."""
    return daly_payload.merge_parts(parts)


def merge(frames: Iterable[bytes]) -> Reading:
    """`decode` every frame and `merge_parts` them: what `bankwatch decode daly F1 F2 ...`
    needs (the six 0x95 frames of a 16S pack give one list of 16 cells)."""
    return merge_parts([decode(f) for f in frames])


def expected_frames(request: bytes, known: Reading | None = None) -> int | None:
    """How many reply frames `request` brings: 1, or for 0x95/0x96 the frames the cell or
    sensor count (from a merged 0x94 reply in `known`) fills; None when that count is not known
    yet (then read until the line goes quiet)."""
    if len(request) < 3:
        return 1
    return daly_payload.expected_frames(request[2], known)
