"""Baseline configs shipped with the package (``ddc baseline NAME --config <name>``)."""
