"""A CAN bus through python-can, with any of its interfaces: socketcan (a Pi HAT's can0), slcan
and other USB adapters, socketcand (a bus served over TCP), virtual (in-process).

Why a thread: python-can's receive is blocking, and its asyncio reader can wait forever when an
interface goes away (a socketcand server that closed the connection makes `recv` spin returning
nothing). So one thread per bus blocks in `recv` with a short timeout and hands frames to the
event loop in batches, and a watchdog on the event loop marks the link down when no frame has
arrived for `silence_timeout_s`, closes the bus and opens it again with capped, randomized
backoff until frames flow again. The daemon never restarts for a replugged adapter.

Frames are delivered as (id, data, extended, time) to one callback on the event loop; decoding
is the caller's business and must be cheap (the receive path must keep up with a busy bus).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import can

from bankwatch.drivers.backoff import Backoff
from bankwatch.drivers.clock import Clock
from bankwatch.drivers.errors import FrameError, LinkError

__all__ = [
    "BusStateName",
    "CanLink",
    "CanLinkSettings",
    "CanPoller",
    "FrameHandler",
    "KeepAlive",
    "LinkStateLog",
    "LinkStatus",
    "PollSource",
    "open_bus",
]

log = logging.getLogger(__name__)

FrameHandler = Callable[[int, bytes, bool, float], None]
LinkStateName = Literal["starting", "up", "silent", "down"]
# The CAN controller's fault confinement state, as error frames (or the interface) report it.
BusStateName = Literal["active", "error-passive", "bus-off"]

# Linux can/error.h: the error class in the id of an error frame, and data[1] of a controller
# error. python-can hands error frames over with these in `arbitration_id` and `data`.
_ERR_CRTL = 0x004
_ERR_BUSOFF = 0x040
_ERR_RESTARTED = 0x100
_CRTL_PASSIVE = 0x10 | 0x20  # RX or TX error-passive
_CRTL_ACTIVE = 0x40  # back to error-active

_OPEN_TIMEOUT_S = 5.0
# What a Pi owner should do about the errors SocketCAN gives most often.
_HINTS = {
    errno.EAFNOSUPPORT: " (this kernel has no SocketCAN; on a Pi, enable the CAN HAT overlay)",
    errno.ENODEV: " (no such interface: check the HAT overlay and `ip link show`)",
    errno.ENETDOWN: " (the interface is down: `ip link set can0 up type can bitrate 500000`)",
}
# python-can's socketcand client logs a WARNING whenever a TCP read ends inside a frame, which on
# a busy bus is most reads: that is normal TCP, not a fault, and would flood the journal.
_CHATTY_LOGGERS = ("can.interfaces.socketcand.socketcand",)
_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 30.0


@dataclass(frozen=True, slots=True)
class CanLinkSettings:
    """What a CAN link needs to open and watch its bus (the daemon builds it from its config)."""

    # Any python-can interface: socketcan (a Pi HAT's can0), slcan, gs_usb, socketcand, virtual…
    interface: str = "socketcan"
    channel: str = "can0"
    bitrate: int = 500_000
    # socketcand only: the server that serves the bus.
    host: str | None = None
    port: int | None = None
    # slcan and other serial adapters: the adapter's serial speed.
    tty_baudrate: int | None = None
    # No frame for this long marks the link down (python-can may never notice a vanished adapter).
    silence_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.interface == "socketcand" and (self.host is None or self.port is None):
            raise ValueError("interface 'socketcand' needs host and port")
        if self.silence_timeout_s <= 0:
            raise ValueError(f"silence_timeout_s must be > 0 (got {self.silence_timeout_s})")


@dataclass(frozen=True, slots=True)
class LinkStatus:
    name: str
    state: LinkStateName
    detail: str
    frames: int
    error_frames: int
    bad_frames: int
    reopens: int
    last_frame_age_s: float | None
    bus_state: BusStateName = "active"
    bus_off: int = 0
    error_passive: int = 0


def _bus_kwargs(config: CanLinkSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"interface": config.interface, "channel": config.channel}
    if config.interface == "socketcand":
        kwargs.update(host=config.host, port=config.port)
    elif config.interface != "virtual":
        kwargs["bitrate"] = config.bitrate
    if config.tty_baudrate is not None:
        kwargs["tty_baudrate"] = config.tty_baudrate
    return kwargs


async def _probe_tcp(host: str, port: int, timeout: float) -> None:
    """python-can's socketcand client retries a refused connect in a busy loop for 10 s; a
    quick probe first turns a dead server into one clear error."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError) as exc:
        raise LinkError(f"socketcand server {host}:{port} unreachable: {exc}") from exc
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def open_bus(config: CanLinkSettings, timeout: float = _OPEN_TIMEOUT_S) -> can.BusABC:
    """Open the bus the config describes, or raise LinkError saying why."""
    if config.interface == "socketcand":
        assert config.host is not None and config.port is not None
        await _probe_tcp(config.host, config.port, timeout)
        for name in _CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
    kwargs = _bus_kwargs(config)
    opening = asyncio.get_running_loop().run_in_executor(None, lambda: can.Bus(**kwargs))
    try:
        bus: can.BusABC = await asyncio.wait_for(asyncio.shield(opening), timeout)
    except TimeoutError as exc:
        # The open goes on in its thread; a bus that turns up after we gave up is closed.
        opening.add_done_callback(_shutdown_late)
        raise LinkError(f"CAN {config.interface} {config.channel}: open timed out") from exc
    except (can.CanError, OSError, ValueError, ImportError) as exc:
        hint = _HINTS.get(getattr(exc, "errno", None) or 0, "")
        raise LinkError(
            f"CAN {config.interface} {config.channel}: {_first_line(exc)}{hint}"
        ) from exc
    return bus


