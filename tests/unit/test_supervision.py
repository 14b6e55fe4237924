"""What `bankwatch run` adds under systemd: READY once the links have had their first outcome
(a dead adapter must not hold up boot), STATUS, the journal log format, credentials, and the
pre-start check the unit runs (`check --config-only`)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bankwatch.daemon.cli import main
from bankwatch.daemon.config import parse_config
from bankwatch.daemon.credentials import find_secret
from bankwatch.daemon.journal import JournalFormatter, on_journal
from bankwatch.daemon.sdnotify import Notifier
from bankwatch.daemon.service import Monitor
from bankwatch.daemon.supervision import SystemdSink
from bankwatch.drivers.clock import ManualClock, SystemClock
from bankwatch.drivers.errors import ConfigError
from tests.helpers import REPO

ONE_LINK = """
[bank]
name = "t"
chemistry = "lifepo4"
nominal_voltage_v = 12

[models.m]
capacity_ah = 100
nominal_voltage_v = 12.8
chemistry = "lifepo4"

[links.can]
type = "can"
interface = "socketcand"
host = "127.0.0.1"
port = {port}
channel = "can0"

[[strings]]
name = "P1"
batteries = [
  {{ name = "b1", model = "m", source = {{ link = "can", protocol = "pylontech-can" }} }},
]
"""


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: connecting is refused


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, Notifier]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    notifier = Notifier(str(tmp_path / "notify"))
    yield sock, notifier
    notifier.close()
    sock.close()


def _received(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


# --- readiness -----------------------------------------------------------------------------------


def test_ready_is_capped_when_a_link_never_settles(
    listener: tuple[socket.socket, Notifier],
) -> None:
    sock, notifier = listener
    clock = ManualClock()
    sink = SystemdSink(notifier, ready_timeout_s=30)
    monitor = Monitor(parse_config(ONE_LINK.format(port=_dead_port())), clock, [sink])
    # Not run: its link stays "starting", as one whose open hangs would.
    for _ in range(29):
        state, events = monitor.tick(clock.monotonic())
        sink.on_tick(monitor.snapshot(state, events))
        clock.advance(1)
    assert not sink.ready and _received(sock) == []
    clock.advance(1)
    state, events = monitor.tick(clock.monotonic())
    sink.on_tick(monitor.snapshot(state, events))
    assert sink.ready
    (msg,) = _received(sock)
    assert msg.startswith("READY=1\nSTATUS=t: ")
    assert msg.endswith("links 0/1 up")
    # The status is not sent again while it does not change.
    for _ in range(30):
        clock.advance(1)
        state, events = monitor.tick(clock.monotonic())
        sink.on_tick(monitor.snapshot(state, events))
    assert _received(sock) == []


def test_ready_is_sent_again_until_systemd_gets_it(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "notify"))  # nobody listens yet
    clock = ManualClock()
    sink = SystemdSink(notifier, ready_timeout_s=0)
    monitor = Monitor(parse_config(ONE_LINK.format(port=_dead_port())), clock, [sink])
    state, events = monitor.tick(clock.monotonic())
    sink.on_tick(monitor.snapshot(state, events))
    assert not sink.ready
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    try:
        clock.advance(1)
        state, events = monitor.tick(clock.monotonic())
        sink.on_tick(monitor.snapshot(state, events))
        assert sink.ready
        (msg,) = _received(sock)
        assert msg.startswith("READY=1\n")
    finally:
        notifier.close()
        sock.close()


async def test_a_dead_adapter_does_not_hold_up_ready(
    listener: tuple[socket.socket, Notifier], caplog: pytest.LogCaptureFixture
) -> None:
    """The link's first open fails (nothing listens on its port): the link is down, which is
    an outcome, so READY comes long before the cap."""
    sock, notifier = listener
    sink = SystemdSink(notifier, ready_timeout_s=600)
    monitor = Monitor(
        parse_config(ONE_LINK.format(port=_dead_port())), SystemClock(), [sink], tick_s=0.05
    )
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    try:
        async with asyncio.timeout(20):
            while not sink.ready:
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert monitor.link_statuses()[0].state == "down"
    msgs = _received(sock)
    assert msgs and msgs[0].startswith("READY=1\n") and "links 0/1 up" in msgs[0]
    assert "ready with 0 of 1 link(s) up" in caplog.text


# --- the journal ---------------------------------------------------------------------------------


def _record(level: int, msg: str, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("bankwatch.x", level, __file__, 1, msg, (), exc_info)


@pytest.mark.parametrize(
    ("level", "prefix"),
    [
        (logging.DEBUG, "<7>"),
        (logging.INFO, "<6>"),
        (logging.WARNING, "<4>"),
        (logging.ERROR, "<3>"),
        (logging.CRITICAL, "<2>"),
    ],
)
def test_journal_lines_carry_the_syslog_priority(level: int, prefix: str) -> None:
    assert JournalFormatter().format(_record(level, "link can0: down")) == (
        f"{prefix}bankwatch.x: link can0: down"
    )


def test_every_line_of_a_traceback_keeps_the_priority() -> None:
    lines = JournalFormatter().format(_record(logging.ERROR, "failed", exc=True)).split("\n")
    assert len(lines) > 3
    assert all(line.startswith("<3>") for line in lines), lines
    assert lines[-1] == "<3>ValueError: boom"


def test_on_journal_only_for_the_stream_systemd_connected(tmp_path: Path) -> None:
    with open(tmp_path / "a", "w") as a, open(tmp_path / "b", "w") as b:
        st = os.fstat(a.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert on_journal(a, env)
        assert not on_journal(b, env)  # stderr redirected elsewhere since
        assert not on_journal(a, {})
        assert not on_journal(a, {"JOURNAL_STREAM": "garbage"})


# --- credentials and state -----------------------------------------------------------------------


def test_credentials_from_the_folder_the_unit_loads(tmp_path: Path) -> None:
    """The unit loads /etc/bankwatch/credentials/ as one folder credential: systemd names its
    files bankwatch_FILE; a credential passed under its plain name is found too."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "bankwatch_mqtt-password").write_text("s3cret\n")
    (creds / "influx-token").write_text("tok")
    env = {"CREDENTIALS_DIRECTORY": str(creds)}

    def lookup(name: str, environ: dict[str, str]) -> str | None:
        secret = find_secret(name, file=None, credential=name, env="NO_SUCH_VAR", environ=environ)
        return None if secret is None else secret.reveal()

    assert lookup("mqtt-password", env) == "s3cret"
    assert lookup("influx-token", env) == "tok"
    assert lookup("influx-password", env) is None
    assert lookup("mqtt-password", {}) is None


