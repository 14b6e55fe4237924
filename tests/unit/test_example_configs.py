"""The example configs in configs/ (and the built-in demo bank) are valid, follow every wiring rule,
and pass `bankwatch check`: they are what users copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from bankwatch.daemon.cli import demo_config, main
from bankwatch.daemon.config import load_config
from bankwatch.daemon.rules import check_bank
from bankwatch.daemon.topology import Topology
from tests.helpers import REPO

EXAMPLES = sorted((REPO / "configs").glob("*.toml"))
DEMO_TOML = REPO / "daemon" / "demo.toml"

# The banks the README documents, by (shape, nominal voltage of the bus, capacity in Ah).
DOCUMENTED = {
    "12 V RV bank, 4 in parallel": ("1S4P", 12.8, 400),
    "24 V cabin bank, 2 in series": ("2S1P", 25.6, 200),
    "48 V home bank, 4S2P of 12 V batteries": ("4S2P", 51.2, 200),
    "48 V rack, 8 parallel 16S packs": ("1S8P", 51.2, 800),
}


def _describe(path: Path) -> tuple[str, float, float]:
    topo = Topology(load_config(path))
    return topo.shape, round(topo.nominal_voltage_v, 1), round(topo.capacity_ah)


def test_the_documented_examples_exist() -> None:
    assert len(EXAMPLES) >= 4, EXAMPLES
    found = {_describe(p) for p in EXAMPLES}
    for what, want in DOCUMENTED.items():
        assert want in found, f"no example config for the {what}: found {sorted(found)}"


def test_rack_example_is_16s_packs() -> None:
    for path in EXAMPLES:
        topo = Topology(load_config(path))
        if topo.shape == "1S8P":
            for b in topo.batteries():
                cells = b.model.nominal_voltage_v / 3.2
                assert b.model.chemistry == "lifepo4"
                assert round(cells) == 16 and abs(cells - 16) < 1e-9
            return
    pytest.fail("no 1S8P rack example")


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_loads_without_error_findings(path: Path) -> None:
    config = load_config(path)
    topo = Topology(config)
    errors = [f for f in check_bank(config, topo) if f.severity == "error"]
    assert errors == []
    # The declared bank voltage is the system voltage its strings make up.
    assert abs(topo.nominal_voltage_v - config.bank.nominal_voltage_v) <= (
        0.1 * topo.nominal_voltage_v
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_check_exits_0_on_example(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", str(path)])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "config is valid" in out
    assert "0 error(s)" in out
    assert Topology(load_config(path)).shape in out
    assert "Traceback" not in out + err


@pytest.mark.skipif(
    not DEMO_TOML.exists(),
    reason=f"built-in demo bank {DEMO_TOML.relative_to(REPO)} does not exist yet",
)
def test_demo_config_is_valid_and_follows_the_rules(capsys: pytest.CaptureFixture[str]) -> None:
    config = demo_config()
    topo = Topology(config)
    assert topo.batteries()
    errors = [f for f in check_bank(config, topo) if f.severity == "error"]
    assert errors == []
    code = main(["check", str(DEMO_TOML)])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "Traceback" not in out + err
