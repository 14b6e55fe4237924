"""The `[links.NAME]` tables of the config file, and their translation into the links' own
settings (bankwatch.drivers.links): the links know nothing of pydantic or of this file.

    [links.can0]    type = "can", interface, channel, bitrate (see CanLinkConfig)
    [links.rs485]   type = "serial", port, baud (see SerialLinkConfig)
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from bankwatch.daemon.config_base import PositiveFloat, Strict
from bankwatch.drivers.links.can import CanLinkSettings
from bankwatch.drivers.links.serial import SerialLinkSettings

__all__ = ["CanLinkConfig", "LinkConfig", "SerialLinkConfig"]


class CanLinkConfig(Strict):
    type: Literal["can"]
    # Any python-can interface: socketcan (a Pi HAT's can0), slcan, gs_usb, socketcand, virtual…
    interface: str = "socketcan"
    channel: str = "can0"
    bitrate: Annotated[int, Field(ge=10_000, le=1_000_000)] = 500_000
    # socketcand only: the server that serves the bus.
    host: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    # slcan and other serial adapters: the adapter's serial speed.
    tty_baudrate: Annotated[int, Field(gt=0)] | None = None
    # No frame for this long marks the link down (python-can may never notice a vanished adapter).
    silence_timeout_s: PositiveFloat = 5.0
    # Polled protocols (daly-can): how often each battery on this bus is asked.
    poll_interval_s: PositiveFloat = 1.0
    # Send the inverter keep-alive (0x305) once a second, for a bus where bankwatch is the only
    # receiver. Off by default: bankwatch only listens beside an inverter.
    send_keepalive: bool = False

    @model_validator(mode="after")
    def _socketcand_needs_server(self) -> CanLinkConfig:
        if self.interface == "socketcand" and (self.host is None or self.port is None):
            raise ValueError("interface 'socketcand' needs host and port")
        return self

    def settings(self) -> CanLinkSettings:
        """What the link itself needs (polling and the keep-alive are the daemon's)."""
        return CanLinkSettings(
            interface=self.interface,
            channel=self.channel,
            bitrate=self.bitrate,
            host=self.host,
            port=self.port,
            tty_baudrate=self.tty_baudrate,
            silence_timeout_s=self.silence_timeout_s,
        )


class SerialLinkConfig(Strict):
    type: Literal["serial"]
    port: str
    baud: Annotated[int, Field(gt=0)] = 9600
    # An inverter or a master pack already polls this bus: send nothing, decode what is heard.
    listen_only: bool = False
    # The adapter hears what it sends (some 2-wire RS485 adapters): drop our own request.
    echo: bool = False
    # Start a poll sweep this often (a sweep that takes longer starts the next at once).
    poll_interval_s: PositiveFloat = 1.0
    # Overrides of the protocol's own timing: quiet time after a reply before the next request,
    # how long a reply may take to start, and how often a request is repeated unanswered.
    gap_s: Annotated[float, Field(ge=0)] | None = None
    reply_timeout_s: PositiveFloat | None = None
    retries: Annotated[int, Field(ge=0, le=10)] = 1
    # Listen-only: nothing heard for this long marks the line silent.
    silence_timeout_s: PositiveFloat = 10.0

    def settings(self) -> SerialLinkSettings:
        return SerialLinkSettings(
            port=self.port,
            baud=self.baud,
            listen_only=self.listen_only,
            echo=self.echo,
            poll_interval_s=self.poll_interval_s,
            gap_s=self.gap_s,
            reply_timeout_s=self.reply_timeout_s,
            retries=self.retries,
            silence_timeout_s=self.silence_timeout_s,
        )


LinkConfig = Annotated[CanLinkConfig | SerialLinkConfig, Field(discriminator="type")]
