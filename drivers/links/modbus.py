"""A Modbus RTU master over a serial port, on pymodbus; the one module that imports pymodbus.

pymodbus (3.16 when written; its client API changes between minor versions) owns the port and
the RTU framing on the wire. This module gives the rest of bankwatch plain values: register
lists, bit lists, or whole reply frames rebuilt with bankwatch.drivers.modbus_rtu so a codec's
`decode(frame, request)` works unchanged. Nothing outside sees a pymodbus type or exception:

    no reply in time, port gone        → LinkError
    an exception reply, a reply of the wrong size → FrameError (modbus_rtu.ExceptionReplyError …)

Retries are ours, not pymodbus's (its retries fire back to back): each attempt waits
`timeout_s` for the reply, then a short randomized, capped pause before the next. A port that
fails to open, or that vanishes, is reopened on the next call.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from bankwatch.drivers import modbus_rtu
from bankwatch.drivers.errors import LinkError
from bankwatch.drivers.modbus_rtu import ExceptionReplyError, ModbusFrameError, ReadRequest

__all__ = ["ModbusLink", "RegisterBlock"]

log = logging.getLogger(__name__)
# pymodbus logs every missed reply at ERROR with a dump of recent traffic; this module turns
# those into LinkErrors that the line's owner logs once per transition, so its own voice goes.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

_RETRY_PAUSE_S: Final = 0.05
_RETRY_PAUSE_MAX_S: Final = 0.5
_CONNECT_TIMEOUT_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class RegisterBlock:
    """One read: `function` 0x01-0x04, `count` registers (or coils) from `address`."""

    function: int
    address: int
    count: int


class ModbusLink:
    """One serial port, one Modbus master. Calls are serialised: one request on the wire at a
    time, whoever asks."""

    def __init__(
        self,
        port: str,
        *,
        baud: int = 9600,
        timeout_s: float = 0.5,
        retries: int = 2,
        parity: str = "N",
        stopbits: int = 1,
        handle_local_echo: bool = False,
        name: str | None = None,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.port = port
        self.baud = baud
        self.timeout_s = timeout_s
        self.retries = retries
        self.name = name or port
        self._settings: dict[str, Any] = {
            "baudrate": baud,
            "parity": parity,
            "stopbits": stopbits,
            "handle_local_echo": handle_local_echo,
        }
        self._client: AsyncModbusSerialClient | None = None
        self._lock = asyncio.Lock()

    # --- port ---------------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the port; LinkError if it cannot be opened."""
        if self._client is not None and self._client.connected:
            return
        self.close()
        client = AsyncModbusSerialClient(
            self.port,
            timeout=self.timeout_s,
            retries=0,
            reconnect_delay=0,  # we reopen ourselves, on the next call
            name=self.name,
            **self._settings,
        )
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT_S):
                ok = await client.connect()
        except TimeoutError:
            ok = False
        except (OSError, ModbusException) as exc:
            client.close()
            raise LinkError(f"{self.name}: cannot open serial port {self.port}: {exc}") from exc
        if not ok:
            client.close()
            raise LinkError(f"{self.name}: cannot open serial port {self.port}")
        self._client = client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def __aenter__(self) -> ModbusLink:
        await self.open()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.close()

    # --- reads --------------------------------------------------------------------------------

    async def read_registers(
        self, slave: int, function: int, address: int, count: int
    ) -> list[int]:
        """FC 0x03 (holding) or 0x04 (input) registers."""
        if function not in modbus_rtu.READ_REGISTERS:
            raise ValueError(f"function 0x{function:02X} does not read registers")
        reply = await self._execute(slave, function, address, count)
        registers = list(reply.registers)
        if len(registers) != count:
            raise ModbusFrameError(
                f"{self.name}: slave {slave} sent {len(registers)} registers, {count} asked"
            )
        return registers

    async def read_bits(self, slave: int, function: int, address: int, count: int) -> list[bool]:
        """FC 0x01 (coils) or 0x02 (discrete inputs)."""
        if function not in modbus_rtu.READ_BITS:
            raise ValueError(f"function 0x{function:02X} does not read bits")
        reply = await self._execute(slave, function, address, count)
        bits = list(reply.bits)
        if len(bits) < count:
            raise ModbusFrameError(
                f"{self.name}: slave {slave} sent {len(bits)} bits, {count} asked"
            )
        return [bool(b) for b in bits[:count]]

    async def read_blocks(self, slave: int, blocks: Sequence[RegisterBlock]) -> list[list[int]]:
        """Each block in turn; bit blocks come back as 0/1 lists."""
        out: list[list[int]] = []
        for block in blocks:
            if block.function in modbus_rtu.READ_BITS:
                bits = await self.read_bits(slave, block.function, block.address, block.count)
                out.append([int(b) for b in bits])
            else:
                out.append(
                    await self.read_registers(slave, block.function, block.address, block.count)
                )
        return out

    async def transact(self, request: bytes) -> bytes:
        """Send a read request given as RTU bytes (what a codec's `poll_requests` gives) and
        return the reply as RTU bytes, for the codec's `decode(reply, request)`."""
        req = modbus_rtu.parse_request(request)
        if not isinstance(req, ReadRequest):
            raise ValueError("only read requests go through transact")
        if req.function in modbus_rtu.READ_REGISTERS:
            regs = await self.read_registers(req.slave, req.function, req.address, req.count)
            return modbus_rtu.encode_read_reply(req.slave, req.function, regs)
        bits = await self.read_bits(req.slave, req.function, req.address, req.count)
        return modbus_rtu.encode_read_reply(req.slave, req.function, modbus_rtu.pack_bits(bits))

    # --- the one place pymodbus is called -----------------------------------------------------

    async def _execute(self, slave: int, function: int, address: int, count: int) -> Any:
        async with self._lock:
            last: Exception | None = None
            for attempt in range(self.retries + 1):
                if attempt:
                    pause = min(_RETRY_PAUSE_MAX_S, _RETRY_PAUSE_S * 2 ** (attempt - 1))
                    await asyncio.sleep(random.uniform(pause / 2, pause))
                try:
                    return await self._attempt(slave, function, address, count)
                except (LinkError, ModbusFrameError) as exc:
                    if isinstance(exc, ExceptionReplyError):
                        raise  # the slave answered; asking again gets the same answer
                    last = exc
                    log.debug("%s: attempt %d failed: %s", self.name, attempt + 1, exc)
            assert last is not None
            raise last

    async def _attempt(self, slave: int, function: int, address: int, count: int) -> Any:
        await self.open()
        client = self._client
        assert client is not None
        calls = {
            0x01: client.read_coils,
            0x02: client.read_discrete_inputs,
            0x03: client.read_holding_registers,
            0x04: client.read_input_registers,
        }
        try:
            # pymodbus times the reply itself; this outer bound catches anything it misses.
            async with asyncio.timeout(self.timeout_s + 1.0):
                reply = await calls[function](address, count=count, device_id=slave)
        except TimeoutError:
            raise LinkError(
                f"{self.name}: no reply from slave {slave} within {self.timeout_s} s"
            ) from None
        except ConnectionException as exc:
            self.close()
            raise LinkError(f"{self.name}: serial port {self.port} lost: {exc}") from exc
        except ModbusIOException as exc:
            if self._client is None or not self._client.connected:
                self.close()
            raise LinkError(
                f"{self.name}: no valid reply from slave {slave} to function 0x{function:02X} "
                f"at 0x{address:04X} within {self.timeout_s} s"
            ) from exc
        except (ModbusException, OSError) as exc:
            self.close()
            raise LinkError(f"{self.name}: Modbus request to slave {slave} failed: {exc}") from exc
        if reply.isError():
            raise ExceptionReplyError(slave, function, int(reply.exception_code))
        if reply.dev_id != slave and slave != 0:
            raise ModbusFrameError(
                f"{self.name}: asked slave {slave}, slave {reply.dev_id} answered"
            )
        return reply
