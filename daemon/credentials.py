"""Secrets (broker passwords, InfluxDB tokens): from a file or the environment, never the config.

A config file is often world-readable and gets pasted into bug reports, so it names where a
secret is, not the secret. Looked up in this order, the first that exists wins:

1. the file the config names (`password_file`, `token_file`);
2. systemd's credentials folder `$CREDENTIALS_DIRECTORY`: the unit in systemd/ hands over every
   file of /etc/bankwatch/credentials/ with `LoadCredential=bankwatch:/etc/bankwatch/credentials`,
   so `mqtt-password` there arrives as `bankwatch_mqtt-password`; a credential passed under its
   plain name (`LoadCredential=mqtt-password:/path` in a drop-in) is found too. Readable only by
   the service;
3. the environment variable (`INFLUX_TOKEN`, ...): handy from a shell.

A `Secret` prints as `***`, so one that slips into a log line or an exception shows nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from bankwatch.drivers.errors import ConfigError

__all__ = ["CREDENTIAL_UNIT_ID", "Secret", "find_secret"]

# The id of the unit's folder credential: `LoadCredential=bankwatch:/etc/bankwatch/credentials`.
CREDENTIAL_UNIT_ID = "bankwatch"


class Secret:
    """A string that does not show itself: `str()` and `repr()` give `***`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "***"

    def __repr__(self) -> str:
        return "Secret('***')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _read(path: Path, what: str) -> Secret:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the {what}: {exc.strerror or exc}"]) from None
    value = text.strip("\r\n")  # editors add a newline; a secret never ends in one
    if not value:
        raise ConfigError(str(path), [f"the {what} file is empty"])
    return Secret(value)


def find_secret(
    what: str,
    *,
    file: str | None,
    credential: str,
    env: str,
    environ: Mapping[str, str] | None = None,
) -> Secret | None:
    """The secret from the named file, systemd's credentials folder or the environment."""
    environ = os.environ if environ is None else environ
    if file is not None:
        return _read(Path(file), what)
    cred_dir = environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        for name in (f"{CREDENTIAL_UNIT_ID}_{credential}", credential):
            path = Path(cred_dir) / name
            if path.exists():
                return _read(path, what)
    value = environ.get(env)
    if value:
        return Secret(value)
    return None
