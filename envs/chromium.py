"""The one place that knows how to start the system chromium.

Playwright's own browser download does not work here, so everything (the browser env, the
virtual phone, the desktop tests) launches Debian's ``/usr/bin/chromium`` with these flags.
"""

from __future__ import annotations

import logging
import os
import tempfile
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


#: The longest path a unix socket can have (sun_path less its NUL), and what chromium adds to
#: its temporary folder for the socket that keeps a profile to one browser.
_SOCKET_PATH_MAX = 107
_SINGLETON_SOCKET = len("/org.chromium.Chromium.XXXXXX/SingletonSocket")


def chromium_temp() -> tempfile.TemporaryDirectory:
    """A folder for one chromium's own temporary files (its singleton socket's folder), for
    ``launch_chromium``; clean it up after closing the browser. A terminal's Ctrl-C ends
    chromium without its removing them: every interrupted run left a folder in /tmp."""
    return tempfile.TemporaryDirectory(prefix="vlagent-chromium-", ignore_cleanup_errors=True)


def launch_chromium(playwright: Any, temp_dir: str | None = None, **kwargs: Any) -> Any:
    """Launch the system chromium through a Playwright (sync or async) instance.

    ``temp_dir``: where chromium keeps its temporary files (see ``chromium_temp``), where the
    path of the socket it makes there fits. Keyword arguments go to
    ``playwright.chromium.launch``; ``headless`` defaults to True and extra ``args`` are
    appended after ``CHROMIUM_ARGS``.
    """
    extra_args = list(kwargs.pop("args", ()))
    kwargs.setdefault("headless", True)
    # Where the socket's path would be too long, chromium refuses to start: it keeps the
    # system's folder then.
    if temp_dir is not None and \
            len(os.fsencode(temp_dir)) + _SINGLETON_SOCKET <= _SOCKET_PATH_MAX:
        kwargs["env"] = {**os.environ, "TMPDIR": temp_dir}
    return playwright.chromium.launch(
        executable_path=CHROMIUM_PATH,
        args=[*CHROMIUM_ARGS, *extra_args],
        **kwargs,
    )


def chromium_command(*extra_args: str) -> list[str]:
    """The argv for running the system chromium directly (a visible window on some X display)."""
    return [CHROMIUM_PATH, *CHROMIUM_ARGS, *extra_args]
