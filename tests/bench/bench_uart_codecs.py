"""Throughput of the UART codecs (daly, jbd, jk-b, jk-pb): decode of the captured frames, a
whole poll's replies encoded by the simulator's side, and Daly's merge of a poll. Prints figures;
asserts nothing. Not collected by pytest (the name does not start with test_).

    .venv/bin/python -m tests.bench.bench_uart_codecs
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import ModuleType

from bankwatch.drivers import daly, jbd, jk_b, jk_pb
from bankwatch.drivers.model import Reading
from tests.helpers import load_vectors

READING = Reading(
    pack_voltage_v=53.1,
    current_a=-12.3,
    soc_pct=64.0,
    soh_pct=98.0,
    remaining_ah=180.0,
    full_charge_ah=280.0,
    design_ah=280.0,
    cycles=120,
    cell_voltages_v=tuple(3.30 + i / 1000 for i in range(16)),
    temperatures_c=(21.0, 22.0, 23.0, 24.0),
    mosfet_temperature_c=30.0,
    charge_enabled=True,
    discharge_enabled=True,
    model="SIM",
    firmware="1.0",
    serial="S1",
    manufacturer="SIM",
)


def _rate(fn: Callable[[], object], seconds: float = 0.5) -> float:
    """Calls per second of `fn`, measured over about `seconds`."""
    n = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            fn()
        n += 50
    return n / elapsed


def _frames(name: str, codec: ModuleType) -> list[bytes]:
    out = []
    for v in load_vectors(name):
        frame = bytes.fromhex(v["frame_hex"])
        try:
            codec.decode(frame)
        except Exception:  # the other JK protocol's frames
            continue
        if v.get("direction") != "request":
            out.append(frame)
    return out


def main() -> None:
    rows = []
    for vectors, codec in (("daly", daly), ("jbd", jbd), ("jk", jk_b), ("jk", jk_pb)):
        frames = _frames(vectors, codec)
        per_frame = _rate(lambda fs=frames, c=codec: [c.decode(f) for f in fs]) * len(frames)
        requests = codec.poll_requests(1)
        replies = [codec.encode_reply(r, READING) for r in requests]
        poll_bytes = sum(len(r) for r in requests) + sum(len(r or b"") for r in replies)
        encode = _rate(lambda rs=requests, c=codec: [c.encode_reply(r, READING) for r in rs])
        rows.append((codec.PROTOCOL, len(frames), per_frame, encode, poll_bytes))
    daly_poll = []
    for req in daly.poll_requests(1):
        reply = daly.encode_reply(req, READING) or b""
        daly_poll += [reply[i : i + 13] for i in range(0, len(reply), 13)]
    merge = _rate(lambda: daly.merge(daly_poll))

    head = ("protocol", "vectors", "decode/s", "polls encoded/s", "poll bytes")
    print(f"{head[0]:<8} {head[1]:>7} {head[2]:>12} {head[3]:>16} {head[4]:>10}")
    for name, n, dec, enc, size in rows:
        print(f"{name:<8} {n:>7} {dec:>12,.0f} {enc:>16,.0f} {size:>10}")
    print(f"daly merge of a whole 16-cell poll ({len(daly_poll)} frames): {merge:,.0f}/s")


if __name__ == "__main__":
    main()
