"""An RS485 (or UART) line: one task owns the port and talks to every device on it.

Polling (the usual case: bankwatch is the bus master): the devices' requests go out one at a
time; each reply is reassembled from whatever chunks the adapter delivers, using the codec's
`frame_length`; garbage before a frame is dropped a byte at a time until a frame starts. A
request unanswered within the protocol's reply timeout is repeated `retries` times; between a
reply and the next request the line keeps the protocol's gap (never less than 3.5 characters).
An adapter that hears its own transmission (echo) is handled: a frame identical to the request
just sent is dropped.

Listen-only (an inverter or a master pack polls the bus): nothing is ever written. Requests and
replies heard are paired, attributed to a pack by address and decoded.

The port is named by its path, ideally `/dev/serial/by-id/...`. When the adapter goes away (a read
or write fails, or the path disappears or points elsewhere) the port is closed and reopened by
path with capped, randomized backoff until it is back: the daemon never restarts for a replug.

pyserial only opens and configures the port (baud, raw mode, an exclusive lock); reading and
writing go through the event loop on the port's file descriptor, so a line costs no thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import serial

from bankwatch.drivers.backoff import Backoff
from bankwatch.drivers.clock import Clock
from bankwatch.drivers.errors import FrameError, LinkError
from bankwatch.drivers.links.can import LinkStateLog, LinkStateName, LinkStatus
from bankwatch.drivers.model import Reading
from bankwatch.drivers.serial_codec import (
    ListenDriver,
    PollDriver,
    SerialCodec,
    reply_complete,
    t35_s,
    talks_unasked,
    wire_time_s,
)

__all__ = [
    "Device",
    "FrameSplitter",
    "ReadingHandler",
    "SerialLine",
    "SerialLinkSettings",
    "SerialPort",
    "Transaction",
]

log = logging.getLogger(__name__)

ReadingHandler = Callable[[str, Reading], None]

_OPEN_TIMEOUT_S = 5.0
_WRITE_TIMEOUT_S = 2.0
_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 5.0
# Listen-only: a pending request older than this is not paired with a reply.
_PAIR_WINDOW_S = 2.0
_HINTS = {
    errno.ENOENT: " (no such port: is the adapter plugged in? `ls /dev/serial/by-id/`)",
    errno.EACCES: " (permission denied: add the user to the dialout group)",
    errno.EBUSY: " (in use by another program)",
    errno.EAGAIN: " (locked by another program)",
    errno.EWOULDBLOCK: " (locked by another program)",
}


@dataclass(frozen=True, slots=True)
class SerialLinkSettings:
    """What a serial line needs: its port and how to talk on it (the daemon builds it from its
    config; `scan` and the simulator build their own)."""

    port: str
    baud: int = 9600
    # An inverter or a master pack already polls this bus: send nothing, decode what is heard.
    listen_only: bool = False
    # The adapter hears what it sends (some 2-wire RS485 adapters): drop our own request.
    echo: bool = False
    # Start a poll sweep this often (a sweep that takes longer starts the next at once).
    poll_interval_s: float = 1.0
    # Overrides of the protocol's own timing (None: the codec's): quiet time after a reply
    # before the next request, how long a reply may take to start; and how often a request is
    # repeated unanswered.
    gap_s: float | None = None
    reply_timeout_s: float | None = None
    retries: int = 1
    # Listen-only: nothing heard for this long marks the line silent.
    silence_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.baud <= 0:
            raise ValueError(f"baud must be > 0 (got {self.baud})")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0 (got {self.retries})")


@dataclass(frozen=True, slots=True)
class Device:
    """One device on a line as the config names it."""

    subject: str
    address: int
    codec: SerialCodec


@dataclass(frozen=True, slots=True)
class Transaction:
    """One request and the reply frames it got (none when it timed out), with timing."""

    request: bytes
    replies: tuple[bytes, ...]
    sent_at: float
    done_at: float
    attempts: int


# --- framing -----------------------------------------------------------------------------------


class FrameSplitter:
    """Cuts a byte stream into frames with one or more codecs' `frame_length`. Bytes that
    cannot start a frame of any codec are dropped one at a time (counted as garbage)."""

    def __init__(self, codecs: Sequence[SerialCodec]) -> None:
        self.codecs = list(dict.fromkeys(codecs))  # distinct, in order
        self.buf = bytearray()
        self.garbage = 0

    def feed(self, data: bytes) -> None:
        self.buf += data

    def clear(self) -> int:
        n = len(self.buf)
        self.buf.clear()
        return n

    def drop_one(self) -> None:
        """The bytes waiting cannot be completed (the line went quiet mid-frame): skip one."""
        if self.buf:
            del self.buf[0]
            self.garbage += 1

    def frames(self) -> Iterator[tuple[bytes, SerialCodec]]:
        while self.buf:
            view = bytes(self.buf)
            waiting = False
            for codec in self.codecs:
                try:
                    n = codec.frame_length(view)
                except FrameError:
                    continue
                if n is None:
                    waiting = True
                    continue
                if n <= 0 or n > len(view):
                    continue  # a codec bug must not stall the line
                del self.buf[:n]
                yield view[:n], codec
                break
            else:
                if waiting:
                    return
                del self.buf[0]
                self.garbage += 1


# --- the port ------------------------------------------------------------------------------------


class SerialPort:
    """An open port on the event loop: bytes arrive through a reader callback into a buffer."""

    def __init__(self, ser: serial.Serial, path: str) -> None:
        self._ser = ser
        self.path = path
        self.realpath = os.path.realpath(path)
        self.fd: int = ser.fileno()
        self._loop = asyncio.get_running_loop()
        self._rx = bytearray()
        self._error: str | None = None
        self._ready = asyncio.Event()
        self._loop.add_reader(self.fd, self._on_readable)
        self.closed = False

    @classmethod
    async def open(cls, path: str, baud: int, timeout: float = _OPEN_TIMEOUT_S) -> SerialPort:
        """Open and configure the port (raw, 8N1, exclusive) or raise LinkError saying why."""

        def _open() -> serial.Serial:
            return serial.Serial(port=path, baudrate=baud, timeout=0, exclusive=True)

        loop = asyncio.get_running_loop()
        opening = loop.run_in_executor(None, _open)
        try:
            ser = await asyncio.wait_for(asyncio.shield(opening), timeout)
        except TimeoutError as exc:
            opening.add_done_callback(_close_late)
            raise LinkError(f"serial port {path}: open timed out") from exc
        except (serial.SerialException, OSError, ValueError) as exc:
            code = getattr(exc, "errno", None) or 0
            hint = _HINTS.get(code, "")
            if not hint and "exclusively lock" in str(exc):
                hint = _HINTS[errno.EBUSY]
            raise LinkError(f"serial port {path}: {_reason(exc)}{hint}") from exc
        return cls(ser, path)

    def _on_readable(self) -> None:
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail(f"read failed: {exc.strerror or exc}")
            return
        if not data:
            self._fail("port hung up (end of file)")
            return
        self._rx += data
        self._ready.set()

    def _fail(self, reason: str) -> None:
        if self._error is None:
            self._error = reason
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self.fd)
        self._ready.set()

    @property
    def error(self) -> str | None:
        return self._error

    def take(self) -> bytes:
        data = bytes(self._rx)
        self._rx.clear()
        self._ready.clear()
        return data

    def discard_input(self) -> int:
        return len(self.take())

    async def read(self, timeout: float) -> bytes:
        """What has arrived, waiting up to `timeout` for something; b"" on timeout. Raises
        LinkError once the port has failed."""
        if not self._rx and self._error is None and timeout > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), timeout)
        if self._rx:
            return self.take()
        if self._error is not None:
            raise LinkError(f"serial port {self.path}: {self._error}")
        return b""

    async def write(self, data: bytes, timeout: float = _WRITE_TIMEOUT_S) -> None:
        if self._error is not None:
            raise LinkError(f"serial port {self.path}: {self._error}")
        view = memoryview(data)
        deadline = self._loop.time() + timeout
        while view:
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:
                n = 0
            except OSError as exc:
                self._fail(f"write failed: {exc.strerror or exc}")
                raise LinkError(f"serial port {self.path}: write failed: {exc}") from exc
            view = view[n:]
            if view:
                if self._loop.time() > deadline:
                    raise LinkError(f"serial port {self.path}: write timed out")
                await asyncio.sleep(0.001)

    def still_there(self) -> bool:
        """Whether the path still leads to the device that was opened (a by-id symlink goes
        away on unplug, and may come back pointing at another ttyUSB)."""
        try:
            return os.path.realpath(self.path) == self.realpath and os.path.exists(self.path)
        except OSError:
            return False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self.fd)
        with contextlib.suppress(Exception):
            self._ser.close()


def _close_late(opening: asyncio.Future[serial.Serial]) -> None:
    if opening.cancelled() or opening.exception() is not None:
        return
    with contextlib.suppress(Exception):
        opening.result().close()


def _reason(exc: BaseException) -> str:
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code > 0:
        return os.strerror(code).lower()
    text = str(exc).strip()
    if text.startswith("[Errno"):
        text = text.split("]", 1)[-1].strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- the line ------------------------------------------------------------------------------------


class SerialLine(LinkStateLog):
    """One serial line, kept open for as long as the daemon runs."""

    def __init__(
        self,
        name: str,
        config: SerialLinkSettings,
        devices: Sequence[Device],
        on_reading: ReadingHandler,
        clock: Clock,
        *,
        on_state: Callable[[LinkStatus], None] | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.devices = list(devices)
        self._on_reading = on_reading
        self._on_state = on_state
        self._clock = clock
        # A device that talks unasked (a VE.Direct shunt) is only ever listened to.
        self.listen_only = config.listen_only or (
            bool(devices) and all(talks_unasked(d.codec) for d in devices)
        )
        self.pollers = [PollDriver(d.subject, d.address, d.codec) for d in devices]
        self.listeners = [ListenDriver(d.subject, d.address, d.codec) for d in devices]
        self.codecs = list(dict.fromkeys(d.codec for d in devices))
        self._state: LinkStateName = "starting"
        self._detail = "not opened yet"
        self.frames = 0
        self.timeouts = 0
        self.bad_frames = 0
        self.echoes = 0
        self.stray_frames = 0
        self.reopens = 0
        self.bytes_out = 0
        self.bytes_in = 0
        self.sweeps = 0
        self.sweep_times_s: deque[float] = deque(maxlen=1000)
        self.transactions: deque[Transaction] = deque(maxlen=1000)
        self.last_frame_at: float | None = None
        self._recent: deque[tuple[str, bytes]] = deque(maxlen=8)
        self._last_bad_log: float | None = None
        self._echo_hinted = False
        self.port: SerialPort | None = None

    # --- state ---------------------------------------------------------------------------------

    @property
    def status(self) -> LinkStatus:
        age = None if self.last_frame_at is None else self._clock.monotonic() - self.last_frame_at
        return LinkStatus(
            self.name,
            self._state,
            self._detail,
            self.frames,
            self.timeouts,
            self.bad_frames,
            self.reopens,
            age,
        )

    def _gap_s(self, codec: SerialCodec) -> float:
        wanted = self.config.gap_s if self.config.gap_s is not None else codec.GAP_S
        return max(wanted, t35_s(self.config.baud))

    def _reply_timeout_s(self, codec: SerialCodec) -> float:
        if self.config.reply_timeout_s is not None:
            return self.config.reply_timeout_s
        return codec.REPLY_TIMEOUT_S

    def _speed(self) -> float:
        return self._clock.speed

    # --- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Open the port and poll (or listen) until cancelled; reopen whenever it fails."""
        if not self.devices:
            raise LinkError(f"link {self.name}: no device to poll or listen to")
        backoff = Backoff(_BACKOFF_FIRST_S, _BACKOFF_MAX_S)
        while True:
            try:
                port = await SerialPort.open(self.config.port, self.config.baud)
            except LinkError as exc:
                self._set_state("down", str(exc))
                await asyncio.sleep(backoff.next() / self._speed())
                continue
            self.port = port
            opened_at = self._clock.monotonic()
            if self._state == "starting":
                self._detail = f"{self.config.port} opened"
            try:
                if self.listen_only:
                    await self._listen(port)
                else:
                    await self._poll(port)
                reason = "closed"
            except LinkError as exc:
                reason = str(exc)
            finally:
                self.port = None
                port.close()
            self._set_state("down", reason)
            self.reopens += 1
            if self.last_frame_at is not None and self.last_frame_at >= opened_at:
                backoff.reset()  # it worked for a while: retry soon
            await asyncio.sleep(backoff.next() / self._speed())

    # --- polling -------------------------------------------------------------------------------

    async def _poll(self, port: SerialPort) -> None:
        idle_at = self._clock.monotonic()
        while True:
            started = self._clock.monotonic()
            answered = 0
            for dev in self.pollers:
                for request in dev.requests():
                    txn, idle_at = await self.transact(
                        port, dev.codec, request, idle_at, known=dev.known
                    )
                    if not txn.replies:
                        dev.on_timeout(request)
                        continue
                    try:
                        dev.on_reply(request, txn.replies, txn.done_at)
                    except FrameError as exc:
                        self._bad_frame(exc)
                was = dev.answering
                try:
                    reading = dev.end_cycle(self._clock.monotonic())
                except FrameError as exc:
                    self._bad_frame(exc)
                    reading = None
                self._device_transition(dev, was)
                if reading is not None:
                    answered += 1
                    self._on_reading(dev.subject, reading)
            took = self._clock.monotonic() - started
            self.sweeps += 1
            self.sweep_times_s.append(took)
            if answered:
                self._set_state(
                    "up", f"{self.config.port}, {answered}/{len(self.pollers)} answering"
                )
            else:
                if not port.still_there():
                    raise LinkError(f"serial port {self.config.port} went away")
                self._set_state("silent", f"{self.config.port}: no device answers")
            wait = self.config.poll_interval_s - took
            if wait > 0:
                await asyncio.sleep(wait / self._speed())

    def _device_transition(self, dev: PollDriver, was: bool | None) -> None:
        """A device going quiet or coming back is logged once per transition."""
        now = dev.answering
        if now == was:
            return
        if now is False:
            log.warning(
                "link %s: %s (address %d, %s) does not answer",
                self.name,
                dev.subject,
                dev.address,
                dev.protocol,
            )
        elif was is False:
            log.info("link %s: %s (address %d) answers again", self.name, dev.subject, dev.address)

    async def transact(
        self,
        port: SerialPort,
        codec: SerialCodec,
        request: bytes,
        idle_at: float,
        *,
        known: Callable[[], Reading] | None = None,
    ) -> tuple[Transaction, float]:
        """Send one request (repeated up to `retries` times) and collect its reply. Returns the
        transaction and when the line went idle (for the next gap)."""
        gap = self._gap_s(codec)
        attempts = 0
        sent_at = self._clock.monotonic()
        replies: list[bytes] = []
        while attempts <= self.config.retries:
            attempts += 1
            wait = idle_at + gap - self._clock.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            port.discard_input()
            await port.write(request)
            self.bytes_out += len(request)
            sent_at = self._clock.monotonic()
            self._recent.append((">", request))
            replies = await self._collect(port, codec, request, sent_at, known)
            idle_at = self._clock.monotonic()
            if replies:
                break
            self.timeouts += 1
        txn = Transaction(request, tuple(replies), sent_at, idle_at, attempts)
        self.transactions.append(txn)
        return txn, idle_at

    async def _collect(
        self,
        port: SerialPort,
        codec: SerialCodec,
        request: bytes,
        sent_at: float,
        known: Callable[[], Reading] | None = None,
    ) -> list[bytes]:
        baud = self.config.baud
        timeout = self._reply_timeout_s(codec)
        # The request itself takes wire time before the BMS can start to answer.
        deadline = sent_at + wire_time_s(len(request), baud) + timeout
        # Once bytes flow, a frame may take its wire time; give it room per chunk.
        per_chunk = max(0.1, wire_time_s(64, baud))
        splitter = FrameSplitter([codec])
        frames: list[bytes] = []
        want_address = codec.frame_address(request)
        echo_left = self.config.echo
        while True:
            left = deadline - self._clock.monotonic()
            chunk = await port.read(max(left, 0.0)) if left > 0 else b""
            if not chunk:
                if splitter.buf:
                    self.bad_frames += 1
                    self._recent.append(("<", bytes(splitter.buf)))
                    self._bad_frame(
                        FrameError(f"reply cut short: {len(splitter.buf)} bytes, then silence")
                    )
                return frames
            self.bytes_in += len(chunk)
            deadline = max(deadline, self._clock.monotonic() + per_chunk)
            splitter.feed(chunk)
            for frame, _ in splitter.frames():
                self._recent.append(("<", frame))
                if frame == request and not frames:
                    self.echoes += 1
                    if not echo_left and not self._echo_hinted:
                        self._echo_hinted = True
                        log.info(
                            "link %s: the adapter echoes what it sends; set echo = true "
                            "for this link",
                            self.name,
                        )
                    echo_left = False
                    continue
                addr = codec.frame_address(frame)
                if addr is not None and want_address is not None and addr != want_address:
                    self.stray_frames += 1  # a late reply of another device, or another master
                    continue
                frames.append(frame)
                self.frames += 1
                self.last_frame_at = self._clock.monotonic()
                done = reply_complete(codec, request, frames, known() if known else None)
                if done:
                    return frames
                if done is None:
                    # More frames may follow and nobody knows how many: end when quiet.
                    deadline = self._clock.monotonic() + max(0.05, wire_time_s(16, baud))
            if splitter.garbage:
                self.bad_frames += splitter.garbage
                splitter.garbage = 0

    # --- listening -----------------------------------------------------------------------------

    async def _listen(self, port: SerialPort) -> None:
        splitter = FrameSplitter(self.codecs)
        pending: tuple[bytes, SerialCodec, float] | None = None
        last_heard = self._clock.monotonic()
        quiet_s = 0.05 + wire_time_s(32, self.config.baud)
        while True:
            chunk = await port.read(quiet_s)
            now = self._clock.monotonic()
            if not chunk:
                if splitter.buf:
                    splitter.drop_one()  # the bus went quiet mid-frame: resynchronise
                    for frame, codec in splitter.frames():
                        pending = self._heard(frame, codec, pending, now)
                if now - last_heard > self.config.silence_timeout_s:
                    if not port.still_there():
                        raise LinkError(f"serial port {self.config.port} went away")
                    self._set_state(
                        "silent",
                        f"{self.config.port}: nothing heard for "
                        f"{self.config.silence_timeout_s:g} s (listen-only)",
                    )
                continue
            self.bytes_in += len(chunk)
            last_heard = now
            splitter.feed(chunk)
            for frame, codec in splitter.frames():
                pending = self._heard(frame, codec, pending, now)
            if splitter.garbage:
                self.bad_frames += splitter.garbage
                splitter.garbage = 0

    def _heard(
        self,
        frame: bytes,
        codec: SerialCodec,
        pending: tuple[bytes, SerialCodec, float] | None,
        now: float,
    ) -> tuple[bytes, SerialCodec, float] | None:
        self.frames += 1
        self.last_frame_at = now
        self._recent.append(("=", frame))
        self._set_state("up", f"{self.config.port}, listen-only")
        request = None
        if pending is not None and pending[1] is codec and now - pending[2] <= _PAIR_WINDOW_S:
            request = pending[0]
        address = codec.frame_address(frame)
        # A frame to or from the address just asked, other than the request itself, is first
        # tried as its reply: some protocols' frames read both ways (Modbus FC 0x01, 0x06).
        if request is not None and frame != request and address == codec.frame_address(request):
            devs = [d for d in self.listeners if d.codec is codec and d.address == address]
            for dev in devs:
                try:
                    reading = dev.on_heard(request, frame, now)
                except FrameError:
                    break
                self._on_reading(dev.subject, reading)
            else:
                if devs:
                    return None
        try:
            if codec.is_request(frame):
                return (frame, codec, now)
        except FrameError as exc:
            self._bad_frame(exc)
            return pending
        # A reply whose request was not heard (or did not match): decode it alone if it can be.
        # A frame without an address (a point-to-point protocol) is its line's one device's.
        for dev in self.listeners:
            if dev.codec is not codec or (address is not None and dev.address != address):
                continue
            try:
                reading = dev.on_heard(None, frame, now)
            except FrameError as exc:
                self._bad_frame(exc)
                return None
            self._on_reading(dev.subject, reading)
        return None

    # --- bad frames ----------------------------------------------------------------------------

    def _bad_frame(self, exc: FrameError) -> None:
        """Count every bad frame; log one with the line's recent traffic at most every 10 s."""
        self.bad_frames += 1
        now = self._clock.monotonic()
        if self._last_bad_log is not None and now - self._last_bad_log < 10.0:
            return
        self._last_bad_log = now
        traffic = " ".join(f"{d}{f.hex().upper()}" for d, f in self._recent)
        log.warning(
            "link %s: bad frame (%d so far): %s; recent traffic (> sent, < received, = heard): %s",
            self.name,
            self.bad_frames,
            exc,
            traffic,
        )
