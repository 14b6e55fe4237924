"""The layers: `drivers/` (the data model, protocol code, links, the simulator) stands alone and
never imports `bankwatch.daemon`, so the codecs can be reused without the service on top.

Every module file under drivers/ is read as source (nothing is imported, so an import hidden in
a function body or under `if TYPE_CHECKING:` counts as much as one at the top).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO

DRIVERS = REPO / "drivers"
FORBIDDEN = "bankwatch.daemon"


def _package_of(path: Path) -> str:
    """The dotted package a drivers/ file lives in (bankwatch.drivers[.sub])."""
    parts = path.relative_to(DRIVERS).parts[:-1]
    return ".".join(("bankwatch", "drivers", *parts))


def _resolve(node: ast.ImportFrom, package: str) -> str:
    """The absolute module an ImportFrom names, relative forms included."""
    if node.level == 0:
        return node.module or ""
    base = package.split(".")
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def upward_imports(source: str, package: str, filename: str = "<source>") -> list[str]:
    """`file:line: imports X` for every import of bankwatch.daemon in the source, wherever it is
    written (top level, function bodies, TYPE_CHECKING blocks)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(node, package)
            # `from bankwatch import daemon` names the package as an imported name.
            names = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        for name in names:
            if name == FORBIDDEN or name.startswith(FORBIDDEN + "."):
                found.append(f"{filename}:{node.lineno}: imports {name}")
                break
    return found


def _driver_files() -> list[Path]:
    return sorted(DRIVERS.rglob("*.py"))


def test_there_are_driver_modules_to_check() -> None:
    files = {p.relative_to(DRIVERS).as_posix() for p in _driver_files()}
    assert {"model.py", "registry.py", "links/can.py", "simulator/serve.py"} <= files


def test_no_driver_module_imports_the_daemon() -> None:
    found: list[str] = []
    for path in _driver_files():
        source = path.read_text(encoding="utf-8")
        found += upward_imports(source, _package_of(path), path.relative_to(REPO).as_posix())
    assert not found, "drivers/ must not import bankwatch.daemon:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("source", "package"),
    [
        ("from bankwatch.daemon.config import Config\n", "bankwatch.drivers"),
        ("import bankwatch.daemon.service\n", "bankwatch.drivers"),
        ("import bankwatch.daemon as d\n", "bankwatch.drivers"),
        ("from bankwatch import daemon\n", "bankwatch.drivers"),
        ("def f():\n    from bankwatch.daemon import service\n", "bankwatch.drivers"),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from bankwatch.daemon.config import Config\n",
            "bankwatch.drivers.links",
        ),
        ("from ..daemon import config\n", "bankwatch.drivers"),
        ("from ...daemon.config import Config\n", "bankwatch.drivers.simulator"),
        ("from .. import daemon\n", "bankwatch.drivers"),
    ],
)
def test_the_walker_catches_every_form_of_an_upward_import(source: str, package: str) -> None:
    (hit,) = upward_imports(source, package, "x.py")
    assert hit.startswith("x.py:") and "bankwatch.daemon" in hit


@pytest.mark.parametrize(
    ("source", "package"),
    [
        ("from bankwatch.drivers.model import Reading\n", "bankwatch.drivers"),
        ("from . import model\n", "bankwatch.drivers.links"),
        ("from ..errors import LinkError\n", "bankwatch.drivers.links"),
        ("import bankwatch.daemonic\n", "bankwatch.drivers"),
        ("x = 'bankwatch.daemon'\n", "bankwatch.drivers"),
    ],
)
def test_the_walker_lets_sideways_and_downward_imports_pass(source: str, package: str) -> None:
    assert upward_imports(source, package) == []


def test_the_walker_names_the_line() -> None:
    source = "import os\n\n\ndef f() -> None:\n    import bankwatch.daemon.cli\n"
    assert upward_imports(source, "bankwatch.drivers", "drivers/x.py") == [
        "drivers/x.py:5: imports bankwatch.daemon.cli"
    ]
