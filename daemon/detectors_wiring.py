"""Detectors that judge batteries against each other, by the wiring's physics.

What one BMS cannot see and the bank shows (DOMAIN.md):

- `soc_mismatch`: batteries that should agree on SOC (one series string; strings in parallel)
  and one that does not, with the rate the gap grows at;
- `current_imbalance`: parallel branches sharing the bank current unevenly against their
  capacity, and a branch at zero while its siblings carry the load (an open branch);
- `series_current_mismatch`: batteries of one series string reporting different currents,
  though one current flows through them all;
- `voltage_inconsistency`: voltages and currents that break the wiring's arithmetic;
- `pre_parallel_mismatch`: a branch apart from its parallel group at a voltage or SOC far from
  it, before and as it joins (inrush).

Each is a pure function of the state, the time and a `DetectContext` (thresholds, memory,
latched severities). Only live readings are compared: a stale battery is left out, never
compared as if live.
"""

from __future__ import annotations

from bankwatch.daemon.alerts import Condition, Severity, level
from bankwatch.daemon.detect_config import CurrentImbalanceConfig, VoltageInconsistencyConfig
from bankwatch.daemon.history import DetectContext, group_refs, median
from bankwatch.daemon.topology import BankState, BatteryState, StringState

__all__ = [
    "CELL_VOLTAGE_RANGE",
    "detect_current_imbalance",
    "detect_pre_parallel_mismatch",
    "detect_series_current_mismatch",
    "detect_soc_mismatch",
    "detect_voltage_inconsistency",
]

# Per cell, the widest a healthy battery of the chemistry can read, loaded or charging. A pack
# voltage outside its cell count times this range is a battery with another cell count.
CELL_VOLTAGE_RANGE: dict[str, tuple[float, float]] = {
    "lifepo4": (2.0, 3.8),
    "nmc": (2.5, 4.35),
    "lto": (1.5, 2.9),
    "agm": (1.6, 2.6),
    "flooded": (1.6, 2.65),
    "gel": (1.6, 2.6),
}


def _branch(s: StringState) -> str:
    """How a message names a parallel branch: by its battery when it is one battery."""
    if len(s.batteries) == 1:
        return f"branch {s.name} ({s.batteries[0].name})"
    return f"string {s.name}"


def _subject(s: StringState) -> str:
    """A one-battery branch's SOC is its battery's: the battery is the subject."""
    return s.batteries[0].path if len(s.batteries) == 1 else s.path


def _live_soc(b: BatteryState) -> float | None:
    r = b.reading
    return r.soc_pct if b.live and r is not None else None


# --- soc_mismatch ---------------------------------------------------------------------------------


def detect_soc_mismatch(state: BankState, now: float, ctx: DetectContext) -> list[Condition]:
    """SOC against the group's: within each series string, and between parallel strings.

    In a group of three or more the gap is to the group's median (one outlier does not move
    it); in a pair it is the difference, and the lower one is named (it reaches cutoff
    first). The gap's growth in points per day is tracked per member, so a slow divergence is
    raised early (info) long before it reaches the warning gap.
    """
    out: list[Condition] = []
    for s in state.strings:
        if len(s.batteries) < 2:
            continue
        members = [(b.path, b.name, soc) for b in s.batteries if (soc := _live_soc(b)) is not None]
        out += _soc_group(
            members,
            f"the other batteries of string {s.name}",
            f"in a series string the emptiest battery reaches cutoff first and stops string "
            f"{s.name}",
            now,
            ctx,
        )
    if len(state.strings) >= 2:
        members = [
            (_subject(s), _branch(s), s.soc_pct) for s in state.strings if s.soc_pct is not None
        ]
        out += _soc_group(
            members,
            "the other branches in parallel",
            "branches in parallel at different SOC share current unevenly and circulate it",
            now,
            ctx,
        )
    return out


