"""Modbus RTU framing: CRC, encode/parse both ways, request/reply boundaries in a byte stream."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bankwatch.drivers import modbus_rtu as m
from bankwatch.drivers.errors import FrameError
from tests.helpers import load_vectors

VECTORS = load_vectors("seplos_v3_modbus")
FRAMES = [bytes.fromhex(v["frame_hex"]) for v in VECTORS]


def test_crc_matches_the_standard_check_value() -> None:
    # CRC-16/MODBUS check value for "123456789" (catalogue of parametrised CRC algorithms).
    assert m.crc16(b"123456789") == 0x4B37


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["id"])
def test_every_captured_frame_is_one_frame_of_the_right_kind(vector: dict[str, object]) -> None:
    frame = bytes.fromhex(str(vector["frame_hex"]))
    assert m.frame_length(frame) == len(frame)
    assert m.frame_length(frame + b"\x01\x04\x10") == len(frame)  # the next frame may follow
    assert m.is_request(frame) == (vector["direction"] == "request")
    assert m.frame_address(frame) == vector["slave"]


def test_request_encodes_to_the_captured_bytes() -> None:
    assert m.encode_read_request(1, 4, 0x1000, 0x11) == bytes.fromhex("01041000001134C6")
    assert m.encode_read_request(1, 4, 0x1100, 0x1A) == bytes.fromhex("01041100001A74FD")
    # JK-PB's documented pack-voltage read (PROTOCOLS.md 3.1).
    assert m.encode_read_request(1, 3, 0x1290, 2) == bytes.fromhex("010312900002C15E")


def test_a_stream_of_request_reply_pairs_splits_where_it_should() -> None:
    stream = b"".join(FRAMES)
    cuts = []
    while stream:
        n = m.frame_length(stream)
        assert n is not None
        cuts.append(stream[:n])
        stream = stream[n:]
    assert cuts == FRAMES


@pytest.mark.parametrize("frame", FRAMES, ids=range(len(FRAMES)))
def test_every_prefix_asks_for_more_bytes(frame: bytes) -> None:
    for cut in range(len(frame)):
        assert m.frame_length(frame[:cut]) is None, cut


def test_round_trips_of_every_supported_function() -> None:
    req = m.encode_read_request(7, 3, 0x0100, 3)
    assert m.parse_request(req) == m.ReadRequest(7, 3, 0x0100, 3)
    reply = m.encode_read_reply(7, 3, [1, 0xFFFF, 0x1234])
    parsed = m.parse_reply(reply)
    assert isinstance(parsed, m.ReadReply)
    assert m.registers_of(parsed) == (1, 0xFFFF, 0x1234)
    assert m.reply_matches(m.ReadRequest(7, 3, 0x0100, 3), reply)
    assert not m.reply_matches(m.ReadRequest(7, 3, 0x0100, 4), reply)

    bits = [True, False, True, True, False, False, False, False, True]
    coil_reply = m.encode_read_reply(2, 1, m.pack_bits(bits))
    parsed_bits = m.parse_reply(coil_reply)
    assert isinstance(parsed_bits, m.ReadReply)
    assert m.bits_of(parsed_bits, 9) == tuple(bits)

    single = m.encode_write_single(3, 0x10, 0xBEEF)
    assert m.parse_request(single) == m.WriteSingle(3, 0x10, 0xBEEF)
    assert m.frame_length(single) == 8

    multi = m.encode_write_multiple_request(1, 0x1620, [0])
    # JK-PB's bus-master trigger (PROTOCOLS.md 3.2): ADR 10 16 20 00 01 02 00 00 CRC.
    assert multi[:-2] == bytes.fromhex("0110162000010200 00".replace(" ", ""))
    assert m.parse_request(multi) == m.WriteMultipleRequest(1, 0x1620, (0,))
    assert m.frame_length(multi) == len(multi) == 11
    ack = m.encode_write_multiple_reply(1, 0x1620, 1)
    assert m.parse_reply(ack) == m.WriteMultipleReply(1, 0x1620, 1)
    assert m.frame_length(ack) == 8 and not m.is_request(ack, after=multi)

    exc = m.encode_exception(1, 4, 2)
    assert m.frame_length(exc) == 5
    assert m.parse_reply(exc) == m.ExceptionReply(1, 4, 2)
    assert not m.is_request(exc)


def test_an_echoed_write_is_a_reply_after_its_request() -> None:
    single = m.encode_write_single(3, 0x10, 1)
    assert m.is_request(single)
    assert not m.is_request(single, after=single)


def test_crc_error_gives_both_values() -> None:
    frame = bytearray(FRAMES[1])
    frame[5] ^= 0x01
    with pytest.raises(m.CrcError) as err:
        m.parse_reply(bytes(frame))
    got, want = err.value.got, err.value.want
    assert got != want
    assert f"0x{got:04X}" in str(err.value) and f"0x{want:04X}" in str(err.value)
    with pytest.raises(m.CrcError):
        m.frame_length(bytes(frame))


def test_unknown_function_and_impossible_counts_are_rejected() -> None:
    with pytest.raises(m.UnsupportedFunctionError, match="0x2B"):
        m.frame_length(b"\x01\x2b\x0e\x01")
    # A register reply cannot hold an odd number of bytes; as a request the CRC fails.
    with pytest.raises(FrameError):
        m.frame_length(b"\x01\x03\x03\x00\x00\x00\x00\x00\x00\x00")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_frame_error(data: bytes) -> None:
    for fn in (m.frame_length, m.parse_request, m.parse_reply, m.is_request):
        with contextlib.suppress(FrameError):
            fn(data)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FRAMES), st.integers(0, 400), st.integers(0, 255))
def test_mutated_frames_only_raise_frame_error(frame: bytes, pos: int, value: int) -> None:
    mutated = bytearray(frame)
    mutated[pos % len(frame)] = value
    for candidate in (bytes(mutated), frame[: pos % len(frame)]):
        for fn in (m.frame_length, m.parse_request, m.parse_reply):
            with contextlib.suppress(FrameError):
                fn(candidate)
