"""Benchmark: InfluxDB backfill after an outage (points/s) and MQTT messages/s.

Not collected by pytest (the name does not start with test_). Run from the top folder:

    .venv/bin/python tests/bench/bench_publish.py

It starts its own Mosquitto and influxd on free loopback ports (Debian's packages), drives the
demo bank (48 V 4S2P: 43 points per sample, the bank, 2 strings, 8 batteries and their 32
cells) and prints the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bankwatch.daemon.detectors import Alert, AlertEvent
from bankwatch.daemon.influx import InfluxSink, V1Writer
from bankwatch.daemon.mqtt import MqttSink
from bankwatch.daemon.publish_config import InfluxConfig, MqttConfig
from bankwatch.daemon.topology import Topology
from tests.driven_bank import DrivenBank, quiet_demo_config
from tests.servers import Influxd, Mosquitto

SAMPLES = 4000  # 4000 samples x 43 points = 172,000 points


async def bench_backfill(workdir: Path) -> None:
    server = Influxd(workdir / "influx")
    server.start()
    server.query("CREATE DATABASE bench")
    server.stop()
    config = quiet_demo_config()
    settings = InfluxConfig(
        url=server.url, database="bench", interval_s=1, flush_interval_s=0.2,
        spool_dir=str(workdir / "spool"), spool_max_mb=500,
    )  # fmt: skip
    sink = InfluxSink(settings, Topology(config), V1Writer(server.url, "bench"), workdir / "spool")
    bank = DrivenBank([sink], config, start_wall=time.time() - SAMPLES)
    task = asyncio.create_task(sink.run())
    for i in range(SAMPLES):
        bank.step()
        if i % 100 == 0:
            await asyncio.sleep(0)
    while sink._snapshots or sink._buffer:
        await asyncio.sleep(0.05)
    assert sink.spool is not None
    spooled = sink.spool.pending
    size_mb = sink.spool.size_bytes / 1e6
    server.start()
    # The sink retries on its backoff (up to a minute after a long outage): time the backfill
    # from its first successful write.
    while sink.points_written == 0:
        await asyncio.sleep(0.001)
    t0 = time.perf_counter()
    first = sink.points_written
    await sink.wait_drained(600)
    dt = time.perf_counter() - t0
    spooled -= first
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    in_db = sum(
        server.count(m, f, "bench")
        for m, f in (("bank", "voltage_v"), ("string", "expected_share_pct"),
                     ("battery", "live"), ("cell", "voltage_v"))
    )  # fmt: skip
    server.stop()
    print(
        f"influxdb backfill: {spooled} points ({size_mb:.1f} MB of spool) written back in "
        f"{dt:.2f} s = {spooled / dt:,.0f} points/s (batches of {settings.batch_size}); "
        f"{in_db} points in the database"
    )


async def bench_mqtt(workdir: Path) -> None:
    broker = Mosquitto(workdir / "mqtt")
    broker.start()
    config = quiet_demo_config()
    n_events = 5000
    sink = MqttSink(
        MqttConfig(host="127.0.0.1", port=broker.port, interval_s=1e-6, alert_queue=n_events,
                   discovery=False),
        Topology(config),
    )  # fmt: skip
    bank = DrivenBank([sink], config)
    bank.step()
    # QoS 1 alert events, each acknowledged by the broker before the next: a backlog that
    # built up during an outage, sent when the broker is there.
    alert = Alert("bench:demo", "bench", "demo", "warning", "a benchmark alert", {}, 0.0)
    ev = AlertEvent("raised", alert, 0.0)
    state = bank.monitor.state
    assert state is not None
    tick = bank.monitor.snapshot(state, [ev])
    for _ in range(n_events):
        sink.on_tick(tick)
    task = asyncio.create_task(sink.run())
    t0 = time.perf_counter()
    await asyncio.wait_for(sink.connected.wait(), 30)
    while sink.events_published < n_events:
        await asyncio.sleep(0.005)
    dt = time.perf_counter() - t0
    print(f"mqtt: {n_events} alert events (QoS 1, acknowledged) in {dt:.2f} s = "
          f"{n_events / dt:,.0f} messages/s")  # fmt: skip
    # Retained state (QoS 0): 11 messages per tick for this bank (bank, 2 strings, 8 batteries).
    ticks = 500
    start = sink.messages_published
    t0 = time.perf_counter()
    for _ in range(ticks):
        bank.step()
        await asyncio.sleep(0)
        while sink._state_due:
            await asyncio.sleep(0)
    dt = time.perf_counter() - t0
    sent = sink.messages_published - start
    print(
        f"mqtt: {ticks} ticks of state, {sent} retained messages in {dt:.2f} s = "
        f"{sent / dt:,.0f} messages/s (including the simulation and the monitor's tick)"
    )
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    broker.stop()


async def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        await bench_backfill(Path(d))
        await bench_mqtt(Path(d))


if __name__ == "__main__":
    asyncio.run(main())
