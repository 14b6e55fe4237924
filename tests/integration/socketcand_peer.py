"""A Pylontech battery on a socketcand server, in a process of its own, steered over stdin.

Run as `python -m tests.integration.socketcand_peer [PORT]`; it prints `port N` when it
serves, broadcasts a Pylontech frame set every 0.1 s on channel `can0`, and answers each
command line with `ok COMMAND`:

    silent / resume        stop and restart the broadcast (the bus goes quiet)
    errors N               N controller error frames
    busoff                 one bus-off error frame
    garbage                bytes python-can cannot parse, then a malformed frame
    quit                   stop
"""

from __future__ import annotations

import asyncio
import sys

from bankwatch.drivers.model import Alarm, Protection, Reading
from bankwatch.drivers.pylontech_can import encode_reading
from bankwatch.drivers.simulator.socketcand import SocketcandServer

READING = Reading(
    pack_voltage_v=52.4,
    current_a=-12.5,
    temperatures_c=(24.0,),
    soc_pct=81,
    soh_pct=97,
    charge_voltage_limit_v=56.8,
    discharge_voltage_limit_v=44.8,
    charge_current_limit_a=100.0,
    discharge_current_limit_a=100.0,
    charge_enabled=True,
    discharge_enabled=True,
    protections=Protection.NONE,
    alarms=Alarm.NONE,
    modules_online=1,
    manufacturer="PYLON",
)


async def main(port: int) -> None:
    server = SocketcandServer(["can0"], "127.0.0.1", port)
    await server.start()
    print(f"port {server.port}", flush=True)
    frames = encode_reading(READING)

    async def broadcast() -> None:
        while True:
            for can_id, data in frames:
                server.publish("can0", can_id, data)
            await asyncio.sleep(0.1)

    task = asyncio.create_task(broadcast())
    loop = asyncio.get_running_loop()
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            words = line.split()
            if not words or words[0] == "quit":
                break
            cmd = words[0]
            if cmd == "silent":
                server.set_silent("can0", True)
            elif cmd == "resume":
                server.set_silent("can0", False)
            elif cmd == "errors":
                for _ in range(int(words[1])):
                    server.publish_error("can0", 0x20000004)
            elif cmd == "busoff":
                server.publish_error("can0", 0x20000040)
            elif cmd == "garbage":
                server.send_garbage("can0", b"\x00\x01 noise without brackets ")
                server.send_garbage("can0", b"< frame XYZ notatime 00 >")
            print(f"ok {cmd}", flush=True)
    finally:
        task.cancel()
        await server.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