def _soc_group(
    members: list[tuple[str, str, float]],
    others_text: str,
    why: str,
    now: float,
    ctx: DetectContext,
) -> list[Condition]:
    cfg = ctx.config.soc_mismatch
    out: list[Condition] = []
    if len(members) < 2:
        return out
    pair = len(members) == 2
    refs = group_refs([m[2] for m in members])
    for (path, name, soc), ref in zip(members, refs, strict=True):
        gap = soc - ref
        drift = ctx.memory.drift_add(path, now, gap, cfg.drift_window_s)
        if pair and gap > 0:
            continue  # the pair's gap is named once, on the lower battery
        key = f"soc_mismatch:{path}"
        latched = ctx.latched.get(key)
        mag = abs(gap)
        severity: Severity | None = level(
            mag, cfg.warning_pct, cfg.critical_pct, cfg.hysteresis_pct, latched
        )
        if severity is None and drift is not None:
            widening = drift if gap >= 0 else -drift  # points a day the gap grows by
            # Hysteresis for the early notice too: once on, it holds at 3/4 of the rate.
            on = cfg.drift_pct_per_day * (0.75 if latched else 1.0)
            wide = cfg.drift_min_pct - (cfg.hysteresis_pct if latched else 0.0)
            if widening >= on and mag >= wide:
                severity = "info"
        if severity is None:
            continue
        side = "below" if gap < 0 else "above"
        message = f"{name}: {mag:.1f} points {side} {others_text} ({soc:.1f} % against {ref:.1f} %)"
        if drift is not None and abs(drift) >= 0.1:
            growing = "growing" if (gap < 0) == (drift < 0) else "shrinking"
            message += f", the gap {growing} {abs(drift):.1f} points/day"
        if severity == "info":
            message += "; it is drifting apart early, before the gap is wide"
        elif gap < 0:
            message += f"; {why}"
        out.append(
            Condition(
                "soc_mismatch",
                path,
                severity,
                message,
                {
                    "soc_pct": soc,
                    "group_soc_pct": round(ref, 2),
                    "gap_pct": round(gap, 2),
                    "drift_pct_per_day": None if drift is None else round(drift, 2),
                    "group_size": len(members),
                },
                gist=f"{side} {others_text}" + (" (drifting)" if severity == "info" else ""),
            )
        )
    return out


# --- current_imbalance --------------------------------------------------------------------------


def _allows(s: StringState, charging: bool) -> bool:
    """No BMS of the string has opened the switch of this direction (unknown counts as open
    for business: the cutoff detector speaks for known ones)."""
    for b in s.batteries:
        r = b.reading
        if r is None:
            continue
        if charging and r.charge_enabled is False:
            return False
        if not charging and r.discharge_enabled is False:
            return False
    return True


def detect_current_imbalance(state: BankState, now: float, ctx: DetectContext) -> list[Condition]:
    """Each parallel branch's share of the current against its share of the capacity.

    Judged only while the bank current is large enough and every branch sits between the
    knees of its SOC curve (near full or empty the curve, not the cabling, decides the
    sharing). Branches a BMS has cut off in the present direction are left out: their
    siblings rightly take their share, and the cutoff alert says so. While it cannot judge, a
    raised imbalance is held rather than cleared: the cable is no better at night.
    """
    cfg = ctx.config.current_imbalance
    if len(state.strings) < 2:
        return []
    held = _held(ctx, "current_imbalance")
    known = [s for s in state.strings if s.current_a is not None and s.live > 0]
    if len(known) != len(state.strings):
        return held  # a branch unknown: shares cannot be computed
    charging = sum(s.current_a or 0.0 for s in known) > 0
    open_branches = _open_branches(known, ctx)
    eligible = [s for s in known if _allows(s, charging) and s not in open_branches]
    if len(eligible) < 2 and not open_branches:
        return held
    total = sum(s.current_a or 0.0 for s in eligible)
    cap = sum(s.node.capacity_ah for s in eligible)
    if abs(total) < max(cfg.min_current_a, cfg.min_c_rate * cap):
        return held
    direction = "charge" if charging else "load"
    out = _open_branch_alerts(open_branches, total, direction, len(known), cfg)
    if len(eligible) < 2 or not _in_soc_window(eligible, cfg):
        # Sharing cannot be judged now: the share alerts already raised are held.
        out += [c for c in held if c.gist != "open"]
        return _remember(ctx, out)
    out += _share_alerts(eligible, total, cap, direction, held, cfg, ctx)
    return _remember(ctx, out)


