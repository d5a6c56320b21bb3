"""Shared test fixtures and the rule for system-package tests.

Tests that need chromium, Xvfb, xdotool or adb run in CI and never skip there. Outside CI (``CI``
unset) they skip with a message that says what to install.
"""

from __future__ import annotations

import os
import shutil

import pytest

SYSTEM_TOOLS = {
    "chromium": ("chromium", "chromium"),
    "xvfb": ("Xvfb", "xvfb"),
    "xdotool": ("xdotool", "xdotool"),
    "adb": ("adb", "adb"),
}


def require_tool(name: str) -> str:
    """Return the tool's path; outside CI skip when it is missing, in CI fail loudly."""
    command, package = SYSTEM_TOOLS[name]
    path = shutil.which(command) or (
        "/usr/bin/chromium" if name == "chromium" and os.path.exists("/usr/bin/chromium") else None
    )
    if path:
        return path
    message = f"{command} is missing: install it with `apt-get install {package}` (or `make test`)"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run this test, but {message}")
    pytest.skip(message)  # only outside CI: under CI=true the line above fails instead
