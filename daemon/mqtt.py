"""MQTT: the bank's state and alerts on a broker, and Home Assistant discovery.

Topics (all built by `Topics`; PREFIX is `topic_prefix`, default `bankwatch`; BANK the bank's
name):

    PREFIX/BANK/availability             "online" / "offline"; retained; the last will
    PREFIX/BANK/state                    bank state, JSON; retained
    PREFIX/BANK/string/NAME/state        one series string, JSON; retained
    PREFIX/BANK/battery/NAME/state       one battery, JSON (Reading.to_json names); retained
    PREFIX/BANK/alerts/active            {"count": n, "alerts": [...]}; retained
    PREFIX/BANK/alerts/events            one alert event (raised, updated, cleared); QoS 1,
                                         not retained
    homeassistant/.../config             discovery (retained), when `discovery` is on

bankwatch subscribes to one topic only, Home Assistant's `homeassistant/status`, to send
discovery again when Home Assistant starts; it accepts no commands.

Delivery: state is a snapshot, so only the latest is kept and it is published again on every
reconnect. Alert events are queued (up to `alert_queue`) while the broker is away and published
in order when it returns, each removed from the queue only when the broker has acknowledged it
(QoS 1: at least once; an event in flight when the connection drops may arrive twice). A full
queue drops its oldest event, counted and logged; the retained active list, published on every
reconnect, still tells what is active now.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import ssl
from collections import deque
from collections.abc import Mapping
from importlib import metadata
from typing import TYPE_CHECKING, Any

import aiomqtt

from bankwatch.daemon.credentials import Secret
from bankwatch.daemon.detectors import ALERT_KINDS, Alert, HaSensor
from bankwatch.daemon.publish_config import MqttConfig
from bankwatch.daemon.topology import BankState, BatteryNode, BatteryState, StringState, Topology
from bankwatch.drivers.backoff import Backoff

if TYPE_CHECKING:
    from bankwatch.daemon.tick import Tick

__all__ = [
    "MqttSink",
    "Topics",
    "active_payload",
    "bank_payload",
    "battery_payload",
    "discovery_messages",
    "string_payload",
]

log = logging.getLogger(__name__)

_BACKOFF_FIRST_S = 1.0
_BACKOFF_MAX_S = 60.0
_PUBLISH_TIMEOUT_S = 10.0
_OFFLINE_TIMEOUT_S = 2.0


def _version() -> str:
    try:
        return metadata.version("bankwatch")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def _slug(text: str) -> str:
    """An id Home Assistant accepts in a discovery topic and an entity id."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


class Topics:
    """Every topic bankwatch publishes to or reads, in one place."""

    def __init__(self, prefix: str, bank: str, discovery_prefix: str = "homeassistant") -> None:
        self.base = f"{prefix}/{bank}"
        self.discovery_prefix = discovery_prefix
        self.node_id = _slug(f"bankwatch_{bank}")

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def bank_state(self) -> str:
        return f"{self.base}/state"

    def string_state(self, name: str) -> str:
        return f"{self.base}/string/{name}/state"

    def battery_state(self, name: str) -> str:
        return f"{self.base}/battery/{name}/state"

    @property
    def alerts_active(self) -> str:
        return f"{self.base}/alerts/active"

    @property
    def alert_events(self) -> str:
        return f"{self.base}/alerts/events"

    @property
    def ha_status(self) -> str:
        return f"{self.discovery_prefix}/status"

    def discovery(self, component: str, object_id: str) -> str:
        return f"{self.discovery_prefix}/{component}/{self.node_id}/{_slug(object_id)}/config"


# --- payloads: pure functions of the state ------------------------------------------------------