def _open_branches(known: list[StringState], ctx: DetectContext) -> list[StringState]:
    """Branches apart from the bank with their BMS switches closed: open in the wiring. They
    carry nothing; the others' shares are judged among themselves."""
    links = ctx.memory.links
    return [
        s
        for s in known
        if s.path in links and links[s.path].apart and _allows(s, True) and _allows(s, False)
    ]


def _open_branch_alerts(
    open_branches: list[StringState],
    total: float,
    direction: str,
    branches: int,
    cfg: CurrentImbalanceConfig,
) -> list[Condition]:
    out: list[Condition] = []
    for s in open_branches:
        i_k = s.current_a or 0.0
        if abs(i_k) >= cfg.open_branch_a:
            continue
        message = (
            f"{_branch(s)}: open branch: it carries {i_k:+.1f} A while the other branches "
            f"carry the {direction} ({total:+.1f} A) and its BMS switches are closed: a "
            f"blown fuse, an open breaker or isolator, or a loose lug"
        )
        evidence: dict[str, float | int | str | bool | list[str] | None] = {
            "current_a": i_k,
            "bank_current_a": round(total, 1),
            "voltage_v": s.voltage_v,
            "branches": branches,
        }
        out.append(Condition("current_imbalance", s.path, "critical", message, evidence, "open"))
    return out


def _in_soc_window(eligible: list[StringState], cfg: CurrentImbalanceConfig) -> bool:
    """Every battery of the branches sits between the knees of the SOC curve (unknown SOCs
    do not count against it)."""
    return all(
        soc is None or cfg.min_soc_pct <= soc <= cfg.max_soc_pct
        for s in eligible
        for soc in (_live_soc(b) for b in s.batteries)
    )


def _share_alerts(
    eligible: list[StringState],
    total: float,
    cap: float,
    direction: str,
    held: list[Condition],
    cfg: CurrentImbalanceConfig,
    ctx: DetectContext,
) -> list[Condition]:
    """Each branch's share of `total` against its share `cap` of the capacity. A branch whose
    SOC is far from the others' is not judged (the SOC gap explains its share): what was
    raised for it is held."""
    out: list[Condition] = []
    pair = len(eligible) == 2
    gaps = group_refs([s.soc_pct or 0.0 for s in eligible])
    for s, soc_ref in zip(eligible, gaps, strict=True):
        if s.soc_pct is None or abs(s.soc_pct - soc_ref) > cfg.max_soc_gap_pct:
            out.extend(c for c in held if c.subject == s.path)
            continue
        i_k = s.current_a or 0.0
        expected = s.node.capacity_ah / cap
        share = i_k / total
        error_pct = (share / expected - 1.0) * 100.0
        if pair and error_pct > 0:
            continue  # in a pair the branch carrying too little is the one to look at
        latched = ctx.latched.get(f"current_imbalance:{s.path}")
        threshold = cfg.share_error_pct - (cfg.hysteresis_pct if latched else 0.0)
        if abs(error_pct) < threshold:
            continue
        if error_pct < 0:
            why = (
                "a longer or thinner cable, a loose lug or a worn fuse holder in this branch; "
                "its siblings work harder and age faster"
            )
            side = "too little"
        else:
            why = "it works harder and ages faster: look for more resistance in its siblings"
            side = "too much"
        message = (
            f"{_branch(s)}: carries {side} current: {100 * share:.0f} % of the bank's "
            f"{direction} ({i_k:+.1f} of {total:+.1f} A) where its capacity share is "
            f"{100 * expected:.0f} %; {why}"
        )
        evidence: dict[str, float | int | str | bool | list[str] | None] = {
            "current_a": i_k,
            "bank_current_a": round(total, 1),
            "share_pct": round(100 * share, 1),
            "expected_share_pct": round(100 * expected, 1),
            "branches": len(eligible),
        }
        out.append(Condition("current_imbalance", s.path, "warning", message, evidence, side))
    return out


