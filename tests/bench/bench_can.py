"""CAN throughput benchmark (not part of the test run; prints figures for the README).

    .venv/bin/python -m tests.bench.bench_can            # all three, 60 s saturated bus
    .venv/bin/python -m tests.bench.bench_can --seconds 10

1. codec + state update: the Pylontech/SMA frame mix of the captured vectors through the
   Monitor's frame handler (decode, the driver's merge and checks, the latest Reading kept),
   on one core;
2. the same frames decoded by cantools with configs/dbc/pylontech.dbc, and the ratio;
3. a saturated 500 kbit/s bus (4,505 frames/s of 8-byte standard frames) served over
   socketcand by another process for N seconds, received by the daemon's Monitor: frames
   dropped, and the CPU the daemon's process used (event loop and the link's reader thread).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SATURATED_FPS = 4505  # 8-byte standard frames with stuffing at 500 kbit/s

CONFIG = """
[bank]
name = "bench"
chemistry = "lifepo4"
nominal_voltage_v = 48

[models.pack]
capacity_ah = 100
nominal_voltage_v = 51.2
chemistry = "lifepo4"

[links.can0]
type = "can"
interface = "{interface}"
channel = "can0"
{server}

[[strings]]
name = "S"
batteries = [
  {{ name = "p1", model = "pack", source = {{ link = "can0", protocol = "pylontech-can" }} }},
]
"""


def _broadcasts() -> list[list[tuple[int, bytes]]]:
    """Three captured broadcasts: old and new Pylontech firmware, a Victron-profile BMS."""
    data = json.loads((REPO / "tests" / "vectors" / "pylontech_can.json").read_text())
    groups = ("pylon_us5000_oldfw_", "pylon_us5000_newfw_", "shenergy_victron_")
    return [
        [
            (int(v["can_id"], 16), bytes.fromhex(v["data_hex"]))
            for v in data["vectors"]
            if v["id"].startswith(g)
        ]
        for g in groups
    ]


def _frames() -> list[tuple[int, bytes]]:
    return [f for b in _broadcasts() for f in b]


def bench_codec(rounds: int = 20000) -> tuple[float, float, float, float]:
    """Frames/s: every frame decoded into the Reading; the daemon's per-frame path (decode
    deferred to the tick); `decode_fields` alone (what cantools does); cantools."""
    import cantools

    from bankwatch.daemon.config import parse_config
    from bankwatch.daemon.service import Monitor
    from bankwatch.drivers.clock import ManualClock

    broadcasts = _broadcasts()
    frames = _frames()
    monitor = Monitor(parse_config(CONFIG.format(interface="virtual", server="")), ManualClock())
    handle = monitor.links["can0"]._on_frame  # the handler the link calls per frame
    collect = monitor.collect
    # Honest figure: the Reading is rebuilt after every broadcast, so every frame is decoded
    # once (the daemon rebuilds once per tick, i.e. less often than this).
    t0 = time.perf_counter()
    for i in range(rounds):
        now = float(i)
        for broadcast in broadcasts:
            for can_id, data in broadcast:
                handle(can_id, data, False, now)
            collect()
    ours = rounds * len(frames) / (time.perf_counter() - t0)
    assert monitor.readings["p1"].pack_voltage_v is not None
    t0 = time.perf_counter()
    for i in range(rounds):
        now = float(i)
        for can_id, data in frames:
            handle(can_id, data, False, now)
    per_frame = rounds * len(frames) / (time.perf_counter() - t0)
    from bankwatch.drivers.pylontech_can import decode_fields

    t0 = time.perf_counter()
    for _ in range(rounds):
        for can_id, data in frames:
            decode_fields(can_id, data)
    decode_only = rounds * len(frames) / (time.perf_counter() - t0)

    db = cantools.database.load_file(str(REPO / "configs" / "dbc" / "pylontech.dbc"))
    decode = db.decode_message
    t0 = time.perf_counter()
    for _ in range(rounds):
        for can_id, data in frames:
            decode(can_id, data, allow_truncated=True)
    theirs = rounds * len(frames) / (time.perf_counter() - t0)
    return ours, per_frame, decode_only, theirs


async def _serve(port: int, fps: int, seconds: float) -> None:
    from bankwatch.drivers.simulator.socketcand import SocketcandServer

    frames = [(i, d.ljust(8, b"\x00")) for i, d in _frames()]
    async with SocketcandServer(["can0"], "127.0.0.1", port, max_client_buffer=1 << 20) as srv:
        print(srv.port, flush=True)
        await srv.wait_for_clients("can0", timeout=30)
        await asyncio.sleep(1.0)  # let the daemon settle
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = 0
        tick = 0.01
        n = 0
        while (elapsed := loop.time() - start) < seconds:
            due = int(elapsed * fps) + 1
            while sent < due:
                can_id, data = frames[n % len(frames)]
                srv.publish("can0", can_id, data)
                sent += 1
                n += 1
            await asyncio.sleep(tick)
        await asyncio.sleep(1.0)
        stats = srv.stats["can0"]
        print(
            json.dumps(
                {
                    "sent": sent,
                    "seconds": loop.time() - start - 1.0,
                    "server_dropped": stats.dropped,
                }
            ),
            flush=True,
        )


async def bench_saturated(seconds: float) -> dict[str, float]:
    from bankwatch.daemon.config import parse_config
    from bankwatch.daemon.service import Monitor
    from bankwatch.drivers.clock import SystemClock

    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.bench_can", "--serve", str(seconds)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    port = int(await asyncio.to_thread(proc.stdout.readline))
    server = f'host = "127.0.0.1"\nport = {port}\nsilence_timeout_s = 5'
    monitor = Monitor(
        parse_config(CONFIG.format(interface="socketcand", server=server)), SystemClock()
    )
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    link = monitor.links["can0"]
    while link.status.state != "up":
        await asyncio.sleep(0.05)
    cpu0, wall0 = time.process_time(), time.monotonic()
    line = await asyncio.to_thread(proc.stdout.readline)
    cpu1, wall1 = time.process_time(), time.monotonic()
    await asyncio.sleep(0.5)
    received = link.status.frames
    stop.set()
    await task
    proc.wait(10)
    report = json.loads(line)
    return {
        "sent": report["sent"],
        "received": received,
        "dropped": report["sent"] - received,
        "server_dropped": report["server_dropped"],
        "rate_fps": report["sent"] / report["seconds"],
        "cpu_pct_of_one_core": 100 * (cpu1 - cpu0) / (wall1 - wall0),
        "reopens": link.status.reopens,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--serve", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(_serve(0, SATURATED_FPS, args.serve))
        return
    import logging

    logging.basicConfig(level=logging.WARNING)
    ours, per_frame, decode_only, theirs = bench_codec()
    print(f"cantools decode_message with the DBC: {theirs:,.0f} frames/s (the 1x reference)")
    print(
        f"daemon per-frame path (lookup, length check, keep; decoded at the tick): "
        f"{per_frame:,.0f} frames/s = {per_frame / theirs:.1f}x cantools"
    )
    print(
        f"decode_fields alone (the same work as cantools): {decode_only:,.0f} frames/s "
        f"= {decode_only / theirs:.1f}x cantools"
    )
    print(
        f"worst case, the Reading rebuilt (checks and all) after every broadcast: "
        f"{ours:,.0f} frames/s = {ours / theirs:.2f}x cantools"
    )
    r = asyncio.run(bench_saturated(args.seconds))
    print(
        f"saturated bus over socketcand, {args.seconds:g} s at {r['rate_fps']:,.0f} frames/s: "
        f"sent {r['sent']:,.0f}, received {r['received']:,.0f}, dropped {r['dropped']:,.0f} "
        f"(server-side {r['server_dropped']:,.0f}), reopens {r['reopens']:.0f}, "
        f"CPU {r['cpu_pct_of_one_core']:.1f} % of one core"
    )


if __name__ == "__main__":
    main()
