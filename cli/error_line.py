"""The one line a command ends with when a user's input is wrong."""

from __future__ import annotations

from rich.markup import escape


def error_line(message: object) -> str:
    """``error: MESSAGE`` for a rich console. The message is escaped: it quotes paths, goals and
    model text, whose square brackets rich would otherwise read as markup (and fail on)."""
    return f"[red]error:[/] {escape(str(message))}"
