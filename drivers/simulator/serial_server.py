"""The simulated batteries' side of a serial line, on a pseudo-terminal.

Each serial link of the bank description becomes a PTY pair. The simulator keeps the master
end; the link's `port` path becomes a symlink to the slave end (`/dev/pts/N`), the way udev makes
`/dev/serial/by-id/...` a symlink to `/dev/ttyUSB0`. `bankwatch run` on the same config opens
that path and cannot tell it from an adapter. An `unplug` fault closes the PTY and removes the
symlink; `replug` opens a new PTY and puts the symlink back, usually to another `/dev/pts/M`.

A PTY moves bytes instantly whatever baud it is set to, so the wire is modelled here: a request
of L bytes "arrives" L x 11 bits after its first byte, the BMS turns around after 3.5 characters,
and the reply goes out at the configured baud in slices, its last byte when the wire would
deliver it. That makes sweep times what an RS485 line at that baud gives. Wire time is bank
time: at `--speed 10` it passes ten times faster, like everything else the simulator does.

On a listen-only link the simulator also plays the bus master (an inverter): it polls every
battery with the protocol's own requests and puts both requests and replies on the wire, and
counts anything the host writes (a listen-only host must write nothing). A device that talks
unasked (a VE.Direct shunt) just sends its frames every period, whatever the link says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import termios
import tty
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from bankwatch.drivers.errors import FrameError, LinkError
from bankwatch.drivers.links.serial import FrameSplitter, SerialLinkSettings
from bankwatch.drivers.model import Reading
from bankwatch.drivers.serial_codec import SerialCodec, t35_s, talks_unasked, wire_time_s

__all__ = ["SerialBus", "SimDevice"]

log = logging.getLogger(__name__)

# The reply goes out in slices of this much wire time (so the host sees partial frames).
_SLICE_S = 0.005


@dataclass(frozen=True, slots=True)
class SimDevice:
    """A simulated battery on a line: its address, the protocol it speaks, where its state
    comes from, and whether it is talking right now."""

    name: str
    address: int
    codec: SerialCodec
    reading: Callable[[], Reading]
    talking: Callable[[], bool]


class SerialBus:
    """One serial link of the simulated bank, served on a PTY."""

    def __init__(
        self,
        link_name: str,
        config: SerialLinkSettings,
        devices: list[SimDevice],
        *,
        turnaround_s: float | None = None,
        speed: float = 1.0,
    ) -> None:
        self.name = link_name
        self.config = config
        self.devices = devices
        self.baud = config.baud
        # The wire runs on the bank's clock: at --speed 10 a frame takes a tenth of the time.
        self.speed = speed
        turnaround = t35_s(self.baud) if turnaround_s is None else turnaround_s
        self.turnaround_s = turnaround / speed
        self.path = Path(config.port)
        self.pty_path: str | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._rx = bytearray()
        self._ready = asyncio.Event()
        self._first_rx_at: float | None = None
        self.requests = 0
        self.replies = 0
        self.host_bytes = 0  # what the host wrote (on a listen-only line it must be 0)
        self.wrong_baud = 0  # requests ignored because the host's port runs at another baud
        self._warned_bytes = 0
        self._task: asyncio.Task[None] | None = None

    # --- the PTY -------------------------------------------------------------------------------

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def plug(self) -> str:
        """Open a PTY and point the link's path at it; returns the PTY's path."""
        if self._master is not None:
            return self.pty_path or ""
        if self.path.exists() and not self.path.is_symlink():
            raise LinkError(
                f"link {self.name}: {self.path} is a real file or device; the simulator serves "
                "a serial link through a symlink it creates (use a path such as /tmp/bank/ttyA)"
            )
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line editing: bytes as they are
        os.set_blocking(master, False)
        pty_path = os.ttyname(slave)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(pty_path)
            os.replace(tmp, self.path)
        except OSError as exc:
            os.close(master)
            os.close(slave)
            raise LinkError(f"link {self.name}: cannot create {self.path}: {exc.strerror}") from exc
        # The slave stays open here too, so the master never sees EIO while the daemon reopens.
        self._master, self._slave, self.pty_path = master, slave, pty_path
        self._rx.clear()
        asyncio.get_running_loop().add_reader(master, self._on_readable)
        return pty_path

    def unplug(self) -> None:
        """The adapter vanishes: the PTY closes (the daemon's reads fail) and the path goes."""
        master, slave = self._master, self._slave
        self._master = self._slave = None
        if master is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(master)
            os.close(master)
        if slave is not None:
            os.close(slave)
        with contextlib.suppress(FileNotFoundError):
            if self.path.is_symlink():
                self.path.unlink()
        self._ready.set()

    def _on_readable(self) -> None:
        if self._master is None:
            return
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # no slave open right now; the daemon is reopening
        if not data:
            return
        if self._first_rx_at is None:
            self._first_rx_at = asyncio.get_running_loop().time()
        self._rx += data
        self.host_bytes += len(data)
        self._ready.set()

    def _write(self, data: bytes) -> None:
        if self._master is None:
            return
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._master, data)  # a full buffer (nobody reading) drops, as a bus would

    async def _transmit(self, data: bytes, start: float) -> float:
        """Put `data` on the wire from loop time `start` at the line's baud, in slices; returns
        when the last byte is delivered."""
        loop = asyncio.get_running_loop()
        per_slice = max(1, int(_SLICE_S * self.baud * self.speed / 11))
        t = start
        for i in range(0, len(data), per_slice):
            chunk = data[i : i + per_slice]
            t += wire_time_s(len(chunk), self.baud) / self.speed
            delay = t - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._write(chunk)
        return t

    # --- serving -------------------------------------------------------------------------------

    async def run(self) -> None:
        if self.devices and all(talks_unasked(d.codec) for d in self.devices):
            await self._stream()
        elif self.config.listen_only:
            await self._master_poll()
        else:
            await self._respond()

    def _device_for(self, frame: bytes, codec: SerialCodec) -> list[SimDevice]:
        address = codec.frame_address(frame)
        return [d for d in self.devices if d.address == address or address is None]

    async def _respond(self) -> None:
        loop = asyncio.get_running_loop()
        splitter = FrameSplitter([d.codec for d in self.devices])
        while True:
            await self._ready.wait()
            self._ready.clear()
            if self._master is None:
                splitter.clear()
                self._first_rx_at = None
                await asyncio.sleep(0.05)
                continue
            first = self._first_rx_at if self._first_rx_at is not None else loop.time()
            splitter.feed(bytes(self._rx))
            self._rx.clear()
            self._first_rx_at = None
            if not self._host_baud_matches():
                # At another baud the BMS hears noise, not a request (a PTY carries the bytes
                # anyway, so this is modelled): scan must find the right baud.
                self.wrong_baud += 1
                splitter.clear()
                continue
            for frame, codec in splitter.frames():
                # The request's last byte arrives after its wire time; then the turnaround.
                start = first + wire_time_s(len(frame), self.baud) / self.speed + self.turnaround_s
                if self.config.echo:
                    self._write(frame)
                reply = self._answer(frame, codec)
                if reply is not None:
                    await self._transmit(reply, start)
                    self.replies += 1
                first = loop.time()

    def _host_baud_matches(self) -> bool:
        """Whether the host set its end of the PTY to this link's baud (PTYs keep the setting
        though they ignore it). A baud termios has no constant for is not checked."""
        want = getattr(termios, f"B{self.baud}", None)
        if want is None or self._slave is None:
            return True
        try:
            speed = termios.tcgetattr(self._slave)[5]
        except termios.error:
            return True
        return bool(speed == want)

    def _answer(self, request: bytes, codec: SerialCodec) -> bytes | None:
        try:
            if not codec.is_request(request):
                return None
        except FrameError:
            return None
        self.requests += 1
        for dev in self._device_for(request, codec):
            if not dev.talking():
                continue
            reading = dev.reading()
            if reading.firmware is None:
                reading = replace(reading, firmware="1.0")
            reply = dev.codec.encode_reply(request, reading)
            if reply is not None:
                return reply
        return None

    async def _master_poll(self) -> None:
        """Play the inverter: poll every battery with its protocol's requests, forever."""
        loop = asyncio.get_running_loop()
        interval = self.config.poll_interval_s / self.speed
        gap = max(t35_s(self.baud), 0.01) / self.speed
        while True:
            started = loop.time()
            for dev in self.devices:
                for request in dev.codec.poll_requests(dev.address):
                    if self._master is None:
                        break
                    t = await self._transmit(request, loop.time())
                    reply = self._answer(request, dev.codec)
                    if reply is not None:
                        await self._transmit(reply, t + self.turnaround_s)
                        self.replies += 1
                    await asyncio.sleep(gap)
            if self.host_bytes > self._warned_bytes:
                self._warned_bytes = self.host_bytes
                log.warning(
                    "link %s: the host wrote %d bytes on a listen-only line",
                    self.name,
                    self.host_bytes,
                )
                self._rx.clear()
            await asyncio.sleep(max(0.0, interval - (loop.time() - started)))

    async def _stream(self) -> None:
        """Every device sends what it sends unasked, once a period, at the line's baud."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            period = 1.0
            for dev in self.devices:
                frames: Callable[[Reading], list[bytes]] | None = getattr(
                    dev.codec, "unasked_frames", None
                )
                period = float(getattr(dev.codec, "UNASKED_PERIOD_S", period))
                if frames is None or not dev.talking() or self._master is None:
                    continue
                for frame in frames(dev.reading()):
                    await self._transmit(frame, loop.time())
                    self.replies += 1
            await asyncio.sleep(max(0.0, period / self.speed - (loop.time() - started)))

    def close(self) -> None:
        self.unplug()
