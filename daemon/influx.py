"""InfluxDB: the bank as time series, through the v1 or the v2 write API, with an outage spool.

Schema (measurement names in `Measurement`, built in `state_points` and `alert_points`; every
timestamp is the state's wall time, microseconds):

    bank     tags: bank
             fields: voltage_v current_a power_w soc_pct energy_wh capacity_ah (float),
                     batteries_live batteries alerts_active alerts_critical (int)
    string   tags: bank string
             fields: voltage_v current_a power_w soc_pct energy_wh soc_spread_pct
                     current_share_pct expected_share_pct (float), batteries_live (int)
    battery  tags: bank string battery protocol
             fields: live (bool), age_s; while live also every number of the Reading under its
                     canonical name (pack_voltage_v, current_a, power_w, soc_pct, soh_pct,
                     remaining_ah, cell_voltage_min_v, cell_voltage_max_v, temperature_c, ...;
                     float, cycles and modules_online int), cell_voltage_spread_mv,
                     soc_delta_pct (from the mean of the bank's live batteries),
                     charge_enabled discharge_enabled (bool), protections alarms (string)
    cell     tags: bank string battery cell ("01", "02", ...) protocol
             fields: voltage_v, delta_mv (from the battery's mean cell)
    alert    tags: bank string battery subject kind severity event
             fields: message id (string), active (int: 1 raised or updated, 0 cleared)

Writes: points are batched (`batch_size`, `flush_interval_s`) and POSTed from a worker thread,
so neither a slow server nor a dead one delays polling. When a write fails the points go to
the on-disk `Spool`; new points queue behind them, and the spool is written back in order, with
capped randomized backoff, once the server answers again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import http.client
import json
import logging
import ssl
import time
import urllib.parse
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bankwatch.daemon.alert_state import default_state_dir
from bankwatch.daemon.credentials import Secret
from bankwatch.daemon.line_protocol import Point
from bankwatch.daemon.publish_config import InfluxConfig
from bankwatch.daemon.spool import Spool
from bankwatch.daemon.topology import BankState, Topology
from bankwatch.drivers.backoff import Backoff
from bankwatch.drivers.model import Reading, flag_names

if TYPE_CHECKING:
    from bankwatch.daemon.alerts import Alert, AlertEvent
    from bankwatch.daemon.tick import Tick

__all__ = [
    "InfluxSink",
    "Measurement",
    "V1Writer",
    "V2Writer",
    "WriteError",
    "Writer",
    "alert_points",
    "default_spool_dir",
    "state_points",
]

log = logging.getLogger(__name__)

_BACKOFF_FIRST_S = 1.0
_BACKOFF_MAX_S = 60.0
_SNAPSHOT_QUEUE = 10_000
_STOP_WRITE_TIMEOUT_S = 3.0


class Measurement:
    BANK = "bank"
    STRING = "string"
    BATTERY = "battery"
    CELL = "cell"
    ALERT = "alert"


# --- points: pure functions of the state ----------------------------------------------------------

# Reading fields written as integers; every other number is written as a float, so that a BMS
# that sends "88" one time and "88.5" the next does not make InfluxDB refuse the field.
_INT_FIELDS = frozenset({"cycles", "modules_online"})
_SKIP_FIELDS = frozenset(
    {"subject", "at", "extra", "cell_voltages_v", "temperatures_c", "manufacturer", "model",
     "serial", "firmware", "protections", "alarms"}
)  # fmt: skip


def _us(wall_s: float) -> int:
    return round(wall_s * 1_000_000)


def _f(value: float | None) -> float | None:
    return None if value is None else float(value)


def _battery_fields(r: Reading) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(r):
        name = f.name
        if name in _SKIP_FIELDS:
            continue
        value = getattr(r, name)
        if value is None:
            continue
        if isinstance(value, bool):
            fields[name] = value
        elif name in _INT_FIELDS:
            fields[name] = int(value)
        elif isinstance(value, int | float):
            fields[name] = float(value)
    fields["power_w"] = _f(r.power_w)
    fields["temperature_c"] = _f(r.temperature_c)
    lo, hi = r.min_cell_v, r.max_cell_v
    fields["cell_voltage_min_v"] = _f(lo)
    fields["cell_voltage_max_v"] = _f(hi)
    if lo is not None and hi is not None:
        fields["cell_voltage_spread_mv"] = round((hi - lo) * 1000.0, 1)
    if r.protections is not None:
        fields["protections"] = ",".join(flag_names(r.protections))
    if r.alarms is not None:
        fields["alarms"] = ",".join(flag_names(r.alarms))
    return fields


def state_points(
    state: BankState, topology: Topology, alerts: Sequence[Alert], wall_s: float
) -> list[Point]:
    """The bank, its strings, batteries and cells at one moment."""
    t = _us(wall_s)
    bank = state.name
    batteries = state.batteries()
    points: list[Point] = []

    def point(measurement: str, tags: dict[str, str], fields: dict[str, Any]) -> None:
        p = Point(measurement)
        for k, v in tags.items():
            p.tag(k, v)
        for k, v in fields.items():
            if v is not None:
                p.field(k, v)
        points.append(p.time(t))

    point(
        Measurement.BANK,
        {"bank": bank},
        {
            "voltage_v": _f(state.voltage_v),
            "current_a": _f(state.current_a),
            "power_w": _f(state.power_w),
            "soc_pct": _f(state.soc_pct),
            "energy_wh": _f(state.energy_wh),
            "capacity_ah": float(topology.capacity_ah),
            "batteries_live": sum(b.live for b in batteries),
            "batteries": len(batteries),
            "alerts_active": len(alerts),
            "alerts_critical": sum(a.severity == "critical" for a in alerts),
        },
    )
    live_socs = [
        b.reading.soc_pct
        for b in batteries
        if b.live and b.reading is not None and b.reading.soc_pct is not None
    ]
    mean_soc = sum(live_socs) / len(live_socs) if live_socs else None
    bank_capacity = topology.capacity_ah
    for s in state.strings:
        socs = [
            b.reading.soc_pct
            for b in s.batteries
            if b.live and b.reading is not None and b.reading.soc_pct is not None
        ]
        share = None
        if s.current_a is not None and state.current_a is not None and abs(state.current_a) >= 1:
            share = 100.0 * s.current_a / state.current_a
        power = None if s.voltage_v is None or s.current_a is None else s.voltage_v * s.current_a
        point(
            Measurement.STRING,
            {"bank": bank, "string": s.name},
            {
                "voltage_v": _f(s.voltage_v),
                "current_a": _f(s.current_a),
                "power_w": _f(power),
                "soc_pct": _f(s.soc_pct),
                "energy_wh": _f(s.energy_wh),
                "soc_spread_pct": float(max(socs) - min(socs)) if socs else None,
                "current_share_pct": share,
                "expected_share_pct": 100.0 * s.node.capacity_ah / bank_capacity,
                "batteries_live": s.live,
            },
        )
        for b in s.batteries:
            src = b.node.source
            protocol = src.protocol if src is not None else "none"
            tags = {"bank": bank, "string": s.name, "battery": b.name, "protocol": protocol}
            r = b.reading
            fields: dict[str, Any] = {
                "live": b.live,
                "age_s": _f(b.age_s),
            }
            if b.live and r is not None:
                fields.update(_battery_fields(r))
                if mean_soc is not None and r.soc_pct is not None:
                    fields["soc_delta_pct"] = float(r.soc_pct) - mean_soc
            point(Measurement.BATTERY, tags, fields)
            if b.live and r is not None and r.cell_voltages_v:
                mean_cell = sum(r.cell_voltages_v) / len(r.cell_voltages_v)
                width = max(2, len(str(len(r.cell_voltages_v))))
                for i, v in enumerate(r.cell_voltages_v, start=1):
                    point(
                        Measurement.CELL,
                        {**tags, "cell": str(i).zfill(width)},
                        {"voltage_v": float(v), "delta_mv": round((v - mean_cell) * 1000.0, 1)},
                    )
    return points


def alert_points(bank: str, events: Sequence[AlertEvent], to_wall: float) -> list[Point]:
    """One point per alert event. `to_wall` turns monitor time into wall time."""
    points = []
    for ev in events:
        a = ev.alert
        parts = a.subject.split("/")
        p = Point(Measurement.ALERT).tag("bank", bank).tag("subject", a.subject)
        if len(parts) >= 2:
            p.tag("string", parts[1])
        if len(parts) >= 3:
            p.tag("battery", parts[2])
        p.tag("kind", a.kind).tag("severity", a.severity).tag("event", ev.event)
        p.field("message", a.message).field("id", a.id)
        p.field("active", 0 if ev.event == "cleared" else 1)
        points.append(p.time(_us(ev.at + to_wall)))
    return points


# --- writers: blocking HTTP, run in a worker thread -----------------------------------------------


class WriteError(Exception):
    """A write failed. `retry`: keep the points and try again later (server down, auth or
    database wrong: all fixable); otherwise the server refused these points for good."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


