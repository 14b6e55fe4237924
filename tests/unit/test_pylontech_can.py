"""Pylontech CAN codec against the real captured frames, plus round trips and fuzzing."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bankwatch.drivers.errors import FrameError
from bankwatch.drivers.model import Alarm, Protection, Reading
from bankwatch.drivers.pylontech_can import (
    FRAME_IDS,
    FrameLengthError,
    PylontechCanDriver,
    UnknownCommandError,
    decode_frame,
    encode_reading,
)
from tests.helpers import load_vectors

VECTORS = load_vectors("pylontech_can")
EXTRA = load_vectors("extra/can_dialects")
ALL = VECTORS + EXTRA
WITH_EXPECT = [v for v in ALL if v["expect"]]

# The ids whose ASCII payload lands in which field.
_ASCII_FIELD = {
    0x35E: "manufacturer",
    0x370: "model",
    0x371: "model",
    0x382: "model",
    0x374: "cell_voltage_min_id",
    0x375: "cell_voltage_max_id",
    0x376: "cell_temperature_min_id",
    0x377: "cell_temperature_max_id",
}


def _group(vector: dict[str, Any]) -> str:
    return str(vector["id"]).rsplit("_0x", 1)[0]


def _context(vector: dict[str, Any]) -> list[dict[str, Any]]:
    """Frames of the same capture the driver must have seen first: 0x351 (its limits decide
    the 0x356 voltage scale) and, for the name's second half, 0x370."""
    want = {"0x351"} | ({"0x370"} if vector["can_id"] == "0x371" else set())
    return [
        v
        for v in ALL
        if _group(v) == _group(vector) and v["can_id"] in want and v["id"] != vector["id"]
    ]


def _pairs_active(data: bytes) -> bool:
    """The SMA/Victron rule, spelled out independently of the codec's tables: a condition is
    active when its two-bit pair reads 01."""
    return any((b >> shift) & 0b11 == 0b01 for b in data[:4] for shift in (0, 2, 4, 6)) or any(
        (b >> shift) & 0b11 == 0b01 for b in data[4:] for shift in (0, 2, 4, 6)
    )


