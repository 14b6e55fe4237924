"""Daly BMS over CAN: request and response per BMS address, polled by the host.

Protocol: Daly CAN V1.0 and the Daly UART/RS485 V1.2 data tables (shared/vectors/PROTOCOLS.md
section 4). CAN 2.0B at 250 kbit/s, 29-bit ids `0x18 | data id | destination | source`: the host
(0x40) asks BMS 0x01 for SOC with id 0x18900140 and 8 zero bytes; the BMS answers with
0x18904001. The 8 data bytes of a reply are exactly the data bytes of the UART frame (no A5
header, length or checksum), so they are read and written by `drivers/daly_payload.py`, the
same code as Daly over UART: names, units and the current's sign (taken from the 0x93 state)
do not depend on the transport. This module is the CAN framing (ids) and the polling driver.
"""

from __future__ import annotations

import logging

from bankwatch.drivers import daly_payload
from bankwatch.drivers.daly_payload import decode_payload
from bankwatch.drivers.errors import FrameError, UnknownCommandError
from bankwatch.drivers.model import Reading

__all__ = [
    "BITRATE",
    "HOST_ADDRESS",
    "POLL_IDS",
    "DalyCanDriver",
    "bms_address_of",
    "decode_reply",
    "encode_poll",
    "encode_replies",
    "reply_id",
    "request_frame",
    "request_id",
    "split_id",
]

log = logging.getLogger(__name__)

BITRATE = 250_000
PRIORITY = 0x18
HOST_ADDRESS = 0x40  # "upper computer" in Daly's documents
# What the driver asks for each poll cycle (0x97 balancing is left out: it rarely matters).
POLL_IDS: tuple[int, ...] = (0x90, 0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x98)


def request_id(data_id: int, bms: int, host: int = HOST_ADDRESS) -> int:
    return (PRIORITY << 24) | (data_id << 16) | (bms << 8) | host


def reply_id(data_id: int, bms: int, host: int = HOST_ADDRESS) -> int:
    return (PRIORITY << 24) | (data_id << 16) | (host << 8) | bms


def split_id(can_id: int) -> tuple[int, int, int, int]:
    """(priority, data id, destination, source)."""
    return can_id >> 24, (can_id >> 16) & 0xFF, (can_id >> 8) & 0xFF, can_id & 0xFF


def request_frame(data_id: int, bms: int, host: int = HOST_ADDRESS) -> tuple[int, bytes, bool]:
    """The request for one data id: 8 zero bytes, extended id."""
    return request_id(data_id, bms, host), bytes(8), True


def bms_address_of(can_id: int, host: int = HOST_ADDRESS) -> int:
    """The BMS a frame is about: the source of a reply, the destination of a request."""
    _, _, dst, src = split_id(can_id)
    return dst if src == host else src


def decode_reply(
    can_id: int, data: bytes, *, extended: bool = True, host: int = HOST_ADDRESS
) -> Reading:
    """One CAN frame from a BMS to `host`, decoded to a partial Reading (the current with the
    documented sign; a poll's replies together take the state's, see daly_payload).

    A frame of another protocol (a standard id, another priority) raises UnknownCommandError;
    a Daly frame that is not a reply to `host`, or a bad payload, another FrameError."""
    if not extended:
        raise UnknownCommandError(f"CAN id 0x{can_id:X} is a standard id; Daly CAN uses 29-bit ids")
    prio, data_id, dst, src = split_id(can_id)
    if prio != PRIORITY:
        raise UnknownCommandError(f"CAN id 0x{can_id:08X}: priority 0x{prio:02X}, Daly uses 0x18")
    if src == host:
        raise FrameError(
            f"CAN id 0x{can_id:08X} is a request (from host 0x{host:02X} to BMS 0x{dst:02X}), "
            "not a reply"
        )
    if dst != host:
        raise FrameError(
            f"CAN id 0x{can_id:08X} is addressed to 0x{dst:02X}, not to the host 0x{host:02X}"
        )
    return decode_payload(data_id, data)


# --- the simulator's side -----------------------------------------------------------------------


def encode_replies(
    data_id: int, reading: Reading, bms: int, host: int = HOST_ADDRESS
) -> list[tuple[int, bytes]]:
    """The reply frames a BMS with this reading sends for one request (0x95/0x96: several)."""
    payloads = daly_payload.encode_payload(data_id, reading) or []
    can_id = reply_id(data_id, bms, host)
    return [(can_id, p) for p in payloads]


