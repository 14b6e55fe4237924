"""Detectors: pure functions of the bank state and the time, and the alert lifecycle.

A detector looks at a BankState and returns the Conditions that hold now (kind, subject,
severity, message, evidence). The AlertTracker turns conditions over time into AlertEvents:
`raised` when a condition has held for `raise_after_s`, `updated` when its severity or message
changes, `cleared` when it has been gone for `clear_after_s` (so a value hovering at a threshold
does not flap). No sleeping, no I/O, no clock reads: time is an argument.

This is the start of the suite: a BMS cutoff and a lost link. The rest (SOC mismatch, current
imbalance, ...) plug in as more functions in DETECTORS.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from bankwatch.daemon.model import Reading, flag_names
from bankwatch.daemon.topology import BankState, BatteryState, StringState

__all__ = [
    "DETECTORS",
    "Alert",
    "AlertEvent",
    "AlertTracker",
    "Condition",
    "Severity",
    "detect_cutoff",
    "detect_link_lost",
]

Severity = Literal["info", "warning", "critical"]
Evidence = Mapping[str, float | int | str | bool | list[str] | None]
_RANK = {"info": 0, "warning": 1, "critical": 2}


@dataclass(frozen=True, slots=True)
class Condition:
    kind: str
    subject: str  # bank/string/battery path
    severity: Severity
    message: str
    evidence: Evidence = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.subject}"


@dataclass(frozen=True, slots=True)
class Alert:
    id: str  # stable: kind and subject, so a restart or an update keeps it
    kind: str
    subject: str
    severity: Severity
    message: str
    evidence: Evidence
    raised_at: float


@dataclass(frozen=True, slots=True)
class AlertEvent:
    event: Literal["raised", "updated", "cleared"]
    alert: Alert
    at: float

    def to_json(self, wall_time: float | None = None) -> dict[str, object]:
        a = self.alert
        return {
            "type": "alert",
            "event": self.event,
            "id": a.id,
            "kind": a.kind,
            "severity": a.severity,
            "subject": a.subject,
            "time": wall_time if wall_time is not None else self.at,
            "message": a.message,
            "evidence": dict(a.evidence),
        }


def _battery_evidence(b: BatteryState) -> dict[str, float | int | str | bool | list[str] | None]:
    r = b.reading
    assert r is not None
    return {
        "protections": flag_names(r.protections),
        "alarms": flag_names(r.alarms),
        "charge_enabled": r.charge_enabled,
        "discharge_enabled": r.discharge_enabled,
        "pack_voltage_v": r.pack_voltage_v,
        "current_a": r.current_a,
        "soc_pct": r.soc_pct,
        "cell_voltage_min_v": r.min_cell_v,
        "cell_voltage_max_v": r.max_cell_v,
        "temperature_c": r.temperature_c,
        "stale": not b.live,
    }


def _cutoff_state(r: Reading) -> tuple[list[str], list[str]] | None:
    """(switches open, protections) when the BMS has cut off, else None."""
    opened = []
    if r.charge_enabled is False:
        opened.append("charge")
    if r.discharge_enabled is False:
        opened.append("discharge")
    causes = flag_names(r.protections)
    if not opened and not causes:
        return None
    return opened, causes


def _impact(state: BankState, string: StringState, opened: list[str]) -> str:
    """What the cutoff means for the bank, in words.

    A series string is only as open as its most-open battery; in a parallel bank a lone
    battery's branch goes with it. Only the direction that is blocked is lost: a string whose
    discharge switch is open still takes charge (through the switch's body diode).
    """
    if not opened:
        # A protection flag with both switches closed: current still flows, nothing is lost yet.
        return "its switches are still closed"
    n = len(state.strings)
    cap_total = sum(s.node.capacity_ah for s in state.strings)
    cap_left = cap_total - string.node.capacity_ah
    part = f"string {string.name}" if len(string.batteries) > 1 else f"branch {string.name}"
    if n == 1:
        if len(opened) == 2:
            return "the bank's only string is down: no power in or out"
        if "discharge" in opened:
            return "the bank's only string cannot discharge: no power for the loads"
        return "the bank's only string cannot take charge"
    rest = f"{n - 1} of {n} strings, {cap_left:g} of {cap_total:g} Ah"
    if len(opened) == 2:
        gone = "down" if len(string.batteries) > 1 else "lost"
        return f"{part} is {gone}: the bank runs on {rest}"
    if "discharge" in opened:
        return f"{part} cannot discharge: loads run on {rest}"
    return f"{part} cannot take charge: charging goes to {rest}"


def detect_cutoff(state: BankState, now: float) -> list[Condition]:
    """A BMS opened a switch or reports a protection.

    Uses each battery's last reading even when stale: losing contact does not end a cutoff, it
    only stops us learning that it ended.
    """
    out: list[Condition] = []
    for string in state.strings:
        for b in string.batteries:
            r = b.reading
            if r is None:
                continue
            cut = _cutoff_state(r)
            if cut is None:
                continue
            opened, causes = cut
            severity: Severity = "critical" if "discharge" in opened else "warning"
            switch = (
                f"opened its {' and '.join(opened)} switch{'es' if len(opened) > 1 else ''}"
                if opened
                else "reports protection"
            )
            cause = f" ({', '.join(causes)})" if causes else ""
            message = f"{b.name}: BMS {switch}{cause}; {_impact(state, string, opened)}"
            out.append(Condition("cutoff", b.path, severity, message, _battery_evidence(b)))
    br = state.bank_reading
    if br is not None:
        cut = _cutoff_state(br)
        if cut is not None:
            opened, causes = cut
            severity = "critical" if "discharge" in opened else "warning"
            what = f"opened {' and '.join(opened)}" if opened else "reports protection"
            cause = f" ({', '.join(causes)})" if causes else ""
            out.append(
                Condition(
                    "cutoff",
                    state.name,
                    severity,
                    f"bank master {what}{cause}",
                    {
                        "protections": causes,
                        "charge_enabled": br.charge_enabled,
                        "discharge_enabled": br.discharge_enabled,
                        "soc_pct": br.soc_pct,
                        "pack_voltage_v": br.pack_voltage_v,
                    },
                )
            )
    return out


def detect_link_lost(state: BankState, now: float, started_at: float = 0.0) -> list[Condition]:
    """A battery with a source not heard from within its stale time."""
    out: list[Condition] = []
    for b in state.batteries():
        if b.node.source is None or b.live:
            continue
        silent_for = b.age_s if b.age_s is not None else now - started_at
        if silent_for <= b.node.stale_after_s:
            continue  # just started: give it its stale time to be heard
        src = b.node.source
        # The message must not change while the silence goes on, or every tick is an "update".
        heard = (
            "never heard from"
            if b.reading is None
            else f"not heard from for over {b.node.stale_after_s:g} s"
        )
        out.append(
            Condition(
                "link_lost",
                b.path,
                "warning",
                f"{b.name}: {heard} ({src.protocol} on link {src.link}); its values are stale",
                {
                    "link": src.link,
                    "protocol": src.protocol,
                    "silent_for_s": round(silent_for, 1),
                    "stale_after_s": b.node.stale_after_s,
                    "last_seen_age_s": None if b.age_s is None else round(b.age_s, 1),
                },
            )
        )
    return out


Detector = Callable[[BankState, float], list[Condition]]
DETECTORS: tuple[Detector, ...] = (detect_cutoff,)


def _alert(cond: Condition, raised_at: float) -> Alert:
    return Alert(
        id=cond.key,
        kind=cond.kind,
        subject=cond.subject,
        severity=cond.severity,
        message=cond.message,
        evidence=cond.evidence,
        raised_at=raised_at,
    )


@dataclass(slots=True)
class _Pending:
    first_seen: float
    condition: Condition


class AlertTracker:
    """Conditions over time → alert events, with debounce (raise) and hysteresis (clear)."""

    def __init__(self, raise_after_s: float = 0.0, clear_after_s: float = 5.0) -> None:
        self.raise_after_s = raise_after_s
        self.clear_after_s = clear_after_s
        self.active: dict[str, Alert] = {}
        self._pending: dict[str, _Pending] = {}
        self._missing_since: dict[str, float] = {}

    def update(self, conditions: list[Condition], now: float) -> list[AlertEvent]:
        events: list[AlertEvent] = []
        present = {c.key: c for c in conditions}
        for key, cond in present.items():
            self._missing_since.pop(key, None)
            alert = self.active.get(key)
            if alert is None:
                pending = self._pending.setdefault(key, _Pending(now, cond))
                pending.condition = cond
                if now - pending.first_seen >= self.raise_after_s:
                    del self._pending[key]
                    alert = _alert(cond, raised_at=now)
                    self.active[key] = alert
                    events.append(AlertEvent("raised", alert, now))
            elif alert.severity != cond.severity or alert.message != cond.message:
                # Evidence values move every tick; only a change a person would care about
                # (severity, or what the message says) is an update.
                alert = _alert(cond, raised_at=alert.raised_at)
                self.active[key] = alert
                events.append(AlertEvent("updated", alert, now))
        for key in list(self._pending):
            if key not in present:
                del self._pending[key]
        for key, alert in list(self.active.items()):
            if key in present:
                continue
            since = self._missing_since.setdefault(key, now)
            if now - since >= self.clear_after_s:
                del self.active[key]
                del self._missing_since[key]
                events.append(AlertEvent("cleared", alert, now))
        return events

    def sorted_active(self) -> list[Alert]:
        return sorted(self.active.values(), key=lambda a: (-_RANK[a.severity], a.subject))
