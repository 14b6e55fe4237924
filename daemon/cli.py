"""The `bankwatch` command.

Every error a user can cause ends as one or a few plain lines on stderr and a non-zero exit:
never a traceback. Exit codes: 0 fine, 1 the bank (or a frame) has errors, 2 the command line or
the config is wrong, 3 a link or the runtime failed.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeAlias

from bankwatch.drivers.errors import BankwatchError, ConfigError, FrameError, UsageError

if TYPE_CHECKING:
    from bankwatch.daemon.config import Config

__all__ = ["main"]

log = logging.getLogger("bankwatch")

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_RUNTIME = 3


def demo_config() -> Config:
    """The built-in simulated bank the demo runs on."""
    from importlib import resources

    from bankwatch.daemon.config import parse_config

    text = resources.files("bankwatch.daemon").joinpath("demo.toml").read_text(encoding="utf-8")
    return parse_config(text, "<built-in demo bank>")


def _duration(text: str) -> float:
    """Seconds from "90", "90s", "30m", "2h" or "7d"."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip().lower()
    try:
        value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (try 90, 90s, 30m, 7d)"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"duration must be positive: {text!r}")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def cmd_check(args: argparse.Namespace) -> int:
    from bankwatch.daemon.config import load_config
    from bankwatch.daemon.report import format_findings, format_tree
    from bankwatch.daemon.rules import check_bank
    from bankwatch.daemon.topology import Topology

    config = load_config(args.config)
    topo = Topology(config)
    if args.config_only:
        # The systemd unit's ExecStartPre: refuse a config bankwatch cannot run on (exit 2,
        # above), never a bank that is wired badly: that one is watched, and `run` logs each
        # wiring finding as it starts.
        print(f"{args.config}: config is valid")
        print(format_tree(topo))
        return EXIT_OK
    findings = check_bank(config, topo)
    print(f"{args.config}: config is valid")
    print(format_tree(topo))
    print()
    print(format_findings(findings))
    errors = sum(f.severity == "error" for f in findings)
    warnings = sum(f.severity == "warning" for f in findings)
    print(f"\n{errors} error(s), {warnings} warning(s)")
    return EXIT_FINDINGS if errors else EXIT_OK


def cmd_decode(args: argparse.Namespace) -> int:
    import json

    from bankwatch.daemon.decode import decode_frames

    print(json.dumps(decode_frames(args.protocol, args.frames)))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    import asyncio

    from bankwatch.daemon.config import load_config
    from bankwatch.daemon.publish import apply_publish_args, build_publish_sinks
    from bankwatch.daemon.service import run_daemon

    config, mqtt_password = apply_publish_args(load_config(args.config), args)
    sinks = build_publish_sinks(config, mqtt_password)
    return asyncio.run(run_daemon(config, json_alerts=args.json, view=args.view, extra_sinks=sinks))


def _speed(text: str) -> float:
    """A positive number, or "max" (as fast as the machine allows: inf)."""
    if text.strip().lower() == "max":
        return math.inf
    return _positive(text)


def cmd_demo(args: argparse.Namespace) -> int:
    import asyncio

    from bankwatch.daemon.config import load_config
    from bankwatch.daemon.demo import run_demo, run_scenario_demo
    from bankwatch.daemon.publish import apply_publish_args, build_publish_sinks

    if args.scenario or args.speed == math.inf:
        from bankwatch.daemon.scenario import load_scenario

        if args.mqtt or args.influx_url:
            # Simulated time runs far ahead of the wall clock: points and retained state
            # stamped with it would land in the future of the user's dashboards.
            raise UsageError(
                "--scenario and --speed max run on simulated time and publish nothing; "
                "drop --mqtt/--influx-url, or use the demo at a finite --speed"
            )

        if args.scenario:
            config, name = load_scenario(args.scenario), args.scenario
        else:
            config, name = (load_config(args.config) if args.config else demo_config()), ""
        speed = args.speed or (config.simulation.speed if config.simulation else 1.0)
        return run_scenario_demo(
            config,
            duration_s=args.duration,
            speed=None if speed == math.inf else speed,
            json_out=args.json,
            name=name,
        )
    config = load_config(args.config) if args.config else demo_config()
    config, mqtt_password = apply_publish_args(config, args)
    sinks = build_publish_sinks(config, mqtt_password)
    return asyncio.run(
        run_demo(
            config,
            duration_s=args.duration,
            speed=args.speed,
            json_out=args.json,
            extra_sinks=sinks,
        )
    )