def _remember(ctx: DetectContext, out: list[Condition]) -> list[Condition]:
    """Keep what was judged, to hold it while the next ticks cannot judge."""
    keys = {c.key for c in out}
    for key in [k for k in ctx.memory.held if k.startswith("current_imbalance:")]:
        if key not in keys:
            del ctx.memory.held[key]
    ctx.memory.held.update({c.key: c for c in out})
    return out


def _held(ctx: DetectContext, kind: str) -> list[Condition]:
    """The last conditions of `kind` whose alert is still on: what to say while unable to
    judge."""
    prefix = f"{kind}:"
    return [c for k, c in ctx.memory.held.items() if k.startswith(prefix) and k in ctx.latched]


# --- series_current_mismatch --------------------------------------------------------------------


def detect_series_current_mismatch(
    state: BankState, now: float, ctx: DetectContext
) -> list[Condition]:
    """Batteries of one series string must agree on the current, within sensor tolerance.

    In a string of three or more the outlier is named against the string's median (its
    shunt, or a load tapped off it alone); in a pair nobody can tell which one is wrong, so the
    string is the subject.
    """
    cfg = ctx.config.series_current_mismatch
    out: list[Condition] = []
    for s in state.strings:
        live = [
            (b, b.reading.current_a)
            for b in s.batteries
            if b.live and b.reading is not None and b.reading.current_a is not None
        ]
        if len(live) < 2:
            continue
        if len(live) == 2:
            (b1, i1), (b2, i2) = live
            key = f"series_current_mismatch:{s.path}"
            tol = _tolerance(cfg.tolerance_a, cfg.tolerance_pct, (i1 + i2) / 2, key, ctx)
            if abs(i1 - i2) < tol:
                continue
            message = (
                f"string {s.name}: {b1.name} reports {i1:+.1f} A and {b2.name} {i2:+.1f} A, "
                f"{abs(i1 - i2):.1f} A apart, though one current flows through a series string: "
                f"a bad shunt, or a load or charger wired to one battery"
            )
            evidence = {b1.name + "_current_a": i1, b2.name + "_current_a": i2}
            out.append(
                Condition(
                    "series_current_mismatch",
                    s.path,
                    "warning",
                    message,
                    {**evidence, "difference_a": round(abs(i1 - i2), 2), "tolerance_a": tol},
                    "pair",
                )
            )
            continue
        refs = group_refs([i for _, i in live])
        for (b, i_b), ref in zip(live, refs, strict=True):
            key = f"series_current_mismatch:{b.path}"
            tol = _tolerance(cfg.tolerance_a, cfg.tolerance_pct, ref, key, ctx)
            diff = i_b - ref
            if abs(diff) < tol:
                continue
            more = "more discharge" if diff < 0 else "more charge"
            message = (
                f"{b.name}: reports {i_b:+.1f} A where the rest of string {s.name} reports "
                f"{ref:+.1f} A ({abs(diff):.1f} A {more}), though one current flows through a "
                f"series string: a load or charger wired to {b.name} alone, a leak, or a bad "
                f"shunt"
            )
            out.append(
                Condition(
                    "series_current_mismatch",
                    b.path,
                    "warning",
                    message,
                    {
                        "current_a": i_b,
                        "string_current_a": round(ref, 2),
                        "difference_a": round(diff, 2),
                        "tolerance_a": round(tol, 2),
                    },
                    more,
                )
            )
    return out


def _tolerance(tol_a: float, tol_pct: float, ref_a: float, key: str, ctx: DetectContext) -> float:
    return _latched_tolerance(max(tol_a, abs(ref_a) * tol_pct / 100.0), key, ctx)


def _latched_tolerance(tol: float, key: str, ctx: DetectContext) -> float:
    """Hysteresis for a difference against a tolerance: once the alert `key` is on (or
    pending), it stays on until the difference is well inside the tolerance (80 % of it)."""
    return tol * 0.8 if key in ctx.latched else tol


