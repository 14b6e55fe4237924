"""The wiring rules of DOMAIN.md, applied to a config before anything runs.

Each rule looks at the bank as configured and returns findings: a severity, the part of the bank
it is about, what is wrong and, in one plain sentence, why it matters. `bankwatch check` prints
them; `bankwatch run` logs them and monitors anyway (the bank exists whether or not it is wired
well, and watching a badly wired bank is when a monitor earns its keep).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from bankwatch.daemon.config import Config
from bankwatch.daemon.topology import Topology
from bankwatch.drivers.chemistry import CELL_NOMINAL_V, CHEMISTRY_FAMILY
from bankwatch.drivers.registry import PROTOCOLS
from bankwatch.drivers.serial_codec import talks_unasked

__all__ = ["RULES", "Finding", "Severity", "check_bank"]

Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    severity: Severity
    subject: str
    message: str
    why: str


# Charge voltage per cell a charger may target: (lowest sensible, highest safe).
_CHARGE_V_PER_CELL: dict[str, tuple[float, float]] = {
    "lifepo4": (3.40, 3.65),
    "nmc": (4.00, 4.20),
    "lto": (2.60, 2.85),
    "agm": (2.25, 2.45),
    "flooded": (2.25, 2.48),
    "gel": (2.25, 2.40),
}
# How far a nominal figure may sit from the sum of its parts: a "48 V" LFP bank is 51.2 V.
_NOMINAL_TOLERANCE = 0.10
_SYSTEM_VOLTAGES = (12.0, 24.0, 36.0, 48.0)


def _cells(voltage: float, chemistry: str) -> int:
    return max(1, round(voltage / CELL_NOMINAL_V[chemistry]))


def _close(a: float, b: float, tolerance: float = _NOMINAL_TOLERANCE) -> bool:
    return abs(a - b) <= tolerance * max(a, b)


def _fmt(v: float) -> str:
    return f"{v:g}"


def rule_mixed_chemistry(config: Config, topo: Topology) -> list[Finding]:
    out: list[Finding] = []
    bank_chem = config.bank.chemistry
    chems = {b.name: b.model.chemistry for b in topo.batteries()}
    families = {CHEMISTRY_FAMILY[c] for c in chems.values()} | {CHEMISTRY_FAMILY[bank_chem]}
    if len(families) > 1:
        listing = ", ".join(f"{n} {c}" for n, c in chems.items() if c != bank_chem)
        out.append(
            Finding(
                "mixed_chemistry",
                "error",
                topo.name,
                f"bank is {bank_chem} but has batteries of another chemistry: {listing}",
                "Chemistries charge to different voltages and age differently; mixing them in "
                "one bank overcharges one and undercharges the other.",
            )
        )
    elif len(set(chems.values()) | {bank_chem}) > 1:
        listing = ", ".join(sorted(set(chems.values()) | {bank_chem}))
        out.append(
            Finding(
                "mixed_chemistry",
                "warning",
                topo.name,
                f"lead-acid types mixed in one bank: {listing}",
                "AGM, flooded and gel batteries want different charge voltages, so one charger "
                "setting is wrong for some of them.",
            )
        )
    return out


def rule_series_unequal_capacity(config: Config, topo: Topology) -> list[Finding]:
    out: list[Finding] = []
    for s in topo.strings:
        caps = {b.model.capacity_ah for b in s.batteries}
        if len(caps) > 1:
            listing = ", ".join(f"{b.name} {_fmt(b.model.capacity_ah)} Ah" for b in s.batteries)
            out.append(
                Finding(
                    "series_unequal_capacity",
                    "error",
                    s.path,
                    f"string {s.name} mixes capacities in series: {listing}",
                    "The same current flows through every battery in series, so the smallest "
                    "empties first and is over-discharged or cuts off the whole string.",
                )
            )
        models = {b.model_name for b in s.batteries}
        if len(caps) == 1 and len(models) > 1:
            out.append(
                Finding(
                    "series_mixed_models",
                    "warning",
                    s.path,
                    f"string {s.name} mixes models in series: {', '.join(sorted(models))}",
                    "Batteries of different make or age drift apart in series; the weakest sets "
                    "the limit for the string.",
                )
            )
    return out


def rule_parallel_unequal_strings(config: Config, topo: Topology) -> list[Finding]:
    if len(topo.strings) < 2:
        return []
    out: list[Finding] = []
    counts = {s.name: len(s.batteries) for s in topo.strings}
    volts = {s.name: s.nominal_voltage_v for s in topo.strings}
    caps = {s.name: s.capacity_ah for s in topo.strings}
    if len(set(counts.values())) > 1 or len({round(v, 2) for v in volts.values()}) > 1:
        listing = ", ".join(f"{n} {counts[n]} in series ({_fmt(volts[n])} V)" for n in counts)
        out.append(
            Finding(
                "parallel_unequal_strings",
                "error",
                topo.name,
                f"strings in parallel differ in voltage: {listing}",
                "Strings of different voltage in parallel drive current into each other "
                "without limit; the lower string is overcharged.",
            )
        )
    elif len(set(caps.values())) > 1:
        listing = ", ".join(f"{n} {_fmt(c)} Ah" for n, c in caps.items())
        out.append(
            Finding(
                "parallel_unequal_strings",
                "warning",
                topo.name,
                f"strings in parallel differ in capacity: {listing}",
                "Unequal strings share current unevenly; the larger carries more and the pair "
                "is only safe where the maker allows it.",
            )
        )
    return out


def rule_maker_limits(config: Config, topo: Topology) -> list[Finding]:
    out: list[Finding] = []
    reported: set[tuple[str, str]] = set()
    for s in topo.strings:
        for b in s.batteries:
            m = b.model
            if m.max_series is not None and len(s.batteries) > m.max_series:
                key = ("series", s.name)
                if key not in reported:
                    reported.add(key)
                    out.append(
                        Finding(
                            "exceeds_max_series",
                            "error",
                            s.path,
                            f"string {s.name} has {len(s.batteries)} in series; model "
                            f"{b.model_name} allows at most {m.max_series}",
                            "Beyond the maker's series limit the BMS switches see more voltage "
                            "than they are rated to block, and a cutoff can destroy them.",
                        )
                    )
            if m.max_parallel is not None and len(topo.strings) > m.max_parallel:
                key = ("parallel", b.model_name)
                if key not in reported:
                    reported.add(key)
                    out.append(
                        Finding(
                            "exceeds_max_parallel",
                            "error",
                            topo.name,
                            f"{len(topo.strings)} strings in parallel; model {b.model_name} "
                            f"allows at most {m.max_parallel}",
                            "Beyond the maker's parallel limit one battery's fault current or "
                            "its BMS's share of the load exceeds what it is rated for.",
                        )
                    )
    return out


def rule_charger_inverter_voltage(config: Config, topo: Topology) -> list[Finding]:
    out: list[Finding] = []
    bank = config.bank
    nominal = topo.nominal_voltage_v
    chem = bank.chemistry
    if bank.charger_voltage_v is not None:
        cells = _cells(nominal, chem)
        low, high = _CHARGE_V_PER_CELL[chem]
        lo_v, hi_v = cells * low, cells * high
        v = bank.charger_voltage_v
        if not lo_v * 0.85 <= v <= hi_v * 1.15:
            out.append(
                Finding(
                    "charger_voltage",
                    "error",
                    topo.name,
                    f"charger voltage {_fmt(v)} V does not fit a {_fmt(nominal)} V {chem} bank "
                    f"(expected {lo_v:.1f}-{hi_v:.1f} V)",
                    "A charger built for another system voltage either never charges the bank "
                    "or drives it into its BMS's over-voltage cutoff.",
                )
            )
        elif v > hi_v:
            out.append(
                Finding(
                    "charger_voltage",
                    "error",
                    topo.name,
                    f"charger voltage {_fmt(v)} V is above the safe {hi_v:.1f} V for "
                    f"{cells} {chem} cells in series",
                    "Charging above the cells' limit trips over-voltage protection at best and "
                    "damages cells at worst.",
                )
            )
        elif v < lo_v:
            out.append(
                Finding(
                    "charger_voltage",
                    "warning",
                    topo.name,
                    f"charger voltage {_fmt(v)} V is below {lo_v:.1f} V, the least that fully "
                    f"charges {cells} {chem} cells in series",
                    "A bank that never reaches full charge loses usable capacity and, for "
                    "lead-acid, sulfates.",
                )
            )
    if bank.inverter_voltage_v is not None:
        v = bank.inverter_voltage_v
        system = min(_SYSTEM_VOLTAGES, key=lambda s: abs(s - nominal))
        if not _close(v, nominal, 0.15):
            out.append(
                Finding(
                    "inverter_voltage",
                    "error",
                    topo.name,
                    f"inverter is a {_fmt(v)} V model but the bank is {_fmt(nominal)} V "
                    f"(a {_fmt(system)} V system)",
                    "An inverter on the wrong bank voltage either refuses to start or is "
                    "damaged by over-voltage.",
                )
            )
    return out


def rule_duplicate_addresses(config: Config, topo: Topology) -> list[Finding]:
    out: list[Finding] = []
    by_key: dict[tuple[str, int | None], list[str]] = defaultdict(list)
    sources = [(b.name, b.source) for b in topo.batteries()]
    sources.append((f"the bank source of {topo.name}", config.bank.source))
    for name, src in sources:
        if src is None:
            continue
        info = PROTOCOLS.get(src.protocol)
        # A broadcast device has no address: a link can carry only one of them.
        address = None if info is None or info.addressing == "broadcast" else src.address
        by_key[(src.link, address)].append(name)
    for (link, address), names in by_key.items():
        if len(names) < 2:
            continue
        where = f"address {address} on link {link}" if address is not None else f"link {link}"
        why = (
            "Two devices answering to one address garble each other's replies, so neither "
            "battery can be read."
            if address is not None
            else "A broadcast protocol has no address: two batteries broadcasting on one bus "
            "send the same frame ids and their values cannot be told apart."
        )
        out.append(
            Finding(
                "duplicate_address",
                "error",
                topo.name,
                f"{', '.join(names)} share {where}",
                why,
            )
        )
    return out


def rule_point_to_point(config: Config, topo: Topology) -> list[Finding]:
    """A device that talks unasked (a VE.Direct shunt) owns its line: the line only listens,
    so a BMS polled on the same link would never be asked."""
    out: list[Finding] = []
    by_link: dict[str, list[tuple[str, bool]]] = defaultdict(list)
    sources = [(b.name, b.source) for b in topo.batteries()]
    sources.append((f"the bank source of {topo.name}", config.bank.source))
    for name, src in sources:
        if src is None:
            continue
        info = PROTOCOLS.get(src.protocol)
        codec = None if info is None else info.serial_codec
        by_link[src.link].append((name, codec is not None and talks_unasked(codec)))
    for link, devices in by_link.items():
        talkers = [n for n, unasked in devices if unasked]
        if talkers and len(devices) > 1:
            out.append(
                Finding(
                    "point_to_point",
                    "error",
                    topo.name,
                    f"link {link} carries {talkers[0]}, which talks unasked, and "
                    f"{', '.join(n for n, _ in devices if n != talkers[0])}",
                    "A shunt's port is point to point and its line only listens, so nothing "
                    "else on it would ever be asked: give each device its own link.",
                )
            )
    return out


def rule_nominal_voltages(config: Config, topo: Topology) -> list[Finding]:
    out: list[Finding] = []
    for s in topo.strings:
        v = s.nominal_voltage_v
        if not _close(v, config.bank.nominal_voltage_v):
            parts = " + ".join(_fmt(b.model.nominal_voltage_v) for b in s.batteries)
            out.append(
                Finding(
                    "nominal_voltage",
                    "error",
                    s.path,
                    f"string {s.name} adds up to {parts} = {_fmt(v)} V but the bank is declared "
                    f"{_fmt(config.bank.nominal_voltage_v)} V",
                    "Series voltages add: a string that does not make the bank's voltage means "
                    "a battery too many or too few, or the wrong bank voltage everywhere else.",
                )
            )
    for b in topo.batteries():
        m = b.model
        cells = m.nominal_voltage_v / CELL_NOMINAL_V[m.chemistry]
        if abs(cells - round(cells)) > 0.1:
            out.append(
                Finding(
                    "nominal_voltage",
                    "warning",
                    b.path,
                    f"model {b.model_name}: {_fmt(m.nominal_voltage_v)} V is not a whole number "
                    f"of {m.chemistry} cells ({_fmt(CELL_NOMINAL_V[m.chemistry])} V each)",
                    "A nominal voltage that fits no cell count is usually a typo, and every "
                    "voltage check after it is then wrong.",
                )
            )
    return out


def rule_unmonitored(config: Config, topo: Topology) -> list[Finding]:
    missing = [b.name for b in topo.batteries() if b.source is None]
    if not missing:
        return []
    return [
        Finding(
            "unmonitored",
            "info",
            topo.name,
            f"no data source for {', '.join(missing)}",
            "Batteries without a source are counted in the nominal figures but cannot be "
            "watched; their string shows no live voltage or SOC.",
        )
    ]


RULES: tuple[Callable[[Config, Topology], list[Finding]], ...] = (
    rule_mixed_chemistry,
    rule_series_unequal_capacity,
    rule_parallel_unequal_strings,
    rule_maker_limits,
    rule_charger_inverter_voltage,
    rule_duplicate_addresses,
    rule_point_to_point,
    rule_nominal_voltages,
    rule_unmonitored,
)

_ORDER = {"error": 0, "warning": 1, "info": 2}


def check_bank(config: Config, topology: Topology | None = None) -> list[Finding]:
    """Every finding of every rule, errors first."""
    topo = topology or Topology(config)
    findings = [f for rule in RULES for f in rule(config, topo)]
    return sorted(findings, key=lambda f: _ORDER[f.severity])
