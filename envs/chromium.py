"""The one place that knows how to start the system chromium.

Playwright's own browser download does not work here, so everything (the browser env, the
virtual phone, the desktop tests) launches Debian's ``/usr/bin/chromium`` with these flags.
"""

from __future__ import annotations

import logging
from typing import Any

CHROMIUM_PATH = "/usr/bin/chromium"


class _DriverGone(logging.Filter):
    """A terminal's Ctrl-C reaches Playwright's driver process with the rest of the process
    group, so it exits first, and asyncio then reports its closed pipe as a future nobody
    retrieved, after the run's own "interrupted" report. That report is the one to show."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Connection closed while reading from the driver" not in record.getMessage()


logging.getLogger("asyncio").addFilter(_DriverGone())

#: Flags for a quiet, sandbox-free chromium that never phones home or updates itself.
CHROMIUM_ARGS: tuple[str, ...] = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
)


def launch_chromium(playwright: Any, **kwargs: Any) -> Any:
    """Launch the system chromium through a Playwright (sync or async) instance.

    Keyword arguments go to ``playwright.chromium.launch``; ``headless`` defaults to True and
    extra ``args`` are appended after ``CHROMIUM_ARGS``.
    """
    extra_args = list(kwargs.pop("args", ()))
    kwargs.setdefault("headless", True)
    return playwright.chromium.launch(
        executable_path=CHROMIUM_PATH,
        args=[*CHROMIUM_ARGS, *extra_args],
        **kwargs,
    )


def chromium_command(*extra_args: str) -> list[str]:
    """The argv for running the system chromium directly (a visible window on some X display)."""
    return [CHROMIUM_PATH, *CHROMIUM_ARGS, *extra_args]
