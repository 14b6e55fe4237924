"""Every codec speaks the one vocabulary (drivers/vocabulary.py): every name any codec emits,
for every captured vector and for encode -> decode round trips of a reading that fills every
field, is declared there with its unit. A codec that invents a synonym fails here."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bankwatch.drivers import serial_codec
from bankwatch.drivers.errors import FrameError, UsageError
from bankwatch.drivers.model import Alarm, Protection, Reading
from bankwatch.drivers.registry import can_protocols, serial_codec_for, serial_protocols
from bankwatch.drivers.serial_codec import SerialCodec
from bankwatch.drivers.vocabulary import EXTRA_KEYS, READING_FIELDS, VOCABULARY, unknown_names
from tests.helpers import REPO, VECTORS

# A reading with every field a codec can carry, so every encoder writes all it can.
RICH = Reading(
    pack_voltage_v=53.1,
    current_a=-12.4,
    soc_pct=66.6,
    soh_pct=98.0,
    remaining_ah=66.6,
    full_charge_ah=100.0,
    design_ah=100.0,
    cycles=321,
    cell_voltages_v=tuple(3.3 + i / 1000 for i in range(16)),
    temperatures_c=(21.0, 23.0, 19.0, 20.0),
    mosfet_temperature_c=30.0,
    charge_voltage_limit_v=56.0,
    discharge_voltage_limit_v=44.0,
    charge_current_limit_a=100.0,
    discharge_current_limit_a=100.0,
    charge_enabled=True,
    discharge_enabled=False,
    protections=Protection.DISCHARGE_OVERCURRENT,
    alarms=Alarm.CELL_IMBALANCE | Alarm.HIGH_TEMPERATURE,
    manufacturer="ACME",
    model="X1",
    serial="SN0001",
    firmware="1.0",
)


def _codecs() -> dict[str, SerialCodec]:
    """Every serial codec: the registry's, and the register-map codec with each bundled map."""
    codecs: dict[str, SerialCodec] = dict(serial_protocols())
    for path in sorted((REPO / "drivers" / "maps").glob("*.toml")):
        codec = serial_codec_for("modbus-map", path.stem)
        assert codec is not None
        codecs[f"modbus-map:{path.stem}"] = codec
    return codecs


CODECS = _codecs()


def _names(reading: Reading) -> set[str]:
    return set(reading.to_json()) | {key for key, _ in reading.extra}


def _vector_files() -> list[Path]:
    return sorted(VECTORS.glob("*.json")) + sorted(VECTORS.glob("extra/*.json"))


def _candidate_requests(
    codec: SerialCodec, vector: dict[str, Any], heard: list[bytes]
) -> Iterator[bytes | None]:
    """What a reply vector may answer: the requests captured with it, the codec's own poll and
    identity requests at the vector's address, and (ASCII family) each command it knows."""
    for key in ("trigger_request_hex", "request_hex"):
        if vector.get(key):
            yield bytes.fromhex(vector[key])
    yield from reversed(heard)
    yield None
    header = vector.get("header") or {}
    address = int(header["ADR"], 16) if "ADR" in header else int(str(vector.get("address", "1")), 0)
    for adr in dict.fromkeys((address, 1, 0)):
        try:
            yield from codec.poll_requests(adr)
            yield from serial_codec.info_requests(codec, adr)
        except (FrameError, UsageError, ValueError):
            continue  # an address this codec does not poll
        commands = getattr(codec, "commands", None)
        encode_request = getattr(codec, "encode_request", None)
        if commands is not None and encode_request is not None:
            for cid2 in commands:
                yield encode_request(cid2, adr)
                yield encode_request(cid2, adr, 0xFF)


def _decode_vector(vector: dict[str, Any], heard: list[bytes]) -> list[tuple[str, Reading]]:
    """Every (codec, reading) a vector decodes to."""
    out: list[tuple[str, Reading]] = []
    if "can_id" in vector:
        can_id = vector["can_id"]
        can_id = int(can_id, 16) if isinstance(can_id, str) else can_id
        data = bytes.fromhex(vector["data_hex"])
        for name, info in can_protocols().items():
            assert info.can_decode is not None, name
            try:
                out.append((name, info.can_decode(can_id, data, bool(vector["extended"]))))
            except FrameError:
                continue
        return out
    frame = bytes.fromhex(vector["frame_hex"])
    for name, codec in CODECS.items():
        for request in _candidate_requests(codec, vector, heard):
            try:
                modules = getattr(codec, "decode_modules", None)
                if modules is not None and request is not None:
                    out.extend((name, r) for r in modules(frame, request))
                out.append((name, codec.decode(frame, request)))
            except FrameError:
                continue
            break
    return out


