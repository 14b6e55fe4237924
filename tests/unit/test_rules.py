"""Wiring rules: each one fires on the mistake it is about, stays quiet on a correct bank, and
names the string or batteries at fault with a one-sentence reason."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bankwatch.daemon.config import Config, parse_config
from bankwatch.daemon.rules import RULES, Finding, check_bank
from bankwatch.daemon.topology import Topology

# --- building configs ----------------------------------------------------------------------------

MODELS: dict[str, dict[str, Any]] = {
    "lfp100": {"capacity_ah": 100, "nominal_voltage_v": 12.8, "chemistry": "lifepo4"},
    "lfp200": {"capacity_ah": 200, "nominal_voltage_v": 12.8, "chemistry": "lifepo4"},
    "other100": {"capacity_ah": 100, "nominal_voltage_v": 12.8, "chemistry": "lifepo4"},
    "agm100": {"capacity_ah": 100, "nominal_voltage_v": 12, "chemistry": "agm"},
    "flooded100": {"capacity_ah": 100, "nominal_voltage_v": 12, "chemistry": "flooded"},
    "lfp135": {"capacity_ah": 100, "nominal_voltage_v": 13.5, "chemistry": "lifepo4"},
    "lfp4s": {
        "capacity_ah": 100,
        "nominal_voltage_v": 12.8,
        "chemistry": "lifepo4",
        "max_series": 4,
        "max_parallel": 4,
    },
}


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v + '"'
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def _table(header: str, values: Mapping[str, Any]) -> list[str]:
    return [header, *(f"{k} = {_value(v)}" for k, v in values.items()), ""]


def make_config(
    strings: Sequence[Sequence[str]],
    *,
    chemistry: str = "lifepo4",
    nominal_voltage_v: float | None = None,
    charger_voltage_v: float | None = None,
    inverter_voltage_v: float | None = None,
    links: Sequence[str] = (),
    sources: Mapping[str, str] | None = None,
) -> Config:
    """Strings S1..Sn of batteries S<i>B<j>, each row a list of model names from MODELS.

    The bank's declared voltage defaults to what its first string adds up to. `sources` maps a
    battery name to the CAN link its pylontech-can broadcast arrives on.
    """
    sources = sources or {}
    if nominal_voltage_v is None:
        nominal_voltage_v = sum(MODELS[m]["nominal_voltage_v"] for m in strings[0])
    bank: dict[str, Any] = {
        "name": "bank",
        "chemistry": chemistry,
        "nominal_voltage_v": nominal_voltage_v,
    }
    if charger_voltage_v is not None:
        bank["charger_voltage_v"] = charger_voltage_v
    if inverter_voltage_v is not None:
        bank["inverter_voltage_v"] = inverter_voltage_v
    lines = _table("[bank]", bank)
    for name in sorted({m for row in strings for m in row}):
        lines += _table(f"[models.{name}]", MODELS[name])
    for link in links:
        lines += _table(f"[links.{link}]", {"type": "can", "channel": link})
    for si, row in enumerate(strings, 1):
        lines += ["[[strings]]", f'name = "S{si}"', "batteries = ["]
        for bi, model in enumerate(row, 1):
            battery: dict[str, Any] = {"name": f"S{si}B{bi}", "model": model}
            if battery["name"] in sources:
                battery["source"] = {
                    "link": sources[battery["name"]],
                    "protocol": "pylontech-can",
                }
            lines.append(f"  {_value(battery)},")
        lines += ["]", ""]
    return parse_config("\n".join(lines), "rules.toml")


def findings(config: Config, rule: str | None = None) -> list[Finding]:
    found = check_bank(config)
    return [f for f in found if rule is None or f.rule == rule]


def only(config: Config, rule: str) -> Finding:
    found = findings(config, rule)
    assert len(found) == 1, found
    return found[0]


def assert_well_formed(f: Finding) -> None:
    assert f.severity in ("error", "warning", "info")
    assert f.subject
    assert f.message.strip()
    why = f.why.strip()
    assert why, f
    assert why[0].isupper() and why.endswith("."), why
    # One sentence: a full stop only at the end.
    assert ". " not in why and why.count(".") == 1, why


def _four(model: str = "lfp100") -> list[str]:
    return [model] * 4


# --- a correct bank -------------------------------------------------------------------------------


def test_correct_bank_has_no_findings() -> None:
    config = make_config(
        [_four(), _four()],
        nominal_voltage_v=48,
        charger_voltage_v=56.8,
        inverter_voltage_v=48,
        links=[f"can{i}" for i in range(8)],
        sources={f"S{s}B{b}": f"can{(s - 1) * 4 + b - 1}" for s in (1, 2) for b in range(1, 5)},
    )
    assert findings(config) == []


def test_every_rule_is_registered() -> None:
    names = {r.__name__ for r in RULES}
    for name in (
        "rule_mixed_chemistry",
        "rule_series_unequal_capacity",
        "rule_parallel_unequal_strings",
        "rule_maker_limits",
        "rule_charger_inverter_voltage",
        "rule_duplicate_addresses",
        "rule_point_to_point",
        "rule_nominal_voltages",
        "rule_unmonitored",
    ):
        assert name in names


# --- point to point ------------------------------------------------------------------------------


_SHUNT_BANK = """
[bank]
name = "rv"
chemistry = "lifepo4"
nominal_voltage_v = 12
source = {{ link = "{shunt_link}", protocol = "ve-direct" }}
[models.m]
capacity_ah = 100
nominal_voltage_v = 12.8
chemistry = "lifepo4"
[links.usb-shunt]
type = "serial"
port = "/dev/ttyUSB0"
baud = 19200
[links.rs485]
type = "serial"
port = "/dev/ttyUSB1"
[[strings]]
name = "P1"
[[strings.batteries]]
name = "house1"
model = "m"
source = {{ link = "rs485", protocol = "modbus-map", map = "renogy-smart-lfp", address = 48 }}
"""


def test_a_shunt_sharing_a_link_with_a_polled_battery_is_an_error() -> None:
    config = parse_config(_SHUNT_BANK.format(shunt_link="rs485"))
    f = only(config, "point_to_point")
    assert f.severity == "error" and "the bank source of rv" in f.message
    assert "house1" in f.message and "rs485" in f.message
    assert_well_formed(f)
    assert (
        findings(parse_config(_SHUNT_BANK.format(shunt_link="usb-shunt")), "point_to_point") == []
    )


# --- mixed chemistry ------------------------------------------------------------------------------


def test_mixed_chemistry_lifepo4_with_agm_is_an_error() -> None:
    config = make_config([["lfp100"], ["agm100"]], nominal_voltage_v=12.8)
    f = only(config, "mixed_chemistry")
    assert f.severity == "error"
    assert f.subject == "bank"
    assert "S2B1" in f.message and "agm" in f.message
    assert "S1B1" not in f.message
    assert_well_formed(f)


def test_mixed_chemistry_in_series_is_an_error() -> None:
    config = make_config([["lfp100", "agm100"]], nominal_voltage_v=24.8)
    f = only(config, "mixed_chemistry")
    assert f.severity == "error"
    assert "S1B2" in f.message


def test_batteries_of_another_chemistry_than_the_bank() -> None:
    config = make_config([["agm100"], ["agm100"]], chemistry="lifepo4", nominal_voltage_v=12)
    f = only(config, "mixed_chemistry")
    assert f.severity == "error"
    assert "S1B1" in f.message and "S2B1" in f.message


def test_agm_with_flooded_is_a_warning() -> None:
    config = make_config([["agm100"], ["flooded100"]], chemistry="agm")
    f = only(config, "mixed_chemistry")
    assert f.severity == "warning"
    assert f.subject == "bank"
    assert "agm" in f.message and "flooded" in f.message
    assert_well_formed(f)


@pytest.mark.parametrize(
    ("rows", "chemistry"),
    [
        ([["lfp100"], ["lfp200"], ["other100"]], "lifepo4"),
        ([_four()], "lifepo4"),
        ([["agm100", "agm100"]], "agm"),
    ],
)
def test_one_chemistry_has_no_mixed_chemistry_finding(
    rows: list[list[str]], chemistry: str
) -> None:
    assert findings(make_config(rows, chemistry=chemistry), "mixed_chemistry") == []


# --- series strings -------------------------------------------------------------------------------


def test_series_unequal_capacity_is_an_error() -> None:
    config = make_config([["lfp100", "lfp200", "lfp100", "lfp100"]], nominal_voltage_v=48)
    f = only(config, "series_unequal_capacity")
    assert f.severity == "error"
    assert f.subject == "bank/S1"
    assert "S1" in f.message
    assert "S1B1 100 Ah" in f.message and "S1B2 200 Ah" in f.message
    assert_well_formed(f)
    # Unequal capacity is the error; mixed models is not reported on top of it.
    assert findings(config, "series_mixed_models") == []


def test_series_unequal_capacity_names_only_the_bad_string() -> None:
    config = make_config([_four(), ["lfp100", "lfp100", "lfp100", "lfp200"]], nominal_voltage_v=48)
    f = only(config, "series_unequal_capacity")
    assert f.subject == "bank/S2"
    assert "S2B4 200 Ah" in f.message
    assert "S1B1" not in f.message


def test_series_equal_capacity_has_no_finding() -> None:
    config = make_config([_four(), _four()], nominal_voltage_v=48)
    assert findings(config, "series_unequal_capacity") == []
    assert findings(config, "series_mixed_models") == []


def test_series_mixed_models_is_a_warning() -> None:
    config = make_config([["lfp100", "other100"]], nominal_voltage_v=24)
    f = only(config, "series_mixed_models")
    assert f.severity == "warning"
    assert f.subject == "bank/S1"
    assert "lfp100" in f.message and "other100" in f.message
    assert_well_formed(f)
    assert findings(config, "series_unequal_capacity") == []


def test_different_models_in_different_parallel_strings_is_not_series_mixing() -> None:
    config = make_config([["lfp100"], ["other100"]], nominal_voltage_v=12)
    assert findings(config, "series_mixed_models") == []


# --- parallel strings -----------------------------------------------------------------------------


def test_parallel_strings_of_different_series_count_is_an_error() -> None:
    config = make_config([_four(), ["lfp100"] * 3], nominal_voltage_v=48)
    f = only(config, "parallel_unequal_strings")
    assert f.severity == "error"
    assert f.subject == "bank"
    assert "S1 4 in series" in f.message and "S2 3 in series" in f.message
    assert "51.2 V" in f.message and "38.4 V" in f.message
    assert_well_formed(f)


def test_parallel_strings_of_different_capacity_is_a_warning() -> None:
    config = make_config([_four(), _four("lfp200")], nominal_voltage_v=48)
    f = only(config, "parallel_unequal_strings")
    assert f.severity == "warning"
    assert "S1 100 Ah" in f.message and "S2 200 Ah" in f.message
    assert_well_formed(f)


@pytest.mark.parametrize("parallel", [1, 2, 3])
def test_identical_parallel_strings_have_no_finding(parallel: int) -> None:
    config = make_config([_four()] * parallel, nominal_voltage_v=48)
    assert findings(config, "parallel_unequal_strings") == []


def test_parallel_single_batteries_of_different_model_but_same_capacity() -> None:
    config = make_config([["lfp100"], ["other100"]], nominal_voltage_v=12)
    assert findings(config, "parallel_unequal_strings") == []


# --- the maker's limits ---------------------------------------------------------------------------


def test_at_max_series_is_fine() -> None:
    config = make_config([_four("lfp4s")], nominal_voltage_v=48)
    assert findings(config, "exceeds_max_series") == []


def test_above_max_series_is_an_error() -> None:
    config = make_config([["lfp4s"] * 5], nominal_voltage_v=64)
    f = only(config, "exceeds_max_series")
    assert f.severity == "error"
    assert f.subject == "bank/S1"
    assert "5 in series" in f.message
    assert "lfp4s" in f.message and "at most 4" in f.message
    assert_well_formed(f)


def test_at_max_parallel_is_fine() -> None:
    config = make_config([["lfp4s"]] * 4, nominal_voltage_v=12.8)
    assert findings(config, "exceeds_max_parallel") == []


def test_above_max_parallel_is_an_error_reported_once() -> None:
    config = make_config([["lfp4s"]] * 5, nominal_voltage_v=12.8)
    f = only(config, "exceeds_max_parallel")
    assert f.severity == "error"
    assert f.subject == "bank"
    assert "5 strings" in f.message
    assert "lfp4s" in f.message and "at most 4" in f.message
    assert_well_formed(f)


def test_no_limits_no_findings() -> None:
    config = make_config([["lfp100"] * 6] * 6, nominal_voltage_v=76.8)
    assert findings(config, "exceeds_max_series") == []
    assert findings(config, "exceeds_max_parallel") == []


# --- charger and inverter -------------------------------------------------------------------------


def _48v(**kwargs: Any) -> Config:
    return make_config([_four(), _four()], nominal_voltage_v=48, **kwargs)


def test_24v_charger_on_48v_bank_is_an_error() -> None:
    f = only(_48v(charger_voltage_v=28.8), "charger_voltage")
    assert f.severity == "error"
    assert f.subject == "bank"
    assert "28.8 V" in f.message and "51.2 V" in f.message
    assert_well_formed(f)


def test_charger_above_the_cells_limit_is_an_error() -> None:
    # 16 LFP cells × 3.65 V = 58.4 V.
    f = only(_48v(charger_voltage_v=60), "charger_voltage")
    assert f.severity == "error"
    assert "60 V" in f.message and "58.4" in f.message and "16" in f.message
    assert_well_formed(f)


def test_charger_slightly_low_is_a_warning() -> None:
    # Below 16 × 3.40 = 54.4 V the bank never fills.
    f = only(_48v(charger_voltage_v=54.0), "charger_voltage")
    assert f.severity == "warning"
    assert "54 V" in f.message and "54.4" in f.message
    assert_well_formed(f)


@pytest.mark.parametrize("volts", [54.4, 55.2, 56.8, 57.6, 58.4])
def test_charger_in_range_has_no_finding(volts: float) -> None:
    assert findings(_48v(charger_voltage_v=volts), "charger_voltage") == []


@settings(max_examples=40, deadline=None)
@given(volts=st.floats(10, 100))
def test_charger_finding_matches_the_window(volts: float) -> None:
    found = findings(_48v(charger_voltage_v=volts), "charger_voltage")
    if 54.4 <= volts <= 58.4:
        assert found == []
    elif volts > 58.4 or volts < 54.4 * 0.85:
        # Above the cells' limit, or a charger for another system voltage.
        assert [f.severity for f in found] == ["error"]
    else:
        assert [f.severity for f in found] == ["warning"]


def test_charger_for_12v_lfp_bank() -> None:
    rv = make_config([["lfp100"]] * 4, nominal_voltage_v=12, charger_voltage_v=14.2)
    assert findings(rv, "charger_voltage") == []
    rv_on_24 = make_config([["lfp100"]] * 4, nominal_voltage_v=12, charger_voltage_v=28.4)
    assert only(rv_on_24, "charger_voltage").severity == "error"


def test_24v_inverter_on_48v_bank_is_an_error() -> None:
    f = only(_48v(inverter_voltage_v=24), "inverter_voltage")
    assert f.severity == "error"
    assert f.subject == "bank"
    assert "24 V" in f.message and "51.2 V" in f.message and "48 V system" in f.message
    assert_well_formed(f)


def test_48v_inverter_on_51v_nominal_bank_is_fine() -> None:
    assert findings(_48v(inverter_voltage_v=48), "inverter_voltage") == []


def test_12v_inverter_on_24v_bank_is_an_error() -> None:
    config = make_config([["lfp100", "lfp100"]], inverter_voltage_v=12)
    assert only(config, "inverter_voltage").severity == "error"


def test_no_charger_or_inverter_declared_no_findings() -> None:
    config = _48v()
    assert findings(config, "charger_voltage") == []
    assert findings(config, "inverter_voltage") == []


# --- duplicate addresses --------------------------------------------------------------------------


def test_two_broadcasting_batteries_on_one_can_link_is_an_error() -> None:
    config = make_config(
        [["lfp100", "lfp100"]], links=["can0"], sources={"S1B1": "can0", "S1B2": "can0"}
    )
    f = only(config, "duplicate_address")
    assert f.severity == "error"
    assert "S1B1" in f.message and "S1B2" in f.message
    assert "can0" in f.message
    assert_well_formed(f)


def test_broadcasting_batteries_on_different_links_are_fine() -> None:
    config = make_config(
        [["lfp100", "lfp100"]], links=["can0", "can1"], sources={"S1B1": "can0", "S1B2": "can1"}
    )
    assert findings(config, "duplicate_address") == []


def test_three_on_one_link_one_finding_naming_all() -> None:
    config = make_config(
        [["lfp100"]] * 3,
        nominal_voltage_v=12.8,
        links=["can0"],
        sources={"S1B1": "can0", "S2B1": "can0", "S3B1": "can0"},
    )
    f = only(config, "duplicate_address")
    for name in ("S1B1", "S2B1", "S3B1"):
        assert name in f.message


# --- nominal voltage ------------------------------------------------------------------------------


def test_string_not_adding_up_to_the_bank_voltage_is_an_error() -> None:
    config = make_config([["lfp100"] * 3], nominal_voltage_v=48)
    f = only(config, "nominal_voltage")
    assert f.severity == "error"
    assert f.subject == "bank/S1"
    assert "12.8 + 12.8 + 12.8 = 38.4 V" in f.message
    assert "48 V" in f.message
    assert_well_formed(f)


def test_only_the_short_string_is_named() -> None:
    config = make_config([_four(), ["lfp100"] * 3], nominal_voltage_v=48)
    f = only(config, "nominal_voltage")
    assert f.subject == "bank/S2"
    assert "string S2" in f.message


@pytest.mark.parametrize(
    ("rows", "declared"),
    [
        ([_four()], 48),  # 51.2 V is a "48 V" LFP bank
        ([_four(), _four()], 48),
        ([["lfp100", "lfp100"]], 24),
        ([["lfp100"]] * 4, 12),
        ([["agm100"] * 2], 24),
    ],
)
def test_strings_that_add_up_have_no_finding(rows: list[list[str]], declared: float) -> None:
    chemistry = "agm" if rows[0][0].startswith("agm") else "lifepo4"
    config = make_config(rows, nominal_voltage_v=declared, chemistry=chemistry)
    assert findings(config, "nominal_voltage") == []


def test_model_voltage_that_is_no_whole_number_of_cells_is_a_warning() -> None:
    config = make_config([["lfp135"]], nominal_voltage_v=13.5)
    f = only(config, "nominal_voltage")
    assert f.severity == "warning"
    assert f.subject == "bank/S1/S1B1"
    assert "lfp135" in f.message and "13.5" in f.message and "3.2" in f.message
    assert_well_formed(f)


# --- unmonitored ----------------------------------------------------------------------------------


def test_unmonitored_batteries_are_info() -> None:
    config = make_config([["lfp100", "lfp100"]], links=["can0"], sources={"S1B1": "can0"})
    f = only(config, "unmonitored")
    assert f.severity == "info"
    assert f.subject == "bank"
    assert "S1B2" in f.message and "S1B1" not in f.message
    assert_well_formed(f)


def test_all_monitored_no_info() -> None:
    config = make_config(
        [["lfp100", "lfp100"]], links=["can0", "can1"], sources={"S1B1": "can0", "S1B2": "can1"}
    )
    assert findings(config, "unmonitored") == []


# --- every finding, together ---------------------------------------------------------------------


def test_a_badly_wired_bank_gets_every_finding_errors_first() -> None:
    config = make_config(
        [
            ["lfp4s"] * 5,  # too many in series; 64 V, the bank's highest string
            ["lfp4s", "agm100", "lfp200", "lfp4s"],  # lead-acid, and a bigger battery
            *[["lfp4s"] * 4] * 3,  # five strings: too many in parallel
        ],
        nominal_voltage_v=48,
        charger_voltage_v=40,
        inverter_voltage_v=24,
        links=["can0"],
        sources={"S1B1": "can0", "S1B2": "can0"},
    )
    found = check_bank(config, Topology(config))
    rules = {f.rule for f in found}
    for rule in (
        "mixed_chemistry",
        "series_unequal_capacity",
        "parallel_unequal_strings",
        "exceeds_max_series",
        "exceeds_max_parallel",
        "charger_voltage",
        "inverter_voltage",
        "duplicate_address",
        "nominal_voltage",
        "unmonitored",
    ):
        assert rule in rules, rule
    order = {"error": 0, "warning": 1, "info": 2}
    ranks = [order[f.severity] for f in found]
    assert ranks == sorted(ranks)
    for f in found:
        assert_well_formed(f)
