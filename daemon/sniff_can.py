"""`bankwatch sniff` on a CAN bus: every frame as it arrives, decoded by the CAN protocols
bankwatch knows, through the same CanLink as the daemon (silence watchdog, reopen, error
frames). `bankwatch sniff` dispatches here for a configured CAN link name or
`--interface/--channel`; a serial port path goes to the serial sniffer.

One line per frame: time since start, id, data, and what it says:

      0.012  351       1402C012C012C201  pylontech-can  charge_voltage_limit_v=53.2 ...
      0.013  18904001  02100000753001F4  daly-can       pack_voltage_v=52.8 ...

`--json` prints one JSON object per frame instead. The summary (frames per id, error frames,
bus state) goes to stderr at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import enum
import json
import sys
from collections import Counter
from typing import Any, TextIO

from bankwatch.daemon.config import load_config
from bankwatch.daemon.link_config import CanLinkConfig
from bankwatch.drivers.clock import SystemClock
from bankwatch.drivers.errors import FrameError, UnknownCommandError, UsageError
from bankwatch.drivers.links.can import CanLink
from bankwatch.drivers.model import Reading, flag_names
from bankwatch.drivers.registry import can_protocols

__all__ = ["decode_any", "link_config_from_args", "run_sniff_can"]


def link_config_from_args(args: argparse.Namespace) -> CanLinkConfig:
    """The link a sniff opens: a configured one by name, or one built from the options."""
    if args.config:
        config = load_config(args.config)
        link = config.links.get(args.target)
        if link is None:
            known = ", ".join(sorted(config.links)) or "none"
            raise UsageError(f"{args.config} has no link named {args.target!r} (links: {known})")
        if not isinstance(link, CanLinkConfig):
            raise UsageError(f"link {args.target!r} is a serial link, not a CAN bus")
        return link
    fields: dict[str, Any] = {
        "type": "can",
        "interface": args.interface or "socketcan",
        "channel": args.channel or args.target,
    }
    for key in ("bitrate", "host", "port"):
        if getattr(args, key) is not None:
            fields[key] = getattr(args, key)
    try:
        return CanLinkConfig.model_validate(fields)
    except ValueError as exc:
        raise UsageError(f"sniff: {exc}") from None


def decode_any(can_id: int, data: bytes, extended: bool) -> tuple[str, dict[str, Any]]:
    """What a frame says in the first CAN protocol of the registry that reads it:
    (protocol, fields); ("", {}) when none does, ("error", ...) when one finds it broken."""
    for name, info in can_protocols().items():
        if info.can_decode is None:
            continue
        try:
            reading = info.can_decode(can_id, data, extended)
        except UnknownCommandError:
            continue  # not this protocol's frame: ask the next
        except FrameError as exc:
            return "error", {"error": str(exc)}
        return name, _fields_of(reading)
    return "", {}


def _fields_of(reading: Reading) -> dict[str, Any]:
    """The fields a frame carried, in the Reading's order (no derived ones such as power_w)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(reading):
        value = getattr(reading, f.name)
        if f.name in ("subject", "at") or value is None or (f.name == "extra" and not value):
            continue
        out[f.name] = value
    return out


def _text(value: Any) -> Any:
    if isinstance(value, enum.Flag):
        return flag_names(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _describe(fields: dict[str, Any]) -> str:
    parts: list[str] = []
    for key, value in fields.items():
        if value is None:
            continue
        if key == "extra":
            parts.extend(f"{k}={v}" for k, v in value)
        else:
            parts.append(f"{key}={_text(value)}")
    return " ".join(parts)


class _Printer:
    def __init__(self, out: TextIO, as_json: bool, start: float) -> None:
        self.out = out
        self.as_json = as_json
        self.start = start
        self.by_id: Counter[int] = Counter()

    def __call__(self, can_id: int, data: bytes, extended: bool, now: float) -> None:
        self.by_id[can_id] += 1
        protocol, fields = decode_any(can_id, data, extended)
        ident = f"{can_id:08X}" if extended else f"{can_id:03X}"
        if self.as_json:
            record = {
                "t": round(now - self.start, 6),
                "id": ident,
                "data": data.hex().upper(),
                "protocol": protocol or None,
                "fields": {
                    k: _text(v) for k, v in fields.items() if v is not None and k != "extra"
                },
            }
            self.out.write(json.dumps(record) + "\n")
        else:
            self.out.write(
                f"{now - self.start:10.3f}  {ident:<8}  {data.hex().upper():<16}  "
                f"{protocol or '-':<13}  {_describe(fields)}\n"
            )
        self.out.flush()


async def run_sniff_can(
    link_cfg: CanLinkConfig,
    *,
    name: str,
    as_json: bool = False,
    duration_s: float | None = None,
    out: TextIO | None = None,
) -> int:
    from bankwatch.daemon.service import install_stop_signals

    clock = SystemClock()
    printer = _Printer(out or sys.stdout, as_json, clock.monotonic())
    link = CanLink(name, link_cfg.settings(), printer, clock)
    stop = asyncio.Event()
    install_stop_signals(stop)
    task = asyncio.create_task(link.run(), name=f"sniff-{name}")
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), duration_s)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    status = link.status
    ids = ", ".join(f"{i:X}×{n}" for i, n in sorted(printer.by_id.items())) or "none"
    print(
        f"sniff {name}: {status.frames} frames ({ids}), {status.error_frames} error frames, "
        f"bus {status.bus_state}, link {status.state} ({status.detail})",
        file=sys.stderr,
    )
    return 0