def cmd_simulate(args: argparse.Namespace) -> int:
    import asyncio

    from bankwatch.daemon.config import load_config
    from bankwatch.daemon.simulation import simulate

    config = load_config(args.config)
    return asyncio.run(simulate(config, duration_s=args.duration, speed=args.speed))


def cmd_scan(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from bankwatch.daemon.serial_tools import parse_addresses, scan, scan_report

    addresses = parse_addresses(args.addresses) if args.addresses else None
    found = asyncio.run(
        scan(
            args.port,
            protocols=args.protocol,
            bauds=args.baud,
            addresses=addresses,
            timeout_s=args.timeout,
            progress=sys.stderr if sys.stderr.isatty() else None,
        )
    )
    if args.json:
        print(json.dumps([f.to_json() for f in found]))
    else:
        print(scan_report(args.port, found))
    return EXIT_OK if any(f.error is None for f in found) else EXIT_FINDINGS


def cmd_sniff(args: argparse.Namespace) -> int:
    """A serial port (or a serial link of --config) goes to the serial sniffer; a CAN link name
    or interface channel to the CAN one."""
    import asyncio
    import contextlib

    from bankwatch.daemon.config import load_config
    from bankwatch.daemon.link_config import SerialLinkConfig
    from bankwatch.daemon.serial_tools import is_serial_port, sniff

    port, baud, protocols = args.target, args.baud, args.protocol
    if args.config and not is_serial_port(port):
        config = load_config(args.config)
        link = config.links.get(port)
        if isinstance(link, SerialLinkConfig):
            port, baud = link.port, baud or link.baud
            sources = [b.source for _, b in config.batteries()] + [config.bank.source]
            on_it = {
                # A shipped register map is sniffed by its name (modbus-map:NAME).
                f"modbus-map:{src.map}" if src.protocol == "modbus-map" else src.protocol
                for src in sources
                if src is not None and src.link == args.target
            }
            protocols = protocols or sorted(on_it) or None
    if is_serial_port(port):
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                sniff(
                    port,
                    protocols=protocols,
                    baud=baud or 9600,
                    duration_s=args.duration,
                    json_out=args.json,
                )
            )
        return EXIT_OK
    from bankwatch.daemon.sniff_can import link_config_from_args, run_sniff_can

    can_link = link_config_from_args(args)
    return asyncio.run(
        run_sniff_can(can_link, name=args.target, as_json=args.json, duration_s=args.duration)
    )


