"""`bankwatch --help` and `bankwatch decode` start without the heavy libraries.

On a Raspberry Pi every module costs; the InfluxDB client alone is a fifth of a second and 40 MB.
Each command is run in a fresh interpreter (a module imported by an earlier test would hide a
load) through a wrapper that reports what `sys.modules` holds once the command is done.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bankwatch.drivers.pylontech_rs485 import PYLONTECH
from tests.helpers import REPO, load_vectors

# The libraries only the daemon's links and sinks need.
HEAVY = ("influxdb_client", "aiomqtt", "pymodbus", "can")

_WRAPPER = """
import json, sys
from bankwatch.daemon.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:  # --help exits from argparse
    code = exc.code
top = sorted({name.partition(".")[0] for name in sys.modules})
sys.stderr.write("\\nMODULES " + json.dumps(top) + "\\n")
sys.exit(code)
"""


def loaded_by(*argv: str) -> tuple[str, set[str]]:
    """Run `bankwatch ARGV` in a new interpreter: its stdout and the top-level packages it
    imported."""
    proc = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    marker = proc.stderr.rindex("\nMODULES ")
    return proc.stdout, set(json.loads(proc.stderr[marker + len("\nMODULES ") :]))


def test_the_wrapper_sees_what_a_command_imports() -> None:
    # `check` reads the config with pydantic: the wrapper must report it, or the tests below
    # would pass on an empty list.
    _, mods = loaded_by("check", "--config-only", "configs/home-48v-4s2p.toml")
    assert "pydantic" in mods and "bankwatch" in mods


def test_help_imports_no_library_and_no_pydantic() -> None:
    out, mods = loaded_by("--help")
    assert "decode" in out and "simulate" in out
    assert mods.isdisjoint((*HEAVY, "pydantic")), sorted(mods & {*HEAVY, "pydantic"})


def test_a_subcommand_help_imports_no_library() -> None:
    out, mods = loaded_by("run", "--help")
    assert "--influx-url" in out
    assert mods.isdisjoint((*HEAVY, "pydantic")), sorted(mods & {*HEAVY, "pydantic"})


@pytest.mark.parametrize(
    "argv",
    [
        # CAN frames need no python-can: the codec reads bytes.
        ("pylontech-can", "351#1402C012C012C201", "355#58005E00"),
        (
            "pylontech-rs485",
            PYLONTECH.encode_request(0x42, 2).hex(),
            next(
                v["frame_hex"]
                for v in load_vectors("pylontech_rs485")
                if v["id"] == "pylon_us5000_0x42_single"
            ),
        ),
    ],
    ids=["can", "serial"],
)
def test_decode_imports_no_link_or_sink_library(argv: tuple[str, ...]) -> None:
    out, mods = loaded_by("decode", *argv)
    assert json.loads(out)  # it decoded: a reading came out
    assert mods.isdisjoint(HEAVY), sorted(mods & set(HEAVY))
