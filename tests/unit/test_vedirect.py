"""VE.Direct text codec against real BMV-702 and SmartShunt blocks, plus framing on a byte stream,
alarm reasons, round trips through the simulator's encoder and fuzzing."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bankwatch.drivers import vedirect
from bankwatch.drivers.errors import ChecksumError, FrameError, MalformedFrameError
from bankwatch.drivers.links.serial import FrameSplitter
from bankwatch.drivers.model import Alarm, Reading, merge_readings
from tests.codec_checks import check_contract, mutate, only_frame_errors, truncations_raise
from tests.helpers import load_vectors

VECTORS = load_vectors("extra/vedirect")
FRAMES = [bytes.fromhex(v["frame_hex"]) for v in VECTORS]


def _extra(r: Reading, key: str) -> Any:
    return dict(r.extra).get(key)


def _minutes(seconds: int | None) -> int | None:
    return None if seconds is None else seconds // 60


# Vector key -> what the reading must hold. Every key of every vector must be here.
CHECKS: dict[str, Any] = {
    "voltage_V": lambda r: r.pack_voltage_v,
    "current_A": lambda r: r.current_a,
    "power_W": lambda r: round(r.power_w),
    "consumed_Ah": lambda r: _extra(r, "consumed_ah"),
    "soc_pct": lambda r: r.soc_pct,
    "time_to_go_min": lambda r: _minutes(_extra(r, "time_to_go_s")),
    "alarm": lambda r: _extra(r, "alarm_condition"),
    "relay": lambda r: _extra(r, "relay_on"),
    "alarm_reason": lambda r: _extra(r, "alarm_bits"),
    "model": lambda r: r.model,
    "firmware": lambda r: r.firmware,
    "product_id": lambda r: _extra(r, "product_id"),
    "starter_voltage_V": lambda r: _extra(r, "starter_voltage_v"),
    "deepest_discharge_Ah": lambda r: _extra(r, "deepest_discharge_ah"),
    "last_discharge_Ah": lambda r: _extra(r, "last_discharge_ah"),
    "cycles": lambda r: r.cycles,
    "cumulative_Ah_drawn": lambda r: _extra(r, "cumulative_drawn_ah"),
    "min_voltage_V": lambda r: _extra(r, "lowest_voltage_v"),
    "max_voltage_V": lambda r: _extra(r, "highest_voltage_v"),
    "min_starter_voltage_V": lambda r: _extra(r, "lowest_starter_voltage_v"),
    "max_starter_voltage_V": lambda r: _extra(r, "highest_starter_voltage_v"),
    "seconds_since_full_charge": lambda r: _extra(r, "since_full_charge_s"),
    "automatic_syncs": lambda r: _extra(r, "automatic_syncs"),
    "discharged_energy_kWh": lambda r: r.discharged_energy_kwh,
    "charged_energy_kWh": lambda r: r.charged_energy_kwh,
}


def test_contract() -> None:
    check_contract(vedirect)  # type: ignore[arg-type]
    assert vedirect.TALKS_UNASKED and vedirect.poll_requests(0) == []


@pytest.mark.parametrize("vector", VECTORS, ids=[v["id"] for v in VECTORS])
def test_vector_decodes_to_expected(vector: dict[str, Any]) -> None:
    frame = bytes.fromhex(vector["frame_hex"])
    assert vedirect.frame_length(frame) == len(frame)
    assert vedirect.frame_length(frame + b"\r\nV\t1") == len(frame)
    r = vedirect.decode(frame)
    for key, want in vector["expect"].items():
        assert key in CHECKS, f"no check for vector key {key!r}"
        got = CHECKS[key](r)
        if isinstance(want, float):
            assert got == pytest.approx(want, abs=1e-9), key
        else:
            assert got == want, key


def test_real_checksums_verify_and_a_changed_digit_does_not() -> None:
    for v, frame in zip(VECTORS, FRAMES, strict=True):
        if v["checksum_verified"]:
            assert sum(frame) % 256 == 0, v["id"]
    live = FRAMES[0]
    bad = live.replace(b"V\t12065", b"V\t12066")
    with pytest.raises(ChecksumError, match="checksum byte"):
        vedirect.decode(bad)


def test_a_stream_of_blocks_splits_on_the_checksum_byte_even_when_it_is_cr() -> None:
    """The checksum byte may be any byte, CR and LF included: framing counts one byte after
    the tab and never reads it as a line end. A stream that starts mid-block loses one block."""
    crs = []
    for c in range(0x21, 0x7F):
        for d in range(0x21, 0x7F):
            block = vedirect.encode_block([("V", "12000"), ("BMV", f"66{chr(c)}{chr(d)}")])
            if block[-1] in (0x0D, 0x0A, 0x09):
                crs.append(block)
    assert crs, "some block has a CR, LF or TAB checksum byte"
    # The half block before the first whole one joins it and fails its checksum: one block lost.
    stream = b"565\r\nI\t-7625" + FRAMES[0] + crs[0] + FRAMES[1] + crs[-1] + FRAMES[3]
    splitter = FrameSplitter([vedirect])  # type: ignore[list-item]
    got = []
    for k in range(0, len(stream), 7):  # arriving in small chunks
        splitter.feed(stream[k : k + 7])
        got += [f for f, _ in splitter.frames()]
    assert got[-4:] == [crs[0], FRAMES[1], crs[-1], FRAMES[3]]
    # Whatever came before the first whole block is garbage or a bad block, never a reading.
    for f in got[:-4]:
        with pytest.raises(FrameError):
            vedirect.decode(f)


def test_hex_protocol_lines_are_framed_and_skipped() -> None:
    hex_line = b":A0002000148\n"
    assert vedirect.frame_length(hex_line + FRAMES[0]) == len(hex_line)
    assert vedirect.decode(hex_line) == Reading()
    # Inside a text block (between two fields) the HEX line is left out of the checksum.
    live = FRAMES[4]
    cut = live.index(b"\r\nI\t")
    mixed = live[:cut] + hex_line + live[cut:]
    assert vedirect.frame_length(mixed) == len(mixed)
    assert vedirect.decode(mixed) == vedirect.decode(live)


def test_unsynchronised_monitor_sends_dashes() -> None:
    block = vedirect.encode_block(
        [("V", "13200"), ("I", "1200"), ("CE", "---"), ("SOC", "---"), ("TTG", "---")]
    )
    r = vedirect.decode(block)
    assert r.pack_voltage_v == 13.2 and r.current_a == 1.2
    assert r.soc_pct is None and _extra(r, "consumed_ah") is None


def test_alarm_reasons_map_to_flags_and_unknown_bits_are_named() -> None:
    block = vedirect.encode_block([("Alarm", "ON"), ("AR", str(1 | 4 | 128 | 8192))])
    r = vedirect.decode(block)
    assert r.alarms == Alarm.CELL_LOW_VOLTAGE | Alarm.CELL_IMBALANCE | Alarm.UNKNOWN
    assert _extra(r, "alarm_condition") is True
    assert _extra(r, "alarms_active") == "low_voltage,low_soc,mid_voltage,unknown_bit_13"
    assert _extra(r, "alarm_bits") == 1 | 4 | 128 | 8192


def test_bad_values_are_frame_errors() -> None:
    for fields in ([("V", "12.5")], [("Alarm", "MAYBE")], [("PID", "zz")], [("", "1")]):
        with pytest.raises(MalformedFrameError):
            vedirect.decode(vedirect.encode_block(fields))
    with pytest.raises(FrameError):
        vedirect.decode(b"\r\nV\t1\r\n")
    with pytest.raises(MalformedFrameError):
        vedirect.frame_length(b"V\t12065")
    with pytest.raises(FrameError):
        vedirect.frame_length(b"\r\nV\t" + b"1" * 2000)


def test_simulator_blocks_round_trip() -> None:
    truth = Reading(
        pack_voltage_v=13.312,
        current_a=-12.345,
        soc_pct=64.2,
        remaining_ah=256.8,
        full_charge_ah=400.0,
        temperatures_c=(21.0,),
        cycles=17,
        charged_energy_kwh=123.45,
        discharged_energy_kwh=110.2,
        alarms=Alarm.HIGH_TEMPERATURE,
    )
    frames = vedirect.unasked_frames(truth)
    assert len(frames) == 2
    r = Reading()
    for f in frames:
        assert vedirect.frame_length(f) == len(f)
        r = merge_readings(r, vedirect.decode(f))
    assert r.pack_voltage_v == 13.312 and r.current_a == -12.345 and r.soc_pct == 64.2
    assert _extra(r, "consumed_ah") == pytest.approx(256.8 - 400.0)
    assert _extra(r, "time_to_go_s") == 60 * round(256.8 / 12.345 * 60)
    assert r.temperatures_c == (21.0,) and r.cycles == 17
    assert r.charged_energy_kwh == 123.45 and r.discharged_energy_kwh == 110.2
    assert r.alarms == Alarm.HIGH_TEMPERATURE and _extra(r, "alarm_condition") is True
    assert vedirect.encode_reply(b"", truth) is None


@pytest.mark.parametrize("frame", FRAMES, ids=[v["id"] for v in VECTORS])
def test_truncations_raise(frame: bytes) -> None:
    truncations_raise(vedirect, frame)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_only_raise_frame_errors(data: bytes) -> None:
    only_frame_errors(vedirect, data)  # type: ignore[arg-type]
    only_frame_errors(vedirect, b"\r\n" + data)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(FRAMES),
    st.lists(st.integers(0, 10_000), min_size=1, max_size=6),
    st.lists(st.integers(0, 255), min_size=1, max_size=6),
)
def test_mutated_blocks_only_raise_frame_errors(
    frame: bytes, positions: list[int], values: list[int]
) -> None:
    only_frame_errors(vedirect, mutate(frame, positions, values))  # type: ignore[arg-type]
