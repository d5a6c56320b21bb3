"""The one place that knows how to start the system chromium.

Playwright's own browser download does not work here, so everything (the browser env, the
virtual phone, the desktop tests) launches Debian's ``/usr/bin/chromium`` with these flags.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from envs.temp_folders import TempFolder

CHROMIUM_PATH = "/usr/bin/chromium"


class _AfterCtrlC(logging.Filter):
    """Drops the log records that only tell what a terminal's Ctrl-C did to Playwright, after the
    run's own "interrupted" report, the one to show. The Ctrl-C reaches Playwright's driver
    process with the rest of the process group: it exits first, and asyncio reports its closed
    pipe as a future nobody retrieved; and the command in flight is given up, so the driver's
    late answer to it finds no command waiting, which Playwright logs, with a traceback."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return self.text not in record.getMessage() and self.text not in str(error)


logging.getLogger("asyncio").addFilter(
    _AfterCtrlC("Connection closed while reading from the driver"))
logging.getLogger("playwright").addFilter(_AfterCtrlC("Cannot find command to respond"))

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


def chromium_temp() -> TempFolder:
    """A folder for one chromium's own temporary files (its singleton socket's folder), for
    ``launch_chromium``; clean it up after closing the browser. A terminal's Ctrl-C ends
    chromium without its removing them: every interrupted run left a folder in /tmp."""
    return TempFolder("vlagent-chromium-")


#: How long ``remove_temp`` looks after a chromium that may still be exiting, and how long the
#: folder must stay gone before it stops looking.
REMOVE_TEMP_WITHIN_S, REMOVE_TEMP_GONE_S = 3.0, 0.5


def remove_temp(temp: TempFolder, chromium_closed: bool = True) -> None:
    """Remove a ``chromium_temp`` folder. A chromium that was not closed (a terminal's Ctrl-C
    ended it, and Playwright's driver with it) may still be writing its profile there as the
    folder goes: what it writes since is removed again, until the folder stays gone."""
    temp.cleanup()
    if chromium_closed:
        return
    deadline, gone_since = time.monotonic() + REMOVE_TEMP_WITHIN_S, time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - gone_since < REMOVE_TEMP_GONE_S:
        time.sleep(0.05)
        if os.path.exists(temp.name):
            temp.cleanup()
            gone_since = time.monotonic()


#: A fresh profile's preferences: chromium's "preload pages" off (network prediction: never), so
#: that a page's speculation rules prefetch nothing. Chromium makes those requests itself, where
#: no interception sees them: an allowed link that redirects off the list reached the host.
PROFILE_PREFERENCES = {"net": {"network_prediction_options": 2}}


def _launch_options(temp_dir: str | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The options of a launch: ``kwargs`` with the system chromium, ``CHROMIUM_ARGS`` before
    ``kwargs``' own ``args``, headless unless said, and ``temp_dir`` as its TMPDIR."""
    options = {**kwargs, "executable_path": CHROMIUM_PATH,
               "args": [*CHROMIUM_ARGS, *kwargs.get("args", ())]}
    options.setdefault("headless", True)
    # Where the socket's path would be too long, chromium refuses to start: it keeps the
    # system's folder then.
    if temp_dir is not None and \
            len(os.fsencode(temp_dir)) + _SINGLETON_SOCKET <= _SOCKET_PATH_MAX:
        options["env"] = {**os.environ, "TMPDIR": temp_dir}
    return options


def launch_chromium(playwright: Any, temp_dir: str | None = None, **kwargs: Any) -> Any:
    """Launch the system chromium through a Playwright (sync or async) instance.

    ``temp_dir``: where chromium keeps its temporary files (see ``chromium_temp``), where the
    path of the socket it makes there fits. Keyword arguments go to
    ``playwright.chromium.launch``; ``headless`` defaults to True and extra ``args`` are
    appended after ``CHROMIUM_ARGS``.
    """
    return playwright.chromium.launch(**_launch_options(temp_dir, kwargs))


def launch_chromium_context(playwright: Any, temp_dir: str, **kwargs: Any) -> Any:
    """The system chromium with a fresh profile in ``temp_dir`` (from ``chromium_temp``), whose
    preferences are ``PROFILE_PREFERENCES``: its one context (``context.browser`` is the
    browser; it starts with a blank page). Keyword arguments go to
    ``playwright.chromium.launch_persistent_context``, as in ``launch_chromium``."""
    profile = Path(temp_dir) / "profile"
    (profile / "Default").mkdir(parents=True)
    (profile / "Default" / "Preferences").write_text(json.dumps(PROFILE_PREFERENCES))
    return playwright.chromium.launch_persistent_context(profile,
                                                         **_launch_options(temp_dir, kwargs))


def kill_chromium(temp_dir: str) -> None:
    """SIGKILL every process of the chromium whose profile ``launch_chromium_context`` made in
    ``temp_dir``: one that stopped answering (a page whose script never yields holds every call
    into it), which a close would wait on too. Playwright does not tell the browser's pid, and
    each of chromium's processes names the profile in its command line."""
    marker = f"--user-data-dir={Path(temp_dir) / 'profile'}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            if marker + b"\0" in command or marker + b" " in command:
                os.kill(int(entry.name), signal.SIGKILL)
        except OSError:  # it exited meanwhile
            continue
