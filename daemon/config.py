"""The config file: a bank described the way its owner sees it, read once at start.

TOML in, frozen pydantic models out (`extra="forbid"`, so a typo is an error, not a silently
ignored key). Every problem names the file, the key path and, where it can be found, the line;
all problems are reported at once so a user fixes them in one pass.

Layout (see configs/ for complete examples):

    [bank]                 name, chemistry, nominal_voltage_v, charger/inverter voltage, source
    [models.NAME]          capacity_ah, nominal_voltage_v, chemistry, maker's series/parallel limits
    [links.NAME]           type = "can" (interface, channel, bitrate) or "serial" (port, baud)
    [[strings]]            name, batteries = [{ name, model, source = { link, protocol, address } }]
    [detect]               thresholds of the detectors; [detect.KIND] per alert kind
                           (schema: detect_config.py, beside the detectors)
    [simulation]           only read by the simulator: profile, per-battery physics, faults
    [modbus_maps.NAME]     register maps for protocol "modbus-map" (see daemon/modbus_maps.py)
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
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, model_validator

from bankwatch.daemon.config_base import Name, PositiveFloat
from bankwatch.daemon.config_base import Strict as _Strict
from bankwatch.daemon.config_base import raw_array as _array
from bankwatch.daemon.config_base import raw_table as _table
from bankwatch.daemon.detect_config import DetectConfig
from bankwatch.daemon.modbus_maps import ModbusMapConfig
from bankwatch.daemon.publish_config import InfluxConfig, MqttConfig
from bankwatch.daemon.scenario_config import ScenarioConfig, check_scenario_subjects
from bankwatch.drivers.errors import ConfigError
from bankwatch.drivers.registry import PROTOCOLS

__all__ = [
    "CELL_NOMINAL_V",
    "CHEMISTRY_FAMILY",
    "FAULT_VALUES",
    "BankConfig",
    "BankSection",
    "BatteryConfig",
    "CanLinkConfig",
    "Chemistry",
    "Config",
    "FaultConfig",
    "LinkConfig",
    "ModelConfig",
    "SerialLinkConfig",
    "SimBatteryConfig",
    "SimulationConfig",
    "SourceConfig",
    "StringConfig",
    "load_config",
    "parse_config",
]

Chemistry = Literal["lifepo4", "nmc", "lto", "agm", "flooded", "gel"]

# Chemistries that may never share a bank are in different families; lead-acid subtypes share
# one family but still differ in charge voltage.
CHEMISTRY_FAMILY: dict[str, str] = {
    "lifepo4": "lifepo4",
    "nmc": "nmc",
    "lto": "lto",
    "agm": "lead-acid",
    "flooded": "lead-acid",
    "gel": "lead-acid",
}

CELL_NOMINAL_V: dict[str, float] = {
    "lifepo4": 3.2,
    "nmc": 3.7,
    "lto": 2.4,
    "agm": 2.0,
    "flooded": 2.0,
    "gel": 2.0,
}


class SourceConfig(_Strict):
    """Where a battery's (or the bank's) data comes from."""

    link: str
    protocol: str
    # Bus address for request/response protocols (DIP switches); broadcast protocols have none.
    address: Annotated[int, Field(ge=0, le=255)] | None = None
    # protocol "modbus-map" only: an inline [modbus_maps.NAME], a map file path, or a shipped
    # map's name (see bankwatch.daemon.modbus_maps.resolve_map).
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


class CanLinkConfig(_Strict):
    type: Literal["can"]
    # Any python-can interface: socketcan (a Pi HAT's can0), slcan, gs_usb, socketcand, virtual…
    interface: str = "socketcan"
    channel: str = "can0"
    bitrate: Annotated[int, Field(ge=10_000, le=1_000_000)] = 500_000
    # socketcand only: the server that serves the bus.
    host: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    # slcan and other serial adapters: the adapter's serial speed.
    tty_baudrate: Annotated[int, Field(gt=0)] | None = None
    # No frame for this long marks the link down (python-can may never notice a vanished adapter).
    silence_timeout_s: PositiveFloat = 5.0
    # Polled protocols (daly-can): how often each battery on this bus is asked.
    poll_interval_s: PositiveFloat = 1.0
    # Send the inverter keep-alive (0x305) once a second, for a bus where bankwatch is the only
    # receiver. Off by default: bankwatch only listens beside an inverter.
    send_keepalive: bool = False

    @model_validator(mode="after")
    def _socketcand_needs_server(self) -> CanLinkConfig:
        if self.interface == "socketcand" and (self.host is None or self.port is None):
            raise ValueError("interface 'socketcand' needs host and port")
        return self


class SerialLinkConfig(_Strict):
    type: Literal["serial"]
    port: str
    baud: Annotated[int, Field(gt=0)] = 9600
    # An inverter or a master pack already polls this bus: send nothing, decode what is heard.
    listen_only: bool = False
    # The adapter hears what it sends (some 2-wire RS485 adapters): drop our own request.
    echo: bool = False
    # Start a poll sweep this often (a sweep that takes longer starts the next at once).
    poll_interval_s: PositiveFloat = 1.0
    # Overrides of the protocol's own timing: quiet time after a reply before the next request,
    # how long a reply may take to start, and how often a request is repeated unanswered.
    gap_s: Annotated[float, Field(ge=0)] | None = None
    reply_timeout_s: PositiveFloat | None = None
    retries: Annotated[int, Field(ge=0, le=10)] = 1
    # Listen-only: nothing heard for this long marks the line silent.
    silence_timeout_s: PositiveFloat = 10.0


LinkConfig = Annotated[CanLinkConfig | SerialLinkConfig, Field(discriminator="type")]


class BankSection(_Strict):
    name: Name
    chemistry: Chemistry
    nominal_voltage_v: PositiveFloat
    # The charger's charge (absorption/bulk) setpoint, and the inverter's nominal DC input.
    charger_voltage_v: PositiveFloat | None = None
    inverter_voltage_v: PositiveFloat | None = None
    # Bank-level totals: the master battery's CAN broadcast (later a shunt).
    source: SourceConfig | None = None


class SimBatteryConfig(_Strict):
    initial_soc_pct: Annotated[float, Field(ge=0, le=100)] | None = None
    capacity_factor: Annotated[float, Field(gt=0, le=1.5)] | None = None
    internal_resistance_ohm: PositiveFloat | None = None
    cable_resistance_ohm: Annotated[float, Field(ge=0)] | None = None
    temperature_c: float | None = None
    # The battery as really built, when it differs from its model (a 24 V battery where the
    # config says 12 V).
    cell_count: Annotated[int, Field(ge=1, le=64)] | None = None


# Fault kinds that need a `value`, and what it means.
FAULT_VALUES: dict[str, str] = {
    "capacity_fade": "capacity factor, 0.8 = 80 % of the rating left",
    "cable_resistance": "the battery's cable resistance in ohms",
    "cell_drift": "one cell's SOC offset in percentage points (negative: a weak cell)",
    "heating": "kelvin the battery's surroundings are above the bank's ambient",
    "leak": "amps drawn from this battery alone",
    "current_sensor_offset": "amps the BMS's current reading is off by",
    "voltage_sensor_offset": "volts the BMS's pack voltage reading is off by",
}


class FaultConfig(_Strict):
    at_s: Annotated[float, Field(ge=0)]
    # The battery of a cutoff, silent or recover fault.
    battery: str = ""
    # cutoff: the BMS trips (protection names the cause); silent: the battery stops talking;
    # recover: undo both. disconnect / connect: the branch's isolator opens / closes (the BMS
    # keeps talking). unplug: a serial link's adapter vanishes (its port closes and its path
    # goes away); replug: it comes back, under the same path. The rest change the battery by
    # `value` (see FAULT_VALUES).
    kind: Literal[
        "cutoff",
        "silent",
        "recover",
        "disconnect",
        "connect",
        "unplug",
        "replug",
        "capacity_fade",
        "cable_resistance",
        "cell_drift",
        "heating",
        "leak",
        "current_sensor_offset",
        "voltage_sensor_offset",
    ]
    value: float | None = None
    # The serial link of an unplug or replug fault.
    link: str | None = None
    protection: Literal[
        "cell_overvoltage",
        "cell_undervoltage",
        "charge_overcurrent",
        "discharge_overcurrent",
        "over_temperature",
        "under_temperature",
        "short_circuit",
        "system_error",
    ] = "cell_undervoltage"

    @model_validator(mode="after")
    def _target(self) -> FaultConfig:
        if self.kind in ("unplug", "replug"):
            if self.link is None:
                raise ValueError(f"a {self.kind} fault needs link (a serial link's name)")
        elif not self.battery:
            raise ValueError(f"a {self.kind} fault needs battery")
        return self

    @model_validator(mode="after")
    def _value_fits_kind(self) -> FaultConfig:
        meaning = FAULT_VALUES.get(self.kind)
        if meaning is None:
            if self.value is not None:
                raise ValueError(f"fault kind {self.kind!r} takes no value")
            return self
        if self.value is None:
            raise ValueError(f"fault kind {self.kind!r} needs a value: {meaning}")
        if self.kind == "capacity_fade" and not 0 < self.value <= 1.5:
            raise ValueError("capacity_fade value must be within (0, 1.5]")
        if self.kind == "cable_resistance" and self.value < 0:
            raise ValueError("cable_resistance value must be >= 0")
        if self.kind == "cell_drift" and not -50 <= self.value <= 50:
            raise ValueError("cell_drift value must be within -50..50 points")
        return self


class SimulationConfig(_Strict):
    profile: Literal["solar-day", "constant"] = "solar-day"
    # constant profile: bank power in watts, + charging.
    power_w: float = -500.0
    # Where in the day the simulated clock starts, as "HH:MM".
    start_time: Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")] = "08:00"
    speed: PositiveFloat = 1.0
    step_s: PositiveFloat = 1.0
    seed: int = 0
    initial_soc_pct: Annotated[float, Field(ge=0, le=100)] = 70.0
    # The air the batteries cool toward (and start at, unless a battery says otherwise).
    ambient_c: Annotated[float, Field(ge=-40, le=70)] = 25.0
    batteries: dict[str, SimBatteryConfig] = Field(default_factory=dict)
    faults: list[FaultConfig] = Field(default_factory=list)


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
    # Register maps for protocol "modbus-map", by name (bankwatch.daemon.modbus_maps).
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
