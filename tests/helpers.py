"""Shared test helpers: where the captured vectors and the repository are."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
VECTORS = TESTS / "vectors"
# The team's reference copy; when present, ours must be identical (see test_vectors_in_sync).
SHARED_VECTORS = REPO.parent / "shared" / "vectors"


def load_vectors(name: str) -> list[dict[str, Any]]:
    data = json.loads((VECTORS / f"{name}.json").read_text(encoding="utf-8"))
    vectors: list[dict[str, Any]] = data["vectors"]
    return vectors
