"""The [detect] section: thresholds, debounce and hysteresis of each alert kind.

One schema per alert kind (`[detect.KIND]`), read by its detector (`detectors.py`,
`detectors_wiring.py`) through `DetectContext.config`. Which kinds there are is decided by one
table, `bankwatch.daemon.detectors.ALERT_KINDS` (name, schema, detector, subjects, severities,
Home Assistant sensor); `DetectConfig` spells out one field per row so that mypy knows each
kind's thresholds, and the table checks at import that the two agree.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from bankwatch.daemon.config_base import NonNegFloat, PositiveFloat, Strict

__all__ = [
    "AlertKind",
    "CellImbalanceConfig",
    "CurrentImbalanceConfig",
    "CutoffConfig",
    "DetectConfig",
    "KindConfig",
    "LinkLostConfig",
    "PreParallelMismatchConfig",
    "SeriesCurrentMismatchConfig",
    "SocMismatchConfig",
    "TemperatureConfig",
    "VoltageInconsistencyConfig",
]

# The kind names as a type, for the schemas that name a kind (a scenario's expect/forbid);
# checked against the table at import, like DetectConfig's fields.
AlertKind = Literal[
    "cutoff",
    "link_lost",
    "soc_mismatch",
    "current_imbalance",
    "series_current_mismatch",
    "voltage_inconsistency",
    "cell_imbalance",
    "temperature",
    "pre_parallel_mismatch",
]


class KindConfig(Strict):
    """What every alert kind has: it can be switched off, and its own debounce (hold this long
    before raising) and hysteresis in time (gone this long before clearing). None: the
    `[detect]` raise_after_s / clear_after_s."""

    enabled: bool = True
    raise_after_s: NonNegFloat | None = None
    clear_after_s: NonNegFloat | None = None


class CutoffConfig(KindConfig):
    # How far back "what preceded it" looks (cell extremes, temperature, current).
    preceded_window_s: PositiveFloat = 60.0


class LinkLostConfig(KindConfig):
    pass


class SocMismatchConfig(KindConfig):
    """SOC of batteries in one series string, and of strings in parallel, against their group's
    median, in percentage points; and the rate the gap grows at."""

    # A gap that opens every night and closes every afternoon (an aged battery) is one
    # problem, not one a day: it clears only after a whole day closed.
    raise_after_s: NonNegFloat | None = 600.0
    clear_after_s: NonNegFloat | None = 86_400.0
    warning_pct: PositiveFloat = 10.0
    critical_pct: PositiveFloat = 25.0
    hysteresis_pct: NonNegFloat = 2.0
    # A gap growing this fast (points per day), and already this wide, is raised early (info),
    # long before it reaches warning_pct.
    drift_pct_per_day: PositiveFloat = 1.0
    drift_min_pct: NonNegFloat = 3.0
    # The drift rate compares the mean gap of the last window with the window before; a day
    # cancels the daily charge cycle.
    drift_window_s: PositiveFloat = 86_400.0


class CurrentImbalanceConfig(KindConfig):
    """Each parallel branch's share of the bank current against its share of the capacity."""

    raise_after_s: NonNegFloat | None = 120.0
    clear_after_s: NonNegFloat | None = 300.0
    # Off its expected share by this much (20 = carrying 120 % or 80 % of its share).
    share_error_pct: PositiveFloat = 20.0
    hysteresis_pct: NonNegFloat = 5.0
    # Only judged while the bank current is at least this (the larger of the two).
    min_current_a: PositiveFloat = 5.0
    min_c_rate: NonNegFloat = 0.05
    # Only judged while every battery of the branches is between these SOCs: near full or
    # empty the steep ends of the SOC curve, not the cabling, decide how current is shared.
    min_soc_pct: Annotated[float, Field(ge=0, le=100)] = 20.0
    max_soc_pct: Annotated[float, Field(ge=0, le=100)] = 90.0
    # A branch whose SOC is this far from the others' median is not judged: the SOC gap, not
    # the cabling, explains its share (soc_mismatch speaks for it).
    max_soc_gap_pct: PositiveFloat = 8.0
    # A branch below this while its siblings carry the load, its voltage off the bus's (see
    # pre_parallel_mismatch.detach_pct) and its BMS switches closed, is an open branch.
    open_branch_a: PositiveFloat = 0.5


class SeriesCurrentMismatchConfig(KindConfig):
    """Batteries of one series string must report one current, within sensor tolerance."""

    raise_after_s: NonNegFloat | None = 120.0
    clear_after_s: NonNegFloat | None = 300.0
    tolerance_a: PositiveFloat = 2.0
    tolerance_pct: NonNegFloat = 5.0


class VoltageInconsistencyConfig(KindConfig):
    """Voltages and currents that break the wiring's physics."""

    raise_after_s: NonNegFloat | None = 120.0
    clear_after_s: NonNegFloat | None = 300.0
    # Strings in parallel, and a string against the bank meter: % of the string's nominal.
    parallel_tolerance_pct: PositiveFloat = 2.0
    # The bank meter's current against the sum of the branch currents.
    current_tolerance_a: PositiveFloat = 3.0
    current_tolerance_pct: NonNegFloat = 5.0


