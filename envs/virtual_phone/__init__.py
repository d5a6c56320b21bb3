"""A virtual Android phone that the real adb server accepts (``adb connect 127.0.0.1:PORT``).

It speaks the ADB transport protocol (transport.py), runs shell commands under a real
``/bin/sh -c`` with its own tools on PATH (tool_client.py, tool_server.py, shell_commands.py), and shows bundled
web apps (envs/virtual_phone/apps) in a headless chromium page at 1080x2400 (display.py).
"""

from __future__ import annotations

from typing import Any

__all__ = ["VirtualPhone"]


def __getattr__(name: str) -> Any:
    # On first use: the app catalog (catalog.py), which phone tasks read for their checks,
    # needs none of the phone's servers.
    if name == "VirtualPhone":
        from envs.virtual_phone.phone import VirtualPhone

        return VirtualPhone
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
