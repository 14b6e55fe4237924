"""modbus-map: maps from config decode like a dedicated codec, coalesce reads, survive garbage,
and bad maps are refused with a message that names the problem."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bankwatch.daemon.config import parse_config
from bankwatch.drivers import modbus_rtu, seplos_v3
from bankwatch.drivers.errors import ConfigError, FrameError
from bankwatch.drivers.modbus_map import RegisterMapCodec
from bankwatch.drivers.modbus_map_schema import (
    SHIPPED_MAPS,
    compile_map,
    load_map_file,
    parse_map,
    resolve_map,
)
from bankwatch.drivers.model import Alarm, Protection, Reading, merge_readings
from tests.helpers import REPO, load_vectors

VECTORS = {v["id"]: bytes.fromhex(v["frame_hex"]) for v in load_vectors("seplos_v3_modbus")}
SEPLOS_MAP = RegisterMapCodec(resolve_map("seplos-v3-pack"))
JK_MAP = RegisterMapCodec(resolve_map("jk-pb"))


def test_shipped_maps_live_in_configs() -> None:
    assert SHIPPED_MAPS == REPO / "drivers" / "maps"
    assert {p.stem for p in SHIPPED_MAPS.glob("*.toml")} >= {"seplos-v3-pack", "jk-pb"}
    for path in SHIPPED_MAPS.glob("*.toml"):
        compile_map(load_map_file(path), path.stem)


# --- the strong test: a battery configured only by a map decodes like the codec ---------------


@pytest.mark.parametrize(
    ("reply", "request_"),
    [
        ("seplos3_SG16S200A_PIA", "seplos3_req_PIA"),
        ("seplos3_SG16S200A_PIB", "seplos3_req_PIB"),
    ],
)
def test_seplos_map_decodes_the_captures_exactly_like_the_codec(reply: str, request_: str) -> None:
    by_map = SEPLOS_MAP.decode(VECTORS[reply], VECTORS[request_])
    by_codec = seplos_v3.decode(VECTORS[reply], VECTORS[request_])
    assert by_map == by_codec
    assert by_map != Reading()


def test_seplos_map_asks_what_the_codec_asks() -> None:
    assert SEPLOS_MAP.poll_requests(1) == seplos_v3.poll_requests(1)


@pytest.mark.parametrize(
    "reading",
    [
        Reading(charge_enabled=True, discharge_enabled=True, alarms=Alarm.NONE),
        Reading(
            charge_enabled=False,
            discharge_enabled=True,
            alarms=Alarm.CELL_HIGH_VOLTAGE | Alarm.LOW_TEMPERATURE,
            extra=(("balancing", True), ("hard_fault", True)),
        ),
    ],
)
def test_seplos_map_decodes_pic_coils_like_the_codec(reading: Reading) -> None:
    request = seplos_v3.poll_requests(1)[2]
    reply = seplos_v3.encode_reply(request, reading)
    assert reply is not None
    assert SEPLOS_MAP.decode(reply, request) == seplos_v3.decode(reply, request)
    # And the map's simulator side writes the same coils the codec's does.
    assert SEPLOS_MAP.encode_reply(request, reading) == reply


def test_seplos_map_simulator_side_answers_what_the_codec_decodes() -> None:
    pack = Reading(
        pack_voltage_v=51.37,
        current_a=22.5,
        soc_pct=42.1,
        soh_pct=98.0,
        cycles=7,
        cell_voltages_v=tuple(3.2 + i / 1000 for i in range(16)),
        temperatures_c=(12.3, 12.4, 12.5, 12.6),
        mosfet_temperature_c=25.0,
    )
    merged = Reading()
    for request in SEPLOS_MAP.poll_requests(2):
        reply = SEPLOS_MAP.encode_reply(request, pack)
        assert reply is not None
        merged = merge_readings(merged, seplos_v3.decode(reply, request))
    assert merged.pack_voltage_v == pytest.approx(51.37)
    assert merged.current_a == pytest.approx(22.5)
    assert merged.cell_voltages_v == pytest.approx(pack.cell_voltages_v)
    assert merged.temperatures_c == pytest.approx(pack.temperatures_c)


# --- JK-PB: byte addressing, 32-bit values, packed bytes, alarm bits ---------------------------


JK_PACK = Reading(
    pack_voltage_v=53.456,
    current_a=-25.5,
    soc_pct=77.0,
    soh_pct=96.0,
    remaining_ah=215.5,
    full_charge_ah=280.0,
    cycles=321,
    cell_voltages_v=tuple(3.34 + i / 1000 for i in range(16)),
    temperatures_c=(21.5, -3.2),
    mosfet_temperature_c=35.1,
    charge_enabled=False,
    discharge_enabled=True,
    protections=Protection.CELL_UNDERVOLTAGE | Protection.SHORT_CIRCUIT,
    alarms=Alarm.HIGH_TEMPERATURE,
)


def test_jk_pb_map_reads_the_status_block_in_one_request() -> None:
    (request,) = JK_MAP.poll_requests(1)
    assert modbus_rtu.parse_request(request) == modbus_rtu.ReadRequest(1, 3, 0x1200, 97)


def test_jk_pb_map_round_trip() -> None:
    (request,) = JK_MAP.poll_requests(1)
    reply = JK_MAP.encode_reply(request, JK_PACK)
    assert reply is not None
    got = JK_MAP.decode(reply, request)
    for name in (
        "pack_voltage_v",
        "current_a",
        "soc_pct",
        "soh_pct",
        "remaining_ah",
        "full_charge_ah",
        "cells",
    ):
        if name == "cells":
            assert got.cell_voltages_v == pytest.approx(JK_PACK.cell_voltages_v)
        else:
            assert getattr(got, name) == pytest.approx(getattr(JK_PACK, name)), name
    assert got.cycles == 321
    assert got.temperatures_c == pytest.approx((21.5, -3.2))
    assert got.charge_enabled is False and got.discharge_enabled is True
    assert got.protections == JK_PACK.protections
    assert got.alarms == Alarm.HIGH_TEMPERATURE


def test_jk_pb_documented_single_read_decodes_when_heard() -> None:
    """PROTOCOLS.md 3.1: `01 03 12 90 00 02` reads the pack voltage. Heard listen-only, the
    map decodes what that read covers and nothing else."""
    request = bytes.fromhex("010312900002C15E")
    # Low word first: 53456 mV = 0x0000D0D0 → words D0D0, 0000.
    reply = modbus_rtu.encode_read_reply(1, 3, [0xD0D0, 0x0000])
    got = JK_MAP.decode(reply, request)
    assert got == Reading(pack_voltage_v=53.456)


def test_part_of_a_list_is_not_reported_as_the_list() -> None:
    # Cells 1-10 only (PROTOCOLS.md's example read): the 32-cell entry is not inside it.
    request = modbus_rtu.encode_read_request(1, 3, 0x1200, 10)
    reply = modbus_rtu.encode_read_reply(1, 3, [3300] * 10)
    with pytest.raises(FrameError, match="no entry"):
        JK_MAP.decode(reply, request)


# --- the schema ---------------------------------------------------------------------------------


def _map(**entry: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"function": 3, "address": 0x10}
    base.update(entry)
    return {"entries": [base]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_map(field="pack_voltage"), "unknown field 'pack_voltage'"),
        (_map(field="soc_pct", extra="x"), "exactly one of field, extra or bits"),
        (_map(type="f32", bits=[{"bit": 0, "alarm": "high_temperature"}]), "integer type"),
        (_map(type="u8", field="soc_pct"), 'addressing = "byte"'),
        (_map(bits=[{"bit": 0, "alarm": "too_hot"}]), "unknown alarm 'too_hot'"),
        (_map(bits=[{"bit": 0, "mask": 3, "alarm": "high_temperature"}]), "one of bit or mask"),
        (_map(field="charge_enabled"), "is a switch"),
        (_map(field="soc_pct", count=4), "count > 1 needs a list field"),
        (_map(field="soc_pct", scale=0), "scale must not be 0"),
        (_map(function=1, field="soc_pct"), 'type "bits"'),
        (_map(field="soc_pct", colour="red"), "entries[0].colour: unknown key"),
        ({"entries": []}, "entries"),
    ],
)
def test_bad_maps_are_refused_with_a_clear_message(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_map(data, "test-map.toml")
    assert message in str(err.value)
    assert "test-map.toml" in str(err.value)


def test_two_homes_for_one_value_are_refused() -> None:
    cfg = parse_map(
        {"entries": [{"address": 1, "field": "soc_pct"}, {"address": 2, "field": "soc_pct"}]}, "m"
    )
    with pytest.raises(ConfigError, match="both fill 'soc_pct'"):
        compile_map(cfg, "m")


def test_a_list_split_over_two_reads_is_refused() -> None:
    cfg = parse_map(
        {
            "entries": [
                {"address": 0, "count": 2, "field": "temperatures_c"},
                {"address": 100, "count": 2, "field": "temperatures_c"},
            ]
        },
        "m",
    )
    with pytest.raises(ConfigError, match="two reads"):
        compile_map(cfg, "m")
    joined = parse_map(
        {
            "max_gap": 98,
            "entries": [
                {"address": 0, "count": 2, "field": "temperatures_c"},
                {"address": 100, "count": 2, "field": "temperatures_c"},
            ],
        },
        "m",
    )
    assert len(compile_map(joined, "m").blocks) == 1


def test_adjacent_entries_coalesce_and_gaps_split() -> None:
    cfg = parse_map(
        {
            "entries": [
                {"address": 0, "field": "pack_voltage_v"},
                {"address": 1, "type": "s16", "field": "current_a"},
                {"address": 2, "type": "u32", "field": "remaining_ah"},
                {"address": 10, "field": "soc_pct"},
                {"address": 11, "function": 4, "field": "soh_pct"},
            ]
        },
        "m",
    )
    blocks = compile_map(cfg, "m").blocks
    assert [(b.function, b.address, b.count) for b in blocks] == [(3, 0, 4), (3, 10, 1), (4, 11, 1)]


def test_word_and_byte_order_and_f32() -> None:
    cfg = parse_map(
        {
            "entries": [
                {"address": 0, "type": "u32", "word_order": "little", "field": "remaining_ah"},
                {"address": 2, "type": "s16", "byte_order": "little", "field": "current_a"},
                {"address": 3, "type": "f32", "field": "pack_voltage_v"},
                {"address": 5, "type": "str", "count": 6, "field": "model"},
            ]
        },
        "m",
    )
    codec = RegisterMapCodec(compile_map(cfg, "m"))
    (request,) = codec.poll_requests(9)
    # 70000 = 0x00011170 → low word first; -2 = 0xFFFE byte-swapped; 52.5 = 0x42520000.
    regs = [0x1170, 0x0001, 0xFEFF, 0x4252, 0x0000, 0x5350, 0x3035, 0x4200]
    reply = modbus_rtu.encode_read_reply(9, 3, regs)
    got = codec.decode(reply, request)
    assert got.remaining_ah == 70000
    assert got.current_a == -2
    assert got.pack_voltage_v == 52.5
    assert got.model == "SP05B"
    assert codec.encode_reply(request, got) == reply


def test_resolve_inline_path_and_unknown(tmp_path: Path) -> None:
    inline = {"mine": parse_map(_map(field="soc_pct"), "inline")}
    assert resolve_map("mine", inline=inline).entries[0].field == "soc_pct"
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "x.toml").write_text('[[entries]]\naddress = 5\nfield = "cycles"\n')
    assert resolve_map("maps/x.toml", config_dir=tmp_path).entries[0].address == 5
    with pytest.raises(ConfigError, match="seplos-v3-pack"):
        resolve_map("nope", config_dir=tmp_path)
    (tmp_path / "bad.toml").write_text("entries = 3\n")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        resolve_map("bad.toml", config_dir=tmp_path)


def test_bank_config_carries_inline_maps_and_battery_map_names() -> None:
    text = (
        '[bank]\nname = "b"\nchemistry = "lifepo4"\nnominal_voltage_v = 48\n'
        '[models.p]\ncapacity_ah = 100\nnominal_voltage_v = 48\nchemistry = "lifepo4"\n'
        '[links.bus]\ntype = "can"\n'
        '[[strings]]\nname = "s"\nbatteries = [{ name = "a", model = "p", '
        'source = { link = "bus", protocol = "pylontech-can", map = "mine" } }]\n'
        "[modbus_maps.mine]\nbaud = 19200\n[[modbus_maps.mine.entries]]\n"
        'function = 4\naddress = 0x1000\nscale = 0.01\nfield = "pack_voltage_v"\n'
    )
    config = parse_config(text)
    source = config.strings[0].batteries[0].source
    assert source is not None and source.map == "mine"
    register_map = resolve_map(source.map, inline=config.modbus_maps)
    assert register_map.baud == 19200 and register_map.entries[0].address == 0x1000
    with pytest.raises(ConfigError, match=r"modbus_maps\.mine\.entries\[0\]\.fild: unknown key"):
        parse_config(text.replace('field = "pack', 'fild = "pack'))


# --- garbage ------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=260),
    st.sampled_from([None, *SEPLOS_MAP.poll_requests(1), *JK_MAP.poll_requests(1)]),
)
def test_random_frames_only_raise_frame_error(data: bytes, request: bytes | None) -> None:
    for codec in (SEPLOS_MAP, JK_MAP):
        with contextlib.suppress(FrameError):
            codec.decode(data, request)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 300), st.integers(0, 255), st.booleans())
def test_mutated_and_truncated_replies_only_raise_frame_error(
    pos: int, value: int, truncate: bool
) -> None:
    (request,) = JK_MAP.poll_requests(1)
    reply = JK_MAP.encode_reply(request, JK_PACK)
    assert reply is not None
    frame = bytearray(reply)
    if truncate:
        frame = frame[: pos % len(frame)]
    else:
        frame[pos % len(frame)] = value
    with contextlib.suppress(FrameError):
        JK_MAP.decode(bytes(frame), request)


def test_a_map_file_is_found_beside_the_config_wherever_the_daemon_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`map = "maps/pack.toml"` means beside the config file, not beside the shell."""
    from bankwatch.daemon.config import load_config
    from bankwatch.drivers.registry import serial_codec_for
    from tests.helpers import REPO

    (tmp_path / "site" / "maps").mkdir(parents=True)
    shipped = REPO / "drivers" / "maps" / "seplos-v3-pack.toml"
    (tmp_path / "site" / "maps" / "pack.toml").write_text(shipped.read_text(encoding="utf-8"))
    cfg = tmp_path / "site" / "bank.toml"
    cfg.write_text(
        '[bank]\nname = "b"\nchemistry = "lifepo4"\nnominal_voltage_v = 48\n'
        '[models.p]\ncapacity_ah = 100\nnominal_voltage_v = 51.2\nchemistry = "lifepo4"\n'
        '[links.rs485]\ntype = "serial"\nport = "/dev/ttyUSB0"\nbaud = 19200\n'
        '[[strings]]\nname = "A"\nbatteries = [{ name = "p1", model = "p", source = '
        '{ link = "rs485", protocol = "modbus-map", address = 1, map = "maps/pack.toml" } }]\n',
        encoding="utf-8",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(cfg)
    assert config.source_dir == str(cfg.parent)
    src = config.strings[0].batteries[0].source
    assert src is not None
    codec = serial_codec_for(src.protocol, src.map, config.modbus_maps, config.source_dir)
    assert codec is not None and codec.poll_requests(1)
    # and without the config's folder it would not have been found from here
    with pytest.raises(ConfigError):
        serial_codec_for(src.protocol, src.map, config.modbus_maps, None)
