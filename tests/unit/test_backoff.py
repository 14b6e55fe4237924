"""The one backoff every retry loop uses: capped, doubling, jittered, reset by a success."""

from __future__ import annotations

import random

import pytest

from bankwatch.drivers.backoff import Backoff


def test_waits_double_up_to_the_cap_within_the_upper_half_of_each_step() -> None:
    b = Backoff(0.5, 4.0, rng=random.Random(1))
    steps = []
    for _ in range(7):
        step = b.step_s
        wait = b.next()
        assert step / 2 <= wait <= step
        steps.append(step)
    assert steps == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]


def test_reset_starts_again_at_the_first_step() -> None:
    b = Backoff(1.0, 60.0)
    for _ in range(5):
        b.next()
    assert b.step_s == 32.0
    b.reset()
    assert b.step_s == 1.0
    assert 0.5 <= b.next() <= 1.0


def test_waits_are_jittered() -> None:
    waits = {Backoff(1.0, 1.0, rng=random.Random(seed)).next() for seed in range(5)}
    assert len(waits) == 5


@pytest.mark.parametrize(("first", "cap"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 5.0)])
def test_nonsense_bounds_are_refused(first: float, cap: float) -> None:
    with pytest.raises(ValueError, match="0 < first_s <= max_s"):
        Backoff(first, cap)
