"""The daemon started the way systemd/bankwatch.service starts it: the unit's ExecStartPre and
ExecStart command lines (with the venv's `bankwatch` and a test config in place of the
installed paths) and the environment systemd gives a Type=notify service with a watchdog: a
`NOTIFY_SOCKET` this test listens on, `WATCHDOG_USEC`, and `JOURNAL_STREAM` naming its stderr.
The batteries are `bankwatch simulate` serving socketcand on a free loopback port.

What systemd would see: READY=1 with the bank in STATUS=, WATCHDOG=1 about every WatchdogSec/2,
STOPPING=1 and a clean exit within the unit's TimeoutStopSec on SIGTERM; with the event loop
blocked (the SIGUSR1 test hook), no WATCHDOG=1 for longer than WatchdogSec, which is when
systemd restarts the service. Counts are loose on purpose: other tests share the machine.
"""

from __future__ import annotations

import ctypes
import itertools
import mmap
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import REPO

UNIT = REPO / "systemd" / "bankwatch.service"
INSTALLED_BIN = "/opt/bankwatch/venv/bin/bankwatch"
INSTALLED_CONFIG = "/etc/bankwatch/bankwatch.toml"
BANKWATCH = str(Path(sys.executable).with_name("bankwatch"))
WATCHDOG_USEC = 2_000_000  # pings every second


def unit_settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Za-z]+)=(.*)$", line)
        if m:
            out.setdefault(m.group(1), []).append(m.group(2))
    return out


def unit_command(key: str, config: Path) -> list[str]:
    (line,) = unit_settings()[key]
    argv = shlex.split(line)
    assert argv[0] == INSTALLED_BIN, argv
    assert INSTALLED_CONFIG in argv, argv
    return [BANKWATCH] + [str(config) if a == INSTALLED_CONFIG else a for a in argv[1:]]


