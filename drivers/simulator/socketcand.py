"""A socketcand server in asyncio, so the simulator can hand simulated CAN buses to a daemon in
another process on a machine without kernel CAN.

The daemon talks to it through python-can's ``socketcand`` interface, so this speaks the subset of
the linux-can/socketcand ASCII protocol that client uses (``doc/protocol.md`` upstream)::

    server: < hi >
    client: < open CHANNEL >     server: < ok >   or   < error could not open bus > and close
    client: < rawmode >          server: < ok >
    server: < frame 123 1700000000.123456 0102 >       (id 3 hex digits, or 8 when extended)
    server: < error 004 1700000000.123456 >
    client: < send 123 2 1 2 >

python-can's handshake does a single ``recv(256)`` per reply and compares it exactly, so every
handshake reply is its own write and a client gets no frames until a short settle time after its
rawmode ``< ok >`` (see ``raw_settle``): a frame written right behind the ``< ok >`` could arrive
in the same ``recv`` and fail the client's constructor.

Everything runs on the event loop that called :meth:`SocketcandServer.start`; the synchronous
methods (``publish`` and friends) must be called from that loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import socket
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType

__all__ = ["ChannelStats", "FrameListener", "SocketcandServer"]

log = logging.getLogger(__name__)

FrameListener = Callable[[int, bytes, bool], None]
"""Called with (can_id, data, extended) for each frame a client sends."""

_MAX_STD_ID = 0x7FF
_MAX_EXT_ID = 0x1FFFFFFF
_MAX_DLC = 8
# Longer than any command python-can sends; anything beyond is garbage and is thrown away rather
# than buffered without bound.
_MAX_COMMAND = 4096
# How long stop() lets a client drain before aborting it.
_CLOSE_GRACE = 1.0
# Client-supplied text is cut to this in log lines, so a hostile client cannot flood the log.
_MAX_LOGGED = 80


@dataclass(slots=True)
class ChannelStats:
    """What happened on one channel, so tests can tell a quiet bus from a broken one.

    :attr:`SocketcandServer.stats` hands out copies, which stay put while the bus moves on.
    """

    delivered: int = 0
    """Frame writes to clients (a frame that reaches two clients counts twice)."""
    dropped: int = 0
    """Frames not written to a client because its send buffer was full."""
    silenced: int = 0
    """Frames published while the channel was silent."""
    received: int = 0
    """Valid frames clients sent on the channel."""
    rejected: int = 0
    """Malformed or out-of-range ``send`` commands from clients."""
    clients: int = 0
    """Clients currently in raw mode and receiving frames."""


class _Mode(enum.Enum):
    NO_BUS = "no_bus"
    BCM = "bcm"
    RAW = "raw"


@dataclass(eq=False, slots=True)
class _Channel:
    name: str
    silent: bool = False
    listeners: list[FrameListener] = field(default_factory=list)
    live: set[_Connection] = field(default_factory=set)
    stats: ChannelStats = field(default_factory=ChannelStats)


class _BadCommand(ValueError):
    """A client command we understood the verb of but could not accept."""


class SocketcandServer:
    """Serves named simulated CAN channels over the socketcand protocol.

    ``max_client_buffer`` bounds how many bytes may wait unsent for one client; past it frames to
    that client are dropped (and counted) so a stalled reader cannot hold up the others or eat
    memory. ``raw_settle`` is how long after a client's rawmode ``< ok >`` it starts receiving
    frames (see the module docstring).
    """

    def __init__(
        self,
        channels: Iterable[str],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_client_buffer: int = 64 * 1024,
        raw_settle: float = 0.05,
    ) -> None:
        self._channels: dict[str, _Channel] = {}
        for name in channels:
            if not name or any(c.isspace() or c in "<>" for c in name):
                # Such a name could never be opened: the protocol splits on spaces and brackets.
                raise ValueError(f"invalid channel name {name!r}")
            self._channels[name] = _Channel(name)
        if not self._channels:
            raise ValueError("at least one channel is required")
        if max_client_buffer <= 0:
            raise ValueError("max_client_buffer must be positive")
        if raw_settle < 0:
            raise ValueError("raw_settle must not be negative")
        self._host = host
        self._requested_port = port
        self._max_client_buffer = max_client_buffer
        self._raw_settle = raw_settle
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._connections: set[_Connection] = set()
        self._clients_changed = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("server already started")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self._host, self._requested_port
        )
        self._port = int(self._server.sockets[0].getsockname()[1])
        log.info("socketcand server on %s:%d serving %s", self._host, self._port, self.channels)

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def channels(self) -> list[str]:
        return list(self._channels)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        await self._close_connections(list(self._connections), abort=False)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> SocketcandServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- the bus ---------------------------------------------------------------------------------

    def publish(
        self,
        channel: str,
        can_id: int,
        data: bytes,
        *,
        extended: bool = False,
        timestamp: float | None = None,
    ) -> None:
        """Put a frame on the bus, as if a simulated device had sent it.

        Bad arguments raise ``ValueError``: they are bugs in the simulator, not bus conditions.
        """
        chan = self._channel(channel)
        _check_frame(can_id, data, extended)
        if chan.silent:
            chan.stats.silenced += 1
            return
        self._deliver(chan, _format_frame(can_id, data, extended, _now(timestamp)), None)

    def publish_error(self, channel: str, error_id: int = 0x20000004) -> None:
        """Put an error frame on the bus (default: CAN_ERR_FLAG | CAN_ERR_CRTL).

        Sent as the real daemon does, ``< error CLASS SECONDS.USECONDS >`` with the error class
        without CAN_ERR_FLAG; python-can turns it into a message with ``is_error_frame`` set and
        ``arbitration_id`` equal to that class.
        """
        chan = self._channel(channel)
        if not 0 <= error_id <= 0xFFFFFFFF:
            raise ValueError(f"error id {error_id:#x} out of range")
        if chan.silent:
            chan.stats.silenced += 1
            return
        self._deliver(chan, _format_error(error_id & _MAX_EXT_ID, _now(None)), None)

    def add_listener(self, channel: str, callback: FrameListener) -> None:
        """Have ``callback`` see every frame clients send on ``channel``.

        It runs on the event loop inside the connection's read path, so it must not block;
        an exception from it is logged and does not affect the client.
        """
        self._channel(channel).listeners.append(callback)

    def set_silent(self, channel: str, silent: bool) -> None:
        """Make the bus go quiet: published frames (data and error) are discarded until resumed.

        Frames clients send still reach listeners and other clients, as a transmitter on a quiet
        bus is still heard by the other nodes.
        """
        self._channel(channel).silent = silent

    async def drop_clients(self, channel: str | None = None, *, reset: bool = False) -> None:
        """Abort client connections, as if the adapter or server vanished; ``None`` means all.

        Clients still in the handshake go too; a client that has not opened a channel yet only
        when ``channel`` is ``None``. The two ways a peer can vanish look different to
        python-can, so both are offered: by default the socket is closed at once (a FIN, as when
        the server process dies), and its ``recv`` then just returns ``None``; with ``reset`` the
        connection is reset (an RST), and its next ``recv`` raises ``CanError``.
        """
        if channel is not None:
            self._channel(channel)
        victims = [
            conn for conn in self._connections if channel is None or conn.channel_name == channel
        ]
        if reset:
            for conn in victims:
                conn.linger_zero()
        await self._close_connections(victims, abort=True)

    def send_garbage(self, channel: str, payload: bytes) -> None:
        """Write raw bytes to the raw-mode clients of ``channel``, to test their parsers."""
        for conn in list(self._channel(channel).live):
            conn.write(payload)

    @property
    def stats(self) -> dict[str, ChannelStats]:
        """A snapshot of every channel's counters."""
        return {name: dataclasses.replace(chan.stats) for name, chan in self._channels.items()}

    async def wait_for_clients(self, channel: str, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until ``channel`` has at least ``count`` clients receiving frames.

        A client's constructor returning does not mean the server will already deliver to it
        (see ``raw_settle``); this is the point after which a published frame reaches it.
        Raises ``TimeoutError``.
        """
        chan = self._channel(channel)
        async with asyncio.timeout(timeout):
            while len(chan.live) < count:
                await self._clients_changed.wait()

    # -- internals used by connections -----------------------------------------------------------

    def _channel(self, name: str) -> _Channel:
        try:
            return self._channels[name]
        except KeyError:
            raise ValueError(f"unknown channel {name!r}") from None

    def _has_channel(self, name: str) -> bool:
        return name in self._channels

    def _deliver(self, chan: _Channel, line: bytes, sender: _Connection | None) -> None:
        for conn in list(chan.live):
            if conn is sender:
                continue
            if conn.buffered() + len(line) > self._max_client_buffer:
                chan.stats.dropped += 1
                continue
            conn.write(line)
            chan.stats.delivered += 1

    def _client_frame(
        self, conn: _Connection, chan: _Channel, can_id: int, data: bytes, extended: bool
    ) -> None:
        chan.stats.received += 1
        # Like a real bus (and CAN_RAW without recv_own_msgs): everyone else hears it, the sender
        # does not.
        self._deliver(chan, _format_frame(can_id, data, extended, time.time()), conn)
        for callback in list(chan.listeners):
            try:
                callback(can_id, data, extended)
            except Exception:
                log.exception(
                    "listener %r on channel %s failed for frame %X", callback, chan.name, can_id
                )

    def _go_live(self, conn: _Connection, chan: _Channel) -> None:
        chan.live.add(conn)
        chan.stats.clients = len(chan.live)
        self._notify_clients_changed()
        log.debug("client %s receiving frames on %s", conn.peer, chan.name)

    def _leave(self, conn: _Connection, chan: _Channel) -> None:
        if conn in chan.live:
            chan.live.discard(conn)
            chan.stats.clients = len(chan.live)
            self._notify_clients_changed()

    def _register(self, conn: _Connection) -> None:
        self._connections.add(conn)

    def _unregister(self, conn: _Connection) -> None:
        self._connections.discard(conn)

    def _notify_clients_changed(self) -> None:
        # Waiters hold the old event; they wake, re-check and wait on the new one.
        self._clients_changed.set()
        self._clients_changed = asyncio.Event()

    async def _close_connections(self, conns: list[_Connection], *, abort: bool) -> None:
        for conn in conns:
            conn.close(abort=abort)
        if not conns:
            return
        if not abort:
            # A graceful close waits for unsent data, which a client that stopped reading never
            # takes; give it a moment, then cut it off.
            _, stragglers = await asyncio.wait(
                [conn.closed for conn in conns], timeout=_CLOSE_GRACE
            )
            if not stragglers:
                return
            for conn in conns:
                if not conn.closed.done():
                    conn.close(abort=True)
        await asyncio.gather(*(conn.closed for conn in conns))


class _Connection(asyncio.Protocol):
    """One client: its protocol state machine and its command buffer."""

    def __init__(self, server: SocketcandServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._mode = _Mode.NO_BUS
        self._channel: _Channel | None = None
        self._settle_handle: asyncio.TimerHandle | None = None
        self.peer = "?"
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def channel_name(self) -> str | None:
        return None if self._channel is None else self._channel.name

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # As the real daemon does: replies and frames go out at once, one segment per write.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._server._register(self)
        log.debug("client %s connected", self.peer)
        self.write(b"< hi >")

    def data_received(self, data: bytes) -> None:
        try:
            self._buffer += data
            for command in self._take_commands():
                if self._transport is None or self._transport.is_closing():
                    return
                self._handle(command)
        except Exception:
            # Whatever a client sends must not take the server down; drop just this client.
            log.exception("error handling data from client %s; closing it", self.peer)
            self.close(abort=True)

    def eof_received(self) -> bool | None:
        log.debug("client %s closed its side", self.peer)
        return None  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        if self._settle_handle is not None:
            self._settle_handle.cancel()
            self._settle_handle = None
        if self._channel is not None:
            self._server._leave(self, self._channel)
        self._server._unregister(self)
        self._transport = None
        if exc is not None:
            log.debug("client %s connection lost: %s", self.peer, exc)
        else:
            log.debug("client %s disconnected", self.peer)
        if not self.closed.done():
            self.closed.set_result(None)

    # -- used by the server ----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def buffered(self) -> int:
        return 0 if self._transport is None else self._transport.get_write_buffer_size()

    def linger_zero(self) -> None:
        """Make the coming close send an RST instead of a FIN."""
        if self._transport is None:
            return
        sock = self._transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def close(self, *, abort: bool) -> None:
        if self._transport is None:
            if not self.closed.done():
                self.closed.set_result(None)
            return
        if abort:
            self._transport.abort()
        else:
            self._transport.close()

    # -- protocol --------------------------------------------------------------------------------

    def _take_commands(self) -> list[str]:
        """Split complete ``< ... >`` commands off the buffer, discarding bytes between them.

        Same framing as the real daemon: anything before a ``<`` is garbage, a command ends at
        the first ``>``.
        """
        commands: list[str] = []
        while True:
            start = self._buffer.find(b"<")
            if start < 0:
                if self._buffer:
                    log.debug(
                        "client %s: discarding %d bytes of garbage", self.peer, len(self._buffer)
                    )
                self._buffer.clear()
                break
            if start > 0:
                log.debug("client %s: discarding %d bytes before '<'", self.peer, start)
                del self._buffer[:start]
            end = self._buffer.find(b">", 1)
            if end < 0:
                if len(self._buffer) > _MAX_COMMAND:
                    log.warning(
                        "client %s: unterminated command over %d bytes; discarding",
                        self.peer,
                        _MAX_COMMAND,
                    )
                    self._buffer.clear()
                break
            raw = bytes(self._buffer[: end + 1])
            del self._buffer[: end + 1]
            if len(raw) > _MAX_COMMAND:
                log.warning(
                    "client %s: discarding a %d-byte command (limit %d)",
                    self.peer,
                    len(raw),
                    _MAX_COMMAND,
                )
                continue
            commands.append(raw.decode("ascii", errors="replace"))
        return commands

    def _handle(self, command: str) -> None:
        words = command[1:-1].split()
        verb = words[0] if words else ""
        if verb == "echo" and len(words) == 1:
            self.write(command.encode("ascii", errors="replace"))
        elif self._mode is _Mode.NO_BUS:
            if verb == "open" and len(words) == 2:
                self._open(words[1])
            else:
                self._unknown(command)
        elif verb == "send":
            self._send(words[1:])
        elif verb == "rawmode" and len(words) == 1:
            self._enter_raw()
        elif verb == "bcmmode" and len(words) == 1:
            self._leave_raw()
            self._mode = _Mode.BCM
            self.write(b"< ok >")
        else:
            self._unknown(command)

    def _unknown(self, command: str) -> None:
        log.warning(
            "client %s: unknown command %r in mode %s",
            self.peer,
            command[:_MAX_LOGGED],
            self._mode.value,
        )
        self.write(b"< error unknown command >")

    def _open(self, name: str) -> None:
        if not self._server._has_channel(name):
            log.info("client %s tried to open unknown channel %r", self.peer, name[:_MAX_LOGGED])
            self.write(b"< error could not open bus >")
            # The real daemon ends the session here; the client's constructor has failed anyway.
            self.close(abort=False)
            return
        self._channel = self._server._channel(name)
        self._mode = _Mode.BCM
        self.write(b"< ok >")
        log.debug("client %s opened %s", self.peer, name)

    def _enter_raw(self) -> None:
        assert self._channel is not None
        if self._mode is not _Mode.RAW:
            self._mode = _Mode.RAW
            chan = self._channel
            self._settle_handle = asyncio.get_running_loop().call_later(
                self._server._raw_settle, self._settled, chan
            )
        self.write(b"< ok >")

    def _settled(self, chan: _Channel) -> None:
        self._settle_handle = None
        if self._mode is _Mode.RAW and self._transport is not None:
            self._server._go_live(self, chan)

    def _leave_raw(self) -> None:
        if self._settle_handle is not None:
            self._settle_handle.cancel()
            self._settle_handle = None
        if self._channel is not None:
            self._server._leave(self, self._channel)

    def _send(self, args: list[str]) -> None:
        assert self._channel is not None
        chan = self._channel
        try:
            can_id, data, extended = _parse_send(args)
        except _BadCommand as exc:
            # The real daemon logs and sends nothing back; python-can would choke on a reply.
            chan.stats.rejected += 1
            log.warning("client %s: bad send on %s: %s", self.peer, chan.name, exc)
            return
        self._server._client_frame(self, chan, can_id, data, extended)


# -- wire format ---------------------------------------------------------------------------------


def _check_frame(can_id: int, data: bytes, extended: bool) -> None:
    limit = _MAX_EXT_ID if extended else _MAX_STD_ID
    if not 0 <= can_id <= limit:
        kind = "extended" if extended else "standard"
        raise ValueError(f"{kind} CAN id {can_id:#x} out of range")
    if len(data) > _MAX_DLC:
        raise ValueError(f"{len(data)} data bytes; classic CAN carries at most {_MAX_DLC}")


def _now(timestamp: float | None) -> float:
    if timestamp is None:
        return time.time()
    if timestamp < 0:
        raise ValueError("timestamp must not be negative")
    return timestamp


def _format_time(timestamp: float) -> str:
    usec_total = round(timestamp * 1_000_000)
    return f"{usec_total // 1_000_000}.{usec_total % 1_000_000:06d}"


def _format_frame(can_id: int, data: bytes, extended: bool, timestamp: float) -> bytes:
    ident = f"{can_id:08X}" if extended else f"{can_id:03X}"
    # The space before " >" stays even with no data: python-can splits on it and needs the
    # (empty) third field, and the real daemon writes it the same way.
    return f"< frame {ident} {_format_time(timestamp)} {data.hex().upper()} >".encode("ascii")


def _format_error(error_class: int, timestamp: float) -> bytes:
    return f"< error {error_class:03X} {_format_time(timestamp)} >".encode("ascii")


def _parse_send(args: list[str]) -> tuple[int, bytes, bool]:
    """``ID LEN B0 ... Bn`` as python-can and the real daemon write it: id and bytes in hex, bytes
    not zero-padded; 8 id digits mean extended. Length is 0..8, so hex or decimal agree."""
    if len(args) < 2:
        raise _BadCommand("missing id or length")
    ident, length, byte_words = args[0], args[1], args[2:]
    if not 1 <= len(ident) <= 8 or not _is_hex(ident):
        raise _BadCommand(f"bad id {ident[:_MAX_LOGGED]!r}")
    extended = len(ident) == 8
    can_id = int(ident, 16)
    limit = _MAX_EXT_ID if extended else _MAX_STD_ID
    if can_id > limit:
        raise _BadCommand(f"id {ident} out of range")
    if not length.isdigit() or int(length) > _MAX_DLC:
        raise _BadCommand(f"bad length {length[:_MAX_LOGGED]!r}")
    if len(byte_words) != int(length):
        raise _BadCommand(f"length {length} but {len(byte_words)} data bytes")
    if not all(1 <= len(b) <= 2 and _is_hex(b) for b in byte_words):
        raise _BadCommand("bad data byte")
    return can_id, bytes(int(b, 16) for b in byte_words), extended


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)