def _shutdown_late(opening: asyncio.Future[can.BusABC]) -> None:
    if opening.cancelled() or opening.exception() is not None:
        return
    with contextlib.suppress(Exception):
        opening.result().shutdown()


def _first_line(exc: BaseException) -> str:
    """python-can puts whole tracebacks into some messages; a log line wants the first line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class LinkStateLog:
    """What every link (CAN bus, serial line) does with its state: a change is logged once per
    transition, not once per retry, and reported to whoever watches links."""

    name: str
    _state: LinkStateName
    _detail: str
    _on_state: Callable[[LinkStatus], None] | None

    @property
    def status(self) -> LinkStatus:
        raise NotImplementedError

    def _set_state(self, state: LinkStateName, detail: str) -> None:
        if state == self._state:
            self._detail = detail
            return
        old, self._state, self._detail = self._state, state, detail
        logger = logging.getLogger(type(self).__module__)  # the link's own module's logger
        if state == "up":
            logger.info("link %s: up (%s)", self.name, detail)
        elif old != "starting" or state == "down":
            logger.warning("link %s: %s (%s)", self.name, state, detail)
        if self._on_state is not None:
            self._on_state(self.status)


class CanLink(LinkStateLog):
    """One CAN bus, kept open for as long as the daemon runs."""

    def __init__(
        self,
        name: str,
        config: CanLinkSettings,
        on_frame: FrameHandler,
        clock: Clock,
        *,
        on_state: Callable[[LinkStatus], None] | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self._on_frame = on_frame
        self._on_state = on_state
        self._clock = clock
        self._state: LinkStateName = "starting"
        self._detail = "not opened yet"
        self.frames = 0
        self.error_frames = 0
        self.reopens = 0
        self.last_frame_at: float | None = None
        self._lock = threading.Lock()
        self._pending: list[can.Message] = []
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bus: can.BusABC | None = None
        self._failure: str | None = None
        self.bad_frames = 0
        self._recent: deque[tuple[int, bytes]] = deque(maxlen=8)
        self._last_bad_log: float | None = None
        self.bus_state: BusStateName = "active"
        self.bus_off = 0
        self.error_passive = 0
        self.sent = 0
        self.send_errors = 0

    # --- state ---------------------------------------------------------------------------------

    @property
    def status(self) -> LinkStatus:
        age = None if self.last_frame_at is None else self._clock.monotonic() - self.last_frame_at
        return LinkStatus(
            self.name,
            self._state,
            self._detail,
            self.frames,
            self.error_frames,
            self.bad_frames,
            self.reopens,
            age,
            self.bus_state,
            self.bus_off,
            self.error_passive,
        )

    @property
    def is_open(self) -> bool:
        """The bus is open (frames can be sent), whether or not anything has been heard."""
        return self._bus is not None

    # --- the reader thread -------------------------------------------------------------------

    def _reader(self, bus: can.BusABC, stop: threading.Event) -> None:
        loop = self._loop
        assert loop is not None
        while not stop.is_set():
            try:
                msg = bus.recv(timeout=0.2)
            except Exception as exc:  # a library error of any kind ends this bus, not the daemon
                log.debug("link %s: receive failed: %s", self.name, exc)
                loop.call_soon_threadsafe(
                    self._reader_failed, f"receive failed: {_first_line(exc)}"
                )
                return
            if msg is None:
                continue
            with self._lock:
                self._pending.append(msg)
                if self._scheduled:
                    continue
                self._scheduled = True
            try:
                loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop closed under us: the daemon is stopping
                return

    def _reader_failed(self, detail: str) -> None:
        self._failure = detail

    def _drain(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
            self._scheduled = False
        now = self._clock.monotonic()
        handler = self._on_frame
        recent = self._recent
        heard = False
        for msg in batch:
            if msg.is_error_frame:
                self.error_frames += 1
                self._error_frame(msg.arbitration_id, bytes(msg.data))
                continue
            if self.bus_state == "bus-off":
                self._set_bus_state("active", "frames are flowing again")
            heard = True
            self.frames += 1
            data = bytes(msg.data)
            recent.append((msg.arbitration_id, data))
            try:
                handler(msg.arbitration_id, data, msg.is_extended_id, now)
            except FrameError as exc:
                self._bad_frame(now, exc)
            except Exception:
                # A decoder bug must not kill the link; it is logged with the frame.
                log.exception(
                    "link %s: handling frame %X#%s failed",
                    self.name,
                    msg.arbitration_id,
                    data.hex().upper(),
                )
        if not heard:
            return
        self.last_frame_at = now
        if self._state != "up":
            self._set_state("up", f"{self.config.interface} {self.config.channel}")

    def inject(self, messages: Sequence[can.Message]) -> None:
        """Hand frames to the link as if its reader thread had received them (`replay`)."""
        with self._lock:
            self._pending.extend(messages)
        self._drain()

    def _error_frame(self, error_class: int, data: bytes) -> None:
        """Bus-off and error-passive are counted when they start, and shown as the bus state."""
        if error_class & _ERR_BUSOFF:
            if self.bus_state != "bus-off":
                self.bus_off += 1
            self._set_bus_state("bus-off", "the controller went bus-off")
        elif error_class & _ERR_RESTARTED:
            self._set_bus_state("active", "the controller restarted")
        elif error_class & _ERR_CRTL and len(data) > 1:
            if data[1] & _CRTL_PASSIVE:
                if self.bus_state == "active":
                    self.error_passive += 1
                self._set_bus_state("error-passive", "the controller is error-passive")
            elif data[1] & _CRTL_ACTIVE:
                self._set_bus_state("active", "the controller is error-active again")

    def _set_bus_state(self, state: BusStateName, why: str) -> None:
        if state == self.bus_state:
            return
        log.warning("link %s: bus %s (%s)", self.name, state, why)
        self.bus_state = state
        if self._on_state is not None:
            self._on_state(self.status)

    def _poll_interface_state(self, bus: can.BusABC) -> None:
        """Interfaces that track the controller state themselves (pcan, kvaser ...) say so
        through `bus.state`; the others always say ACTIVE and error frames tell instead."""
        try:
            state = bus.state
        except Exception:  # an interface that cannot tell, or a bus that just failed
            return
        if state == can.BusState.ERROR:
            if self.bus_state != "bus-off":
                self.bus_off += 1
            self._set_bus_state("bus-off", "the interface reports bus-off")
        elif state == can.BusState.PASSIVE:
            if self.bus_state == "active":
                self.error_passive += 1
            self._set_bus_state("error-passive", "the interface reports error-passive")

    def _bad_frame(self, now: float, exc: FrameError) -> None:
        """Count every bad frame; log one with the link's recent traffic at most every 10 s."""
        self.bad_frames += 1
        if self._last_bad_log is not None and now - self._last_bad_log < 10.0:
            return
        self._last_bad_log = now
        traffic = " ".join(f"{i:03X}#{d.hex().upper()}" for i, d in self._recent)
        log.warning(
            "link %s: bad frame (%d so far): %s; recent frames: %s",
            self.name,
            self.bad_frames,
            exc,
            traffic,
        )

    # --- the supervisor ----------------------------------------------------------------------

    def send(self, can_id: int, data: bytes, *, extended: bool = False) -> None:
        """Send one frame if the bus is open (for keep-alives and polling protocols)."""
        bus = self._bus
        if bus is None:
            raise LinkError(f"link {self.name}: not open")
        try:
            bus.send(can.Message(arbitration_id=can_id, data=data, is_extended_id=extended))
        except can.CanError as exc:
            raise LinkError(f"link {self.name}: send failed: {exc}") from exc

    async def send_async(
        self, can_id: int, data: bytes, *, extended: bool = False, timeout: float = 1.0
    ) -> None:
        """Send one frame without blocking the event loop, within `timeout` seconds."""
        bus = self._bus
        if bus is None:
            raise LinkError(f"link {self.name}: not open")
        msg = can.Message(arbitration_id=can_id, data=data, is_extended_id=extended)
        try:
            await asyncio.wait_for(asyncio.to_thread(bus.send, msg, timeout), timeout + 1.0)
        except (can.CanError, OSError, ValueError) as exc:
            self.send_errors += 1
            raise LinkError(f"link {self.name}: send failed: {_first_line(exc)}") from exc
        except TimeoutError as exc:
            self.send_errors += 1
            raise LinkError(f"link {self.name}: send timed out after {timeout:g} s") from exc
        self.sent += 1

    async def run(self) -> None:
        """Open, read and watch the bus until cancelled; reopen whenever it fails or goes quiet."""
        self._loop = asyncio.get_running_loop()
        backoff = Backoff(_BACKOFF_FIRST_S, _BACKOFF_MAX_S)
        speed = self._clock.speed
        while True:
            try:
                bus = await open_bus(self.config)
            except LinkError as exc:
                self._set_state("down", str(exc))
                await asyncio.sleep(backoff.next() / speed)
                continue
            self._bus = bus
            self._failure = None
            opened_at = self._clock.monotonic()
            stop = threading.Event()
            thread = threading.Thread(
                target=self._reader, args=(bus, stop), name=f"can-{self.name}", daemon=True
            )
            thread.start()
            try:
                reason = await self._watch(opened_at)
                decided_at = self._clock.monotonic()
            finally:
                stop.set()
                self._bus = None
                await asyncio.to_thread(self._close, bus, thread)
            # Frames that came in while the bus was closing mean it is talking again: stay up
            # and reopen, rather than flapping up → silent → up.
            if self.last_frame_at is None or self.last_frame_at < decided_at:
                self._set_state("silent" if reason.startswith("no frame") else "down", reason)
            self.reopens += 1
            if self.last_frame_at is not None and self.last_frame_at >= opened_at:
                backoff.reset()  # it worked for a while: retry soon
            await asyncio.sleep(backoff.next() / self._clock.speed)

    async def _watch(self, opened_at: float) -> str:
        """Return the reason the bus must be reopened."""
        timeout = self.config.silence_timeout_s
        period = min(1.0, timeout / 4) / self._clock.speed
        while True:
            await asyncio.sleep(period)
            if self._failure is not None:
                return self._failure
            bus = self._bus
            if bus is not None:
                self._poll_interface_state(bus)
            now = self._clock.monotonic()
            last = self.last_frame_at if self.last_frame_at is not None else opened_at
            if now - max(last, opened_at) > timeout:
                return f"no frame for {timeout:g} s"

    def _close(self, bus: can.BusABC, thread: threading.Thread) -> None:
        thread.join(timeout=2.0)
        try:
            bus.shutdown()
        except Exception as exc:  # closing a bus that already failed may fail again: log it
            log.debug("link %s: closing bus: %s", self.name, exc)