def _vector_cases() -> list[tuple[str, dict[str, Any], list[bytes]]]:
    cases = []
    for path in _vector_files():
        heard: list[bytes] = []
        for vector in json.loads(path.read_text(encoding="utf-8"))["vectors"]:
            if vector.get("direction") == "request":
                heard.append(bytes.fromhex(vector["frame_hex"]))
                continue
            cases.append((f"{path.stem}/{vector['id']}", vector, list(heard)))
    return cases


VECTOR_CASES = _vector_cases()


@pytest.mark.parametrize(
    ("case", "vector", "heard"), VECTOR_CASES, ids=[c[0] for c in VECTOR_CASES]
)
def test_every_vector_decodes_to_vocabulary_names(
    case: str, vector: dict[str, Any], heard: list[bytes]
) -> None:
    decoded = _decode_vector(vector, heard)
    if vector.get("expect") and vector.get("checksum_verified", True) is not False:
        assert decoded, f"{case}: no codec decodes this vector"
    for codec, reading in decoded:
        assert unknown_names(_names(reading)) == [], f"{case} via {codec}"


def _split(codec: SerialCodec, reply: bytes) -> list[bytes]:
    frames = []
    while reply:
        n = codec.frame_length(reply)
        assert n is not None, "an encoded reply that does not frame"
        frames.append(reply[:n])
        reply = reply[n:]
    return frames


@pytest.mark.parametrize("name", sorted(CODECS))
def test_serial_round_trips_emit_vocabulary_names(name: str) -> None:
    codec = CODECS[name]
    emitted: set[str] = set()
    for address in (1, 2):
        parts = []
        for request in codec.poll_requests(address) + serial_codec.info_requests(codec, address):
            reply = codec.encode_reply(request, RICH)
            for frame in _split(codec, reply or b""):
                part = codec.decode(frame, request)
                parts.append(part)
                emitted |= _names(part)
        if serial_codec.talks_unasked(codec):  # a shunt: what it sends each period
            for frame in codec.unasked_frames(RICH):  # type: ignore[attr-defined]
                part = codec.decode(frame)
                parts.append(part)
                emitted |= _names(part)
        assert parts, f"{name}: the simulator's side answers nothing"
        emitted |= _names(serial_codec.merge_parts(codec, parts))
    assert {"pack_voltage_v", "current_a"} <= emitted, name
    assert unknown_names(emitted) == [], name


@pytest.mark.parametrize("name", sorted(can_protocols()))
def test_can_round_trips_emit_vocabulary_names(name: str) -> None:
    info = can_protocols()[name]
    assert info.can_encode is not None and info.can_decode is not None and info.can_driver
    frames = info.can_encode(RICH, 1)
    assert frames, f"{name}: the encoder sends nothing"
    driver = info.can_driver(name, 1, log_warnings=False)
    emitted: set[str] = set()
    for can_id, data, extended in frames:
        emitted |= _names(info.can_decode(can_id, data, extended))
        assert driver.on_frame(can_id, data, extended, 1.0), f"{name}: its driver drops its frame"
    emitted |= _names(driver.reading)
    assert driver.reading.pack_voltage_v == pytest.approx(RICH.pack_voltage_v)
    assert unknown_names(emitted) == [], name


def test_unknown_names_are_found() -> None:
    """The check itself can fail: a synonym is reported."""
    assert unknown_names(["current_a", "charger_connected", "balancing_cells"]) == [
        "balancing_cells",
        "charger_connected",
    ]


def test_the_reading_fields_are_the_vocabulary_fields() -> None:
    declared = {t.name for t in READING_FIELDS}
    fields = {f.name for f in dataclasses.fields(Reading)} - {"subject", "at", "extra"}
    assert declared == fields | {"power_w"}
    assert not declared & {t.name for t in EXTRA_KEYS}, "an extra key shadows a Reading field"


_SUFFIX_UNITS = {
    "_v": "V",
    "_a": "A",
    "_c": "°C",
    "_pct": "%",
    "_ah": "Ah",
    "_w": "W",
    "_kwh": "kWh",
    "_s": "s",
    "_us": "µs",
}


@pytest.mark.parametrize("name", sorted(VOCABULARY))
def test_units_live_in_the_names(name: str) -> None:
    term = VOCABULARY[name]
    suffix = "_" + name.rsplit("_", 1)[-1] if "_" in name else ""
    assert _SUFFIX_UNITS.get(suffix, "") == term.unit, f"{name}: unit {term.unit!r}"
    assert term.meaning, name
