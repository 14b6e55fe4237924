"""The contract every serial BMS codec keeps, and the sans-I/O drivers that join a codec to a line.

A serial codec is pure (bytes in, Readings out, and the reverse for the simulator): a module, or
an object, with

    PROTOCOL, DEFAULT_BAUD, GAP_S, REPLY_TIMEOUT_S
    frame_length(buf) -> int | None          where the frame at the start of buf ends
    poll_requests(address) -> list[bytes]    one poll cycle, in order
    decode(frame, request=None) -> Reading   a partial Reading; FrameError on a bad frame
    frame_address(frame) -> int | None       which pack a frame is from or to
    is_request(frame) -> bool                host -> BMS (True) or BMS -> host (False)
    encode_reply(request, reading) -> bytes | None   what the BMS would answer (simulator)

and optionally

    info_requests(address) -> list[bytes]    asked until answered once: model, serial, firmware
    decode_modules(frame, request) -> list[Reading]   replies that cover several packs
    reply_complete(request, frames) -> bool  False while more frames of one reply are due
    expected_frames(request, known) -> int | None     how many frames answer `request`, given
                                             what is known of the pack (None: read until quiet)
    merge_parts(parts) -> Reading            how one poll's decoded frames become one Reading
                                             when merge_readings is not enough (Daly's
                                             multi-frame cell lists, current sign from state)
    TALKS_UNASKED = True                     the device sends without being asked (a VE.Direct
                                             shunt): its line only listens
    unasked_frames(reading) -> list[bytes]   what such a device sends each UNASKED_PERIOD_S
                                             (the simulator's side)

`PollDriver` is one device on a line when bankwatch is the master: which requests a cycle sends
and how the replies merge into one Reading. `ListenDriver` is the same device when someone else
(an inverter, a master pack) polls the bus: it pairs what it hears and keeps what is addressed to
its device. Neither does I/O: the line (`drivers/links/serial.py`) owns the port and the clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Protocol, runtime_checkable

from bankwatch.drivers.errors import FrameError
from bankwatch.drivers.model import Reading, merge_readings

__all__ = [
    "BITS_PER_CHAR",
    "ListenDriver",
    "PollDriver",
    "SerialCodec",
    "char_time_s",
    "info_requests",
    "merge_parts",
    "reply_complete",
    "t35_s",
    "talks_unasked",
    "wire_time_s",
]

# One start bit, eight data bits, one parity or second stop bit, one stop bit: the 11-bit
# character Modbus RTU counts with, and a safe upper bound for 8N1 (10 bits).
BITS_PER_CHAR = 11


def char_time_s(baud: int) -> float:
    return BITS_PER_CHAR / baud


def wire_time_s(n_bytes: int, baud: int) -> float:
    """How long `n_bytes` take on the wire."""
    return n_bytes * BITS_PER_CHAR / baud


def t35_s(baud: int) -> float:
    """The quiet time that ends a frame: 3.5 characters, fixed at 1.75 ms above 19200 baud (the
    Modbus RTU rule, which the ASCII protocols need less of but never mind)."""
    return 3.5 * char_time_s(baud) if baud <= 19200 else 0.00175


@runtime_checkable
class SerialCodec(Protocol):
    """What the line and the drivers need from a codec (see the module docstring)."""

    @property
    def PROTOCOL(self) -> str: ...

    @property
    def DEFAULT_BAUD(self) -> int: ...

    @property
    def GAP_S(self) -> float: ...

    @property
    def REPLY_TIMEOUT_S(self) -> float: ...

    def frame_length(self, buf: bytes) -> int | None: ...

    def poll_requests(self, address: int) -> list[bytes]: ...

    def decode(self, frame: bytes, request: bytes | None = None) -> Reading: ...

    def frame_address(self, frame: bytes) -> int | None: ...

    def is_request(self, frame: bytes) -> bool: ...

    def encode_reply(self, request: bytes, reading: Reading) -> bytes | None: ...


def talks_unasked(codec: SerialCodec) -> bool:
    """Whether the codec's device sends on its own (nothing to poll; listen to it)."""
    return bool(getattr(codec, "TALKS_UNASKED", False))


def info_requests(codec: SerialCodec, address: int) -> list[bytes]:
    """The codec's once-only identity requests, or none if it has no such hook."""
    hook: Callable[[int], list[bytes]] | None = getattr(codec, "info_requests", None)
    return list(hook(address)) if hook is not None else []


