"""The terminal view: bank → strings → batteries, with active alerts, in at most 100 columns.

On a terminal it redraws in place once per tick. Without one (a pipe, a log file, CI) it prints
a short status line every `every_s` seconds and each alert event as it happens, so the same
command is useful in both places.
"""

from __future__ import annotations

import logging
import textwrap
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TextIO

# The one-line status and the formatting of numbers are shared with systemd's STATUS= line, which
# has no need of the rest of the view.
from bankwatch.daemon.report import WIDTH, fmt_energy, status_line
from bankwatch.daemon.report import clip as _clip
from bankwatch.daemon.report import fmt_value as _f
from bankwatch.daemon.tick import Tick

if TYPE_CHECKING:
    from bankwatch.daemon.alerts import Alert
    from bankwatch.daemon.topology import BankState, BatteryState

__all__ = ["WIDTH", "ConsoleView", "fmt_duration", "render"]

# The numbers and the state word take 48 columns; the name gets the rest.
_MAX_LABEL = WIDTH - 48
_CLEAR = "\x1b[H\x1b[2J"


def _state_word(b: BatteryState) -> str:
    r = b.reading
    if r is None:
        return "no data" if b.node.source else "no source"
    if not b.live:
        return "STALE"
    if r.discharge_enabled is False and r.charge_enabled is False:
        return "CUTOFF"
    if r.discharge_enabled is False:
        return "NO DSG"
    if r.charge_enabled is False:
        return "NO CHG"
    if r.protections:
        return "PROTECT"
    if r.alarms:
        return "alarm"
    if r.current_a is not None and abs(r.current_a) >= 0.5:
        return "charge" if r.current_a > 0 else "discharge"
    return "idle"


def _columns(
    label: str,
    width: int,
    volts: float | None,
    amps: float | None,
    soc: float | None,
    temp: float | None,
) -> str:
    """One row of the table; bank, string and battery rows share the columns."""
    return (
        f"{label:<{width}.{width}}{_f(volts, '.2f', ' V'):>9} {_f(amps, '+.1f', ' A'):>9} "
        f"{_f(soc, '.1f', ' %'):>7} {_f(temp, '.1f', ' °C'):>8}"
    )


def _battery_line(b: BatteryState, width: int) -> str:
    r = b.reading
    label = f"    {b.name}"
    if r is None:
        row = _columns(label, width, None, None, None, None)
    else:
        row = _columns(label, width, r.pack_voltage_v, r.current_a, r.soc_pct, r.temperature_c)
    return f"{row}  {_state_word(b)}"


def _wrap(text: str, prefix: str, indent: int | None = None) -> list[str]:
    """An alert line: wrapped at WIDTH under its prefix, names never split at hyphens."""
    return textwrap.wrap(
        text,
        WIDTH,
        initial_indent=prefix,
        subsequent_indent=" " * (len(prefix) if indent is None else indent),
        break_on_hyphens=False,
    )


def render(
    state: BankState, alerts: Sequence[Alert], links: Sequence[tuple[str, str]], clock: str
) -> list[str]:
    """The view as lines, none wider than WIDTH."""
    labels = [f"bank {state.name}"]
    labels += [f"  string {s.name}" for s in state.strings]
    labels += [f"    {b.name}" for b in state.batteries()]
    # Names in full where they fit: a rack of "shelf1-module-01"s must stay tellable apart.
    width = min(max(20, max(len(x) for x in labels) + 1), _MAX_LABEL)
    energy = fmt_energy(state.energy_wh) if state.energy_wh is not None else "—"
    power = _f(state.power_w, "+.0f", " W")
    bank_label = f"bank {state.name}"
    lines = [
        f"bankwatch · {state.name} · {clock}",
        "",
        f"{'':{width}}{'voltage':>9} {'current':>9} {'SOC':>7} {'temp':>8}  state",
        f"{_columns(bank_label, width, state.voltage_v, state.current_a, state.soc_pct, None)}"
        f"  {power}, {energy} left{_runtime(state)}",
    ]
    for s in state.strings:
        lines.append(
            f"{_columns(f'  string {s.name}', width, s.voltage_v, s.current_a, s.soc_pct, None)}"
            f"  {s.live}/{len(s.batteries)} live"
        )
        for b in s.batteries:
            lines.append(_battery_line(b, width))
    down = [f"{n} {st}" for n, st in links if st != "up"]
    lines.append("")
    if links:
        lines.append(
            f"links: {len(links) - len(down)}/{len(links)} up"
            + (f" ({', '.join(down)})" if down else "")
        )
    else:
        # The scenario runner feeds readings straight in; a bank without sources opens none.
        lines.append("links: none open")
    if alerts:
        lines.append(f"active alerts ({len(alerts)}):")
        for a in alerts:
            lines.extend(_wrap(a.message, f"  {a.severity.upper():8} {a.kind:<10} "))
    else:
        lines.append("no active alerts")
    return [_clip(line) for line in lines]


def fmt_duration(seconds: float) -> str:
    """ "45m", "5h10m", "3d4h": short enough for the bank's row."""
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h"


def _runtime(state: BankState) -> str:
    """At the present current: when the bank is empty, or full."""
    if state.time_to_empty_s is not None:
        return f", empty in {fmt_duration(state.time_to_empty_s)}"
    if state.time_to_full_s is not None:
        return f", full in {fmt_duration(state.time_to_full_s)}"
    return ""


class _RecentLogs(logging.Handler):
    """Keeps the last few log records so the live view can show them instead of letting them
    tear the screen."""

    def __init__(self, keep: int = 5) -> None:
        super().__init__(logging.INFO)
        self.lines: deque[str] = deque(maxlen=keep)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record).splitlines()[0])


class ConsoleView:
    """A sink that shows the bank to a person.

    `clock_text` says what time to show (the demo shows its bank's time of day); the default is
    the monitor clock's wall time.
    """

    def __init__(
        self,
        out: TextIO,
        *,
        live: bool | None = None,
        every_s: float = 10.0,
        clock_text: Callable[[], str] | None = None,
    ) -> None:
        self.out = out
        self.live = out.isatty() if live is None else live
        self.every_s = every_s
        self._clock_text = clock_text
        self._last_line_at: float | None = None
        self._logs: _RecentLogs | None = None

    def capture_logs(self) -> None:
        """While the view is live, log records go into it instead of to stderr."""
        if not self.live or self._logs is not None:
            return
        self._logs = _RecentLogs()
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        root.addHandler(self._logs)

    def _clock(self, tick: Tick) -> str:
        if self._clock_text is not None:
            return self._clock_text()
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(tick.wall))

    def on_tick(self, tick: Tick) -> None:
        clock = self._clock(tick)
        state = tick.state
        if self.live:
            links = [(s.name, s.state) for s in tick.links]
            lines = render(state, tick.alerts, links, clock)
            if self._logs is not None and self._logs.lines:
                lines += ["", "recent log:"] + [_clip(f"  {x}") for x in self._logs.lines]
            self.out.write(_CLEAR + "\n".join(lines) + "\n")
            self.out.flush()
            return
        for ev in tick.events:
            a = ev.alert
            prefix = f"[{clock}] alert {ev.event}: {a.severity} {a.kind} "
            self.out.write("\n".join(_wrap(f"{a.subject}: {a.message}", prefix, 4)) + "\n")
        if self._last_line_at is None or state.at - self._last_line_at >= self.every_s:
            self._last_line_at = state.at
            self.out.write(_clip(f"[{clock}] {status_line(state, len(tick.alerts))}") + "\n")
        self.out.flush()