def _check(driver: PylontechCanDriver, can_id: int, data: bytes, key: str, want: Any) -> None:
    """One expected value of a vector against what bankwatch decoded."""
    reading = driver.reading
    alone = decode_frame(can_id, data)
    extra = dict(reading.extra)
    simple = {
        "charge_voltage_limit_V": reading.charge_voltage_limit_v,
        "charge_current_limit_A": reading.charge_current_limit_a,
        "discharge_current_limit_A": reading.discharge_current_limit_a,
        "discharge_voltage_limit_V_bytes6_7": reading.discharge_voltage_limit_v,
        "soc_pct": None if reading.soc_pct is None else round(reading.soc_pct),
        "soc_hires_pct_bytes4_5": reading.soc_pct,
        "soh_pct": reading.soh_pct,
        "voltage_V_0.01": reading.pack_voltage_v,
        "voltage_V_0.1": reading.pack_voltage_v,
        "current_A": reading.current_a,
        "temperature_C": reading.temperatures_c[0] if reading.temperatures_c else None,
        "module_count": reading.modules_online,
        "modules_online": reading.modules_online,
        "block_charge": reading.modules_blocking_charge,
        "block_discharge": reading.modules_blocking_discharge,
        "modules_offline": reading.modules_offline,
        "charge_enable": reading.charge_enabled,
        "discharge_enable": reading.discharge_enabled,
        "force_charge_I_bit5": extra.get("force_charge_request_1"),
        "force_charge_II_bit4": extra.get("force_charge_request_2"),
        "full_charge_request_bit3": extra.get("full_charge_request"),
        "min_cell_mV": None
        if reading.cell_voltage_min_v is None
        else round(reading.cell_voltage_min_v * 1000),
        "max_cell_mV": None
        if reading.cell_voltage_max_v is None
        else round(reading.cell_voltage_max_v * 1000),
        "min_cell_temp_K": reading.cell_temperature_min_c,
        "max_cell_temp_K": reading.cell_temperature_max_c,
        "charged_energy_kWh": reading.charged_energy_kwh,
        "discharged_energy_kWh": reading.discharged_energy_kwh,
        "installed_capacity_Ah": reading.design_ah,
        "nominal_capacity_Ah": reading.design_ah,
        "remaining_capacity_Ah": reading.remaining_ah,
        "firmware": reading.firmware,
        "product_code": extra.get("product_code"),
        "capacity_35f_Ah": extra.get("capacity_35f_ah"),
        "model_after_0x370": reading.model,
    }
    if key in simple:
        got = simple[key]
        assert got is not None, f"{key} not decoded"
        if key.endswith("_temp_K"):
            assert got == pytest.approx(want - 273.15, abs=1e-6), key
        elif isinstance(want, float):
            assert got == pytest.approx(want, abs=1e-6), key
        else:
            assert got == want, key
    elif key == "ascii":
        field = _ASCII_FIELD[can_id]
        assert getattr(alone, field) == want.strip(), key
    elif key in ("protection_byte0", "protection_byte1"):
        assert int(want, 16) == 0 and reading.protections == Protection.NONE, key
    elif key in ("alarm_byte2", "alarm_byte3"):
        assert int(want, 16) == 0 and reading.alarms == Alarm.NONE, key
    elif key == "no_alarms":
        assert want is True
        assert reading.alarms == Alarm.NONE and reading.protections == Protection.NONE
    elif key == "flags":
        flags = (0x80 if reading.charge_enabled else 0) | (0x40 if reading.discharge_enabled else 0)
        flags |= 0x20 if extra.get("force_charge_request_1") else 0
        flags |= 0x10 if extra.get("force_charge_request_2") else 0
        flags |= 0x08 if extra.get("full_charge_request") else 0
        assert flags == int(want, 16)
    elif key == "raw":
        assert data.hex() == want.lower()
        if can_id == 0x35A:
            flagged = reading.protections != Protection.NONE or reading.alarms != Alarm.NONE
            assert flagged == _pairs_active(data)
    elif key == "tag":
        assert data[5:7] == want.encode("ascii")  # the "PN"/"PY" marker carries no value
    elif key == "warning":
        assert any(w.startswith(want) for w in driver.warnings), driver.warnings
    else:
        pytest.fail(f"vector key {key!r} has no check: extend _check")


@pytest.mark.parametrize("vector", WITH_EXPECT, ids=[v["id"] for v in WITH_EXPECT])
def test_vector_decodes_to_expected(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["data_hex"])
    assert len(data) == vector["dlc"]
    can_id = int(vector["can_id"], 16)
    driver = PylontechCanDriver("bank")
    for before in _context(vector):
        driver.on_frame(int(before["can_id"], 16), bytes.fromhex(before["data_hex"]), False, 0)
    assert driver.on_frame(can_id, data, False, 1.0) is True
    for key, want in vector["expect"].items():
        _check(driver, can_id, data, key, want)
    if "warning" not in vector["expect"]:
        assert driver.warnings == [], "a healthy capture raised warnings"


def test_every_profile_id_has_a_vector() -> None:
    covered = {int(v["can_id"], 16) for v in WITH_EXPECT}
    assert covered == set(FRAME_IDS)


@pytest.mark.parametrize(
    ("can_id", "extended"), [(0x305, False), (0x307, False), (0x35B, False), (0x351, True)]
)
def test_ids_outside_the_profile_are_unknown_not_misread(can_id: int, extended: bool) -> None:
    with pytest.raises(UnknownCommandError):
        decode_frame(can_id, bytes(8), extended=extended)