def reply_complete(
    codec: SerialCodec, request: bytes, frames: Sequence[bytes], known: Reading | None = None
) -> bool | None:
    """Whether the frames heard so far are the whole reply to `request`: one frame, unless the
    codec says a request is answered by several. None: the codec cannot tell yet (read until
    the line goes quiet)."""
    hook: Callable[[bytes, Sequence[bytes]], bool] | None = getattr(codec, "reply_complete", None)
    if hook is not None:
        return hook(request, frames)
    expected: Callable[[bytes, Reading | None], int | None] | None = getattr(
        codec, "expected_frames", None
    )
    if expected is not None:
        n = expected(request, known)
        return None if n is None else len(frames) >= n
    return len(frames) >= 1


def merge_parts(codec: SerialCodec, parts: Sequence[Reading]) -> Reading:
    """One poll's partial Readings as one, the codec's way if it has one."""
    hook: Callable[[Sequence[Reading]], Reading] | None = getattr(codec, "merge_parts", None)
    if hook is not None:
        return hook(parts)
    out = Reading()
    for part in parts:
        out = merge_readings(out, part)
    return out


class PollDriver:
    """One device on a line that bankwatch polls.

    Each cycle the line asks `requests()`, sends them one at a time and hands every reply to
    `on_reply`; `end_cycle` returns the merged Reading if anything was heard this cycle. Identity
    requests (model, serial, firmware) go out until each has been answered once, so a pack that
    is replaced or was asleep at start is still identified.
    """

    def __init__(self, subject: str, address: int, codec: SerialCodec) -> None:
        self.subject = subject
        self.address = address
        self.codec = codec
        self.protocol = codec.PROTOCOL
        self._poll = list(codec.poll_requests(address))
        self._info_pending = info_requests(codec, address)
        self._reading = Reading(subject=subject)
        self._parts: list[Reading] = []
        self.replies = 0
        self.bad_replies = 0
        self.timeouts = 0
        # Whether the device answered in its last cycle; None before the first.
        self.answering: bool | None = None

    @property
    def reading(self) -> Reading:
        return self._reading

    def requests(self) -> list[bytes]:
        return [*self._poll, *self._info_pending]

    def known(self) -> Reading:
        """What is known of the pack so far, this cycle included (for `expected_frames`)."""
        out = self._reading
        for part in self._parts:
            out = merge_readings(out, part)
        return out

    def on_reply(self, request: bytes, frames: Sequence[bytes], now: float) -> None:
        """Keep a reply's decoded frames for this cycle. Raises FrameError (after counting it)
        for a reply that does not decode, so the line can log it with its traffic."""
        try:
            parts = [self.codec.decode(frame, request) for frame in frames]
        except FrameError:
            self.bad_replies += 1
            raise
        self.replies += 1
        self._parts.extend(parts)
        if request in self._info_pending:
            self._info_pending.remove(request)

    def on_timeout(self, request: bytes) -> None:
        self.timeouts += 1

    def end_cycle(self, now: float) -> Reading | None:
        """The cycle's merged Reading over what was known, or None when nothing answered.
        Raises FrameError when the cycle's frames do not make one reading (a frame of a
        multi-frame list missing)."""
        parts, self._parts = self._parts, []
        self.answering = bool(parts)
        if not parts:
            return None
        merged = merge_parts(self.codec, parts)
        self._reading = replace(merge_readings(self._reading, merged), subject=self.subject, at=now)
        return self._reading


class ListenDriver:
    """One device on a bus someone else polls: fed every request/reply pair heard, keeps the
    ones for its address and returns the merged Reading.

    Codecs whose poll spreads one list over several frames (`merge_parts`) are merged over a
    window of the frames heard last, so a list is whole once all its frames went by once."""

    WINDOW = 64

    def __init__(self, subject: str, address: int, codec: SerialCodec) -> None:
        self.subject = subject
        self.address = address
        self.codec = codec
        self.protocol = codec.PROTOCOL
        self._reading = Reading(subject=subject)
        self._window: deque[Reading] = deque(maxlen=self.WINDOW)
        self._windowed = getattr(codec, "merge_parts", None) is not None
        self.frames = 0

    @property
    def reading(self) -> Reading:
        return self._reading

    def on_heard(self, request: bytes | None, reply: bytes, now: float) -> Reading:
        part = self.codec.decode(reply, request)
        self.frames += 1
        if self._windowed:
            self._window.append(part)
            try:
                part = merge_parts(self.codec, list(self._window))
            except FrameError:
                part = Reading()  # a list still missing frames: wait for the rest
        self._reading = replace(merge_readings(self._reading, part), subject=self.subject, at=now)
        return self._reading
