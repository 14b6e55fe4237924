"""The `bankwatch` command.

Every error a user can cause ends as one or a few plain lines on stderr and a non-zero exit:
never a traceback. Exit codes: 0 fine, 1 the bank (or a frame) has errors, 2 the command line or
the config is wrong, 3 a link or the runtime failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from importlib import resources

from bankwatch.daemon.config import Config, load_config, parse_config
from bankwatch.daemon.errors import BankwatchError, ConfigError, FrameError, UsageError
from bankwatch.daemon.report import format_findings, format_tree
from bankwatch.daemon.rules import check_bank
from bankwatch.daemon.topology import Topology

__all__ = ["main"]

log = logging.getLogger("bankwatch")

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_RUNTIME = 3


def demo_config() -> Config:
    """The built-in simulated bank the demo runs on."""
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
    config = load_config(args.config)
    topo = Topology(config)
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
    from bankwatch.daemon.decode import decode_frames

    print(json.dumps(decode_frames(args.protocol, args.frames)))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from bankwatch.daemon.service import run_daemon

    config = load_config(args.config)
    return asyncio.run(run_daemon(config, json_alerts=args.json, view=args.view))


def _speed(text: str) -> float:
    """A positive number, or "max" (as fast as the machine allows: inf)."""
    if text.strip().lower() == "max":
        return math.inf
    return _positive(text)


def cmd_demo(args: argparse.Namespace) -> int:
    from bankwatch.daemon.demo import run_demo, run_scenario_demo

    if args.scenario or args.speed == math.inf:
        from bankwatch.daemon.scenario import load_scenario

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
    return asyncio.run(
        run_demo(config, duration_s=args.duration, speed=args.speed, json_out=args.json)
    )


def cmd_simulate(args: argparse.Namespace) -> int:
    from bankwatch.drivers.simulator.serve import serve

    config = load_config(args.config)
    return asyncio.run(serve(config, duration_s=args.duration, speed=args.speed))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bankwatch",
        description="Battery-bank monitor: reads every BMS of a series, parallel or "
        "series-parallel bank and watches the bank as a whole.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log detail")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="validate a config, show the bank and apply the wiring rules")
    p.add_argument("config", help="path to the bank's TOML config")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("run", help="run the monitor on a config (the daemon)")
    p.add_argument("config", help="path to the bank's TOML config")
    p.add_argument("--json", action="store_true", help="print alert events as JSON lines")
    p.add_argument("--view", action="store_true", help="show the live terminal view")
    p.set_defaults(func=cmd_run)

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
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("simulate", help="serve a simulated bank on real links for `run`")
    p.add_argument("config", help="the bank's config; its [simulation] section drives physics")
    p.add_argument(
        "--duration", type=_duration, help="stop after this much bank time (90, 30m, 2h)"
    )
    p.add_argument("--speed", type=_positive, help="bank seconds per real second (default 1)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("decode", help="decode frames given as hex, print one JSON reading")
    p.add_argument("protocol", help="protocol name, e.g. pylontech-can")
    p.add_argument("frames", nargs="+", help="frames; CAN as ID#DATA (candump notation)")
    p.set_defaults(func=cmd_decode)
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
    if args.command in ("run", "simulate") and args.verbose == 0:
        logging.getLogger().setLevel(logging.INFO)
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
