"""Shared fixtures for the whole suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`bankwatch run` keeps its active alerts across restarts in $STATE_DIRECTORY: each test
    (and every process it starts, which inherits the environment) gets its own, so no test
    restores another's alerts, and none writes to the real ~/.local/state."""
    path = tmp_path_factory.mktemp("state")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STATE_DIRECTORY", str(path))
        yield path
