"""The `[mqtt]` and `[influxdb]` sections of the config, and their command-line forms.

    [mqtt]                 host, port, tls, ca_file, cert_file, key_file, username,
                           password_file, topic_prefix, client_id, interval_s, discovery,
                           discovery_prefix, keepalive_s, alert_queue
    [influxdb]             url, database + retention_policy + username + password_file (v1),
                           or org + bucket + token_file (v2); interval_s, batch_size,
                           flush_interval_s, timeout_s, spool_dir, spool_max_mb, spool_fsync_s

Secrets are never written in the config (see `credentials`). The quick-start flags of `run`
and `demo` (`--mqtt URL`, `--influx-url`, `--influx-db`, `--influx-org`, `--influx-bucket`)
become these same sections, so both paths meet the same validation.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "InfluxConfig",
    "MqttConfig",
    "MqttUrl",
    "parse_mqtt_url",
]

PositiveFloat = Annotated[float, Field(gt=0)]
Port = Annotated[int, Field(ge=1, le=65535)]
# MQTT topic levels: no wildcards, no empty level, no leading or trailing slash.
TopicPrefix = Annotated[str, Field(min_length=1, pattern=r"^[^/#+\s]+(/[^/#+\s]+)*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class MqttConfig(_Strict):
    host: str = "localhost"
    # 1883, or 8883 with tls.
    port: Port | None = None
    tls: bool = False
    # TLS: the CA that signed the broker's certificate (the system's CAs when absent), and a
    # client certificate and key for brokers that require one.
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    # The password: this file, else $CREDENTIALS_DIRECTORY/mqtt-password, else
    # $BANKWATCH_MQTT_PASSWORD.
    password_file: str | None = None
    topic_prefix: TopicPrefix = "bankwatch"
    # Default: bankwatch-<bank name>. Two daemons with one id throw each other off the broker.
    client_id: str | None = None
    # Retained state is published this often (and at once when an alert changes).
    interval_s: PositiveFloat = 5.0
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    # Home Assistant MQTT discovery.
    discovery: bool = True
    discovery_prefix: TopicPrefix = "homeassistant"
    # Alert events kept while the broker is away; past this the oldest go (counted, logged).
    alert_queue: Annotated[int, Field(ge=1, le=1_000_000)] = 1000

    @property
    def effective_port(self) -> int:
        return self.port or (8883 if self.tls else 1883)

    @model_validator(mode="after")
    def _tls_files_need_tls(self) -> MqttConfig:
        given = [k for k in ("ca_file", "cert_file", "key_file") if getattr(self, k) is not None]
        if given and not self.tls:
            raise ValueError(f"{', '.join(given)} given but tls is false")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file needs a username")
        return self


class InfluxConfig(_Strict):
    url: Annotated[str, Field(pattern=r"^https?://[^/\s]+(/\S*)?$")] = "http://localhost:8086"
    # v1 API (InfluxDB 1.x): database, optional retention policy, optional user. The password:
    # password_file, else $CREDENTIALS_DIRECTORY/influx-password, else $INFLUX_PASSWORD.
    database: str | None = None
    retention_policy: str | None = None
    username: str | None = None
    password_file: str | None = None
    # v2 API (InfluxDB 2.x, 3.x, and 1.8+): org and bucket. The token: token_file, else
    # $CREDENTIALS_DIRECTORY/influx-token, else $INFLUX_TOKEN.
    org: str | None = None
    bucket: str | None = None
    token_file: str | None = None
    # https: the CA that signed the server's certificate (the system's CAs when absent).
    ca_file: str | None = None
    # Bank, string, battery and cell points every interval_s; alert events as they happen.
    interval_s: PositiveFloat = 10.0
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 5000
    flush_interval_s: PositiveFloat = 10.0
    timeout_s: PositiveFloat = 10.0
    # While InfluxDB is unreachable points go to this folder (default: $STATE_DIRECTORY, else
    # ~/.local/state/bankwatch, then /influx-spool) up to spool_max_mb; the oldest go first.
    spool_dir: str | None = None
    spool_max_mb: Annotated[float, Field(ge=0.01)] = 100.0
    # At most one fsync of the spool this often (SD cards wear); a crash of the process loses
    # nothing, a power cut at most this many seconds.
    spool_fsync_s: Annotated[float, Field(ge=0)] = 60.0

    @property
    def api(self) -> Literal["v1", "v2"]:
        return "v1" if self.database is not None else "v2"

    @model_validator(mode="after")
    def _one_api(self) -> InfluxConfig:
        v1 = [
            k
            for k in ("database", "retention_policy", "username", "password_file")
            if getattr(self, k)
        ]
        v2 = [k for k in ("org", "bucket", "token_file") if getattr(self, k)]
        if v1 and v2:
            raise ValueError(
                f"give either database (v1 API: {', '.join(v1)}) or org and bucket "
                f"(v2 API: {', '.join(v2)}), not both"
            )
        if self.database is None and (self.org is None or self.bucket is None):
            raise ValueError(
                "needs database (InfluxDB 1.x, v1 API) or org and bucket (v2 API: InfluxDB "
                "2.x, 3.x, 1.8+)"
            )
        return self


# --- the command line's --mqtt URL ---------------------------------------------------------------


class MqttUrl(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str
    port: int | None
    tls: bool
    username: str | None
    password: str | None  # only from the URL; goes to a Secret, never to the config


_URL = re.compile(
    r"^(mqtts?)://(?:([^:@/]*)(?::([^@/]*))?@)?(\[[0-9a-fA-F:.]+\]|[^:@/\[\]]+)(?::(\d+))?/?$"
)


def parse_mqtt_url(text: str) -> MqttUrl:
    """`mqtt[s]://[user[:password]@]host[:port]`; ValueError says what is wrong."""
    m = _URL.match(text.strip())
    if not m:
        raise ValueError(
            "expected mqtt://[user[:password]@]host[:port] or mqtts://... (TLS); "
            f"got {_redact_url(text)!r}"
        )
    scheme, user, password, host, port = m.groups()
    port_n = int(port) if port else None
    if port_n is not None and not 1 <= port_n <= 65535:
        raise ValueError(f"port {port_n} is out of range (1-65535)")
    return MqttUrl(
        host=host.strip("[]"),
        port=port_n,
        tls=scheme == "mqtts",
        username=urllib.parse.unquote(user) if user else None,
        password=urllib.parse.unquote(password) if password is not None else None,
    )


def _redact_url(text: str) -> str:
    """The URL with any password replaced, for error messages."""
    return re.sub(r"(://[^:@/]*):[^@/]*@", r"\1:***@", text)
