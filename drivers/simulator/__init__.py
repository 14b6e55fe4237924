"""bankwatch.drivers.simulator: a bank of simulated batteries with real physics, answering in the
real protocols through the same codecs the daemon uses."""

__all__: list[str] = []