# --- voltage_inconsistency ----------------------------------------------------------------------


def detect_voltage_inconsistency(
    state: BankState, now: float, ctx: DetectContext
) -> list[Condition]:
    """Voltages (and currents) that break the wiring's arithmetic:

    - a battery whose voltage does not fit its model's cell count (a 24 V battery configured
      as 12 V), and a bank voltage that does not fit the configured series count;
    - a string's voltage (the sum of its batteries) against the bank meter, or, without one,
      against the other strings in parallel: strings in parallel share one voltage, give or
      take their cable drop;
    - the bank meter's current against the sum of the branch currents.
    """
    cfg = ctx.config.voltage_inconsistency
    meter = state.bank_reading
    meter_v = None if meter is None else meter.pack_voltage_v
    links = ctx.memory.links
    # The strings on the bus now: a string apart or with a switch open sits at its own voltage.
    connected = [
        s
        for s in state.strings
        if s.voltage_v is not None
        and _allows(s, True)
        and _allows(s, False)
        and not (s.path in links and links[s.path].apart)
    ]
    out = _batteries_vs_model(state)
    out += _bank_vs_series_count(state, meter_v, connected)
    if meter_v is None and len(connected) == 2:
        out += _string_pair(state, connected[0], connected[1], cfg.parallel_tolerance_pct, ctx)
    out += _strings_vs_reference(connected, meter_v, cfg.parallel_tolerance_pct, ctx)
    if meter is not None and meter.current_a is not None:
        out += _bank_current_vs_branches(state, meter.current_a, cfg, ctx)
    return out


def _batteries_vs_model(state: BankState) -> list[Condition]:
    """A live battery whose pack voltage no battery of its model's cell count can show."""
    out: list[Condition] = []
    for b in state.batteries():
        r = b.reading
        if not b.live or r is None or r.pack_voltage_v is None:
            continue
        cells = b.node.cells
        lo, hi = CELL_VOLTAGE_RANGE[b.node.model.chemistry]
        if lo * cells <= r.pack_voltage_v <= hi * cells:
            continue
        m = b.node.model
        out.append(
            Condition(
                "voltage_inconsistency",
                b.path,
                "warning",
                f"{b.name}: reports {r.pack_voltage_v:.2f} V, which no "
                f"{m.nominal_voltage_v:g} V {m.chemistry} battery ({cells} cells: "
                f"{lo * cells:.1f}-{hi * cells:.1f} V) can show: the battery is not the "
                f"model the config says, or its BMS measures wrong",
                {
                    "pack_voltage_v": r.pack_voltage_v,
                    "cells": cells,
                    "min_v": round(lo * cells, 2),
                    "max_v": round(hi * cells, 2),
                },
                "battery voltage vs model",
            )
        )
    return out


def _bank_vs_series_count(
    state: BankState, meter_v: float | None, connected: list[StringState]
) -> list[Condition]:
    """The bank's voltage (the meter's, else the connected strings' median) against what the
    configured series count of cells can show."""
    bank_v = meter_v if meter_v is not None else median([s.voltage_v for s in connected])
    if bank_v is None or not connected:
        return []
    bank_chem = state.strings[0].batteries[0].node.model.chemistry
    cells = max(s.node.cells for s in state.strings)
    lo, hi = CELL_VOLTAGE_RANGE[bank_chem]
    if lo * cells <= bank_v <= hi * cells:
        return []
    source = "the bank meter reads" if meter_v is not None else "the strings sit at"
    return [
        Condition(
            "voltage_inconsistency",
            state.name,
            "critical",
            f"bank {state.name}: {source} {bank_v:.2f} V, which does not fit the "
            f"configured {len(state.strings[0].batteries)} in series ({cells} "
            f"{bank_chem} cells: {lo * cells:.1f}-{hi * cells:.1f} V): the bank is "
            f"wired with another series count than the config says",
            {
                "bank_voltage_v": round(bank_v, 3),
                "cells_in_series": cells,
                "min_v": round(lo * cells, 2),
                "max_v": round(hi * cells, 2),
            },
            "series count",
        )
    ]


