"""What the detectors remember between ticks, in one explicit object (never in globals).

Most detectors judge the state of the moment. A few need the recent past:

- `cutoff` says what preceded a BMS cutoff: each battery's last minute of readings (cell
  extremes, temperature, current) is kept, and summed up once when the cutoff appears, so the
  alert's message does not change while the cutoff lasts;
- `soc_mismatch` tracks how fast a battery's SOC gap to its group grows (points per day): the
  gap is averaged per hour, and the mean of the last window (a day) is compared with the window
  before, which cancels the daily charge cycle;
- `pre_parallel_mismatch` and `voltage_inconsistency` need to know whether a parallel branch is
  connected to the bank or apart from it (an open isolator, a BMS switch open), and when it
  joined.

`DetectorMemory.observe` brings it up to date from a BankState, before the detectors run. Time
is the state's; nothing here reads a clock. The drift history is what survives a restart (see
`to_json`); the rest is minutes long and rebuilds itself.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bankwatch.daemon.alerts import Condition, Severity
from bankwatch.daemon.detect_config import DetectConfig
from bankwatch.daemon.topology import BankState, StringState

__all__ = [
    "BranchLink",
    "DetectContext",
    "DetectorMemory",
    "DriftTrack",
    "Preceded",
    "Sample",
    "group_refs",
    "median",
]


@dataclass(frozen=True, slots=True)
class Sample:
    """One battery at one moment, the parts a cutoff's story needs."""

    at: float
    cell_min_v: float | None
    cell_max_v: float | None
    temperature_c: float | None
    current_a: float | None
    voltage_v: float | None
    soc_pct: float | None
    cut: bool  # the BMS had a switch open or a protection up


@dataclass(frozen=True, slots=True)
class Preceded:
    """What a battery did in the window before its BMS cut off."""

    window_s: float
    samples: int
    cell_min_v: float | None
    cell_max_v: float | None
    temperature_max_c: float | None
    current_min_a: float | None  # + charging: the most negative is the hardest discharge
    current_max_a: float | None
    soc_pct: float | None  # the last one before


