"""Checks every serial codec (the contract in SERIAL_CONTRACT.md) must pass, shared by the
per-protocol test files: bad bytes of any kind only ever raise FrameError, and the module has
the contract's names."""

from __future__ import annotations

from types import ModuleType

import pytest

from bankwatch.drivers.errors import FrameError
from bankwatch.drivers.model import Reading

CONTRACT_NAMES = (
    "PROTOCOL",
    "DEFAULT_BAUD",
    "GAP_S",
    "REPLY_TIMEOUT_S",
    "frame_length",
    "poll_requests",
    "decode",
    "frame_address",
    "is_request",
    "encode_reply",
)


def check_contract(codec: ModuleType) -> None:
    for name in CONTRACT_NAMES:
        assert hasattr(codec, name), f"{codec.__name__} lacks {name}"
        assert name in codec.__all__, f"{name} not exported by {codec.__name__}"
    assert isinstance(codec.PROTOCOL, str) and codec.PROTOCOL
    assert codec.DEFAULT_BAUD in (9600, 19200, 38400, 57600, 115200)
    assert 0 < codec.GAP_S < 1 and 0 < codec.REPLY_TIMEOUT_S <= 2


def only_frame_errors(codec: ModuleType, data: bytes) -> None:
    """Everything a line or `bankwatch decode` may call on unknown bytes: a result or a
    FrameError, never another exception."""
    try:
        n = codec.frame_length(data)
    except FrameError:
        pass
    else:
        assert n is None or n > 0, n
        if n is not None and n <= len(data):
            only_frame_errors_decode(codec, data[:n])
    only_frame_errors_decode(codec, data)


def only_frame_errors_decode(codec: ModuleType, frame: bytes) -> None:
    try:
        reading = codec.decode(frame)
    except FrameError as exc:
        assert str(exc) and "\n" not in str(exc), repr(exc)
    else:
        assert isinstance(reading, Reading)
    for fn in (codec.frame_address, codec.is_request):
        fn(frame)  # must not raise on anything


def truncations_raise(codec: ModuleType, frame: bytes) -> None:
    """Every proper prefix of a valid frame: decode raises FrameError, frame_length says
    'more bytes needed' (None), since the prefix may yet become that frame."""
    for k in range(len(frame)):
        prefix = frame[:k]
        with pytest.raises(FrameError):
            codec.decode(prefix)
        assert codec.frame_length(prefix) is None, f"prefix of {k} bytes"


def mutate(frame: bytes, positions: list[int], values: list[int]) -> bytes:
    """`frame` with the bytes at `positions` (taken modulo its length) replaced by `values`."""
    out = bytearray(frame)
    for pos, val in zip(positions, values, strict=False):
        out[pos % len(out)] = val
    return bytes(out)
