"""The terminal view: bank → strings → batteries, with active alerts, in at most 100 columns.

On a terminal it redraws in place once per tick. Without one (a pipe, a log file, CI) it prints
a short status line every `every_s` seconds and each alert event as it happens, so the same
command is useful in both places.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, TextIO

from bankwatch.daemon.detectors import Alert, AlertEvent
from bankwatch.daemon.report import fmt_energy
from bankwatch.daemon.topology import BankState, BatteryState

if TYPE_CHECKING:
    from bankwatch.daemon.service import Monitor

__all__ = ["WIDTH", "ConsoleView", "render"]

WIDTH = 100
_CLEAR = "\x1b[H\x1b[2J"


def _f(value: float | None, fmt: str, unit: str = "") -> str:
    return "—" if value is None else f"{value:{fmt}}{unit}"


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


def _battery_line(prefix: str, b: BatteryState) -> str:
    r = b.reading
    if r is None:
        vals = f"{'—':>8} {'—':>8} {'—':>6} {'—':>7}"
    else:
        vals = (
            f"{_f(r.pack_voltage_v, '7.2f', 'V'):>8} {_f(r.current_a, '+7.1f', 'A'):>8} "
            f"{_f(r.soc_pct, '5.1f', '%'):>6} {_f(r.temperature_c, '5.1f', '°C'):>7}"
        )
    return f"{prefix}{b.name:<12.12} {vals}  {_state_word(b)}"


def render(
    state: BankState, alerts: list[Alert], links: list[tuple[str, str]], clock: str
) -> list[str]:
    """The view as lines, none wider than WIDTH."""
    lines = [
        f"bankwatch · {state.name} · {clock}",
        (
            f"bank  {_f(state.voltage_v, '.2f', ' V')}  {_f(state.current_a, '+.1f', ' A')}  "
            f"{_f(state.power_w, '+.0f', ' W')}  SOC {_f(state.soc_pct, '.1f', ' %')}  "
            f"energy {fmt_energy(state.energy_wh) if state.energy_wh is not None else '—'}"
        ),
        f"{'':4}{'':13}{'voltage':>8} {'current':>8} {'SOC':>6} {'temp':>7}  state",
    ]
    for s in state.strings:
        lines.append(
            f"  string {s.name:<8.8} {_f(s.voltage_v, '.2f', ' V'):>9} "
            f"{_f(s.current_a, '+.1f', ' A'):>9}  SOC {_f(s.soc_pct, '.1f', ' %')}  "
            f"{s.live}/{len(s.batteries)} live"
        )
        for b in s.batteries:
            lines.append(_battery_line("    ", b))
    down = [f"{n} {st}" for n, st in links if st != "up"]
    lines.append(
        f"links: {len(links) - len(down)}/{len(links)} up"
        + (f" ({', '.join(down)})" if down else "")
    )
    if alerts:
        lines.append(f"active alerts ({len(alerts)}):")
        for a in alerts:
            lines.append(f"  {a.severity.upper():8} {a.kind:<10} {a.message}")
    else:
        lines.append("no active alerts")
    return [_clip(line) for line in lines]


def _clip(line: str) -> str:
    return line if len(line) <= WIDTH else line[: WIDTH - 1] + "…"


class ConsoleView:
    """A sink that shows the bank to a person."""

    def __init__(self, out: TextIO, *, live: bool | None = None, every_s: float = 10.0) -> None:
        self.out = out
        self.live = out.isatty() if live is None else live
        self.every_s = every_s
        self._last_line_at: float | None = None

    def on_tick(self, monitor: Monitor, state: BankState, events: list[AlertEvent]) -> None:
        if self.live:
            clock = _clock_text(monitor)
            lines = render(state, monitor.tracker.sorted_active(), _links(monitor), clock)
            self.out.write(_CLEAR + "\n".join(lines) + "\n")
            self.out.flush()
            return
        for ev in events:
            a = ev.alert
            self.out.write(
                f"[{_clock_text(monitor)}] alert {ev.event}: {a.severity} {a.kind} "
                f"{a.subject}: {a.message}\n"
            )
        if self._last_line_at is None or state.at - self._last_line_at >= self.every_s:
            self._last_line_at = state.at
            self.out.write(f"[{_clock_text(monitor)}] {status_line(state, monitor)}\n")
        self.out.flush()


def status_line(state: BankState, monitor: Monitor) -> str:
    live = sum(b.live for b in state.batteries())
    return _clip(
        f"{state.name}: {_f(state.voltage_v, '.2f', ' V')} {_f(state.current_a, '+.1f', ' A')} "
        f"SOC {_f(state.soc_pct, '.1f', ' %')}, {live}/{len(state.batteries())} batteries live, "
        f"{len(monitor.tracker.active)} active alert(s)"
    )


def _links(monitor: Monitor) -> list[tuple[str, str]]:
    return [(s.name, s.state) for s in monitor.link_statuses()]


def _clock_text(monitor: Monitor) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(monitor.clock.wall()))
