"""The one line a command ends with when a user's input is wrong."""

from __future__ import annotations

from core.terminal import literal


def error_line(message: object) -> str:
    """``error: MESSAGE`` for a rich console. The message is shown literally: it quotes paths,
    goals and model text."""
    return f"[red]error:[/] {literal(str(message))}"