def cmd_replay(args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path

    from bankwatch.daemon.config import load_config
    from bankwatch.daemon.replay import AlertCounter, replay
    from bankwatch.daemon.service import AlertLogSink, JsonAlertSink
    from bankwatch.daemon.tick import Sink

    config = load_config(args.config) if args.config else None
    counter = AlertCounter()
    sinks: list[Sink] = [AlertLogSink(), counter]
    if args.json:
        sinks.append(JsonAlertSink())
    if args.view:
        from bankwatch.daemon.console import ConsoleView

        console = ConsoleView(sys.stdout)
        console.capture_logs()
        sinks.append(console)
    monitor, played = asyncio.run(
        replay(Path(args.file), config, sinks, speed=args.speed or 1.0, fast=args.fast)
    )
    statuses = ", ".join(
        f"link {s.name}: {s.frames} frames, {s.error_frames} error frames, {s.bad_frames} bad"
        for s in monitor.link_statuses()
    )
    print(
        f"replayed {played} frames from {args.file} ({statuses}); alerts raised: "
        f"{counter.summary()}",
        file=sys.stderr,
    )
    return EXIT_OK


# --- the parser: one function per subcommand -----------------------------------------------------
# Building it imports nothing beyond argparse: `bankwatch --help` must not pay for pydantic,
# asyncio or the links' libraries. Each command's implementation is imported when it runs.

_Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _add_publish_arguments(parser: argparse.ArgumentParser) -> None:
    """`run` and `demo`: the quick-start forms of the config's [mqtt] and [influxdb] sections
    (applied by `publish.apply_publish_args`)."""
    g = parser.add_argument_group(
        "publishing", "quick-start forms of the config's [mqtt] and [influxdb] sections"
    )
    g.add_argument(
        "--mqtt",
        metavar="URL",
        help="publish to this MQTT broker: mqtt[s]://[user[:password]@]host[:port] "
        "(a password here shows in `ps`: prefer BANKWATCH_MQTT_PASSWORD)",
    )
    g.add_argument(
        "--influx-url", metavar="URL", help="write to this InfluxDB, e.g. http://localhost:8086"
    )
    g.add_argument("--influx-db", metavar="NAME", help="InfluxDB 1.x database (v1 API)")
    g.add_argument(
        "--influx-org", metavar="NAME", help="InfluxDB org (v2 API; the token from INFLUX_TOKEN)"
    )
    g.add_argument("--influx-bucket", metavar="NAME", help="InfluxDB bucket (v2 API)")


def _add_can_arguments(p: argparse.ArgumentParser) -> None:
    """The CAN options of `bankwatch sniff` (read by `sniff_can.link_config_from_args`)."""
    p.add_argument("--config", help="a config whose [links] names TARGET")
    p.add_argument("--interface", help="python-can interface (default socketcan)")
    p.add_argument("--channel", help="channel (default: TARGET)")
    p.add_argument("--bitrate", type=int, help="bus speed (default 500000)")
    p.add_argument("--host", help="socketcand server")
    p.add_argument("--port", type=int, help="socketcand port")
    p.add_argument("--json", action="store_true", help="one JSON object per frame")


def _add_check(sub: _Subparsers) -> None:
    p = sub.add_parser("check", help="validate a config, show the bank and apply the wiring rules")
    p.add_argument("config", help="path to the bank's TOML config")
    p.add_argument(
        "--config-only",
        action="store_true",
        help="only validate the config (exit 0 or 2); skip the wiring rules (the service's "
        "pre-start check)",
    )
    p.set_defaults(func=cmd_check)


def _add_run(sub: _Subparsers) -> None:
    p = sub.add_parser("run", help="run the monitor on a config (the daemon)")
    p.add_argument("config", help="path to the bank's TOML config")
    p.add_argument("--json", action="store_true", help="print alert events as JSON lines")
    p.add_argument("--view", action="store_true", help="show the live terminal view")
    _add_publish_arguments(p)
    p.set_defaults(func=cmd_run)


def _add_demo(sub: _Subparsers) -> None:
    p = sub.add_parser("demo", help="simulated bank and monitor in one process, live view")
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--config",
        help="a bank config; its [simulation] section, if any, sets profile and faults "
        "(default: the built-in 48 V 4S2P bank)",
    )
    which.add_argument(
        "--scenario",
        help="a fault scenario (configs/scenarios/*.toml): runs for the length it declares "
        "and checks the alerts it expects; exit code 1 if they do not come",
    )
    p.add_argument(
        "--duration",
        type=_duration,
        help="stop after this much bank time (90s, 30m, 2h, 7d; at --speed 1 that is wall time)",
    )
    p.add_argument(
        "--speed",
        type=_speed,
        help="bank seconds per real second (default 1), or max: as fast as the machine allows",
    )
    p.add_argument("--json", action="store_true", help="JSON lines instead of the live view")
    _add_publish_arguments(p)
    p.set_defaults(func=cmd_demo)


