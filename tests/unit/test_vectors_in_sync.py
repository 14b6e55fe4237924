"""The captured frames ship with the tests so a fresh clone can run them; they must not drift
from the team's reference copy in ../shared/vectors when that is present."""

from __future__ import annotations

import pytest

from tests.helpers import SHARED_VECTORS, VECTORS


def test_every_vector_file_is_present() -> None:
    assert sorted(p.name for p in VECTORS.glob("*.json")), "no vector files in tests/vectors"


@pytest.mark.skipif(not SHARED_VECTORS.is_dir(), reason="no ../shared/vectors beside this checkout")
def test_vectors_match_shared_copy() -> None:
    for shared in sorted(SHARED_VECTORS.glob("*.json")):
        ours = VECTORS / shared.name
        assert ours.is_file(), f"{shared.name} missing from tests/vectors"
        assert ours.read_bytes() == shared.read_bytes(), f"{shared.name} differs from shared copy"