def _r(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _kinds(alerts: list[Alert], subject: str) -> list[str]:
    return sorted({a.kind for a in alerts if a.subject == subject})


def bank_payload(
    state: BankState, topology: Topology, alerts: list[Alert], wall: float
) -> dict[str, Any]:
    batteries = state.batteries()
    return {
        "time": round(wall, 3),
        "bank": state.name,
        "shape": topology.shape,
        "nominal_voltage_v": topology.nominal_voltage_v,
        "capacity_ah": topology.capacity_ah,
        "voltage_v": _r(state.voltage_v, 3),
        "current_a": _r(state.current_a, 2),
        "power_w": _r(state.power_w, 1),
        "soc_pct": _r(state.soc_pct, 1),
        "energy_wh": _r(state.energy_wh, 0),
        "batteries_live": sum(b.live for b in batteries),
        "batteries": len(batteries),
        "alerts_active": len(alerts),
        "alerts_critical": sum(a.severity == "critical" for a in alerts),
        "alerts": _kinds(alerts, state.name),
        "alerts_anywhere": sorted({a.kind for a in alerts}),
    }


def string_payload(
    state: BankState, string: StringState, alerts: list[Alert], wall: float
) -> dict[str, Any]:
    power = (
        None
        if string.voltage_v is None or string.current_a is None
        else string.voltage_v * string.current_a
    )
    return {
        "time": round(wall, 3),
        "bank": state.name,
        "string": string.name,
        "voltage_v": _r(string.voltage_v, 3),
        "current_a": _r(string.current_a, 2),
        "power_w": _r(power, 1),
        "soc_pct": _r(string.soc_pct, 1),
        "energy_wh": _r(string.energy_wh, 0),
        "batteries_live": string.live,
        "batteries": len(string.batteries),
        "alerts": _kinds(alerts, string.path),
    }


# Keys Home Assistant's sensors read: always present (null when unknown, which Home Assistant
# shows as "unknown"), so a template never fails on a missing key.
_BATTERY_KEYS = (
    "pack_voltage_v",
    "current_a",
    "power_w",
    "soc_pct",
    "soh_pct",
    "remaining_ah",
    "temperature_c",
    "cell_voltage_min_v",
    "cell_voltage_max_v",
    "cycles",
    "charge_enabled",
    "discharge_enabled",
)


def battery_payload(
    state: BankState,
    battery: BatteryState,
    alerts: list[Alert],
    wall: float,
    reading_wall: float | None,
) -> dict[str, Any]:
    src = battery.node.source
    out: dict[str, Any] = {
        "time": round(wall, 3),
        "bank": state.name,
        "string": battery.node.string,
        "battery": battery.name,
        "protocol": src.protocol if src is not None else None,
        "live": battery.live,
        "age_s": _r(battery.age_s, 1),
        "reading_time": _r(reading_wall, 3),
        "alerts": _kinds(alerts, battery.path),
    }
    out.update(dict.fromkeys(_BATTERY_KEYS))
    r = battery.reading
    if r is not None and battery.live:
        out.update(r.to_json())
        out["temperature_c"] = r.temperature_c
        out["cell_voltage_min_v"] = r.min_cell_v
        out["cell_voltage_max_v"] = r.max_cell_v
    return out


def active_payload(alerts: list[Alert], to_wall: float) -> dict[str, Any]:
    """The active alerts, most severe first. `to_wall` turns monitor time into wall time."""
    return {
        "count": len(alerts),
        "alerts": [
            {
                "id": a.id,
                "kind": a.kind,
                "severity": a.severity,
                "subject": a.subject,
                "message": a.message,
                "raised_at": round(a.raised_at + to_wall, 3),
                "evidence": dict(a.evidence),
            }
            for a in alerts
        ],
    }


# --- Home Assistant discovery ---------------------------------------------------------------------

# (key, name, device_class, unit, state_class)
_Sensor = tuple[str, str, str | None, str | None, str | None]
_BATTERY_SENSORS: tuple[_Sensor, ...] = (
    ("pack_voltage_v", "Voltage", "voltage", "V", "measurement"),
    ("current_a", "Current", "current", "A", "measurement"),
    ("power_w", "Power", "power", "W", "measurement"),
    ("soc_pct", "State of charge", "battery", "%", "measurement"),
    ("soh_pct", "State of health", None, "%", "measurement"),
    ("remaining_ah", "Remaining capacity", None, "Ah", "measurement"),
    ("temperature_c", "Temperature", "temperature", "°C", "measurement"),
    ("cell_voltage_min_v", "Lowest cell voltage", "voltage", "V", "measurement"),
    ("cell_voltage_max_v", "Highest cell voltage", "voltage", "V", "measurement"),
    ("cycles", "Cycles", None, None, "total_increasing"),
)
_BANK_SENSORS: tuple[_Sensor, ...] = (
    ("voltage_v", "Voltage", "voltage", "V", "measurement"),
    ("current_a", "Current", "current", "A", "measurement"),
    ("power_w", "Power", "power", "W", "measurement"),
    ("soc_pct", "State of charge", "battery", "%", "measurement"),
    ("energy_wh", "Stored energy", "energy_storage", "Wh", "measurement"),
    ("batteries_live", "Batteries live", None, None, "measurement"),
)
_STRING_SENSORS: tuple[_Sensor, ...] = (
    ("voltage_v", "Voltage", "voltage", "V", "measurement"),
    ("current_a", "Current", "current", "A", "measurement"),
    ("power_w", "Power", "power", "W", "measurement"),
    ("soc_pct", "State of charge", "battery", "%", "measurement"),
)


def _sensor(
    topics: Topics,
    device: dict[str, Any],
    unique_id: str,
    name: str,
    state_topic: str,
    key: str,
    device_class: str | None,
    unit: str | None,
    state_class: str | None,
) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": name,
        "unique_id": unique_id,
        "state_topic": state_topic,
        "value_template": f"{{{{ value_json.{key} }}}}",
        "availability_topic": topics.availability,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device,
        "origin": {"name": "bankwatch", "sw_version": _version()},
    }
    if device_class:
        cfg["device_class"] = device_class
    if unit:
        cfg["unit_of_measurement"] = unit
    if state_class:
        cfg["state_class"] = state_class
    return cfg