def _string_pair(
    state: BankState, s1: StringState, s2: StringState, tol_pct: float, ctx: DetectContext
) -> list[Condition]:
    """Two strings and no meter: nobody can tell which one measures wrong; the bank is the
    subject and both are named."""
    assert s1.voltage_v is not None and s2.voltage_v is not None
    nominal = min(s1.node.nominal_voltage_v, s2.node.nominal_voltage_v)
    key = f"voltage_inconsistency:{state.name}"
    tol = _latched_tolerance(tol_pct / 100.0 * nominal, key, ctx)
    diff = s2.voltage_v - s1.voltage_v
    if abs(diff) < tol:
        return []
    return [
        Condition(
            "voltage_inconsistency",
            state.name,
            "warning",
            f"bank {state.name}: string {s1.name} adds up to {s1.voltage_v:.2f} V and "
            f"string {s2.name} to {s2.voltage_v:.2f} V ({diff:+.2f} V), though strings "
            f"in parallel share one voltage: a BMS measures wrong or a connection in "
            f"one of them is bad",
            {
                f"string_{s1.name}_voltage_v": round(s1.voltage_v, 3),
                f"string_{s2.name}_voltage_v": round(s2.voltage_v, 3),
                "difference_v": round(diff, 3),
                "tolerance_v": round(tol, 3),
            },
            "strings differ",
        )
    ]


def _strings_vs_reference(
    connected: list[StringState], meter_v: float | None, tol_pct: float, ctx: DetectContext
) -> list[Condition]:
    """Each connected string against the bank meter, or, without one and with three strings or
    more, against the strings' median (a pair is judged by `_string_pair`)."""
    if meter_v is not None:
        ref, against = meter_v, "the bank meter"
    else:
        group_v = median([s.voltage_v for s in connected])
        if len(connected) < 3 or group_v is None:
            return []
        ref, against = group_v, "the other strings in parallel"
    out: list[Condition] = []
    for s in connected:
        assert s.voltage_v is not None
        key = f"voltage_inconsistency:{s.path}"
        tol = _latched_tolerance(tol_pct / 100.0 * s.node.nominal_voltage_v, key, ctx)
        diff = s.voltage_v - ref
        if abs(diff) < tol:
            continue
        out.append(
            Condition(
                "voltage_inconsistency",
                s.path,
                "warning",
                f"string {s.name}: its batteries add up to {s.voltage_v:.2f} V where "
                f"{against} shows {ref:.2f} V ({diff:+.2f} V): strings in parallel share one "
                f"voltage, so a BMS measures wrong or a connection in the string is bad",
                {
                    "string_voltage_v": round(s.voltage_v, 3),
                    "reference_v": round(ref, 3),
                    "difference_v": round(diff, 3),
                    "tolerance_v": round(tol, 3),
                },
                f"string vs {against}",
            )
        )
    return out


def _bank_current_vs_branches(
    state: BankState, meter_a: float, cfg: VoltageInconsistencyConfig, ctx: DetectContext
) -> list[Condition]:
    """The bank meter's current against the sum of the branch currents, when every battery of
    every string is heard."""
    currents = [s.current_a for s in state.strings]
    if None in currents or not all(s.complete for s in state.strings):
        return []
    branches = sum(c or 0.0 for c in currents)
    key = f"voltage_inconsistency:{state.name}"
    tol = max(
        cfg.current_tolerance_a,
        cfg.current_tolerance_pct / 100.0 * max(abs(meter_a), abs(branches)),
    )
    tol = _latched_tolerance(tol, key, ctx)
    diff = meter_a - branches
    if abs(diff) < tol:
        return []
    return [
        Condition(
            "voltage_inconsistency",
            state.name,
            "warning",
            f"bank {state.name}: the bank meter reads {meter_a:+.1f} A but "
            f"the branches add up to {branches:+.1f} A ({diff:+.1f} A unaccounted): "
            f"a load or charger wired to one battery instead of the busbar, a "
            f"branch nobody monitors, or a meter that measures wrong",
            {
                "bank_current_a": meter_a,
                "branch_current_sum_a": round(branches, 2),
                "difference_a": round(diff, 2),
                "tolerance_a": round(tol, 2),
            },
            "bank current vs branches",
        )
    ]


