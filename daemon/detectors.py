"""Detectors: pure functions of the bank state and the time, and the suite that runs them.

A detector looks at a BankState and returns the Conditions that hold now (kind, subject,
severity, message, evidence). The AlertTracker (`alerts.py`) turns conditions over time into
AlertEvents, with debounce and hysteresis per kind. No sleeping, no I/O, no clock reads: time
is an argument, and what a detector remembers between ticks lives in the `DetectorMemory` of the
`DetectContext` it is given (`history.py`), never in a global.

Here: `cutoff` (a BMS opened a switch, with what preceded it and what it means for the bank),
`link_lost`, `cell_imbalance` and `temperature`; the table of alert kinds, `ALERT_KINDS`; and
`BankAnalyzer`, which folds readings, runs the suite and tracks the alerts. The detectors that
compare batteries by the wiring are in `detectors_wiring.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from bankwatch.daemon.alerts import (
    RANK,
    Alert,
    AlertEvent,
    AlertTracker,
    Condition,
    Evidence,
    Severity,
    level,
    merge_conditions,
)
from bankwatch.daemon.detect_config import (
    AlertKind,
    CellImbalanceConfig,
    CurrentImbalanceConfig,
    CutoffConfig,
    DetectConfig,
    KindConfig,
    LinkLostConfig,
    PreParallelMismatchConfig,
    SeriesCurrentMismatchConfig,
    SocMismatchConfig,
    TemperatureConfig,
    VoltageInconsistencyConfig,
)
from bankwatch.daemon.detectors_wiring import (
    detect_current_imbalance,
    detect_pre_parallel_mismatch,
    detect_series_current_mismatch,
    detect_soc_mismatch,
    detect_voltage_inconsistency,
)
from bankwatch.daemon.history import (
    DetectContext,
    DetectorMemory,
    Preceded,
    group_refs,
)
from bankwatch.daemon.topology import BankState, BatteryState, StringState, Topology
from bankwatch.drivers.model import Reading, flag_names

__all__ = [
    "ALERT_KINDS",
    "Alert",
    "AlertEvent",
    "AlertKindInfo",
    "AlertTracker",
    "BankAnalyzer",
    "Condition",
    "DetectContext",
    "Detector",
    "DetectorMemory",
    "HaSensor",
    "Severity",
    "SubjectLevel",
    "check_kind_schemas",
    "detect_cell_imbalance",
    "detect_current_imbalance",
    "detect_cutoff",
    "detect_link_lost",
    "detect_pre_parallel_mismatch",
    "detect_series_current_mismatch",
    "detect_soc_mismatch",
    "detect_temperature",
    "detect_voltage_inconsistency",
    "run_detectors",
]


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
    if r.charge_enabled is not False and r.discharge_enabled is not False and not r.protections:
        return None
    opened = []
    if r.charge_enabled is False:
        opened.append("charge")
    if r.discharge_enabled is False:
        opened.append("discharge")
    causes = flag_names(r.protections)
    if "unknown" in causes:
        # A protection bit the codec cannot name: say which bit (protections_active holds it).
        active = str(dict(r.extra).get("protections_active", ""))
        bits = [n.replace("_", " ") for n in active.split(",") if n.startswith("unknown_bit_")]
        causes = [c for c in causes if c != "unknown"] + (bits or ["unknown"])
    if not opened and not causes:
        return None
    return opened, causes


def _blocks(b: BatteryState, opened: list[str]) -> bool:
    r = b.reading
    if r is None:
        return False
    return ("charge" in opened and r.charge_enabled is False) or (
        "discharge" in opened and r.discharge_enabled is False
    )


def _impact(state: BankState, string: StringState, opened: list[str]) -> str:
    """What the cutoff means for the bank, in words.

    A series string is only as open as its most-open battery; in a parallel bank a lone
    battery's branch goes with it. Only the direction that is blocked is lost: a string whose
    discharge switch is open still takes charge (through the switch's body diode). What is left
    is counted over every string, so a second cutoff elsewhere shows in the figures.
    """
    if not opened:
        # A protection flag with both switches closed: current still flows, nothing is lost yet.
        return "its switches are still closed"
    n = len(state.strings)
    cap_total = sum(s.node.capacity_ah for s in state.strings)
    part = f"string {string.name}" if len(string.batteries) > 1 else f"branch {string.name}"
    if n == 1:
        if len(opened) == 2:
            return "the bank's only string is down: no power in or out"
        if "discharge" in opened:
            return "the bank's only string cannot discharge: no power for the loads"
        return "the bank's only string cannot take charge"
    ok = [
        s
        for s in state.strings
        if s is not string and not any(_blocks(b, opened) for b in s.batteries)
    ]
    cap_left = sum(s.node.capacity_ah for s in ok)
    rest = f"{len(ok)} of {n} strings, {cap_left:g} of {cap_total:g} Ah"
    if len(opened) == 2:
        gone = "down" if len(string.batteries) > 1 else "lost"
        if not ok:
            return f"{part} is {gone} and so is every other string: no power in or out"
        return f"{part} is {gone}: the bank runs on {rest}"
    if "discharge" in opened:
        if not ok:
            return f"{part} cannot discharge and no other string can: no power for the loads"
        return f"{part} cannot discharge: loads run on {rest}"
    if not ok:
        return f"{part} cannot take charge and no other string can: the bank takes no charge"
    return f"{part} cannot take charge: charging goes to {rest}"


# Per cell: at or below the first the cells were low, at or above the second high, when a BMS
# cuts off without saying why.
_CELL_LIMITS: dict[str, tuple[float, float]] = {
    "lifepo4": (2.8, 3.6),
    "nmc": (3.0, 4.2),
    "lto": (1.8, 2.8),
}


def _preceded_text(p: Preceded) -> str:
    parts = []
    if p.cell_min_v is not None and p.cell_max_v is not None:
        parts.append(f"cells {p.cell_min_v:.3f}-{p.cell_max_v:.3f} V")
    if p.temperature_max_c is not None:
        parts.append(f"up to {p.temperature_max_c:.1f} °C")
    if p.current_min_a is not None and p.current_max_a is not None:
        if abs(p.current_max_a - p.current_min_a) < 0.05:
            parts.append(f"{p.current_min_a:+.1f} A")
        else:
            parts.append(f"{p.current_min_a:+.1f} to {p.current_max_a:+.1f} A")
    if p.soc_pct is not None:
        parts.append(f"SOC {p.soc_pct:.0f} %")
    if not parts:
        return ""
    when = "in the minute before" if p.window_s == 60 else f"in the {p.window_s:g} s before"
    return f"{when}: {', '.join(parts)}"


def _likely_cause(p: Preceded, b: BatteryState) -> str | None:
    """What the minute before points to, when the BMS reports no cause."""
    m = b.node.model
    low, high = _CELL_LIMITS.get(m.chemistry, (None, None))
    if low is not None and p.cell_min_v is not None and p.cell_min_v <= low:
        return "cell under-voltage"
    if high is not None and p.cell_max_v is not None and p.cell_max_v >= high:
        return "cell over-voltage"
    if p.temperature_max_c is not None and p.temperature_max_c >= 50:
        return "over-temperature"
    if p.temperature_max_c is not None and p.temperature_max_c <= 0:
        return "under-temperature"
    worst = max(abs(p.current_min_a or 0.0), abs(p.current_max_a or 0.0))
    if worst >= m.capacity_ah:
        return "over-current"
    return None


def detect_cutoff(
    state: BankState, now: float, ctx: DetectContext | None = None
) -> list[Condition]:
    """A BMS opened a switch or reports a protection: which battery, the cause, what preceded
    it (cell extremes, temperature and current in the minute before, from the memory's recent
    readings; summed up once, when the cutoff first shows, so the message stays the same
    while it lasts) and what it means for the bank.

    Uses each battery's last reading even when stale: losing contact does not end a cutoff, it
    only stops us learning that it ended.
    """
    ctx = ctx or DetectContext()
    window = ctx.config.cutoff.preceded_window_s
    memory = ctx.memory
    out: list[Condition] = []
    for string in state.strings:
        for b in string.batteries:
            r = b.reading
            if r is None:
                continue
            cut = _cutoff_state(r)
            if cut is None:
                memory.preceded.pop(b.path, None)
                continue
            opened, causes = cut
            pre = memory.preceded.get(b.path)
            if pre is None:
                pre = memory.preceded[b.path] = memory.preceding(b.path, r.at, window)
            severity: Severity = "critical" if "discharge" in opened else "warning"
            switch = (
                f"opened its {' and '.join(opened)} switch{'es' if len(opened) > 1 else ''}"
                if opened
                else "reports protection"
            )
            cause = f" ({', '.join(causes)})" if causes else ""
            likely = None if causes else _likely_cause(pre, b)
            if likely is not None:
                cause = f" (no cause reported; the minute before points to {likely})"
            message = f"{b.name}: BMS {switch}{cause}; {_impact(state, string, opened)}"
            before = _preceded_text(pre)
            if before:
                message += f"; {before}"
            evidence = _battery_evidence(b)
            evidence.update(
                {
                    "before_cell_min_v": pre.cell_min_v,
                    "before_cell_max_v": pre.cell_max_v,
                    "before_temperature_max_c": pre.temperature_max_c,
                    "before_current_min_a": pre.current_min_a,
                    "before_current_max_a": pre.current_max_a,
                    "before_soc_pct": pre.soc_pct,
                }
            )
            out.append(Condition("cutoff", b.path, severity, message, evidence))
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


# --- cell_imbalance and temperature -----------------------------------------------------------


def detect_cell_imbalance(state: BankState, now: float, ctx: DetectContext) -> list[Condition]:
    """The spread between a battery's highest and lowest cell (from every cell voltage, or
    the extremes a protocol sends)."""
    cfg = ctx.config.cell_imbalance
    out: list[Condition] = []
    for b in state.batteries():
        r = b.reading
        if not b.live or r is None:
            continue
        lo, hi = r.min_cell_v, r.max_cell_v
        if lo is None or hi is None:
            continue
        spread = hi - lo
        key = f"cell_imbalance:{b.path}"
        severity = level(
            spread, cfg.warning_v, cfg.critical_v, cfg.hysteresis_v, ctx.latched.get(key)
        )
        if severity is None:
            continue
        which = f"lowest {lo:.3f} V, highest {hi:.3f} V"
        cells = r.cell_voltages_v
        if cells:
            i_lo = cells.index(min(cells)) + 1
            i_hi = cells.index(max(cells)) + 1
            which = f"cell {i_lo} lowest at {lo:.3f} V, cell {i_hi} highest at {hi:.3f} V"
        at = "" if r.soc_pct is None else f" at {r.soc_pct:.0f} % SOC"
        message = (
            f"{b.name}: its cells are {spread * 1000:.0f} mV apart{at} ({which}): a weak or "
            f"unbalanced cell reaches its limit first and cuts the battery off early; a long "
            f"balancing charge may help, a cell that keeps drifting is failing"
        )
        out.append(
            Condition(
                "cell_imbalance",
                b.path,
                severity,
                message,
                {
                    "cell_spread_v": round(spread, 4),
                    "cell_min_v": lo,
                    "cell_max_v": hi,
                    "soc_pct": r.soc_pct,
                    "current_a": r.current_a,
                },
                "cells apart",
            )
        )
    return out


_LITHIUM = frozenset({"lifepo4", "nmc", "lto"})


def _coldest(r: Reading) -> float | None:
    if r.temperatures_c:
        return min(r.temperatures_c)
    if r.cell_temperature_min_c is not None:
        return r.cell_temperature_min_c
    return r.temperature_c


def detect_temperature(state: BankState, now: float, ctx: DetectContext) -> list[Condition]:
    """Over and under temperature against limits, and a battery much warmer than the bank's
    others (against the bank's median; in a pair, the warmer one is named).

    The three checks share one alert per battery; each keeps its own hysteresis through the
    memory of which checks were on, so one check's latch never lends another its lower
    threshold.
    """
    cfg = ctx.config.temperature
    hyst = cfg.hysteresis_c
    live: list[tuple[BatteryState, float, float]] = []
    for b in state.batteries():
        r = b.reading
        if not b.live or r is None or r.temperature_c is None:
            continue
        coldest = _coldest(r)
        live.append((b, r.temperature_c, r.temperature_c if coldest is None else coldest))
    out: list[Condition] = []
    parts_memory = ctx.memory.parts
    refs: list[float | None] = [None] * len(live)
    if len(live) > 1:
        refs = list(group_refs([t for _, t, _ in live]))
    for (b, hot, cold), ref in zip(live, refs, strict=True):
        key = f"temperature:{b.path}"
        latched = ctx.latched.get(key)
        was = parts_memory.get(key, frozenset()) if latched else frozenset()
        parts: list[tuple[str, Severity, str]] = []
        sev = level(
            hot,
            cfg.high_warning_c,
            cfg.high_critical_c,
            hyst,
            latched if "hot" in was else None,
        )
        if sev is not None:
            limit = cfg.high_critical_c if sev == "critical" else cfg.high_warning_c
            parts.append(
                ("hot", sev, f"{hot:.1f} °C, at or over the {limit:g} °C limit: heat ages "
                 "cells fast; most BMS stop charging near 50 °C and cut off near 60 °C")
            )  # fmt: skip
        sev = level(
            -cold,
            -cfg.low_warning_c,
            -cfg.low_critical_c,
            hyst,
            latched if "cold" in was else None,
        )
        if sev is not None:
            limit = cfg.low_critical_c if sev == "critical" else cfg.low_warning_c
            why = (
                "charging lithium cells this cold plates lithium; the BMS should block charge"
                if b.node.model.chemistry in _LITHIUM
                else "a lead-acid battery holds less this cold, and freezes when discharged"
            )
            parts.append(("cold", sev, f"{cold:.1f} °C, at or under the {limit:g} °C limit: {why}"))
        if ref is not None:
            delta = hot - ref
            on = cfg.sibling_delta_c - (hyst if "warmer" in was else 0.0)
            if delta >= on and (len(live) > 2 or delta > 0):
                parts.append(
                    ("warmer", "warning", f"{delta:.1f} °C warmer than the bank's other "
                     f"batteries ({hot:.1f} against {ref:.1f} °C): a loose or corroded "
                     "terminal, a failing cell, or a heat source beside it")
                )  # fmt: skip
        if not parts:
            parts_memory.pop(key, None)
            continue
        parts_memory[key] = frozenset(p[0] for p in parts)
        severity = max((p[1] for p in parts), key=lambda s: RANK[s])
        out.append(
            Condition(
                "temperature",
                b.path,
                severity,
                f"{b.name}: " + "; ".join(p[2] for p in parts),
                {
                    "temperature_c": hot,
                    "temperature_min_c": cold,
                    "others_median_c": None if ref is None else round(ref, 2),
                },
                "+".join(p[0] for p in parts),
            )
        )
    return out


# --- the suite ------------------------------------------------------------------------------


Detector = Callable[[BankState, float, DetectContext], list[Condition]]


def _link_lost(state: BankState, now: float, ctx: DetectContext) -> list[Condition]:
    return detect_link_lost(state, now, ctx.started_at)


# What an alert is about: a battery (bank/string/battery), a string (bank/string) or the bank.
SubjectLevel = Literal["battery", "string", "bank"]
# Where Home Assistant gets a binary sensor for a kind: "battery" on each battery's device
# (alerts about that battery), "bank" on the bank's device (alerts about the bank itself, e.g.
# its master's cutoff), "bank-any" on the bank's device for an alert of that kind anywhere in
# the bank (strings have no device of their own).
HaSensor = Literal["battery", "bank", "bank-any"]


@dataclass(frozen=True, slots=True)
class AlertKindInfo:
    """One alert kind: everything config, the detector suite and MQTT discovery know of it."""

    name: str
    # Its [detect.NAME] table (DetectConfig's field of that name has this type).
    schema: type[KindConfig]
    # The function that looks for it.
    detector: Detector
    # The levels its alerts' subjects are at, and the severities it raises.
    subjects: frozenset[SubjectLevel]
    severities: frozenset[Severity]
    # Its Home Assistant binary sensors: their name, device class and the devices they are on.
    ha_name: str
    ha_sensors: tuple[HaSensor, ...]
    ha_device_class: str = "problem"


# Every alert kind, in the order the suite runs them and Home Assistant lists them. A new kind
# is one row here, its schema in detect_config.py (a field of DetectConfig) and its detector.
ALERT_KINDS: Mapping[str, AlertKindInfo] = {
    k.name: k
    for k in (
        AlertKindInfo(
            name="cutoff",
            schema=CutoffConfig,
            detector=detect_cutoff,
            subjects=frozenset({"battery", "bank"}),
            severities=frozenset({"warning", "critical"}),
            ha_name="BMS cutoff",
            ha_sensors=("battery", "bank"),
        ),
        AlertKindInfo(
            name="link_lost",
            schema=LinkLostConfig,
            detector=_link_lost,
            subjects=frozenset({"battery"}),
            severities=frozenset({"warning"}),
            ha_name="Link lost",
            ha_sensors=("battery",),
        ),
        AlertKindInfo(
            name="soc_mismatch",
            schema=SocMismatchConfig,
            detector=detect_soc_mismatch,
            subjects=frozenset({"battery", "string"}),
            severities=frozenset({"info", "warning", "critical"}),
            ha_name="SOC mismatch",
            ha_sensors=("battery", "bank-any"),
        ),
        AlertKindInfo(
            name="current_imbalance",
            schema=CurrentImbalanceConfig,
            detector=detect_current_imbalance,
            subjects=frozenset({"string"}),
            severities=frozenset({"warning", "critical"}),
            ha_name="Current imbalance",
            ha_sensors=("bank-any",),
        ),
        AlertKindInfo(
            name="series_current_mismatch",
            schema=SeriesCurrentMismatchConfig,
            detector=detect_series_current_mismatch,
            subjects=frozenset({"battery", "string"}),
            severities=frozenset({"warning"}),
            ha_name="Series current mismatch",
            ha_sensors=("battery", "bank-any"),
        ),
        AlertKindInfo(
            name="voltage_inconsistency",
            schema=VoltageInconsistencyConfig,
            detector=detect_voltage_inconsistency,
            subjects=frozenset({"battery", "string", "bank"}),
            severities=frozenset({"warning", "critical"}),
            ha_name="Voltage inconsistency",
            ha_sensors=("battery", "bank-any"),
        ),
        AlertKindInfo(
            name="cell_imbalance",
            schema=CellImbalanceConfig,
            detector=detect_cell_imbalance,
            subjects=frozenset({"battery"}),
            severities=frozenset({"warning", "critical"}),
            ha_name="Cell imbalance",
            ha_sensors=("battery",),
        ),
        AlertKindInfo(
            name="temperature",
            schema=TemperatureConfig,
            detector=detect_temperature,
            subjects=frozenset({"battery"}),
            severities=frozenset({"warning", "critical"}),
            ha_name="Temperature",
            ha_sensors=("battery",),
        ),
        AlertKindInfo(
            name="pre_parallel_mismatch",
            schema=PreParallelMismatchConfig,
            detector=detect_pre_parallel_mismatch,
            subjects=frozenset({"string"}),
            severities=frozenset({"warning", "critical"}),
            ha_name="Pre-parallel mismatch",
            ha_sensors=("bank-any",),
        ),
    )
}


def check_kind_schemas(kinds: Mapping[str, AlertKindInfo]) -> None:
    """DetectConfig's fields and the AlertKind type spell the kinds out for mypy; they must be
    the table's, or a kind would be configurable but never run (or run with no settings).
    Raises TypeError when they differ; run on ALERT_KINDS at import."""
    fields = {
        name: f.annotation
        for name, f in DetectConfig.model_fields.items()
        if isinstance(f.annotation, type) and issubclass(f.annotation, KindConfig)
    }
    table = {k.name: k.schema for k in kinds.values()}
    if fields != table:
        raise TypeError(f"DetectConfig's kind tables {fields} are not the alert kinds' {table}")
    if get_args(AlertKind) != tuple(kinds):
        raise TypeError(f"AlertKind {get_args(AlertKind)} is not the alert kinds {tuple(kinds)}")


check_kind_schemas(ALERT_KINDS)


def run_detectors(state: BankState, now: float, ctx: DetectContext) -> list[Condition]:
    """Bring the memory up to date with the state, run every enabled detector, and return one
    condition per alert key."""
    ctx.memory.observe(state, ctx.config)
    conditions: list[Condition] = []
    for kind in ALERT_KINDS.values():
        if ctx.config.kind(kind.name).enabled:
            conditions.extend(kind.detector(state, now, ctx))
    return merge_conditions(conditions)


@dataclass(frozen=True, slots=True)
class _Step:
    state: BankState
    events: list[AlertEvent]


class BankAnalyzer:
    """Readings in, bank state and alert events out: the fold, the detector suite and the
    alert tracker, with the memory they keep. Pure given its inputs and the time: the daemon,
    the demo and the scenario runner all drive one."""

    def __init__(self, topology: Topology, config: DetectConfig, started_at: float = 0.0):
        self.topology = topology
        self.config = config
        self.started_at = started_at
        self.memory = DetectorMemory()
        self.tracker = AlertTracker(
            config.raise_after_s,
            config.clear_after_s,
            per_kind={kind: config.debounce(kind) for kind in ALERT_KINDS},
        )

    def step(
        self,
        readings: Mapping[str, Reading],
        now: float,
        bank_reading: Reading | None = None,
    ) -> tuple[BankState, list[AlertEvent]]:
        state = self.topology.fold(readings, now, bank_reading)
        ctx = DetectContext(self.config, self.memory, self.tracker.latched(), self.started_at)
        events = self.tracker.update(run_detectors(state, now, ctx), now)
        return state, events


# The names the rest of bankwatch has always imported from here.
_REEXPORTED = (Alert, AlertEvent, AlertTracker, Evidence)
