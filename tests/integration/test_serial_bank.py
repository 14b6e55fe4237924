"""RS485 across processes: `bankwatch simulate` serves a series-parallel bank on two serial lines
(PTYs behind symlinked port paths, as /dev/serial/by-id would be) speaking two protocols, and
`bankwatch run` in another process polls them. One line's adapter is unplugged and plugged back;
the daemon recovers by itself and its readings flow again. Then a listen-only line where the
simulator plays the inverter that polls the packs, and bankwatch only listens."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

CLI = [sys.executable, "-m", "bankwatch.daemon.cli"]

HEAD = """
[bank]
name = "rs"
chemistry = "lifepo4"
nominal_voltage_v = 24
charger_voltage_v = 28.4

[models.lfp12-100]
capacity_ah = 100
nominal_voltage_v = 12.8
chemistry = "lifepo4"
"""

TWO_LINES = (
    HEAD
    + """
[links.line-a]
type = "serial"
port = "{dir}/by-id/usb-A-if00"
baud = 9600

[links.line-b]
type = "serial"
port = "{dir}/by-id/usb-B-if00"
baud = 19200

# Two strings of two in series; each string has a battery on each line.
[[strings]]
name = "A"
[[strings.batteries]]
name = "A1"
model = "lfp12-100"
source = {{ link = "line-a", protocol = "pylontech-rs485", address = 2 }}
[[strings.batteries]]
name = "A2"
model = "lfp12-100"
source = {{ link = "line-b", protocol = "seplos-v2", address = 0 }}

[[strings]]
name = "B"
[[strings.batteries]]
name = "B1"
model = "lfp12-100"
source = {{ link = "line-a", protocol = "pylontech-rs485", address = 3 }}
[[strings.batteries]]
name = "B2"
model = "lfp12-100"
source = {{ link = "line-b", protocol = "seplos-v2", address = 1 }}

[detect]
link_lost_after_s = 3
clear_after_s = 1

[simulation]
profile = "constant"
power_w = -300

[[simulation.faults]]
at_s = 5
kind = "unplug"
link = "line-b"

[[simulation.faults]]
at_s = 10
kind = "replug"
link = "line-b"

# After the replug: only readings that flow again over line B can show this.
[[simulation.faults]]
at_s = 15
battery = "A2"
kind = "cutoff"
protection = "discharge_overcurrent"
"""
)

LISTEN = (
    HEAD
    + """
[links.bus]
type = "serial"
port = "{dir}/ttyBUS"
baud = 9600
listen_only = true
silence_timeout_s = 3

[[strings]]
name = "P1"
[[strings.batteries]]
name = "P1"
model = "lfp12-100"
source = {{ link = "bus", protocol = "pylontech-rs485", address = 2 }}

[[strings]]
name = "P2"
[[strings.batteries]]
name = "P2"
model = "lfp12-100"
source = {{ link = "bus", protocol = "pylontech-rs485", address = 3 }}

[detect]
link_lost_after_s = 4

[simulation]
profile = "constant"
power_w = -200

