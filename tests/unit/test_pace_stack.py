"""Pace 0x42 for a whole stack: several packs in one reply, each with a tail after its design
capacity (its own SOC, and on some firmware cumulative Ah and SOH), from a real three-pack
Gobel/Pace capture."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bankwatch.drivers.errors import FrameError
from bankwatch.drivers.pylontech_rs485 import PACE, build_frame
from tests.helpers import load_vectors

VECTORS = load_vectors("extra/pace_stack")


@pytest.mark.parametrize("vector", VECTORS, ids=[v["id"] for v in VECTORS])
def test_a_three_pack_reply_gives_three_packs(vector: dict[str, Any]) -> None:
    request = bytes.fromhex(vector["request_hex"])
    reply = bytes.fromhex(vector["frame_hex"])
    packs = PACE.decode_modules(reply, request)
    want = vector["expect"]["modules"]
    assert len(packs) == vector["expect"]["packs"] == len(want)
    for got, exp in zip(packs, want, strict=True):
        assert got.cell_voltages_v == pytest.approx(exp["cells_V"])
        assert got.temperatures_c is not None
        assert list(got.temperatures_c[:4]) == pytest.approx(exp["temps_C"][:4])
        assert got.current_a == exp["current_A"] and got.pack_voltage_v == exp["voltage_V"]
        assert got.remaining_ah == exp["remaining_Ah"] and got.full_charge_ah == exp["full_Ah"]
        assert got.cycles == exp["cycles"] and got.design_ah == exp["design_Ah"]
        # The pack's own SOC from its tail, not one worked out from the capacities.
        assert got.soc_pct == exp["tail_soc_pct"]
    total = PACE.decode(reply, request)
    assert total.current_a == pytest.approx(sum(m["current_A"] for m in want), abs=0.05)
    assert total.modules_online == 3


def _pack_info(tail: bytes) -> bytes:
    """One 4-cell pack in Pace's 0x42 layout, then `tail` after its design capacity."""
    out = bytes([4]) + b"".join((3300 + i).to_bytes(2, "big") for i in range(4))
    out += bytes([2]) + (2980).to_bytes(2, "big") * 2  # 2 sensors, 25.0 °C
    out += (-250).to_bytes(2, "big", signed=True) + (13204).to_bytes(2, "big")  # -2.5 A, 13.2 V
    out += (8000).to_bytes(2, "big") + bytes([2]) + (10000).to_bytes(2, "big")  # 80 / 100 Ah
    out += (12).to_bytes(2, "big") + (10000).to_bytes(2, "big") + tail  # 12 cycles, 100 Ah
    return out


def test_a_single_pack_with_the_long_tail() -> None:
    """SOC, cumulative charge and discharge Ah, SOH: the tail a newer firmware appends."""
    tail = bytes([81]) + (1234).to_bytes(4, "big") + (1200).to_bytes(4, "big") + bytes([97])
    request = PACE.encode_request(0x42, 1)
    reply = build_frame(0x25, 1, 0x46, 0x00, bytes([0, 1]) + _pack_info(tail))
    r = PACE.decode(reply, request)
    assert r.soc_pct == 81 and r.soh_pct == 97
    assert r.remaining_ah == 80.0 and r.cycles == 12


def test_a_master_that_answers_one_pack_with_the_stack() -> None:
    """Asked for pack 1 alone, a stack master may send all its packs (the byte after the flag
    then counts them): two packs of 59 bytes with a 14-byte tail each, 148 bytes of INFO."""
    tail = bytes([60]) + bytes(8) + bytes([99]) + bytes(4)
    info = bytes([0, 2]) + _pack_info(tail) + _pack_info(tail)
    request = PACE.encode_request(0x42, 1)
    reply = build_frame(0x25, 1, 0x46, 0x00, info)
    packs = PACE.decode_modules(reply, request)
    assert len(packs) == 2 and all(p.soc_pct == 60 and p.soh_pct == 99 for p in packs)


def test_a_tail_that_does_not_divide_among_the_packs_is_an_error() -> None:
    request = PACE.encode_request(0x42, 1, command=0xFF)
    info = bytes([0, 2]) + _pack_info(bytes([50])) + _pack_info(bytes([51, 52]))
    reply = build_frame(0x25, 1, 0x46, 0x00, info)
    with pytest.raises(FrameError):
        PACE.decode(reply, request)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 20))
def test_random_stack_replies_only_raise_frame_errors(info: bytes, packs: int) -> None:
    request = PACE.encode_request(0x42, 1, command=0xFF)
    reply = build_frame(0x25, 1, 0x46, 0x00, bytes([0, packs]) + info)
    with contextlib.suppress(FrameError):
        PACE.decode_modules(reply, request)
    with contextlib.suppress(FrameError):
        PACE.decode(reply, request)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 255), st.booleans())
def test_mutated_stack_replies_only_raise_frame_errors(pos: int, value: int, cut: bool) -> None:
    vector = VECTORS[0]
    request = bytes.fromhex(vector["request_hex"])
    info = bytearray(bytes.fromhex(bytes.fromhex(vector["frame_hex"])[13:-5].decode()))
    if cut:
        info = info[: pos % len(info)]
    else:
        info[pos % len(info)] = value
    reply = build_frame(0x25, 1, 0x46, 0x00, bytes(info))
    with contextlib.suppress(FrameError):
        PACE.decode(reply, request)
