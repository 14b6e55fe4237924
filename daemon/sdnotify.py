"""The sd_notify protocol: how a `Type=notify` service talks to systemd, without libsystemd.

systemd passes the path of a datagram socket in `$NOTIFY_SOCKET`; the service sends it
newline-separated `KEY=VALUE` assignments (`READY=1`, `STATUS=...`, `WATCHDOG=1`,
`STOPPING=1`). A path starting with `@` is in the abstract namespace (the `@` stands for a
leading NUL byte). With `WatchdogSec=` set, systemd also passes `$WATCHDOG_USEC` (and
`$WATCHDOG_PID`, the process it is meant for) and restarts the service when no `WATCHDOG=1`
arrives within that time.

Sending never raises and never blocks: a service that cannot reach its supervisor keeps
monitoring (systemd then acts on its own timeouts), and the failure is logged once.
Reference: sd_notify(3), sd_watchdog_enabled(3).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

__all__ = ["Notifier", "watchdog_period_s"]

log = logging.getLogger(__name__)


def _address(value: str) -> str | bytes | None:
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # vsock: and other transports newer systemd versions offer: not used on a Pi


class Notifier:
    """Sends notifications to the socket systemd named; does nothing when there is none."""

    def __init__(self, socket_path: str | None) -> None:
        self.socket_path = socket_path or None
        self._address = _address(self.socket_path) if self.socket_path else None
        self._sock: socket.socket | None = None
        self._failed = False
        if self.socket_path and self._address is None:
            log.warning("NOTIFY_SOCKET=%s: unsupported address; not notifying", self.socket_path)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=VALUE` assignments in one datagram; True when it was sent."""
        if self._address is None:
            return False
        message = "\n".join(a.replace("\n", " ") for a in assignments).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(message, self._address)
        except OSError as exc:
            # EAGAIN (systemd is busy), ENOENT/ECONNREFUSED (no one listens): the service goes on.
            if not self._failed:
                log.warning("cannot notify systemd at %s: %s", self.socket_path, exc)
                self._failed = True
            return False
        if self._failed:
            log.info("notifying systemd at %s again", self.socket_path)
            self._failed = False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_period_s(environ: Mapping[str, str] | None = None, pid: int | None = None) -> float:
    """How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, as sd_watchdog_enabled(3)
    advises; 0 when no watchdog is asked of this process."""
    env = os.environ if environ is None else environ
    usec_text = env.get("WATCHDOG_USEC", "")
    if not usec_text:
        return 0.0
    try:
        usec = int(usec_text)
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not a number; no watchdog pings", usec_text)
        return 0.0
    pid_text = env.get("WATCHDOG_PID", "")
    if pid_text and pid_text != str(os.getpid() if pid is None else pid):
        return 0.0  # meant for another process (a wrapper that started us)
    return usec / 2e6 if usec > 0 else 0.0
