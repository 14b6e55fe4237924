"""The InfluxDB sink against a real InfluxDB (Debian's 1.6.7), counted by query.

The fixtures start influxd on a free loopback port with its data in the test's folder; stopping
and starting it again plays an outage. Debian has no InfluxDB 2.x, so the v2 write path is
exercised as far as a 1.6 server allows (see `test_v2_write_path_...`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bankwatch.daemon.credentials import Secret
from bankwatch.daemon.influx import InfluxSink, V1Writer, V2Writer, Writer
from bankwatch.daemon.publish import build_publish_sinks
from bankwatch.daemon.publish_config import InfluxConfig
from bankwatch.daemon.topology import Topology
from tests.driven_bank import DrivenBank, quiet_demo_config
from tests.helpers import REPO
from tests.servers import Influxd, influxd_fixture  # noqa: F401  (fixture)

TIMEOUT_S = 60.0
DB = "bankwatch"
BATTERIES = 8
CELLS = 8 * 4  # 4S2P of 12.8 V LiFePO4 packs of 4 cells


def make_sink(
    server: Influxd, spool_dir: Path, writer: Writer | None = None, **cfg: Any
) -> tuple[InfluxSink, DrivenBank]:
    config = quiet_demo_config()
    settings = InfluxConfig.model_validate(
        {
            "url": server.url,
            "database": DB,
            "interval_s": 1,
            "flush_interval_s": 0.05,
            "spool_dir": str(spool_dir),
            **cfg,
        }
    )
    writer = writer or V1Writer(server.url, DB, timeout_s=5)
    sink = InfluxSink(settings, Topology(config), writer, spool_dir)
    return sink, DrivenBank([sink], config)


@contextlib.asynccontextmanager
async def running(sink: InfluxSink) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(sink.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_until(predicate: Any, what: str, timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def counts(server: Influxd) -> dict[str, int]:
    return {
        "bank": server.count("bank", "voltage_v", DB),
        "string": server.count("string", "expected_share_pct", DB),
        "battery": server.count("battery", "live", DB),
        "cell": server.count("cell", "voltage_v", DB),
    }


def expected(samples: int) -> dict[str, int]:
    return {"bank": samples, "string": 2 * samples, "battery": BATTERIES * samples,
            "cell": CELLS * samples}  # fmt: skip


# --- the schema -----------------------------------------------------------------------------------


async def test_points_arrive_with_the_documented_schema(influxd: Influxd, tmp_path: Path) -> None:
    influxd.query(f"CREATE DATABASE {DB}")
    sink, bank = make_sink(influxd, tmp_path / "spool")
    async with running(sink):
        bank.run(5)
        bank.cutoff("B2")
        bank.until_event("cutoff")
        await sink.wait_drained(TIMEOUT_S)
    samples = int(bank.clock.elapsed)  # one sample per simulated second (interval_s = 1)
    assert counts(influxd) == expected(samples)

    tags = {
        m: sorted(row[0] for row in influxd.rows(f'SHOW TAG KEYS FROM "{m}"', DB))
        for m in ("bank", "string", "battery", "cell", "alert")
    }
    assert tags == {
        "bank": ["bank"],
        "string": ["bank", "string"],
        "battery": ["bank", "battery", "protocol", "string"],
        "cell": ["bank", "battery", "cell", "protocol", "string"],
        "alert": ["bank", "battery", "event", "kind", "severity", "string", "subject"],
    }
    fields = {row[0]: row[1] for row in influxd.rows('SHOW FIELD KEYS FROM "battery"', DB)}
    for name in ("pack_voltage_v", "current_a", "soc_pct", "cell_voltage_spread_mv",
                 "soc_delta_pct", "temperature_c"):  # fmt: skip
        assert fields[name] == "float", name
    assert fields["cycles"] == "integer"
    assert fields["live"] == fields["discharge_enabled"] == "boolean"
    assert fields["protections"] == "string"
    cells = sorted(r[1] for r in influxd.rows('SHOW TAG VALUES FROM "cell" WITH KEY = "cell"', DB))
    assert cells == ["01", "02", "03", "04"]

    (alert,) = influxd.rows('SELECT "message", "active", "kind", "event" FROM "alert"', DB)
    _, message, active, kind, event = alert
    assert (kind, event, active) == ("cutoff", "raised", 1)
    assert message.startswith("B2: BMS opened")
    b2 = influxd.rows(
        'SELECT last("discharge_enabled"), last("protections") FROM "battery" '
        "WHERE \"battery\" = 'B2'",
        DB,
    )
    assert b2[0][1:] == [False, "cell_undervoltage"]
    # Timestamps are the samples' wall times, to the microsecond, one per simulated second.
    times = [r[0] for r in influxd.rows('SELECT "voltage_v" FROM "bank"', DB)]
    steps = {b - a for a, b in itertools.pairwise(times)}
    assert steps == {1_000_000}
    assert abs(times[-1] / 1e6 - bank.clock.wall()) < 0.001


# --- outages --------------------------------------------------------------------------------------


async def test_influxdb_stops_and_returns_and_every_point_is_there(
    influxd: Influxd, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    influxd.query(f"CREATE DATABASE {DB}")
    spool = tmp_path / "spool"
    sink, bank = make_sink(influxd, spool)
    async with running(sink):
        bank.run(10)  # before
        await sink.wait_drained(TIMEOUT_S)
        assert counts(influxd) == expected(10)
        influxd.stop()
        bank.run(30)  # during
        await wait_until(lambda: sink.up is False, "the sink to notice")
        await wait_until(lambda: sink.spool is not None and sink.spool.pending > 0, "spooling")
        assert list(spool.glob("seg-*.lp")), "spooled points are on disk"
        influxd.start()
        bank.run(10)  # after
        await sink.wait_drained(TIMEOUT_S)
        assert sink.up is True
    assert counts(influxd) == expected(50)
    assert not list(spool.glob("seg-*.lp")), "the spool is empty once written back"
    assert sink.spool is not None and sink.spool.dropped == 0
    text = caplog.text
    assert "cannot write to" in text and "keeping points in" in text
    assert re.search(r"writing back \d+ spooled point", text)


async def test_points_spooled_at_stop_are_written_by_the_next_start(
    influxd: Influxd, tmp_path: Path
) -> None:
    """A clean stop while InfluxDB is down spools what is buffered; the next start sends it."""
    influxd.query(f"CREATE DATABASE {DB}")
    influxd.stop()
    spool = tmp_path / "spool"
    sink, bank = make_sink(influxd, spool, flush_interval_s=3600)  # everything stays buffered
    async with running(sink):
        bank.run(12)
        await asyncio.sleep(0.2)
    assert sink.points_written == 0
    assert list(spool.glob("seg-*.lp"))
    influxd.start()
    again, _ = make_sink(influxd, spool)
    async with running(again):
        await wait_until(lambda: again.points_written > 0, "the write-back")
        await again.wait_drained(TIMEOUT_S)
    assert counts(influxd) == expected(12)


async def test_a_full_spool_drops_the_oldest_and_says_how_many(
    influxd: Influxd, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    influxd.query(f"CREATE DATABASE {DB}")
    influxd.stop()
    sink, bank = make_sink(influxd, tmp_path / "spool", spool_max_mb=0.05)  # 50 kB
    samples = 60
    async with running(sink):
        start_wall = bank.clock.wall()
        for _ in range(samples):
            bank.step()
            await asyncio.sleep(0.005)  # let the sink spool as it goes, as in real life
        await wait_until(lambda: not sink._snapshots and sink.spool is not None, "spooling")
        await wait_until(lambda: sink.spool is not None and sink.spool.dropped > 0, "a drop")
        influxd.start()
        await sink.wait_drained(TIMEOUT_S)
    assert sink.spool is not None
    dropped = sink.spool.dropped
    total = sum(expected(samples).values())
    in_db = sum(counts(influxd).values())
    assert in_db == total - dropped, (in_db, total, dropped)
    assert sink.spool.size_bytes == 0
    # The oldest went: the newest sample is there, the first one is not.
    times = [r[0] / 1e6 for r in influxd.rows('SELECT "voltage_v" FROM "bank"', DB)]
    assert times[0] > start_wall + 1.5
    assert abs(times[-1] - bank.clock.wall()) < 0.001
    assert re.search(
        rf"dropped the \d+ oldest point\(s\) \({dropped} dropped so far\)", caplog.text
    )


# --- authentication, secrets, the v2 API ---------------------------------------------------------


async def test_v1_with_a_password_from_systemd_credentials_never_logs_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # urllib3 and everything else, at their most talkative
    password = "Sekr1t-influx-Pw"
    server = Influxd(tmp_path / "influx", auth=("bankwatch", password))
    server.start()
    try:
        server.query(f"CREATE DATABASE {DB}")
        creds = tmp_path / "creds"
        creds.mkdir()
        (creds / "influx-password").write_text(password + "\n")
        config = quiet_demo_config().model_copy(
            update={
                "influxdb": InfluxConfig(
                    url=server.url,
                    database=DB,
                    username="bankwatch",
                    interval_s=1,
                    flush_interval_s=0.05,
                    spool_dir=str(tmp_path / "spool"),
                )
            }
        )
        (sink,) = build_publish_sinks(config, environ={"CREDENTIALS_DIRECTORY": str(creds)})
        assert isinstance(sink, InfluxSink)
        bank = DrivenBank([sink], config)
        async with running(sink):
            bank.run(3)
            await sink.wait_drained(TIMEOUT_S)
        assert counts(server) == expected(3)

        # A wrong password: refused, logged, kept, and still not shown.
        wrong, bank = make_sink(
            server,
            tmp_path / "spool2",
            writer=V1Writer(server.url, DB, username="bankwatch", password=Secret("Wr0ng-pw-xyz")),
        )
        async with running(wrong):
            bank.run(3)
            await wait_until(lambda: wrong.up is False, "the refusal")
        assert wrong.spool is not None and wrong.spool.pending > 0
        assert "HTTP 401" in caplog.text and "check the user and password" in caplog.text
    finally:
        server.stop()
    for secret in (password, "Wr0ng-pw-xyz"):
        for shown in (secret, base64.b64encode(f"bankwatch:{secret}".encode()).decode()):
            assert shown not in caplog.text


async def test_v2_write_path_as_far_as_this_machine_allows(
    influxd: Influxd, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No InfluxDB 2.x, 3.x or 1.8+ can run here: Debian ships only 1.6.7, which has no
    /api/v2/write, and no other registry is reachable. So the v2 writer (influxdb-client's
    write API) is pointed at the 1.6 server: the request is built and sent (org, bucket,
    token, precision), the server answers 404, and the sink must keep the points in its spool,
    say what is wrong, and never show the token."""
    caplog.set_level(logging.DEBUG)
    influxd.query(f"CREATE DATABASE {DB}")
    token = "v2-T0ken-do-not-log"
    writer = V2Writer(influxd.url, "home", "bankwatch", Secret(token), timeout_s=5)
    sink, bank = make_sink(influxd, tmp_path / "spool", writer=writer)
    async with running(sink):
        bank.run(3)
        await wait_until(lambda: sink.up is False, "the 404")
        await wait_until(lambda: sink.spool is not None and sink.spool.pending > 0, "spooling")
    assert sink.points_written == 0
    assert "HTTP 404" in caplog.text and "no v2 write API here" in caplog.text
    assert token not in caplog.text
    # The points it would have sent are valid line protocol: the v1 API takes them as they are.
    assert sink.spool is not None
    spool = sink.spool
    lines = spool.peek(100_000)
    V1Writer(influxd.url, DB).write(lines)
    assert counts(influxd) == expected(3)


