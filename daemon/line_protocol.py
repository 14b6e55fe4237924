"""InfluxDB line protocol, written by hand: `measurement,tag=v field=1.5,n=3i 1700000000000000`.

The rules are InfluxDB's (docs.influxdata.com, "Line protocol"): tags and fields sorted by key;
commas and spaces escaped in the measurement, commas, equals signs and spaces in tag keys, tag
values and field keys; double quotes and backslashes in string field values; floats bare, integers
with an `i`, booleans `true`/`false`, strings quoted. A tag with an empty value and a field that is
None or not finite are left out (InfluxDB refuses them); a point without a field is no line at all.

The InfluxDB client library has an encoder too, but importing it costs a fifth of a second and
40 MB: too much for a Raspberry Pi that writes with the v1 API, which needs only an HTTP POST.
"""

from __future__ import annotations

import math

__all__ = ["Point"]

_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\r": r"\r", "\t": r"\t"})
_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\r": r"\r", "\t": r"\t"})
# A string field is quoted: only the quote and the backslash need escaping. A newline would end
# the line, so it is written as the two characters `\n`.
_STRING = str.maketrans({'"': r"\"", "\\": "\\\\", "\n": r"\n"})

FieldValue = float | int | bool | str


def _field(value: FieldValue) -> str | None:
    if isinstance(value, bool):  # before int: a bool is an int to Python
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        text = repr(value)
        # A whole number needs no ".0" to be a float in line protocol.
        return text[:-2] if text.endswith(".0") else text
    return '"' + value.translate(_STRING) + '"'


class Point:
    """One point, built by chaining: `Point("bank").tag("bank", "home").field("soc_pct", 88.0)
    .time(1700000000000000)`. The time is an integer in the write's precision (bankwatch writes
    microseconds)."""

    __slots__ = ("_fields", "_measurement", "_tags", "_time")

    def __init__(self, measurement: str) -> None:
        self._measurement = measurement
        self._tags: dict[str, str] = {}
        self._fields: dict[str, FieldValue] = {}
        self._time: int | None = None

    def tag(self, key: str, value: str) -> Point:
        self._tags[key] = value
        return self

    def field(self, key: str, value: FieldValue | None) -> Point:
        if value is not None:
            self._fields[key] = value
        return self

    def time(self, at: int) -> Point:
        self._time = at
        return self

    def to_line_protocol(self) -> str:
        fields = []
        for key, value in sorted(self._fields.items()):
            text = _field(value)
            if text is not None:
                fields.append(f"{key.translate(_KEY)}={text}")
        if not fields:
            return ""
        head = self._measurement.translate(_MEASUREMENT)
        for key, value in sorted(self._tags.items()):
            if key and value:
                head += f",{key.translate(_KEY)}={value.translate(_KEY)}"
        line = f"{head} {','.join(fields)}"
        return line if self._time is None else f"{line} {self._time}"
