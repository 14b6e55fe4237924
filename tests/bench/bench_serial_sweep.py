"""Sweep time of an RS485 line: N packs polled by the daemon's serial line, served by the
simulator in another process over a PTY that models wire time at the baud (11-bit characters,
a 3.5-character turnaround), beside the wire-time limit computed from the frame sizes
(every request and reply at 11 bits a character plus a t3.5 gap after each). Prints figures;
asserts nothing.

    .venv/bin/python tests/bench/bench_serial_sweep.py [--sweeps 5] [--protocol pylontech-rs485]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path

from bankwatch.daemon.config import SerialLinkConfig
from bankwatch.drivers.clock import SystemClock
from bankwatch.drivers.links.serial import Device, SerialLine
from bankwatch.drivers.model import Reading
from bankwatch.drivers.registry import serial_codec_for
from bankwatch.drivers.serial_codec import t35_s, wire_time_s
from bankwatch.drivers.simulator.serial_server import SerialBus, SimDevice

PACK = Reading(
    pack_voltage_v=53.12,
    current_a=-12.3,
    remaining_ah=71.5,
    full_charge_ah=100.0,
    design_ah=100.0,
    soc_pct=71.5,
    soh_pct=99.0,
    cycles=321,
    cell_voltages_v=tuple(3.32 + i / 1000 for i in range(16)),
    temperatures_c=(24.0, 23.5, 23.0, 23.5, 24.5),
    mosfet_temperature_c=26.0,
    charge_voltage_limit_v=56.8,
    discharge_voltage_limit_v=44.8,
    charge_current_limit_a=50.0,
    discharge_current_limit_a=100.0,
    charge_enabled=True,
    discharge_enabled=True,
    model="BENCH-16S",
    serial="SN-BENCH",
    firmware="1.0",
    manufacturer="bankwatch",
)


def _first_address(protocol: str) -> int:
    return 2 if protocol in ("pylontech-rs485",) else 1


def _serve(port: str, baud: int, protocol: str, n: int, ready: mp.synchronize.Event) -> None:
    async def main() -> None:
        codec = serial_codec_for(protocol)
        assert codec is not None
        a0 = _first_address(protocol)
        devices = [
            SimDevice(f"p{i}", a0 + i, codec, reading=lambda: PACK, talking=lambda: True)
            for i in range(n)
        ]
        cfg = SerialLinkConfig(type="serial", port=port, baud=baud)
        bus = SerialBus("bench", cfg, devices)
        bus.plug()
        ready.set()
        try:
            await bus.run()
        finally:
            bus.close()

    asyncio.run(main())


async def _measure(port: str, baud: int, protocol: str, n: int, sweeps: int) -> tuple[float, float]:
    codec = serial_codec_for(protocol)
    assert codec is not None
    a0 = _first_address(protocol)
    cfg = SerialLinkConfig(
        type="serial", port=port, baud=baud, poll_interval_s=0.001, gap_s=0.0, retries=0
    )
    devices = [Device(f"p{i}", a0 + i, codec) for i in range(n)]
    line = SerialLine("bench", cfg, devices, lambda _s, _r: None, SystemClock())
    task = asyncio.create_task(line.run())
    # The first sweep also asks for identity; measure the steady ones after it.
    while line.sweeps < sweeps + 1:
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert line.timeouts == 0 and line.bad_frames == 0, (line.timeouts, line.bad_frames)
    steady = list(line.sweep_times_s)[1 : sweeps + 1]
    per_sweep = len(line.transactions) and len(codec.poll_requests(a0)) * n
    last = list(line.transactions)[-per_sweep:]
    limit = sum(
        wire_time_s(len(t.request) + sum(len(r) for r in t.replies), baud) + 2 * t35_s(baud)
        for t in last
    )
    return statistics.median(steady), limit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sweeps", type=int, default=5)
    ap.add_argument("--protocol", default="pylontech-rs485")
    ap.add_argument("--packs", default="1,4,8,16")
    args = ap.parse_args()
    ctx = mp.get_context("fork")
    print(f"protocol {args.protocol}, median of {args.sweeps} sweeps after the first")
    print(f"{'baud':>7} {'packs':>5} {'sweep':>10} {'wire limit':>11} {'ratio':>6}")
    for baud in (9600, 19200, 115200):
        for n in (int(x) for x in args.packs.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                port = str(Path(tmp) / "tty")
                ready = ctx.Event()
                server = ctx.Process(target=_serve, args=(port, baud, args.protocol, n, ready))
                server.start()
                ready.wait(10)
                try:
                    took, limit = asyncio.run(
                        _measure(port, baud, args.protocol, n, args.sweeps)
                    )
                finally:
                    server.terminate()
                    server.join()
            print(
                f"{baud:>7} {n:>5} {took * 1000:>8.1f} ms {limit * 1000:>8.1f} ms "
                f"{took / limit:>6.2f}",
                flush=True,
            )
            time.sleep(0.1)


if __name__ == "__main__":
    main()