class Writer(Protocol):
    where: str

    def write(self, lines: list[str]) -> None: ...

    def close(self) -> None: ...


def _server_message(body: bytes | str | None) -> str:
    if body is None:
        return ""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    with contextlib.suppress(ValueError, AttributeError):
        data = json.loads(text)
        if isinstance(data, dict):
            return str(data.get("error") or data.get("message") or text).strip()
    return text.strip()[:300]


def _classify(status: int, message: str, api: str) -> WriteError:
    if status == 400 or status == 422:
        return WriteError(f"HTTP {status}: the server refused the points: {message}", retry=False)
    hint = ""
    if status == 401 or status == 403:
        hint = " (check the user and password, or the token and its write permission)"
    elif status == 404 and api == "v2":
        hint = (
            " (no v2 write API here: InfluxDB 1.x before 1.8 has none; give `database` "
            "for the v1 API, or check the URL, org and bucket)"
        )
    elif status == 404:
        hint = " (create the database, or check its name)"
    return WriteError(f"HTTP {status}: {message}{hint}", retry=True)


class V1Writer:
    """InfluxDB 1.x: line protocol POSTed to /write, precision `u` (1.6 misreads `us`)."""

    def __init__(
        self,
        url: str,
        database: str,
        *,
        retention_policy: str | None = None,
        username: str | None = None,
        password: Secret | None = None,
        timeout_s: float = 10.0,
        ca_file: str | None = None,
    ) -> None:
        params = {"db": database, "precision": "u"}
        if retention_policy:
            params["rp"] = retention_policy
        self._url = f"{url.rstrip('/')}/write?{urllib.parse.urlencode(params)}"
        self.where = f"{url} database {database}"
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if username is not None:
            # In a header, not in ?u=&p=: a URL ends up in logs.
            pw = password.reveal() if password is not None else ""
            cred = base64.b64encode(f"{username}:{pw}".encode()).decode()
            self._headers["Authorization"] = f"Basic {cred}"
        # The standard library's HTTP client: one POST at a time from the writer thread needs
        # no connection pool (and urllib3 would cost the daemon its memory for nothing).
        parts = urllib.parse.urlsplit(url)
        self._path = f"{parts.path.rstrip('/')}/write?{urllib.parse.urlencode(params)}"
        self._host = parts.hostname or "localhost"
        self._port = parts.port
        self._timeout_s = timeout_s
        self._tls = ssl.create_default_context(cafile=ca_file) if parts.scheme == "https" else None
        self._conn: http.client.HTTPConnection | None = None
        self._used = False

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._tls is not None:
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout_s, context=self._tls
                )
            else:
                self._conn = http.client.HTTPConnection(
                    self._host, self._port, timeout=self._timeout_s
                )
            self._used = False
        return self._conn

    def _post(self, body: bytes) -> tuple[int, bytes]:
        conn = self._connection()
        conn.request("POST", self._path, body=body, headers=self._headers)
        r = conn.getresponse()
        data = r.read()
        self._used = True
        if r.will_close:
            self.close()
        return r.status, data

    def write(self, lines: list[str]) -> None:
        body = ("\n".join(lines) + "\n").encode()
        try:
            try:
                status, data = self._post(body)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A kept-alive connection the server closed while we were idle: once more on a
                # new one. A fresh connection that fails is a real failure.
                if not self._used:
                    raise
                self.close()
                status, data = self._post(body)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise WriteError(_transport_message(exc), retry=True) from None
        if status == 204 or status == 200:
            return
        raise _classify(status, _server_message(data), "v1")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class V2Writer:
    """InfluxDB 2.x, 3.x and 1.8+: influxdb-client's synchronous write API (/api/v2/write).
    The client library is imported here, by the v2 writer alone: the v1 API does without it."""

    def __init__(
        self,
        url: str,
        org: str,
        bucket: str,
        token: Secret,
        *,
        timeout_s: float = 10.0,
        ca_file: str | None = None,
    ) -> None:
        import urllib3
        from influxdb_client import InfluxDBClient, WritePrecision
        from influxdb_client.client.write_api import SYNCHRONOUS
        from influxdb_client.rest import ApiException

        self._transport_errors = (urllib3.exceptions.HTTPError, OSError)
        self._api_exception = ApiException
        self._precision = WritePrecision.US
        self.where = f"{url} org {org} bucket {bucket}"
        self._org = org
        self._bucket = bucket
        self._client = InfluxDBClient(
            url=url,
            token=token.reveal(),
            org=org,
            timeout=int(timeout_s * 1000),
            ssl_ca_cert=ca_file,
        )
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, lines: list[str]) -> None:
        try:
            self._api.write(
                bucket=self._bucket, org=self._org, record=lines, write_precision=self._precision
            )
        except Exception as exc:
            if isinstance(exc, self._api_exception):  # the server answered with an error
                raise _classify(int(exc.status or 0), _server_message(exc.body), "v2") from None
            if isinstance(exc, self._transport_errors):
                raise WriteError(_transport_message(exc), retry=True) from None
            raise

    def close(self) -> None:
        self._client.close()


