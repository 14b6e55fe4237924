"""Modbus RTU framing, pure: CRC-16, read and write requests and replies, exception replies.

Protocol: "MODBUS over Serial Line Specification and Implementation Guide V1.02" and "MODBUS
Application Protocol Specification V1.1b3" (modbus.org). A frame is

    slave (1) · function (1) · data (n) · CRC-16 (2, little-endian; poly 0xA001, init 0xFFFF)

    FC 0x01/0x02 request  addr(2) count(2)             reply  nbytes(1) packed bits, LSB first
    FC 0x03/0x04 request  addr(2) count(2)             reply  nbytes(1) registers, big-endian
    FC 0x06      request  addr(2) value(2)             reply  the request, echoed
    FC 0x10      request  addr(2) count(2) nbytes(1) … reply  addr(2) count(2)
    exception    reply    function|0x80, code(1)

RTU frames carry no length and no start marker, and a reply does not say which registers it
holds: that is what makes listening to someone else's bus hard. `frame_length` tells a request
from a reply by trying each reading the bytes allow and keeping the one whose CRC checks; the
reply to a read is attributed to registers through the request heard just before it.

Everything here is bytes in, values out: the simulator's responder, the listen-only decoder,
`bankwatch decode` and the Modbus codecs (seplos_v3, modbus_map) share it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from bankwatch.drivers.errors import (
    ChecksumError,
    ErrorReplyError,
    FrameError,
    UnknownCommandError,
)

__all__ = [
    "EXCEPTION_NAMES",
    "READ_BITS",
    "READ_FUNCTIONS",
    "READ_REGISTERS",
    "CrcError",
    "ExceptionReply",
    "ExceptionReplyError",
    "ModbusFrameError",
    "ReadReply",
    "ReadRequest",
    "UnsupportedFunctionError",
    "WriteMultipleReply",
    "WriteMultipleRequest",
    "WriteSingle",
    "bits_of",
    "crc16",
    "encode_exception",
    "encode_read_reply",
    "encode_read_request",
    "encode_write_multiple_reply",
    "encode_write_multiple_request",
    "encode_write_single",
    "frame_address",
    "frame_length",
    "is_request",
    "pack_bits",
    "parse_reply",
    "parse_request",
    "registers_of",
    "reply_matches",
]


class ModbusFrameError(FrameError):
    """A Modbus RTU frame that cannot be read: too short, wrong length, malformed."""


class CrcError(ModbusFrameError, ChecksumError):
    """The CRC the frame carries is not the one its bytes give."""

    def __init__(self, got: int, want: int, what: str = "frame") -> None:
        self.got = got
        self.want = want
        super().__init__(
            f"Modbus CRC mismatch in {what}: frame says 0x{got:04X}, bytes give 0x{want:04X}"
        )


class UnsupportedFunctionError(ModbusFrameError, UnknownCommandError):
    """A function code this module does not handle (diagnostics, file records, ...)."""


class ExceptionReplyError(ModbusFrameError, ErrorReplyError):
    """The slave answered with a Modbus exception instead of data."""

    def __init__(self, slave: int, function: int, code: int) -> None:
        self.slave = slave
        self.function = function
        self.code = code
        name = EXCEPTION_NAMES.get(code, "unknown exception")
        super().__init__(
            f"slave {slave} answered function 0x{function:02X} with exception {code} ({name})"
        )


READ_BITS: Final = frozenset({0x01, 0x02})
READ_REGISTERS: Final = frozenset({0x03, 0x04})
READ_FUNCTIONS: Final = READ_BITS | READ_REGISTERS
WRITE_SINGLE: Final = 0x06
WRITE_MULTIPLE: Final = 0x10
_KNOWN: Final = READ_FUNCTIONS | {WRITE_SINGLE, WRITE_MULTIPLE}

# The protocol's own limits (Application Protocol spec, 6.1-6.4, 6.12).
_MAX_BITS: Final = 2000
_MAX_READ_REGISTERS: Final = 125
_MAX_WRITE_REGISTERS: Final = 123

EXCEPTION_NAMES: Final[dict[int, str]] = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE: Final = _make_table()


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS of `data` (sent low byte first)."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def _seal(body: bytes) -> bytes:
    return body + crc16(body).to_bytes(2, "little")


def _crc_ok(frame: bytes) -> bool:
    return len(frame) >= 4 and crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little")


def _check_crc(frame: bytes, what: str, minimum: int) -> None:
    if len(frame) < minimum:
        raise ModbusFrameError(f"Modbus {what} of {len(frame)} bytes: at least {minimum} needed")
    got = int.from_bytes(frame[-2:], "little")
    want = crc16(frame[:-2])
    if got != want:
        raise CrcError(got, want, what)


# --- frames as values ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadRequest:
    slave: int
    function: int
    address: int
    count: int


@dataclass(frozen=True, slots=True)
class ReadReply:
    """`data` is the payload after the byte count: registers big-endian, or bits packed."""

    slave: int
    function: int
    data: bytes


@dataclass(frozen=True, slots=True)
class WriteSingle:
    """FC 0x06: the request and its reply are the same bytes."""

    slave: int
    address: int
    value: int


@dataclass(frozen=True, slots=True)
class WriteMultipleRequest:
    slave: int
    address: int
    values: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class WriteMultipleReply:
    slave: int
    address: int
    count: int


@dataclass(frozen=True, slots=True)
class ExceptionReply:
    slave: int
    function: int
    code: int


Request = ReadRequest | WriteSingle | WriteMultipleRequest
Reply = ReadReply | WriteSingle | WriteMultipleReply | ExceptionReply


# --- encoding -----------------------------------------------------------------------------------


def _check_slave(slave: int) -> None:
    if not 0 <= slave <= 255:
        raise ValueError(f"slave address {slave} out of range 0..255")


def encode_read_request(slave: int, function: int, address: int, count: int) -> bytes:
    _check_slave(slave)
    if function not in READ_FUNCTIONS:
        raise ValueError(f"function 0x{function:02X} is not a read")
    limit = _MAX_BITS if function in READ_BITS else _MAX_READ_REGISTERS
    if not 1 <= count <= limit:
        raise ValueError(f"count {count} out of range 1..{limit} for function 0x{function:02X}")
    if not 0 <= address <= 0xFFFF or address + count > 0x10000:
        raise ValueError(f"address 0x{address:X} + {count} leaves the 16-bit address space")
    return _seal(bytes((slave, function)) + address.to_bytes(2, "big") + count.to_bytes(2, "big"))


def pack_bits(bits: Sequence[bool]) -> bytes:
    """Coils/discrete inputs as sent: bit 0 of byte 0 is the first, unused high bits zero."""
    out = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        if bit:
            out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def encode_read_reply(slave: int, function: int, values: Sequence[int] | bytes) -> bytes:
    """Registers (FC 0x03/0x04: a sequence of 16-bit values) or packed bits (FC 0x01/0x02:
    bytes from `pack_bits`)."""
    _check_slave(slave)
    if function in READ_REGISTERS:
        if isinstance(values, bytes):
            raise ValueError("register replies take a sequence of 16-bit values")
        if any(not 0 <= v <= 0xFFFF for v in values):
            raise ValueError("register values must be 0..65535")
        data = b"".join(v.to_bytes(2, "big") for v in values)
    elif function in READ_BITS:
        if not isinstance(values, bytes):
            raise ValueError("bit replies take packed bytes (see pack_bits)")
        data = values
    else:
        raise ValueError(f"function 0x{function:02X} is not a read")
    if len(data) > 250:
        raise ValueError(f"{len(data)} data bytes: a Modbus reply holds at most 250")
    return _seal(bytes((slave, function, len(data))) + data)


def encode_write_single(slave: int, address: int, value: int) -> bytes:
    _check_slave(slave)
    return _seal(
        bytes((slave, WRITE_SINGLE)) + address.to_bytes(2, "big") + value.to_bytes(2, "big")
    )


def encode_write_multiple_request(slave: int, address: int, values: Sequence[int]) -> bytes:
    _check_slave(slave)
    if not 1 <= len(values) <= _MAX_WRITE_REGISTERS:
        raise ValueError(f"{len(values)} registers: FC 0x10 writes 1..{_MAX_WRITE_REGISTERS}")
    data = b"".join(v.to_bytes(2, "big") for v in values)
    return _seal(
        bytes((slave, WRITE_MULTIPLE))
        + address.to_bytes(2, "big")
        + len(values).to_bytes(2, "big")
        + bytes((len(data),))
        + data
    )


def encode_write_multiple_reply(slave: int, address: int, count: int) -> bytes:
    _check_slave(slave)
    return _seal(
        bytes((slave, WRITE_MULTIPLE)) + address.to_bytes(2, "big") + count.to_bytes(2, "big")
    )


def encode_exception(slave: int, function: int, code: int) -> bytes:
    _check_slave(slave)
    return _seal(bytes((slave, (function & 0x7F) | 0x80, code)))


# --- frame boundaries in a byte stream ----------------------------------------------------------


def _request_length(buf: bytes) -> int | None:
    """Length of the request starting `buf`: None while unknowable, 0 if impossible."""
    function = buf[1]
    if function in READ_FUNCTIONS or function == WRITE_SINGLE:
        return 8
    if function == WRITE_MULTIPLE:
        if len(buf) <= 6:
            return None
        nbytes = buf[6]
        return (
            9 + nbytes if nbytes and nbytes % 2 == 0 and nbytes <= 2 * _MAX_WRITE_REGISTERS else 0
        )
    return 0


def _reply_length(buf: bytes) -> int | None:
    """Length of the reply starting `buf`: None while unknowable, 0 if impossible."""
    function = buf[1]
    if function & 0x80:
        return 5
    if function in READ_FUNCTIONS:
        if len(buf) <= 2:
            return None
        nbytes = buf[2]
        if nbytes == 0 or nbytes > 250 or (function in READ_REGISTERS and nbytes % 2):
            return 0
        return 5 + nbytes
    if function in (WRITE_SINGLE, WRITE_MULTIPLE):
        return 8
    return 0


def _plausible_request(frame: bytes) -> bool:
    function = frame[1]
    if function in READ_FUNCTIONS:
        count = int.from_bytes(frame[4:6], "big")
        limit = _MAX_BITS if function in READ_BITS else _MAX_READ_REGISTERS
        return 1 <= count <= limit
    if function == WRITE_MULTIPLE:
        count = int.from_bytes(frame[4:6], "big")
        return 1 <= count <= _MAX_WRITE_REGISTERS and frame[6] == 2 * count
    return function == WRITE_SINGLE


def _plausible_reply(frame: bytes) -> bool:
    function = frame[1]
    if function & 0x80:
        return (function & 0x7F) in _KNOWN
    if function in READ_REGISTERS:
        return frame[2] % 2 == 0 and frame[2] > 0
    if function in READ_BITS:
        return frame[2] > 0
    return True


def frame_length(buf: bytes) -> int | None:
    """Length of the complete frame (request or reply) at the start of `buf`; None if more
    bytes are needed. Raises FrameError if `buf` cannot start a frame: an unknown function
    code, or every reading the bytes allow is complete and none has a valid CRC.

    A read request is 8 bytes; its reply is 5 + byte count. Both readings are tried, shortest
    first, and the first whose CRC checks wins (a false match needs a 1-in-65536 CRC accident
    and a plausible structure on top).
    """
    if len(buf) < 2:
        return None
    function = buf[1]
    if (function & 0x7F) not in _KNOWN:
        raise UnsupportedFunctionError(f"Modbus function 0x{function:02X} is not supported")
    candidates: list[tuple[int, bool]] = []
    pending = False
    readings = (
        ((_reply_length, False),)
        if function & 0x80
        else (
            (_request_length, True),
            (_reply_length, False),
        )
    )
    for length_of, as_request in readings:
        length = length_of(buf)
        if length is None:
            pending = True
        elif length:
            candidates.append((length, as_request))
    candidates.sort()
    failed: list[tuple[int, int, int]] = []
    for length, as_request in candidates:
        if len(buf) < length:
            return None
        frame = buf[:length]
        plausible = _plausible_request(frame) if as_request else _plausible_reply(frame)
        if _crc_ok(frame) and plausible:
            return length
        failed.append((length, int.from_bytes(frame[-2:], "little"), crc16(frame[:-2])))
    if pending:
        return None
    if not failed:
        raise ModbusFrameError(
            f"bytes {bytes(buf[:3]).hex()} cannot start a Modbus function 0x{function:02X} frame"
        )
    # Report the longest reading tried: that is where a corrupt reply's CRC sits.
    length, got, want = failed[-1]
    raise CrcError(got, want, f"{length}-byte frame")


def is_request(frame: bytes, after: bytes | None = None) -> bool:
    """True for a master→slave request, False for a reply.

    Without context an 8-byte frame that reads both ways (FC 0x06 echo; a 3-byte bit reply)
    counts as a request. `after` is the frame heard just before: a frame that answers it is a
    reply.
    """
    if len(frame) < 4:
        raise ModbusFrameError(f"Modbus frame of {len(frame)} bytes: at least 4 needed")
    function = frame[1]
    if function & 0x80:
        return False
    if after is not None and len(after) >= 4 and after[:2] == frame[:2]:
        try:
            previous = parse_request(after)
        except FrameError:
            previous = None
        if previous is not None and reply_matches(previous, frame):
            return False
    request_len = _request_length(frame) if len(frame) >= 2 else None
    return bool(request_len == len(frame) and _plausible_request(frame))


def frame_address(frame: bytes) -> int | None:
    """The slave a frame is to or from."""
    return frame[0] if frame else None


# --- parsing ------------------------------------------------------------------------------------


def parse_request(frame: bytes) -> Request:
    _check_crc(frame, "request", 8)
    slave, function = frame[0], frame[1]
    if function not in _KNOWN:
        raise UnsupportedFunctionError(f"Modbus function 0x{function:02X} is not supported")
    expected = _request_length(frame)
    if not expected:
        raise ModbusFrameError(f"Modbus write request with a bad byte count {frame[6]}")
    if len(frame) != expected:
        raise ModbusFrameError(
            f"Modbus function 0x{function:02X} request is {len(frame)} bytes, expected {expected}"
        )
    address = int.from_bytes(frame[2:4], "big")
    word = int.from_bytes(frame[4:6], "big")
    if function in READ_FUNCTIONS:
        if not _plausible_request(frame):
            raise ModbusFrameError(f"Modbus read request for {word} items is out of range")
        return ReadRequest(slave, function, address, word)
    if function == WRITE_SINGLE:
        return WriteSingle(slave, address, word)
    if frame[6] != 2 * word:
        raise ModbusFrameError(
            f"Modbus write of {word} registers carries {frame[6]} bytes, expected {2 * word}"
        )
    values = tuple(int.from_bytes(frame[7 + 2 * i : 9 + 2 * i], "big") for i in range(word))
    return WriteMultipleRequest(slave, address, values)


def parse_reply(frame: bytes) -> Reply:
    """A reply frame as a value. An exception reply comes back as ExceptionReply (not raised):
    the caller decides whether it is an error."""
    _check_crc(frame, "reply", 5)
    slave, function = frame[0], frame[1]
    if function & 0x80:
        if len(frame) != 5:
            raise ModbusFrameError(f"Modbus exception reply is {len(frame)} bytes, expected 5")
        return ExceptionReply(slave, function & 0x7F, frame[2])
    if function not in _KNOWN:
        raise UnsupportedFunctionError(f"Modbus function 0x{function:02X} is not supported")
    expected = _reply_length(frame)
    if not expected:
        raise ModbusFrameError(
            f"Modbus function 0x{function:02X} reply with a bad byte count {frame[2]}"
        )
    if len(frame) != expected:
        raise ModbusFrameError(
            f"Modbus function 0x{function:02X} reply is {len(frame)} bytes, "
            f"its byte count says {expected}"
        )
    if function in READ_FUNCTIONS:
        if function in READ_REGISTERS and frame[2] % 2:
            raise ModbusFrameError(f"Modbus register reply with an odd byte count {frame[2]}")
        return ReadReply(slave, function, bytes(frame[3:-2]))
    address = int.from_bytes(frame[2:4], "big")
    word = int.from_bytes(frame[4:6], "big")
    if function == WRITE_SINGLE:
        return WriteSingle(slave, address, word)
    return WriteMultipleReply(slave, address, word)


def reply_matches(request: Request, frame: bytes) -> bool:
    """Whether `frame` (CRC-valid) is a plausible reply to `request`."""
    if len(frame) < 4 or frame[0] != request.slave or not _crc_ok(frame):
        return False
    function = frame[1]
    if isinstance(request, ReadRequest):
        if function == request.function | 0x80:
            return len(frame) == 5
        if function != request.function or len(frame) < 3:
            return False
        want = 2 * request.count if function in READ_REGISTERS else (request.count + 7) // 8
        return frame[2] == want and len(frame) == 5 + want
    want_function = WRITE_SINGLE if isinstance(request, WriteSingle) else WRITE_MULTIPLE
    if function == want_function | 0x80:
        return len(frame) == 5
    return function == want_function and len(frame) == 8


def registers_of(reply: ReadReply) -> tuple[int, ...]:
    """The 16-bit registers of an FC 0x03/0x04 reply."""
    data = reply.data
    return tuple(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data) - 1, 2))


def bits_of(reply: ReadReply, count: int) -> tuple[bool, ...]:
    """The first `count` bits of an FC 0x01/0x02 reply."""
    data = reply.data
    if count > 8 * len(data):
        raise ModbusFrameError(f"bit reply holds {8 * len(data)} bits, {count} asked")
    return tuple(bool(data[i // 8] >> (i % 8) & 1) for i in range(count))
