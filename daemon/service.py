"""The daemon: links → drivers → Readings → BankState → detectors → alert events → sinks.

One `asyncio.TaskGroup` holds a named task per link and one for the monitor's tick. Frames are
decoded on the event loop as they arrive (cheap: a table lookup and a struct unpack) and only the
latest Reading per battery is kept; the tick folds them into a BankState once per
`tick_s`, runs the detectors and hands state and events to the sinks. A stop (SIGTERM, Ctrl-C,
or the caller's event) cancels the group and closes every link within a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, TextIO, runtime_checkable

from bankwatch.daemon.alert_state import AlertStore, default_state_dir
from bankwatch.daemon.clock import Clock, SystemClock
from bankwatch.daemon.config import CanLinkConfig, Config
from bankwatch.daemon.detectors import AlertEvent, BankAnalyzer
from bankwatch.daemon.model import Reading
from bankwatch.daemon.rules import check_bank
from bankwatch.daemon.topology import BankState, Topology
from bankwatch.drivers.links.can import CanLink, LinkStatus
from bankwatch.drivers.registry import PROTOCOLS, CanDriver

__all__ = [
    "AlertLogSink",
    "JsonAlertSink",
    "Monitor",
    "RunningSink",
    "Sink",
    "install_stop_signals",
    "run_daemon",
]

log = logging.getLogger(__name__)

BANK = "bank"  # the key of the bank-level source among the drivers


class Sink(Protocol):
    """Where state and events go: the console, MQTT, InfluxDB. Called on the event loop once
    per tick; must not block (a slow sink queues and does its I/O in its own task)."""

    def on_tick(self, monitor: Monitor, state: BankState, events: list[AlertEvent]) -> None: ...


@runtime_checkable
class RunningSink(Sink, Protocol):
    """A sink with I/O of its own (a broker, a database): `run` is its task in the daemon's
    task group, draining what `on_tick` queued; it is cancelled when the daemon stops."""

    async def run(self) -> None: ...


class Monitor:
    """The bank being watched: its links, its latest readings, its alerts."""

    def __init__(
        self,
        config: Config,
        clock: Clock | None = None,
        sinks: Sequence[Sink] = (),
        *,
        tick_s: float = 1.0,
        open_links: bool = True,
        store: AlertStore | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.sinks = list(sinks)
        self.tick_s = tick_s
        self.topology = Topology(config)
        self.readings: dict[str, Reading] = {}
        self.bank_reading: Reading | None = None
        self.started_at = self.clock.monotonic()
        # The fold, the detectors, their memory and the alert tracker (detectors.py).
        self.analyzer = BankAnalyzer(self.topology, config.detect, self.started_at)
        self.tracker = self.analyzer.tracker
        self.state: BankState | None = None
        self.links: dict[str, CanLink] = {}
        self._drivers: dict[str, list[tuple[str, CanDriver]]] = {}
        # Without links (the scenario runner), readings are put into `readings` directly.
        if open_links:
            self._build_drivers()
        self.store = store
        self._saved_at: float | None = None
        self._failed_at: float | None = None
        self._unsaved = False
        if store is not None:
            self._restore(store)

    def _build_drivers(self) -> None:
        sources = [(b.name, b.source) for b in self.topology.batteries()]
        sources.append((BANK, self.config.bank.source))
        for subject, src in sources:
            if src is None:
                continue
            info = PROTOCOLS[src.protocol]
            if info.can_driver is None:
                log.warning("protocol %s has no driver yet; %s is not read", src.protocol, subject)
                continue
            path = self.topology.name if subject == BANK else self.topology.battery(subject).path
            driver = info.can_driver(path, src.address)
            self._drivers.setdefault(src.link, []).append((subject, driver))
        for link_name, link_cfg in self.config.links.items():
            if link_name not in self._drivers:
                log.info("link %s: no battery uses it; not opened", link_name)
                continue
            if isinstance(link_cfg, CanLinkConfig):
                self.links[link_name] = CanLink(
                    link_name, link_cfg, self._frame_handler(link_name), self.clock
                )
            else:
                log.warning("link %s: serial links are not supported yet; not opened", link_name)

    def _frame_handler(self, link_name: str) -> Callable[[int, bytes, bool, float], None]:
        drivers = self._drivers[link_name]
        readings = self.readings

        def handle(can_id: int, data: bytes, extended: bool, now: float) -> None:
            for subject, driver in drivers:
                reading = driver.on_frame(can_id, data, extended, now)
                if reading is None:
                    continue
                if subject == BANK:
                    self.bank_reading = reading
                else:
                    readings[subject] = reading

        return handle

    # --- one tick: pure given the readings and the time ----------------------------------------

    def tick(self, now: float) -> tuple[BankState, list[AlertEvent]]:
        state, events = self.analyzer.step(self.readings, now, self.bank_reading)
        self.state = state
        if self.store is not None:
            self._persist(now, changed=bool(events))
        return state, events

    # --- alerts across restarts ------------------------------------------------------------------

    # The drift history alone is saved at most this often; alert changes are saved at once.
    MEMORY_SAVE_EVERY_S = 3600.0

    def _restore(self, store: AlertStore) -> None:
        now = self.clock.monotonic()
        saved = store.load(now, self.clock.wall())
        known = {self.topology.name} | {s.path for s in self.topology.strings}
        known |= {b.path for b in self.topology.batteries()}
        alerts = [a for a in saved.alerts if a.subject in known]
        for a in saved.alerts:
            if a.subject not in known:
                log.info("alert %s: its subject is no longer in the config; dropped", a.id)
        # Until every battery has had its stale time to be heard, a missing condition proves
        # nothing: a restored alert is held that long.
        grace = max((b.stale_after_s for b in self.topology.batteries()), default=0.0)
        self.tracker.restore(alerts, hold_until=now + grace + 2 * self.tick_s)
        try:
            self.analyzer.memory.load_json(saved.memory, saved.shift_s)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("alert state %s: detector memory unreadable (%s); ignored", store.path, exc)
        if alerts:
            log.info(
                "restored %d active alert(s) from %s: %s",
                len(alerts),
                store.path,
                ", ".join(a.id for a in alerts),
            )

    def _persist(self, now: float, *, changed: bool) -> None:
        memory = self.analyzer.memory
        if changed:
            self._unsaved = True
        memory_due = memory.dirty and (
            self._saved_at is None or now - self._saved_at >= self.MEMORY_SAVE_EVERY_S
        )
        # After a failed write, try again a minute later, not every tick.
        retry = self._failed_at is None or now - self._failed_at >= 60.0
        if (self._unsaved or memory_due) and retry:
            self.save_state(now)

    def flush_state(self) -> None:
        """At a clean stop: write what changed since the last write (the drift history of the
        last hour, an alert change a failed write left unsaved), and nothing otherwise."""
        if self.store is not None and (self._unsaved or self.analyzer.memory.dirty):
            self.save_state()

    def save_state(self, now: float | None = None) -> None:
        """Write the active alerts and the detector memory."""
        if self.store is None:
            return
        now = self.clock.monotonic() if now is None else now
        ok = self.store.save(
            self.tracker.active.values(),
            self.analyzer.memory.to_json(),
            now,
            self.clock.wall() - (self.clock.monotonic() - now),
        )
        self._unsaved = not ok
        if ok:
            self._saved_at = now
            self._failed_at = None
        else:
            self._failed_at = now

    def link_statuses(self) -> list[LinkStatus]:
        return [link.status for link in self.links.values()]

    # --- running ---------------------------------------------------------------------------------

    async def _ticker(self) -> None:
        while True:
            state, events = self.tick(self.clock.monotonic())
            for sink in self.sinks:
                try:
                    sink.on_tick(self, state, events)
                except Exception:
                    log.exception("sink %s failed; it will be called again next tick", sink)
            await asyncio.sleep(self.tick_s / self.clock.speed)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; then cancel every task and close every link."""

        async def wait_stop() -> None:
            await stop.wait()
            raise _Stop

        try:
            async with asyncio.TaskGroup() as tg:
                for name, link in self.links.items():
                    tg.create_task(link.run(), name=f"link-{name}")
                for sink in self.sinks:
                    if isinstance(sink, RunningSink):
                        tg.create_task(sink.run(), name=f"sink-{type(sink).__name__}")
                tg.create_task(self._ticker(), name="monitor")
                tg.create_task(wait_stop(), name="stop")
        except* _Stop:
            pass


