"""Running under systemd: readiness, the watchdog, stopping, the journal.

`bankwatch run` is the same program by hand and as a service; what changes under systemd
(systemd/bankwatch.service) is only what this module adds when systemd asks for it:

- `SystemdSink` is a sink of the monitor. It sends `READY=1` once every link has had its first
  outcome: frames flow (up), the open failed (down) or it opened and stayed quiet (silent); a
  dead adapter therefore delays start-up by its open timeout and no more, and
  `ready_timeout_s` caps the wait whatever a link does. Then it keeps `STATUS=` (what
  `systemctl status` shows) at the bank's one-line summary. Its task in the daemon's task
  group sends `WATCHDOG=1` every half `WatchdogSec=`: the ping comes from the event loop
  itself, so a loop that is stuck (a blocking call, a busy loop) stops the pings and systemd
  restarts the service.
- `STOPPING=1` is sent from the SIGTERM handler (see `run_daemon`).
- Logging to the journal is `journal.py` (every command uses it, so it stays out of this
  module's imports).
- Credentials: secrets (the InfluxDB token, the MQTT password) are files in
  /etc/bankwatch/credentials/ that the unit hands over with `LoadCredential=`;
  `bankwatch.daemon.credentials.find_secret` reads them from `$CREDENTIALS_DIRECTORY`.
- A test hook, off unless `$BANKWATCH_TEST_STALL_S` is set: SIGUSR1 then blocks the event loop
  for that many seconds (`time.sleep` on the loop), so a test can show the watchdog pings stop.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from bankwatch.daemon.report import status_line
from bankwatch.daemon.sdnotify import Notifier
from bankwatch.daemon.tick import Tick

if TYPE_CHECKING:
    from bankwatch.drivers.links.can import LinkStatus

__all__ = [
    "STALL_ENV",
    "SystemdSink",
    "install_stall_hook",
    "links_settled",
    "release_startup_memory",
    "status_text",
]

log = logging.getLogger(__name__)

STALL_ENV = "BANKWATCH_TEST_STALL_S"


# --- readiness and status ------------------------------------------------------------------------


def links_settled(statuses: Sequence[LinkStatus]) -> bool:
    """True when no link is still on its first attempt."""
    return all(s.state != "starting" for s in statuses)


def status_text(tick: Tick) -> str:
    """One line for `systemctl status`: the bank, its batteries, links and alerts."""
    return (
        f"{status_line(tick.state, len(tick.alerts))}, links {tick.links_up}/{len(tick.links)} up"
    )


class SystemdSink:
    """READY, STATUS and WATCHDOG for systemd (a RunningSink: `run` is the watchdog task)."""

    def __init__(
        self,
        notifier: Notifier,
        *,
        watchdog_s: float = 0.0,
        ready_timeout_s: float = 30.0,
        status_every_s: float = 10.0,
    ) -> None:
        self.notifier = notifier
        self.watchdog_s = watchdog_s
        self.ready_timeout_s = ready_timeout_s
        self.status_every_s = status_every_s
        self.ready = False
        self.pings = 0
        self._first_tick: float | None = None
        self._status: str | None = None
        self._status_at: float | None = None
        self._alerts: int | None = None
        self._told_partial = False

    def on_tick(self, tick: Tick) -> None:
        now = tick.state.at
        if self._first_tick is None:
            self._first_tick = now
        text = status_text(tick)
        if not self.ready:
            statuses = tick.links
            waited = now - self._first_tick
            if not links_settled(statuses) and waited < self.ready_timeout_s:
                return
            up = sum(s.state == "up" for s in statuses)
            if up < len(statuses) and not self._told_partial:
                self._told_partial = True  # logged before READY, so it is in the log first
                log.warning(
                    "ready with %d of %d link(s) up; the others are retried in the background",
                    up,
                    len(statuses),
                )
            if not self.notifier.notify("READY=1", f"STATUS={text}"):
                return  # systemd did not get it (the notifier logged why): again next tick
            self.ready = True
            self._sent(text, now, len(tick.alerts))
            return
        alerts = len(tick.alerts)
        due = self._status_at is None or now - self._status_at >= self.status_every_s
        if text != self._status and (due or alerts != self._alerts):
            self.notifier.notify(f"STATUS={text}")
            self._sent(text, now, alerts)

    def _sent(self, text: str, now: float, alerts: int) -> None:
        self._status, self._status_at, self._alerts = text, now, alerts

    async def run(self) -> None:
        """Ping the watchdog from the event loop until cancelled."""
        if self.watchdog_s <= 0:
            return
        log.debug("watchdog: pinging systemd every %.3g s", self.watchdog_s)
        while True:
            if self.notifier.notify("WATCHDOG=1"):
                self.pings += 1
            await asyncio.sleep(self.watchdog_s)


# --- the test hook -------------------------------------------------------------------------------


def install_stall_hook(environ: Mapping[str, str] | None = None) -> float:
    """With `$BANKWATCH_TEST_STALL_S` set, SIGUSR1 blocks the event loop that long (for tests
    of the watchdog). Returns the stall in seconds, 0 when the hook is off."""
    env = os.environ if environ is None else environ
    text = env.get(STALL_ENV, "")
    if not text:
        return 0.0
    try:
        stall_s = float(text)
    except ValueError:
        log.warning("%s=%r is not a number; test hook off", STALL_ENV, text)
        return 0.0
    if stall_s <= 0:
        return 0.0

    def stall() -> None:
        log.warning("test hook: blocking the event loop for %g s", stall_s)
        time.sleep(stall_s)  # on purpose: this is what a stuck loop looks like
        log.warning("test hook: event loop free again")

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, stall)
    log.warning("test hook on: SIGUSR1 blocks the event loop for %g s (%s)", stall_s, STALL_ENV)
    return stall_s


def release_startup_memory() -> int:
    """Hand the heap that start-up used and freed back to the system; the KiB of RSS it gave
    back (0 where the C library has no malloc_trim).

    Building the config's validators, importing the codecs and python-can leave megabytes of
    freed but still mapped heap behind (glibc keeps it for reuse), which a Pi's RSS figures
    would carry for months. One collection and one trim after start-up return it."""
    gc.collect()
    before = _rss_kib()
    name = ctypes.util.find_library("c")
    if name is None:
        return 0
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # musl and other C libraries have no malloc_trim
        return 0
    trim(0)
    return max(0, before - _rss_kib())


def _rss_kib() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, ValueError, IndexError):
        return 0
