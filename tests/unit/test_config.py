"""Config errors: every kind a user can make names the file, the key path and, where the code
can find it, the line; all problems come at once; the CLI shows them without a traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bankwatch.daemon.cli import main
from bankwatch.daemon.config import Config, load_config, parse_config
from bankwatch.drivers.errors import ConfigError

FILE = "bank.toml"

# A valid 24 V bank: two batteries in series, one on CAN, one without a source, and an unused
# serial link. Each test breaks one thing with a textual replacement.
BASE = """\
[bank]
name = "cabin"
chemistry = "lifepo4"
nominal_voltage_v = 24

[models.lfp12]
capacity_ah = 100
nominal_voltage_v = 12.8
chemistry = "lifepo4"

[links.can0]
type = "can"
interface = "socketcan"
channel = "can0"

[links.rs485]
type = "serial"
port = "/dev/ttyUSB0"

[[strings]]
name = "S"
batteries = [
  { name = "b1", model = "lfp12", source = { link = "can0", protocol = "pylontech-can" } },
  { name = "b2", model = "lfp12" },
]
"""


def edit(old: str, new: str, text: str = BASE) -> str:
    """Replace exactly one occurrence, so a test cannot silently edit nothing."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def line_of(text: str, snippet: str) -> int:
    """1-based number of the one line containing `snippet`."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if snippet in line]
    assert len(hits) == 1, f"{snippet!r} on lines {hits}"
    return hits[0]


def problems_of(text: str, source: str = FILE) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source)
    err = info.value
    assert err.path == source
    assert err.problems, "a ConfigError must carry at least one problem"
    # The message a user sees names the file first, then every problem.
    shown = str(err)
    assert shown.startswith(f"{source}:")
    for p in err.problems:
        assert p in shown
    return err.problems


def one_problem(text: str, source: str = FILE) -> str:
    problems = problems_of(text, source)
    assert len(problems) == 1, problems
    return problems[0]


# --- the base is valid ---------------------------------------------------------------------------


def test_base_config_is_valid() -> None:
    config = parse_config(BASE, FILE)
    assert isinstance(config, Config)
    assert [b.name for _, b in config.batteries()] == ["b1", "b2"]
    assert config.links["can0"].type == "can"
    assert config.links["rs485"].type == "serial"


# --- TOML syntax ---------------------------------------------------------------------------------


def test_unparseable_toml_names_file_line_and_column() -> None:
    text = BASE + "\n[detect\nlink_lost_after_s = 5\n"
    problem = one_problem(text)
    assert "not valid TOML" in problem
    bad_line = line_of(text, "[detect")
    m = re.search(r"line (\d+), column (\d+)", problem)
    assert m, problem
    assert int(m.group(1)) == bad_line


def test_duplicate_toml_key_is_a_toml_error() -> None:
    text = edit("nominal_voltage_v = 24\n", "nominal_voltage_v = 24\nnominal_voltage_v = 48\n")
    problem = one_problem(text)
    assert "not valid TOML" in problem
    assert f"line {line_of(text, 'nominal_voltage_v = 48')}" in problem


# --- unknown keys at several depths --------------------------------------------------------------


def test_unknown_key_in_model() -> None:
    text = edit("capacity_ah = 100", "capacity_a = 100")
    problems = problems_of(text)
    unknown = [p for p in problems if "models.lfp12.capacity_a:" in p]
    assert len(unknown) == 1, problems
    assert "unknown key" in unknown[0]
    assert unknown[0].startswith(f"line {line_of(text, 'capacity_a =')}:")
    # The key it was meant to be is now missing: reported too, at its path.
    assert any("models.lfp12.capacity_ah:" in p and "missing" in p for p in problems), problems


def test_unknown_key_in_bank() -> None:
    text = edit('name = "cabin"\nchemistry', 'name = "cabin"\nchemistri')
    problems = problems_of(text)
    unknown = [p for p in problems if "bank.chemistri:" in p]
    assert len(unknown) == 1, problems
    assert "unknown key" in unknown[0]
    assert unknown[0].startswith(f"line {line_of(text, 'chemistri')}:")


def test_unknown_key_in_battery_inline_table() -> None:
    text = edit('{ name = "b2", model = "lfp12" }', '{ name = "b2", model = "lfp12", modle = 1 }')
    problem = one_problem(text)
    assert "strings[0].batteries[1].modle" in problem
    assert "unknown key" in problem
    assert problem.startswith(f"line {line_of(text, 'modle')}:")


def test_unknown_key_in_battery_source() -> None:
    text = edit('protocol = "pylontech-can" }', 'protocol = "pylontech-can", adress = 2 }')
    problem = one_problem(text)
    assert "strings[0].batteries[0].source.adress" in problem
    assert "unknown key" in problem


def test_unknown_top_level_section() -> None:
    problem = one_problem(BASE + "\n[detekt]\nlink_lost_after_s = 5\n")
    assert "detekt" in problem
    assert "unknown key" in problem


# --- wrong types and out-of-range values ---------------------------------------------------------


@pytest.mark.parametrize("value", ['"lots"', '"100"', "true", "[100]"])
def test_capacity_of_wrong_type(value: str) -> None:
    # TOML is typed: a string (even a numeric one), a boolean or a list is not a capacity.
    text = edit("capacity_ah = 100", f"capacity_ah = {value}")
    problem = one_problem(text)
    assert "models.lfp12.capacity_ah" in problem
    assert problem.startswith(f"line {line_of(text, 'capacity_ah')}:")


@pytest.mark.parametrize("value", ["-5", "0", "-0.1"])
def test_capacity_must_be_positive(value: str) -> None:
    text = edit("capacity_ah = 100", f"capacity_ah = {value}")
    problem = one_problem(text)
    assert "models.lfp12.capacity_ah" in problem
    assert "greater than 0" in problem
    assert value in problem
    assert problem.startswith(f"line {line_of(text, 'capacity_ah')}:")


@pytest.mark.parametrize("bitrate", [5, 9_999, 1_000_001, 2_000_000])
def test_bitrate_out_of_range(bitrate: int) -> None:
    text = edit('channel = "can0"', f'channel = "can0"\nbitrate = {bitrate}')
    problem = one_problem(text)
    assert "links.can0.bitrate" in problem
    assert str(bitrate) in problem
    assert problem.startswith(f"line {line_of(text, 'bitrate')}:")


@pytest.mark.parametrize("bitrate", [10_000, 125_000, 500_000, 1_000_000])
def test_bitrate_in_range_is_accepted(bitrate: int) -> None:
    text = edit('channel = "can0"', f'channel = "can0"\nbitrate = {bitrate}')
    link = parse_config(text, FILE).links["can0"]
    assert link.type == "can"
    assert link.bitrate == bitrate


def test_unknown_chemistry_lists_the_known_ones() -> None:
    text = edit('name = "cabin"\nchemistry = "lifepo4"', 'name = "cabin"\nchemistry = "lipo"')
    problem = one_problem(text)
    assert "bank.chemistry" in problem
    assert "lifepo4" in problem and "agm" in problem


def test_unknown_link_type() -> None:
    text = edit('type = "serial"', 'type = "lin"')
    problem = one_problem(text)
    assert "links.rs485" in problem
    assert '"can" or "serial"' in problem
    assert problem.startswith(f"line {line_of(text, '[links.rs485]')}:")


def test_link_without_type() -> None:
    text = edit('type = "serial"\n', "")
    problem = one_problem(text)
    assert "links.rs485" in problem
    assert "type" in problem


def test_invalid_battery_name() -> None:
    problem = one_problem(edit('name = "b2"', 'name = "b 2"'))
    assert "strings[0].batteries[1].name" in problem


# --- references between sections -----------------------------------------------------------------


def test_battery_on_unknown_link_lists_the_links() -> None:
    problem = one_problem(edit('link = "can0"', 'link = "can7"'))
    assert "strings[0].batteries[0].source.link" in problem
    assert "'can7'" in problem
    assert "can0" in problem and "rs485" in problem


def test_battery_on_a_link_when_none_are_defined() -> None:
    text = edit('[links.can0]\ntype = "can"\ninterface = "socketcan"\nchannel = "can0"\n', "")
    text = edit('[links.rs485]\ntype = "serial"\nport = "/dev/ttyUSB0"\n', "", text)
    problem = one_problem(text)
    assert "strings[0].batteries[0].source.link" in problem
    assert "none are defined" in problem


def test_bank_source_on_unknown_link() -> None:
    text = edit(
        "nominal_voltage_v = 24\n",
        'nominal_voltage_v = 24\nsource = { link = "can9", protocol = "pylontech-can" }\n',
    )
    problem = one_problem(text)
    assert "bank.source.link" in problem
    assert "'can9'" in problem
    assert "can0" in problem


def test_unknown_model_lists_the_models() -> None:
    problem = one_problem(
        edit('{ name = "b2", model = "lfp12" }', '{ name = "b2", model = "lf12" }')
    )
    assert "strings[0].batteries[1].model" in problem
    assert "'lf12'" in problem
    assert "lfp12" in problem


def test_unknown_protocol_lists_the_known_ones() -> None:
    problem = one_problem(edit('protocol = "pylontech-can"', 'protocol = "daly-canbus"'))
    assert "strings[0].batteries[0].source.protocol" in problem
    assert "'daly-canbus'" in problem
    assert "pylontech-can" in problem


def test_can_protocol_on_a_serial_link() -> None:
    problem = one_problem(edit('link = "can0"', 'link = "rs485"'))
    assert "strings[0].batteries[0].source" in problem
    assert "pylontech-can" in problem
    assert "rs485" in problem
    assert "serial" in problem


def test_duplicate_battery_names() -> None:
    problem = one_problem(edit('name = "b2"', 'name = "b1"'))
    assert "strings[0].batteries[1].name" in problem
    assert "'b1'" in problem
    assert "twice" in problem


def test_duplicate_battery_names_across_strings() -> None:
    text = BASE + '\n[[strings]]\nname = "T"\nbatteries = [{ name = "b2", model = "lfp12" }]\n'
    problem = one_problem(text)
    assert "strings[1].batteries[0].name" in problem
    assert "'b2'" in problem


def test_duplicate_string_names() -> None:
    text = BASE + '\n[[strings]]\nname = "S"\nbatteries = [{ name = "b3", model = "lfp12" }]\n'
    problem = one_problem(text)
    assert "strings[1].name" in problem
    assert "'S'" in problem


def test_string_without_batteries() -> None:
    text = BASE + '\n[[strings]]\nname = "T"\nbatteries = []\n'
    problem = one_problem(text)
    assert "strings[1].batteries" in problem


@pytest.mark.parametrize(
    ("extra", "missing"),
    [("", "host"), ('host = "pi.local"', "port"), ("port = 29536", "host")],
)
def test_socketcand_link_needs_host_and_port(extra: str, missing: str) -> None:
    text = edit('interface = "socketcan"', f'interface = "socketcand"\n{extra}')
    problem = one_problem(text)
    assert "links.can0" in problem
    assert "socketcand" in problem
    assert missing in problem
    assert problem.startswith(f"line {line_of(text, '[links.can0]')}:")


def test_socketcand_link_with_host_and_port_is_valid() -> None:
    text = edit(
        'interface = "socketcan"', 'interface = "socketcand"\nhost = "pi.local"\nport = 29536'
    )
    link = parse_config(text, FILE).links["can0"]
    assert link.type == "can"
    assert (link.interface, link.host, link.port) == ("socketcand", "pi.local", 29536)


def test_simulation_fault_naming_an_unknown_battery() -> None:
    text = BASE + '\n[simulation]\nfaults = [{ at_s = 60, battery = "b9", kind = "cutoff" }]\n'
    problem = one_problem(text)
    assert "simulation.faults[0].battery" in problem
    assert "'b9'" in problem


def test_simulation_fault_on_a_known_battery_is_valid() -> None:
    text = BASE + '\n[simulation]\nfaults = [{ at_s = 60, battery = "b2", kind = "silent" }]\n'
    config = parse_config(text, FILE)
    assert config.simulation is not None
    assert config.simulation.faults[0].battery == "b2"


def test_simulation_battery_section_naming_an_unknown_battery() -> None:
    text = BASE + "\n[simulation.batteries.b9]\ninitial_soc_pct = 50\n"
    problem = one_problem(text)
    assert "simulation.batteries.b9" in problem
    assert problem.startswith(f"line {line_of(text, 'simulation.batteries.b9')}:")


# --- missing keys --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remove", "path", "table"),
    [
        ('name = "cabin"\n', "bank.name", "[bank]"),
        ("nominal_voltage_v = 12.8\n", "models.lfp12.nominal_voltage_v", "[models.lfp12]"),
        ('port = "/dev/ttyUSB0"\n', "links.rs485.port", "[links.rs485]"),
    ],
)
def test_missing_required_key(remove: str, path: str, table: str) -> None:
    text = edit(remove, "")
    problem = one_problem(text)
    assert f"{path}:" in problem
    assert "missing" in problem
    # A missing key is written nowhere: if a line is given, it must be its table's, not a line
    # where a key of the same name belongs to another table.
    m = re.match(r"line (\d+):", problem)
    if m:
        assert int(m.group(1)) == line_of(text, table), problem


def test_missing_key_never_points_at_another_tables_line() -> None:
    # bank.chemistry is missing; the only "chemistry" line left is the model's.
    text = edit('name = "cabin"\nchemistry = "lifepo4"\n', 'name = "cabin"\n')
    problem = one_problem(text)
    assert "bank.chemistry:" in problem
    model_line = line_of(text, 'chemistry = "lifepo4"')
    assert not problem.startswith(f"line {model_line}:"), problem


@pytest.mark.parametrize("section", ["bank", "models", "strings"])
def test_missing_section(section: str) -> None:
    parts = re.split(r"\n(?=\[)", BASE)
    kept = "\n".join(p for p in parts if not p.lstrip("[").startswith(section))
    problems = problems_of(kept)
    assert any(p.startswith(f"{section}:") or f" {section}:" in p for p in problems), problems
    assert any("missing" in p for p in problems), problems


def test_empty_file() -> None:
    problems = problems_of("")
    for section in ("bank", "models", "strings"):
        assert any(f"{section}:" in p and "missing" in p for p in problems), problems


# --- all problems at once ------------------------------------------------------------------------


def test_two_schema_mistakes_are_both_reported() -> None:
    text = edit("capacity_ah = 100", "capacity_a = 100")
    text = edit('channel = "can0"', 'channel = "can0"\nbitrate = 5', text)
    problems = problems_of(text)
    assert any("models.lfp12.capacity_a:" in p for p in problems), problems
    assert any("links.can0.bitrate:" in p for p in problems), problems


def test_two_reference_mistakes_are_both_reported() -> None:
    text = edit('link = "can0"', 'link = "can7"')
    text = edit('{ name = "b2", model = "lfp12" }', '{ name = "b2", model = "lf12" }', text)
    problems = problems_of(text)
    assert len(problems) == 2, problems
    assert any("strings[0].batteries[0].source.link" in p for p in problems)
    assert any("strings[0].batteries[1].model" in p for p in problems)


def test_many_mistakes_each_on_its_own_line() -> None:
    text = edit('name = "cabin"\nchemistry', 'name = "cabin"\nchemistri')
    text = edit("capacity_ah = 100", "capacity_ah = -1", text)
    text = edit('port = "/dev/ttyUSB0"', 'port = "/dev/ttyUSB0"\nbaud = 0', text)
    with pytest.raises(ConfigError) as info:
        parse_config(text, FILE)
    shown = str(info.value).splitlines()
    assert shown[0] == f"{FILE}: invalid config"
    for key in ("bank.chemistri", "models.lfp12.capacity_ah", "links.rs485.baud"):
        assert sum(key in line for line in shown[1:]) == 1, shown


# --- files ---------------------------------------------------------------------------------------


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "cabin.toml"
    path.write_text(BASE, encoding="utf-8")
    config = load_config(path)
    assert config.bank.name == "cabin"
    assert load_config(str(path)) == config


def test_load_config_names_the_file_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "cabin.toml"
    path.write_text(edit("capacity_ah = 100", "capacity_ah = -5"), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == str(path)
    assert str(info.value).startswith(f"{path}:")
    assert "models.lfp12.capacity_ah" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == str(path)
    assert info.value.problems == ["file not found"]
    assert str(path) in str(info.value)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert info.value.path == str(tmp_path)
    assert len(info.value.problems) == 1
    assert "directory" in info.value.problems[0]


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(BASE.replace('"cabin"', '"caf\xe9"').encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == str(path)
    assert "cannot read" in info.value.problems[0]


# --- robustness: any edit of a valid file ends in a Config or a ConfigError ---------------------

_LINES = BASE.splitlines()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    index=st.integers(0, len(_LINES) - 1),
    action=st.sampled_from(["drop", "replace_value", "insert"]),
    value=st.one_of(
        st.integers(-(2**70), 2**70).map(str),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.text(max_size=12).map(lambda s: '"' + s.replace("\\", "").replace('"', "") + '"'),
        st.sampled_from(["true", "[]", "{}", "[1, 2]", "{ a = 1 }", "1979-05-27", "nan"]),
        st.text(max_size=20),
    ),
)
def test_any_mutation_raises_only_config_error(index: int, action: str, value: str) -> None:
    lines = list(_LINES)
    if action == "drop":
        del lines[index]
    elif action == "replace_value" and " = " in lines[index]:
        key = lines[index].split(" = ", 1)[0]
        lines[index] = f"{key} = {value}"
    else:
        lines.insert(index, value)
    text = "\n".join(lines) + "\n"
    try:
        config = parse_config(text, FILE)
    except ConfigError as exc:
        assert exc.problems
        assert str(exc).startswith(f"{FILE}:")
        assert all(p.strip() for p in exc.problems)
    else:
        assert isinstance(config, Config)


# --- through the CLI: exit 2, the file named, never a traceback --------------------------------


@pytest.mark.parametrize(
    "content",
    [
        edit("capacity_ah = 100", "capacity_a = 100"),
        edit('link = "can0"', 'link = "can7"'),
        BASE + "\n[detect\n",
        "",
        None,  # no file at all
    ],
    ids=["unknown-key", "unknown-link", "bad-toml", "empty", "missing-file"],
)
def test_cli_check_reports_config_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None
) -> None:
    path = tmp_path / "mybank.toml"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    code = main(["check", str(path)])
    out, err = capsys.readouterr()
    assert code == 2
    assert "mybank.toml" in err
    assert "Traceback" not in out + err
    assert "invalid config" in err


def test_cli_check_on_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 2
    assert str(tmp_path) in err
    assert "directory" in err
    assert "Traceback" not in out + err


def test_cli_check_lists_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "two.toml"
    text = edit("capacity_ah = 100", "capacity_a = 100")
    text = edit('channel = "can0"', 'channel = "can0"\nbitrate = 5', text)
    path.write_text(text, encoding="utf-8")
    assert main(["check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert "models.lfp12.capacity_a" in err
    assert "links.can0.bitrate" in err
    assert "Traceback" not in out + err


def test_cli_check_valid_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ok.toml"
    path.write_text(BASE, encoding="utf-8")
    code = main(["check", str(path)])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "config is valid" in out
    assert "Traceback" not in out + err


def test_schema_and_reference_problems_are_reported_in_one_pass() -> None:
    """A typo in a model and a battery on a missing link: a user fixes both at once."""
    text = edit("capacity_ah = 100", "capacity_a = 100")
    text = edit('link = "can0"', 'link = "can9"', text)
    problems = problems_of(text)
    assert len(problems) == 3, problems  # unknown key, the key it replaced missing, no link
    assert any("models.lfp12.capacity_a: unknown key" in p for p in problems)
    assert any("models.lfp12.capacity_ah: required key is missing" in p for p in problems)
    assert any("no link named 'can9'" in p for p in problems)
