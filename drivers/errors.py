"""The one error hierarchy. Everything a user can cause ends in one of these, with a message that
names what went wrong and where; the CLI prints it without a traceback."""

from __future__ import annotations

__all__ = [
    "BankwatchError",
    "ConfigError",
    "FrameError",
    "LinkError",
    "UsageError",
]


class BankwatchError(Exception):
    """Base of every error bankwatch raises on purpose."""


class ConfigError(BankwatchError):
    """The config file is missing, unparseable or describes something impossible.

    `problems` holds one line per problem so all of them can be shown at once.
    """

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{path}: invalid config\n{lines}" if self.problems else path)


class FrameError(BankwatchError):
    """A frame could not be decoded: wrong length, bad checksum, unknown id. A codec raises this
    (or a subclass) and never returns half a reading."""


class LinkError(BankwatchError):
    """A link (CAN bus, serial line) could not be opened or failed while in use."""


class UsageError(BankwatchError):
    """The command line asks for something that does not exist (an unknown protocol name)."""