# --- sending: polled protocols and the inverter keep-alive ---------------------------------------


@runtime_checkable
class PollSource(Protocol):
    """Something that has frames to send every poll cycle (a polled driver, the keep-alive)."""

    def requests(self) -> Sequence[tuple[int, bytes, bool]]: ...


class KeepAlive:
    """The inverter's keep-alive (0x305, eight zero bytes), for a bus where bankwatch is the
    only receiver: some batteries stop broadcasting when nobody acknowledges them."""

    FRAME: tuple[int, bytes, bool] = (0x305, bytes(8), False)

    def requests(self) -> Sequence[tuple[int, bytes, bool]]:
        return (self.FRAME,)


class CanPoller:
    """Sends every source's requests once per `interval_s` while the bus is open.

    Requests go out one at a time with `gap_s` between them so a slow BMS can answer each
    before the next; replies come back through the link's normal receive path and the drivers
    match them. A failed send is counted and logged once per outage, never fatal.
    """

    def __init__(
        self,
        link: CanLink,
        sources: Sequence[PollSource],
        clock: Clock,
        *,
        interval_s: float = 1.0,
        gap_s: float = 0.02,
    ) -> None:
        self.link = link
        self.sources = list(sources)
        self.clock = clock
        self.interval_s = interval_s
        self.gap_s = gap_s
        self.cycles = 0
        self.failures = 0
        self._failing = False

    async def run(self) -> None:
        speed = self.clock.speed
        while True:
            started = self.clock.monotonic()
            if self.link.is_open:
                await self.cycle()
            elapsed = self.clock.monotonic() - started
            await asyncio.sleep(max(self.interval_s - elapsed, 0.01) / speed)

    async def cycle(self) -> None:
        self.cycles += 1
        for source in self.sources:
            for can_id, data, extended in source.requests():
                try:
                    await self.link.send_async(can_id, data, extended=extended)
                except LinkError as exc:
                    self.failures += 1
                    if not self._failing:
                        log.warning("link %s: polling paused: %s", self.link.name, exc)
                        self._failing = True
                    return
                if self._failing:
                    log.info("link %s: polling again", self.link.name)
                    self._failing = False
                if self.gap_s:
                    await asyncio.sleep(self.gap_s / self.clock.speed)
