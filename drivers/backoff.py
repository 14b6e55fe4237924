"""Capped, randomized ("jittered") exponential backoff: how every retry loop in bankwatch waits.

Links reopening a vanished adapter, the MQTT client reconnecting and the InfluxDB writer retrying
all wait this way: each failure doubles the wait up to a cap, and each wait is drawn from the
upper half of the current step so that many clients restarted together (a power cut) do not
retry in lockstep. A success resets it.
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """`next()` gives the next wait in seconds (within [step/2, step]) and doubles the step up
    to `max_s`; `reset()` starts again at `first_s`."""

    def __init__(self, first_s: float, max_s: float, *, rng: random.Random | None = None) -> None:
        if not 0 < first_s <= max_s:
            raise ValueError(f"backoff needs 0 < first_s <= max_s (got {first_s}, {max_s})")
        self.first_s = first_s
        self.max_s = max_s
        self._step = first_s
        # A seeded Random makes the waits reproducible in tests; the module's one otherwise.
        self._uniform = rng.uniform if rng is not None else random.uniform

    @property
    def step_s(self) -> float:
        """The upper bound of the next wait."""
        return self._step

    def next(self) -> float:
        wait = self._uniform(0.5, 1.0) * self._step
        self._step = min(self._step * 2, self.max_s)
        return wait

    def reset(self) -> None:
        self._step = self.first_s