[[simulation.faults]]
at_s = 4
battery = "P2"
kind = "cutoff"
protection = "cell_undervoltage"
"""
)


class _Reader:
    """A process's stdout or stderr read by a thread, line by line (a selector on a buffered
    text pipe misses lines that arrived together)."""

    def __init__(self, pipe: Any) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.all: list[str] = []
        threading.Thread(target=self._pump, args=(pipe,), daemon=True).start()

    def _pump(self, pipe: Any) -> None:
        for line in pipe:
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    def until(self, deadline: float, want: Any) -> list[str]:
        seen: list[str] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return seen
            try:
                line = self.queue.get(timeout=left)
            except queue.Empty:
                return seen
            if line is None:
                return seen
            seen.append(line)
            self.all.append(line)
            if want(line):
                return seen

    def rest(self, timeout: float = 5.0) -> str:
        self.until(time.monotonic() + timeout, lambda line: False)
        return "\n".join(self.all)


def _stop(p: _Proc) -> int:
    proc = p.proc
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("process did not stop within 10 s of SIGTERM")


@pytest.fixture
def procs() -> Any:
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()


class _Proc:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.out = _Reader(proc.stdout)
        self.err = _Reader(proc.stderr)


def _start(procs: list[subprocess.Popen[str]], *args: str, cwd: Path) -> _Proc:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [*CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )
    procs.append(proc)
    return _Proc(proc)


def _simulate(procs: list[subprocess.Popen[str]], cfg: Path, links: int) -> _Proc:
    sim = _start(procs, "simulate", str(cfg), cwd=cfg.parent)
    printed: list[str] = []
    deadline = time.monotonic() + 15
    while len(printed) < links and time.monotonic() < deadline:
        printed += sim.out.until(deadline, lambda line: True)
        if sim.proc.poll() is not None:
            break
    assert len(printed) == links, (printed, sim.err.rest(1))
    for line in printed:
        # "serial link NAME: PATH -> /dev/pts/N": the path to use, and the PTY behind it
        assert line.startswith("serial link ") and " -> /dev/pts/" in line, line
        path = Path(line.split(": ", 1)[1].split(" -> ")[0])
        assert path.is_symlink() and os.readlink(path).startswith("/dev/pts/"), line
    return sim


def test_two_lines_two_protocols_and_an_adapter_that_comes_back(tmp_path: Path, procs: Any) -> None:
    cfg = tmp_path / "bank.toml"
    cfg.write_text(TWO_LINES.format(dir=tmp_path), encoding="utf-8")
    sim = _simulate(procs, cfg, links=2)
    run = _start(procs, "run", str(cfg), "--json", cwd=tmp_path)

    events: list[dict[str, Any]] = []

    def done(line: str) -> bool:
        events.append(json.loads(line))
        seen = {(e["event"], e["kind"], e["subject"]) for e in events}
        return {
            ("raised", "cutoff", "rs/A/A2"),
            ("cleared", "link_lost", "rs/A/A2"),
            ("cleared", "link_lost", "rs/B/B2"),
        } <= seen

    run.out.until(time.monotonic() + 45, done)
    summary = [(e["event"], e["kind"], e["subject"]) for e in events]
    lost = [s for s in summary if s[1] == "link_lost"]
    # The batteries of the unplugged line, and only they, were lost and came back.
    assert sorted(s[2] for s in lost if s[0] == "raised") == ["rs/A/A2", "rs/B/B2"], summary
    assert sorted(s[2] for s in lost if s[0] == "cleared") == ["rs/A/A2", "rs/B/B2"], summary
    # The cutoff came over line B after the replug, decoded from Seplos 0x44.
    cut = [e for e in events if e["kind"] == "cutoff"]
    assert [e["subject"] for e in cut] == ["rs/A/A2"], summary
    assert cut[0]["evidence"]["discharge_enabled"] is False
    assert "discharge_overcurrent" in cut[0]["evidence"]["protections"]
    # Every lost battery was cleared before the cutoff: the line recovered on its own.
    assert summary.index(("cleared", "link_lost", "rs/A/A2")) < summary.index(
        ("raised", "cutoff", "rs/A/A2")
    )

    assert _stop(run) == 0
    assert _stop(sim) == 0
    log = run.err.rest()
    assert "Traceback" not in log
    assert "link line-b: down" in log
    down_at = log.index("link line-b: down")
    assert "link line-b: up" in log[down_at:], log
    # line A never went down
    assert "link line-a: down" not in log, log


def test_listen_only_bankwatch_decodes_what_the_inverter_asks(tmp_path: Path, procs: Any) -> None:
    cfg = tmp_path / "bank.toml"
    cfg.write_text(LISTEN.format(dir=tmp_path), encoding="utf-8")
    sim = _simulate(procs, cfg, links=1)
    run = _start(procs, "run", str(cfg), "--json", cwd=tmp_path)
    events: list[dict[str, Any]] = []

    def cutoff(line: str) -> bool:
        ev = json.loads(line)
        events.append(ev)
        return ev["kind"] == "cutoff"

    run.out.until(time.monotonic() + 30, cutoff)
    # P2's cutoff was read from the inverter's polling, attributed by address; nobody was lost.
    assert [(e["event"], e["kind"], e["subject"]) for e in events] == [
        ("raised", "cutoff", "rs/P2/P2")
    ], events
    assert events[0]["evidence"]["protections"] == ["cell_undervoltage"]
    assert events[0]["evidence"]["discharge_enabled"] is False
    assert _stop(run) == 0
    assert _stop(sim) == 0
    sim_log, run_log = sim.err.rest(), run.err.rest()
    # A listen-only host writes nothing: the simulated bus heard no byte from it.
    assert "the host wrote" not in sim_log, sim_log
    assert "link bus: up" in run_log and "listen-only" in run_log
    assert "Traceback" not in run_log + sim_log


def test_the_demo_shows_the_mixed_bank(tmp_path: Path) -> None:
    """`bankwatch demo --config configs/sim-mixed-2s2p.toml`: CAN and two RS485 lines in one
    process, the unplugged adapter and the cutoff as the config scripts them."""
    cfg = Path(__file__).resolve().parents[2] / "configs" / "sim-mixed-2s2p.toml"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    done = subprocess.run(
        [*CLI, "demo", "--config", str(cfg), "--duration", "100", "--speed", "10", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    events = [(e["event"], e["kind"], e["subject"]) for e in lines if e.get("type") == "alert"]
    assert ("raised", "link_lost", "mixed/B/B2") in events
    assert ("cleared", "link_lost", "mixed/B/B2") in events
    assert ("raised", "cutoff", "mixed/A/A2") in events
    assert {s for _, k, s in events if k == "link_lost"} == {"mixed/B/B2"}, events
    assert lines[-1]["type"] == "summary" and lines[-1]["frames"] > 0
    assert "link rs485-b: down" in done.stderr and "Traceback" not in done.stderr


async def test_a_shunt_as_the_bank_meter_catches_a_branch_that_does_not_add_up() -> None:
    """configs/sim-rv-12v-shunt.toml in one process: a VE.Direct SmartShunt (listened to, never
    written) as the bank's source beside Renogy batteries on Modbus, a JBD and a Pylontech CAN
    battery. House2's BMS starts reading its current 8 A high at 40 s: the branches no longer
    add up to the shunt's current and voltage_inconsistency names the bank, with both figures."""
    import io

    from bankwatch.daemon.config import load_config
    from bankwatch.daemon.demo import run_demo

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "sim-rv-12v-shunt.toml")
    out = io.StringIO()
    assert await run_demo(cfg, duration_s=90, speed=10, json_out=True, out=out) == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    alerts = [e for e in lines if e.get("type") == "alert"]
    raised = [e for e in alerts if e["event"] == "raised"]
    assert [(e["kind"], e["subject"]) for e in raised] == [("voltage_inconsistency", "rv")], alerts
    ev = raised[0]["evidence"]
    # The shunt measures the bank's real current; the branches report 8 A less discharge.
    assert ev["difference_a"] == pytest.approx(-8.0, abs=1.0)
    assert ev["bank_current_a"] == pytest.approx(-28.0, abs=4.0)
    assert "bank meter reads" in raised[0]["message"]
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["simulated_s"] >= 85
