"""Episode detectors (the rest of the package's detectors move here with the layout change)."""
