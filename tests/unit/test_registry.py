"""The registry is the one place that knows the protocols: every CAN row carries its codec,
encoder and driver, and the tools that take a protocol by name (decode, sniff, replay, the
simulator) look it up there instead of naming one. Adding a protocol is then one module and one
row (README, Development)."""

from __future__ import annotations

import ast

import pytest

from bankwatch.drivers.errors import UnknownCommandError
from bankwatch.drivers.model import Reading
from bankwatch.drivers.registry import PROTOCOLS, can_protocols
from tests.helpers import REPO

# The codec modules: what a per-protocol special case would import.
_CODEC_MODULES = {
    "daly",
    "daly_can",
    "daly_payload",
    "jbd",
    "jk_b",
    "jk_pb",
    "modbus_map",
    "pylontech_can",
    "pylontech_rs485",
    "seplos_v3",
}
_PROTOCOL_AWARE = [
    "daemon/decode.py",
    "daemon/sniff_can.py",
    "daemon/replay.py",
    "drivers/simulator/bank.py",
]


@pytest.mark.parametrize("path", _PROTOCOL_AWARE)
def test_tools_find_protocols_in_the_registry(path: str) -> None:
    tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
    named = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if node.value in PROTOCOLS
    ]
    assert named == [], f"{path} names protocols {named}: look them up in the registry"
    imported: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "bankwatch.drivers":
                imported += [a.name for a in node.names if a.name in _CODEC_MODULES]
            elif node.module.rsplit(".", 1)[-1] in _CODEC_MODULES:
                imported.append(node.module)
        elif isinstance(node, ast.Import):
            imported += [a.name for a in node.names if a.name.rsplit(".", 1)[-1] in _CODEC_MODULES]
    assert imported == [], f"{path} imports codec modules {imported}"


@pytest.mark.parametrize("name", sorted(can_protocols()))
def test_a_can_row_carries_codec_encoder_and_driver(name: str) -> None:
    info = PROTOCOLS[name]
    assert info.can_driver is not None
    assert info.can_decode is not None
    assert info.can_encode is not None
    if info.addressing == "addressed":
        assert info.can_address_of is not None, "an addressed protocol says whose a frame is"
    # Its own frames decode; another protocol's frames are refused as not its own.
    own = info.can_encode(Reading(pack_voltage_v=52.0, current_a=1.0, soc_pct=50.0), 1)
    assert own and all(isinstance(info.can_decode(*f), Reading) for f in own)
    for other, other_info in can_protocols().items():
        if other == name or other_info.can_encode is None:
            continue
        for frame in other_info.can_encode(Reading(pack_voltage_v=52.0), 1):
            # UnknownCommandError, not another FrameError: `sniff` then asks the next protocol
            with pytest.raises(UnknownCommandError):
                info.can_decode(*frame)
