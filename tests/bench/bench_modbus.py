"""Decode cost of the Modbus codecs: seplos-v3 in code against the same blocks as a register map,
and how fast frame_length splits a listen-only byte stream. Prints figures; asserts nothing.

    .venv/bin/python tests/bench/bench_modbus.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bankwatch.drivers import modbus_rtu, seplos_v3
from bankwatch.drivers.modbus_map import RegisterMapCodec
from bankwatch.drivers.modbus_map_schema import resolve_map
from tests.helpers import load_vectors

FRAMES = {v["id"]: bytes.fromhex(v["frame_hex"]) for v in load_vectors("seplos_v3_modbus")}
PAIRS = [
    (FRAMES["seplos3_SG16S200A_PIA"], FRAMES["seplos3_req_PIA"]),
    (FRAMES["seplos3_SG16S200A_PIB"], FRAMES["seplos3_req_PIB"]),
]


def per_call_us(fn: Callable[[], object], seconds: float = 1.0) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(100):
            fn()
        n += 100
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    codec = RegisterMapCodec(resolve_map("seplos-v3-pack"))
    for reply, request in PAIRS:
        name = "PIA" if reply[2] == 34 else "PIB"
        code = per_call_us(lambda r=reply, q=request: seplos_v3.decode(r, q))
        mapped = per_call_us(lambda r=reply, q=request: codec.decode(r, q))
        print(f"{name} decode: seplos-v3 codec {code:7.1f} µs   modbus-map {mapped:7.1f} µs")
    stream = b"".join(f for pair in PAIRS for f in reversed(pair)) * 50

    def split() -> None:
        buf = stream
        while buf:
            n = modbus_rtu.frame_length(buf)
            assert n is not None
            buf = buf[n:]

    us = per_call_us(split)
    print(
        f"frame_length: {len(stream)} bytes ({4 * 50} frames) split in {us:.0f} µs "
        f"= {len(stream) / us:.1f} MB/s (19200 baud carries 0.0017 MB/s)"
    )


if __name__ == "__main__":
    main()
