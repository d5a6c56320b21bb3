"""The loopback socket the phone's tools talk to, and the real shell that runs them.

Only processes that know the phone's token (its shell children get it in their environment) are
served, so other local users cannot drive the phone.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import sys
from pathlib import Path

from envs.virtual_phone.shell_commands import Result, ShellCommands

TOOLS = ("input", "screencap", "wm", "am", "monkey", "pm", "dumpsys", "getprop", "ime",
         "uiautomator", "vphone")
_TOOL_SOURCE = Path(__file__).with_name("tool_client.py")


def install_tools(bin_dir: Path) -> None:
    """Write the tool script once, with this interpreter in its #! line, under every tool name."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "vphone-tool"
    script.write_text(f"#!{sys.executable} -S\n" + _TOOL_SOURCE.read_text())
    script.chmod(0o755)
    for name in TOOLS:
        (bin_dir / name).symlink_to(script.name)


class ToolServer:
    def __init__(self, commands: ShellCommands, token: str) -> None:
        self.commands, self.token = commands, token
        self._server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=1 << 20)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = json.loads(await reader.readline())
            if not hmac.compare_digest(str(request.get("token", "")), self.token):
                result = Result(1, b"", b"permission denied\n")
            else:
                result = await self.commands.run([str(a) for a in request["argv"]])
        except (ValueError, KeyError, TypeError) as exc:
            result = Result(1, b"", f"bad request: {exc}\n".encode())
        except Exception as exc:  # noqa: BLE001 - a tool must get an answer, never hang
            result = Result(1, b"", f"{type(exc).__name__}: {exc}\n".encode())
        header = {"code": result.code, "file": result.file,
                  "lengths": [len(result.stdout), len(result.stderr), len(result.message)]}
        with contextlib.suppress(ConnectionError):
            writer.write(json.dumps(header).encode() + b"\n")
            writer.write(result.stdout + result.stderr + result.message)
            await writer.drain()
        writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()


def shell_environment(bin_dir: Path, home: Path, port: int, token: str) -> dict[str, str]:
    """What the phone's ``/bin/sh -c`` sees: its tools first on PATH, a scratch HOME."""
    return {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": str(home),
        "TMPDIR": str(home),
        "LANG": "C.UTF-8",
        "EXTERNAL_STORAGE": str(home),
        "VPHONE_TOOL_PORT": str(port),
        "VPHONE_TOKEN": token,
    }
