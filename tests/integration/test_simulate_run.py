"""The whole pipe across processes: `bankwatch simulate` serves a bank over socketcand, `bankwatch
run` in another process reads it, and a cutoff injected on one battery raises an alert naming it.
Then both stop cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO

CLI = [sys.executable, "-m", "bankwatch.daemon.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(port: int, faults: str) -> str:
    text = (REPO / "configs" / "sim-48v-4s2p.toml").read_text(encoding="utf-8")
    text = text.replace("port = 29536", f"port = {port}")
    head, _, _ = text.partition("[[simulation.faults]]")
    return head + faults


def _read_json_lines(proc: subprocess.Popen[str], until: float, want: Any) -> list[dict[str, Any]]:
    """Collect JSON lines from the process until `want(line)` holds or time runs out."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    seen: list[dict[str, Any]] = []
    while time.monotonic() < until:
        if not sel.select(timeout=0.2):
            if proc.poll() is not None:
                break
            continue
        line = proc.stdout.readline()
        if not line:
            break
        obj = json.loads(line)
        seen.append(obj)
        if want(obj):
            break
    return seen


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, float]:
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        code = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("process did not stop within 10 s of SIGTERM")
    return code, time.monotonic() - t0


@pytest.fixture
def procs() -> Any:
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_cutoff_on_one_battery_raises_an_alert_naming_it(tmp_path: Path, procs: Any) -> None:
    port = _free_port()
    cfg = tmp_path / "bank.toml"
    cfg.write_text(
        _config(
            port,
            '[[simulation.faults]]\nat_s = 4\nbattery = "A3"\nkind = "cutoff"\n'
            'protection = "cell_undervoltage"\n',
        ),
        encoding="utf-8",
    )
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    sim = subprocess.Popen(
        [*CLI, "simulate", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    procs.append(sim)
    # wait until the simulator listens
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert sim.poll() is None, sim.stderr.read() if sim.stderr else ""
            time.sleep(0.05)
    run = subprocess.Popen(
        [*CLI, "run", str(cfg), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    procs.append(run)

    def is_cutoff(obj: dict[str, Any]) -> bool:
        return obj.get("kind") == "cutoff" and obj.get("event") == "raised"

    seen = _read_json_lines(run, time.monotonic() + 30, is_cutoff)
    cutoffs = [o for o in seen if is_cutoff(o)]
    assert cutoffs, f"no cutoff alert; saw {seen}"
    alert = cutoffs[0]
    assert alert["subject"] == "sim/A/A3"
    assert "A3" in alert["message"] and "cell_undervoltage" in alert["message"]
    assert alert["severity"] == "critical"
    assert alert["evidence"]["discharge_enabled"] is False
    assert alert["evidence"]["protections"] == ["cell_undervoltage"]
    # no other battery was accused
    assert all(o["subject"] == "sim/A/A3" for o in seen if o.get("kind") == "cutoff")

    code, took = _stop(run)
    assert code == 0 and took < 5, (code, took)
    code, took = _stop(sim)
    assert code == 0 and took < 5, (code, took)
    assert run.stderr is not None
    assert "Traceback" not in run.stderr.read()


def test_a_battery_going_silent_raises_link_lost(tmp_path: Path, procs: Any) -> None:
    port = _free_port()
    cfg = tmp_path / "bank.toml"
    text = _config(port, '[[simulation.faults]]\nat_s = 2\nbattery = "B4"\nkind = "silent"\n')
    cfg.write_text(text.replace("link_lost_after_s = 10", "link_lost_after_s = 3"), "utf-8")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    sim = subprocess.Popen(
        [*CLI, "simulate", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    procs.append(sim)
    time.sleep(0.5)
    run = subprocess.Popen(
        [*CLI, "run", str(cfg), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    procs.append(run)

    def is_lost(obj: dict[str, Any]) -> bool:
        return obj.get("kind") == "link_lost" and obj.get("event") == "raised"

    seen = _read_json_lines(run, time.monotonic() + 30, is_lost)
    lost = [o for o in seen if is_lost(o)]
    assert lost, f"no link_lost alert; saw {seen}"
    assert [o["subject"] for o in lost] == ["sim/B/B4"]
    assert "B4" in lost[0]["message"]
    code, took = _stop(run, signal.SIGINT)  # Ctrl-C stops it as cleanly as SIGTERM
    assert code == 0 and took < 5, (code, took)
    _stop(sim)
