"""`bankwatch scan` and `bankwatch sniff` against simulated packs on a PTY."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest

from bankwatch.daemon.cli import main
from bankwatch.daemon.serial_tools import is_serial_port, parse_addresses, scan, scan_report, sniff
from bankwatch.drivers import daly
from bankwatch.drivers.links.serial import SerialLinkSettings
from bankwatch.drivers.model import Reading
from bankwatch.drivers.pylontech_rs485 import PYLONTECH, SEPLOS_V2
from bankwatch.drivers.serial_codec import SerialCodec
from bankwatch.drivers.simulator.serial_server import SerialBus, SimDevice


def _pack(address: int) -> Reading:
    return Reading(
        pack_voltage_v=52.5,
        current_a=2.0,
        remaining_ah=50.0,
        full_charge_ah=100.0,
        cell_voltages_v=(3.28,) * 16,
        temperatures_c=(21.0, 21.5, 22.0, 21.0, 21.5),
        charge_enabled=True,
        discharge_enabled=True,
        model="US3000C",
        serial=f"PPTAP0{address}",
        firmware="1.4",
        manufacturer="PYLON",
    )


def _bus(port: Path, codec: SerialCodec, addresses: list[int], **kw: object) -> SerialBus:
    cfg = SerialLinkSettings(port=str(port), baud=9600, **kw)  # type: ignore[arg-type]
    devices = [
        SimDevice(f"p{a}", a, codec, reading=lambda a=a: _pack(a), talking=lambda: True)  # type: ignore[misc]
        for a in addresses
    ]
    bus = SerialBus("sim", cfg, devices)
    bus.plug()
    return bus


async def test_scan_finds_each_pack_at_its_baud_and_address(tmp_path: Path) -> None:
    port = tmp_path / "ttyUSB-scan"
    bus = _bus(port, PYLONTECH, [2, 4])
    served = asyncio.create_task(bus.run())
    try:
        found = await scan(
            str(port),
            protocols=["pylontech-rs485", "daly"],
            bauds=[9600, 115200],
            addresses=range(0, 6),
            timeout_s=0.15,
        )
    finally:
        served.cancel()
        bus.close()
    hits = [(f.protocol, f.baud, f.address) for f in found if f.error is None]
    # Only the right protocol at the right baud: at 115200 the packs hear noise.
    assert hits == [("pylontech-rs485", 9600, 2), ("pylontech-rs485", 9600, 4)]
    assert bus.wrong_baud > 0
    r = found[0].reading
    assert (r.model, r.serial, r.firmware) == ("US3000C", "PPTAP02", "1.4")
    report = scan_report(str(port), found)
    assert "2 device(s) answered" in report
    assert f'port = "{port}"' in report and "baud = 9600" in report
    assert 'protocol = "pylontech-rs485", address = 4' in report


async def test_scan_tells_a_sibling_protocol_that_answered_apart(tmp_path: Path) -> None:
    port = tmp_path / "ttyUSB-sib"
    bus = _bus(port, SEPLOS_V2, [0])
    served = asyncio.create_task(bus.run())
    try:
        found = await scan(
            str(port),
            protocols=["pylontech-rs485", "seplos-v2"],
            bauds=[9600],
            addresses=[0, 1],
            timeout_s=0.15,
        )
    finally:
        served.cancel()
        bus.close()
    by = {f.protocol: f for f in found}
    assert by["seplos-v2"].error is None and by["seplos-v2"].reading.pack_voltage_v == 52.5
    # A Seplos pack answers a Pylontech request in its own layout: reported, not misread.
    assert by["pylontech-rs485"].error is not None
    assert "answered, but not in pylontech-rs485" in by["pylontech-rs485"].error


async def test_sniff_prints_what_a_master_and_its_packs_say(tmp_path: Path) -> None:
    port = tmp_path / "ttyUSB-sniff"
    bus = _bus(port, daly, [1], listen_only=True, poll_interval_s=0.3)
    served = asyncio.create_task(bus.run())
    out = io.StringIO()
    try:
        frames = await sniff(str(port), baud=9600, duration_s=2.0, json_out=True, out=out)
    finally:
        served.cancel()
        bus.close()
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert frames == len(records) > 10
    replies = [r for r in records if r["kind"] == "reply"]
    assert {r["protocol"] for r in records} == {"daly"}
    assert any(r["reading"].get("pack_voltage_v") == 52.5 for r in replies)
    assert all(r["address"] == 1 for r in records)
    assert bus.host_bytes == 0  # sniff sends nothing


def test_sniff_tells_a_serial_port_from_a_can_interface(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert is_serial_port("/dev/ttyUSB0") and is_serial_port("/dev/serial/by-id/usb-FTDI-if00")
    assert not is_serial_port("can0") and not is_serial_port("vcan0")
    # can0 goes to the CAN sniffer (which says the bus is down here: no SocketCAN) ...
    assert main(["sniff", "can0", "--duration", "0.5"]) == 0
    assert "sniff can0:" in capsys.readouterr().err
    # ... a serial link named in --config to the serial one, at the link's port and baud.
    cfg = tmp_path / "bank.toml"
    cfg.write_text(
        '[bank]\nname = "b"\nchemistry = "lifepo4"\nnominal_voltage_v = 12\n'
        '[models.m]\ncapacity_ah = 100\nnominal_voltage_v = 12.8\nchemistry = "lifepo4"\n'
        f'[links.rs485]\ntype = "serial"\nport = "{tmp_path}/ttyGONE"\nbaud = 19200\n'
        '[[strings]]\nname = "A"\nbatteries = [{ name = "A1", model = "m", source = '
        '{ link = "rs485", protocol = "jbd" } }]\n',
        encoding="utf-8",
    )
    assert main(["sniff", "rs485", "--config", str(cfg), "--duration", "0.5"]) == 3
    assert f"serial port {tmp_path}/ttyGONE: no such file" in capsys.readouterr().err


def test_scan_address_ranges() -> None:
    assert parse_addresses("0-3,7") == [0, 1, 2, 3, 7]
    with pytest.raises(Exception, match="not like 0-15"):
        parse_addresses("3-1")


def test_scan_of_a_missing_port_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "/dev/ttyNOPE-bankwatch", "--protocol", "daly"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("bankwatch: serial port /dev/ttyNOPE-bankwatch: no such file")
    assert err.count("\n") == 1


def _shunt() -> Reading:
    return Reading(
        pack_voltage_v=13.27,
        current_a=-18.4,
        soc_pct=71.5,
        remaining_ah=286.0,
        full_charge_ah=400.0,
    )


async def test_scan_hears_a_shunt_and_finds_a_renogy_battery_at_its_factory_address(
    tmp_path: Path,
) -> None:
    """A VE.Direct shunt talks unasked: scan listens for it. A Renogy battery answers at 247,
    outside 0-15: the shipped map names that address, and the snippet carries the map."""
    from bankwatch.drivers import vedirect
    from bankwatch.drivers.registry import serial_codecs

    shunt_port = tmp_path / "ttyUSB-shunt"
    shunt = SerialBus(
        "shunt",
        SerialLinkSettings(port=str(shunt_port), baud=19200),
        [SimDevice("s", 0, vedirect, reading=_shunt, talking=lambda: True)],  # type: ignore[arg-type]
    )
    shunt.plug()
    renogy_port = tmp_path / "ttyUSB-renogy"
    codec = serial_codecs()["modbus-map:renogy-smart-lfp"]
    renogy = _bus(renogy_port, codec, [247])
    tasks = [asyncio.create_task(shunt.run()), asyncio.create_task(renogy.run())]
    try:
        heard = await scan(str(shunt_port), protocols=["ve-direct"], timeout_s=0.15)
        found = await scan(
            str(renogy_port), protocols=["modbus-map:renogy-smart-lfp"], timeout_s=0.1
        )
    finally:
        for t in tasks:
            t.cancel()
        shunt.close()
        renogy.close()
    assert [(f.protocol, f.baud, f.error) for f in heard] == [("ve-direct", 19200, None)]
    r = heard[0].reading
    assert (r.pack_voltage_v, r.current_a, r.soc_pct) == (13.27, -18.4, 71.5)
    assert shunt.host_bytes == 0, "a shunt is only listened to"
    report = scan_report(str(shunt_port), heard)
    assert '# [bank] source = { link = "rs485", protocol = "ve-direct" }' in report

    assert [(f.protocol, f.address, f.error) for f in found] == [
        ("modbus-map:renogy-smart-lfp", 247, None)
    ]
    assert found[0].reading.pack_voltage_v == 52.5 and found[0].reading.model == "US3000C"
    report = scan_report(str(renogy_port), found)
    assert 'protocol = "modbus-map", map = "renogy-smart-lfp", address = 247' in report


async def test_sniff_shows_a_shunts_blocks(tmp_path: Path) -> None:
    from bankwatch.drivers import vedirect

    port = tmp_path / "ttyUSB-sniff-shunt"
    bus = SerialBus(
        "shunt",
        SerialLinkSettings(port=str(port), baud=19200),
        [SimDevice("s", 0, vedirect, reading=_shunt, talking=lambda: True)],  # type: ignore[arg-type]
    )
    bus.plug()
    served = asyncio.create_task(bus.run())
    out = io.StringIO()
    try:
        frames = await sniff(str(port), baud=19200, duration_s=2.5, json_out=True, out=out)
    finally:
        served.cancel()
        bus.close()
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert frames == len(records) >= 2
    replies = [r for r in records if r["kind"] == "reply"]
    assert replies and {r["protocol"] for r in replies} == {"ve-direct"}
    assert any(r["reading"].get("pack_voltage_v") == 13.27 for r in replies)


async def test_sniff_of_a_configured_shunt_link_listens_for_ve_direct(tmp_path: Path) -> None:
    """`bankwatch sniff shunt --config ...`: the bank's own source counts among the link's
    protocols (and a shipped map is sniffed by its name)."""
    import contextlib as _contextlib
    import io as _io

    from bankwatch.drivers import vedirect

    port = tmp_path / "ttyShunt"
    cfg = tmp_path / "rv.toml"
    cfg.write_text(
        '[bank]\nname = "rv"\nchemistry = "lifepo4"\nnominal_voltage_v = 12\n'
        'source = { link = "shunt", protocol = "ve-direct" }\n'
        '[models.m]\ncapacity_ah = 100\nnominal_voltage_v = 12.8\nchemistry = "lifepo4"\n'
        f'[links.shunt]\ntype = "serial"\nport = "{port}"\nbaud = 19200\n'
        f'[links.rs485]\ntype = "serial"\nport = "{tmp_path}/ttyR"\n'
        '[[strings]]\nname = "A"\n[[strings.batteries]]\nname = "A1"\nmodel = "m"\n'
        'source = { link = "rs485", protocol = "modbus-map", map = "renogy-smart-lfp", '
        "address = 48 }\n",
        encoding="utf-8",
    )
    bus = SerialBus(
        "shunt",
        SerialLinkSettings(port=str(port), baud=19200),
        [SimDevice("s", 0, vedirect, reading=_shunt, talking=lambda: True)],  # type: ignore[arg-type]
    )
    bus.plug()
    served = asyncio.create_task(bus.run())
    out = _io.StringIO()
    try:
        with _contextlib.redirect_stdout(out):
            code = await asyncio.to_thread(
                main, ["sniff", "shunt", "--config", str(cfg), "--duration", "2.5", "--json"]
            )
    finally:
        served.cancel()
        bus.close()
    assert code == 0
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert records and {r["protocol"] for r in records if r["kind"] == "reply"} == {"ve-direct"}
    # The map's link resolves to the map by name (no "not a serial protocol" error).
    args = ["sniff", "rs485", "--config", str(cfg), "--duration", "0.3"]
    assert await asyncio.to_thread(main, args) == 3
