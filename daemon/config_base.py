"""What every part of the config schema shares: the strict base model and the small types.

Each concern keeps its schema beside the code that reads it (`detect_config` beside the
detectors, `scenario_config` beside the scenario runner); `config` composes them into one
`Config`. They all start from here, so a typo is an error everywhere in the same words.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Name", "NonNegFloat", "PositiveFloat", "Strict", "raw_array", "raw_table"]

Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]


class Strict(BaseModel):
    """Frozen, strict and closed (`extra="forbid"`): an unknown key is an error, not a silently
    ignored setting."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# The checks across sections work on the raw TOML data, before (or despite) the schema check:
# a value of the wrong type reads as empty, and the schema check reports it.


def raw_table(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def raw_array(value: object) -> list[Any]:
    return value if isinstance(value, list) else []
