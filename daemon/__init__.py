"""bankwatch.daemon: the service side (config, topology, detectors, sinks, CLI)."""

__all__: list[str] = []
