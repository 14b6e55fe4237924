"""The simulated bank as a config describes it: physics, the day's profile, the scheduled faults,
and what each battery puts on the wire. Pure: time moves only when `advance` is called, so the
same object drives the live demo, `bankwatch simulate` and tests that run days in seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bankwatch.daemon.config import (
    CELL_NOMINAL_V,
    CHEMISTRY_FAMILY,
    CanLinkConfig,
    Config,
    FaultConfig,
    SimulationConfig,
)
from bankwatch.drivers.errors import ConfigError
from bankwatch.drivers.model import Protection, Reading
from bankwatch.drivers.registry import protocol_info
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
    def __init__(self, config: Config, *, seed: int | None = None) -> None:
        self.config = config
        sim = config.simulation
        self.sim = sim if sim is not None else SimulationConfig()
        sim = self.sim
        hours, minutes = (int(x) for x in sim.start_time.split(":"))
        self.start_of_day_s = hours * 3600 + minutes * 60
        self.elapsed_s = 0.0
        strings: list[list[BatterySpec]] = []
        bank_wh = 0.0
        for s in config.strings:
            specs = []
            for b in s.batteries:
                m = config.models[b.model]
                # The [simulation.batteries.NAME] fields are named as BatterySpec's.
                overrides: dict[str, Any] = {
                    "initial_soc_pct": sim.initial_soc_pct,
                    "temperature_c": sim.ambient_c,
                }
                o = sim.batteries.get(b.name)
                if o is not None:
                    overrides.update(o.model_dump(exclude_none=True))
                specs.append(
                    BatterySpec(
                        name=b.name,
                        chemistry=_SIM_CHEMISTRY[CHEMISTRY_FAMILY[m.chemistry]],
                        capacity_ah=m.capacity_ah,
                        nominal_voltage_v=m.nominal_voltage_v,
                        **overrides,
                    )
                )
            strings.append(specs)
            bank_wh += min(sp.capacity_ah for sp in specs) * sum(
                sp.nominal_voltage_v for sp in specs
            )
        self.physics = SimBank(
            strings, ambient_c=sim.ambient_c, seed=sim.seed if seed is None else seed
        )
        self.profile: Profile = (
            profile_from_name("constant", power_w=sim.power_w)
            if sim.profile == "constant"
            else profile_from_name("solar-day", bank_wh=bank_wh)
        )
        family = CHEMISTRY_FAMILY[config.bank.chemistry]
        nominal_cells = max(
            sum(
                round(config.models[b.model].nominal_voltage_v / CELL_NOMINAL_V[m.chemistry])
                for b in s.batteries
                for m in (config.models[b.model],)
            )
            for s in config.strings
        )
        self.charge_voltage_v = config.bank.charger_voltage_v or (
            nominal_cells * _DEFAULT_CHARGE_V_PER_CELL[_SIM_CHEMISTRY[family]]
        )
        self.silent: set[str] = set()
        # Serial links whose adapter is unplugged (the serial server closes their PTY).
        self.unplugged: set[str] = set()
        for fault in sim.faults:
            if fault.kind in ("unplug", "replug"):
                continue
            battery_model = config.models[
                next(b.model for _, b in config.batteries() if b.name == fault.battery)
            ]
            if fault.kind == "cutoff" and CHEMISTRY_FAMILY[battery_model.chemistry] == "lead-acid":
                raise ConfigError(
                    "<simulation>",
                    [f"simulation.faults: {fault.battery} is lead-acid: it has no BMS to cut off"],
                )
        self._faults: list[FaultConfig] = sorted(sim.faults, key=lambda f: f.at_s)
        self._next_fault = 0
        self.fault_log: list[tuple[float, FaultConfig]] = []

    # --- time -------------------------------------------------------------------------------

    @property
    def time_of_day_s(self) -> float:
        return self.start_of_day_s + self.elapsed_s

    def advance(self, seconds: float) -> None:
        """Run the bank forward, in physics steps of at most `step_s`, applying faults on time."""
        end = self.elapsed_s + seconds
        step = self.sim.step_s
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

    def apply(self, fault: FaultConfig) -> None:
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
            assert value is not None  # the config requires one for these kinds
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
            else:  # pragma: no cover - the config's Literal lists every kind
                raise AssertionError(f"unhandled fault kind {kind!r}")

    # --- the wire ---------------------------------------------------------------------------

    def broadcasts(self, at: float = 0.0) -> list[Broadcast]:
        """What every talking device sends now, by link."""
        out: list[Broadcast] = []
        for s in self.config.strings:
            for b in s.batteries:
                src = b.source
                if src is None or b.name in self.silent:
                    continue
                encode = _broadcaster(src.protocol)
                if encode is not None:
                    out.append(
                        Broadcast(src.link, b.name, encode(self.physics.reading(b.name, at)))
                    )
        src = self.config.bank.source
        encode = None if src is None else _broadcaster(src.protocol)
        if src is not None and encode is not None:
            out.append(Broadcast(src.link, "bank", encode(self.physics.bank_reading(at))))
        return out

    def can_links(self) -> dict[str, CanLinkConfig]:
        """The CAN links some simulated device talks on."""
        used = {b.source.link for _, b in self.config.batteries() if b.source is not None}
        if self.config.bank.source is not None:
            used.add(self.config.bank.source.link)
        return {
            name: link
            for name, link in self.config.links.items()
            if name in used and isinstance(link, CanLinkConfig)
        }

    def reading(self, name: str, at: float = 0.0) -> Reading:
        return self.physics.reading(name, at)
