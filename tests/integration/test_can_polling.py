"""Sending on a CAN link: Daly CAN polled per address, the optional 0x305 keep-alive, and the
bus state from error frames. Over python-can's virtual bus, with a responder playing two Daly
BMS through the codec's encoder."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator

import can
import pytest

from bankwatch.daemon.config import parse_config
from bankwatch.daemon.service import Monitor
from bankwatch.drivers.clock import SystemClock
from bankwatch.drivers.daly_can import encode_replies, split_id
from bankwatch.drivers.links.can import CanLink, CanLinkSettings
from bankwatch.drivers.model import Protection, Reading
from tests.integration.test_can_link import eventually

_COUNTER = itertools.count()

BMS = {
    1: Reading(
        pack_voltage_v=13.3,
        current_a=-8.5,
        soc_pct=71.5,
        remaining_ah=71.5,
        cell_voltages_v=(3.321, 3.325, 3.330, 3.324),
        temperatures_c=(22.0, 24.0),
        charge_enabled=True,
        discharge_enabled=True,
        protections=Protection.NONE,
    ),
    2: Reading(
        pack_voltage_v=13.1,
        current_a=-8.4,
        soc_pct=64.0,
        remaining_ah=64.0,
        cell_voltages_v=(3.270, 3.281, 3.279, 3.275),
        temperatures_c=(23.0, 23.0),
        charge_enabled=True,
        discharge_enabled=False,
        protections=Protection.DISCHARGE_OVERCURRENT,
    ),
}


def _channel() -> str:
    return f"bankwatch-poll-{next(_COUNTER)}-{id(object()):x}"


def _config(channel: str, *, keepalive: bool = False) -> str:
    return f"""
[bank]
name = "boat"
chemistry = "lifepo4"
nominal_voltage_v = 12

[models.lfp]
capacity_ah = 100
nominal_voltage_v = 12.8
chemistry = "lifepo4"

[links.bus]
type = "can"
interface = "virtual"
channel = "{channel}"
bitrate = 250000
poll_interval_s = 0.2
silence_timeout_s = 2
send_keepalive = {"true" if keepalive else "false"}

[[strings]]
name = "P1"
batteries = [
  {{ name = "d1", model = "lfp", source = {{ link = "bus", protocol = "daly-can", address = 1 }} }},
]

[[strings]]
name = "P2"
batteries = [
  {{ name = "d2", model = "lfp", source = {{ link = "bus", protocol = "daly-can", address = 2 }} }},
]
"""


@contextlib.asynccontextmanager
async def responder(channel: str) -> AsyncIterator[list[can.Message]]:
    """Two Daly BMS on the bus, answering what is asked of them; yields what they heard."""
    bus = can.Bus(interface="virtual", channel=channel)
    heard: list[can.Message] = []

    async def serve() -> None:
        while True:
            msg = bus.recv(0)
            if msg is None:
                await asyncio.sleep(0.005)
                continue
            heard.append(msg)
            if not msg.is_extended_id:
                continue
            _, data_id, dst, src = split_id(msg.arbitration_id)
            if dst in BMS and src == 0x40:
                for can_id, data in encode_replies(data_id, BMS[dst], dst):
                    bus.send(can.Message(arbitration_id=can_id, data=data, is_extended_id=True))

    task = asyncio.create_task(serve())
    try:
        yield heard
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        bus.shutdown()


@contextlib.asynccontextmanager
async def running(monitor: Monitor) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_daly_batteries_are_polled_by_address_and_read() -> None:
    channel = _channel()
    config = parse_config(_config(channel))
    monitor = Monitor(config, SystemClock(), tick_s=0.1)
    assert set(monitor.pollers) == {"bus"}
    async with responder(channel) as heard, running(monitor):
        await eventually(
            lambda: all(
                (r := monitor.readings.get(n)) is not None
                and r.cell_voltages_v is not None
                and r.temperatures_c is not None
                and r.protections is not None
                for n in ("d1", "d2")
            ),
            what="both Daly BMS read, cells included",
        )
        for address, name in ((1, "d1"), (2, "d2")):
            got, want = monitor.readings[name], BMS[address]
            assert got.pack_voltage_v == pytest.approx(want.pack_voltage_v)
            assert got.current_a == pytest.approx(want.current_a)
            assert got.soc_pct == pytest.approx(want.soc_pct)
            assert got.cell_voltages_v == pytest.approx(want.cell_voltages_v)
            assert got.temperatures_c == pytest.approx(want.temperatures_c)
            assert got.discharge_enabled == want.discharge_enabled
            assert got.protections == want.protections
        requests = [m for m in heard if m.is_extended_id]
        assert {split_id(m.arbitration_id)[2] for m in requests} == {1, 2}
        assert all(bytes(m.data) == bytes(8) for m in requests)
        assert not any(m.arbitration_id == 0x305 for m in heard)  # listen-only by default
        await eventually(lambda: monitor.state is not None and monitor.state.voltage_v is not None)
        assert monitor.links["bus"].status.state == "up"


async def test_the_keepalive_goes_out_only_when_asked_for() -> None:
    channel = _channel()
    config = parse_config(_config(channel, keepalive=True))
    monitor = Monitor(config, SystemClock(), tick_s=0.1)
    async with responder(channel) as heard, running(monitor):
        await eventually(
            lambda: sum(m.arbitration_id == 0x305 and not m.is_extended_id for m in heard) >= 2,
            what="two keep-alives",
        )
        keepalives = [m for m in heard if m.arbitration_id == 0x305]
        assert all(bytes(m.data) == bytes(8) for m in keepalives)


def _error(error_class: int, data: bytes = bytes(8)) -> can.Message:
    return can.Message(
        arbitration_id=error_class, data=data, is_error_frame=True, is_extended_id=True
    )


def test_error_frames_set_and_count_the_bus_state() -> None:
    cfg = CanLinkSettings(interface="virtual", channel="unused")
    heard: list[int] = []
    link = CanLink("t", cfg, lambda i, d, e, n: heard.append(i), SystemClock())
    link.inject([_error(0x004, bytes([0, 0x10, 0, 0, 0, 0, 0, 0]))])  # RX error-passive
    assert (link.status.bus_state, link.status.error_passive) == ("error-passive", 1)
    link.inject([_error(0x004, bytes([0, 0x20, 0, 0, 0, 0, 0, 0]))])  # still passive (TX)
    assert link.status.error_passive == 1
    link.inject([_error(0x004, bytes([0, 0x40, 0, 0, 0, 0, 0, 0]))])  # active again
    assert link.status.bus_state == "active"
    link.inject([_error(0x040), _error(0x040)])  # bus-off, reported twice
    status = link.status
    assert (status.bus_state, status.bus_off, status.error_frames) == ("bus-off", 1, 5)
    link.inject([can.Message(arbitration_id=0x351, data=bytes(8))])  # frames flow again
    assert link.status.bus_state == "active" and heard == [0x351]
    link.inject([_error(0x040), _error(0x100)])  # bus-off, then the controller restarted
    assert (link.status.bus_state, link.status.bus_off) == ("active", 2)
