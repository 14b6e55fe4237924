"""Time is passed in, never read in the middle of logic.

Logic compares `monotonic()` values (immune to the wall clock jumping when a Pi without an RTC
gets NTP at boot); `wall()` is only for stamping what leaves the process.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "ScaledClock", "SystemClock"]


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> float: ...

    @property
    def speed(self) -> float:
        """Clock seconds per real second: how a loop turns its period into a real sleep."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    @property
    def speed(self) -> float:
        return 1.0


class ScaledClock:
    """Real time, run faster: the demo's simulator and daemon share one, so a minute of bank
    life passes in seconds and every timeout (stale readings, silence) scales with it."""

    def __init__(self, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._speed = speed
        self._mono0 = time.monotonic()
        self._wall0 = time.time()

    @property
    def speed(self) -> float:
        return self._speed

    def monotonic(self) -> float:
        return self._mono0 + (time.monotonic() - self._mono0) * self._speed

    def wall(self) -> float:
        return self._wall0 + (time.monotonic() - self._mono0) * self._speed


class ManualClock:
    """A clock that moves only when told to: tests and the simulator run hours in a second."""

    def __init__(self, start_wall: float = 1_780_000_000.0, start_monotonic: float = 0.0) -> None:
        self._wall0 = start_wall
        self._mono0 = start_monotonic
        self._elapsed = 0.0

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._elapsed += seconds

    @property
    def speed(self) -> float:
        return 1.0

    @property
    def elapsed(self) -> float:
        return self._elapsed

    def monotonic(self) -> float:
        return self._mono0 + self._elapsed

    def wall(self) -> float:
        return self._wall0 + self._elapsed