def _problem(
    topics: Topics,
    device: dict[str, Any],
    unique_id: str,
    name: str,
    state_topic: str,
    template: str,
    device_class: str = "problem",
) -> dict[str, Any]:
    return {
        "name": name,
        "unique_id": unique_id,
        "state_topic": state_topic,
        "value_template": template,
        "payload_on": "ON",
        "payload_off": "OFF",
        "device_class": device_class,
        "availability_topic": topics.availability,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device,
        "origin": {"name": "bankwatch", "sw_version": _version()},
    }


def _kind_template(kind: str, field: str = "alerts") -> str:
    return f"{{{{ 'ON' if '{kind}' in value_json.{field} else 'OFF' }}}}"


_Message = tuple[str, dict[str, Any]]

# Per place a kind's binary sensor can be (see detectors.HaSensor): the suffix of its unique id
# and the state key its template looks the kind up in.
_HA_SENSOR_KEYS: dict[HaSensor, tuple[str, str]] = {
    "battery": ("", "alerts"),
    "bank": ("", "alerts"),
    "bank-any": ("_anywhere", "alerts_anywhere"),
}


def discovery_messages(topology: Topology, topics: Topics) -> list[_Message]:
    """(topic, config) for every Home Assistant entity: a device for the bank (with its strings'
    sensors) and one per battery, linked to the bank's device."""
    bank_id = _slug(f"bankwatch_{topology.name}")
    bank_device = _bank_device(topology, bank_id)
    out = _bank_entities(topology, topics, bank_id, bank_device)
    for s in topology.strings:
        out += _sensors(
            topics,
            bank_device,
            _slug(f"{bank_id}_string_{s.name}"),
            f"String {s.name} ",
            topics.string_state(s.name),
            _STRING_SENSORS,
        )
        for b in s.batteries:
            bid = _slug(f"{bank_id}_{b.name}")
            device = _battery_device(topology.name, bank_id, bid, b)
            state_topic = topics.battery_state(b.name)
            out += _sensors(topics, device, bid, "", state_topic, _BATTERY_SENSORS)
            out += _alert_sensors(topics, device, bid, state_topic, ("battery",))
    return out


