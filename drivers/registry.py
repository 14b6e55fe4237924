"""One table of the protocols bankwatch speaks: what kind of link each needs, how its devices are
addressed, and the driver that turns its frames into Readings. The config validates against it;
the service builds drivers from it.

Adding a BMS: write its codec and driver module, then add one row here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from bankwatch.daemon.model import Reading
from bankwatch.drivers.daly_can import DalyCanDriver
from bankwatch.drivers.pylontech_can import PylontechCanDriver

__all__ = ["PROTOCOLS", "CanDriver", "ProtocolInfo", "protocol_info"]

LinkKind = Literal["can", "serial"]


class CanDriver(Protocol):
    """A driver that listens on a CAN link: fed every frame, it keeps its own (True) and
    ignores the rest (False); `reading` is what its frames say so far. Frames arrive faster
    than anyone reads them, so a driver may put the Reading together only when asked."""

    protocol: str

    def on_frame(self, can_id: int, data: bytes, extended: bool, now: float) -> bool: ...

    @property
    def reading(self) -> Reading: ...


@dataclass(frozen=True, slots=True)
class ProtocolInfo:
    name: str
    link_kind: LinkKind
    # "broadcast": the device talks unasked and has no address, so a link carries one of them.
    # "addressed": request/response by address; many devices share a link.
    addressing: Literal["broadcast", "addressed"]
    summary: str
    # Builds the driver for one device: (subject, address) -> driver.
    can_driver: Callable[[str, int | None], CanDriver] | None = None


PROTOCOLS: dict[str, ProtocolInfo] = {
    p.name: p
    for p in (
        ProtocolInfo(
            name="pylontech-can",
            link_kind="can",
            addressing="broadcast",
            summary="Pylontech low-voltage CAN broadcast (0x351-0x35F, 0x370-0x382), "
            "500 kbit/s; also what SMA/Victron-profile, BYD, Pytes and Discover BMS send",
            can_driver=lambda subject, _address: PylontechCanDriver(subject),
        ),
        ProtocolInfo(
            name="daly-can",
            link_kind="can",
            addressing="addressed",
            summary="Daly BMS on CAN, 250 kbit/s, 29-bit ids: polled per BMS address",
            can_driver=lambda subject, address: DalyCanDriver(
                subject, 1 if address is None else address
            ),
        ),
    )
}


def protocol_info(name: str) -> ProtocolInfo | None:
    return PROTOCOLS.get(name)
