"""No import cycle anywhere in bankwatch, counting every import the interpreter could run.

The graph is built from the source (the AST), not from `sys.modules`, so an import inside a
function or under `if TYPE_CHECKING:` counts as much as one at the top: a loop that is held open
only by a late import is still a loop (the layers above and below know each other), and it
breaks the day someone moves that import to the top.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The source folders and the import names they install as (pyproject's package-dir).
PACKAGES = {"daemon": "bankwatch.daemon", "drivers": "bankwatch.drivers"}

Graph = Mapping[str, set[str]]


def module_name(path: Path, root: Path = ROOT) -> str:
    """daemon/x.py -> bankwatch.daemon.x; drivers/links/__init__.py -> bankwatch.drivers.links."""
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    parts[0] = PACKAGES[parts[0]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of a relative import (`from ..x import y` in `module`)."""
    if level == 0:
        return name or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imported_names(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module name `source` may import, wherever the import statement sits (module level,
    inside a function, under TYPE_CHECKING). `from p import n` yields `p.n` (which may be a
    module) and `p`."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node.level, node.module)
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def build_graph(files: Iterable[Path], root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the bankwatch modules it imports."""
    sources = {module_name(f, root): f for f in files}
    graph: dict[str, set[str]] = {}
    for name, path in sources.items():
        names = imported_names(path.read_text(), name, path.name == "__init__.py")
        graph[name] = {n for n in names if n in sources and n != name}
    return graph


def find_cycle(graph: Graph) -> list[str] | None:
    """One import cycle as a path that ends where it starts (`[a, b, a]`), or None."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        # Depth-first without recursion: `path` is the chain from `start`, `on_path` the
        # same as a set; meeting a module already on the path closes a cycle.
        path = [start]
        on_path = {start}
        todo = [iter(sorted(graph.get(start, ())))]
        while todo:
            nxt = next(todo[-1], None)
            if nxt is None:
                todo.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                continue
            if nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            if nxt in done:
                continue
            path.append(nxt)
            on_path.add(nxt)
            todo.append(iter(sorted(graph.get(nxt, ()))))
    return None


def bankwatch_files() -> list[Path]:
    return sorted(f for d in PACKAGES for f in (ROOT / d).rglob("*.py"))


# --- the finder itself, on graphs small enough to check by eye -----------------------------------


def test_find_cycle_names_the_loop() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]


def test_find_cycle_finds_a_loop_off_the_first_path() -> None:
    graph = {"a": {"b"}, "b": set(), "x": {"y"}, "y": {"z"}, "z": {"y"}}
    assert find_cycle(graph) == ["y", "z", "y"]


def test_find_cycle_accepts_a_diamond() -> None:
    # Two ways to the same module is not a loop.
    assert find_cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) is None


def test_graph_counts_late_and_type_checking_imports(tmp_path: Path) -> None:
    (tmp_path / "daemon").mkdir()
    (tmp_path / "daemon" / "__init__.py").write_text("")
    (tmp_path / "daemon" / "top.py").write_text("from bankwatch.daemon import low\n")
    (tmp_path / "daemon" / "low.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from bankwatch.daemon.top import X\n"
        "def f() -> None:\n"
        "    from . import late\n"
    )
    (tmp_path / "daemon" / "late.py").write_text("import bankwatch.daemon.low\n")
    graph = build_graph(sorted((tmp_path / "daemon").glob("*.py")), tmp_path)
    assert graph["bankwatch.daemon.top"] == {"bankwatch.daemon", "bankwatch.daemon.low"}
    assert graph["bankwatch.daemon.low"] == {
        "bankwatch.daemon",
        "bankwatch.daemon.top",
        "bankwatch.daemon.late",
    }
    assert graph["bankwatch.daemon.late"] == {"bankwatch.daemon.low"}
    assert find_cycle(graph) == [
        "bankwatch.daemon.late",
        "bankwatch.daemon.low",
        "bankwatch.daemon.late",
    ]


# --- bankwatch -----------------------------------------------------------------------------------


def test_the_graph_sees_every_module() -> None:
    graph = build_graph(bankwatch_files())
    assert "bankwatch.daemon.service" in graph
    assert "bankwatch.drivers.links.can" in graph
    # The service imports the tick snapshot; a graph without edges would pass anything.
    assert "bankwatch.daemon.tick" in graph["bankwatch.daemon.service"]


def test_no_import_cycle() -> None:
    cycle = find_cycle(build_graph(bankwatch_files()))
    if cycle is not None:
        pytest.fail("import cycle: " + " -> ".join(cycle))
