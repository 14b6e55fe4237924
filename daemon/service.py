"""The daemon: links → drivers → Readings → BankState → detectors → alert events → sinks.

One `asyncio.TaskGroup` holds a named task per link and one for the monitor's tick. Frames are
decoded on the event loop as they arrive (cheap: a table lookup and a struct unpack) and only the
latest Reading per battery is kept; the tick folds them into a BankState once per `tick_s`, runs
the detectors and hands the sinks one frozen snapshot of it (`tick.Tick`: state, events, active
alerts, link statuses, the time); no sink sees the monitor itself. A stop (SIGTERM, Ctrl-C, or the
caller's event) cancels the group and closes every link within a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from bankwatch.daemon.alert_state import AlertStore, default_state_dir
from bankwatch.daemon.config import Config
from bankwatch.daemon.detectors import AlertEvent, BankAnalyzer
from bankwatch.daemon.link_config import CanLinkConfig, SerialLinkConfig
from bankwatch.daemon.rules import check_bank
from bankwatch.daemon.sdnotify import Notifier, watchdog_period_s
from bankwatch.daemon.supervision import (
    SystemdSink,
    install_stall_hook,
    links_settled,
    release_startup_memory,
)
from bankwatch.daemon.tick import RunningSink, Sink, Tick
from bankwatch.daemon.topology import BankState, Topology
from bankwatch.drivers.clock import Clock, SystemClock
from bankwatch.drivers.links.can import CanLink, CanPoller, KeepAlive, LinkStatus, PollSource
from bankwatch.drivers.links.serial import Device, SerialLine
from bankwatch.drivers.model import Reading
from bankwatch.drivers.registry import PROTOCOLS, CanDriver, serial_codec_for

__all__ = [
    "AlertLogSink",
    "JsonAlertSink",
    "Monitor",
    "install_stop_signals",
    "run_daemon",
]

log = logging.getLogger(__name__)

BANK = "bank"  # the key of the bank-level source among the drivers


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
        # Links whose batteries must be asked (polled protocols) or that send the keep-alive.
        self.pollers: dict[str, CanPoller] = {}
        self._drivers: dict[str, list[tuple[str, CanDriver]]] = {}
        # Drivers that had frames since the last tick (see `collect`).
        self._fresh: dict[str, CanDriver] = {}
        # Serial lines: one task each polls (or listens to) every device on its port.
        self.serial_lines: dict[str, SerialLine] = {}
        self._serial_devices: dict[str, list[Device]] = {}
        # Without links (the scenario runner), readings are put into `readings` directly.
        if open_links:
            self._build_drivers()
            self._build_serial_lines()
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
            if info.link_kind == "serial":
                codec = serial_codec_for(
                    src.protocol, src.map, self.config.modbus_maps, self.config.source_dir
                )
                if codec is None:
                    log.warning("protocol %s has no codec; %s is not read", src.protocol, subject)
                    continue
                device = Device(subject, src.address or 0, codec)
                self._serial_devices.setdefault(src.link, []).append(device)
                continue
            if info.can_driver is None:
                log.warning("protocol %s has no driver yet; %s is not read", src.protocol, subject)
                continue
            path = self.topology.name if subject == BANK else self.topology.battery(subject).path
            driver = info.can_driver(path, src.address)
            self._drivers.setdefault(src.link, []).append((subject, driver))
        for link_name, link_cfg in self.config.links.items():
            if link_name not in self._drivers:
                if link_name not in self._serial_devices:
                    log.info("link %s: no battery uses it; not opened", link_name)
                continue
            if isinstance(link_cfg, CanLinkConfig):
                link = CanLink(
                    link_name, link_cfg.settings(), self._frame_handler(link_name), self.clock)
                self.links[link_name] = link
                polled: list[PollSource] = [
                    d for _, d in self._drivers[link_name] if isinstance(d, PollSource)
                ]
                if link_cfg.send_keepalive:
                    polled.append(KeepAlive())
                if polled:
                    self.pollers[link_name] = CanPoller(
                        link, polled, self.clock, interval_s=link_cfg.poll_interval_s
                    )
            else:
                log.warning("link %s: a serial link for CAN devices; not opened", link_name)

    def _build_serial_lines(self) -> None:
        for link_name, devices in self._serial_devices.items():
            link_cfg = self.config.links[link_name]
            if not isinstance(link_cfg, SerialLinkConfig):
                log.warning("link %s: serial devices on a CAN link; not opened", link_name)
                continue
            self.serial_lines[link_name] = SerialLine(
                link_name, link_cfg.settings(), devices, self._serial_reading, self.clock
            )

    def _serial_reading(self, subject: str, reading: Reading) -> None:
        if subject == BANK:
            self.bank_reading = reading.with_subject(self.topology.name)
        else:
            self.readings[subject] = reading.with_subject(self.topology.battery(subject).path)

    def _frame_handler(self, link_name: str) -> Callable[[int, bytes, bool, float], None]:
        drivers = self._drivers[link_name]
        fresh = self._fresh

        # Per frame only the drivers are fed; their Readings are fetched once per tick.
        if len(drivers) == 1:
            subject, driver = drivers[0]
            on_frame = driver.on_frame

            def handle_one(can_id: int, data: bytes, extended: bool, now: float) -> None:
                if on_frame(can_id, data, extended, now):
                    fresh[subject] = driver

            return handle_one

        def handle(can_id: int, data: bytes, extended: bool, now: float) -> None:
            for subject, driver in drivers:
                if driver.on_frame(can_id, data, extended, now):
                    fresh[subject] = driver

        return handle

    def collect(self) -> None:
        """Fetch the Readings of the drivers that had frames since the last time."""
        fresh = self._fresh
        if not fresh:
            return
        items = list(fresh.items())
        fresh.clear()
        for subject, driver in items:
            if subject == BANK:
                self.bank_reading = driver.reading
            else:
                self.readings[subject] = driver.reading

    # --- one tick: pure given the readings and the time ----------------------------------------

    def tick(self, now: float) -> tuple[BankState, list[AlertEvent]]:
        self.collect()
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
        return [link.status for link in self.links.values()] + [
            line.status for line in self.serial_lines.values()
        ]

    # --- running ---------------------------------------------------------------------------------

    def snapshot(self, state: BankState, events: Sequence[AlertEvent]) -> Tick:
        """What the sinks get of a tick: frozen, so no sink can reach back into the monitor."""
        return Tick(
            state,
            tuple(events),
            tuple(self.tracker.sorted_active()),
            tuple(self.link_statuses()),
            self.clock.monotonic(),
            self.clock.wall(),
        )

    def to_sinks(self, state: BankState, events: Sequence[AlertEvent]) -> Tick:
        """Hand one snapshot of the tick to every sink; a sink that fails is logged and called
        again next tick."""
        tick = self.snapshot(state, events)
        for sink in self.sinks:
            try:
                sink.on_tick(tick)
            except Exception:
                log.exception("sink %s failed; it will be called again next tick", sink)
        return tick

    def step(self, now: float) -> tuple[BankState, list[AlertEvent]]:
        """One tick with its sinks: what the running daemon does every `tick_s` (and `replay`
        does on the log's time)."""
        state, events = self.tick(now)
        self.to_sinks(state, events)
        return state, events

    async def _ticker(self) -> None:
        while True:
            self.step(self.clock.monotonic())
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
                for name, poller in self.pollers.items():
                    tg.create_task(poller.run(), name=f"poll-{name}")
                for name, line in self.serial_lines.items():
                    tg.create_task(line.run(), name=f"serial-{name}")
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

    def on_tick(self, tick: Tick) -> None:
        for ev in tick.events:
            a = ev.alert
            level = logging.INFO if ev.event == "cleared" else logging.WARNING
            log.log(
                level, "alert %s %s %s %s: %s", ev.event, a.severity, a.kind, a.subject, a.message
            )


class JsonAlertSink:
    """Every alert event as one JSON object per line (for scripts and tests)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout

    def on_tick(self, tick: Tick) -> None:
        for ev in tick.events:
            self.out.write(json.dumps(ev.to_json(round(tick.wall_at(ev.at), 3))) + "\n")
        if tick.events:
            self.out.flush()


def install_stop_signals(stop: asyncio.Event, on_stop: Callable[[], object] | None = None) -> None:
    """SIGTERM and SIGINT set `stop`; `on_stop` (if any) runs first, at once, on the loop."""
    loop = asyncio.get_running_loop()

    def handle() -> None:
        if on_stop is not None:
            on_stop()
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, handle)


async def _release_after_start(monitor: Monitor, limit_s: float = 30.0) -> None:
    """Once every link has had its first outcome (python-can, the sinks' clients and the codecs
    are loaded by then), give start-up's freed heap back to the system."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not links_settled(monitor.link_statuses()) and loop.time() < deadline:
        await asyncio.sleep(0.5)
    await asyncio.sleep(2.0)  # the sinks' first connection and write
    log.debug("start-up heap released: %d KiB", release_startup_memory())


async def run_daemon(
    config: Config,
    *,
    json_alerts: bool = False,
    view: bool = False,
    extra_sinks: Sequence[Sink] = (),
) -> int:
    """`bankwatch run`: monitor the bank until SIGTERM or Ctrl-C. `extra_sinks`: MQTT,
    InfluxDB (see `publish.build_publish_sinks`)."""
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
    sinks.extend(extra_sinks)
    # Under systemd (Type=notify): READY, STATUS and WATCHDOG from the loop, STOPPING on stop.
    notifier = Notifier.from_env()
    if notifier.enabled:
        sinks.append(SystemdSink(notifier, watchdog_s=watchdog_period_s()))
    state_dir = Path(config.detect.state_dir) if config.detect.state_dir else default_state_dir()
    store = AlertStore(state_dir.expanduser(), config.bank.name)
    monitor = Monitor(config, SystemClock(), sinks, store=store)
    stop = asyncio.Event()
    install_stop_signals(stop, lambda: notifier.notify("STOPPING=1", "STATUS=stopping"))
    install_stall_hook()
    log.info(
        "monitoring bank %s (%s, %d batteries) on %d link(s)",
        monitor.topology.name,
        monitor.topology.shape,
        len(monitor.topology.batteries()),
        len(monitor.links) + len(monitor.serial_lines),
    )
    trim = asyncio.create_task(_release_after_start(monitor), name="release-start-up-heap")
    try:
        await monitor.run(stop)
    finally:
        trim.cancel()
        notifier.close()
        monitor.flush_state()
    log.info("stopped")
    return 0
