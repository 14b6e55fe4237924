"""`bankwatch demo`: the simulated bank and the monitor in one process over python-can's virtual
bus, sped up. In-process with JSON output, then the real command without a terminal and under a
pseudo-terminal.
"""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from typing import Any

from bankwatch.daemon.cli import demo_config
from bankwatch.daemon.demo import run_demo
from tests.helpers import REPO

ANSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|[@-Z\\-_])")
WIDTH = 100


def events_of(lines: list[dict[str, Any]], alert_id: str) -> list[str]:
    return [ln["event"] for ln in lines if ln.get("type") == "alert" and ln["id"] == alert_id]


async def test_demo_json_shows_the_scripted_faults_raised_and_cleared() -> None:
    """demo.toml scripts B3 silent from 20 s to 50 s, A2 cut off (over temperature) from 60 s to
    100 s. 130 simulated seconds at 20x is about 6.5 s."""
    out = io.StringIO()
    code = await run_demo(demo_config(), duration_s=130, speed=20, json_out=True, out=out)
    assert code == 0

    lines = [json.loads(ln) for ln in out.getvalue().splitlines()]
    assert lines, "no output"
    assert all(isinstance(ln, dict) for ln in lines)

    link = events_of(lines, "link_lost:demo/B/B3")
    cut = events_of(lines, "cutoff:demo/A/A2")
    assert link[:1] == ["raised"] and link[-1] == "cleared", link
    assert cut[:1] == ["raised"] and cut[-1] == "cleared", cut

    raised_cut = next(
        ln for ln in lines if ln.get("id") == "cutoff:demo/A/A2" and ln["event"] == "raised"
    )
    assert raised_cut["severity"] == "critical"
    assert raised_cut["subject"] == "demo/A/A2"
    assert raised_cut["message"].startswith("A2:")
    assert "discharge_overcurrent" in raised_cut["message"]
    assert raised_cut["evidence"]["protections"] == ["discharge_overcurrent"]
    assert raised_cut["evidence"]["discharge_enabled"] is False

    raised_link = next(
        ln for ln in lines if ln.get("id") == "link_lost:demo/B/B3" and ln["event"] == "raised"
    )
    assert raised_link["message"].startswith("B3:")
    assert "can-B3" in raised_link["message"]
    # The battery went quiet before A2 tripped, and the events come in that order.
    assert raised_link["time"] < raised_cut["time"]

    # Only A2's BMS opened: no other battery may have a cutoff.
    cutoffs = {ln["id"] for ln in lines if ln.get("type") == "alert" and ln["kind"] == "cutoff"}
    assert cutoffs == {"cutoff:demo/A/A2"}

    summary = lines[-1]
    assert summary["type"] == "summary"
    assert summary["bank"] == "demo"
    assert summary["alerts_raised"]["link_lost"] >= 1
    assert summary["alerts_raised"]["cutoff"] == 1
    assert summary["simulated_s"] >= 100
    assert summary["frames"] > 0
    assert "cutoff:demo/A/A2" not in summary["active_alerts"]
    assert "link_lost:demo/B/B3" not in summary["active_alerts"]
    assert [ln["type"] for ln in lines].count("summary") == 1


def test_demo_command_without_a_terminal() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bankwatch.daemon.cli", "demo", "--duration", "20", "--speed", "10"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "\x1b" not in proc.stdout
    lines = proc.stdout.splitlines()
    assert any(ln.startswith("summary:") for ln in lines), proc.stdout
    assert any("demo:" in ln and "batteries live" in ln for ln in lines), proc.stdout
    too_wide = [ln for ln in lines if len(ln) > WIDTH]
    assert not too_wide, too_wide


def run_under_pty(argv: list[str], timeout: float) -> tuple[int, str, str]:
    """Run `argv` with a pseudo-terminal as its stdout; return (exit code, screen, stderr)."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=subprocess.PIPE,
            cwd=REPO,
        )
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its side
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    return code, b"".join(chunks).decode("utf-8", errors="replace"), err


def test_demo_live_view_under_a_terminal() -> None:
    code, screen, err = run_under_pty(
        [sys.executable, "-m", "bankwatch.daemon.cli", "demo", "--duration", "6", "--speed", "3"],
        timeout=60,
    )
    assert code == 0, err
    assert "Traceback" not in screen + err
    # The live view redraws in place: it uses escape sequences, which we strip to read it.
    assert "\x1b[" in screen
    plain = ANSI.sub("", screen)
    lines = [ln.rstrip("\r") for ln in plain.replace("\r\n", "\n").split("\n")]
    too_wide = [(len(ln), ln) for ln in lines if len(ln) > WIDTH]
    assert not too_wide, too_wide

    assert "demo" in plain
    assert any("string A" in ln for ln in lines)
    assert any("string B" in ln for ln in lines)
    for name in ("A1", "A2", "A3", "A4", "B1", "B2", "B3", "B4"):
        assert any(ln.split()[:1] == [name] for ln in lines), f"no row for {name}"
    assert any(ln.startswith("summary:") for ln in lines)