def _bank_device(topology: Topology, bank_id: str) -> dict[str, Any]:
    return {
        "identifiers": [bank_id],
        "name": f"Bank {topology.name}",
        "manufacturer": "bankwatch",
        "model": f"{topology.shape} {topology.nominal_voltage_v:g} V {topology.capacity_ah:g} Ah",
        "sw_version": _version(),
    }


def _battery_device(bank: str, bank_id: str, bid: str, b: BatteryNode) -> dict[str, Any]:
    return {
        "identifiers": [bid],
        "name": f"{bank} {b.name}",
        "manufacturer": b.model.manufacturer or "unknown",
        "model": f"{b.model_name} ({b.model.nominal_voltage_v:g} V "
        f"{b.model.capacity_ah:g} Ah {b.model.chemistry})",
        "via_device": bank_id,
    }


def _bank_entities(
    topology: Topology, topics: Topics, bank_id: str, device: dict[str, Any]
) -> list[_Message]:
    """The bank's sensors, its count of active alerts (with the list as attributes), one
    "Problem" for any alert, and the alert kinds' binary sensors on the bank's device."""
    out = _sensors(topics, device, bank_id, "", topics.bank_state, _BANK_SENSORS)
    uid = f"{bank_id}_alerts_active"
    active = _sensor(
        topics, device, uid, "Active alerts", topics.alerts_active, "count", None, None, None
    )
    active["json_attributes_topic"] = topics.alerts_active
    out.append((topics.discovery("sensor", uid), active))
    uid = f"{bank_id}_problem"
    template = "{{ 'ON' if value_json.alerts_active > 0 else 'OFF' }}"
    problem = _problem(topics, device, uid, "Problem", topics.bank_state, template)
    out.append((topics.discovery("binary_sensor", uid), problem))
    return out + _alert_sensors(topics, device, bank_id, topics.bank_state, ("bank", "bank-any"))


def _sensors(
    topics: Topics,
    device: dict[str, Any],
    uid_prefix: str,
    name_prefix: str,
    state_topic: str,
    table: tuple[_Sensor, ...],
) -> list[_Message]:
    """One sensor per row of `table`, each reading its key of `state_topic`. A name prefix
    lowers the row name's first letter ("String A state of charge")."""
    out: list[_Message] = []
    for key, name, dc, unit, sc in table:
        uid = f"{uid_prefix}_{key}"
        if name_prefix:
            name = f"{name_prefix}{name[0].lower()}{name[1:]}"
        cfg = _sensor(topics, device, uid, name, state_topic, key, dc, unit, sc)
        out.append((topics.discovery("sensor", uid), cfg))
    return out


def _alert_sensors(
    topics: Topics,
    device: dict[str, Any],
    uid_prefix: str,
    state_topic: str,
    places: tuple[HaSensor, ...],
) -> list[_Message]:
    """A binary sensor for each alert kind that has one in these places (ALERT_KINDS)."""
    out: list[_Message] = []
    for kind in ALERT_KINDS.values():
        for place in places:
            if place not in kind.ha_sensors:
                continue
            suffix, key = _HA_SENSOR_KEYS[place]
            uid = f"{uid_prefix}_{kind.name}{suffix}"
            template = _kind_template(kind.name, key)
            cfg = _problem(
                topics, device, uid, kind.ha_name, state_topic, template, kind.ha_device_class
            )
            out.append((topics.discovery("binary_sensor", uid), cfg))
    return out


# --- the sink ----------------------------------------------------------------------------------


def _json(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False, default=str).encode()


