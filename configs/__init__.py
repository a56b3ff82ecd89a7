"""Search and baseline configs shipped with the package (``ddc search --config <name>``)."""
