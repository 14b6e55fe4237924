"""`bankwatch replay FILE`: a recorded bus (candump `-l` log) fed through the daemon as if live.

A log line is `(1700000000.123456) can0 351#1402C012C012C201`; error frames (id with the
CAN_ERR_FLAG 0x20000000) and remote frames (`123#R`) are taken as candump writes them.
Frames go into the configured CAN link whose channel (or name) is the log's interface, or the
only CAN link there is, through `CanLink.inject`: the same counting, decoding, drivers, bank
state, detectors and sinks as `bankwatch run`. Time is the log's: the clock starts at the
first frame's wall time and moves with the log, so staleness and alerts happen when they
happened; `--speed N` plays N times faster, `--fast` as fast as it can, and the default keeps
the recorded pace. Without `--config` the bank is one pylontech-can battery on `can0`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import can

from bankwatch.daemon.config import Config, parse_config
from bankwatch.daemon.link_config import CanLinkConfig
from bankwatch.daemon.service import Monitor
from bankwatch.daemon.tick import Sink, Tick
from bankwatch.drivers.clock import ManualClock
from bankwatch.drivers.errors import ConfigError, FrameError, UsageError

__all__ = ["DEFAULT_CONFIG", "AlertCounter", "LogFrame", "parse_log", "replay"]

DEFAULT_CONFIG = """
[bank]
name = "replay"
chemistry = "lifepo4"
nominal_voltage_v = 48

[models.pack]
capacity_ah = 100
nominal_voltage_v = 51.2
chemistry = "lifepo4"

[links.can0]
type = "can"
interface = "virtual"
channel = "can0"

[[strings]]
name = "S"
batteries = [
  { name = "battery", model = "pack", source = { link = "can0", protocol = "pylontech-can" } },
]
"""

log = logging.getLogger(__name__)

_LINE = re.compile(r"^\((\d+(?:\.\d+)?)\)\s+(\S+)\s+([0-9A-Fa-f]{1,8})#(R\d?|[0-9A-Fa-f]*)\s*$")
_ERR_FLAG = 0x20000000


@dataclass(frozen=True, slots=True)
class LogFrame:
    at: float
    interface: str
    message: can.Message


def parse_log(path: Path) -> Iterator[LogFrame]:
    """The frames of a candump `-l` log; a line that is not one raises FrameError with its
    line number (blank lines and `#` comments are skipped)."""
    try:
        handle = path.open(encoding="ascii", errors="replace")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    with handle:
        for number, line in enumerate(handle, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            m = _LINE.match(text)
            if m is None:
                raise FrameError(f"{path}:{number}: not a candump -l line: {text[:80]!r}")
            stamp, iface, ident, payload = m.groups()
            can_id = int(ident, 16)
            extended = len(ident) > 3
            remote = payload.upper().startswith("R")
            if len(payload) % 2 and not remote:
                raise FrameError(f"{path}:{number}: odd number of hex digits in {text[:80]!r}")
            data = b"" if remote else bytes.fromhex(payload)
            if len(data) > 8:
                raise FrameError(f"{path}:{number}: {len(data)} data bytes (CAN FD is not read)")
            error = extended and bool(can_id & _ERR_FLAG)
            yield LogFrame(
                float(stamp),
                iface,
                can.Message(
                    timestamp=float(stamp),
                    arbitration_id=can_id & 0x1FFFFFFF,
                    data=data,
                    is_extended_id=extended,
                    is_error_frame=error,
                    is_remote_frame=remote,
                ),
            )


class AlertCounter:
    """Counts raised alerts by kind, for the summary line."""

    def __init__(self) -> None:
        self.raised: dict[str, int] = {}

    def on_tick(self, tick: Tick) -> None:
        for ev in tick.events:
            if ev.event == "raised":
                self.raised[ev.alert.kind] = self.raised.get(ev.alert.kind, 0) + 1

    def summary(self) -> str:
        return ", ".join(f"{k} ×{n}" for k, n in sorted(self.raised.items())) or "none"


def _link_for(config: Config, monitor: Monitor, interface: str) -> str | None:
    names = [n for n, cfg in config.links.items() if isinstance(cfg, CanLinkConfig)]
    for name in names:
        cfg = config.links[name]
        assert isinstance(cfg, CanLinkConfig)
        if (cfg.channel == interface or name == interface) and name in monitor.links:
            return name
    opened = [n for n in names if n in monitor.links]
    return opened[0] if len(opened) == 1 else None


async def replay(
    path: Path,
    config: Config | None,
    sinks: list[Sink],
    *,
    speed: float = 1.0,
    fast: bool = False,
    tick_s: float = 1.0,
) -> tuple[Monitor, int]:
    """Play the log; return the monitor (for its counters and alerts) and the frames played."""
    config = config or parse_config(DEFAULT_CONFIG, "<built-in replay bank>")
    frames = iter(parse_log(path))
    first = next(frames, None)
    if first is None:
        raise UsageError(f"{path}: no frames in the log")
    clock = ManualClock(start_wall=first.at, start_monotonic=0.0)
    monitor = Monitor(config, clock, sinks, tick_s=tick_s)
    if not monitor.links:
        raise ConfigError("<replay>", ["the config has no CAN link a battery uses"])
    loop = asyncio.get_running_loop()
    wall0 = loop.time()
    next_tick = 0.0
    played = 0
    skipped: set[str] = set()
    for frame in _chain(first, frames):
        t = frame.at - first.at
        if t < clock.elapsed:
            t = clock.elapsed  # a log out of order by a few µs: keep time monotonic
        while next_tick <= t:
            clock.advance(next_tick - clock.elapsed)
            monitor.step(clock.monotonic())
            next_tick += tick_s
        if not fast:
            delay = wall0 + t / speed - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        clock.advance(t - clock.elapsed)
        name = _link_for(config, monitor, frame.interface)
        if name is None:
            skipped.add(frame.interface)
            continue
        monitor.links[name].inject([frame.message])
        played += 1
    monitor.step(clock.monotonic())
    for iface in sorted(skipped):
        log.warning(
            "replay: no CAN link for interface %s in the config; its frames were skipped", iface
        )
    return monitor, played


def _chain(first: LogFrame, rest: Iterator[LogFrame]) -> Iterator[LogFrame]:
    yield first
    yield from rest