# --- pre_parallel_mismatch ----------------------------------------------------------------------


def detect_pre_parallel_mismatch(
    state: BankState, now: float, ctx: DetectContext
) -> list[Condition]:
    """A branch apart from its parallel group (an open isolator, a BMS switch open) whose
    voltage or SOC is far from the connected branches: connecting it drives an inrush current,
    large with LiFePO4's low resistance. Raised while it is apart, and for `join_window_s`
    after it joined (with the inrush it took)."""
    cfg = ctx.config.pre_parallel_mismatch
    out: list[Condition] = []
    if len(state.strings) < 2:
        return out
    for s in state.strings:
        link = ctx.memory.links.get(s.path)
        if link is None:
            continue
        tol_v = cfg.voltage_pct / 100.0 * s.node.nominal_voltage_v
        if link.apart:
            gap_v, gap_soc = link.gap_v, link.gap_soc_pct
            far = _far(gap_v, gap_soc, tol_v, cfg.soc_pct)
            if not far or s.live == 0:
                continue
            out.append(
                Condition(
                    "pre_parallel_mismatch",
                    s.path,
                    "warning",
                    f"{_branch(s)}: apart from the bank at {_gaps(gap_v, gap_soc)} from the "
                    f"connected branches: connecting it now drives a large inrush current; "
                    f"bring it within {tol_v:.2f} V and {cfg.soc_pct:g} points first",
                    {
                        "gap_v": None if gap_v is None else round(gap_v, 3),
                        "gap_soc_pct": None if gap_soc is None else round(gap_soc, 1),
                        "voltage_v": s.voltage_v,
                        "soc_pct": s.soc_pct,
                        "apart_since_s": None
                        if link.apart_since is None
                        else round(now - link.apart_since, 1),
                    },
                    "apart",
                )
            )
        elif link.joined_at is not None and now - link.joined_at <= cfg.join_window_s:
            gap_v, gap_soc = link.join_gap_v, link.join_gap_soc_pct
            if not _far(gap_v, gap_soc, tol_v, cfg.soc_pct):
                continue
            c_rate = link.max_inrush_a / s.node.capacity_ah
            severity: Severity = "critical" if c_rate >= 1.0 else "warning"
            out.append(
                Condition(
                    "pre_parallel_mismatch",
                    s.path,
                    severity,
                    f"{_branch(s)}: joined the bank at {_gaps(gap_v, gap_soc)} from the "
                    f"connected branches and took {link.max_inrush_a:.0f} A "
                    f"({c_rate:.2f} C) as it connected; until the branches equalise they "
                    f"circulate current",
                    {
                        "join_gap_v": None if gap_v is None else round(gap_v, 3),
                        "join_gap_soc_pct": None if gap_soc is None else round(gap_soc, 1),
                        "inrush_a": round(link.max_inrush_a, 1),
                        "inrush_c_rate": round(c_rate, 3),
                        "joined_s_ago": round(now - link.joined_at, 1),
                    },
                    "joined",
                )
            )
    return out


def _far(gap_v: float | None, gap_soc: float | None, tol_v: float, tol_soc: float) -> bool:
    return (gap_v is not None and abs(gap_v) >= tol_v) or (
        gap_soc is not None and abs(gap_soc) >= tol_soc
    )


def _gaps(gap_v: float | None, gap_soc: float | None) -> str:
    parts = []
    if gap_v is not None:
        parts.append(f"{gap_v:+.2f} V")
    if gap_soc is not None:
        parts.append(f"{gap_soc:+.0f} SOC points")
    return " and ".join(parts) or "an unknown distance"
