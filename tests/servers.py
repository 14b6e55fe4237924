"""Real servers for integration tests: Mosquitto and InfluxDB 1.x, on free loopback ports.

Each is started in a temporary folder of its own and stopped (and can be stopped and started
again on the same port and data, to play an outage) by the test. Debian's packages provide
them: `apt-get install mosquitto mosquitto-clients influxdb` (`.ci/run` does).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
INFLUXD = shutil.which("influxd") or "/usr/bin/influxd"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"server did not listen on {port} within {timeout_s} s:\n{_tail(log)}")


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


class _Server:
    """A child process started from a config, stoppable and restartable on the same port."""

    name = "server"

    def __init__(self, workdir: Path, port: int) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.dir = workdir
        self.port = port
        self.log = workdir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        logf = self.log.open("ab")
        self.proc = subprocess.Popen(
            self.command(), stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        logf.close()
        self.ready()

    def ready(self) -> None:
        assert self.proc is not None
        _wait_port(self.port, self.proc, self.log, START_TIMEOUT_S)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass(frozen=True)
class Tls:
    ca: Path
    cert: Path  # server
    key: Path
    client_cert: Path
    client_key: Path


class Mosquitto(_Server):
    name = "mosquitto"

    def __init__(
        self,
        workdir: Path,
        *,
        users: dict[str, str] | None = None,
        tls: Tls | None = None,
        persistence: bool = False,
    ) -> None:
        super().__init__(workdir, free_port())
        self.users = users
        self.tls = tls
        lines = [f"listener {self.port} 127.0.0.1"]
        if os.geteuid() == 0:
            lines.insert(0, "user root")  # mosquitto drops to `mosquitto` otherwise
        if users:
            pwfile = workdir / "passwd"
            pwfile.write_text("")
            for user, password in users.items():
                subprocess.run(
                    ["mosquitto_passwd", "-b", str(pwfile), user, password],
                    check=True,
                    capture_output=True,
                )
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines.append("allow_anonymous true")
        if tls is not None:
            lines += [
                f"cafile {tls.ca}",
                f"certfile {tls.cert}",
                f"keyfile {tls.key}",
                "require_certificate true",
            ]
        if persistence:
            lines += ["persistence true", f"persistence_location {workdir}/"]
        else:
            lines.append("persistence false")
        lines += ["log_dest stdout", "log_type error", "log_type warning", "log_type notice"]
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def command(self) -> list[str]:
        return [MOSQUITTO, "-c", str(self.conf)]


class Influxd(_Server):
    """InfluxDB 1.x (Debian's is 1.6.7): the v1 HTTP API only."""

    name = "influxd"

    def __init__(self, workdir: Path, *, auth: tuple[str, str] | None = None) -> None:
        super().__init__(workdir, free_port())
        self.auth = auth
        rpc = free_port()
        conf = f"""
reporting-enabled = false
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{workdir}/meta"
  logging-enabled = false
[data]
  dir = "{workdir}/data"
  wal-dir = "{workdir}/wal"
  query-log-enabled = false
  wal-fsync-delay = "0s"
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
[retention]
  enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  auth-enabled = {"true" if auth else "false"}
  log-enabled = false
  pprof-enabled = false
[logging]
  level = "warn"
  suppress-logo = true
"""
        self.conf = workdir / "influxdb.conf"
        self.conf.write_text(conf)
        self.url = f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [INFLUXD, "-config", str(self.conf)]

    def ready(self) -> None:
        super().ready()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(f"{self.url}/ping", timeout=1) as r,
            ):
                if r.status == 204:
                    break
            time.sleep(0.05)
        if self.auth is not None and not (self.dir / "admin-created").exists():
            # With auth on, the first admin user may be created without credentials.
            user, password = self.auth
            self.query(f"CREATE USER \"{user}\" WITH PASSWORD '{password}' WITH ALL PRIVILEGES")
            (self.dir / "admin-created").touch()

    def query(self, q: str, db: str | None = None, epoch: str | None = None) -> dict[str, Any]:
        params = {"q": q}
        if db:
            params["db"] = db
        if epoch:
            params["epoch"] = epoch
        req = urllib.request.Request(
            f"{self.url}/query", data=urllib.parse.urlencode(params).encode(), method="POST"
        )
        if self.auth is not None and (self.dir / "admin-created").exists():
            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=30) as r:
            data: dict[str, Any] = json.loads(r.read())
        for result in data.get("results", []):
            if "error" in result:
                raise RuntimeError(f"{q}: {result['error']}")
        return data

    def rows(self, q: str, db: str) -> list[list[Any]]:
        """Every value row of every series the query returns."""
        out: list[list[Any]] = []
        for result in self.query(q, db, epoch="u").get("results", []):
            for series in result.get("series", []):
                out.extend(series.get("values", []))
        return out

    def count(self, measurement: str, field: str, db: str) -> int:
        rows = self.rows(f'SELECT count("{field}") FROM "{measurement}"', db)
        return int(rows[0][1]) if rows else 0


def make_tls(workdir: Path) -> Tls:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    d = workdir / "tls"
    d.mkdir(parents=True)

    def ssl(*args: str) -> None:
        subprocess.run([OPENSSL, *args], check=True, capture_output=True, cwd=d)

    ssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        "/CN=bankwatch test CA", "-keyout", "ca.key", "-out", "ca.crt",
    )  # fmt: skip
    ext = d / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, cn in (("server", "localhost"), ("client", "bankwatch")):
        ssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr",
        )  # fmt: skip
        extra = ["-extfile", str(ext)] if name == "server" else []
        ssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", *extra,
        )  # fmt: skip
    return Tls(d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key")


def _require(binary: str) -> None:
    if not Path(binary).exists():
        pytest.fail(
            f"{binary} is not installed: apt-get install mosquitto mosquitto-clients influxdb "
            "(.ci/run installs them)"
        )


@pytest.fixture(name="mosquitto")
def mosquitto_fixture(tmp_path: Path) -> Iterator[Mosquitto]:
    _require(MOSQUITTO)
    server = Mosquitto(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(name="influxd")
def influxd_fixture(tmp_path: Path) -> Iterator[Influxd]:
    _require(INFLUXD)
    server = Influxd(tmp_path / "influx")
    server.start()
    yield server
    server.stop()
