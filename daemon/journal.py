"""Logging to the journal: when stderr is the journal stream systemd set up (`$JOURNAL_STREAM`),
log lines carry a syslog priority prefix (`<4>` for a warning) instead of a time and a level name:
journald stamps the time and keeps the level, so `journalctl -p warning` works.

Every command sets this up before it runs, so this module imports only the standard library.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

__all__ = ["JournalFormatter", "on_journal", "use_journal_format"]


# syslog priorities, sd-daemon(3): what journald reads from a `<N>` prefix.
_PRIORITY = (
    (logging.CRITICAL, 2),
    (logging.ERROR, 3),
    (logging.WARNING, 4),
    (logging.INFO, 6),
)


def _priority(levelno: int) -> int:
    for level, prio in _PRIORITY:
        if levelno >= level:
            return prio
    return 7


class JournalFormatter(logging.Formatter):
    """`<4>bankwatch.daemon.service: message`: the level as a syslog prefix on every line (a
    traceback's lines too), no time (journald adds it)."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def on_journal(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """True when `stream` is the journal stream systemd connected (`$JOURNAL_STREAM` is its
    device and inode), not a pipe or terminal it was redirected to since."""
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    if not dev.isdigit() or not ino.isdigit():
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return st.st_dev == int(dev) and st.st_ino == int(ino)


def use_journal_format(environ: Mapping[str, str] | None = None) -> bool:
    """Give the root logger's stderr handlers the journal format when stderr is the journal."""
    if not on_journal(sys.stderr, environ):
        return False
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr:
            handler.setFormatter(JournalFormatter())
    return True