def _transport_message(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    text = str(reason if reason is not None else exc)
    # urllib3 puts the pool object in front: "<HTTPConnection object at 0x..>: Failed to ..."
    return text.split(">: ", 1)[-1]


# --- the sink -----------------------------------------------------------------------------------


def default_spool_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The state folder's influx-spool/ (see alert_state.default_state_dir)."""
    return default_state_dir(environ) / "influx-spool"


@dataclass(frozen=True, slots=True)
class _Snapshot:
    state: BankState | None
    alerts: tuple[Alert, ...]
    events: tuple[AlertEvent, ...]
    to_wall: float


class InfluxSink:
    """Writes points; its own task owns the HTTP writes and the spool."""

    def __init__(
        self, config: InfluxConfig, topology: Topology, writer: Writer, spool_dir: Path
    ) -> None:
        self.config = config
        self.topology = topology
        self.writer = writer
        self.spool_dir = spool_dir
        self.spool: Spool | None = None
        self.points_written = 0  # confirmed by the server
        self.points_rejected = 0  # refused for good (HTTP 400)
        self.points_spooled = 0
        self.snapshots_dropped = 0
        self.up: bool | None = None  # None until the first write
        self.idle = asyncio.Event()  # set when nothing is buffered or spooled (tests watch it)
        self._snapshots: deque[_Snapshot] = deque()
        self._last_sample_at: float | None = None
        self._wake = asyncio.Event()
        self._buffer: list[str] = []

    def __repr__(self) -> str:
        return f"InfluxSink({self.writer.where})"

    # --- called by the monitor, on the loop: never blocks ----------------------------------------

    def on_tick(self, tick: Tick) -> None:
        state, events = tick.state, tick.events
        due = self._last_sample_at is None or state.at - self._last_sample_at >= (
            self.config.interval_s
        )
        if not due and not events:
            return
        if due:
            self._last_sample_at = state.at
        if len(self._snapshots) >= _SNAPSHOT_QUEUE:
            self._snapshots.popleft()
            self.snapshots_dropped += 1
            if self.snapshots_dropped == 1:
                log.warning("influxdb: the writer is not keeping up; dropping the oldest samples")
        self._snapshots.append(_Snapshot(state if due else None, tick.alerts, events, tick.to_wall))
        self.idle.clear()
        self._wake.set()

    def _take_snapshots(self) -> None:
        while self._snapshots:
            snap = self._snapshots.popleft()
            points: list[Point] = []
            if snap.state is not None:
                points += state_points(
                    snap.state, self.topology, snap.alerts, snap.state.at + snap.to_wall
                )
            points += alert_points(self.topology.name, snap.events, snap.to_wall)
            self._buffer.extend(line for p in points if (line := p.to_line_protocol()))

    # --- the task --------------------------------------------------------------------------------

    async def _write(self, lines: list[str]) -> bool:
        """True when the lines are done with (written, or refused for good)."""
        try:
            await asyncio.wait_for(
                asyncio.to_thread(self.writer.write, lines), self.config.timeout_s + 5
            )
        except WriteError as exc:
            if not exc.retry:
                self.points_rejected += len(lines)
                log.error(
                    "influxdb: %s: %s; %d point(s) dropped", self.writer.where, exc, len(lines)
                )
                return True
            self._set_up(False, str(exc))
            return False
        except TimeoutError:
            self._set_up(False, f"no answer within {self.config.timeout_s + 5:g} s")
            return False
        self.points_written += len(lines)
        self._set_up(True, "")
        return True

    def _set_up(self, up: bool, why: str) -> None:
        if up == self.up:
            return
        assert self.spool is not None
        if up:
            pending = self.spool.pending
            log.info(
                "influxdb: writing to %s%s",
                self.writer.where,
                f"; writing back {pending} spooled point(s)" if pending else "",
            )
        else:
            log.warning(
                "influxdb: cannot write to %s: %s; keeping points in %s (up to %g MB) and "
                "retrying with backoff",
                self.writer.where,
                why,
                self.spool_dir,
                self.config.spool_max_mb,
            )
        self.up = up

    async def _to_spool(self) -> None:
        assert self.spool is not None
        lines, self._buffer = self._buffer, []
        if lines:
            await asyncio.to_thread(self.spool.append, lines)
            self.points_spooled += len(lines)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        c = self.config
        max_bytes = int(c.spool_max_mb * 1_000_000)
        self.spool = await asyncio.to_thread(
            Spool, self.spool_dir, max_bytes, fsync_s=c.spool_fsync_s
        )
        spool = self.spool
        if spool.pending:
            log.info(
                "influxdb: %d point(s) spooled before the last stop will be written back",
                spool.pending,
            )
        last_flush = loop.time()
        backoff = Backoff(_BACKOFF_FIRST_S, _BACKOFF_MAX_S)
        next_try = 0.0
        try:
            while True:
                self._take_snapshots()
                now = loop.time()
                flush_due = len(self._buffer) >= c.batch_size or (
                    self._buffer and now - last_flush >= c.flush_interval_s
                )
                if not spool.pending:
                    if flush_due and now >= next_try:
                        batch = self._buffer[: c.batch_size]
                        if await self._write(batch):
                            del self._buffer[: len(batch)]
                            last_flush = loop.time()
                            backoff.reset()
                            continue
                        await self._to_spool()
                        last_flush = loop.time()
                        next_try = loop.time() + backoff.next()
                else:
                    if flush_due:
                        # Behind the spooled points, to keep the order.
                        await self._to_spool()
                        last_flush = now
                    if now >= next_try:
                        batch = await asyncio.to_thread(spool.peek, c.batch_size)
                        if await self._write(batch):
                            await asyncio.to_thread(spool.consume, len(batch))
                            backoff.reset()
                            next_try = 0.0
                            continue
                        next_try = loop.time() + backoff.next()
                if not self._buffer and not spool.pending and not self._snapshots:
                    self.idle.set()
                now = loop.time()
                deadlines = [next_try] if spool.pending else []
                if self._buffer:
                    deadlines.append(max(last_flush + c.flush_interval_s, next_try))
                timeout = max(0.0, min(deadlines) - now) if deadlines else None
                self._wake.clear()
                if self._snapshots:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
        except asyncio.CancelledError:
            await self._stop()
            raise

    async def _stop(self) -> None:
        """A clean stop: what is buffered is written, or else spooled; nothing is lost."""
        assert self.spool is not None
        self._take_snapshots()
        if self._buffer and not self.spool.pending and self.up is not False:
            try:
                await asyncio.wait_for(
                    asyncio.to_thread(self.writer.write, self._buffer), _STOP_WRITE_TIMEOUT_S
                )
            except (WriteError, TimeoutError) as exc:
                log.warning("influxdb: last write before stopping failed: %s", exc or "timeout")
            else:
                self.points_written += len(self._buffer)
                self._buffer = []
        if self._buffer:
            self.spool.append(self._buffer)
            self.points_spooled += len(self._buffer)
            log.info("influxdb: %d point(s) spooled for the next start", len(self._buffer))
            self._buffer = []
        self.spool.close()
        await asyncio.to_thread(self.writer.close)

    async def wait_drained(self, timeout_s: float = 30.0) -> None:
        """Wait until everything handed in so far is written (tests and benchmarks)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            await asyncio.wait_for(self.idle.wait(), max(0.01, deadline - time.monotonic()))
            if not self._snapshots and not self._buffer and not (self.spool and self.spool.pending):
                return
            await asyncio.sleep(0.01)
        raise TimeoutError("influxdb sink did not drain")
