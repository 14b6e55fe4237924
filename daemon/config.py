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
                           (schema: detect_config.py, beside the detectors)
    [simulation]           only read by the simulator: profile, physics, faults (simulation_config)
    [modbus_maps.NAME]     register maps for protocol "modbus-map" (drivers/modbus_map_schema.py)
    [mqtt], [influxdb]     where state and alerts are published (see publish_config)
    [scenario]             only read by `demo --scenario` and tests: length, expected alerts
                           (schema: scenario_config.py, beside the scenario runner)

Strings are series strings; all strings of a bank are connected in parallel. A parallel bank of
four batteries is four strings of one battery each.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, PrivateAttr, ValidationError

from bankwatch.daemon.config_base import Name, PositiveFloat
from bankwatch.daemon.config_base import Strict as _Strict
from bankwatch.daemon.config_base import raw_array as _array
from bankwatch.daemon.config_base import raw_table as _table
from bankwatch.daemon.detect_config import DetectConfig
from bankwatch.daemon.link_config import LinkConfig
from bankwatch.daemon.publish_config import InfluxConfig, MqttConfig
from bankwatch.daemon.scenario_config import ScenarioConfig, check_scenario_subjects
from bankwatch.daemon.simulation_config import SimulationConfig
from bankwatch.drivers.chemistry import Chemistry
from bankwatch.drivers.errors import ConfigError
from bankwatch.drivers.modbus_map_schema import ModbusMapConfig
from bankwatch.drivers.registry import PROTOCOLS

__all__ = [
    "BankConfig",
    "BankSection",
    "BatteryConfig",
    "Config",
    "ModelConfig",
    "SourceConfig",
    "StringConfig",
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


# A problem found across sections, and the key to find its line by (None: no line).
_Problem = tuple[str, str | None]


def _cross_check(data: dict[str, Any]) -> list[_Problem]:
    """References between sections: what pydantic cannot see one model at a time.

    Works on the raw TOML data, defensively, so that it can run even when the schema check
    failed and every problem is reported in one pass.
    """
    links = _table(data.get("links"))
    problems, batteries = _check_strings(data, links)
    problems += _check_simulation(data, links, batteries)
    problems += [(p, None) for p in check_scenario_subjects(data)]
    return problems


def _check_strings(data: dict[str, Any], links: dict[str, Any]) -> tuple[list[_Problem], set[str]]:
    """Names defined once, models and sources that exist; and the battery names, which the
    other sections refer to."""
    problems: list[_Problem] = []
    models = _table(data.get("models"))
    seen_strings: set[str] = set()
    seen_batteries: set[str] = set()
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
                problems += _check_source(battery["source"], f"{where}.source", links)
    bank_source = _table(data.get("bank")).get("source")
    if isinstance(bank_source, dict):
        problems += _check_source(bank_source, "bank.source", links)
    return problems, seen_batteries


def _check_source(src: dict[str, Any], where: str, links: dict[str, Any]) -> list[_Problem]:
    """A source's link exists, its protocol is known and runs on that kind of link, and it has
    the address or register map its protocol needs."""
    link_name, protocol = src.get("link"), src.get("protocol")
    if not isinstance(link_name, str) or not isinstance(protocol, str):
        return []  # the schema check reports the missing or mistyped key
    problems: list[_Problem] = []
    link = links.get(link_name)
    info = PROTOCOLS.get(protocol)
    if link is None:
        known = ", ".join(sorted(links)) or "none are defined"
        problems.append((f"{where}.link: no link named {link_name!r} (links: {known})", None))
    if info is None:
        known = ", ".join(sorted(PROTOCOLS))
        problems.append((f"{where}.protocol: unknown protocol {protocol!r} (known: {known})", None))
        return problems
    link_type = _table(link).get("type")
    if link_type in ("can", "serial") and link_type != info.link_kind:
        problems.append(
            (
                f"{where}: protocol {protocol!r} runs on a {info.link_kind} link, "
                f"but link {link_name!r} is {link_type}",
                None,
            )
        )
    if info.addressing == "addressed" and src.get("address") is None:
        problems.append((f"{where}.address: protocol {protocol!r} needs an address", None))
    if info.serial_codec_factory is not None and src.get("map") is None:
        problems.append((f"{where}.map: protocol {protocol!r} needs a register map", None))
    return problems


def _check_simulation(
    data: dict[str, Any], links: dict[str, Any], batteries: set[str]
) -> list[_Problem]:
    """The batteries and links [simulation] names are those of the bank."""
    problems: list[_Problem] = []
    simulation = _table(data.get("simulation"))
    for name in _table(simulation.get("batteries")):
        if name not in batteries:
            problems.append(
                (f"simulation.batteries.{name}: no battery named {name!r} in the bank", name)
            )
    for fi, fault in enumerate(_array(simulation.get("faults"))):
        link_name = _table(fault).get("link")
        if isinstance(link_name, str) and _table(links.get(link_name)).get("type") != "serial":
            problems.append(
                (f"simulation.faults[{fi}].link: no serial link named {link_name!r}", None)
            )
        battery_name = _table(fault).get("battery")
        if isinstance(battery_name, str) and battery_name not in batteries:
            problems.append(
                (
                    f"simulation.faults[{fi}].battery: no battery named "
                    f"{battery_name!r} in the bank",
                    None,
                )
            )
    return problems
