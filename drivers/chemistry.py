"""Facts of cell chemistry that config checks and the simulator both rely on."""

from __future__ import annotations

from typing import Literal

__all__ = ["CELL_NOMINAL_V", "CHEMISTRY_FAMILY", "Chemistry"]

Chemistry = Literal["lifepo4", "nmc", "lto", "agm", "flooded", "gel"]

# Chemistries that may never share a bank are in different families; lead-acid subtypes share
# one family but still differ in charge voltage.
CHEMISTRY_FAMILY: dict[str, str] = {
    "lifepo4": "lifepo4",
    "nmc": "nmc",
    "lto": "lto",
    "agm": "lead-acid",
    "flooded": "lead-acid",
    "gel": "lead-acid",
}

# A cell's nominal voltage: a battery's nominal voltage over this is its series cell count.
CELL_NOMINAL_V: dict[str, float] = {
    "lifepo4": 3.2,
    "nmc": 3.7,
    "lto": 2.4,
    "agm": 2.0,
    "flooded": 2.0,
    "gel": 2.0,
}
