"""Links take small settings of their own; the daemon translates its [links] config into them."""

from __future__ import annotations

import pytest

from bankwatch.daemon.link_config import CanLinkConfig, SerialLinkConfig
from bankwatch.drivers.links.can import CanLinkSettings
from bankwatch.drivers.links.serial import SerialLinkSettings


def test_a_can_config_becomes_the_links_settings() -> None:
    cfg = CanLinkConfig(
        type="can",
        interface="socketcand",
        channel="can1",
        host="10.0.0.2",
        port=29536,
        silence_timeout_s=3.0,
        poll_interval_s=0.5,
        send_keepalive=True,
    )
    assert cfg.settings() == CanLinkSettings(
        interface="socketcand",
        channel="can1",
        bitrate=500_000,
        host="10.0.0.2",
        port=29536,
        silence_timeout_s=3.0,
    )


def test_a_serial_config_becomes_the_lines_settings() -> None:
    cfg = SerialLinkConfig(
        type="serial", port="/dev/ttyUSB0", baud=19200, listen_only=True, gap_s=0.05, retries=3
    )
    assert cfg.settings() == SerialLinkSettings(
        port="/dev/ttyUSB0", baud=19200, listen_only=True, gap_s=0.05, retries=3
    )


def test_socketcand_settings_without_a_server_are_refused() -> None:
    with pytest.raises(ValueError, match="'socketcand' needs host and port"):
        CanLinkSettings(interface="socketcand", host="localhost")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"baud": 0}, "baud must be > 0"), ({"retries": -1}, "retries must be >= 0")],
)
def test_nonsense_serial_settings_are_refused(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SerialLinkSettings(port="/dev/ttyUSB0", **kwargs)  # type: ignore[arg-type]


def test_settings_are_frozen() -> None:
    s = CanLinkSettings()
    with pytest.raises(AttributeError):
        s.channel = "can9"  # type: ignore[misc]
