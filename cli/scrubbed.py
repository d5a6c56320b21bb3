"""A text stream that hides a run's secrets: what the terminal shows passes through it."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, TextIO

from agent.secrets import Secrets

if TYPE_CHECKING:
    from rich.console import Console


class ScrubbedStream(io.TextIOBase):
    """Writes to ``stream`` with every secret value replaced by its placeholder.

    Rich writes each rendered print (or live refresh) in one call, so a value is never split
    across two writes; it looks like ``stream`` (a terminal or not) to whoever writes.
    """

    def __init__(self, stream: TextIO, secrets: Secrets) -> None:
        self._stream = stream
        self._secrets = secrets

    def write(self, text: str) -> int:
        self._stream.write(self._secrets.scrub(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", "utf-8")


def scrubbed_console(secrets: dict[str, str]) -> "Console":
    """A rich console on stdout that never shows a secret's value."""
    import sys

    from rich.console import Console

    return Console(file=ScrubbedStream(sys.stdout, Secrets(secrets)))
