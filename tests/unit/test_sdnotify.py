"""sd_notify: datagrams to $NOTIFY_SOCKET (a path or an abstract `@name`), the watchdog period
from $WATCHDOG_USEC, and never an exception when systemd cannot be reached."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from bankwatch.daemon.sdnotify import Notifier, watchdog_period_s


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def test_assignments_arrive_in_one_datagram(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.notify("READY=1", "STATUS=bank ok")
    assert sock.recv(4096) == b"READY=1\nSTATUS=bank ok"
    n.close()


def test_a_newline_inside_a_value_cannot_forge_another_assignment(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    n = Notifier(path)
    n.notify("STATUS=one\nREADY=1")
    assert sock.recv(4096) == b"STATUS=one READY=1"
    n.close()


def test_abstract_namespace_socket() -> None:
    name = f"bankwatch-test-{os.getpid()}-{id(object())}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(5)
    try:
        n = Notifier(f"@{name}")
        assert n.notify("WATCHDOG=1")
        assert sock.recv(4096) == b"WATCHDOG=1"
        n.close()
    finally:
        sock.close()


def test_without_notify_socket_nothing_is_sent() -> None:
    n = Notifier.from_env({})
    assert not n.enabled
    assert n.notify("READY=1") is False


def test_unsupported_address_is_refused_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        n = Notifier("vsock:2:1234")
    assert not n.enabled and not n.notify("READY=1")
    assert "unsupported address" in caplog.text


def test_nobody_listening_is_logged_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = Notifier(str(tmp_path / "gone"))
    with caplog.at_level(logging.INFO):
        results = [n.notify("WATCHDOG=1") for _ in range(3)]
    assert results == [False, False, False]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "cannot notify systemd" in warnings[0].getMessage()
    # and when systemd's socket is there again, it says so and sends
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "gone"))
    sock.settimeout(5)
    with caplog.at_level(logging.INFO):
        assert n.notify("WATCHDOG=1")
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert "notifying systemd" in caplog.records[-1].getMessage()
    sock.close()
    n.close()


@pytest.mark.parametrize(
    ("env", "want"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "4242"}, 1.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "999"}, 0.0),  # another process's
        ({"WATCHDOG_USEC": "0"}, 0.0),
        ({"WATCHDOG_USEC": "soon"}, 0.0),
        ({}, 0.0),
    ],
)
def test_watchdog_period_is_half_the_timeout_for_this_process(
    env: dict[str, str], want: float
) -> None:
    assert watchdog_period_s(env, pid=4242) == want
