"""Publishing without servers: config sections, command-line flags, secrets, topics, the spool and
the InfluxDB points. (The sinks against real Mosquitto and InfluxDB: tests/integration.)"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bankwatch.daemon.cli import main
from bankwatch.daemon.config import parse_config
from bankwatch.daemon.credentials import Secret, find_secret
from bankwatch.daemon.influx import Measurement, alert_points, default_spool_dir, state_points
from bankwatch.daemon.mqtt import Topics
from bankwatch.daemon.publish import build_publish_sinks
from bankwatch.daemon.publish_config import InfluxConfig, MqttConfig, parse_mqtt_url
from bankwatch.daemon.spool import Spool
from bankwatch.daemon.topology import Topology
from bankwatch.drivers.errors import ConfigError
from bankwatch.drivers.model import Protection, Reading
from tests.driven_bank import DrivenBank, quiet_demo_config

# --- the --mqtt URL -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("mqtt://broker", ("broker", None, False, None, None)),
        ("mqtts://broker:8884", ("broker", 8884, True, None, None)),
        ("mqtt://bw@10.0.0.2:1883", ("10.0.0.2", 1883, False, "bw", None)),
        ("mqtt://bw:p%40ss@pi.local", ("pi.local", None, False, "bw", "p@ss")),
        ("mqtt://[::1]:1883/", ("::1", 1883, False, None, None)),
    ],
)
def test_mqtt_url(url: str, want: tuple[object, ...]) -> None:
    u = parse_mqtt_url(url)
    assert (u.host, u.port, u.tls, u.username, u.password) == want


@pytest.mark.parametrize(
    "url", ["http://broker", "mqtt://", "broker:1883", "mqtt://h:0", "mqtt://h:99999"]
)
def test_bad_mqtt_url(url: str) -> None:
    with pytest.raises(ValueError):
        parse_mqtt_url(url)


def test_a_bad_mqtt_url_error_hides_its_password() -> None:
    with pytest.raises(ValueError) as exc:
        parse_mqtt_url("mqtt://me:Hunter2@host:port")
    assert "Hunter2" not in str(exc.value) and "me:***@" in str(exc.value)


# --- config sections ------------------------------------------------------------------------------

BANK = """
[bank]
name = "home"
chemistry = "lifepo4"
nominal_voltage_v = 12

[models.m]
capacity_ah = 100
nominal_voltage_v = 12.8
chemistry = "lifepo4"

[[strings]]
name = "S"
batteries = [{ name = "b1", model = "m" }]
"""


def test_mqtt_and_influxdb_sections() -> None:
    config = parse_config(
        BANK
        + """
[mqtt]
host = "broker.lan"
tls = true
ca_file = "/etc/ssl/ca.pem"
username = "bankwatch"
topic_prefix = "site/garage"