def test_dialects_each_merge_into_one_reading() -> None:
    """Every dialect's capture, fed in order, gives one reading with no contradiction but the
    ones its vectors expect."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for v in ALL:
        groups.setdefault(_group(v), []).append(v)
    assert {
        "pylon_us5000_oldfw",
        "pylon_us5000_newfw",
        "shenergy_victron",
        "byd_lvs",
        "discover_aes",
        "pytes_pylon",
        "armin_emulator",
    } <= set(groups)
    for name, frames in groups.items():
        driver = PylontechCanDriver(name)
        for v in frames:
            driver.on_frame(int(v["can_id"], 16), bytes.fromhex(v["data_hex"]), False, 1.0)
        expected = {v["expect"]["warning"] for v in frames if "warning" in v["expect"]}
        got = {w.split(":", 1)[0] for w in driver.warnings}
        assert got == expected, (name, driver.warnings)


def test_a_whole_broadcast_merges_into_one_reading() -> None:
    driver = PylontechCanDriver("bank")
    for v in VECTORS:
        if v["id"].startswith("pylon_us5000_oldfw_"):
            driver.on_frame(int(v["can_id"], 16), bytes.fromhex(v["data_hex"]), False, 12.5)
    r = driver.reading
    assert (r.subject, r.at) == ("bank", 12.5)
    assert r.pack_voltage_v == pytest.approx(49.86)
    assert r.current_a == pytest.approx(-27.0)
    assert r.soc_pct == 88 and r.soh_pct == 94
    assert r.charge_voltage_limit_v == pytest.approx(53.2)
    assert r.charge_enabled is True and r.discharge_enabled is True
    assert r.manufacturer == "PYLON" and r.modules_online == 6
    assert r.power_w == pytest.approx(49.86 * -27.0)


def test_driver_ignores_foreign_frames_and_counts_them() -> None:
    driver = PylontechCanDriver("b1")
    assert driver.on_frame(0x305, bytes(8), False, 1.0) is False  # the inverter's keep-alive
    assert driver.on_frame(0x18900140, bytes(8), True, 1.0) is False
    assert driver.ignored == 2 and driver.frames == 0


@pytest.mark.parametrize(
    ("byte", "bit", "flag"),
    [
        (0, 1, Protection.CELL_OVERVOLTAGE),
        (0, 2, Protection.CELL_UNDERVOLTAGE),
        (0, 3, Protection.OVER_TEMPERATURE),
        (0, 4, Protection.UNDER_TEMPERATURE),
        (0, 7, Protection.DISCHARGE_OVERCURRENT),
        (1, 0, Protection.CHARGE_OVERCURRENT),
        (1, 3, Protection.SYSTEM_ERROR),
    ],
)
def test_protection_bits_follow_the_pylon_table(byte: int, bit: int, flag: Protection) -> None:
    data = bytearray(b"\x00\x00\x00\x00\x01PN")
    data[byte] = 1 << bit
    assert decode_frame(0x359, bytes(data)).protections == flag


@pytest.mark.parametrize(
    ("byte", "bit", "flag"),
    [
        (2, 1, Alarm.CELL_HIGH_VOLTAGE),
        (2, 2, Alarm.CELL_LOW_VOLTAGE),
        (2, 3, Alarm.HIGH_TEMPERATURE),
        (2, 4, Alarm.LOW_TEMPERATURE),
        (2, 7, Alarm.DISCHARGE_HIGH_CURRENT),
        (3, 0, Alarm.CHARGE_HIGH_CURRENT),
        (3, 3, Alarm.INTERNAL_COMMUNICATION),
    ],
)
def test_alarm_bits_follow_the_pylon_table(byte: int, bit: int, flag: Alarm) -> None:
    data = bytearray(b"\x00\x00\x00\x00\x01PN")
    data[byte] = 1 << bit
    assert decode_frame(0x359, bytes(data)).alarms == flag


def test_unused_bits_are_surfaced_as_unknown_with_their_numbers() -> None:
    """A bit the Pylon table does not name may be a firmware's new protection: it is reported
    as unknown, with its number, never dropped (issue 15)."""
    data = bytes((0x61, 0x76, 0x61, 0x76, 1)) + b"PN"  # bits 0, 5, 6 of byte 0; 1, 2, 4-6 of 1
    r = decode_frame(0x359, data)
    assert r.protections == Protection.UNKNOWN and r.alarms == Alarm.UNKNOWN
    extra = dict(r.extra)
    assert extra["protections_active"] == (
        "unknown_bit_0,unknown_bit_5,unknown_bit_6,"
        "unknown_bit_9,unknown_bit_10,unknown_bit_12,unknown_bit_13,unknown_bit_14"
    )
    assert extra["alarms_active"].startswith("unknown_bit_16,unknown_bit_21")
    # Named bits beside them keep their names.
    r = decode_frame(0x359, bytes((0x02 | 0x20, 0, 0, 0, 1)) + b"PN")
    assert r.protections == Protection.CELL_OVERVOLTAGE | Protection.UNKNOWN
    # 0x35A: a pair no row names reading 01.
    r = decode_frame(0x35A, bytes((0, 0, 0, 0b0100_0000, 0, 0, 0, 0)))
    assert r.protections == Protection.UNKNOWN


def test_high_resolution_soc_is_used_only_when_it_agrees() -> None:
    assert decode_frame(0x355, bytes.fromhex("3C00640084170000")).soc_pct == pytest.approx(60.2)
    # new Pylontech firmware: 6 bytes with zero where the hi-res SOC would be
    assert decode_frame(0x355, bytes.fromhex("540060000000")).soc_pct == 84
    # disagreeing hi-res value: keep the whole percent
    assert decode_frame(0x355, bytes.fromhex("3C0064001027")).soc_pct == 60


def test_short_frames_say_what_is_wrong() -> None:
    with pytest.raises(FrameLengthError, match=r"0x356.*2 data bytes, needs at least 6"):
        decode_frame(0x356, b"\x01\x02")
    with pytest.raises(FrameLengthError, match="a frame holds 8"):
        decode_frame(0x351, bytes(9))


def test_round_trip_of_a_reading() -> None:
    r = Reading(
        pack_voltage_v=52.31,
        current_a=-41.7,
        temperatures_c=(27.4,),
        soc_pct=63,
        soh_pct=98,
        charge_voltage_limit_v=56.8,
        discharge_voltage_limit_v=44.8,
        charge_current_limit_a=100.0,
        discharge_current_limit_a=150.0,
        charge_enabled=True,
        discharge_enabled=False,
        protections=Protection.CELL_UNDERVOLTAGE,
        alarms=Alarm.CELL_LOW_VOLTAGE | Alarm.LOW_TEMPERATURE,
        modules_online=4,
        manufacturer="PYLON",
    )
    driver = PylontechCanDriver("x")
    for can_id, data in encode_reading(r):
        driver.on_frame(can_id, data, False, 0.0)
    back = driver.reading
    for name in (
        "pack_voltage_v",
        "current_a",
        "temperatures_c",
        "soc_pct",
        "soh_pct",
        "charge_voltage_limit_v",
        "discharge_voltage_limit_v",
        "charge_current_limit_a",
        "discharge_current_limit_a",
        "charge_enabled",
        "discharge_enabled",
        "protections",
        "alarms",
        "modules_online",
        "manufacturer",
    ):
        assert getattr(back, name) == getattr(r, name), name


@given(
    can_id=st.sampled_from((*FRAME_IDS, 0x305, 0x35A, 0x7FF)),
    data=st.binary(max_size=12),
)
def test_random_bytes_only_raise_frame_error(can_id: int, data: bytes) -> None:
    try:
        reading = decode_frame(can_id, data)
    except FrameError:
        return
    assert isinstance(reading, Reading)


# --- what contradicts itself is flagged, not raised ----------------------------------------------


def _feed(driver: PylontechCanDriver, *frames: str) -> None:
    for text in frames:
        ident, data = text.split("#")
        driver.on_frame(int(ident, 16), bytes.fromhex(data), False, 1.0)


def test_disagreeing_high_resolution_soc_is_flagged_and_clears() -> None:
    d = PylontechCanDriver("b")
    _feed(d, "355#3C0064001027")  # 60 % vs 100.00 %
    assert d.reading.soc_pct == 60
    assert len(d.warnings) == 1 and "100 %" in d.warnings[0] and "60 %" in d.warnings[0]
    _feed(d, "355#3C00640084170000")
    assert d.warnings == [] and d.reading.soc_pct == pytest.approx(60.2)


def test_voltage_scale_follows_the_limits_either_way_round() -> None:
    # 0x356 first (read at 0.01 V), then 0x351 arrives and the scale is fixed.
    d = PylontechCanDriver("b")
    _feed(d, "356#0A0211FFBE000000")
    assert d.reading.pack_voltage_v == pytest.approx(5.22)
    _feed(d, "351#2E02040B040BB001")
    assert d.reading.pack_voltage_v == pytest.approx(52.2) and d.voltage_scale_v == 0.1
    _feed(d, "356#0B0211FFBE000000")
    assert d.reading.pack_voltage_v == pytest.approx(52.3)
    # A Pylontech frame on a Pylontech bank stays at 0.01 V.
    p = PylontechCanDriver("p")
    _feed(p, "351#1402C012C012C201", "356#7A13F2FE6B01")
    assert p.reading.pack_voltage_v == pytest.approx(49.86) and p.warnings == []


def test_voltage_fitting_neither_scale_is_flagged() -> None:
    d = PylontechCanDriver("b")
    _feed(d, "351#1402C012C012C201", "356#E803F2FE6B01")  # 10.00 V or 100.0 V vs 45-53.2 V
    assert d.reading.pack_voltage_v == pytest.approx(10.0)  # what the frame says at 0.01 V
    assert len(d.warnings) == 1 and "neither scale" in d.warnings[0]


def test_protection_while_charge_and_discharge_are_enabled_is_flagged() -> None:
    d = PylontechCanDriver("b")
    _feed(d, "359#0400000001504E", "35C#C000")  # cell under-voltage protection
    assert d.reading.protections == Protection.CELL_UNDERVOLTAGE
    assert any("cell_undervoltage" in w and "0x35C" in w for w in d.warnings)
    _feed(d, "35C#8000")  # the BMS stops discharge: consistent again
    assert d.warnings == []


def test_discharge_limit_above_charge_limit_is_flagged() -> None:
    d = PylontechCanDriver("b")
    _feed(d, "351#C201C012C0121402")  # CVL 45.0, DVL 53.2
    assert any("0x351" in w for w in d.warnings)


def test_old_and_new_alarm_frames_on_one_bus_both_count() -> None:
    d = PylontechCanDriver("b")
    _feed(d, "359#0200000001504E", "35A#AAAAAAAAAAAAAAAA")
    assert d.reading.protections == Protection.CELL_OVERVOLTAGE  # 0x35A all clear does not hide it
    _feed(d, "35A#A9AAAAAAAAAAAAAA")  # general alarm in 0x35A
    assert d.reading.protections == Protection.CELL_OVERVOLTAGE | Protection.SYSTEM_ERROR


@pytest.mark.parametrize(
    ("byte", "pair", "flag"),
    [
        (0, 0, Protection.SYSTEM_ERROR),
        (0, 1, Protection.CELL_OVERVOLTAGE),
        (0, 2, Protection.CELL_UNDERVOLTAGE),
        (0, 3, Protection.OVER_TEMPERATURE),
        (1, 0, Protection.UNDER_TEMPERATURE),
        (1, 3, Protection.DISCHARGE_OVERCURRENT),
        (2, 0, Protection.CHARGE_OVERCURRENT),
        (2, 2, Protection.SHORT_CIRCUIT),
        (4, 1, Alarm.CELL_HIGH_VOLTAGE),
        (4, 2, Alarm.CELL_LOW_VOLTAGE),
        (5, 3, Alarm.DISCHARGE_HIGH_CURRENT),
        (6, 0, Alarm.CHARGE_HIGH_CURRENT),
        (7, 0, Alarm.CELL_IMBALANCE),
        (3, 0, Alarm.CELL_IMBALANCE),
    ],
)
@pytest.mark.parametrize("clear", [0x00, 0xAA], ids=["pylontech-zero", "sma-aa"])
def test_35a_pairs_read_01_as_active_whatever_clear_looks_like(
    byte: int, pair: int, flag: Protection | Alarm, clear: int
) -> None:
    data = bytearray([clear] * 8)
    data[byte] = (data[byte] & ~(0b11 << 2 * pair)) | (0b01 << 2 * pair)
    r = decode_frame(0x35A, bytes(data))
    got = r.protections if isinstance(flag, Protection) else r.alarms
    other = r.alarms if isinstance(flag, Protection) else r.protections
    assert got == flag
    assert not other
    # `11` (not supported) and `10` (clear) never count.
    data[byte] |= 0b11 << 2 * pair
    assert decode_frame(0x35A, bytes(data)).protections == Protection.NONE


def test_round_trip_of_the_extended_frames() -> None:
    r = Reading(
        modules_online=4,
        modules_blocking_charge=1,
        modules_blocking_discharge=0,
        modules_offline=0,
        cell_voltage_min_v=3.301,
        cell_voltage_max_v=3.342,
        cell_temperature_min_c=21.85,
        cell_temperature_max_c=24.85,
        cell_voltage_min_id="M2C07",
        cell_voltage_max_id="M1C15",
        cell_temperature_min_id="M4",
        cell_temperature_max_id="M1",
        charged_energy_kwh=1234.5,
        discharged_energy_kwh=1100.1,
        design_ah=400.0,
        model="CAN-SMARTBMS-BAT",
        protections=Protection.SHORT_CIRCUIT,
        alarms=Alarm.HIGH_TEMPERATURE | Alarm.CELL_IMBALANCE,
    )
    d = PylontechCanDriver("x")
    ids = (0x35A, 0x370, 0x371, 0x372, 0x373, 0x374, 0x375, 0x376, 0x377, 0x378, 0x379)
    for can_id, data in encode_reading(r, ids):
        d.on_frame(can_id, data, False, 0.0)
    back = d.reading
    for name in (
        "modules_online",
        "modules_blocking_charge",
        "modules_blocking_discharge",
        "modules_offline",
        "cell_voltage_min_v",
        "cell_voltage_max_v",
        "cell_temperature_min_c",
        "cell_temperature_max_c",
        "cell_voltage_min_id",
        "cell_voltage_max_id",
        "cell_temperature_min_id",
        "cell_temperature_max_id",
        "charged_energy_kwh",
        "discharged_energy_kwh",
        "design_ah",
        "model",
        "protections",
        "alarms",
    ):
        assert getattr(back, name) == getattr(r, name), name


@given(
    frames=st.lists(
        st.tuples(st.sampled_from((*FRAME_IDS, 0x305, 0x7FF)), st.binary(max_size=10)),
        max_size=12,
    )
)
def test_the_driver_on_random_frames_only_raises_frame_error(
    frames: list[tuple[int, bytes]],
) -> None:
    d = PylontechCanDriver("fuzz")
    for can_id, data in frames:
        try:
            d.on_frame(can_id, data, False, 0.0)
        except FrameError:
            continue
    assert isinstance(d.reading, Reading)
    assert all(isinstance(w, str) for w in d.warnings)