class CellImbalanceConfig(KindConfig):
    """Spread between the highest and lowest cell of one battery, in volts."""

    # Cells drift apart at the ends of the SOC curve and look fine in the middle: it clears
    # only after a whole day without.
    raise_after_s: NonNegFloat | None = 300.0
    clear_after_s: NonNegFloat | None = 86_400.0
    warning_v: PositiveFloat = 0.20
    critical_v: PositiveFloat = 0.40
    hysteresis_v: NonNegFloat = 0.03


class TemperatureConfig(KindConfig):
    """The hottest sensor of a battery against limits and against its siblings."""

    raise_after_s: NonNegFloat | None = 120.0
    clear_after_s: NonNegFloat | None = 600.0
    high_warning_c: float = 45.0
    high_critical_c: float = 55.0
    low_warning_c: float = 0.0
    low_critical_c: float = -10.0
    # Warmer than the median of the bank's other batteries by this much.
    sibling_delta_c: PositiveFloat = 8.0
    hysteresis_c: NonNegFloat = 2.0


class PreParallelMismatchConfig(KindConfig):
    """A branch apart from its parallel group (not conducting) at a voltage or SOC far from the
    group's, and the moment it joins."""

    raise_after_s: NonNegFloat | None = 0.0
    clear_after_s: NonNegFloat | None = 60.0
    # % of the branch's nominal voltage, and SOC points, from the connected branches' median.
    voltage_pct: PositiveFloat = 2.0
    soc_pct: PositiveFloat = 15.0
    # A branch carrying less than this while its siblings carry current, with its voltage this
    # far (% of its nominal) from theirs, is apart from the group: not conducting. (A connected
    # branch at a lower SOC may carry nothing at a light load too, but it sits at the bus's
    # voltage.) A BMS with both switches open also puts its branch apart.
    idle_a: PositiveFloat = 1.0
    detach_pct: PositiveFloat = 0.25
    # The voltage gap is judged only while the connected branches carry less than this C-rate:
    # under load their voltage sags below their rest voltage and says nothing about inrush.
    rest_c_rate: PositiveFloat = 0.05
    # How long after joining the inrush and the equalising current are reported.
    join_window_s: PositiveFloat = 600.0


class DetectConfig(Strict):
    # Default for batteries that do not set stale_after_s.
    link_lost_after_s: PositiveFloat = 10.0
    # A condition must hold this long before an alert is raised, and be gone this long to clear.
    raise_after_s: Annotated[float, Field(ge=0)] = 0.0
    clear_after_s: Annotated[float, Field(ge=0)] = 5.0
    # Where `bankwatch run` keeps its active alerts across restarts. None: $STATE_DIRECTORY
    # (systemd's StateDirectory=), else ~/.local/state/bankwatch.
    state_dir: str | None = None
    # One table per alert kind: thresholds, debounce, hysteresis.
    cutoff: CutoffConfig = Field(default_factory=CutoffConfig)
    link_lost: LinkLostConfig = Field(default_factory=LinkLostConfig)
    soc_mismatch: SocMismatchConfig = Field(default_factory=SocMismatchConfig)
    current_imbalance: CurrentImbalanceConfig = Field(default_factory=CurrentImbalanceConfig)
    series_current_mismatch: SeriesCurrentMismatchConfig = Field(
        default_factory=SeriesCurrentMismatchConfig
    )
    voltage_inconsistency: VoltageInconsistencyConfig = Field(
        default_factory=VoltageInconsistencyConfig
    )
    cell_imbalance: CellImbalanceConfig = Field(default_factory=CellImbalanceConfig)
    temperature: TemperatureConfig = Field(default_factory=TemperatureConfig)
    pre_parallel_mismatch: PreParallelMismatchConfig = Field(
        default_factory=PreParallelMismatchConfig
    )

    def kind(self, name: str) -> KindConfig:
        value = getattr(self, name)
        assert isinstance(value, KindConfig)
        return value

    def debounce(self, name: str) -> tuple[float, float]:
        """(raise_after_s, clear_after_s) of an alert kind."""
        k = self.kind(name)
        return (
            self.raise_after_s if k.raise_after_s is None else k.raise_after_s,
            self.clear_after_s if k.clear_after_s is None else k.clear_after_s,
        )

    @model_validator(mode="after")
    def _thresholds_in_order(self) -> DetectConfig:
        pairs = [
            ("soc_mismatch", self.soc_mismatch.warning_pct, self.soc_mismatch.critical_pct),
            ("cell_imbalance", self.cell_imbalance.warning_v, self.cell_imbalance.critical_v),
            (
                "temperature.high",
                self.temperature.high_warning_c,
                self.temperature.high_critical_c,
            ),
            ("temperature.low", -self.temperature.low_warning_c, -self.temperature.low_critical_c),
        ]
        for what, warn, crit in pairs:
            if crit < warn:
                raise ValueError(f"{what}: the critical threshold comes before the warning one")
        return self
