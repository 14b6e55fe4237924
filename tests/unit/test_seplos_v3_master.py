"""Seplos v3 master aggregates (EIA, EIB) read in full, against the XZH register table and real
replies (a SG16S200A master, and aiobmsble's two-pack system)."""

from __future__ import annotations

from typing import Any

import pytest

from bankwatch.drivers import modbus_rtu, seplos_v3
from bankwatch.drivers.model import Reading, merge_readings
from tests.helpers import load_vectors

VECTORS = load_vectors("extra/seplos_v3_master")


def _extra(r: Reading, key: str) -> Any:
    return dict(r.extra).get(key)


CHECKS: dict[str, Any] = {
    "voltage_V": lambda r: r.pack_voltage_v,
    "current_A": lambda r: r.current_a,
    "remaining_Ah": lambda r: r.remaining_ah,
    "full_charge_Ah": lambda r: r.full_charge_ah,
    "discharged_capacity_Ah": lambda r: _extra(r, "discharged_capacity_ah"),
    "design_Ah": lambda r: r.design_ah,
    "online_pack_bits": lambda r: _extra(r, "packs_online_bits"),
    "protected_pack_bits": lambda r: _extra(r, "packs_protected_bits"),
    "modules_online": lambda r: r.modules_online,
    "modules_offline": lambda r: r.modules_offline,
    "discharge_current_limit_A": lambda r: r.discharge_current_limit_a,
    "charge_current_limit_A": lambda r: r.charge_current_limit_a,
    "suggested_pack_ov_V": lambda r: _extra(r, "suggested_pack_ov_v"),
    "suggested_pack_uv_V": lambda r: _extra(r, "suggested_pack_uv_v"),
    "cycles": lambda r: r.cycles,
    "soc_pct": lambda r: r.soc_pct,
    "soh_pct": lambda r: r.soh_pct,
    "cell_voltage_max_V": lambda r: r.cell_voltage_max_v,
    "cell_voltage_min_V": lambda r: r.cell_voltage_min_v,
    "cell_voltage_max_id": lambda r: r.cell_voltage_max_id,
    "cell_voltage_min_id": lambda r: r.cell_voltage_min_id,
    "pack_voltage_max_V": lambda r: _extra(r, "pack_voltage_max_v"),
    "pack_voltage_min_V": lambda r: _extra(r, "pack_voltage_min_v"),
    "cell_temperature_max_C": lambda r: r.cell_temperature_max_c,
    "cell_temperature_min_C": lambda r: r.cell_temperature_min_c,
    "average_cell_temperature_C": lambda r: _extra(r, "cell_temperature_average_c"),
    "cell_temperature_max_id": lambda r: r.cell_temperature_max_id,
    "cell_temperature_min_id": lambda r: r.cell_temperature_min_id,
}


@pytest.mark.parametrize("vector", VECTORS, ids=[v["id"] for v in VECTORS])
def test_master_blocks_decode_in_full(vector: dict[str, Any]) -> None:
    request = bytes.fromhex(vector["request_hex"])
    assert request in seplos_v3.poll_requests(seplos_v3.MASTER_ADDRESS)
    r = seplos_v3.decode(bytes.fromhex(vector["frame_hex"]), request)
    for key, want in vector["expect"].items():
        assert key in CHECKS, f"vector key {key!r} has no check"
        got = CHECKS[key](r)
        if isinstance(want, float):
            assert got == pytest.approx(want, abs=1e-6), key
        else:
            assert got == want, key


def test_eib_temperatures_in_kelvin_are_read_as_kelvin() -> None:
    """The XZH table says 0.1 K, the captured firmware sends 0.1 °C: a value only kelvin can
    be (above 150 °C) is read as kelvin."""
    eib = next(v for v in VECTORS if v["id"] == "seplos3_aiobmsble_EIB")
    request = bytes.fromhex(eib["request_hex"])
    reply = modbus_rtu.parse_reply(bytes.fromhex(eib["frame_hex"]))
    assert isinstance(reply, modbus_rtu.ReadReply)
    data = bytes(reply.data)
    regs = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    regs[8:11] = [2981, 2869, 2925]  # 25.0, 13.8, 19.4 °C as 0.1 K (2731 = 0 °C)
    r = seplos_v3.decode(modbus_rtu.encode_read_reply(0, 4, regs), request)
    assert r.cell_temperature_max_c == 25.0 and r.cell_temperature_min_c == 13.8
    assert _extra(r, "cell_temperature_average_c") == 19.4


def test_the_simulator_serves_the_master_blocks() -> None:
    truth = Reading(
        pack_voltage_v=53.1,
        current_a=-12.3,
        remaining_ah=150.0,
        full_charge_ah=280.0,
        design_ah=280.0,
        cycles=42,
        soc_pct=53.6,
        soh_pct=99.0,
        modules_online=2,
        cell_voltage_max_v=3.331,
        cell_voltage_min_v=3.312,
        cell_temperature_max_c=24.0,
        cell_temperature_min_c=21.5,
        charge_current_limit_a=100.0,
        discharge_current_limit_a=150.0,
    )
    got = Reading()
    for request in seplos_v3.poll_requests(seplos_v3.MASTER_ADDRESS):
        reply = seplos_v3.encode_reply(request, truth)
        if reply is not None:
            got = merge_readings(got, seplos_v3.decode(reply, request))
    for name in (
        "design_ah",
        "cell_voltage_max_v",
        "cell_voltage_min_v",
        "cell_temperature_max_c",
        "cell_temperature_min_c",
        "charge_current_limit_a",
        "discharge_current_limit_a",
        "modules_online",
    ):
        assert getattr(got, name) == getattr(truth, name), name
