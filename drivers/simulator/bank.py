"""The simulated bank a BankDescription describes: physics, the day's profile, the scheduled faults,
and what each battery puts on the wire. Pure: time moves only when `advance` is called, so the
same object drives the live demo, `bankwatch simulate` and tests that run days in seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bankwatch.drivers.chemistry import CELL_NOMINAL_V, CHEMISTRY_FAMILY
from bankwatch.drivers.errors import ConfigError
from bankwatch.drivers.links.can import CanLinkSettings
from bankwatch.drivers.model import Protection, Reading
from bankwatch.drivers.registry import protocol_info
from bankwatch.drivers.simulator.description import BankDescription, SimBattery, SimFault
from bankwatch.drivers.simulator.physics import BatterySpec, SimBank
from bankwatch.drivers.simulator.profile import Profile, profile_from_name

__all__ = ["BankSimulator", "Broadcast", "Frame"]

Frame = tuple[int, bytes]


@dataclass(frozen=True, slots=True)
class Broadcast:
    """The frames one device sends in one broadcast period, and the link they go out on."""

    link: str
    subject: str
    frames: tuple[Frame, ...]


def _broadcaster(protocol: str) -> Callable[[Reading], tuple[Frame, ...]] | None:
    """The frames a device on `protocol` broadcasts for a reading, from the registry's encoder;
    None for a protocol that does not broadcast (a polled one is served by answering its
    requests) or has no encoder: such a battery is simulated but not put on the wire."""
    info = protocol_info(protocol)
    encode = None if info is None or info.addressing != "broadcast" else info.can_encode
    if encode is None:
        return None
    return lambda reading: tuple((i, d) for i, d, _extended in encode(reading, None))


_SIM_CHEMISTRY = {"lifepo4": "lifepo4", "nmc": "nmc", "lto": "lifepo4", "lead-acid": "lead-acid"}
# A charger's setpoint per cell when the config names none.
_DEFAULT_CHARGE_V_PER_CELL = {"lifepo4": 3.45, "nmc": 4.1, "lead-acid": 2.4}


class BankSimulator:
    def __init__(self, bank: BankDescription, *, seed: int | None = None) -> None:
        self.bank = bank
        self.start_of_day_s = bank.start_of_day_s
        self.elapsed_s = 0.0
        strings = [[_spec(b) for b in s] for s in bank.strings]
        bank_wh = sum(
            min(sp.capacity_ah for sp in specs) * sum(sp.nominal_voltage_v for sp in specs)
            for specs in strings
        )
        self.physics = SimBank(
            strings, ambient_c=bank.ambient_c, seed=bank.seed if seed is None else seed
        )
        self.profile: Profile = (
            profile_from_name("constant", power_w=bank.power_w)
            if bank.profile == "constant"
            else profile_from_name("solar-day", bank_wh=bank_wh)
        )
        family = CHEMISTRY_FAMILY[bank.chemistry]
        nominal_cells = max(
            sum(round(b.nominal_voltage_v / CELL_NOMINAL_V[b.chemistry]) for b in s)
            for s in bank.strings
        )
        self.charge_voltage_v = bank.charger_voltage_v or (
            nominal_cells * _DEFAULT_CHARGE_V_PER_CELL[_SIM_CHEMISTRY[family]]
        )
        self.silent: set[str] = set()
        # Serial links whose adapter is unplugged (the serial server closes their PTY).
        self.unplugged: set[str] = set()
        chemistry = {b.name: b.chemistry for b in bank.batteries()}
        for fault in bank.faults:
            if fault.kind in ("unplug", "replug"):
                continue
            if fault.battery not in chemistry:
                raise ConfigError(
                    "<simulation>", [f"simulation.faults: no battery named {fault.battery!r}"]
                )
            if fault.kind == "cutoff" and CHEMISTRY_FAMILY[chemistry[fault.battery]] == "lead-acid":
                raise ConfigError(
                    "<simulation>",
                    [f"simulation.faults: {fault.battery} is lead-acid: it has no BMS to cut off"],
                )
        self._faults: list[SimFault] = sorted(bank.faults, key=lambda f: f.at_s)
        self._next_fault = 0
        self.fault_log: list[tuple[float, SimFault]] = []

    # --- time -------------------------------------------------------------------------------

    @property
    def time_of_day_s(self) -> float:
        return self.start_of_day_s + self.elapsed_s

    def advance(self, seconds: float) -> None:
        """Run the bank forward, in physics steps of at most `step_s`, applying faults on time."""
        end = self.elapsed_s + seconds
        step = self.bank.step_s
        while self.elapsed_s < end - 1e-9:
            self._apply_faults()
            dt = min(step, end - self.elapsed_s)
            nxt = self._next_fault_at()
            if nxt is not None and self.elapsed_s < nxt < self.elapsed_s + dt:
                dt = nxt - self.elapsed_s
            voltage = self.physics.voltage_v
            demand_a = self.profile.demand_w(self.time_of_day_s) / max(voltage, 1.0)
            self.physics.step(dt, demand_a, charge_voltage_v=self.charge_voltage_v)
            self.elapsed_s += dt
        self._apply_faults()

    def _next_fault_at(self) -> float | None:
        if self._next_fault < len(self._faults):
            return self._faults[self._next_fault].at_s
        return None

    def _apply_faults(self) -> None:
        while (
            self._next_fault < len(self._faults)
            and self._faults[self._next_fault].at_s <= self.elapsed_s + 1e-9
        ):
            fault = self._faults[self._next_fault]
            self._next_fault += 1
            self.apply(fault)

    def apply(self, fault: SimFault) -> None:
        self.fault_log.append((self.elapsed_s, fault))
        name, kind, value = fault.battery, fault.kind, fault.value
        p = self.physics
        if kind == "cutoff":
            p.trip(name, Protection[fault.protection.upper()])
        elif kind == "silent":
            self.silent.add(name)
        elif kind == "recover":
            p.reset(name)
            self.silent.discard(name)
        elif kind in ("disconnect", "connect"):
            p.set_isolated(name, kind == "disconnect")
        elif kind == "unplug":
            self.unplugged.add(fault.link or "")
        elif kind == "replug":
            self.unplugged.discard(fault.link or "")
        else:
            assert value is not None  # these kinds come with a value
            if kind == "capacity_fade":
                p.set_capacity_factor(name, value)
            elif kind == "cable_resistance":
                p.set_cable_resistance(name, value)
            elif kind == "cell_drift":
                p.set_cell_offset(name, value)
            elif kind == "heating":
                p.set_heating(name, value)
            elif kind == "leak":
                p.set_leak(name, value)
            elif kind == "current_sensor_offset":
                p.set_sensor_offsets(name, current_a=value)
            elif kind == "voltage_sensor_offset":
                p.set_sensor_offsets(name, voltage_v=value)
            else:  # pragma: no cover - FaultKind lists every kind
                raise AssertionError(f"unhandled fault kind {kind!r}")

    # --- the wire ---------------------------------------------------------------------------

    def broadcasts(self, at: float = 0.0) -> list[Broadcast]:
        """What every talking device sends now, by link."""
        out: list[Broadcast] = []
        for b in self.bank.batteries():
            src = b.source
            if src is None or b.name in self.silent:
                continue
            encode = _broadcaster(src.protocol)
            if encode is not None:
                out.append(Broadcast(src.link, b.name, encode(self.physics.reading(b.name, at))))
        src = self.bank.source
        encode = None if src is None else _broadcaster(src.protocol)
        if src is not None and encode is not None:
            out.append(Broadcast(src.link, "bank", encode(self.physics.bank_reading(at))))
        return out

    def can_links(self) -> dict[str, CanLinkSettings]:
        """The CAN links some simulated device talks on."""
        used = {b.source.link for b in self.bank.batteries() if b.source is not None}
        if self.bank.source is not None:
            used.add(self.bank.source.link)
        return {
            name: link
            for name, link in self.bank.links.items()
            if name in used and isinstance(link, CanLinkSettings)
        }

    def reading(self, name: str, at: float = 0.0) -> Reading:
        return self.physics.reading(name, at)


def _spec(b: SimBattery) -> BatterySpec:
    """The physics' view of a battery: its chemistry model and the fields the description sets
    (the others keep the physics' defaults)."""
    optional: dict[str, Any] = {
        "capacity_factor": b.capacity_factor,
        "internal_resistance_ohm": b.internal_resistance_ohm,
        "cable_resistance_ohm": b.cable_resistance_ohm,
        "cell_count": b.cell_count,
    }
    return BatterySpec(
        name=b.name,
        chemistry=_SIM_CHEMISTRY[CHEMISTRY_FAMILY[b.chemistry]],
        capacity_ah=b.capacity_ah,
        nominal_voltage_v=b.nominal_voltage_v,
        initial_soc_pct=b.initial_soc_pct,
        temperature_c=b.temperature_c,
        **{k: v for k, v in optional.items() if v is not None},
    )
