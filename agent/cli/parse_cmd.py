"""Placeholder: filled in by the dialects issue."""


def parse() -> None:
    """Parse model output (not yet built)."""
    raise SystemExit("parse is not built yet")