def encode_poll(reading: Reading, address: int | None = None) -> list[tuple[int, bytes, bool]]:
    """Every reply frame of one whole poll (POLL_IDS) from the BMS at `address` (default 1):
    what the registry's encoder gives the simulator and the tests."""
    bms = 1 if address is None else address
    return [
        (can_id, data, True)
        for data_id in POLL_IDS
        for can_id, data in encode_replies(data_id, reading, bms)
    ]


# --- the driver ---------------------------------------------------------------------------------


class DalyCanDriver:
    """One Daly BMS on a CAN bus: what to ask (`requests`), and its replies merged.

    Sans-I/O: the link's poller sends `requests()` every poll interval; the link hands every
    frame to `on_frame`, which keeps the replies from this BMS to this host and ignores the rest
    (other BMS, other hosts' requests, the inverter's traffic). The latest payload of each data
    id (and list frame) is kept and merged by `daly_payload.merge_parts`, as a UART poll is.
    """

    protocol = "daly-can"

    def __init__(
        self,
        subject: str,
        address: int,
        *,
        host: int = HOST_ADDRESS,
        poll_ids: tuple[int, ...] = POLL_IDS,
        log_warnings: bool = True,
    ) -> None:
        if not 0 <= address <= 0xFF or address == host:
            raise ValueError(f"Daly BMS address {address} is not usable (host is {host})")
        self.subject = subject
        self.address = address
        self.host = host
        self.poll_ids = poll_ids
        self._log_warnings = log_warnings
        # (data id, list frame number or -1) -> the latest payload; re-inserted on update, so
        # the merge sees them oldest first and the newest value wins. Frames are kept by the
        # number they carry, so a BMS that counts from 0 (the V1.2 document) and one that
        # counts from 1 (every capture) both merge.
        self._parts: dict[tuple[int, int], Reading] = {}
        self._reading = Reading(subject=subject)
        self._notes: dict[str, str] = {}
        self.frames = 0
        self.ignored = 0
        # Replies a BMS sends to this host come with this id, whatever the data id.
        self._reply_mask = (PRIORITY << 24) | (host << 8) | address
        self._requests = [request_frame(i, address, host) for i in poll_ids]

    @property
    def reading(self) -> Reading:
        return self._reading

    @property
    def warnings(self) -> list[str]:
        return list(self._notes.values())

    def requests(self) -> list[tuple[int, bytes, bool]]:
        """The frames to send each poll cycle: one request per data id."""
        return self._requests

    def on_frame(self, can_id: int, data: bytes, extended: bool, now: float) -> bool:
        """Keep a reply from this BMS to this host (True); ignore anything else (False)."""
        if not extended or can_id & 0xFF00FFFF != self._reply_mask:
            self.ignored += 1
            return False
        data_id = (can_id >> 16) & 0xFF
        if daly_payload.payload_name(data_id) is None:
            self.ignored += 1  # a version string, a settings reply: not read
            return False
        part = decode_payload(data_id, data)
        self.frames += 1
        extra = dict(part.extra)
        number = extra.get("cell_frame", extra.get("temperature_frame", -1))
        key = (data_id, number if isinstance(number, int) else -1)
        self._parts.pop(key, None)
        self._parts[key] = part
        merged = daly_payload.merge_parts(list(self._parts.values()), strict=False)
        self._check_sign()
        # Polled at a few frames per second: merged as they come.
        self._reading = merged.with_subject(self.subject, now)
        return True

    def _check_sign(self) -> None:
        volts = self._parts.get((0x90, -1))
        status = self._parts.get((0x93, -1))
        if volts is None or status is None or volts.current_a is None:
            return
        state = dict(status.extra).get("state")
        if daly_payload.sign_disagrees(volts.current_a, state):
            self._note(
                "current",
                f"0x90 current sign disagrees with the 0x93 state ({state}); this firmware's "
                "current is read inverted (the state gives the direction)",
            )

    def _note(self, key: str, message: str) -> None:
        if self._notes.get(key) == message:
            return
        self._notes[key] = message
        if self._log_warnings:
            log.warning("%s: %s", self.subject, message)