[influxdb]
url = "http://influx.lan:8086"
org = "home"
bucket = "bankwatch"
spool_max_mb = 20
"""
    )
    assert config.mqtt is not None and config.influxdb is not None
    assert config.mqtt.effective_port == 8883 and config.mqtt.discovery is True
    assert config.influxdb.api == "v2"
    assert Topics(config.mqtt.topic_prefix, "home").bank_state == "site/garage/home/state"


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ('[mqtt]\nca_file = "x"', "ca_file given but tls is false"),
        ('[mqtt]\ntls = true\ncert_file = "c"', "cert_file and key_file go together"),
        ('[mqtt]\ntopic_prefix = "a/#"', "mqtt.topic_prefix"),
        ('[mqtt]\npassword = "x"', "line 17: mqtt.password: unknown key"),
        ("[influxdb]\nurl = 'http://x'", "needs database"),
        ('[influxdb]\ndatabase = "d"\norg = "o"', "not both"),
        ('[influxdb]\ndatabase = "d"\ntoken = "t"', "influxdb.token: unknown key"),
        ('[influxdb]\ndatabase = "d"\nspool_max_mb = 0', "influxdb.spool_max_mb"),
    ],
)
def test_bad_sections_say_what_is_wrong(section: str, problem: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(BANK + "\n" + section + "\n", "home.toml")
    assert problem in str(exc.value)


# --- secrets --------------------------------------------------------------------------------------


def test_secret_lookup_order(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "influx-token").write_text("from-credentials\n")
    explicit = tmp_path / "token"
    explicit.write_text("from-file\n")
    env = {"CREDENTIALS_DIRECTORY": str(creds), "INFLUX_TOKEN": "from-env"}
    kw = {"credential": "influx-token", "env": "INFLUX_TOKEN"}
    assert find_secret("t", file=str(explicit), environ=env, **kw) == Secret("from-file")
    assert find_secret("t", file=None, environ=env, **kw) == Secret("from-credentials")
    env.pop("CREDENTIALS_DIRECTORY")
    assert find_secret("t", file=None, environ=env, **kw) == Secret("from-env")
    assert find_secret("t", file=None, environ={}, **kw) is None
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        find_secret("t", file=str(tmp_path / "empty"), environ={}, **kw)
    with pytest.raises(ConfigError, match="cannot read"):
        find_secret("t", file=str(tmp_path / "missing"), environ={}, **kw)


def test_a_secret_does_not_show_itself() -> None:
    s = Secret("p4ss")
    assert str(s) == "***" and "p4ss" not in repr(s) and f"{s}" == "***"
    assert s.reveal() == "p4ss"


def test_v2_without_a_token_is_a_clear_error(tmp_path: Path) -> None:
    config = quiet_demo_config(
        influxdb=InfluxConfig(org="o", bucket="b", spool_dir=str(tmp_path / "s"))
    )
    with pytest.raises(ConfigError, match="the v2 API needs a token: set INFLUX_TOKEN"):
        build_publish_sinks(config, environ={})


def test_missing_tls_file_is_a_clear_error() -> None:
    config = quiet_demo_config(mqtt=MqttConfig(tls=True, ca_file="/nonexistent/ca.pem"))
    with pytest.raises(ConfigError, match=r"ca_file: no such file: /nonexistent/ca\.pem"):
        build_publish_sinks(config, environ={})


def test_spool_dir_defaults() -> None:
    assert default_spool_dir({"STATE_DIRECTORY": "/var/lib/bankwatch"}) == Path(
        "/var/lib/bankwatch/influx-spool"
    )
    assert default_spool_dir({"XDG_STATE_HOME": "/h/.st"}) == Path("/h/.st/bankwatch/influx-spool")


# --- the command line -----------------------------------------------------------------------------


def _config_file(tmp_path: Path) -> str:
    path = tmp_path / "home.toml"
    path.write_text(BANK)
    return str(path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mqtt", "http://x"], "--mqtt: expected mqtt://"),
        (["--influx-db", "a", "--influx-org", "o"], "give one or the other"),
        (["--influx-url", "http://x"], "needs database"),
        (["--influx-url", "ftp://x", "--influx-db", "d"], "url"),
        (["--influx-org", "o", "--influx-bucket", "b"], "the v2 API needs a token"),
    ],
)
@pytest.mark.parametrize("command", ["run", "demo"])
def test_publish_flags_errors_are_one_line_exit_2(
    command: str,
    args: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("INFLUX_TOKEN", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    argv = [command, _config_file(tmp_path)] if command == "run" else [command]
    code = main([*argv, *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and "Traceback" not in err


# --- the spool ------------------------------------------------------------------------------------


def _lines(start: int, n: int) -> list[str]:
    return [f"m,t=x v={i}i {i}" for i in range(start, start + n)]


def test_spool_keeps_order_across_segments_and_restarts(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 20_000, fsync_s=3600)
    for i in range(0, 600, 50):
        assert spool.append(_lines(i, 50)) == 0
    assert len(list(tmp_path.glob("seg-*.lp"))) > 3, "several segments"
    assert spool.pending == 600
    got = spool.peek(100)
    spool.consume(len(got))
    spool.close()
    # A new process picks up what is left, in order (the unconfirmed head is sent again).
    again = Spool(tmp_path, 20_000)
    out: list[str] = []
    while batch := again.peek(77):
        out += batch
        again.consume(len(batch))
    assert out[-500:] == _lines(100, 500)
    assert out == _lines(600 - len(out), len(out))
    assert again.pending == 0 and again.size_bytes == 0
    assert not list(tmp_path.glob("seg-*.lp"))


def test_spool_appends_while_reading(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 100_000)
    spool.append(_lines(0, 10))
    first = spool.peek(4)
    spool.append(_lines(10, 10))  # goes behind, in a new segment
    spool.consume(len(first))
    out = list(first)
    while batch := spool.peek(3):
        out += batch
        spool.consume(len(batch))
    assert out == _lines(0, 20)


def test_full_spool_drops_whole_oldest_segments_and_counts_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    spool = Spool(tmp_path, 16_384)
    written = 0
    for i in range(0, 2000, 20):
        spool.append(_lines(i, 20))
        written += 20
        assert spool.size_bytes <= 16_384
    assert spool.dropped > 0
    remaining: list[str] = []
    while batch := spool.peek(1000):
        remaining += batch
        spool.consume(len(batch))
    assert len(remaining) == written - spool.dropped
    assert remaining == _lines(written - len(remaining), len(remaining)), "the newest are kept"
    assert f"({spool.dropped} dropped so far)" in caplog.text


def test_spool_fsyncs_rarely(tmp_path: Path) -> None:
    now = [0.0]
    spool = Spool(tmp_path, 10_000_000, fsync_s=60, clock=lambda: now[0])
    for _ in range(600):  # ten minutes of one batch a second
        spool.append(_lines(0, 10))
        now[0] += 1
    assert spool.fsyncs <= 10
    spool.close()
    assert spool.fsyncs <= 11


def test_spool_skips_a_line_cut_short(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "seg-000000001.lp").write_text("m v=1 1\nm v=2 2\nm v=")
    spool = Spool(tmp_path, 100_000)
    assert spool.peek(10) == ["m v=1 1", "m v=2 2"]
    assert "cut short" in caplog.text


def test_a_batch_larger_than_the_spool_keeps_its_newest_part(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 2000)
    dropped = spool.append(_lines(0, 500))
    assert dropped > 0 and spool.size_bytes <= 2000
    kept = spool.peek(1000)
    assert kept == _lines(500 - len(kept), len(kept)) and len(kept) == 500 - dropped


# --- InfluxDB points ------------------------------------------------------------------------------


def test_points_types_and_tags() -> None:
    bank = DrivenBank([])
    bank.run(3)
    # A BMS that sends whole numbers must not turn a float field into an integer one.
    bank.monitor.readings["A1"] = Reading(
        subject="A1", at=bank.clock.monotonic(), pack_voltage_v=13, soc_pct=88, cycles=12,
        protections=Protection.CELL_UNDERVOLTAGE, discharge_enabled=False,
    )  # fmt: skip
    del bank.monitor.readings["B3"]  # never heard from
    state, _ = bank.monitor.tick(bank.clock.monotonic())
    lines = [p.to_line_protocol() for p in state_points(state, bank.monitor.topology, [], 1.5)]
    a1 = next(x for x in lines if x.startswith("battery,") and "battery=A1" in x)
    assert " soc_pct=88 " in a1.replace(",", " ") and "soc_pct=88i" not in a1
    assert "cycles=12i" in a1 and "discharge_enabled=false" in a1
    assert 'protections="cell_undervoltage"' in a1
    assert a1.endswith(" 1500000")
    b3 = next(x for x in lines if x.startswith("battery,") and "battery=B3" in x)
    assert b3.split(" ")[1] == "live=false"
    assert "protocol=pylontech-can" in b3
    by_measurement = {x.split(",")[0] for x in lines}
    assert by_measurement == {Measurement.BANK, Measurement.STRING, Measurement.BATTERY,
                              Measurement.CELL}  # fmt: skip
    cells = [x for x in lines if x.startswith("cell,") and "battery=A2" in x]
    assert [c.split("cell=")[1].split(",")[0] for c in cells] == ["01", "02", "03", "04"]


def test_alert_points() -> None:
    bank = DrivenBank([])
    bank.run(2)
    bank.cutoff("B2")
    ev = bank.until_event("cutoff")
    (p,) = alert_points("demo", [ev], 1000.0)
    line = p.to_line_protocol()
    assert line.startswith(
        "alert,bank=demo,battery=B2,event=raised,kind=cutoff,severity=critical,string=B,"
        'subject=demo/B/B2 active=1i,id="cutoff:demo/B/B2",message="B2: BMS opened'
    )
    assert line.endswith(f" {round((ev.at + 1000.0) * 1e6)}")


def test_topic_layout() -> None:
    t = Topics("bankwatch", "home")
    assert [t.availability, t.bank_state, t.string_state("A"), t.battery_state("A1"),
            t.alerts_active, t.alert_events, t.ha_status] == [
        "bankwatch/home/availability", "bankwatch/home/state", "bankwatch/home/string/A/state",
        "bankwatch/home/battery/A1/state", "bankwatch/home/alerts/active",
        "bankwatch/home/alerts/events", "homeassistant/status",
    ]  # fmt: skip
    assert t.discovery("sensor", "bankwatch_home.x_soc") == (
        "homeassistant/sensor/bankwatch_home/bankwatch_home_x_soc/config"
    )
    assert Topology(quiet_demo_config()).name == "demo"


def test_discovery_has_one_binary_sensor_per_alert_kind_and_place() -> None:
    """Discovery reads the table of alert kinds: each row gets its binary sensor, under its
    Home Assistant name, on every battery's device and on the bank's device where its row says,
    and there is no other binary sensor than the bank's "Problem"."""
    from bankwatch.daemon.detectors import ALERT_KINDS
    from bankwatch.daemon.mqtt import discovery_messages

    topology = Topology(quiet_demo_config())
    messages = discovery_messages(topology, Topics("bankwatch", topology.name))
    binary = {
        cfg["unique_id"]: cfg for topic, cfg in messages if topic.startswith("homeassistant/binary")
    }
    batteries = [b.name for s in topology.strings for b in s.batteries]
    want = {"bankwatch_demo_problem": "Problem"}
    for kind in ALERT_KINDS.values():
        if "battery" in kind.ha_sensors:
            want.update({f"bankwatch_demo_{b}_{kind.name}": kind.ha_name for b in batteries})
        if "bank" in kind.ha_sensors:
            want[f"bankwatch_demo_{kind.name}"] = kind.ha_name
        if "bank-any" in kind.ha_sensors:
            want[f"bankwatch_demo_{kind.name}_anywhere"] = kind.ha_name
    assert {uid: cfg["name"] for uid, cfg in binary.items()} == want
    for uid, cfg in binary.items():
        assert cfg["device_class"] == "problem", uid
    # One message per sensor: no unique id is sent twice.
    assert sum(t.startswith("homeassistant/binary") for t, _ in messages) == 1 + sum(
        len(batteries) * ("battery" in k.ha_sensors)
        + ("bank" in k.ha_sensors)
        + ("bank-any" in k.ha_sensors)
        for k in ALERT_KINDS.values()
    )
