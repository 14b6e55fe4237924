"""Publishing sinks from the config and the command line: MQTT and InfluxDB.

`cli` gives `run` and `demo` the quick-start flags, `apply_publish_args` turns them into the
config's `[mqtt]` and `[influxdb]` sections (validated like the file), and
`build_publish_sinks` makes the sinks, reading secrets and checking files once, at start.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bankwatch.daemon.config import Config
from bankwatch.daemon.credentials import Secret, find_secret
from bankwatch.daemon.influx import InfluxSink, V1Writer, V2Writer, Writer, default_spool_dir
from bankwatch.daemon.mqtt import MqttSink
from bankwatch.daemon.publish_config import InfluxConfig, MqttConfig, parse_mqtt_url
from bankwatch.daemon.tick import Sink
from bankwatch.daemon.topology import Topology
from bankwatch.drivers.errors import ConfigError, UsageError

__all__ = ["apply_publish_args", "build_publish_sinks"]

log = logging.getLogger(__name__)


def _invalid(flag: str, exc: ValidationError) -> UsageError:
    problems = "; ".join(
        (".".join(str(p) for p in e["loc"]) + ": " if e["loc"] else "")
        + e["msg"].removeprefix("Value error, ")
        for e in exc.errors(include_url=False)
    )
    return UsageError(f"{flag}: {problems}")


def apply_publish_args(config: Config, args: argparse.Namespace) -> tuple[Config, Secret | None]:
    """The config with the command line's sinks in it, and a password the --mqtt URL gave."""
    update: dict[str, Any] = {}
    password: Secret | None = None
    url = getattr(args, "mqtt", None)
    if url:
        try:
            parsed = parse_mqtt_url(url)
        except ValueError as exc:
            raise UsageError(f"--mqtt: {exc}") from None
        data = config.mqtt.model_dump(exclude_unset=True) if config.mqtt else {}
        data.update(host=parsed.host, port=parsed.port, tls=parsed.tls)
        if parsed.username is not None:
            data["username"] = parsed.username
            data.pop("password_file", None)
        if parsed.password is not None:
            password = Secret(parsed.password)
        try:
            update["mqtt"] = MqttConfig.model_validate(data)
        except ValidationError as exc:
            raise _invalid("--mqtt", exc) from None
    influx_url = getattr(args, "influx_url", None)
    db = getattr(args, "influx_db", None)
    org = getattr(args, "influx_org", None)
    bucket = getattr(args, "influx_bucket", None)
    if influx_url or db or org or bucket:
        if db and (org or bucket):
            raise UsageError(
                "--influx-db is the v1 API, --influx-org and --influx-bucket the v2 API: "
                "give one or the other"
            )
        data = config.influxdb.model_dump(exclude_unset=True) if config.influxdb else {}
        if influx_url:
            data["url"] = influx_url
        if db:
            for key in ("org", "bucket", "token_file"):
                data.pop(key, None)
            data["database"] = db
        if org or bucket:
            for key in ("database", "retention_policy", "username", "password_file"):
                data.pop(key, None)
            if org:
                data["org"] = org
            if bucket:
                data["bucket"] = bucket
        try:
            update["influxdb"] = InfluxConfig.model_validate(data)
        except ValidationError as exc:
            raise _invalid("--influx-url/--influx-db/--influx-org/--influx-bucket", exc) from None
    return (config.model_copy(update=update) if update else config), password


def _check_file(section: str, key: str, path: str | None) -> None:
    if path is not None and not Path(path).is_file():
        raise ConfigError(section, [f"{key}: no such file: {path}"])


def build_publish_sinks(
    config: Config,
    mqtt_password: Secret | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> list[Sink]:
    """The MQTT and InfluxDB sinks the config asks for; errors now, not in the first write."""
    topology = Topology(config)
    sinks: list[Sink] = []
    m = config.mqtt
    if m is not None:
        for key in ("ca_file", "cert_file", "key_file"):
            _check_file("[mqtt]", key, getattr(m, key))
        password = mqtt_password
        if password is None and m.username is not None:
            password = find_secret(
                "MQTT password",
                file=m.password_file,
                credential="mqtt-password",
                env="BANKWATCH_MQTT_PASSWORD",
                environ=environ,
            )
        sinks.append(MqttSink(m, topology, password=password))
        log.info(
            "mqtt: publishing to %s:%d%s%s under %s/%s",
            m.host,
            m.effective_port,
            " (TLS)" if m.tls else "",
            f" as {m.username}" if m.username else "",
            m.topic_prefix,
            topology.name,
        )
    i = config.influxdb
    if i is not None:
        _check_file("[influxdb]", "ca_file", i.ca_file)
        writer: Writer
        if i.api == "v2":
            assert i.org is not None and i.bucket is not None
            token = find_secret(
                "InfluxDB token",
                file=i.token_file,
                credential="influx-token",
                env="INFLUX_TOKEN",
                environ=environ,
            )
            if token is None:
                raise ConfigError(
                    "[influxdb]",
                    [
                        "the v2 API needs a token: set INFLUX_TOKEN, give token_file, or load "
                        "the systemd credential influx-token"
                    ],
                )
            writer = V2Writer(
                i.url, i.org, i.bucket, token, timeout_s=i.timeout_s, ca_file=i.ca_file
            )
        else:
            assert i.database is not None
            password = None
            if i.username is not None:
                password = find_secret(
                    "InfluxDB password",
                    file=i.password_file,
                    credential="influx-password",
                    env="INFLUX_PASSWORD",
                    environ=environ,
                )
            writer = V1Writer(
                i.url,
                i.database,
                retention_policy=i.retention_policy,
                username=i.username,
                password=password,
                timeout_s=i.timeout_s,
                ca_file=i.ca_file,
            )
        spool_dir = (
            Path(i.spool_dir)
            if i.spool_dir
            else default_spool_dir(dict(environ) if environ is not None else None)
        )
        try:
            spool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigError(
                "[influxdb]", [f"spool_dir: cannot create {spool_dir}: {exc.strerror or exc}"]
            ) from None
        sinks.append(InfluxSink(i, topology, writer, spool_dir))
        log.info("influxdb: writing to %s (%s API), spool in %s", writer.where, i.api, spool_dir)
    return sinks
