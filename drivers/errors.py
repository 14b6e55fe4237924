"""The one error hierarchy. Everything a user can cause ends in one of these, with a message that
names what went wrong and where; the CLI prints it without a traceback."""

from __future__ import annotations

__all__ = [
    "BankwatchError",
    "ChecksumError",
    "ConfigError",
    "ErrorReplyError",
    "FrameError",
    "FrameLengthError",
    "IncompleteError",
    "LinkError",
    "MalformedFrameError",
    "UnknownCommandError",
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


# What went wrong with a frame, the same kinds for every codec: a caller can tell a corrupt
# frame (ChecksumError: noise on the line, retry) from a frame the codec does not know
# (UnknownCommandError: another device, a newer firmware) without parsing messages.


class ChecksumError(FrameError):
    """The frame's checksum or CRC does not match its bytes (the message gives both values)."""


class FrameLengthError(FrameError):
    """The frame is shorter or longer than its header or its command says (both lengths given)."""


class MalformedFrameError(FrameError):
    """The bytes cannot be this protocol's frame: wrong start or end byte, impossible field."""


class UnknownCommandError(FrameError):
    """A well-formed frame with a command, CAN id, register or data id this codec does not
    decode."""


class ErrorReplyError(FrameError):
    """The BMS answered, but with its error status instead of data."""


class IncompleteError(FrameError):
    """The parts of a multi-frame reply do not make a whole (a frame of a list is missing)."""


class LinkError(BankwatchError):
    """A link (CAN bus, serial line) could not be opened or failed while in use."""


class UsageError(BankwatchError):
    """The command line asks for something that does not exist (an unknown protocol name)."""
