"""The pymodbus link against our own Modbus slave over a real PTY pair: values arrive as plain
lists, and silence, garbage and refusals come back as LinkError/FrameError, never a hang."""

from __future__ import annotations

import asyncio

import pytest

from bankwatch.drivers import modbus_rtu, seplos_v3
from bankwatch.drivers.errors import FrameError, LinkError
from bankwatch.drivers.links.modbus import ModbusLink, RegisterBlock
from bankwatch.drivers.modbus_map import RegisterMapCodec
from bankwatch.drivers.modbus_map_schema import resolve_map
from bankwatch.drivers.model import Reading, merge_readings
from tests.modbus_responder import PtyResponder

PACK = Reading(
    pack_voltage_v=52.31,
    current_a=-7.25,
    soc_pct=61.5,
    soh_pct=99.0,
    remaining_ah=172.2,
    full_charge_ah=280.0,
    cycles=44,
    cell_voltages_v=tuple(3.27 + i / 1000 for i in range(16)),
    temperatures_c=(19.5, 19.9, 20.3, 20.0),
    mosfet_temperature_c=24.4,
    charge_enabled=True,
    discharge_enabled=True,
)
# Every call below is bounded: a hang fails the test instead of stalling the suite.
BOUND_S = 20.0


def seplos_pack(request: bytes) -> bytes | None:
    return seplos_v3.encode_reply(request, PACK)


async def test_seplos_pack_polled_over_a_pty_decodes_to_what_it_holds() -> None:
    with PtyResponder(seplos_pack) as slave:
        async with ModbusLink(slave.path, baud=19200, timeout_s=1.0) as link:
            merged = Reading()
            for request in seplos_v3.poll_requests(1):
                reply = await asyncio.wait_for(link.transact(request), BOUND_S)
                merged = merge_readings(merged, seplos_v3.decode(reply, request))
    assert slave.requests == seplos_v3.poll_requests(1)
    assert merged.pack_voltage_v == pytest.approx(52.31)
    assert merged.current_a == pytest.approx(-7.25)
    assert merged.cell_voltages_v == pytest.approx(PACK.cell_voltages_v)
    assert merged.temperatures_c == pytest.approx(PACK.temperatures_c)
    assert merged.charge_enabled is True


async def test_read_blocks_returns_plain_ints() -> None:
    with PtyResponder(seplos_pack) as slave:
        async with ModbusLink(slave.path, baud=19200, timeout_s=1.0) as link:
            regs, coils = await asyncio.wait_for(
                link.read_blocks(1, [RegisterBlock(4, 0x1005, 3), RegisterBlock(1, 0x1278, 2)]),
                BOUND_S,
            )
    assert regs == [615, 990, 44]
    assert coils == [1, 1]
    assert all(type(v) is int for v in regs + coils)


async def test_a_map_configured_battery_over_the_link() -> None:
    codec = RegisterMapCodec(resolve_map("jk-pb"))
    jk = Reading(pack_voltage_v=26.7, current_a=3.25, soc_pct=55.0, cycles=9)
    with PtyResponder(lambda req: codec.encode_reply(req, jk)) as slave:
        async with ModbusLink(slave.path, baud=115200, timeout_s=1.0) as link:
            (request,) = codec.poll_requests(2)
            got = codec.decode(await asyncio.wait_for(link.transact(request), BOUND_S), request)
    assert (got.pack_voltage_v, got.current_a, got.soc_pct, got.cycles) == (26.7, 3.25, 55.0, 9)


async def test_silent_slave_gives_link_error_after_retries() -> None:
    with PtyResponder(seplos_pack) as slave:
        slave.faults = ["silent"] * 3
        async with ModbusLink(slave.path, timeout_s=0.3, retries=2) as link:
            with pytest.raises(LinkError, match="no valid reply from slave 1"):
                await asyncio.wait_for(link.read_registers(1, 4, 0x1000, 17), BOUND_S)
            assert len(slave.requests) == 3  # one try and two retries
            # The line is still usable afterwards.
            assert len(await asyncio.wait_for(link.read_registers(1, 4, 0x1000, 17), BOUND_S)) == 17


async def test_garbled_reply_is_retried_then_given_up_on() -> None:
    with PtyResponder(seplos_pack) as slave:
        slave.faults = ["garble"]
        async with ModbusLink(slave.path, timeout_s=0.3, retries=1) as link:
            regs = await asyncio.wait_for(link.read_registers(1, 4, 0x1000, 2), BOUND_S)
            assert regs == [5231, (-725) & 0xFFFF]
            slave.faults = ["garble", "garble"]
            with pytest.raises(LinkError):
                await asyncio.wait_for(link.read_registers(1, 4, 0x1000, 2), BOUND_S)


async def test_exception_reply_is_a_frame_error_and_not_retried() -> None:
    with PtyResponder(seplos_pack) as slave:
        async with ModbusLink(slave.path, timeout_s=0.5, retries=3) as link:
            with pytest.raises(modbus_rtu.ExceptionReplyError, match="illegal data address") as err:
                await asyncio.wait_for(link.read_registers(1, 4, 0x3000, 4), BOUND_S)
    assert isinstance(err.value, FrameError)
    assert len(slave.requests) == 1


async def test_short_reply_is_a_frame_error() -> None:
    def short(request: bytes) -> bytes:
        return modbus_rtu.encode_read_reply(request[0], request[1], [1, 2])

    with PtyResponder(short) as slave:
        async with ModbusLink(slave.path, timeout_s=0.5, retries=0) as link:
            with pytest.raises(FrameError, match="sent 2 registers, 5 asked"):
                await asyncio.wait_for(link.read_registers(1, 3, 0, 5), BOUND_S)


async def test_missing_port_is_a_link_error() -> None:
    link = ModbusLink("/dev/does-not-exist-bankwatch", timeout_s=0.3)
    with pytest.raises(LinkError, match="cannot open serial port"):
        await asyncio.wait_for(link.read_registers(1, 3, 0, 1), BOUND_S)