def _lo(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return min(known) if known else None


def _hi(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


@dataclass(slots=True)
class DriftTrack:
    """A member's SOC gap to its group, as hourly means (None: an hour without data)."""

    bucket_s: float
    bucket_start: float
    bucket_sum: float = 0.0
    bucket_n: int = 0
    means: deque[float | None] = field(default_factory=deque)

    def add(self, now: float, gap_pct: float, keep: int) -> bool:
        """Add one sample; True when an hour closed (the drift estimate may have moved)."""
        closed = False
        while now >= self.bucket_start + self.bucket_s:
            self.means.append(self.bucket_sum / self.bucket_n if self.bucket_n else None)
            while len(self.means) > keep:
                self.means.popleft()
            self.bucket_start += self.bucket_s
            self.bucket_sum = 0.0
            self.bucket_n = 0
            closed = True
        self.bucket_sum += gap_pct
        self.bucket_n += 1
        return closed

    def rate_pct_per_day(self, buckets_per_window: int) -> float | None:
        """(mean of the last window − mean of the window before) per day; None until two
        windows are there, most of each with data."""
        if len(self.means) < 2 * buckets_per_window:
            return None
        recent = list(self.means)[-buckets_per_window:]
        before = list(self.means)[-2 * buckets_per_window : -buckets_per_window]
        r = [x for x in recent if x is not None]
        b = [x for x in before if x is not None]
        need = max(1, (3 * buckets_per_window) // 4)
        if len(r) < need or len(b) < need:
            return None
        window_s = buckets_per_window * self.bucket_s
        return (sum(r) / len(r) - sum(b) / len(b)) / window_s * 86_400.0


@dataclass(slots=True)
class BranchLink:
    """Whether a parallel branch is connected to the bank, and how it last joined."""

    apart: bool = False
    apart_since: float | None = None
    # While apart: how far it sits from the connected branches (SOC points; volts only while
    # they are near rest, when their voltage is close to their open-circuit voltage).
    gap_v: float | None = None
    gap_soc_pct: float | None = None
    joined_at: float | None = None
    join_gap_v: float | None = None
    join_gap_soc_pct: float | None = None
    max_inrush_a: float = 0.0


# Below this a voltage difference is sensor resolution and rounding, not a detached branch.
_MIN_DETACH_V = 0.03

# Above this SOC a connected branch's voltage is a charger's, not its cells' rest voltage.
_REST_MAX_SOC_PCT = 95.0

# Drift: the hour is the bucket; a window is `drift_window_s` of them.
_DRIFT_BUCKETS_PER_WINDOW = 24


class DetectorMemory:
    """Everything the detectors keep between ticks. Owned by whoever runs them (the Monitor);
    passed in with every call; changed only by `observe` and the detectors that own a part."""

    def __init__(self) -> None:
        self.recent: dict[str, deque[Sample]] = {}
        self.preceded: dict[str, Preceded] = {}
        self.drift: dict[str, DriftTrack] = {}
        self.links: dict[str, BranchLink] = {}
        # The last condition of a subject a detector could not judge this tick (the bank
        # current too low to judge sharing): held instead of letting the alert clear.
        self.held: dict[str, Condition] = {}
        # Which of a kind's checks were on for an alert key (temperature: hot, cold, warmer),
        # so each keeps its own hysteresis.
        self.parts: dict[str, frozenset[str]] = {}
        # Set when something worth saving across a restart changed.
        self.dirty = False

    # --- per battery: the last minute -------------------------------------------------------

    def observe(self, state: BankState, config: DetectConfig) -> None:
        keep_s = config.cutoff.preceded_window_s
        for b in state.batteries():
            r = b.reading
            if r is None or not b.live:
                continue
            q = self.recent.get(b.path)
            if q is None:
                q = self.recent[b.path] = deque()
            if q and q[-1].at >= r.at:
                continue  # the same reading again: nothing new was heard
            q.append(
                Sample(
                    r.at,
                    r.min_cell_v,
                    r.max_cell_v,
                    r.temperature_c,
                    r.current_a,
                    r.pack_voltage_v,
                    r.soc_pct,
                    r.charge_enabled is False
                    or r.discharge_enabled is False
                    or bool(r.protections),
                )
            )
            # Keep the window, and always the two samples before it (a slow poll still
            # says something about what came before).
            while len(q) > 3 and q[1].at < r.at - keep_s:
                q.popleft()
        self._observe_links(state, config)

    def preceding(self, path: str, before: float, window_s: float) -> Preceded:
        """The samples of `path` in [before − window, before), or the last one before that;
        only those from before the BMS cut off (after a restart there may be none)."""
        q = self.recent.get(path, deque())
        earlier = [s for s in q if s.at < before and not s.cut]
        picked = [s for s in earlier if s.at >= before - window_s] or earlier[-1:]
        return Preceded(
            window_s=window_s,
            samples=len(picked),
            cell_min_v=_lo([s.cell_min_v for s in picked]),
            cell_max_v=_hi([s.cell_max_v for s in picked]),
            temperature_max_c=_hi([s.temperature_c for s in picked]),
            current_min_a=_lo([s.current_a for s in picked]),
            current_max_a=_hi([s.current_a for s in picked]),
            soc_pct=picked[-1].soc_pct if picked else None,
        )

    # --- SOC drift ---------------------------------------------------------------------------

    def drift_add(self, subject: str, now: float, gap_pct: float, window_s: float) -> float | None:
        """Record a member's gap; return its drift in points per day, when known."""
        bucket_s = window_s / _DRIFT_BUCKETS_PER_WINDOW
        track = self.drift.get(subject)
        if track is None or track.bucket_s != bucket_s or now < track.bucket_start:
            track = self.drift[subject] = DriftTrack(bucket_s, now)
        if track.add(now, gap_pct, 2 * _DRIFT_BUCKETS_PER_WINDOW):
            self.dirty = True
        return track.rate_pct_per_day(_DRIFT_BUCKETS_PER_WINDOW)

    # --- parallel branches: connected or apart -----------------------------------------------

    def _observe_links(self, state: BankState, config: DetectConfig) -> None:
        strings = state.strings
        if len(strings) < 2:
            return
        cfg = config.pre_parallel_mismatch
        idle_a = cfg.idle_a
        known = [s for s in strings if s.current_a is not None and s.complete]
        links = {s.path: self.links.setdefault(s.path, BranchLink()) for s in strings}
        # The flow of the connected branches, once: each branch's siblings are the rest of it.
        joined = [s for s in known if not links[s.path].apart]
        joined_flow = sum(s.current_a or 0.0 for s in joined)
        bus_v = median([s.voltage_v for s in joined])
        for s in known:
            link = links[s.path]
            i_k = s.current_a
            assert i_k is not None
            own = not link.apart
            n_siblings = len(joined) - own
            flow = joined_flow - (i_k if own else 0.0)
            carrying = n_siblings > 0 and abs(flow) >= idle_a * n_siblings
            # The bus: the connected branches' median (of a pair, the other one).
            bus = bus_v
            if own and len(joined) == 2:
                bus = next(o.voltage_v for o in joined if o is not s)
            off_bus = (
                bus is not None
                and s.voltage_v is not None
                and abs(s.voltage_v - bus)
                >= max(_MIN_DETACH_V, cfg.detach_pct / 100.0 * s.node.nominal_voltage_v)
            )
            both_open = _both_open(s)
            if not link.apart:
                if both_open or (carrying and abs(i_k) < idle_a and off_bus):
                    link.apart = True
                    link.apart_since = state.at
                    link.joined_at = None
                    link.max_inrush_a = 0.0
            elif abs(i_k) >= idle_a and not both_open:
                link.apart = False
                link.joined_at = state.at
                link.join_gap_v = link.gap_v
                link.join_gap_soc_pct = link.gap_soc_pct
                link.max_inrush_a = abs(i_k)
        # Gaps to the connected branches, for the ones apart and those that just joined.
        connected = [s for s in known if not links[s.path].apart]
        rest_c = config.pre_parallel_mismatch.rest_c_rate
        # Near rest and below the top knee (where a charger's absorption holds the voltage
        # above the cells' own), a branch's voltage is close to its open-circuit voltage.
        at_rest = all(
            abs(s.current_a or 0.0) <= rest_c * s.node.capacity_ah
            and (s.soc_pct is None or s.soc_pct <= _REST_MAX_SOC_PCT)
            for s in connected
        )
        ref_v = median([s.voltage_v for s in connected]) if at_rest else None
        ref_soc = median([s.soc_pct for s in connected])
        for s in known:
            link = links[s.path]
            if not link.apart:
                if link.joined_at is not None and s.current_a is not None:
                    link.max_inrush_a = max(link.max_inrush_a, abs(s.current_a))
                continue
            # Apart, it is not among the connected branches its gaps are measured to.
            v, soc = ref_v, ref_soc
            link.gap_v = None if v is None or s.voltage_v is None else s.voltage_v - v
            link.gap_soc_pct = None if soc is None or s.soc_pct is None else s.soc_pct - soc

    # --- surviving a restart -----------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        self.dirty = False
        return {
            "drift": {
                subject: {
                    "bucket_s": t.bucket_s,
                    "bucket_start": t.bucket_start,
                    "means": list(t.means),
                }
                for subject, t in self.drift.items()
            }
        }

    def load_json(self, data: Mapping[str, Any], shift_s: float) -> None:
        """Take back a saved memory; `shift_s` moves its times onto this run's clock."""
        for subject, t in dict(data.get("drift", {})).items():
            means = [None if m is None else float(m) for m in t["means"]]
            self.drift[str(subject)] = DriftTrack(
                float(t["bucket_s"]),
                float(t["bucket_start"]) + shift_s,
                means=deque(means[-2 * _DRIFT_BUCKETS_PER_WINDOW :]),
            )


def group_refs(values: list[float]) -> list[float]:
    """What each member of a group (two or more) is compared with: in a pair, the other one (who
    is off cannot be told); in a larger group, the group's median, which one outlier does not
    move (the median of the *others* would: of three, it is the mean of the outlier and one
    more)."""
    if len(values) == 2:
        return [values[1], values[0]]
    m = median(list(values))
    assert m is not None
    return [m] * len(values)


def median(values: list[float | None]) -> float | None:
    known = sorted(v for v in values if v is not None)
    n = len(known)
    if not n:
        return None
    mid = n // 2
    return known[mid] if n % 2 else (known[mid - 1] + known[mid]) / 2


def _both_open(s: StringState) -> bool:
    for b in s.batteries:
        r = b.reading
        if r is not None and r.charge_enabled is False and r.discharge_enabled is False:
            return True
    return False


@dataclass(frozen=True, slots=True)
class DetectContext:
    """What a detector gets besides the state and the time: its thresholds, the memory, and the
    severity of each alert that is active or pending (for hysteresis in value: once on, a
    condition stays on until its value is back past the threshold by the hysteresis)."""

    config: DetectConfig = field(default_factory=DetectConfig)
    memory: DetectorMemory = field(default_factory=DetectorMemory)
    latched: Mapping[str, Severity] = field(default_factory=dict)
    started_at: float = 0.0
