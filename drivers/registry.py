"""One table of the protocols bankwatch speaks: what kind of link each needs, how its devices are
addressed, its codec (frames to fields, and a Reading back to frames) and the driver that turns
its frames into Readings. The config validates against it; the service builds drivers from it;
`bankwatch decode`, `sniff`, `scan`, `replay` and the simulator find codecs and encoders here.
Nothing outside this table names a protocol.

Adding a BMS: write its module (codec, and for CAN its driver), then add one row here (see the
README, Development).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from bankwatch.drivers import (
    daly,
    daly_can,
    jbd,
    jk_b,
    jk_pb,
    pylontech_can,
    pylontech_rs485,
    seplos_v3,
    vedirect,
)
from bankwatch.drivers.modbus_map import RegisterMapCodec
from bankwatch.drivers.model import Reading
from bankwatch.drivers.serial_codec import SerialCodec

__all__ = [
    "MAP_PREFIX",
    "PROTOCOLS",
    "CanDecoder",
    "CanDriver",
    "CanDriverFactory",
    "CanEncoder",
    "CanFrame",
    "ProtocolInfo",
    "can_protocols",
    "protocol_info",
    "serial_codec_for",
    "serial_codecs",
    "serial_protocols",
]

LinkKind = Literal["can", "serial"]


class CanDriver(Protocol):
    """A driver that listens on a CAN link: fed every frame, it keeps its own (True) and
    ignores the rest (False); `reading` is what its frames say so far. Frames arrive faster
    than anyone reads them, so a driver may put the Reading together only when asked."""

    protocol: str

    def on_frame(self, can_id: int, data: bytes, extended: bool, now: float) -> bool: ...

    @property
    def reading(self) -> Reading: ...

    @property
    def warnings(self) -> list[str]:
        """What the frames so far contradict (a scale, a sign): shown by `decode`."""
        ...


class CanDriverFactory(Protocol):
    """Builds the driver for one device: `log_warnings=False` when the caller shows the
    warnings itself (`bankwatch decode`)."""

    def __call__(
        self, subject: str, address: int | None, *, log_warnings: bool = True
    ) -> CanDriver: ...


# (CAN id, data, extended id)
CanFrame = tuple[int, bytes, bool]
# One frame to the partial Reading it carries. Raises UnknownCommandError for a frame that is
# not this protocol's (`sniff` then asks the next protocol) and another FrameError for one
# that is, but broken.
CanDecoder = Callable[[int, bytes, bool], Reading]
# A Reading (and the device's address, None for a broadcast) to the frames the device sends:
# a broadcast protocol's whole cycle, an addressed one's replies to one whole poll.
CanEncoder = Callable[[Reading, int | None], list[CanFrame]]


@dataclass(frozen=True, slots=True)
class ProtocolInfo:
    name: str
    link_kind: LinkKind
    # "broadcast": the device talks unasked and has no address, so a link carries one of them.
    # "addressed": request/response by address; many devices share a link.
    addressing: Literal["broadcast", "addressed"]
    summary: str
    # CAN protocols: the driver factory, the codec and the encoder (all three are set).
    can_driver: CanDriverFactory | None = None
    can_decode: CanDecoder | None = None
    can_encode: CanEncoder | None = None
    # Addressed CAN protocols: the device address a frame is from (a reply) or to (a request).
    can_address_of: Callable[[int], int] | None = None
    # Serial protocols: the codec (see drivers/serial_codec.py); the line polls or listens
    # through it with the generic PollDriver / ListenDriver.
    serial_codec: SerialCodec | None = None
    # Serial protocols whose codec depends on the battery's source (modbus-map: its map):
    # (map reference, the config's inline maps, the config's folder) -> codec.
    serial_codec_factory: (
        Callable[[str | None, Mapping[str, Any], str | None], SerialCodec] | None
    ) = None


def _pylontech_can_driver(
    subject: str, address: int | None, *, log_warnings: bool = True
) -> CanDriver:
    return pylontech_can.PylontechCanDriver(subject, log_warnings=log_warnings)


def _daly_can_driver(subject: str, address: int | None, *, log_warnings: bool = True) -> CanDriver:
    return daly_can.DalyCanDriver(
        subject, 1 if address is None else address, log_warnings=log_warnings
    )


def _serial(
    codec: SerialCodec,
    summary: str,
    addressing: Literal["broadcast", "addressed"] = "addressed",
) -> ProtocolInfo:
    """The row of a serial protocol, read through its codec. A protocol without a bus address
    (JBD, JK-B) is "broadcast" here in the registry's sense: one device per link."""
    return ProtocolInfo(
        name=codec.PROTOCOL,
        link_kind="serial",
        addressing=addressing,
        summary=summary,
        serial_codec=codec,
    )


