"""The config file: a bank described the way its owner sees it, read once at start.

TOML in, frozen pydantic models out (`extra="forbid"`, so a typo is an error, not a silently
ignored key). Every problem names the file, the key path and, where it can be found, the line;
all problems are reported at once so a user fixes them in one pass.

Layout (see configs/ for complete examples):

    [bank]                 name, chemistry, nominal_voltage_v, charger/inverter voltage, source
    [models.NAME]          capacity_ah, nominal_voltage_v, chemistry, maker's series/parallel limits
    [links.NAME]           type = "can" or "serial" (see link_config)
    [[strings]]            name, batteries = [{ name, model, source = { link, protocol, address } }]
    [detect]               thresholds of the detectors; [detect.KIND] per alert kind
    [simulation]           only read by the simulator: profile, physics, faults (simulation_config)
    [modbus_maps.NAME]     register maps for protocol "modbus-map" (drivers/modbus_map_schema.py)
    [mqtt], [influxdb]     where state and alerts are published (see publish_config)
    [scenario]             only read by `demo --scenario` and tests: length, expected alerts

Strings are series strings; all strings of a bank are connected in parallel. A parallel bank of
four batteries is four strings of one battery each.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, model_validator

from bankwatch.daemon.link_config import LinkConfig
from bankwatch.daemon.publish_config import InfluxConfig, MqttConfig
from bankwatch.daemon.schema import Name, NonNegFloat, PositiveFloat
from bankwatch.daemon.schema import Strict as _Strict
from bankwatch.daemon.simulation_config import SimulationConfig
from bankwatch.drivers.chemistry import Chemistry
from bankwatch.drivers.errors import ConfigError
from bankwatch.drivers.modbus_map_schema import ModbusMapConfig
from bankwatch.drivers.registry import PROTOCOLS

__all__ = [
    "ALERT_KINDS",
    "AlertKind",
    "BankConfig",
    "BankSection",
    "BatteryConfig",
    "CellImbalanceConfig",
    "Config",
    "CurrentImbalanceConfig",
    "CutoffConfig",
    "DetectConfig",
    "ExpectConfig",
    "ForbidConfig",
    "KindConfig",
    "LinkLostConfig",
    "ModelConfig",
    "PreParallelMismatchConfig",
    "ScenarioConfig",
    "SeriesCurrentMismatchConfig",
    "Severity",
    "SocMismatchConfig",
    "SourceConfig",
    "StringConfig",
    "TemperatureConfig",
    "VoltageInconsistencyConfig",
    "load_config",
    "parse_config",
]

class SourceConfig(_Strict):
    """Where a battery's (or the bank's) data comes from."""

    link: str
    protocol: str
    # Bus address for request/response protocols (DIP switches); broadcast protocols have none.
    address: Annotated[int, Field(ge=0, le=255)] | None = None
    # protocol "modbus-map" only: an inline [modbus_maps.NAME], a map file path, or a shipped
    # map's name (see bankwatch.drivers.modbus_map_schema.resolve_map).
    map: str | None = None


class ModelConfig(_Strict):
    capacity_ah: PositiveFloat
    nominal_voltage_v: PositiveFloat
    chemistry: Chemistry
    manufacturer: str | None = None
    # The maker's limits, where the datasheet gives them.
    max_series: Annotated[int, Field(ge=1)] | None = None
    max_parallel: Annotated[int, Field(ge=1)] | None = None


class BatteryConfig(_Strict):
    name: Name
    model: str
    source: SourceConfig | None = None
    # A battery unheard for this long is stale: never shown as live, and `link_lost` is raised.
    stale_after_s: PositiveFloat | None = None


class StringConfig(_Strict):
    name: Name
    batteries: Annotated[list[BatteryConfig], Field(min_length=1)]


class BankSection(_Strict):
    name: Name
    chemistry: Chemistry
    nominal_voltage_v: PositiveFloat
    # The charger's charge (absorption/bulk) setpoint, and the inverter's nominal DC input.
    charger_voltage_v: PositiveFloat | None = None
    inverter_voltage_v: PositiveFloat | None = None
    # Bank-level totals: the master battery's CAN broadcast (later a shunt).
    source: SourceConfig | None = None


Severity = Literal["info", "warning", "critical"]
ALERT_KINDS = (
    "cutoff",
    "link_lost",
    "soc_mismatch",
    "current_imbalance",
    "series_current_mismatch",
    "voltage_inconsistency",
    "cell_imbalance",
    "temperature",
    "pre_parallel_mismatch",
)
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


class KindConfig(_Strict):
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


class DetectConfig(_Strict):
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


class ExpectConfig(_Strict):
    """An alert a scenario must raise: of this kind, on this subject (a path: bank,
    bank/string or bank/string/battery; any subject when left out), within this many simulated
    seconds from the start (by the end when left out), at least this severe."""

    kind: AlertKind
    subject: str | None = None
    within_s: PositiveFloat | None = None
    severity: Severity = "info"


class ForbidConfig(_Strict):
    """Alerts a scenario must not raise: those matching every field given (a kind, a subject,
    at least a severity); `{ severity = "warning" }` alone forbids every warning and critical."""

    kind: AlertKind | None = None
    subject: str | None = None
    severity: Severity = "info"


class ScenarioConfig(_Strict):
    """A fault scenario: a bank with [simulation], run for `duration_s` with the monitor
    sampling every `tick_s`, and what it must and must not raise. Read by `bankwatch demo
    --scenario` and the scenario tests; `bankwatch run` ignores it."""

    description: str = ""
    duration_s: PositiveFloat
    tick_s: Annotated[float, Field(gt=0, le=600)] = 1.0
    expect: list[ExpectConfig] = Field(default_factory=list)
    forbid: list[ForbidConfig] = Field(default_factory=list)


class Config(_Strict):
    # The folder of the file the config was read from: relative paths in it (modbus-map files)
    # are relative to the config, not to wherever the daemon was started.
    _source_dir: str | None = PrivateAttr(default=None)

    bank: BankSection
    models: dict[Name, ModelConfig]
    links: dict[Name, LinkConfig] = Field(default_factory=dict)
    strings: Annotated[list[StringConfig], Field(min_length=1)]
    detect: DetectConfig = Field(default_factory=DetectConfig)
    simulation: SimulationConfig | None = None
    # Register maps for protocol "modbus-map", by name (bankwatch.drivers.modbus_map_schema).
    modbus_maps: dict[Name, ModbusMapConfig] = Field(default_factory=dict)
    mqtt: MqttConfig | None = None
    influxdb: InfluxConfig | None = None
    scenario: ScenarioConfig | None = None

    @property
    def source_dir(self) -> str | None:
        return self._source_dir

    def batteries(self) -> list[tuple[StringConfig, BatteryConfig]]:
        return [(s, b) for s in self.strings for b in s.batteries]

    def model_of(self, battery: BatteryConfig) -> ModelConfig:
        return self.models[battery.model]


BankConfig = Config


# --- loading ------------------------------------------------------------------------------------


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; raise ConfigError listing every problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(p), ["file not found"]) from None
    except IsADirectoryError:
        raise ConfigError(str(p), ["is a directory, not a config file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(p), [f"cannot read: {exc}"]) from exc
    config = parse_config(text, str(p))
    config._source_dir = str(p.resolve().parent)
    return config


def parse_config(text: str, source: str = "<config>") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"not valid TOML: {exc}"]) from None
    problems = [_with_line(p, k, text) for p, k in _cross_check(data)]
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, _describe(exc, text) + problems) from None
    if problems:
        raise ConfigError(source, problems)
    return config


def _loc_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def _describe(exc: ValidationError, text: str) -> list[str]:
    problems: list[str] = []
    for err in exc.errors(include_url=False):
        # pydantic puts the tag of a discriminated union in the path ("links.x.can.bitrate"):
        # users never wrote that, so it goes.
        loc = tuple(p for p in err["loc"] if p not in ("can", "serial"))
        path = _loc_path(loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            msg = "unknown key"
        elif kind == "missing":
            msg = "required key is missing"
        elif kind == "union_tag_invalid":
            msg = 'link type must be "can" or "serial"'
        elif kind == "union_tag_not_found":
            msg = 'link needs type = "can" or "serial"'
        elif kind == "literal_error":
            msg = err["msg"].replace("Input should be", "must be")
        else:
            got = err.get("input")
            shown = f" (got {got!r})" if isinstance(got, str | int | float | bool) else ""
            text_msg = err["msg"].removeprefix("Value error, ")
            msg = text_msg[0].lower() + text_msg[1:] + shown
        key_loc = loc[:-1] if kind == "missing" else loc  # a missing key is written nowhere
        last_key = next((p for p in reversed(key_loc) if isinstance(p, str)), None)
        problems.append(_with_line(f"{path}: {msg}", last_key, text))
    return problems


def _with_line(problem: str, key: str | None, text: str) -> str:
    """Add the line number where the key is written, when the file names it exactly once."""
    if not key:
        return problem
    pattern = re.compile(rf"(^|[\s{{,.\[])\"?{re.escape(key)}\"?[ \t]*(=|\]|\.)", re.MULTILINE)
    hits = [text.count("\n", 0, m.end(1)) + 1 for m in pattern.finditer(text)]
    if len(hits) == 1:
        return f"line {hits[0]}: {problem}"
    return problem


def _table(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _array(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _cross_check(data: dict[str, Any]) -> list[tuple[str, str | None]]:
    """References between sections: what pydantic cannot see one model at a time.

    Works on the raw TOML data, defensively, so that it can run even when the schema check
    failed and every problem is reported in one pass.
    """
    problems: list[tuple[str, str | None]] = []
    links = _table(data.get("links"))
    models = _table(data.get("models"))
    seen_strings: set[str] = set()
    seen_batteries: set[str] = set()

    def check_source(src: dict[str, Any], where: str) -> None:
        link_name, protocol = src.get("link"), src.get("protocol")
        if not isinstance(link_name, str) or not isinstance(protocol, str):
            return  # the schema check reports the missing or mistyped key
        link = links.get(link_name)
        info = PROTOCOLS.get(protocol)
        if link is None:
            known = ", ".join(sorted(links)) or "none are defined"
            problems.append((f"{where}.link: no link named {link_name!r} (links: {known})", None))
        if info is None:
            known = ", ".join(sorted(PROTOCOLS))
            problems.append(
                (f"{where}.protocol: unknown protocol {protocol!r} (known: {known})", None)
            )
        link_type = _table(link).get("type")
        if info is not None and link_type in ("can", "serial") and link_type != info.link_kind:
            problems.append(
                (
                    f"{where}: protocol {protocol!r} runs on a {info.link_kind} link, "
                    f"but link {link_name!r} is {link_type}",
                    None,
                )
            )
        if info is not None and info.addressing == "addressed" and src.get("address") is None:
            problems.append((f"{where}.address: protocol {protocol!r} needs an address", None))
        if info is not None and info.serial_codec_factory is not None and src.get("map") is None:
            problems.append((f"{where}.map: protocol {protocol!r} needs a register map", None))

    for si, string in enumerate(_array(data.get("strings"))):
        string = _table(string)
        name = string.get("name")
        if isinstance(name, str):
            if name in seen_strings:
                problems.append((f"strings[{si}].name: string {name!r} defined twice", None))
            seen_strings.add(name)
        for bi, battery in enumerate(_array(string.get("batteries"))):
            battery = _table(battery)
            where = f"strings[{si}].batteries[{bi}]"
            bname, model = battery.get("name"), battery.get("model")
            if isinstance(bname, str):
                if bname in seen_batteries:
                    problems.append((f"{where}.name: battery {bname!r} defined twice", None))
                seen_batteries.add(bname)
            if isinstance(model, str) and model not in models:
                known = ", ".join(sorted(models)) or "none are defined"
                problems.append(
                    (f"{where}.model: no model named {model!r} (models: {known})", None)
                )
            if isinstance(battery.get("source"), dict):
                check_source(battery["source"], f"{where}.source")
    bank_source = _table(data.get("bank")).get("source")
    if isinstance(bank_source, dict):
        check_source(bank_source, "bank.source")

    simulation = _table(data.get("simulation"))
    for name in _table(simulation.get("batteries")):
        if name not in seen_batteries:
            problems.append(
                (f"simulation.batteries.{name}: no battery named {name!r} in the bank", name)
            )
    bank_name = _table(data.get("bank")).get("name")
    scenario = _table(data.get("scenario"))
    if isinstance(bank_name, str) and scenario:
        paths = {bank_name}
        for string in _array(data.get("strings")):
            string = _table(string)
            sname = string.get("name")
            paths.add(f"{bank_name}/{sname}")
            for battery in _array(string.get("batteries")):
                paths.add(f"{bank_name}/{sname}/{_table(battery).get('name')}")
        for section in ("expect", "forbid"):
            for i, entry in enumerate(_array(scenario.get(section))):
                subject = _table(entry).get("subject")
                if isinstance(subject, str) and subject not in paths:
                    problems.append(
                        (
                            f"scenario.{section}[{i}].subject: no bank, string or battery at "
                            f"{subject!r} (paths look like {bank_name}/STRING/BATTERY)",
                            None,
                        )
                    )
    for fi, fault in enumerate(_array(simulation.get("faults"))):
        link_name = _table(fault).get("link")
        if isinstance(link_name, str) and _table(links.get(link_name)).get("type") != "serial":
            problems.append(
                (f"simulation.faults[{fi}].link: no serial link named {link_name!r}", None)
            )
        battery_name = _table(fault).get("battery")
        if isinstance(battery_name, str) and battery_name not in seen_batteries:
            problems.append(
                (
                    f"simulation.faults[{fi}].battery: no battery named "
                    f"{battery_name!r} in the bank",
                    None,
                )
            )
    return problems
