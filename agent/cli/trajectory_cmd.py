"""Placeholder: filled in by the agent loop issue."""


def view() -> None:
    """View a trajectory (not yet built)."""
    raise SystemExit("view is not built yet")


def export() -> None:
    """Export trajectories (not yet built)."""
    raise SystemExit("export is not built yet")


def replay() -> None:
    """Replay a trajectory (not yet built)."""
    raise SystemExit("replay is not built yet")