def _add_simulate(sub: _Subparsers) -> None:
    p = sub.add_parser("simulate", help="serve a simulated bank on real links for `run`")
    p.add_argument("config", help="the bank's config; its [simulation] section drives physics")
    p.add_argument(
        "--duration", type=_duration, help="stop after this much bank time (90, 30m, 2h)"
    )
    p.add_argument("--speed", type=_positive, help="bank seconds per real second (default 1)")
    p.set_defaults(func=cmd_simulate)


def _add_sniff(sub: _Subparsers) -> None:
    p = sub.add_parser("sniff", help="live decoded view of a bus (listen-only)")
    p.add_argument(
        "target",
        help="a serial port (/dev/serial/by-id/...), a link name from --config, "
        "or a CAN channel (can0)",
    )
    p.add_argument("--duration", type=_duration, help="stop after this long (90, 30m)")
    _add_can_arguments(p)
    # serial buses
    p.add_argument(
        "--protocol",
        action="append",
        help="serial: the bus's protocol (repeat for more; default: try every one)",
    )
    p.add_argument("--baud", type=int, help="serial: the bus's baud rate (default 9600)")
    p.set_defaults(func=cmd_sniff)


def _add_replay(sub: _Subparsers) -> None:
    p = sub.add_parser("replay", help="feed a candump -l log through the monitor as if live")
    p.add_argument("file", help="a log written by `candump -l`")
    p.add_argument("--config", help="the bank's config (default: one pylontech-can battery)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=_positive, help="play N times faster than recorded")
    pace.add_argument("--fast", action="store_true", help="play as fast as possible")
    p.add_argument("--json", action="store_true", help="print alert events as JSON lines")
    p.add_argument("--view", action="store_true", help="show the live terminal view")
    p.set_defaults(func=cmd_replay)


def _add_decode(sub: _Subparsers) -> None:
    p = sub.add_parser("decode", help="decode frames given as hex, print one JSON reading")
    p.add_argument("protocol", help="protocol name, e.g. pylontech-can")
    p.add_argument(
        "frames",
        nargs="+",
        help="frames; CAN as ID#DATA (candump notation), serial as the hex of the wire bytes "
        "(a reply after its request)",
    )
    p.set_defaults(func=cmd_decode)


def _add_scan(sub: _Subparsers) -> None:
    p = sub.add_parser(
        "scan", help="find the BMS on a serial port: protocols, baud rates, addresses"
    )
    p.add_argument("port", help="the serial port, e.g. /dev/serial/by-id/usb-...")
    p.add_argument(
        "--protocol",
        action="append",
        help="only this serial protocol (repeat for more; default: every one)",
    )
    p.add_argument(
        "--baud",
        type=int,
        action="append",
        help="try this baud rate (repeat for more; default: each protocol's own)",
    )
    p.add_argument("--addresses", help="addresses to try, like 0-15 or 2,3 (default 0-15)")
    p.add_argument(
        "--timeout", type=_positive, default=0.3, help="seconds to wait for a reply (0.3)"
    )
    p.add_argument("--json", action="store_true", help="print what answered as JSON")
    p.set_defaults(func=cmd_scan)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bankwatch",
        description="Battery-bank monitor: reads every BMS of a series, parallel or "
        "series-parallel bank and watches the bank as a whole.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log detail")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_check(sub)
    _add_run(sub)
    _add_demo(sub)
    _add_simulate(sub)
    _add_sniff(sub)
    _add_replay(sub)
    _add_decode(sub)
    _add_scan(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * args.verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command in ("run", "simulate", "replay") and args.verbose == 0:
        logging.getLogger().setLevel(logging.INFO)

    from bankwatch.daemon.journal import use_journal_format

    use_journal_format()  # under systemd: `<4>name: message`, journald keeps time and level
    try:
        code: int = args.func(args)
    except (ConfigError, UsageError) as exc:
        print(f"bankwatch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FrameError as exc:
        print(f"bankwatch: bad frame: {exc}", file=sys.stderr)
        return EXIT_FINDINGS
    except BankwatchError as exc:
        print(f"bankwatch: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`bankwatch demo --json | head`): not an error worth a traceback.
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