# --- the shipped Grafana dashboards ----------------------------------------------------------

DASHBOARDS = REPO / "configs" / "grafana" / "dashboards"


def _queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, InfluxQL) for every panel target, template variable and annotation."""
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            out.append((f"panel {panel['title']!r} {target['refId']}", target["query"]))
    for var in dashboard["templating"]["list"]:
        out.append((f"variable {var['name']}", var["query"]))
    for ann in dashboard["annotations"]["list"]:
        if "query" in ann:
            out.append((f"annotation {ann['name']!r}", ann["query"]))
    return out


def _substitute(query: str) -> str:
    """What Grafana does to a query before it sends it: macros and variables (all values)."""
    values = {
        "bank": "demo",
        "string": "(A|B)",
        "battery": "(A1|A2|A3|A4|B1|B2|B3|B4)",
    }
    q = query.replace("$timeFilter", "time > now() - 3h")
    q = q.replace("$__interval", "1m")
    for name, value in values.items():
        q = re.sub(rf"\$(?:{name}\b|\{{{name}\}})", value, q)
    assert "$" not in q.replace("$/", ""), f"a macro or variable is left: {q}"
    return q


def test_the_dashboards_are_what_the_readme_and_provisioning_say() -> None:
    files = sorted(p.name for p in DASHBOARDS.glob("*.json"))
    assert files == ["bank.json", "cells.json", "strings.json"]
    for path in DASHBOARDS.glob("*.json"):
        d = json.loads(path.read_text(encoding="utf-8"))
        assert d["uid"].startswith("bankwatch-")
        for panel in d["panels"]:
            assert panel["datasource"] == {"type": "influxdb", "uid": "bankwatch-influx"}
            for t in panel["targets"]:
                assert t["rawQuery"] is True and t["query"].startswith(("SELECT", "SHOW"))
    cells = json.loads((DASHBOARDS / "cells.json").read_text(encoding="utf-8"))
    assert any(p["type"] == "heatmap" for p in cells["panels"])
    ds = (REPO / "configs/grafana/provisioning/datasources/bankwatch.yaml").read_text()
    assert "uid: bankwatch-influx" in ds and "type: influxdb" in ds


async def test_every_dashboard_query_returns_data_for_a_simulated_bank(
    influxd: Influxd, tmp_path: Path
) -> None:
    influxd.query(f"CREATE DATABASE {DB}")
    sink, bank = make_sink(influxd, tmp_path / "spool", interval_s=30)
    # Two hours of the demo bank's solar day up to now, from 16:30: it charges, then the sun
    # goes and the evening load discharges it; A2's BMS cuts off and recovers on the way.
    sim_s = 2 * 3600
    bank = DrivenBank([sink], bank.config, start_wall=time.time() - sim_s)
    bank.sim.start_of_day_s = 16 * 3600 + 30 * 60
    async with running(sink):
        bank.run(120, 30)
        bank.cutoff("A2", "discharge_overcurrent")
        bank.run(4, 30)
        bank.recover("A2")
        bank.run((sim_s - 124 * 30) // 30, 30)
        await sink.wait_drained(TIMEOUT_S)
    kinds = {(e.alert.kind, e.event) for e in bank.events}
    assert {("cutoff", "raised"), ("cutoff", "cleared")} <= kinds
    empty = []
    n = 0
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for where, query in _queries(dashboard):
            n += 1
            rows = influxd.rows(_substitute(query), DB)
            if not rows or all(v is None for row in rows for v in row[1:]):
                empty.append(f"{path.name}: {where}: {query}")
    assert n >= 30
    assert not empty, "queries with no data:\n" + "\n".join(empty)


# --- the command line ---------------------------------------------------------------------------


def test_demo_with_influx_flags_writes_the_bank_and_its_alerts(
    influxd: Influxd, tmp_path: Path
) -> None:
    """`bankwatch demo --influx-url URL --influx-db NAME`, a process of its own, end to end: the
    simulated bank over virtual CAN, the monitor, the sink, InfluxDB."""
    influxd.query(f"CREATE DATABASE {DB}")
    out = subprocess.run(
        [sys.executable, "-m", "bankwatch.daemon.cli", "demo", "--json", "--duration", "75",
         "--speed", "15", "--influx-url", influxd.url, "--influx-db", DB],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, cwd=REPO,
        env={**os.environ, "STATE_DIRECTORY": str(tmp_path / "state")},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.splitlines()[-1])
    assert summary["alerts_raised"] == {"link_lost": 1, "cutoff": 1}
    n = counts(influxd)
    assert n["bank"] >= 6 and n["battery"] >= 8 * 6  # one sample per 10 s of bank time
    assert n["cell"] == 0  # the Pylontech CAN broadcast carries no cell voltages
    events = influxd.rows('SELECT "active", "kind", "event" FROM "alert"', DB)
    assert [(k, e) for _, _, k, e in events] == [
        ("link_lost", "raised"), ("link_lost", "cleared"), ("cutoff", "raised"),
    ]  # fmt: skip
    assert not list((tmp_path / "state" / "influx-spool").glob("seg-*.lp"))