class MqttSink:
    """Publishes state and alerts; its own task owns the broker connection."""

    def __init__(
        self,
        config: MqttConfig,
        topology: Topology,
        *,
        password: Secret | None = None,
    ) -> None:
        self.config = config
        self.topology = topology
        self.password = password
        self.topics = Topics(config.topic_prefix, topology.name, config.discovery_prefix)
        self.connected = asyncio.Event()  # set while the session is up (tests watch it)
        self.events_published = 0
        self.events_dropped = 0
        self.messages_published = 0
        self.connections = 0
        self._events: deque[tuple[int, bytes]] = deque()  # (sequence number, payload)
        self._seq = 0
        self._dropped_since_report = 0
        self._states: list[tuple[str, bytes]] = []
        self._active: bytes | None = None
        self._last_state_at: float | None = None
        self._state_due = False
        self._active_due = False
        self._discovery_due = False
        self._wake = asyncio.Event()

    def __repr__(self) -> str:
        return f"MqttSink({self.config.host}:{self.config.effective_port})"

    # --- called by the monitor, on the loop: never blocks ----------------------------------------

    def on_tick(self, tick: Tick) -> None:
        state, events = tick.state, tick.events
        to_wall = tick.to_wall
        for ev in events:
            if len(self._events) >= self.config.alert_queue:
                self._events.popleft()
                self.events_dropped += 1
                if self._dropped_since_report == 0:
                    log.warning(
                        "mqtt: alert queue full (%d events, broker away): dropping the oldest",
                        self.config.alert_queue,
                    )
                self._dropped_since_report += 1
            self._seq += 1
            self._events.append((self._seq, _json(ev.to_json(round(ev.at + to_wall, 3)))))
        due = (
            events
            or self._last_state_at is None
            or state.at - self._last_state_at >= self.config.interval_s
        )
        if due:
            self._last_state_at = state.at
            alerts = list(tick.alerts)
            self._states = self._state_messages(state, alerts, state.at + to_wall, to_wall)
            self._active = _json(active_payload(alerts, to_wall))
            self._state_due = True
            self._active_due = self._active_due or bool(events)
            self._wake.set()

    def _state_messages(
        self, state: BankState, alerts: list[Alert], wall: float, to_wall: float
    ) -> list[tuple[str, bytes]]:
        t = self.topics
        out = [(t.bank_state, _json(bank_payload(state, self.topology, alerts, wall)))]
        for s in state.strings:
            out.append((t.string_state(s.name), _json(string_payload(state, s, alerts, wall))))
            for b in s.batteries:
                rw = None if b.reading is None else b.reading.at + to_wall
                out.append(
                    (t.battery_state(b.name), _json(battery_payload(state, b, alerts, wall, rw)))
                )
        return out

    # --- the connection --------------------------------------------------------------------------

    def _client(self) -> aiomqtt.Client:
        c = self.config
        tls: aiomqtt.TLSParameters | None = None
        if c.tls:
            tls = aiomqtt.TLSParameters(
                ca_certs=c.ca_file,
                certfile=c.cert_file,
                keyfile=c.key_file,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        return aiomqtt.Client(
            c.host,
            c.effective_port,
            username=c.username,
            password=self.password.reveal() if self.password is not None else None,
            identifier=c.client_id or f"bankwatch-{self.topology.name}",
            will=aiomqtt.Will(self.topics.availability, b"offline", qos=1, retain=True),
            keepalive=c.keepalive_s,
            timeout=_PUBLISH_TIMEOUT_S,
            tls_params=tls,
            logger=log,
        )

    async def run(self) -> None:
        backoff = Backoff(_BACKOFF_FIRST_S, _BACKOFF_MAX_S)
        was_up: bool | None = None  # log once per transition, not once per attempt
        where = f"{self.config.host}:{self.config.effective_port}"
        while True:
            try:
                async with self._client() as client:
                    self.connections += 1
                    log.info("mqtt: connected to %s", where)
                    was_up = True
                    backoff.reset()
                    await self._session(client)
            except aiomqtt.MqttError as exc:
                if was_up is not False:
                    log.warning(
                        "mqtt: %s %s: %s; retrying with backoff (up to %g s)",
                        "lost the connection to" if was_up else "cannot connect to",
                        where,
                        exc,
                        _BACKOFF_MAX_S,
                    )
                else:
                    log.debug("mqtt: still cannot connect to %s: %s", where, exc)
                was_up = False
            finally:
                self.connected.clear()
            await asyncio.sleep(backoff.next())

    async def _session(self, client: aiomqtt.Client) -> None:
        try:
            await self._publish(client, self.topics.availability, b"online", qos=1, retain=True)
            if self.config.discovery:
                await asyncio.wait_for(
                    client.subscribe(self.topics.ha_status, qos=1), _PUBLISH_TIMEOUT_S
                )
                self._discovery_due = True
            # Everything retained is sent again: the broker may have lost it (no persistence).
            self._state_due = self._active_due = True
            self._wake.set()
            if self._dropped_since_report:
                log.warning(
                    "mqtt: %d alert event(s) were dropped while the broker was away "
                    "(queue of %d); the retained active list is current",
                    self._dropped_since_report,
                    self.config.alert_queue,
                )
                self._dropped_since_report = 0
            self.connected.set()
            listen = asyncio.create_task(self._listen(client), name="mqtt-listen")
            send = asyncio.create_task(self._sender(client), name="mqtt-send")
            try:
                done, _ = await asyncio.wait({listen, send}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (listen, send):
                    task.cancel()
                # Bounded: a stop must never hang on a task that is slow to let go (seen in
                # tests: an unbounded gather here could wait forever during a cancel).
                await asyncio.wait({listen, send}, timeout=_PUBLISH_TIMEOUT_S)
            for task in done:
                task.result()  # the MqttError that ended the session
            raise aiomqtt.MqttError("session ended")
        except asyncio.CancelledError:
            # A clean stop: say so, since the broker sends the will only when we vanish.
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await asyncio.wait_for(
                    client.publish(self.topics.availability, b"offline", qos=1, retain=True),
                    _OFFLINE_TIMEOUT_S,
                )
                log.info("mqtt: published offline")
            raise

    async def _publish(
        self, client: aiomqtt.Client, topic: str, payload: bytes, *, qos: int, retain: bool
    ) -> None:
        await asyncio.wait_for(
            client.publish(topic, payload, qos=qos, retain=retain), _PUBLISH_TIMEOUT_S
        )
        self.messages_published += 1

    async def _listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            # A retained "online" is old news; we sent discovery when we connected.
            if (
                message.topic.matches(self.topics.ha_status)
                and message.payload == b"online"
                and not message.retain
            ):
                log.info("mqtt: Home Assistant is online: sending discovery again")
                self._discovery_due = self._state_due = True
                self._wake.set()

    async def _sender(self, client: aiomqtt.Client) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._discovery_due:
                self._discovery_due = False
                for topic, cfg in discovery_messages(self.topology, self.topics):
                    await self._publish(client, topic, _json(cfg), qos=1, retain=True)
            while self._events:
                # Removed only once the broker has it: a drop here leaves it queued. (A full
                # queue may have dropped it meanwhile: then the head is another event.)
                seq, payload = self._events[0]
                await self._publish(client, self.topics.alert_events, payload, qos=1, retain=False)
                if self._events and self._events[0][0] == seq:
                    self._events.popleft()
                self.events_published += 1
            if self._active_due and self._active is not None:
                self._active_due = False
                await self._publish(
                    client, self.topics.alerts_active, self._active, qos=1, retain=True
                )
            if self._state_due:
                self._state_due = False
                for topic, payload in self._states:
                    await self._publish(client, topic, payload, qos=0, retain=True)
