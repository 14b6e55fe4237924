"""`bankwatch sniff` on a socketcand bus, and `bankwatch replay` of candump logs."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest

from bankwatch.daemon.cli import main
from bankwatch.daemon.link_config import CanLinkConfig
from bankwatch.daemon.replay import AlertCounter, replay
from bankwatch.daemon.sniff_can import run_sniff_can
from bankwatch.drivers.simulator.socketcand import SocketcandServer


async def test_sniff_prints_every_frame_decoded() -> None:
    async with SocketcandServer(["can0"], "127.0.0.1") as server:
        cfg = CanLinkConfig(
            type="can", interface="socketcand", host="127.0.0.1", port=server.port, channel="can0"
        )
        out = io.StringIO()
        sniff = asyncio.create_task(
            run_sniff_can(cfg, name="can0", as_json=True, duration_s=3.0, out=out)
        )
        await server.wait_for_clients("can0", timeout=10)
        server.publish("can0", 0x351, bytes.fromhex("1402C012C012C201"))
        server.publish("can0", 0x18904001, bytes.fromhex("02100000753001F4"), extended=True)
        server.publish("can0", 0x305, bytes(8))
        server.publish("can0", 0x356, bytes.fromhex("7A13"))  # too short
        assert await sniff == 0
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    by_id = {r["id"]: r for r in records}
    assert by_id["351"]["protocol"] == "pylontech-can"
    assert by_id["351"]["fields"]["charge_voltage_limit_v"] == 53.2
    assert by_id["18904001"]["protocol"] == "daly-can"
    assert by_id["18904001"]["fields"]["pack_voltage_v"] == 52.8
    assert by_id["305"]["protocol"] is None and by_id["305"]["fields"] == {}
    assert by_id["356"]["protocol"] == "error" and "needs at least 6" in str(by_id["356"])


def test_sniff_of_a_serial_path_goes_to_the_serial_sniffer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # No such adapter here: the serial sniffer says so (exit 3), the CAN one is not tried.
    assert main(["sniff", "/dev/ttyUSB-bankwatch-none", "--duration", "1"]) == 3
    assert "serial port /dev/ttyUSB-bankwatch-none: no such file" in capsys.readouterr().err


def _log(tmp_path: Path, seconds: int, silent: range, cutoff_from: int) -> Path:
    lines = []
    t0 = 1_700_000_000.0
    for s in range(seconds):
        if s in silent:
            continue
        frames = [
            "351#1402C012C012C201",
            "355#58005E00",
            "356#7A13F2FE6B01",
            "359#0400000006504E" if s >= cutoff_from else "359#0000000006504E",
            "35C#8000" if s >= cutoff_from else "35C#C000",
            "35E#50594C4F4E202020",
        ]
        lines += [f"({t0 + s + i / 1000:.6f}) can0 {f}" for i, f in enumerate(frames)]
    lines.append(f"({t0 + seconds:.6f}) can0 20000040#0000000000000000")  # bus-off
    path = tmp_path / "bus.log"
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


async def test_replay_raises_the_alerts_the_log_holds_on_the_log_time(tmp_path: Path) -> None:
    path = _log(tmp_path, 40, silent=range(10, 25), cutoff_from=30)
    counter = AlertCounter()
    monitor, played = await replay(path, None, [counter], fast=True)
    assert played == 40 * 6 - 15 * 6 + 1
    assert counter.raised == {"link_lost": 1, "cutoff": 1}
    status = monitor.link_statuses()[0]
    assert status.frames == played - 1 and status.error_frames == 1 and status.bus_off == 1
    reading = monitor.readings["battery"]
    assert reading.discharge_enabled is False and reading.pack_voltage_v == 49.86
    # The clock followed the log: the last tick is at the log's last second.
    assert monitor.clock.wall() == pytest.approx(1_700_000_040.0, abs=1.0)


async def test_replay_at_a_speed_takes_the_log_time_divided_by_it(tmp_path: Path) -> None:
    path = _log(tmp_path, 4, silent=range(0), cutoff_from=99)
    loop = asyncio.get_running_loop()
    started = loop.time()
    _, played = await replay(path, None, [], speed=8.0)
    assert played == 4 * 6 + 1
    assert loop.time() - started >= 4 / 8 * 0.9


def test_replay_cli_summary_and_bad_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _log(tmp_path, 3, silent=range(0), cutoff_from=99)
    assert main(["replay", str(path), "--fast", "--json"]) == 0
    err = capsys.readouterr().err
    assert "replayed 19 frames" in err and "1 error frames" in err
    bad = tmp_path / "bad.log"
    bad.write_text("(1700000000.000000) can0 351#1402C0\nnot a line\n", encoding="ascii")
    assert main(["replay", str(bad), "--fast"]) == 1
    err = capsys.readouterr().err
    assert "bad.log:2: not a candump -l line" in err and "Traceback" not in err
    assert main(["replay", str(tmp_path / "missing.log")]) == 2
