"""Register maps for protocol `modbus-map`: their TOML schema, loading and compilation.

A map is written either inline in the bank config (`[modbus_maps.NAME]`) or in its own TOML
file (shipped ones in drivers/maps/); a battery names it in its source:

    source = { link = "rs485", protocol = "modbus-map", address = 1, map = "seplos-v3-pack" }

`map` is the name of an inline map, a path to a map file (relative to the config file), or the
name of a file NAME.toml in a `modbus-maps/` folder beside the config file or in the shipped
drivers/maps/. A map file looks like:

    description = "Seplos v3 pack blocks PIA/PIB/PIC"
    baud = 19200
    addressing = "register"    # or "byte" (JK-PB: an address names a byte of the image)
    byte_order = "big"         # defaults for every entry
    word_order = "big"         # "little": low word first in 32-bit values
    max_read = 125             # registers per read when coalescing
    max_gap = 0                # unmapped registers a read may span to join two entries
    scan_addresses = [247]     # addresses `bankwatch scan` tries besides 0-15

    [[entries]]
    function = 4               # 1/2 coils/discrete inputs, 3 holding, 4 input registers
    address = 0x1000
    type = "u16"               # u8 s8 u16 s16 u32 s32 f32 str bits(coils)
    scale = 0.01               # value = raw * scale + offset
    field = "pack_voltage_v"   # or extra = "name", or bits = [...]

    [[entries]]
    function = 1
    address = 0x1278
    type = "bits"
    count = 2
    bits = [{ bit = 0, field = "discharge_enabled" }, { bit = 1, field = "charge_enabled" }]

    [[entries]]
    address = 5018
    type = "s16"
    count = 16                 # 16 slots ...
    length_from = 5017         # ... of which the register 5017 says how many are real
    field = "temperatures_c"

Validation is pydantic (frozen, extra="forbid") plus the map-level checks of
bankwatch.drivers.modbus_map (one home per value, lists in one read); every problem names the
map and the key path.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

import bankwatch.drivers as _drivers
from bankwatch.drivers.errors import ConfigError
from bankwatch.drivers.modbus_map import (
    BOOL_FIELDS,
    FLOAT_FIELDS,
    INT_FIELDS,
    STR_FIELDS,
    TUPLE_FIELDS,
    BitRule,
    MapEntry,
    MapError,
    RegisterMap,
)
from bankwatch.drivers.model import Alarm, Protection

__all__ = [
    "SHIPPED_MAPS",
    "BitRuleConfig",
    "MapEntryConfig",
    "ModbusMapConfig",
    "compile_map",
    "load_map_file",
    "parse_map",
    "resolve_map",
]

# The maps shipped with bankwatch (present in a source checkout or an editable install).
# Shipped maps are package data of bankwatch.drivers, so an installed bankwatch (not only a
# checkout) finds them.
SHIPPED_MAPS = Path(_drivers.__file__).resolve().parent / "maps"

_PROTECTIONS = sorted(m.name.lower() for m in Protection if m.value and m.name)
_ALARMS = sorted(m.name.lower() for m in Alarm if m.value and m.name)
_NUMBER_FIELDS = FLOAT_FIELDS | INT_FIELDS | TUPLE_FIELDS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


Order = Literal["big", "little"]


class BitRuleConfig(_Strict):
    """One bit (or any bit of a mask) → a protection, an alarm, a switch or an extra flag."""

    bit: Annotated[int, Field(ge=0, le=31)] | None = None
    mask: Annotated[int, Field(gt=0, le=0xFFFF_FFFF)] | None = None
    protection: str | None = None
    alarm: str | None = None
    field: str | None = None
    extra: str | None = None
    # For bits that read 1 when the thing is off.
    invert: bool = False

    @model_validator(mode="after")
    def _one_of_each(self) -> BitRuleConfig:
        if (self.bit is None) == (self.mask is None):
            raise ValueError("give exactly one of bit or mask")
        targets = [t for t in (self.protection, self.alarm, self.field, self.extra) if t]
        if len(targets) != 1:
            raise ValueError("give exactly one of protection, alarm, field or extra")
        if self.protection is not None and self.protection not in _PROTECTIONS:
            raise ValueError(
                f"unknown protection {self.protection!r} (known: {', '.join(_PROTECTIONS)})"
            )
        if self.alarm is not None and self.alarm not in _ALARMS:
            raise ValueError(f"unknown alarm {self.alarm!r} (known: {', '.join(_ALARMS)})")
        if self.field is not None and self.field not in BOOL_FIELDS:
            known = ", ".join(sorted(BOOL_FIELDS))
            raise ValueError(f"a bit can fill the switch fields {known}, not {self.field!r}")
        return self

    def compile(self) -> BitRule:
        mask = self.mask if self.mask is not None else 1 << (self.bit or 0)
        for target, name in (
            ("protection", self.protection),
            ("alarm", self.alarm),
            ("field", self.field),
            ("extra", self.extra),
        ):
            if name is not None:
                return BitRule(mask, target, name, self.invert)  # type: ignore[arg-type]
        raise AssertionError("validated above")  # pragma: no cover


class MapEntryConfig(_Strict):
    function: Literal[1, 2, 3, 4] = 3
    address: Annotated[int, Field(ge=0, le=0xFFFF)]
    type: Literal["u8", "s8", "u16", "s16", "u32", "s32", "f32", "str", "bits"] = "u16"
    count: Annotated[int, Field(ge=1, le=2000)] = 1
    scale: float | int = 1
    offset: float | int = 0
    byte_order: Order | None = None
    word_order: Order | None = None
    mask: Annotated[int, Field(gt=0, le=0xFFFF_FFFF)] | None = None
    shift: Annotated[int, Field(ge=0, le=31)] = 0
    # Raw values that mean "no value" (0x0AAB for an unused Seplos sensor); dropped from lists.
    ignore: list[int] = Field(default_factory=list)
    # Lists only: the register (u16) where the device says how many of the `count` slots are
    # real (Renogy's cell and sensor counts); the slots after that are empty, not zeros.
    length_from: Annotated[int, Field(ge=0, le=0xFFFF)] | None = None
    field: str | None = None
    extra: str | None = None
    bits: list[BitRuleConfig] | None = None
    # A bits entry that is a word of conditions: a set bit no rule covers is an unknown
    # protection (or alarm), surfaced with its number instead of dropped.
    unknown: Literal["protection", "alarm"] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> MapEntryConfig:
        targets = [t for t in (self.field, self.extra, self.bits) if t is not None]
        if len(targets) != 1:
            raise ValueError("give exactly one of field, extra or bits")
        coils = self.function in (1, 2)
        if coils != (self.type == "bits"):
            raise ValueError('coils (function 1 or 2) are read as type "bits", and only they are')
        if self.type == "bits" and self.bits is None:
            raise ValueError('type "bits" needs bits = [...] rules')
        if self.unknown is not None and self.bits is None:
            raise ValueError("unknown belongs to an entry of bits = [...] rules")
        if self.bits is not None and self.type in ("f32", "str"):
            raise ValueError(f"bit rules need an integer type, not {self.type!r}")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        if (self.mask is not None or self.shift) and self.type not in ("u8", "u16", "u32"):
            raise ValueError("mask and shift apply to unsigned types (u8, u16, u32)")
        if self.field is not None:
            self._check_field(self.field)
        if self.count > 1 and self.type not in ("str", "bits") and self.field not in TUPLE_FIELDS:
            raise ValueError("count > 1 needs a list field (cell_voltages_v, temperatures_c)")
        if self.length_from is not None and (self.field not in TUPLE_FIELDS or coils):
            raise ValueError(
                "length_from belongs to a list of registers (cell_voltages_v, temperatures_c)"
            )
        return self

    def _check_field(self, name: str) -> None:
        if name in BOOL_FIELDS:
            raise ValueError(
                f"{name!r} is a switch: fill it with bits = [{{ bit = N, field = ... }}]"
            )
        if name in STR_FIELDS:
            if self.type != "str":
                raise ValueError(f'{name!r} is text: use type = "str" with count = bytes')
            return
        if name not in _NUMBER_FIELDS:
            known = ", ".join(sorted(_NUMBER_FIELDS | STR_FIELDS))
            raise ValueError(f"unknown field {name!r} (known: {known})")
        if self.type == "str":
            raise ValueError(f'{name!r} is a number: type "str" does not fit')
        if name in INT_FIELDS and self.type == "f32":
            raise ValueError(f"{name!r} is a whole number: f32 does not fit")


class ModbusMapConfig(_Strict):
    description: str = ""
    addressing: Literal["register", "byte"] = "register"
    baud: Annotated[int, Field(gt=0)] = 9600
    gap_s: Annotated[float, Field(ge=0, le=10)] = 0.004
    reply_timeout_s: Annotated[float, Field(gt=0, le=30)] = 0.5
    byte_order: Order = "big"
    word_order: Order = "big"
    max_read: Annotated[int, Field(ge=1, le=125)] = 125
    max_gap: Annotated[int, Field(ge=0, le=250)] = 0
    # Addresses `bankwatch scan` tries besides 0-15 (a maker's factory default, such as 247).
    scan_addresses: list[Annotated[int, Field(ge=1, le=247)]] = Field(default_factory=list)
    entries: Annotated[list[MapEntryConfig], Field(min_length=1)]

    @model_validator(mode="after")
    def _bytes_need_byte_addressing(self) -> ModbusMapConfig:
        for i, e in enumerate(self.entries):
            if e.type in ("u8", "s8") and self.addressing != "byte":
                raise ValueError(
                    f'entries[{i}]: type {e.type!r} needs addressing = "byte"; with registers '
                    "use u16 with mask and shift"
                )
        return self


def compile_map(config: ModbusMapConfig, name: str) -> RegisterMap:
    """The driver-side map; ConfigError (naming the map) when the map cannot work."""
    entries = [
        MapEntry(
            function=e.function,
            address=e.address,
            type=e.type,
            count=e.count,
            scale=Fraction(str(e.scale)),
            offset=Fraction(str(e.offset)),
            byte_order=e.byte_order or config.byte_order,
            word_order=e.word_order or config.word_order,
            mask=e.mask,
            shift=e.shift,
            ignore=frozenset(e.ignore),
            length_from=e.length_from,
            unknown=e.unknown,
            field=e.field,
            extra=e.extra,
            bits=tuple(r.compile() for r in e.bits or ()),
        )
        for e in config.entries
    ]
    try:
        return RegisterMap.build(
            name,
            entries,
            addressing=config.addressing,
            max_read=config.max_read,
            max_gap=config.max_gap,
            baud=config.baud,
            gap_s=config.gap_s,
            reply_timeout_s=config.reply_timeout_s,
            description=config.description,
            scan_addresses=tuple(config.scan_addresses),
        )
    except MapError as exc:
        raise ConfigError(f"modbus map {name!r}", [str(exc)]) from None


def _describe(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False):
        path = ""
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else ("." if path else "") + str(part)
        kind = err["type"]
        if kind == "extra_forbidden":
            msg = "unknown key"
        elif kind == "missing":
            msg = "required key is missing"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            got = err.get("input")
            if isinstance(got, str | int | float | bool) and kind != "value_error":
                msg += f" (got {got!r})"
        problems.append(f"{path or '(top level)'}: {msg}")
    return problems


def parse_map(data: Mapping[str, object], source: str) -> ModbusMapConfig:
    try:
        return ModbusMapConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(source, _describe(exc)) from None


def load_map_file(path: str | Path) -> ModbusMapConfig:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(p), ["modbus map file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(p), [f"cannot read: {exc}"]) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(p), [f"not valid TOML: {exc}"]) from None
    return parse_map(data, str(p))


def resolve_map(
    ref: str,
    *,
    inline: Mapping[str, ModbusMapConfig] | None = None,
    config_dir: str | Path | None = None,
) -> RegisterMap:
    """The compiled map a battery's `map = "..."` names (see the module docstring)."""
    if inline and ref in inline:
        return compile_map(inline[ref], ref)
    base = Path(config_dir) if config_dir is not None else Path.cwd()
    candidates = [base / ref] if ref.endswith(".toml") else []
    candidates += [base / "modbus-maps" / f"{ref}.toml", SHIPPED_MAPS / f"{ref}.toml"]
    for path in candidates:
        if path.is_file():
            return compile_map(load_map_file(path), path.stem)
    known = sorted(set(inline or ()) | {p.stem for p in SHIPPED_MAPS.glob("*.toml")})
    raise ConfigError(
        f"modbus map {ref!r}",
        [f"no inline map, file or shipped map by that name (known: {', '.join(known) or 'none'})"],
    )
