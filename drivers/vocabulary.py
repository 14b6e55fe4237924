"""The one field vocabulary: every name a codec may emit, with its unit and meaning.

A Reading's JSON (`Reading.to_json`) is what `bankwatch decode` prints and what the MQTT and
InfluxDB sinks publish, so a name must mean the same quantity, in the same unit, whichever
protocol or transport it came from: `cell_voltage_max_id` is the same thing from Daly over UART,
Daly over CAN and JK-PB. The names are the Reading's fields (`READING_FIELDS`) plus the declared
`extra` keys (`EXTRA_KEYS`) for protocol facts with no canonical home; a codec that emits any
other name fails tests/unit/test_vocabulary.py.

Units live in the names (house style): the suffix says the unit (`_v` volts, `_a` amperes, `_c`
degrees Celsius, `_pct` percent, `_ah` ampere-hours, `_w` watts, `_kwh` kilowatt-hours, `_s`
seconds, `_us` microseconds). `_bits` are the raw bit words a BMS sends (for who needs a bit
the flags do not name), `_active` / `faults` the names of their set bits, comma-separated.

Adding a name: prefer a Reading field or an existing key; when a protocol has a quantity no
other has, add a row here (the test says which name is missing).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "EXTRA_KEYS",
    "READING_FIELDS",
    "VOCABULARY",
    "Term",
    "unknown_names",
]


@dataclass(frozen=True, slots=True)
class Term:
    name: str
    unit: str  # "" for counts, flags, text and raw bit words
    meaning: str


READING_FIELDS: tuple[Term, ...] = (
    Term("pack_voltage_v", "V", "voltage across the battery's terminals"),
    Term("current_a", "A", "battery current, positive when charging, whatever the wire's sign"),
    Term("power_w", "W", "pack_voltage_v x current_a (derived), positive when charging"),
    Term("soc_pct", "%", "state of charge"),
    Term("soh_pct", "%", "state of health"),
    Term("remaining_ah", "Ah", "charge left"),
    Term("full_charge_ah", "Ah", "charge when full, as the BMS has learned it"),
    Term("design_ah", "Ah", "nominal (design or configured) capacity"),
    Term("cycles", "", "charge/discharge cycle count"),
    Term("cell_voltages_v", "V", "every cell's voltage, cell 1 first"),
    Term("cell_voltage_min_v", "V", "lowest cell voltage"),
    Term("cell_voltage_max_v", "V", "highest cell voltage"),
    Term("temperatures_c", "°C", "every temperature sensor of the pack, in the BMS's order"),
    Term("cell_temperature_min_c", "°C", "lowest cell temperature"),
    Term("cell_temperature_max_c", "°C", "highest cell temperature"),
    Term("mosfet_temperature_c", "°C", "temperature of the BMS's switches"),
    Term("charge_voltage_limit_v", "V", "charge voltage the BMS asks the charger for"),
    Term("discharge_voltage_limit_v", "V", "lowest voltage the BMS allows discharging to"),
    Term("charge_current_limit_a", "A", "charge current allowed now (a magnitude)"),
    Term("discharge_current_limit_a", "A", "discharge current allowed now (a magnitude)"),
    Term("charge_enabled", "", "the charge switch is closed"),
    Term("discharge_enabled", "", "the discharge switch is closed"),
    Term("protections", "", "protections active: names of the Protection flags"),
    Term("alarms", "", "warnings active: names of the Alarm flags"),
    Term("modules_online", "", "modules a bank master reports present"),
    Term("modules_offline", "", "modules a bank master reports silent"),
    Term("modules_blocking_charge", "", "modules that forbid charging"),
    Term("modules_blocking_discharge", "", "modules that forbid discharging"),
    Term("cell_voltage_min_id", "", "which cell is the lowest (a number or a module#cell id)"),
    Term("cell_voltage_max_id", "", "which cell is the highest"),
    Term("cell_temperature_min_id", "", "which sensor reads the lowest temperature"),
    Term("cell_temperature_max_id", "", "which sensor reads the highest temperature"),
    Term("charged_energy_kwh", "kWh", "lifetime energy charged"),
    Term("discharged_energy_kwh", "kWh", "lifetime energy discharged"),
    Term("manufacturer", "", "maker, as the BMS names it"),
    Term("model", "", "model, as the BMS names it"),
    Term("serial", "", "serial number"),
    Term("firmware", "", "firmware version"),
)

_T = Term
EXTRA_KEYS: tuple[Term, ...] = (
    # --- live values ---
    _T("gathered_voltage_v", "V", "Daly 0x90: the second (gathered) pack voltage, often 0"),
    _T("cell_voltage_average_v", "V", "mean cell voltage as the BMS computes it"),
    _T("cell_voltage_delta_v", "V", "highest minus lowest cell voltage as the BMS computes it"),
    _T("cell_temperature_average_c", "°C", "mean cell temperature as the BMS computes it"),
    _T("ambient_temperature_c", "°C", "the BMS's ambient (environment) sensor"),
    _T("port_voltage_v", "V", "voltage at the pack's output port (Seplos v2)"),
    _T("bms_power_w", "W", "power as the BMS itself reports it (a magnitude on JK-PB)"),
    _T("balance_current_a", "A", "balancer current now"),
    _T("cycle_capacity_ah", "Ah", "charge counted over cycles"),
    _T("actual_capacity_ah", "Ah", "capacity the BMS has measured (JK-B 0xB9)"),
    _T("capacity_35f_ah", "Ah", "capacity in the CAN 0x35F frame"),
    _T("runtime_s", "s", "time the BMS has been running"),
    _T("power_on_count", "", "times the BMS has been powered on"),
    _T("bms_life", "", "Daly 0x93 BMS life counter (0-255)"),
    # --- states ---
    _T("state", "", "what the BMS says the pack does: stationary, charging or discharging"),
    _T("balancing", "", "the balancer is working on some cell now"),
    _T("balance_bits", "", "cells being balanced, bit 0 = cell 1"),
    _T("balance_state", "", "JK-PB balancer state byte"),
    _T("heater_on", "", "the pack's heater is on"),
    _T("current_limit_active", "", "the BMS is limiting current (Seplos v3)"),
    _T("hard_fault", "", "the BMS reports a hardware fault (Seplos v3)"),
    _T("charger_present", "", "the BMS sees a charger connected (plugged)"),
    _T("load_present", "", "the BMS sees a load connected"),
    _T("dio_bits", "", "Daly digital inputs (bits 0-3) and outputs (bits 4-7)"),
    _T("status_bits", "", "JK-B 0x8C status word"),
    _T("force_charge_request_1", "", "the BMS asks the inverter to charge (level 1)"),
    _T("force_charge_request_2", "", "the BMS asks the inverter to charge (level 2)"),
    _T("full_charge_request", "", "the BMS asks for a full charge (calibration)"),
    # --- alarm and protection detail (the flags say the rest) ---
    _T("alarm_bits", "", "the raw alarm/warning word the BMS sends"),
    _T("alarms_active", "", "names of the set alarm bits, comma-separated"),
    _T("protection_bits", "", "the raw protection word the BMS sends"),
    _T("protections_active", "", "names of the set protection bits, comma-separated"),
    _T("fault_bits", "", "Daly 0x98 failure bytes 0-6, hex"),
    _T("fault_code", "", "Daly 0x98 fault code byte"),
    _T("faults", "", "names of the set Daly failure bits, comma-separated"),
    _T("cell_error_bits", "", "cells the BMS reports in error, bit 0 = cell 1"),
    _T("balance_event_bits", "", "EG4 balance event bits"),
    _T("voltage_event_bits", "", "EG4 voltage event bits"),
    _T("temperature_event_bits", "", "EG4 temperature event bits"),
    _T("current_event_bits", "", "EG4 current event bits"),
    _T("remaining_capacity_bits", "", "EG4 remaining-capacity event bits"),
    _T("extension_hex", "", "JBD 0x03 bytes after the NTC list, hex"),
    *(
        _T(f"events_{what}", "", f"JBD count of {what.replace('_', ' ')} events")
        for what in (
            "cell_overvoltage",
            "cell_undervoltage",
            "pack_overvoltage",
            "pack_undervoltage",
            "charge_over_temperature",
            "charge_under_temperature",
            "discharge_over_temperature",
            "discharge_under_temperature",
            "charge_overcurrent",
            "discharge_overcurrent",
            "short_circuit",
        )
    ),
    _T("events_trailing_hex", "", "JBD event-count bytes past the known ones, hex"),
    # --- list assembly (a single frame's; merged readings drop them) ---
    _T("cell_frame", "", "Daly 0x95: the number of the frame these three cells came in"),
    _T("temperature_frame", "", "Daly 0x96: the number of the frame these sensors came in"),
    # --- identity ---
    _T("cell_count", "", "cells in series, as the BMS reports or is set for"),
    _T("cell_strings", "", "JK-B 0xA9: cell count setting"),
    _T("temperature_sensor_count", "", "temperature sensors the BMS reads"),
    _T("manufacturing_date", "", "date of manufacture, as the BMS gives it"),
    _T("hardware_version", "", "hardware version"),
    _T("protocol_version", "", "protocol version the BMS speaks (JK-B 0xC0)"),
    _T("device_name", "", "the name set in the BMS"),
    _T("device_address", "", "bus address set in the BMS"),
    _T("product_code", "", "product code of the CAN 0x35F frame"),
    _T("battery_type", "", "chemistry the BMS is set for (JK-B 0xAF, JK-PB status frame)"),
    _T("dedicated_charger", "", "JK-B dedicated-charger setting"),
    _T("current_calibration", "", "JK-B current calibration setting"),
    _T("calibration_active", "", "JK-B calibration in progress"),
    # --- settings: protection thresholds and switches, as set in the BMS ---
    _T("cell_ovp_v", "V", "cell overvoltage protection"),
    _T("cell_ovp_recovery_v", "V", "cell overvoltage recovery"),
    _T("cell_ovp_delay_s", "s", "cell overvoltage protection delay"),
    _T("cell_uvp_v", "V", "cell undervoltage protection"),
    _T("cell_uvp_recovery_v", "V", "cell undervoltage recovery"),
    _T("cell_uvp_delay_s", "s", "cell undervoltage protection delay"),
    _T("cell_difference_protection_v", "V", "cell voltage difference protection"),
    _T("cell_charge_v", "V", "cell charge (absorption) voltage"),
    _T("cell_float_v", "V", "cell float voltage"),
    _T("cell_power_off_v", "V", "cell voltage the BMS powers off at"),
    _T("cell_smart_sleep_v", "V", "cell voltage the BMS sleeps below"),
    _T("cell_soc0_v", "V", "cell voltage taken as 0 % SOC"),
    _T("cell_soc100_v", "V", "cell voltage taken as 100 % SOC"),
    _T("pack_ovp_v", "V", "pack overvoltage protection"),
    _T("pack_uvp_v", "V", "pack undervoltage protection"),
    _T("balance_start_v", "V", "cell voltage balancing may start at"),
    _T("balance_trigger_v", "V", "cell difference that starts balancing"),
    _T("balance_current_max_a", "A", "highest balancing current"),
    _T("balance_switch", "", "balancing allowed"),
    _T("charge_switch", "", "charging allowed (setting)"),
    _T("discharge_switch", "", "discharging allowed (setting)"),
    _T("charge_ocp_a", "A", "charge overcurrent protection"),
    _T("charge_ocp_delay_s", "s", "charge overcurrent protection delay"),
    _T("charge_ocp_recovery_s", "s", "charge overcurrent recovery time"),
    _T("discharge_ocp_a", "A", "discharge overcurrent protection"),
    _T("discharge_ocp_delay_s", "s", "discharge overcurrent protection delay"),
    _T("discharge_ocp_recovery_s", "s", "discharge overcurrent recovery time"),
    _T("scp_delay_us", "µs", "short-circuit protection delay"),
    _T("scp_recovery_s", "s", "short-circuit recovery time"),
    _T("charge_otp_c", "°C", "charge over-temperature protection"),
    _T("charge_otp_recovery_c", "°C", "charge over-temperature recovery"),
    _T("charge_utp_c", "°C", "charge under-temperature protection"),
    _T("charge_utp_recovery_c", "°C", "charge under-temperature recovery"),
    _T("discharge_otp_c", "°C", "discharge over-temperature protection"),
    _T("discharge_otp_recovery_c", "°C", "discharge over-temperature recovery"),
    _T("discharge_utp_c", "°C", "discharge under-temperature protection"),
    _T("discharge_utp_recovery_c", "°C", "discharge under-temperature recovery"),
    _T("mosfet_otp_c", "°C", "MOSFET over-temperature protection"),
    _T("mosfet_otp_recovery_c", "°C", "MOSFET over-temperature recovery"),
    _T("battery_otp_c", "°C", "battery over-temperature protection"),
    _T("battery_otp_recovery_c", "°C", "battery over-temperature recovery"),
    _T("temperature_difference_protection_c", "°C", "sensor temperature difference protection"),
    _T("sleep_wait_s", "s", "idle time before the BMS sleeps"),
    _T("low_soc_alarm_pct", "%", "SOC that raises the low-capacity alarm"),
    # Pylontech 0x47 system parameters (alarm and protection limits).
    _T("cell_high_voltage_limit_v", "V", "cell high-voltage alarm limit"),
    _T("cell_low_voltage_limit_v", "V", "cell low-voltage alarm limit"),
    _T("cell_under_voltage_limit_v", "V", "cell undervoltage protection limit"),
    _T("module_high_voltage_limit_v", "V", "module high-voltage alarm limit"),
    _T("module_low_voltage_limit_v", "V", "module low-voltage alarm limit"),
    _T("module_under_voltage_limit_v", "V", "module undervoltage protection limit"),
    _T("charge_high_temperature_limit_c", "°C", "charge high-temperature limit"),
    _T("charge_low_temperature_limit_c", "°C", "charge low-temperature limit"),
    _T("discharge_high_temperature_limit_c", "°C", "discharge high-temperature limit"),
    _T("discharge_low_temperature_limit_c", "°C", "discharge low-temperature limit"),
    _T("max_charge_current_a", "A", "configured highest charge current"),
    _T("max_discharge_current_a", "A", "configured highest discharge current"),
    # --- battery monitors (VE.Direct: SmartShunt, BMV) ---
    _T("consumed_ah", "Ah", "charge taken out since the monitor was last full (negative)"),
    _T("time_to_go_s", "s", "time until empty at the present discharge current"),
    _T("starter_voltage_v", "V", "the monitor's second input: a starter battery's voltage"),
    _T("midpoint_voltage_v", "V", "voltage at the bank's midpoint (upper half against lower)"),
    _T("midpoint_deviation_pct", "%", "how far the midpoint is from half the bank voltage"),
    _T("alarm_condition", "", "the monitor's alarm is on (its buzzer or relay may act)"),
    _T("relay_on", "", "the monitor's relay is closed"),
    _T("monitor_mode", "", "VE.Direct MON: what the monitor is set to measure"),
    _T("product_id", "", "VE.Direct product id (PID), hex"),
    _T("deepest_discharge_ah", "Ah", "deepest discharge recorded (negative)"),
    _T("last_discharge_ah", "Ah", "depth of the last discharge (negative)"),
    _T("average_discharge_ah", "Ah", "average depth of discharge (negative)"),
    _T("full_discharges", "", "number of full discharges recorded"),
    _T("cumulative_drawn_ah", "Ah", "all charge ever drawn (negative)"),
    _T("lowest_voltage_v", "V", "lowest battery voltage recorded"),
    _T("highest_voltage_v", "V", "highest battery voltage recorded"),
    _T("lowest_starter_voltage_v", "V", "lowest starter-battery voltage recorded"),
    _T("highest_starter_voltage_v", "V", "highest starter-battery voltage recorded"),
    _T("since_full_charge_s", "s", "time since the last full charge"),
    _T("automatic_syncs", "", "times the monitor synchronised itself to full"),
    _T("low_voltage_alarms", "", "low-voltage alarms recorded"),
    _T("high_voltage_alarms", "", "high-voltage alarms recorded"),
    # --- Renogy smart batteries ---
    _T("bms_board_temperature_c", "°C", "the BMS board's own sensor"),
    _T("using_battery_power", "", "the BMS runs from the battery (Renogy status 1)"),
    _T("fully_charged", "", "the BMS reports the pack full"),
    # --- JK-PB status frame beyond the official table ---
    _T("mosfet_2_temperature_c", "°C", "the second MOSFET sensor (JK-PB payload 254)"),
    _T("heating_current_a", "A", "current the pack's heater draws"),
    _T("charge_stage", "", "the charger stage the BMS is in: bulk, absorption or float"),
    _T("charge_stage_elapsed_s", "s", "time spent in the present charge stage"),
    # --- bank masters (Seplos v3 EIA/EIB) ---
    _T("discharged_capacity_ah", "Ah", "all charge ever discharged, as the BMS counts it"),
    _T("packs_online_bits", "", "packs the master hears, bit 0 = pack 1"),
    _T("packs_protected_bits", "", "packs in protection, bit 0 = pack 1"),
    _T("suggested_pack_ov_v", "V", "pack overvoltage the master suggests to the charger"),
    _T("suggested_pack_uv_v", "V", "pack undervoltage the master suggests to the inverter"),
    _T("pack_voltage_max_v", "V", "highest pack voltage in the bank"),
    _T("pack_voltage_min_v", "V", "lowest pack voltage in the bank"),
    _T("pack_voltage_max_id", "", "which pack has the highest voltage"),
    _T("pack_voltage_min_id", "", "which pack has the lowest voltage"),
)

VOCABULARY: dict[str, Term] = {t.name: t for t in (*READING_FIELDS, *EXTRA_KEYS)}


def unknown_names(names: Iterable[str]) -> list[str]:
    """The names in `names` the vocabulary does not declare, sorted."""
    return sorted({n for n in names if n not in VOCABULARY})
