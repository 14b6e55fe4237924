"""Links own the wire: a CAN bus, an RS485 line. Only these modules do I/O on hardware."""

__all__: list[str] = []
