"""The MQTT sink against a real Mosquitto: what a subscriber (Home Assistant, a script) sees.

Brokers are started by the fixtures on free loopback ports: anonymous, with a password file, and
with TLS from a CA made here with openssl. A real aiomqtt subscriber reads what arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from bankwatch.daemon.credentials import Secret
from bankwatch.daemon.detectors import ALERT_KINDS
from bankwatch.daemon.mqtt import MqttSink, Topics
from bankwatch.daemon.publish_config import MqttConfig
from bankwatch.daemon.topology import Topology
from tests.driven_bank import DrivenBank, quiet_demo_config
from tests.helpers import REPO
from tests.servers import Mosquitto, make_tls, mosquitto_fixture  # noqa: F401  (fixture)

TIMEOUT_S = 20.0


class Recorder:
    """A subscriber on `#` that keeps every message it gets."""

    def __init__(self, port: int, **client_args: Any) -> None:
        self.port = port
        self.client_args = client_args
        self.messages: list[aiomqtt.Message] = []
        self._new = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    async def _run(self, topic: str) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port, **self.client_args) as client:
            await client.subscribe(topic, qos=1)
            self.subscribed.set()
            async for m in client.messages:
                self.messages.append(m)
                self._new.set()

    async def start(self, topic: str = "#") -> None:
        self._task = asyncio.create_task(self._run(topic))
        await asyncio.wait_for(self.subscribed.wait(), TIMEOUT_S)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._task

    def on(self, topic: str) -> list[aiomqtt.Message]:
        return [m for m in self.messages if m.topic.value == topic]

    def json_on(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(m.payload) for m in self.on(topic)]

    async def wait_for(
        self, predicate: Callable[[], bool], what: str, timeout_s: float = TIMEOUT_S
    ) -> None:
        async def loop() -> None:
            while not predicate():
                self._new.clear()
                await self._new.wait()

        try:
            await asyncio.wait_for(loop(), timeout_s)
        except TimeoutError:
            seen = sorted({m.topic.value for m in self.messages})
            raise AssertionError(f"timed out waiting for {what}; topics seen: {seen}") from None


@contextlib.asynccontextmanager
async def running(sink: MqttSink, *, connect: bool = True) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(sink.run())
    try:
        if connect:
            await asyncio.wait_for(sink.connected.wait(), TIMEOUT_S)
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def make_sink(port: int, **cfg: Any) -> tuple[MqttSink, DrivenBank]:
    config = quiet_demo_config()
    mqtt = MqttConfig.model_validate({"host": "127.0.0.1", "port": port, "interval_s": 1, **cfg})
    sink = MqttSink(mqtt, Topology(config))
    return sink, DrivenBank([sink], config)


# --- the topic layout, as documented ---------------------------------------------------------


async def test_state_alerts_availability_and_discovery_arrive_as_documented(
    mosquitto: Mosquitto,
) -> None:
    rec = Recorder(mosquitto.port)
    await rec.start()
    sink, bank = make_sink(mosquitto.port)
    t = Topics("bankwatch", "demo")
    async with running(sink):
        bank.run(3)
        bank.cutoff("A2", "discharge_overcurrent")
        raised = bank.until_event("cutoff")
        assert raised.alert.subject == "demo/A/A2"
        await rec.wait_for(lambda: bool(rec.on(t.alert_events)), "the alert event")
        await rec.wait_for(
            lambda: any(p["alerts"] == ["cutoff"] for p in rec.json_on(t.battery_state("A2"))),
            "A2's state with the cutoff",
        )

        # Availability: online while connected.
        assert [m.payload for m in rec.on(t.availability)] == [b"online"]

        # The alert event: QoS 1, not retained, the JSON the daemon prints with --json.
        (ev_msg,) = rec.on(t.alert_events)
        assert ev_msg.qos == 1 and not ev_msg.retain
        ev = json.loads(ev_msg.payload)
        assert ev["event"] == "raised" and ev["kind"] == "cutoff"
        assert ev["subject"] == "demo/A/A2" and ev["severity"] == "critical"
        assert "discharge_overcurrent" in ev["message"]
        assert abs(ev["time"] - bank.clock.wall()) < 5  # wall time, not the monotonic clock

        # The active list.
        await rec.wait_for(
            lambda: any(p["count"] == 1 for p in rec.json_on(t.alerts_active)), "active list"
        )
        active = rec.json_on(t.alerts_active)[-1]
        assert [a["id"] for a in active["alerts"]] == ["cutoff:demo/A/A2"]

        # State: bank, strings, batteries with the canonical names.
        bank_state = rec.json_on(t.bank_state)[-1]
        assert bank_state["bank"] == "demo" and bank_state["shape"] == "4S2P"
        assert 40 < bank_state["voltage_v"] < 60
        assert 0 < bank_state["soc_pct"] <= 100
        assert bank_state["batteries_live"] == 8
        assert bank_state["alerts_active"] == 1 and bank_state["alerts_critical"] == 1
        string_a = rec.json_on(t.string_state("A"))[-1]
        assert string_a["string"] == "A" and 40 < string_a["voltage_v"] < 60
        a2 = rec.json_on(t.battery_state("A2"))[-1]
        assert a2["live"] is True and a2["protocol"] == "pylontech-can"
        assert a2["discharge_enabled"] is False
        assert len(a2["cell_voltages_v"]) == 4  # the simulator's 12.8 V packs: 4 LFP cells
        assert 10 < a2["pack_voltage_v"] < 15
        a1 = rec.json_on(t.battery_state("A1"))[-1]
        assert a1["alerts"] == [] and a1["discharge_enabled"] is True

        # Retained: a subscriber that comes later still gets the state and the active list.
        late = Recorder(mosquitto.port)
        await late.start()
        await late.wait_for(
            lambda: bool(late.on(t.bank_state) and late.on(t.alerts_active)), "retained state"
        )
        assert all(m.retain for m in late.on(t.bank_state))
        assert all(m.retain for m in late.on(t.battery_state("B4")))
        assert [m.payload for m in late.on(t.availability)] == [b"online"]
        assert not late.on(t.alert_events), "events are not retained"
        await late.stop()

        # Discovery, checked the way Home Assistant reads it.
        discovery = {
            m.topic.value: json.loads(m.payload)
            for m in rec.messages
            if m.topic.value.startswith("homeassistant/")
        }
        _check_discovery(discovery, rec)
    # A clean stop says offline (the broker would send the will only if we vanished).
    await rec.wait_for(lambda: rec.on(t.availability)[-1].payload == b"offline", "offline")
    await rec.stop()


def _check_discovery(discovery: dict[str, dict[str, Any]], rec: Recorder) -> None:
    assert all(re.fullmatch(r"homeassistant/(sensor|binary_sensor)/bankwatch_demo/[\w-]+/config", t)
               for t in discovery), sorted(discovery)  # fmt: skip
    devices: dict[str, dict[str, Any]] = {}
    for cfg in discovery.values():
        devices[cfg["device"]["identifiers"][0]] = cfg["device"]
    # One device per battery and one for the bank; batteries hang off the bank.
    assert set(devices) == {"bankwatch_demo"} | {
        f"bankwatch_demo_{b}" for b in ("A1", "A2", "A3", "A4", "B1", "B2", "B3", "B4")
    }
    for ident, dev in devices.items():
        if ident != "bankwatch_demo":
            assert dev["via_device"] == "bankwatch_demo"
    uids = [cfg["unique_id"] for cfg in discovery.values()]
    assert len(uids) == len(set(uids)), "unique ids are unique"
    by_uid = {cfg["unique_id"]: cfg for cfg in discovery.values()}
    volt = by_uid["bankwatch_demo_B2_pack_voltage_v"]
    assert (volt["device_class"], volt["unit_of_measurement"], volt["state_class"]) == (
        "voltage", "V", "measurement",
    )  # fmt: skip
    soc = by_uid["bankwatch_demo_soc_pct"]
    assert (soc["device_class"], soc["unit_of_measurement"]) == ("battery", "%")
    energy = by_uid["bankwatch_demo_energy_wh"]
    assert (energy["device_class"], energy["unit_of_measurement"]) == ("energy_storage", "Wh")
    for b in ("A1", "B4"):
        for kind in ALERT_KINDS.values():
            if "battery" in kind.ha_sensors:
                bs = by_uid[f"bankwatch_demo_{b}_{kind.name}"]
                assert bs["device_class"] == "problem"
    # Every entity reads a topic that carries the key its template names, and the binary
    # sensor of A2's cutoff renders ON from the last state published.
    last: dict[str, dict[str, Any]] = {}
    for m in rec.messages:
        if not m.topic.value.startswith("homeassistant/"):
            with contextlib.suppress(ValueError):
                last[m.topic.value] = json.loads(m.payload)
    for cfg in discovery.values():
        assert cfg["availability_topic"] == "bankwatch/demo/availability"
        payload = last.get(cfg["state_topic"])
        assert payload is not None, f"{cfg['unique_id']}: nothing on {cfg['state_topic']}"
        keys = re.findall(r"value_json\.(\w+)", cfg["value_template"])
        assert keys and all(k in payload for k in keys), (cfg["unique_id"], keys)
    a2_cutoff = by_uid["bankwatch_demo_A2_cutoff"]
    assert "'cutoff' in value_json.alerts" in a2_cutoff["value_template"]
    assert "cutoff" in last[a2_cutoff["state_topic"]]["alerts"]


async def test_discovery_is_sent_again_when_home_assistant_comes_online(
    mosquitto: Mosquitto,
) -> None:
    rec = Recorder(mosquitto.port)
    await rec.start("homeassistant/#")
    sink, bank = make_sink(mosquitto.port)
    topic = "homeassistant/sensor/bankwatch_demo/bankwatch_demo_A1_soc_pct/config"
    async with running(sink):
        bank.run(2)
        await rec.wait_for(lambda: len(rec.on(topic)) == 1, "first discovery")
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as ha:
            await ha.publish("homeassistant/status", b"online", qos=1)
        await rec.wait_for(lambda: len(rec.on(topic)) == 2, "discovery again")
    assert all(m.retain is False for m in rec.on(topic))  # live delivery to a subscriber


async def test_discovery_can_be_turned_off(mosquitto: Mosquitto) -> None:
    rec = Recorder(mosquitto.port)
    await rec.start()
    sink, bank = make_sink(mosquitto.port, discovery=False)
    async with running(sink):
        bank.run(3)
        await rec.wait_for(lambda: bool(rec.on("bankwatch/demo/state")), "state")
    assert not [m for m in rec.messages if m.topic.value.startswith("homeassistant/")]


# --- outages -------------------------------------------------------------------------------------


async def _persistent_subscriber(port: int, name: str) -> None:
    """Register a persistent session (QoS 1 on the events) that the broker keeps over a restart."""
    async with aiomqtt.Client("127.0.0.1", port, identifier=name, clean_session=False) as c:
        await c.subscribe("bankwatch/demo/alerts/events", qos=1)


async def test_broker_restart_reconnects_and_delivers_alerts_raised_while_it_was_down(
    tmp_path: Path,
) -> None:
    broker = Mosquitto(tmp_path / "broker", persistence=True)
    broker.start()
    try:
        await _persistent_subscriber(broker.port, "watcher")
        sink, bank = make_sink(broker.port)
        async with running(sink):
            bank.run(2)
            broker.stop()
            await asyncio.wait_for(_cleared(sink.connected), TIMEOUT_S)
            bank.cutoff("B1")
            raised = bank.until_event("cutoff")
            assert sink.events_published == 0
            broker.start()
            await asyncio.wait_for(sink.connected.wait(), TIMEOUT_S * 2)
            assert sink.connections == 2
            rec = Recorder(broker.port, identifier="watcher", clean_session=False)
            await rec.start("bankwatch/demo/alerts/events")
            await rec.wait_for(lambda: bool(rec.messages), "the alert raised during the outage")
            await rec.stop()
        (msg,) = rec.messages
        ev = json.loads(msg.payload)
        assert (ev["event"], ev["id"]) == ("raised", raised.alert.id)
    finally:
        broker.stop()


async def test_alert_queue_overflow_drops_the_oldest_and_says_how_many(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = Mosquitto(tmp_path / "broker", persistence=True)
    broker.start()
    await _persistent_subscriber(broker.port, "watcher")
    broker.stop()
    try:
        sink, bank = make_sink(broker.port, alert_queue=3)
        async with running(sink, connect=False):
            before = len(bank.events)
            for name in ["A1", "A3", "B2", "B3", "B4"]:  # five cutoffs while no broker listens
                bank.cutoff(name)
                bank.until_event("cutoff")
            # each cutoff may bring other alerts with it (a string down upsets the sharing)
            handed = bank.events[before:]
            assert len(handed) >= 5
            dropped = len(handed) - 3
            assert sink.events_dropped == dropped
            broker.start()
            await asyncio.wait_for(sink.connected.wait(), TIMEOUT_S * 2)
            rec = Recorder(broker.port, identifier="watcher", clean_session=False)
            await rec.start("bankwatch/demo/alerts/events")
            await rec.wait_for(lambda: len(rec.messages) >= 3, "the queued events")
            await asyncio.sleep(0.3)
            await rec.stop()
        got = [(json.loads(m.payload)["event"], json.loads(m.payload)["id"]) for m in rec.messages]
        newest = [(ev.event, ev.alert.id) for ev in handed[-3:]]
        assert got == newest, "the newest three, in order"
        text = caplog.text
        assert "alert queue full" in text
        assert f"{dropped} alert event(s) were dropped while the broker was away" in text
    finally:
        broker.stop()


async def _cleared(event: asyncio.Event) -> None:
    while event.is_set():
        await asyncio.sleep(0.02)


async def test_last_will_says_offline_when_the_daemon_dies(mosquitto: Mosquitto) -> None:
    """`bankwatch demo --mqtt URL` in a process of its own, killed without a chance to say
    goodbye: the broker publishes the will."""
    rec = Recorder(mosquitto.port)
    await rec.start("bankwatch/demo/#")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bankwatch.daemon.cli", "demo", "--json", "--speed", "5",
         "--mqtt", f"mqtt://127.0.0.1:{mosquitto.port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=REPO,
        env={**os.environ, "STATE_DIRECTORY": str(mosquitto.dir)},
    )  # fmt: skip
    try:
        avail = "bankwatch/demo/availability"
        await rec.wait_for(lambda: bool(rec.on(avail)), "online", timeout_s=60)
        await rec.wait_for(lambda: bool(rec.on("bankwatch/demo/battery/B2/state")), "state")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        await rec.wait_for(lambda: rec.on(avail)[-1].payload == b"offline", "the will")
        assert [m.payload for m in rec.on(avail)] == [b"online", b"offline"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        await rec.stop()


# --- authentication and TLS ---------------------------------------------------------------------


async def test_password_broker(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    broker = Mosquitto(tmp_path / "broker", users={"bankwatch": "Pw-0f-the-broker"})
    broker.start()
    try:
        rec = Recorder(broker.port, username="bankwatch", password="Pw-0f-the-broker")
        await rec.start()
        sink, bank = make_sink(broker.port, username="bankwatch")
        sink.password = Secret("Pw-0f-the-broker")
        async with running(sink):
            bank.run(2)
            await rec.wait_for(lambda: bool(rec.on("bankwatch/demo/state")), "state")
        await rec.stop()

        wrong, bank = make_sink(broker.port, username="bankwatch")
        wrong.password = Secret("not-the-password-42")
        async with running(wrong, connect=False):
            bank.run(2)
            await asyncio.sleep(1.5)
            assert not wrong.connected.is_set()
        assert "cannot connect to 127.0.0.1" in caplog.text
        assert "not-the-password-42" not in caplog.text
        assert "Pw-0f-the-broker" not in caplog.text
    finally:
        broker.stop()


async def test_tls_broker_with_client_certificate(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    broker = Mosquitto(tmp_path / "broker", tls=tls)
    broker.start()
    try:
        sink, bank = make_sink(
            broker.port,
            tls=True,
            ca_file=str(tls.ca),
            cert_file=str(tls.client_cert),
            key_file=str(tls.client_key),
        )
        async with running(sink):
            bank.run(2)
            # Read back with mosquitto_sub over TLS: a real client, and the retained state.
            out = await asyncio.to_thread(
                subprocess.run,
                ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port),
                 "--cafile", str(tls.ca), "--cert", str(tls.client_cert),
                 "--key", str(tls.client_key), "-t", "bankwatch/demo/state", "-C", "1",
                 "-W", "20"],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            assert out.returncode == 0, out.stderr
            assert json.loads(out.stdout)["bank"] == "demo"
        # Without a client certificate this broker lets nobody in.
        no_cert, bank = make_sink(broker.port, tls=True, ca_file=str(tls.ca))
        async with running(no_cert, connect=False):
            await asyncio.sleep(1.5)
            assert not no_cert.connected.is_set()
        # A CA that did not sign the broker's certificate: refused too.
        other = make_tls(tmp_path / "other")
        wrong_ca, bank = make_sink(
            broker.port,
            tls=True,
            ca_file=str(other.ca),
            cert_file=str(tls.client_cert),
            key_file=str(tls.client_key),
        )
        async with running(wrong_ca, connect=False):
            await asyncio.sleep(1.5)
            assert not wrong_ca.connected.is_set()
    finally:
        broker.stop()
