"""The README stays honest: its commands exist, its paths exist, its example configs are valid and
the `bankwatch check` output it shows is what the code prints today; and CI runs the test
command the README gives, read from the README itself."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from bankwatch.daemon.cli import build_parser, main
from tests.helpers import REPO

README = REPO / "README.md"
CI_RUN = REPO / ".ci" / "run"
TEST_MARKER = "<!-- test-command -->"
FILE_MARKER = re.compile(r"^<!-- file: ([\w.-]+\.toml) -->$")


@dataclass(frozen=True)
class Block:
    lang: str
    lines: list[str]
    line_no: int  # 1-based line of the opening fence
    before: str  # the nearest non-blank line above the fence


def _blocks(text: str) -> list[Block]:
    lines = text.splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\S*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start = i
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        assert j < len(lines), f"README.md:{start + 1}: fenced block is never closed"
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        out.append(Block(m.group(1), lines[start + 1 : j], start + 1, lines[k] if k >= 0 else ""))
        i = j + 1
    return out


def _sections(text: str) -> dict[str, str]:
    """`## Heading` -> the text up to the next `## `."""
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


@pytest.fixture(scope="module")
def readme() -> str:
    return README.read_text(encoding="utf-8")


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("build_parser() has no subcommands")


# --- the quick start ---------------------------------------------------------------------------


def test_quick_start_is_one_command_that_ends_by_running_the_demo(readme: str) -> None:
    sections = _sections(readme)
    assert "Quick start" in sections, f"no '## Quick start' section; found {sorted(sections)}"
    blocks = _blocks(sections["Quick start"])
    assert len(blocks) == 2, "the quick start has exactly two commands: set up + demo, and tests"
    setup = blocks[0]
    assert len(setup.lines) == 1, f"the set-up is one command, got {setup.lines}"
    command = setup.lines[0].strip()
    assert re.search(r"(^|&& )\S*bankwatch demo$", command), command
    # It must install what the second command needs.
    assert "python3 -m venv .venv" in command
    assert "pip install -e '.[test]'" in command
    # ... including the servers the tests start their own copies of.
    for package in ("mosquitto", "influxdb"):
        assert re.search(rf"apt-get install [^&]*\b{package}\b", command), package


def test_test_command_block_follows_its_marker(readme: str) -> None:
    lines = readme.splitlines()
    assert lines.count(TEST_MARKER) == 1, f"exactly one line {TEST_MARKER!r} in README.md"
    i = lines.index(TEST_MARKER)
    assert lines[i + 1].startswith("```"), "the marker is followed directly by a fenced block"
    block = next(b for b in _blocks(readme) if b.line_no == i + 2)
    assert len(block.lines) == 1, f"the test command is one line, got {block.lines}"
    assert "pytest" in block.lines[0]
    quick = _blocks(_sections(readme)["Quick start"])
    assert quick[1].lines == block.lines, "the quick start's second command is the test command"


def test_ci_runs_the_readme_test_command(readme: str) -> None:
    ci = CI_RUN.read_text(encoding="utf-8")
    assert ci.startswith("#!/usr/bin/env bash\n") or ci.startswith("#!/bin/bash\n")
    assert "set -euo pipefail" in ci
    assert TEST_MARKER in ci, ".ci/run must find the test command by the README's marker"
    lines = readme.splitlines()
    want = lines[lines.index(TEST_MARKER) + 2]
    bash = shutil.which("bash")
    assert bash is not None
    got = subprocess.run(
        [bash, str(CI_RUN), "--print-test-command"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        stdin=subprocess.DEVNULL,
    ).stdout
    assert got == want + "\n", f".ci/run extracts {got!r}, the README says {want!r}"


def test_ci_does_not_hardcode_its_own_test_command() -> None:
    # Every non-comment line that mentions pytest would be a second copy that can drift.
    code = [
        line
        for line in CI_RUN.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert not [line for line in code if "pytest" in line], "\n".join(code)


# --- commands, options and paths the README names ----------------------------------------------

# A command line: `bankwatch demo --speed 10`, `.venv/bin/bankwatch -v run x.toml`, a `$ ` prompt,
# a `usage: ` line. Output that merely contains the word ("every rule bankwatch knows") is not one.
_COMMAND = re.compile(r"^(?:\$ |usage: )?(?:\S*/)?bankwatch((?:\s+-[\w-]+)*)\s+([a-z][\w-]*)(.*)$")


def _code_snippets(text: str) -> list[str]:
    """Lines of fenced blocks and `inline code` spans: where commands are written."""
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    # Inline code may wrap in the Markdown source: a line break in it is a space.
    inline = [s.replace("\n", " ") for s in re.findall(r"`([^`]+)`", prose)]
    return [line for block in fenced for line in block.splitlines()] + inline


def _mentions(text: str) -> list[tuple[str, str]]:
    """(subcommand, the rest of its line) for every bankwatch command line in the README."""
    out = []
    for snippet in _code_snippets(text):
        for part in snippet.split("&&"):
            m = _COMMAND.match(part.strip())
            if m:
                out.append((m.group(2), m.group(3)))
    return out


def test_readme_names_commands(readme: str) -> None:
    named = {sub for sub, _ in _mentions(readme)}
    assert named >= {"check", "run", "demo", "simulate", "decode"}, named


def test_every_bankwatch_subcommand_in_the_readme_exists(readme: str) -> None:
    known = _subparsers()
    unknown = sorted({sub for sub, _ in _mentions(readme)} - set(known))
    assert not unknown, f"README mentions bankwatch {unknown}; the CLI has {sorted(known)}"


def test_every_option_in_a_readme_command_exists(readme: str) -> None:
    parsers = _subparsers()
    bad = []
    for sub, rest in _mentions(readme):
        if sub not in parsers:
            continue
        rest = re.split(r"\s(?:#|\||&&|;|2>)", rest, maxsplit=1)[0]
        options = {s for a in parsers[sub]._actions for s in a.option_strings}
        bad += [
            f"bankwatch {sub} {o}"
            for o in re.findall(r"(?<![\w-])--?[a-z][\w-]*", rest)
            if o not in options
        ]
    assert not bad, f"options the CLI does not have: {sorted(set(bad))}"


def test_every_config_path_in_the_readme_exists(readme: str) -> None:
    paths = sorted(set(re.findall(r"configs/[\w./-]+\.toml", readme)))
    assert paths, "the README points to no example config"
    missing = [p for p in paths if not (REPO / p).is_file()]
    assert not missing, f"README names configs that do not exist: {missing}"


def test_every_example_config_is_in_the_readme(readme: str) -> None:
    for path in sorted((REPO / "configs").glob("*.toml")):
        assert f"configs/{path.name}" in readme, f"configs/{path.name} is not described"


def test_repository_files_the_readme_links_exist(readme: str) -> None:
    links = re.findall(r"\]\((?!https?:|#)([^)\s]+)\)", readme)
    missing = [p for p in links if not (REPO / p).exists()]
    assert not missing, missing


def test_anchor_links_point_to_headings(readme: str) -> None:
    def slug(heading: str) -> str:
        s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
        return s.replace(" ", "-")

    headings = {slug(h) for h in re.findall(r"^#+ (.+)$", readme, flags=re.MULTILINE)}
    anchors = set(re.findall(r"\]\(#([^)]+)\)", readme))
    assert anchors <= headings, sorted(anchors - headings)


# --- the example configs and the output shown for them ------------------------------------------


def _example_files(readme: str) -> dict[str, str]:
    files = {}
    for b in _blocks(readme):
        m = FILE_MARKER.match(b.before.strip())
        if m:
            assert b.lang == "toml", f"README.md:{b.line_no}: {m.group(1)} is not a toml block"
            files[m.group(1)] = "\n".join(b.lines) + "\n"
    return files


def _shown_checks(readme: str) -> list[tuple[str, list[str]]]:
    out = []
    for b in _blocks(readme):
        if b.lang == "console" and b.lines and b.lines[0].startswith("$ bankwatch check "):
            out.append((b.lines[0].removeprefix("$ bankwatch check ").strip(), b.lines[1:]))
    return out


def test_readme_has_a_complete_example_and_a_broken_one(readme: str) -> None:
    files = _example_files(readme)
    assert len(files) >= 2, files.keys()
    shown = dict(_shown_checks(readme))
    assert set(shown) <= set(files), f"check output shown for files not in the README: {shown}"
    assert any(lines[0].endswith("config is valid") for lines in shown.values())
    assert any("invalid config" in lines[0] for lines in shown.values())


def test_check_output_in_the_readme_is_what_check_prints(
    readme: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _example_files(readme)
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    shown = _shown_checks(readme)
    assert shown
    for name, want in shown:
        code = main(["check", name])
        out = capsys.readouterr()
        got = (out.out + out.err).rstrip("\n").splitlines()
        assert got == want, f"README shows for `bankwatch check {name}`:\n" + "\n".join(want)
        if "invalid config" in want[0]:
            assert code == 2
        elif any(line.startswith("ERROR") for line in want):
            assert code == 1
        else:
            assert code == 0


def test_demo_can_run_the_complete_example(readme: str) -> None:
    """The README says `bankwatch demo --config boat.toml` runs the example simulated."""
    from bankwatch.daemon.config import parse_config

    files = _example_files(readme)
    assert "boat.toml" in files
    config = parse_config(files["boat.toml"], "boat.toml")
    assert config.simulation is not None
    batteries = {b.name for _, b in config.batteries()}
    assert {f.battery for f in config.simulation.faults} <= batteries


def test_architecture_names_modules_that_exist(readme: str) -> None:
    """Every module the Architecture section's table names (`daemon/x.py`, `drivers/y.py`) is
    a file of the repository: a renamed module fails here until the README follows."""
    section = _sections(readme)["Architecture"]
    paths = set(re.findall(r"\b((?:daemon|drivers)/[\w/]+\.py)\b", section))
    assert len(paths) >= 8, paths
    missing = sorted(p for p in paths if not (REPO / p).is_file())
    assert not missing, f"the Architecture section names missing modules: {missing}"