class _Stop(Exception):
    """Raised inside the task group to end it cleanly."""


class AlertLogSink:
    """Every alert event as one log line: what journald keeps."""

    def on_tick(self, monitor: Monitor, state: BankState, events: list[AlertEvent]) -> None:
        for ev in events:
            a = ev.alert
            level = logging.INFO if ev.event == "cleared" else logging.WARNING
            log.log(
                level, "alert %s %s %s %s: %s", ev.event, a.severity, a.kind, a.subject, a.message
            )


class JsonAlertSink:
    """Every alert event as one JSON object per line (for scripts and tests)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout

    def on_tick(self, monitor: Monitor, state: BankState, events: list[AlertEvent]) -> None:
        for ev in events:
            wall = monitor.clock.wall() - (monitor.clock.monotonic() - ev.at)
            self.out.write(json.dumps(ev.to_json(round(wall, 3))) + "\n")
        if events:
            self.out.flush()


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def run_daemon(config: Config, *, json_alerts: bool = False, view: bool = False) -> int:
    """`bankwatch run`: monitor the bank until SIGTERM or Ctrl-C."""
    for f in check_bank(config):
        if f.severity != "info":
            log.warning("wiring %s: %s: %s", f.severity, f.rule, f.message)
    sinks: list[Sink] = [AlertLogSink()]
    if json_alerts:
        sinks.append(JsonAlertSink())
    if view:
        from bankwatch.daemon.console import ConsoleView

        console = ConsoleView(sys.stdout)
        console.capture_logs()
        sinks.append(console)
    state_dir = Path(config.detect.state_dir) if config.detect.state_dir else default_state_dir()
    store = AlertStore(state_dir.expanduser(), config.bank.name)
    monitor = Monitor(config, SystemClock(), sinks, store=store)
    stop = asyncio.Event()
    install_stop_signals(stop)
    log.info(
        "monitoring bank %s (%s, %d batteries) on %d link(s)",
        monitor.topology.name,
        monitor.topology.shape,
        len(monitor.topology.batteries()),
        len(monitor.links),
    )
    try:
        await monitor.run(stop)
    finally:
        monitor.flush_state()
    log.info("stopped")
    return 0
