"""`bankwatch scan PORT` and `bankwatch sniff PORT`: finding what is on an RS485 line, and
watching a bus someone else polls.

scan tries protocols, baud rates and addresses one request at a time (the first request of the
protocol's poll cycle), and for every device that answers with a frame that decodes, runs the
whole poll and the identity requests to report model, serial and firmware and a few live values,
then prints a config snippet to paste. A device that talks unasked (a VE.Direct shunt) is
listened to for a few seconds at each baud instead. Shipped register maps are tried as
protocols of their own ("modbus-map:NAME"), at 0-15 and the addresses the map names.

sniff never writes: it cuts what it hears into frames with every candidate codec, pairs each
reply with the request before it, and prints one line (or one JSON object) per frame.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from bankwatch.drivers.clock import SystemClock
from bankwatch.drivers.errors import FrameError, LinkError, UsageError
from bankwatch.drivers.links.serial import (
    FrameSplitter,
    SerialLine,
    SerialLinkSettings,
    SerialPort,
)
from bankwatch.drivers.model import Protection, Reading, flag_names
from bankwatch.drivers.registry import MAP_PREFIX, protocol_info, serial_codecs
from bankwatch.drivers.serial_codec import (
    ListenDriver,
    PollDriver,
    SerialCodec,
    info_requests,
    talks_unasked,
)

__all__ = [
    "Found",
    "is_serial_port",
    "parse_addresses",
    "scan",
    "scan_report",
    "sniff",
]

_SERIAL_PREFIXES = ("/dev/tty", "/dev/serial/", "/dev/pts/", "/dev/rfcomm", "COM")


def is_serial_port(target: str) -> bool:
    """Whether `bankwatch sniff TARGET` names a serial port (else a CAN interface or link):
    a device path under /dev that is not a CAN interface, or any existing file path."""
    if target.startswith(_SERIAL_PREFIXES) or target.startswith(("/", "./", "../")):
        return True
    return "/" in target and os.path.exists(target)


def parse_addresses(text: str) -> list[int]:
    """`0-15`, `2,3,7`, `1-4,9` -> addresses."""
    out: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            first, last = int(lo, 0), int(hi or lo, 0)
            if not 0 <= first <= last <= 255:
                raise ValueError
            out.extend(range(first, last + 1))
    except ValueError:
        raise UsageError(f"addresses: {text!r} is not like 0-15 or 2,3,7 (0-255)") from None
    return sorted(set(out))


@dataclass
class Found:
    protocol: str
    baud: int
    address: int
    reading: Reading = field(default_factory=Reading)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"protocol": self.protocol, "baud": self.baud}
        out["address"] = self.address
        if self.error:
            out["error"] = self.error
        out["reading"] = self.reading.to_json()
        return out


# How long scan listens for a device that talks unasked (VE.Direct: a block every second).
_LISTEN_S = 2.5


def _codecs(names: Sequence[str] | None) -> dict[str, SerialCodec]:
    available = serial_codecs()
    if not names:
        return available
    unknown = [n for n in names if n not in available]
    if unknown:
        raise UsageError(
            f"not a serial protocol: {', '.join(unknown)} (known: {', '.join(sorted(available))})"
        )
    return {n: available[n] for n in names}


async def scan(
    port: str,
    *,
    protocols: Sequence[str] | None = None,
    bauds: Sequence[int] | None = None,
    addresses: Sequence[int] | None = None,
    timeout_s: float = 0.3,
    progress: TextIO | None = None,
) -> list[Found]:
    """Every (protocol, baud, address) that answers on `port`."""
    codecs = _codecs(protocols)
    plan: dict[int, list[tuple[str, SerialCodec]]] = {}
    for name, codec in codecs.items():
        for baud in bauds or [codec.DEFAULT_BAUD]:
            plan.setdefault(baud, []).append((name, codec))
    found: list[Found] = []
    clock = SystemClock()
    for baud, members in sorted(plan.items()):
        cfg = SerialLinkSettings(
            port=port, baud=baud, retries=0, reply_timeout_s=timeout_s, gap_s=0.0
        )
        line = SerialLine("scan", cfg, [], lambda _s, _r: None, clock)
        sport = await SerialPort.open(port, baud)
        try:
            idle = clock.monotonic()
            for name, codec in members:
                if talks_unasked(codec):
                    hit = await _listen_for(sport, name, codec, baud, progress)
                    if hit is not None:
                        found.append(hit)
                    idle = clock.monotonic()
                    continue
                info = protocol_info(name)
                single = info is not None and info.addressing == "broadcast"
                for address in [0] if single else (addresses or _default_addresses(codec)):
                    if progress is not None:
                        progress.write(f"\r{name} at {baud} baud, address {address}   ")
                        progress.flush()
                    try:
                        probe = codec.poll_requests(address)[:1]
                    except (FrameError, UsageError, ValueError):
                        continue  # an address the protocol refuses (JK-PB 0: the bus master)
                    if not probe:
                        continue
                    txn, idle = await line.transact(sport, codec, probe[0], idle)
                    if not txn.replies:
                        continue
                    hit = Found(name, baud, address)
                    try:
                        codec.decode(txn.replies[0], probe[0])
                    except FrameError as exc:
                        hit.error = f"answered, but not in {name}: {exc}"
                        found.append(hit)
                        continue
                    hit.reading, idle = await _read_all(line, sport, codec, address, idle)
                    found.append(hit)
        finally:
            sport.close()
    if progress is not None:
        progress.write("\r" + " " * 60 + "\r")
    return found


def _default_addresses(codec: SerialCodec) -> list[int]:
    extra: Sequence[int] = getattr(codec, "SCAN_ADDRESSES", ())
    return list(dict.fromkeys([*range(16), *extra]))


async def _listen_for(
    port: SerialPort, name: str, codec: SerialCodec, baud: int, progress: TextIO | None
) -> Found | None:
    """Listen for a device that talks unasked; what it said, or None when nothing decoded."""
    if progress is not None:
        progress.write(f"\r{name} at {baud} baud, listening   ")
        progress.flush()
    port.discard_input()
    splitter = FrameSplitter([codec])
    listener = ListenDriver("scan", 0, codec)
    loop = asyncio.get_running_loop()
    end = loop.time() + _LISTEN_S
    heard: Found | None = None
    while loop.time() < end:
        chunk = await port.read(max(0.0, min(0.2, end - loop.time())))
        splitter.feed(chunk)
        for frame, _ in splitter.frames():
            try:
                reading = listener.on_heard(None, frame, loop.time())
            except FrameError as exc:
                if heard is None:
                    heard = Found(name, baud, 0, error=f"heard, but not in {name}: {exc}")
                continue
            heard = Found(name, baud, 0, reading=reading)
    return heard


async def _read_all(
    line: SerialLine, port: SerialPort, codec: SerialCodec, address: int, idle: float
) -> tuple[Reading, float]:
    """One whole poll cycle plus the identity requests of a device that answered."""
    dev = PollDriver("scan", address, codec)
    for request in [*codec.poll_requests(address), *info_requests(codec, address)]:
        txn, idle = await line.transact(port, codec, request, idle, known=dev.known)
        if txn.replies:
            try:
                dev.on_reply(request, txn.replies, txn.done_at)
            except FrameError:
                continue
    try:
        reading = dev.end_cycle(time.monotonic())
    except FrameError:
        reading = None
    return (reading or Reading()), idle


def _summary(r: Reading) -> str:
    parts = []
    ident = ", ".join(
        f"{k} {v}"
        for k, v in (("model", r.model), ("serial", r.serial), ("firmware", r.firmware))
        if v
    )
    if ident:
        parts.append(ident)
    values = []
    if r.pack_voltage_v is not None:
        values.append(f"{r.pack_voltage_v:.2f} V")
    if r.current_a is not None:
        values.append(f"{r.current_a:+.1f} A")
    if r.soc_pct is not None:
        values.append(f"SOC {r.soc_pct:g} %")
    if r.cell_voltages_v:
        values.append(f"{len(r.cell_voltages_v)} cells")
    for name, state in (("charge", r.charge_enabled), ("discharge", r.discharge_enabled)):
        if state is not None:
            values.append(f"{name} {'on' if state else 'OFF'}")
    if r.protections:
        values.append("protection: " + ", ".join(flag_names(r.protections)))
    if r.charge_voltage_limit_v is not None:
        values.append(f"limits {r.charge_voltage_limit_v:g} V")
    if values:
        parts.append(" ".join(values))
    return "; ".join(parts) or "no values decoded"


def scan_report(port: str, found: list[Found]) -> str:
    good = [f for f in found if f.error is None]
    lines = []
    if not found:
        return f"{port}: nothing answered"
    lines.append(f"{port}: {len(good)} device(s) answered")
    for f in found:
        what = f.error if f.error else _summary(f.reading)
        lines.append(f"  {f.protocol} at {f.baud} baud, address {f.address}: {what}")
    if good:
        lines.append("")
        lines.append("config to paste (name the batteries and their model):")
        for baud in sorted({f.baud for f in good}):
            link = f"rs485-{baud}" if len({f.baud for f in good}) > 1 else "rs485"
            lines.append("")
            lines.append(f"[links.{link}]")
            lines.append('type = "serial"')
            lines.append(f'port = "{port}"')
            lines.append(f"baud = {baud}")
            for f in good:
                if f.baud != baud:
                    continue
                if _talks_unasked(f.protocol):
                    # A shunt meters the whole bank: it is the bank's source, not a battery.
                    lines.append(f'# [bank] source = {{ link = "{link}", {_source_keys(f)} }}')
                    continue
                lines.append(
                    f'# {{ name = "?", model = "?", source = {{ link = "{link}", '
                    f"{_source_keys(f)} }} }}"
                )
    return "\n".join(lines)


def _source_keys(f: Found) -> str:
    """The protocol part of a config source: a shipped map is protocol "modbus-map" with its
    map; a device that talks unasked has no address."""
    if f.protocol.startswith(MAP_PREFIX):
        name = f.protocol.removeprefix(MAP_PREFIX)
        return f'protocol = "modbus-map", map = "{name}", address = {f.address}'
    if _talks_unasked(f.protocol):
        return f'protocol = "{f.protocol}"'
    return f'protocol = "{f.protocol}", address = {f.address}'


def _talks_unasked(protocol: str) -> bool:
    info = protocol_info(protocol)
    return info is not None and info.serial_codec is not None and talks_unasked(info.serial_codec)


# --- sniff ---------------------------------------------------------------------------------------


async def sniff(
    port: str,
    *,
    protocols: Sequence[str] | None = None,
    baud: int = 9600,
    duration_s: float | None = None,
    json_out: bool = False,
    out: TextIO | None = None,
) -> int:
    """Print every frame heard on `port` until Ctrl-C or `duration_s`; returns the frame count."""
    out = out or sys.stdout
    codecs = _codecs(protocols)
    splitter = FrameSplitter(list(codecs.values()))
    names = {id(c): n for n, c in codecs.items()}
    sport = await SerialPort.open(port, baud)
    loop = asyncio.get_running_loop()
    end = None if duration_s is None else loop.time() + duration_s
    pending: dict[int, bytes] = {}  # last request per codec
    frames = 0
    try:
        while end is None or loop.time() < end:
            left = 0.2 if end is None else max(0.0, min(0.2, end - loop.time()))
            chunk = await sport.read(left)
            if not chunk:
                if splitter.buf:
                    splitter.drop_one()
                continue
            splitter.feed(chunk)
            for frame, codec in splitter.frames():
                frames += 1
                _print_frame(out, frame, codec, codecs, names, pending, json_out)
    except LinkError:
        raise
    finally:
        sport.close()
    return frames


def _print_frame(
    out: TextIO,
    frame: bytes,
    codec: SerialCodec,
    codecs: dict[str, SerialCodec],
    names: dict[int, str],
    pending: dict[int, bytes],
    json_out: bool,
) -> None:
    now = time.time()
    stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
    # Frames of one family match every variant's framing: the first that decodes names it.
    candidates = [codec] + [c for c in codecs.values() if c is not codec and _frames_as(c, frame)]
    record: dict[str, Any] = {"time": stamp, "hex": frame.hex().upper()}
    for c in candidates:
        try:
            is_request = c.is_request(frame)
            if is_request:
                c.decode(frame, None)
                pending[id(c)] = frame
                for other in candidates:
                    pending[id(other)] = frame
                record.update(protocol=names[id(c)], kind="request")
            else:
                reading = c.decode(frame, pending.get(id(c)))
                record.update(protocol=names[id(c)], kind="reply", reading=reading.to_json())
            record["address"] = c.frame_address(frame)
            break
        except FrameError as exc:
            record["error"] = str(exc)
    else:
        record.setdefault("kind", "bad")
    if "protocol" in record:
        record.pop("error", None)
    if json_out:
        out.write(json.dumps(record) + "\n")
    else:
        who = f"{record.get('protocol', '?')} addr {record.get('address')}"
        if record["kind"] == "reply":
            body = _summary(_reading_from(record["reading"])) + f"  {json.dumps(record['reading'])}"
        elif record["kind"] == "request":
            body = f"request {record['hex'][:40]}"
        else:
            body = f"undecoded ({record.get('error', '')}) {record['hex'][:40]}"
        out.write(f"{stamp} {who:<24} {record['kind']:<8} {body}\n")
    out.flush()


def _frames_as(codec: SerialCodec, frame: bytes) -> bool:
    try:
        return codec.frame_length(frame) == len(frame)
    except FrameError:
        return False


def _reading_from(data: dict[str, Any]) -> Reading:
    keep = (
        "pack_voltage_v",
        "current_a",
        "soc_pct",
        "model",
        "serial",
        "firmware",
        "charge_enabled",
        "discharge_enabled",
        "charge_voltage_limit_v",
    )
    simple: dict[str, Any] = {k: v for k, v in data.items() if k in keep}
    if "cell_voltages_v" in data:
        simple["cell_voltages_v"] = tuple(data["cell_voltages_v"])
    if data.get("protections"):
        simple["protections"] = Protection[data["protections"][0].upper()]
        for name in data["protections"][1:]:
            simple["protections"] |= Protection[name.upper()]
    return Reading(**simple)