def test_an_unreadable_credential_is_an_error_naming_it(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    (creds / "bankwatch_mqtt-password").mkdir(parents=True)  # a folder where a file should be
    with pytest.raises(ConfigError, match="cannot read the MQTT password"):
        find_secret(
            "MQTT password",
            file=None,
            credential="mqtt-password",
            env="NO_SUCH_VAR",
            environ={"CREDENTIALS_DIRECTORY": str(creds)},
        )


# --- the pre-start check -------------------------------------------------------------------------


def test_config_only_passes_a_badly_wired_bank_that_check_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Wiring errors (here: 100 Ah and 200 Ah batteries in series) make `check` exit 1, but the
    unit's pre-start check lets the monitor start and watch that bank."""
    text = (REPO / "configs" / "cabin-24v-2s.toml").read_text()
    text = text.replace(
        "[links.can0]",
        "[models.lfp12-100]\ncapacity_ah = 100\nnominal_voltage_v = 12.8\n"
        'chemistry = "lifepo4"\n\n[links.can0]',
    ).replace('{ name = "high", model = "lfp12-200"', '{ name = "high", model = "lfp12-100"')
    cfg = tmp_path / "cabin.toml"
    cfg.write_text(text)
    assert main(["check", str(cfg)]) == 1
    assert "series_unequal_capacity" in capsys.readouterr().out
    assert main(["check", "--config-only", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{cfg}: config is valid\n")
    assert "string S" in out and "series_unequal_capacity" not in out


def test_config_only_fails_a_bad_config_with_the_message_check_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "bad.toml"
    text = (REPO / "configs" / "cabin-24v-2s.toml").read_text()
    cfg.write_text(text.replace("bitrate = 500000", "bitrate = 5"))
    assert main(["check", str(cfg)]) == 2
    want = capsys.readouterr()
    assert main(["check", "--config-only", str(cfg)]) == 2
    got = capsys.readouterr()
    assert got.err == want.err and "links.can0.bitrate" in got.err
    assert got.out == want.out == ""
