"""Placeholder: filled in by the agent loop issue."""


def run() -> None:
    """Run an agent (not yet built)."""
    raise SystemExit("run is not built yet")


def demo() -> None:
    """Run the demo (not yet built)."""
    raise SystemExit("demo is not built yet")
