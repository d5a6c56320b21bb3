"""A text stream that hides a run's secrets: what the terminal shows passes through it.

What the model, a screen or an env wrote is scrubbed where it is made (a step's record, an
episode's reason, the gate's question), so the stream is a last line of defence: it masks only
the forms of a value long enough to be told apart from the numbers the runtime prints. Masking a
4-digit PIN inside a step number, a screen size or a time would show where, and so what, it is.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, TextIO

if TYPE_CHECKING:
    from rich.console import Console

    from agent.secrets import Secrets


class ScrubbedStream(io.TextIOBase):
    """Writes to ``stream`` with each secret's distinct forms (``Secrets.scrub_distinct``)
    replaced by its placeholder.

    Rich writes each rendered print (or live refresh) in one call, so a value is never split
    across two writes; it looks like ``stream`` (a terminal or not) to whoever writes.
    """

    def __init__(self, stream: TextIO, secrets: "Secrets") -> None:
        self._stream = stream
        self._secrets = secrets
        self._as_is = False

    def write(self, text: str) -> int:
        self._stream.write(text if self._as_is else self._secrets.scrub_distinct(text))
        return len(text)

    @contextlib.contextmanager
    def as_is(self) -> Iterator[None]:
        """Writes pass unmasked meanwhile (for what the runtime itself made, such as paths)."""
        self._as_is = True
        try:
            yield
        finally:
            self._as_is = False

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", "utf-8")


def scrubbed_console(secrets: dict[str, str], stderr: bool = False) -> "Console":
    """A rich console on stdout (``stderr``: on stderr) that masks what ``ScrubbedStream``
    masks. Once its reader has gone (``run ... | head``), it prints nothing more, and the print
    that found it gone raises KeyboardInterrupt: the run or bench stops as on Ctrl-C, its
    trajectories finalized (rich's own SystemExit left them "running", and a bench without
    the rest of its episodes' records)."""
    import os
    import sys

    from rich.console import Console

    from agent.secrets import Secrets  # pydantic's actions: only a command that prints needs them

    class StoppingConsole(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            # As rich does: what Python flushes at exit goes nowhere, with no error shown.
            with contextlib.suppress(OSError, ValueError):  # a stream with no descriptor
                os.dup2(os.open(os.devnull, os.O_WRONLY), self.file.fileno())
            raise KeyboardInterrupt("stopped: its output was closed (a broken pipe)")

    return StoppingConsole(file=ScrubbedStream(sys.stderr if stderr else sys.stdout,
                                               Secrets(secrets)))


def print_error(secrets: dict[str, str], message: object) -> None:
    """The command's last line, ``error: MESSAGE``, on stderr. The message may quote anything
    (an env's or an endpoint's words), so each value is masked in every form, however short."""
    from agent.secrets import Secrets
    from cli.error_line import error_line

    scrubbed_console(secrets, stderr=True).print(error_line(Secrets(secrets).scrub(str(message))),
                                                 soft_wrap=True)


def print_path(console: "Console", label: str, path: Path) -> None:
    """``label: PATH`` as it is. The runtime named the path (a time, the goal with its
    placeholders, --out), so it holds no secret, and masking a value in it (a code 261204
    inside the time 20261204-...) would print a path that does not exist."""
    stream = console.file
    with stream.as_is() if isinstance(stream, ScrubbedStream) else contextlib.nullcontext():
        console.print(f"{label}: {Path(path).resolve()}", soft_wrap=True, markup=False,
                      highlight=False)
