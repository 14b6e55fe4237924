"""JBD 0xDD codec against the captured frames, plus round trips and fuzzing."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bankwatch.drivers import jbd
from bankwatch.drivers.errors import FrameError
from bankwatch.drivers.model import Protection, Reading, merge_readings
from bankwatch.drivers.uart_common import (
    ChecksumError,
    ErrorReplyError,
    MalformedFrameError,
    UnknownCommandError,
)
from tests.codec_checks import check_contract, mutate, only_frame_errors, truncations_raise
from tests.helpers import load_vectors

VECTORS = load_vectors("jbd")
REPLIES = [v for v in VECTORS if v["direction"] == "response"]
REQUESTS = [v for v in VECTORS if v["direction"] == "request"]
FRAMES = [bytes.fromhex(v["frame_hex"]) for v in VECTORS]


def _frame(vector: dict[str, Any]) -> bytes:
    return bytes.fromhex(vector["frame_hex"])


def _extra(r: Reading, key: str) -> Any:
    extra = dict(r.extra)
    assert key in extra, f"extra {key!r} not decoded"
    return extra[key]


def _fw_byte(r: Reading) -> str:
    assert r.firmware is not None
    major, minor = r.firmware.split(".")
    return f"0x{int(major) << 4 | int(minor):02x}"


_COUNTER_KEYS = [
    "events_short_circuit",
    "events_charge_overcurrent",
    "events_discharge_overcurrent",
    "events_cell_overvoltage",
    "events_cell_undervoltage",
    "events_charge_over_temperature",
    "events_charge_under_temperature",
    "events_discharge_over_temperature",
    "events_discharge_under_temperature",
    "events_pack_overvoltage",
    "events_pack_undervoltage",
]

# Vector key -> what the reading (and frame) must hold. Every key of every vector must be here.
CHECKS: dict[str, Any] = {
    "status": lambda r, f: f[2],
    "data_len": lambda r, f: f[3],
    "voltage_V": lambda r, f: r.pack_voltage_v,
    "current_A": lambda r, f: r.current_a,
    "remaining_Ah": lambda r, f: r.remaining_ah,
    "nominal_Ah": lambda r, f: r.design_ah,
    "cycles": lambda r, f: r.cycles,
    "production_date": lambda r, f: _extra(r, "production_date"),
    "balance_low16": lambda r, f: f"0x{_extra(r, 'balance_bits') & 0xFFFF:04x}",
    "balance_high16": lambda r, f: f"0x{_extra(r, 'balance_bits') >> 16:04x}",
    "protection_bits": lambda r, f: f"0x{_extra(r, 'protection_bits'):04x}",
    "software_version": lambda r, f: _fw_byte(r),
    "soc_pct": lambda r, f: r.soc_pct,
    "fet_bits": lambda r, f: f"0x{int(r.charge_enabled) | int(r.discharge_enabled) << 1:02x}",
    "charge_fet": lambda r, f: r.charge_enabled,
    "discharge_fet": lambda r, f: r.discharge_enabled,
    "cell_count": lambda r, f: _extra(r, "cell_count"),
    "ntc_count": lambda r, f: len(r.temperatures_c),
    "temps_C": lambda r, f: list(r.temperatures_c),
    "extra_bytes_hex": lambda r, f: _extra(r, "extension_hex"),
    "cells_mV": lambda r, f: [round(v * 1000) for v in r.cell_voltages_v],
    "hardware_version": lambda r, f: r.model,
    "error_counters_u16": lambda r, f: [_extra(r, k) for k in _COUNTER_KEYS],
    "trailing": lambda r, f: _extra(r, "events_trailing_hex"),
}


@pytest.mark.parametrize("vector", REPLIES, ids=[v["id"] for v in REPLIES])
def test_vector_decodes_to_expected(vector: dict[str, Any]) -> None:
    frame = _frame(vector)
    reading = jbd.decode(frame)
    assert vector["expect"], "a reply vector without expected values"
    for key, want in vector["expect"].items():
        assert key in CHECKS, f"vector key {key!r} has no check: extend CHECKS"
        got = CHECKS[key](reading, frame)
        assert got is not None, key
        floats = isinstance(want, list) and any(isinstance(w, float) for w in want)
        if isinstance(want, float) or floats:
            assert got == pytest.approx(want, abs=1e-6), key
        else:
            assert got == want, key
    assert jbd.is_request(frame) is False and jbd.frame_address(frame) is None


@pytest.mark.parametrize("vector", REQUESTS, ids=[v["id"] for v in REQUESTS])
def test_requests_encode_to_the_captured_bytes(vector: dict[str, Any]) -> None:
    frame = _frame(vector)
    assert frame in jbd.poll_requests(1)
    assert jbd.encode_request(frame[2]) == frame
    assert jbd.is_request(frame) and jbd.decode(frame) == Reading()


def test_contract_and_poll() -> None:
    check_contract(jbd)
    assert jbd.poll_requests(1) == jbd.poll_requests(7)  # no address on the wire
    assert [r[2] for r in jbd.poll_requests(1)] == [0x03, 0x04, 0x05]
    # the write the vendor PDF shows: discharge MOSFET off
    assert jbd.encode_request(0xE1, b"\x00\x02", write=True) == bytes.fromhex(
        "DD5AE1020002FF1B77"
    )


def test_extended_basic_info_reads_full_charge_capacity_after_the_ntcs() -> None:
    ext = next(_frame(v) for v in VECTORS if v["id"] == "jbd_dp04_0x03_ext")
    r = jbd.decode(ext)
    assert r.full_charge_ah == pytest.approx(200.0) and r.design_ah == pytest.approx(200.0)
    assert r.remaining_ah == pytest.approx(191.67)
    plain = jbd.decode(_frame(REPLIES[0]))
    assert plain.full_charge_ah is None and "extension_hex" not in dict(plain.extra)


def test_a_poll_merges_into_one_reading() -> None:
    r = Reading()
    for vid in ("jbd_sp04_0x03", "jbd_sp04_0x04", "jbd_sp04_0x05"):
        r = merge_readings(r, jbd.decode(next(_frame(v) for v in VECTORS if v["id"] == vid)))
    assert r.cell_voltages_v == (3.909, 3.901, 3.895, 3.901)
    assert r.model == "JBD-SP04S034-L4S-200A-B-U" and r.firmware == "8.0"
    assert r.pack_voltage_v == pytest.approx(15.6) and r.max_cell_v == pytest.approx(3.909)


@pytest.mark.parametrize(
    ("bit", "flag", "name"),
    [
        (0, Protection.CELL_OVERVOLTAGE, "cell_overvoltage"),
        (3, Protection.CELL_UNDERVOLTAGE, "pack_undervoltage"),
        (5, Protection.UNDER_TEMPERATURE, "charge_under_temperature"),
        (6, Protection.OVER_TEMPERATURE, "discharge_over_temperature"),
        (8, Protection.CHARGE_OVERCURRENT, "charge_overcurrent"),
        (9, Protection.DISCHARGE_OVERCURRENT, "discharge_overcurrent"),
        (10, Protection.SHORT_CIRCUIT, "short_circuit"),
        (12, Protection.SYSTEM_ERROR, "software_mos_lock"),
    ],
)
def test_protection_bits(bit: int, flag: Protection, name: str) -> None:
    frame = bytearray(_frame(REPLIES[0]))
    data = bytearray(frame[4:-3])
    data[16:18] = (1 << bit).to_bytes(2, "big")
    rebuilt = jbd._frame(0x03, bytes((0, len(data))) + bytes(data))
    r = jbd.decode(rebuilt)
    assert r.protections == flag
    assert dict(r.extra)["protections_active"] == name
    assert dict(r.extra)["protection_bits"] == 1 << bit


def test_bad_frames_say_what_is_wrong() -> None:
    good = _frame(REPLIES[0])  # checksum FA8D
    bad = good[:-3] + b"\xfa\x8e\x77"
    with pytest.raises(ChecksumError, match="checksum 0xFA8E in frame, 0xFA8D computed"):
        jbd.decode(bad)
    with pytest.raises(FrameError, match="frame of 35 bytes, its length byte says 36"):
        jbd.decode(good[:-4] + good[-3:])
    with pytest.raises(MalformedFrameError, match="ends in 0x77"):
        jbd.frame_length(good[:-1] + b"\x00")
    err = jbd._frame(0x03, b"\x80\x00")
    with pytest.raises(ErrorReplyError, match="register 0x03 with error status 0x80"):
        jbd.decode(err)
    with pytest.raises(UnknownCommandError, match="register 0xE1"):
        jbd.decode(jbd._frame(0xE1, b"\x00\x00"))
    short = jbd._frame(0x03, b"\x00\x05" + bytes(5))
    with pytest.raises(FrameError, match="basic info of 5 bytes, needs 23"):
        jbd.decode(short)
    ntcs = bytearray(_frame(REPLIES[0])[4:-3])
    ntcs[22] = 9
    with pytest.raises(FrameError, match="9 NTCs need 41"):
        jbd.decode(jbd._frame(0x03, bytes((0, len(ntcs))) + bytes(ntcs)))


def test_frame_length_finds_frames_in_a_stream() -> None:
    stream = b"".join(FRAMES)
    found = []
    while stream:
        n = jbd.frame_length(stream)
        assert n is not None
        found.append(stream[:n])
        stream = stream[n:]
    assert found == FRAMES


def test_basic_info_and_model_are_answered_even_from_an_empty_reading() -> None:
    basic, cells, model = (jbd.encode_reply(req, Reading()) for req in jbd.poll_requests(1))
    assert basic is not None and model is not None and cells is None
    assert jbd.decode(basic).pack_voltage_v == 0.0 and jbd.decode(model).model is None


def test_unanswered_requests() -> None:
    r = Reading(pack_voltage_v=13.2)
    assert jbd.encode_reply(jbd.encode_request(0xAA), r) is None
    assert jbd.encode_reply(jbd.encode_request(0xE1, b"\x00\x02", write=True), r) is None
    assert jbd.encode_reply(jbd.encode_request(0x04), r) is None  # no cells to give
    assert jbd.encode_reply(_frame(REPLIES[0]), r) is None


# ---- round trips ---------------------------------------------------------------------------

_protections = st.sets(st.sampled_from([p for p in Protection if p.value])).map(
    lambda s: Protection(sum(p.value for p in s))
)


@st.composite
def readings(draw: st.DrawFn) -> Reading:
    cells = draw(st.lists(st.integers(0, 5000), min_size=1, max_size=32))
    temps = draw(st.lists(st.integers(-400, 1200), min_size=0, max_size=8))
    return Reading(
        pack_voltage_v=draw(st.integers(0, 0xFFFF)) / 100,
        current_a=draw(st.integers(-0x8000, 0x7FFF)) / 100,
        remaining_ah=draw(st.integers(0, 0xFFFF)) / 100,
        design_ah=draw(st.integers(0, 0xFFFF)) / 100,
        cycles=draw(st.integers(0, 0xFFFF)),
        soc_pct=float(draw(st.integers(0, 100))),
        cell_voltages_v=tuple(c / 1000 for c in cells),
        temperatures_c=tuple(t / 10 for t in temps),
        charge_enabled=draw(st.booleans()),
        discharge_enabled=draw(st.booleans()),
        protections=draw(_protections),
        firmware=f"{draw(st.integers(0, 15))}.{draw(st.integers(0, 15))}",
        model=draw(st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=40))
        or None,
    )


@settings(max_examples=150, deadline=None)
@given(readings())
def test_round_trip(reading: Reading) -> None:
    back = Reading()
    for req in jbd.poll_requests(1):
        reply = jbd.encode_reply(req, reading)
        assert reply is not None and jbd.frame_length(reply) == len(reply)
        back = merge_readings(back, jbd.decode(reply, req))
    for name in (
        "pack_voltage_v",
        "current_a",
        "remaining_ah",
        "design_ah",
        "cycles",
        "soc_pct",
        "cell_voltages_v",
        "charge_enabled",
        "discharge_enabled",
        "protections",
        "firmware",
        "model",
    ):
        assert getattr(back, name) == getattr(reading, name), name
    assert back.temperatures_c == pytest.approx(reading.temperatures_c, abs=1e-9)
    assert dict(back.extra)["cell_count"] == len(reading.cell_voltages_v or ())


# ---- fuzzing -------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=60))
def test_random_bytes_only_raise_frame_error(data: bytes) -> None:
    only_frame_errors(jbd, data)
    only_frame_errors(jbd, b"\xdd" + data)
    only_frame_errors(jbd, b"\xdd\x03\x00" + data)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(FRAMES),
    st.lists(st.integers(0, 63), min_size=1, max_size=4),
    st.lists(st.integers(0, 255), min_size=1, max_size=4),
)
def test_mutated_frames_only_raise_frame_error(
    frame: bytes, positions: list[int], values: list[int]
) -> None:
    only_frame_errors(jbd, mutate(frame, positions, values))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(REPLIES), st.binary(min_size=1, max_size=40))
def test_valid_checksum_wrong_contents_only_raise_frame_error(
    vector: dict[str, Any], data: bytes
) -> None:
    """Random data behind a good checksum: the decoder's own length checks must hold."""
    frame = _frame(vector)
    only_frame_errors(jbd, jbd._frame(frame[1], bytes((0, len(data))) + data))


@pytest.mark.parametrize("frame", FRAMES, ids=[v["id"] for v in VECTORS])
def test_truncations_raise_frame_error(frame: bytes) -> None:
    truncations_raise(jbd, frame)