def _seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+)(s|min)?", value.strip())
    assert m, value
    return float(m.group(1)) * (60 if m.group(2) == "min" else 1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sim_config(port: int) -> str:
    text = (REPO / "configs" / "sim-48v-4s2p.toml").read_text(encoding="utf-8")
    head, _, _ = text.partition("[[simulation.faults]]")  # no faults: a steady bank
    return head.replace("port = 29536", f"port = {port}")


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    port = _free_port()
    folder = tmp_path_factory.mktemp("sim")
    text = sim_config(port)
    (folder / "sim.toml").write_text(text, encoding="utf-8")
    proc = subprocess.Popen(
        [BANKWATCH, "simulate", str(folder / "sim.toml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None, "bankwatch simulate exited"
                assert time.monotonic() < deadline, "bankwatch simulate did not listen"
                time.sleep(0.05)
        yield port, text
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Service:
    """One `bankwatch run` as systemd would run it, and what it sent to NOTIFY_SOCKET."""

    proc: subprocess.Popen[bytes]
    sock: socket.socket
    stderr_path: Path
    got: list[tuple[float, str]] = field(default_factory=list)

    def pump(self, seconds: float, until: Callable[[str], bool] | None = None) -> str | None:
        """Collect datagrams for up to `seconds`; return the first that satisfies `until`."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(min(left, 0.5))
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                if until is not None and self.proc.poll() is not None:
                    pytest.fail(f"the service exited ({self.proc.returncode}): {self.stderr()}")
                continue
            self.got.append((time.monotonic(), data))
            if until is not None and until(data):
                return data
        return None

    def pings(self, since: float = 0.0) -> list[float]:
        return [t for t, d in self.got if "WATCHDOG=1" in d.split("\n") and t >= since]

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def eventually_in_stderr(self, text: str, timeout: float = 10.0) -> bool:
        """The log line may land a moment after the datagram that prompted the check."""
        deadline = time.monotonic() + timeout
        while text not in self.stderr():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    started: list[Service] = []

    def _start(config_text: str, extra_env: dict[str, str] | None = None) -> Service:
        cfg = tmp_path / "bankwatch.toml"
        cfg.write_text(config_text, encoding="utf-8")
        # ExecStartPre first, exactly as the unit runs it.
        pre = subprocess.run(
            unit_command("ExecStartPre", cfg), capture_output=True, text=True, timeout=60
        )
        assert pre.returncode == 0, pre.stderr
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(tmp_path / "notify"))
        stderr_path = tmp_path / "stderr"
        with open(stderr_path, "wb") as err:
            st = os.fstat(err.fileno())
            env = {
                k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))
            }
            env.update(
                NOTIFY_SOCKET=str(tmp_path / "notify"),
                WATCHDOG_USEC=str(WATCHDOG_USEC),
                JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}",
                PYTHONUNBUFFERED="1",
                **(extra_env or {}),
            )
            proc = subprocess.Popen(
                unit_command("ExecStart", cfg),
                stdout=subprocess.DEVNULL,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=env,
                preexec_fn=_preexec(extra_env),
            )
        svc = Service(proc, sock, stderr_path)
        started.append(svc)
        return svc

    yield _start
    for svc in started:
        if svc.proc.poll() is None:
            svc.proc.kill()
            svc.proc.wait()
        svc.sock.close()


# MemoryDenyWriteExecute= in the unit: the kernel's own switch for it (Linux 6.3+), set in the
# child before exec and inherited by the daemon, shows Python and every library it loads run
# without writable+executable memory.
PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1
MDWE_ENV = "TEST_MDWE"


def _preexec(extra_env: dict[str, str] | None) -> Callable[[], None] | None:
    if not extra_env or MDWE_ENV not in extra_env:
        return None

    def set_mdwe() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE)")

    return set_mdwe


def _mdwe_supported() -> bool:
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import ctypes,sys; l=ctypes.CDLL(None); "
            f"sys.exit(l.prctl({PR_SET_MDWE},{PR_MDWE_REFUSE_EXEC_GAIN},0,0,0) != 0)",
        ],
        timeout=30,
    )
    return probe.returncode == 0


def _stop(svc: Service) -> tuple[int, float]:
    timeout = _seconds(unit_settings()["TimeoutStopSec"][0])
    t0 = time.monotonic()
    svc.proc.send_signal(signal.SIGTERM)
    stopping = svc.pump(timeout, until=lambda d: "STOPPING=1" in d.split("\n"))
    assert stopping is not None, f"no STOPPING=1 after SIGTERM; got {svc.got}"
    try:
        code = svc.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"not stopped within TimeoutStopSec={timeout:g} s of SIGTERM")
    return code, time.monotonic() - t0


def _ready(svc: Service) -> str:
    # TimeoutStartSec of the unit; READY is capped at 30 s by the daemon itself.
    ready = svc.pump(60, until=lambda d: "READY=1" in d.split("\n"))
    assert ready is not None, f"no READY=1; got {svc.got}\n{svc.stderr()}"
    return ready


def test_unit_start_ready_watchdog_and_clean_stop(
    simulator: tuple[int, str], start: Callable[..., Service]
) -> None:
    _, config = simulator
    svc = start(config)
    ready = _ready(svc)
    status = dict(line.split("=", 1) for line in ready.split("\n"))["STATUS"]
    assert re.match(r"sim: \d+\.\d\d V [+-]\d+\.\d A SOC \d+\.\d %, 8/8 batteries live", status)
    assert status.endswith("links 8/8 up"), status
    ready_at = svc.got[-1][0]

    svc.pump(5)
    pings = svc.pings(since=ready_at)
    # About five are due (one a second: WATCHDOG_USEC/2); a loaded machine may delay some.
    assert 2 <= len(pings) <= 8, pings

    code, _ = _stop(svc)
    assert code == 0
    err = svc.stderr()
    assert "Traceback" not in err
    # Under the journal: a syslog priority per line, no level names (journald keeps the level).
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and all(re.match(r"<[2-7]>", line) for line in lines), lines[:5]
    assert "<6>bankwatch.daemon.service: stopped" in lines


def test_a_dead_adapter_does_not_block_ready(
    simulator: tuple[int, str], start: Callable[..., Service]
) -> None:
    port, config = simulator
    dead = _free_port()
    # B4's socketcand server is not there: its first open fails, and READY comes anyway.
    text = config.replace(f'port = {port}\nchannel = "b4"', f'port = {dead}\nchannel = "b4"')
    assert text != config
    svc = start(text)
    ready = _ready(svc)
    assert ready.endswith("links 7/8 up"), ready
    assert svc.eventually_in_stderr("ready with 7 of 8 link(s) up"), svc.stderr()
    code, _ = _stop(svc)
    assert code == 0


def test_a_blocked_event_loop_stops_the_watchdog_pings(
    simulator: tuple[int, str], start: Callable[..., Service]
) -> None:
    _, config = simulator
    stall_s = 4.0
    svc = start(config, {"BANKWATCH_TEST_STALL_S": str(stall_s)})
    _ready(svc)
    svc.pump(2.5)
    assert len(svc.pings()) >= 2, svc.got
    blocked_at = time.monotonic()
    svc.proc.send_signal(signal.SIGUSR1)
    svc.pump(stall_s + 3)
    after = svc.pings(since=blocked_at)
    assert after, "the pings never came back after the stall"
    before = [t for t in svc.pings() if t < blocked_at]
    gaps = [b - a for a, b in itertools.pairwise([before[-1], *after])]
    # systemd restarts a service whose pings stop for WatchdogSec; this one would have been.
    assert max(gaps) > WATCHDOG_USEC / 1e6, gaps
    assert max(gaps) >= stall_s - 1.0, gaps
    assert svc.eventually_in_stderr("test hook: blocking the event loop"), svc.stderr()
    code, _ = _stop(svc)
    assert code == 0


def test_runs_without_writable_executable_memory(
    simulator: tuple[int, str], start: Callable[..., Service]
) -> None:
    """The unit sets MemoryDenyWriteExecute=yes: the daemon must reach READY and stop cleanly
    with the kernel refusing it W+X memory."""
    if not _mdwe_supported():
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3+)")
    # The switch works: a W+X mapping is refused in a child that set it.
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import ctypes,mmap,sys\n"
            f"ctypes.CDLL(None).prctl({PR_SET_MDWE},{PR_MDWE_REFUSE_EXEC_GAIN},0,0,0)\n"
            "try:\n"
            f"    mmap.mmap(-1, 4096, prot={mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC})\n"
            "except PermissionError:\n"
            "    sys.exit(0)\n"
            "sys.exit(1)\n",
        ],
        timeout=30,
    )
    assert probe.returncode == 0, "PR_SET_MDWE did not refuse a W+X mapping"
    _, config = simulator
    svc = start(config, {MDWE_ENV: "1"})
    ready = _ready(svc)
    assert ready.endswith("links 8/8 up"), ready
    svc.pump(2)
    code, _ = _stop(svc)
    assert code == 0
    assert "Traceback" not in svc.stderr()
