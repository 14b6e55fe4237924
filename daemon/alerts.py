"""The alert lifecycle: conditions over time become raised, updated and cleared alerts.

A detector says what holds now (a `Condition`: kind, subject, severity, message, evidence). The
`AlertTracker` turns a stream of them into `AlertEvent`s:

- **raised** once a condition has held for its kind's `raise_after_s` (debounce);
- **updated** when an active alert's severity changes, or what it is about (its `gist`: "below
  its string", "open branch"); numbers that move every tick (the evidence, the figures in the
  message) refresh the active alert silently, or every tick would be an event;
- **cleared** once it has been gone for its kind's `clear_after_s` (hysteresis in time; the
  detectors add hysteresis in value, see `DetectContext.latched`).

The id is the kind and the subject, so it is stable across updates and restarts. Alerts restored
after a restart are held for a grace time, so they are neither forgotten because the first
readings have not arrived yet nor raised a second time. No clock reads: time is an argument.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

__all__ = [
    "RANK",
    "Alert",
    "AlertEvent",
    "AlertTracker",
    "Condition",
    "Evidence",
    "EvidenceValue",
    "Severity",
    "level",
    "merge_conditions",
]

Severity = Literal["info", "warning", "critical"]
EvidenceValue = float | int | str | bool | list[str] | None
Evidence = Mapping[str, EvidenceValue]
RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}


@dataclass(frozen=True, slots=True)
class Condition:
    kind: str
    subject: str  # bank/string/battery path
    severity: Severity
    message: str
    evidence: Evidence = field(default_factory=dict)
    # What the condition is about, in a few stable words; a change of it is an "updated" event,
    # a change of the message alone is not. None: the message itself is the gist.
    gist: str | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.subject}"

    @property
    def about(self) -> str:
        return self.message if self.gist is None else self.gist


@dataclass(frozen=True, slots=True)
class Alert:
    id: str  # stable: kind and subject, so a restart or an update keeps it
    kind: str
    subject: str
    severity: Severity
    message: str
    evidence: Evidence
    raised_at: float  # the clock's monotonic time
    gist: str = ""


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


def level(
    value: float,
    warning: float,
    critical: float,
    hysteresis: float,
    latched: Severity | None,
) -> Severity | None:
    """The severity of a value against two thresholds, with hysteresis in value: an alert that
    is on (or pending) at a severity keeps it until the value is `hysteresis` below its
    threshold, so noise around a threshold neither flaps the alert nor its severity."""
    if value >= critical or (latched == "critical" and value >= critical - hysteresis):
        return "critical"
    if value >= warning or (latched in ("warning", "critical") and value >= warning - hysteresis):
        return "warning"
    return None


def _alert(cond: Condition, raised_at: float) -> Alert:
    return Alert(
        id=cond.key,
        kind=cond.kind,
        subject=cond.subject,
        severity=cond.severity,
        message=cond.message,
        evidence=cond.evidence,
        raised_at=raised_at,
        gist=cond.about,
    )


def merge_conditions(conditions: Iterable[Condition]) -> list[Condition]:
    """One condition per key: a detector that finds two things wrong with one subject (a bank
    meter whose voltage and current both disagree) reports both in one alert, at the worse
    severity."""
    out: dict[str, Condition] = {}
    for c in conditions:
        prev = out.get(c.key)
        if prev is None:
            out[c.key] = c
            continue
        worse = c if RANK[c.severity] > RANK[prev.severity] else prev
        out[c.key] = Condition(
            c.kind,
            c.subject,
            worse.severity,
            f"{prev.message}; {c.message}",
            {**prev.evidence, **c.evidence},
            f"{prev.about}; {c.about}",
        )
    return list(out.values())


@dataclass(slots=True)
class _Pending:
    first_seen: float
    condition: Condition


class AlertTracker:
    """Conditions over time → alert events, with debounce (raise) and hysteresis (clear), per
    alert kind where `per_kind` gives (raise_after_s, clear_after_s), else the defaults."""

    def __init__(
        self,
        raise_after_s: float = 0.0,
        clear_after_s: float = 5.0,
        per_kind: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        self.raise_after_s = raise_after_s
        self.clear_after_s = clear_after_s
        self.per_kind = dict(per_kind or {})
        self.active: dict[str, Alert] = {}
        self._pending: dict[str, _Pending] = {}
        self._missing_since: dict[str, float] = {}
        self._hold_until: dict[str, float] = {}

    def _timing(self, kind: str) -> tuple[float, float]:
        return self.per_kind.get(kind, (self.raise_after_s, self.clear_after_s))

    def update(self, conditions: list[Condition], now: float) -> list[AlertEvent]:
        events: list[AlertEvent] = []
        present = {c.key: c for c in conditions}
        for key, cond in present.items():
            self._missing_since.pop(key, None)
            alert = self.active.get(key)
            if alert is None:
                pending = self._pending.setdefault(key, _Pending(now, cond))
                pending.condition = cond
                if now - pending.first_seen >= self._timing(cond.kind)[0]:
                    del self._pending[key]
                    alert = _alert(cond, raised_at=now)
                    self.active[key] = alert
                    events.append(AlertEvent("raised", alert, now))
            elif alert.severity != cond.severity or alert.gist != cond.about:
                alert = _alert(cond, raised_at=alert.raised_at)
                self.active[key] = alert
                events.append(AlertEvent("updated", alert, now))
            elif alert.message != cond.message or alert.evidence != cond.evidence:
                # The same alert with fresher figures: kept current for whoever lists the
                # active alerts, without an event.
                self.active[key] = replace(alert, message=cond.message, evidence=cond.evidence)
        for key in list(self._pending):
            if key not in present:
                del self._pending[key]
        for key, alert in list(self.active.items()):
            if key in present:
                continue
            if now < self._hold_until.get(key, -float("inf")):
                continue  # restored after a restart: the detectors have not had a fair look yet
            since = self._missing_since.setdefault(key, now)
            if now - since >= self._timing(alert.kind)[1]:
                del self.active[key]
                del self._missing_since[key]
                self._hold_until.pop(key, None)
                events.append(AlertEvent("cleared", alert, now))
        return events

    def latched(self) -> dict[str, Severity]:
        """Severity by key of every alert that is active or waiting out its debounce: what the
        detectors' value hysteresis holds on to."""
        out: dict[str, Severity] = {k: p.condition.severity for k, p in self._pending.items()}
        out.update({k: a.severity for k, a in self.active.items()})
        return out

    def restore(self, alerts: Iterable[Alert], hold_until: float) -> None:
        """Take back the alerts that were active before a restart, without events. They cannot
        clear before `hold_until`: until then a missing condition may only mean that the
        batteries have not been heard from yet."""
        for alert in alerts:
            self.active[alert.id] = alert
            self._hold_until[alert.id] = hold_until

    def sorted_active(self) -> list[Alert]:
        return sorted(self.active.values(), key=lambda a: (-RANK[a.severity], a.subject))