PROTOCOLS: dict[str, ProtocolInfo] = {
    p.name: p
    for p in (
        ProtocolInfo(
            name="pylontech-can",
            link_kind="can",
            addressing="broadcast",
            summary="Pylontech low-voltage CAN broadcast (0x351-0x35F, 0x370-0x382), "
            "500 kbit/s; also what SMA/Victron-profile, BYD, Pytes and Discover BMS send",
            can_driver=_pylontech_can_driver,
            can_decode=lambda i, d, e: pylontech_can.decode_frame(i, d, extended=e),
            can_encode=lambda r, _a: [(i, d, False) for i, d in pylontech_can.encode_reading(r)],
        ),
        ProtocolInfo(
            name="daly-can",
            link_kind="can",
            addressing="addressed",
            summary="Daly BMS on CAN, 250 kbit/s, 29-bit ids: polled per BMS address",
            can_driver=_daly_can_driver,
            can_decode=lambda i, d, e: daly_can.decode_reply(i, d, extended=e),
            can_encode=daly_can.encode_poll,
            can_address_of=daly_can.bms_address_of,
        ),
        # --- serial: one row per protocol -------------------------------------------------
        _serial(pylontech_rs485.PYLONTECH, pylontech_rs485.PYLONTECH.summary),
        _serial(pylontech_rs485.SEPLOS_V2, pylontech_rs485.SEPLOS_V2.summary),
        _serial(pylontech_rs485.PACE, pylontech_rs485.PACE.summary),
        _serial(pylontech_rs485.EG4, pylontech_rs485.EG4.summary),
        _serial(
            seplos_v3,
            "Seplos v3 (Modbus RTU, 19200 baud): PIA/PIB/PIC blocks per pack, EIA/EIB/EIC "
            "bank aggregates on the master (address 0)",
        ),
        _serial(
            daly,
            "Daly BMS (0xA5 frames, 9600 baud): 0x90-0x98, multi-frame cell and temperature "
            "lists; address = board number (1 for a single BMS), or the host byte 0x80",
        ),
        _serial(
            jbd,
            "JBD / Xiaoxiang / Overkill (0xDD frames, 9600 baud): 0x03 basic info, 0x04 cells, "
            "0x05 model; no bus address: one BMS per line",
            addressing="broadcast",
        ),
        _serial(
            jk_b,
            "JK-B BMS (0x4E 0x57 read-all, 115200 baud); no bus address: one BMS per line",
            addressing="broadcast",
        ),
        _serial(
            jk_pb,
            "JK-PB inverter BMS (0x55AA frames of its bus-master protocol, 115200 baud); "
            "address = DIP switch 1-15 (0 makes a pack the bus master: listen instead)",
        ),
        _serial(
            vedirect,
            "Victron VE.Direct text protocol (19200 baud): a SmartShunt or BMV battery monitor "
            "as the bank's meter; it talks unasked, so its line only listens",
            addressing="broadcast",
        ),
        ProtocolInfo(
            name="modbus-map",
            link_kind="serial",
            addressing="addressed",
            summary="any Modbus RTU BMS described by a register map (source.map)",
            serial_codec_factory=lambda ref, inline, folder: _map_codec(ref, inline, folder),
        ),
    )
}


# `bankwatch decode`, `scan` and `sniff` name a shipped register map as a protocol of its own:
# "modbus-map:renogy-smart-lfp" is protocol "modbus-map" with map "renogy-smart-lfp".
MAP_PREFIX = "modbus-map:"


def protocol_info(name: str) -> ProtocolInfo | None:
    """The row of a protocol, or of "modbus-map" for a "modbus-map:MAP" name."""
    if name.startswith(MAP_PREFIX):
        return PROTOCOLS.get("modbus-map")
    return PROTOCOLS.get(name)


def _map_codec(ref: str | None, inline: Mapping[str, Any], folder: str | None) -> SerialCodec:
    # Local: the map schema brings pydantic, which decoding a built-in protocol never needs.
    from bankwatch.drivers.errors import ConfigError
    from bankwatch.drivers.modbus_map_schema import resolve_map

    if ref is None:
        raise ConfigError("modbus-map", ["a battery on protocol 'modbus-map' needs source.map"])
    return RegisterMapCodec(resolve_map(ref, inline=inline, config_dir=folder))


def serial_codec_for(
    protocol: str,
    map_ref: str | None = None,
    inline_maps: Mapping[str, Any] | None = None,
    config_dir: str | None = None,
) -> SerialCodec | None:
    """The codec a battery on a serial protocol is read with; None for a CAN protocol. Raises
    ConfigError when a map-described protocol's map cannot be found or is invalid."""
    info = PROTOCOLS.get(protocol)
    if info is None:
        return None
    if info.serial_codec is not None:
        return info.serial_codec
    if info.serial_codec_factory is not None:
        return info.serial_codec_factory(map_ref, inline_maps or {}, config_dir)
    return None


def can_protocols() -> dict[str, ProtocolInfo]:
    """Every CAN protocol's row, by name, in table order (the order `sniff` tries them in)."""
    return {n: p for n, p in PROTOCOLS.items() if p.link_kind == "can"}


def serial_protocols() -> dict[str, SerialCodec]:
    """Every serial protocol's codec, by name (for decode, scan and sniff)."""
    return {n: p.serial_codec for n, p in PROTOCOLS.items() if p.serial_codec is not None}


def serial_codecs() -> dict[str, SerialCodec]:
    """Every serial protocol's codec and every shipped register map's, by the name decode,
    scan and sniff take ("modbus-map:NAME" for a map)."""
    from bankwatch.drivers.modbus_map_schema import SHIPPED_MAPS

    out = serial_protocols()
    for path in sorted(SHIPPED_MAPS.glob("*.toml")):
        out[MAP_PREFIX + path.stem] = _map_codec(path.stem, {}, None)
    return out
