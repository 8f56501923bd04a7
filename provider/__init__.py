"""Processing provider: thin adapters that turn QGIS parameters into engine calls."""
