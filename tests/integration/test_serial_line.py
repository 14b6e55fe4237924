"""The serial line over real PTYs: polling several packs, replies that arrive in pieces after
garbage, adapters that echo, retries, a port that vanishes and comes back, listen-only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tty
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bankwatch.drivers.clock import SystemClock
from bankwatch.drivers.errors import LinkError
from bankwatch.drivers.links.serial import (
    Device,
    FrameSplitter,
    SerialLine,
    SerialLinkSettings,
    SerialPort,
)
from bankwatch.drivers.model import Reading
from bankwatch.drivers.pylontech_rs485 import PYLONTECH, SEPLOS_V2
from bankwatch.drivers.serial_codec import SerialCodec
from bankwatch.drivers.simulator.serial_server import SerialBus, SimDevice


def _pack(address: int) -> Reading:
    return Reading(
        pack_voltage_v=53.2 + address / 100,
        current_a=-4.2,
        remaining_ah=80.0,
        full_charge_ah=100.0,
        cycles=12 + address,
        cell_voltages_v=(3.325,) * 16,
        temperatures_c=(25.0, 24.5, 24.0, 24.5, 25.5),
        charge_voltage_limit_v=56.0,
        discharge_voltage_limit_v=44.8,
        charge_current_limit_a=50.0,
        discharge_current_limit_a=100.0,
        charge_enabled=True,
        discharge_enabled=address != 3,
        model="US5000",
        serial=f"SN-{address}",
        firmware="2.1",
        manufacturer="PYLON",
    )


def _link(port: Path, **kw: Any) -> SerialLinkSettings:
    return SerialLinkSettings(port=str(port), baud=kw.pop("baud", 115200), **kw)


class _Collector:
    def __init__(self) -> None:
        self.readings: dict[str, Reading] = {}
        self.event = asyncio.Event()

    def __call__(self, subject: str, reading: Reading) -> None:
        self.readings[subject] = reading
        self.event.set()

    async def wait_for(
        self, pred: Callable[[dict[str, Reading]], bool], timeout: float = 10
    ) -> None:
        async def loop() -> None:
            while not pred(self.readings):
                self.event.clear()
                await self.event.wait()

        await asyncio.wait_for(loop(), timeout)


@contextlib.asynccontextmanager
async def _running(line: SerialLine) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(line.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _sim_devices(codec: SerialCodec, addresses: list[int]) -> list[SimDevice]:
    return [
        SimDevice(f"P{a}", a, codec, reading=lambda a=a: _pack(a), talking=lambda: True)  # type: ignore[misc]
        for a in addresses
    ]


async def test_polls_every_pack_on_the_line_and_identifies_them(tmp_path: Path) -> None:
    port = tmp_path / "ttyA"
    cfg = _link(port, poll_interval_s=0.2)
    bus = SerialBus("a", cfg, _sim_devices(PYLONTECH, [2, 3]))
    bus.plug()
    served = asyncio.create_task(bus.run())
    got = _Collector()
    line = SerialLine(
        "a", cfg, [Device("P2", 2, PYLONTECH), Device("P3", 3, PYLONTECH)], got, SystemClock()
    )
    try:
        async with _running(line):
            await got.wait_for(lambda r: {"P2", "P3"} <= set(r) and r["P3"].serial is not None)
    finally:
        served.cancel()
        bus.close()
    p2, p3 = got.readings["P2"], got.readings["P3"]
    assert (p2.pack_voltage_v, p3.pack_voltage_v) == (53.22, 53.23)
    assert p3.discharge_enabled is False and p2.discharge_enabled is True
    assert (p3.model, p3.serial, p3.firmware) == ("US5000", "SN-3", "2.1")
    assert p2.charge_current_limit_a == 50.0 and p2.cycles == 14
    assert line.status.state == "up" and line.bad_frames == 0 and line.timeouts == 0
    # identity was asked until answered, then no more: a cycle is 0x42, 0x92, 0x44 only
    assert line.pollers[0].requests() == PYLONTECH.poll_requests(2)


async def test_an_echoing_adapter_is_handled(tmp_path: Path, caplog: Any) -> None:
    port = tmp_path / "ttyE"
    bus_cfg = _link(port, echo=True)
    bus = SerialBus("e", bus_cfg, _sim_devices(SEPLOS_V2, [0]))
    bus.plug()
    served = asyncio.create_task(bus.run())
    try:
        for line_echo in (True, False):  # configured, and not configured (found out)
            got = _Collector()
            cfg = _link(port, echo=line_echo, poll_interval_s=0.1)
            line = SerialLine("e", cfg, [Device("S0", 0, SEPLOS_V2)], got, SystemClock())
            with caplog.at_level(logging.INFO):
                async with _running(line):
                    await got.wait_for(lambda r: "S0" in r and r["S0"].charge_enabled is not None)
            assert line.echoes >= 2 and line.bad_frames == 0
            assert got.readings["S0"].pack_voltage_v == 53.2
        assert "set echo = true" in caplog.text
    finally:
        served.cancel()
        bus.close()


class _RawBms:
    """A hand-driven BMS on a PTY: answers each request with whatever `answer` returns, written
    in the pieces it chooses."""

    def __init__(self, path: Path, answer: Callable[[bytes, int], list[bytes]]) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        path.symlink_to(os.ttyname(self.slave))
        self.answer = answer
        self.requests: list[bytes] = []
        self.splitter = FrameSplitter([PYLONTECH])
        asyncio.get_running_loop().add_reader(self.master, self._readable)

    def _readable(self) -> None:
        with contextlib.suppress(OSError):
            self.splitter.feed(os.read(self.master, 4096))
        for frame, _ in self.splitter.frames():
            self.requests.append(frame)
            pieces = self.answer(frame, len(self.requests))
            asyncio.get_running_loop().create_task(self._send(pieces))

    async def _send(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            os.write(self.master, piece)
            await asyncio.sleep(0.002)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)
        os.close(self.slave)


async def test_replies_in_pieces_after_garbage_and_a_retry(tmp_path: Path) -> None:
    port = tmp_path / "ttyR"

    def answer(request: bytes, n: int) -> list[bytes]:
        if n == 1:
            return []  # the first request is lost: the line must repeat it
        reply = PYLONTECH.encode_reply(request, _pack(2)) or b""
        # line noise first, then the reply a byte or a few at a time
        return [b"\x00\xff#", b"\r~zz", *[reply[i : i + 3] for i in range(0, len(reply), 3)]]

    bms = _RawBms(port, answer)
    got = _Collector()
    cfg = _link(port, baud=9600, reply_timeout_s=0.3, retries=1, poll_interval_s=0.1)
    line = SerialLine("r", cfg, [Device("P2", 2, PYLONTECH)], got, SystemClock())
    try:
        async with _running(line):
            await got.wait_for(lambda r: "P2" in r and r["P2"].charge_voltage_limit_v is not None)
    finally:
        bms.close()
    r = got.readings["P2"]
    assert r.cell_voltages_v == (3.325,) * 16 and r.current_a == -4.2
    first = line.transactions[0]
    assert first.attempts == 2 and first.replies  # answered on the retry
    assert line.timeouts >= 1
    assert line.bad_frames > 0  # the noise was counted, not decoded


async def test_a_vanished_port_is_reopened_by_path(tmp_path: Path, caplog: Any) -> None:
    port = tmp_path / "by-id" / "usb-RS485-if00"
    cfg = _link(port, poll_interval_s=0.1)
    bus = SerialBus("v", cfg, _sim_devices(PYLONTECH, [2]))
    first_pty = bus.plug()
    served = asyncio.create_task(bus.run())
    got = _Collector()
    line = SerialLine("v", cfg, [Device("P2", 2, PYLONTECH)], got, SystemClock())
    try:
        with caplog.at_level(logging.INFO):
            async with _running(line):
                await got.wait_for(lambda r: "P2" in r)
                bus.unplug()
                assert not port.exists()
                for _ in range(100):
                    if line.status.state == "down":
                        break
                    await asyncio.sleep(0.05)
                assert line.status.state == "down"
                got.readings.clear()
                second_pty = bus.plug()
                await got.wait_for(lambda r: "P2" in r, timeout=15)
                assert line.status.state == "up"
    finally:
        served.cancel()
        bus.close()
    assert line.reopens >= 1
    assert first_pty.startswith("/dev/pts/") and second_pty.startswith("/dev/pts/")
    downs = [r for r in caplog.records if "link v: down" in r.getMessage()]
    assert len(downs) == 1, "a line going down is logged once, not once per retry"


async def test_opening_a_missing_port_says_what_to_check(tmp_path: Path) -> None:
    with pytest.raises(LinkError, match=r"ttyNONE: .*no such file.*plugged in"):
        await SerialPort.open(str(tmp_path / "ttyNONE"), 9600)


async def test_listen_only_decodes_a_master_polling_and_never_writes(tmp_path: Path) -> None:
    port = tmp_path / "ttyL"
    cfg = _link(port, baud=19200, listen_only=True, poll_interval_s=0.2)
    bus = SerialBus("l", cfg, _sim_devices(PYLONTECH, [2, 3]))
    bus.plug()
    served = asyncio.create_task(bus.run())
    got = _Collector()
    line = SerialLine(
        "l", cfg, [Device("P2", 2, PYLONTECH), Device("P3", 3, PYLONTECH)], got, SystemClock()
    )
    try:
        async with _running(line):
            await got.wait_for(
                lambda r: {"P2", "P3"} <= set(r) and r["P3"].discharge_enabled is not None
            )
    finally:
        served.cancel()
        bus.close()
    assert got.readings["P2"].pack_voltage_v == 53.22
    assert got.readings["P3"].pack_voltage_v == 53.23
    assert got.readings["P3"].discharge_enabled is False
    assert bus.host_bytes == 0 and line.bytes_out == 0


def _every_serial_protocol() -> list[tuple[str, SerialCodec, int]]:
    from bankwatch.drivers.modbus_map import RegisterMapCodec
    from bankwatch.drivers.modbus_map_schema import resolve_map
    from bankwatch.drivers.registry import PROTOCOLS

    out: list[tuple[str, SerialCodec, int]] = []
    for name, info in PROTOCOLS.items():
        if info.link_kind != "serial":
            continue
        codec = info.serial_codec or RegisterMapCodec(resolve_map("seplos-v3-pack"))
        # Protocols without a bus address take any; Pylontech-family masters start at 2.
        address = 0 if info.addressing == "broadcast" else 2
        out.append((name, codec, address))
    return out


@pytest.mark.parametrize(
    ("protocol", "codec", "address"), _every_serial_protocol(), ids=lambda x: str(x)[:16]
)
async def test_every_serial_protocol_works_through_the_line_and_the_simulator(
    tmp_path: Path, protocol: str, codec: SerialCodec, address: int
) -> None:
    """One registry row is all a protocol needs: the simulator answers in it over a PTY and the
    line polls it back to the same values."""
    port = tmp_path / "tty"
    cfg = _link(port, baud=115200, poll_interval_s=0.1, reply_timeout_s=0.3)
    truth = _pack(3)  # discharge switch open
    dev = SimDevice("X", address, codec, reading=lambda: truth, talking=lambda: True)
    bus = SerialBus("x", cfg, [dev])
    bus.plug()
    served = asyncio.create_task(bus.run())
    got = _Collector()
    line = SerialLine("x", cfg, [Device("X", address, codec)], got, SystemClock())
    try:
        async with _running(line):
            await got.wait_for(lambda r: "X" in r and r["X"].pack_voltage_v is not None)
    finally:
        served.cancel()
        bus.close()
    r = got.readings["X"]
    assert r.pack_voltage_v == pytest.approx(truth.pack_voltage_v, abs=0.051), (
        protocol
    )  # Daly: 0.1 V
    assert r.current_a == pytest.approx(truth.current_a, abs=0.051), protocol
    if r.cell_voltages_v is not None:
        assert r.cell_voltages_v == pytest.approx(truth.cell_voltages_v, abs=0.0011), protocol
    if r.discharge_enabled is not None:
        assert r.discharge_enabled is False and r.charge_enabled is True, protocol
    assert line.bad_frames == 0, protocol


@pytest.mark.parametrize("protocol", ["seplos-v3", "daly", "jk-pb", "pace"])
async def test_listen_only_for_other_framings(tmp_path: Path, protocol: str) -> None:
    """Modbus replies that say nothing of their register, Daly's multi-frame cell lists, JK-PB's
    310-byte replies: heard, paired and attributed by address without sending a byte."""
    from bankwatch.drivers.registry import serial_codec_for

    codec = serial_codec_for(protocol)
    assert codec is not None
    port = tmp_path / "ttyL"
    cfg = _link(port, baud=115200, listen_only=True, poll_interval_s=0.2)
    bus = SerialBus("l", cfg, _sim_devices(codec, [1, 3]))
    bus.plug()
    served = asyncio.create_task(bus.run())
    got = _Collector()
    line = SerialLine(
        "l", cfg, [Device("P1", 1, codec), Device("P3", 3, codec)], got, SystemClock()
    )
    try:
        async with _running(line):
            await got.wait_for(
                lambda r: (
                    {"P1", "P3"} <= set(r)
                    and r["P3"].discharge_enabled is not None
                    and r["P3"].cell_voltages_v is not None
                    and len(r["P3"].cell_voltages_v) == 16
                )
            )
    finally:
        served.cancel()
        bus.close()
    p3 = got.readings["P3"]
    assert p3.pack_voltage_v == pytest.approx(53.23, abs=0.051)
    assert p3.cell_voltages_v == pytest.approx((3.325,) * 16, abs=0.0011)
    assert p3.discharge_enabled is False and got.readings["P1"].discharge_enabled is True
    assert bus.host_bytes == 0 and line.bytes_out == 0
