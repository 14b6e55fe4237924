"""bankwatch.drivers: the hardware side (codecs, links, drivers, the simulator)."""

__all__: list[str] = []
