"""Text a person reads: the topology tree and the findings of `bankwatch check`, the bank's
one-line status (the console and systemd's STATUS= line)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Types only: the console imports `fmt_energy` and must not pull the config models in.
    from bankwatch.daemon.rules import Finding
    from bankwatch.daemon.topology import BankState, Topology

__all__ = [
    "WIDTH",
    "clip",
    "fmt_energy",
    "fmt_value",
    "format_findings",
    "format_tree",
    "status_line",
]

# No line a person reads (the terminal view, the status line) is wider than this.
WIDTH = 100


def fmt_value(value: float | None, fmt: str, unit: str = "") -> str:
    """A number with its unit, or a dash for a value nobody sent."""
    return "—" if value is None else f"{value:{fmt}}{unit}"


def clip(line: str) -> str:
    return line if len(line) <= WIDTH else line[: WIDTH - 1] + "…"


def status_line(state: BankState, active_alerts: int) -> str:
    """The bank in one line: voltage, current, SOC, live batteries and active alerts."""
    live = sum(b.live for b in state.batteries())
    return clip(
        f"{state.name}: {fmt_value(state.voltage_v, '.2f', ' V')} "
        f"{fmt_value(state.current_a, '+.1f', ' A')} SOC {fmt_value(state.soc_pct, '.1f', ' %')}, "
        f"{live}/{len(state.batteries())} batteries live, {active_alerts} active alert(s)"
    )


def fmt_energy(wh: float) -> str:
    return f"{wh / 1000:.2f} kWh" if wh >= 1000 else f"{wh:.0f} Wh"


def _source(topo: Topology, name: str) -> str:
    src = topo.battery(name).source
    if src is None:
        return "no source"
    addr = f" @{src.address}" if src.address is not None else ""
    return f"{src.protocol} on {src.link}{addr}"


def format_tree(topo: Topology) -> str:
    bank = topo.config.bank
    lines = [
        f"bank {topo.name}: {bank.nominal_voltage_v:g} V {bank.chemistry}, {topo.shape}, "
        f"{topo.nominal_voltage_v:g} V nominal, {topo.capacity_ah:g} Ah, "
        f"{fmt_energy(topo.energy_wh)}"
    ]
    if bank.source is not None:
        lines.append(f"│   totals from {bank.source.protocol} on {bank.source.link}")
    for si, s in enumerate(topo.strings):
        last_s = si == len(topo.strings) - 1
        lines.append(
            f"{'└──' if last_s else '├──'} string {s.name}: {len(s.batteries)} in series, "
            f"{s.nominal_voltage_v:g} V, {s.capacity_ah:g} Ah, {fmt_energy(s.energy_wh)}"
        )
        pad = "    " if last_s else "│   "
        for bi, b in enumerate(s.batteries):
            branch = "└──" if bi == len(s.batteries) - 1 else "├──"
            m = b.model
            lines.append(
                f"{pad}{branch} {b.name}: {b.model_name}, {m.nominal_voltage_v:g} V "
                f"{m.capacity_ah:g} Ah {m.chemistry}, {_source(topo, b.name)}"
            )
    return "\n".join(lines)


def format_findings(findings: list[Finding]) -> str:
    if not findings:
        return "no findings: the wiring follows every rule bankwatch knows"
    lines = []
    for f in findings:
        lines.append(f"{f.severity.upper():7} {f.rule} ({f.subject}): {f.message}")
        lines.append(f"        why: {f.why}")
    return "\n".join(lines)
