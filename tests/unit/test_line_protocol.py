"""bankwatch's own line-protocol encoder, checked against the InfluxDB client library's (which
the v2 writer still uses), and on the cases that matter by hand."""

from __future__ import annotations

import influxdb_client
from hypothesis import given
from hypothesis import strategies as st

from bankwatch.daemon.line_protocol import Point


def test_types_order_and_time() -> None:
    p = Point("battery").tag("string", "A").tag("bank", "home")
    p.field("soc_pct", 88.0).field("cycles", 12).field("live", True).field("age_s", None)
    p.field("protections", "cell_undervoltage").field("voltage_v", 13.25).time(1_500_000)
    assert p.to_line_protocol() == (
        'battery,bank=home,string=A cycles=12i,live=true,protections="cell_undervoltage",'
        "soc_pct=88,voltage_v=13.25 1500000"
    )


def test_escaping() -> None:
    p = Point("my meas,x").tag("a b", "c,d=e").field("f=g", 'say "hi" \\ there\nnext').time(1)
    assert p.to_line_protocol() == (r'my\ meas\,x,a\ b=c\,d\=e f\=g="say \"hi\" \\ there\nnext" 1')


def test_what_influxdb_refuses_is_left_out() -> None:
    p = Point("m").tag("empty", "").field("nan", float("nan")).field("inf", float("inf"))
    assert p.to_line_protocol() == ""  # no field left: no line
    assert Point("m").tag("empty", "").field("x", 1.5).to_line_protocol() == "m x=1.5"


_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\n"), max_size=12
)
_key = _text.filter(lambda k: k != "" and not k.endswith("\\"))
_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    _text,
)


@given(
    measurement=_key.filter(lambda m: not m.startswith("#")),
    tags=st.dictionaries(_key, _key, max_size=4),
    fields=st.dictionaries(_key, _value, max_size=5),
    at=st.integers(0, 2**62),
)
def test_same_lines_as_the_client_library(
    measurement: str,
    tags: dict[str, str],
    fields: dict[str, float | int | bool | str],
    at: int,
) -> None:
    ours = Point(measurement)
    theirs = influxdb_client.Point(measurement)
    for k, v in tags.items():
        ours.tag(k, v)
        theirs.tag(k, v)
    for k, f in fields.items():
        ours.field(k, f)
        theirs.field(k, f)
    ours.time(at)
    theirs.time(at, influxdb_client.WritePrecision.US)
    assert ours.to_line_protocol() == theirs.to_line_protocol()
