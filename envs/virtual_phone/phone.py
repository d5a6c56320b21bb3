"""VirtualPhone: the whole phone (ADB endpoint, shell, tools, screen, apps) on one event loop.

Everything runs on a private asyncio loop in a background thread, so Playwright's page is only
ever touched from that one thread. Use it as a context manager::

    with VirtualPhone(port=0) as phone:      # port 0 picks a free port
        print(phone.serial)                  # "127.0.0.1:PORT", for `adb connect`
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from envs import still_frames
from envs.temp_folders import TempFolder
from envs.virtual_phone.catalog import APPS_DIR, load_apps
from envs.virtual_phone.display import PhoneDisplay
from envs.virtual_phone.inline_shell import InlineShell
from envs.virtual_phone.protocol import MAX_PAYLOAD
from envs.virtual_phone.shell_commands import DENSITY, ShellCommands
from envs.virtual_phone.tool_server import TOOLS, ToolServer, install_tools, shell_environment
from envs.virtual_phone.transport import AdbServer

T = TypeVar("T")


def device_properties(port: int) -> dict[str, str]:
    return {
        "ro.product.name": "vphone",
        "ro.product.model": "vlagent_virtual_phone",
        "ro.product.device": "vphone",
        "ro.product.manufacturer": "vlagent",
        "ro.product.brand": "vlagent",
        "ro.build.version.release": "14",
        "ro.build.version.sdk": "34",
        "ro.serialno": f"vphone-{port}",
        "ro.sf.lcd_density": str(DENSITY),
        # AndroidEnv's cue to observe with one `vphone frame` instead of comparing screencaps.
        still_frames.PROPERTY: "1",
    }


class VirtualPhone:
    """A phone that ``adb connect 127.0.0.1:PORT`` accepts; stop it with ``stop()``."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", adb_keyboard: bool = True,
                 apps_dir: Path = APPS_DIR, start_timeout_s: float = 60.0) -> None:
        self.host, self.port = host, port
        self.adb_keyboard = adb_keyboard
        self.apps_dir = apps_dir
        self.start_timeout_s = start_timeout_s
        self.commands: ShellCommands | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._main_task: asyncio.Task | None = None
        #: Set by ``stop``: a phone told to stop while it still starts ends once started (its
        #: loop and ``_stop`` may not exist yet when ``stop`` runs).
        self._stopping = threading.Event()
        self._adb: AdbServer | None = None

    @property
    def serial(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Started and not stopped: told to stop, or gone offline with its chromium."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def connections(self) -> int:
        """How many adb hosts are connected right now."""
        return len(self._adb.transports) if self._adb else 0

    def start(self) -> "VirtualPhone":
        # A phone stopped before (or before it ever started) starts afresh.
        self._stopping.clear()
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name=f"vphone-{self.port}", daemon=True)
        self._thread.start()
        try:
            if not self._ready.wait(self.start_timeout_s):
                raise RuntimeError(f"the virtual phone did not start within "
                                   f"{self.start_timeout_s}s")
        except BaseException:  # that, or Ctrl-C (a bench worker's stop) while chromium starts
            self.stop()
            raise
        if self._error is not None:
            self._thread.join(10)
            raise RuntimeError(f"the virtual phone failed to start: {self._error}") from self._error
        return self

    def stop(self) -> None:
        """Drop every adb connection, close the browser and end the thread (one still starting
        ends once started). Safe to call twice."""
        self._stopping.set()
        loop, main = self._loop, self._main_task
        if loop is not None and main is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # its loop closed just now
                if self._ready.is_set():
                    loop.call_soon_threadsafe(self._stop.set)
                else:
                    # Still starting: its start is cancelled, not waited for. A terminal's
                    # Ctrl-C also ends Playwright's driver, whose answer then never comes.
                    loop.call_soon_threadsafe(main.cancel)
        if self._thread is not None:
            self._thread.join(30)

    def call(self, fn: Callable[[ShellCommands], Awaitable[T]], timeout_s: float = 30.0) -> T:
        """Run ``fn(commands)`` on the phone's loop from any thread and return its result."""
        if self._loop is None or self.commands is None:
            raise RuntimeError("the virtual phone is not running")
        commands = self.commands
        return asyncio.run_coroutine_threadsafe(fn(commands), self._loop).result(timeout_s)

    def foreground(self) -> str:
        """The package in front (read on the phone's loop, where the page lives)."""
        return self.call(_foreground)

    def __enter__(self) -> "VirtualPhone":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the phone's thread ---------------------------------------------------------------------
    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._main_task = self._loop.create_task(self._main())
            self._loop.run_until_complete(self._main_task)
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
        finally:
            self._ready.set()
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        home_folder = TempFolder("vphone-")
        home = Path(home_folder.name)
        display = PhoneDisplay(self.apps_dir)
        tools: ToolServer | None = None
        try:
            apps = load_apps(self.apps_dir)
            token = secrets.token_hex(16)
            install_tools(home / "bin")
            (home / "sdcard").mkdir()
            self.commands = commands = ShellCommands(display, apps, {},
                                                     adb_keyboard=self.adb_keyboard)
            await display.start(commands.on_state, commands.open_url)
            # A phone whose screen is gone goes offline, as a device that crashed: an adb
            # host then sees it leave, rather than every command failing one by one.
            display.on_crash(self._stop.set)
            await commands.home()
            tools = ToolServer(commands, token)
            tools_port = await tools.start()
            env = shell_environment(home / "bin", home / "sdcard", tools_port, token)

            async def spawn(command: str) -> asyncio.subprocess.Process:
                return await asyncio.create_subprocess_exec(
                    "/bin/sh", "-c", command, stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                    env=env, cwd=home / "sdcard", limit=4 * MAX_PAYLOAD,
                    start_new_session=True,
                )

            inline = InlineShell(commands, TOOLS, home / "sdcard")
            self._adb = AdbServer(spawn, {}, features=[], inline=inline.run)
            self.port = await self._adb.start(self.host, self.port)
            commands.properties.update(device_properties(self.port))
            self._adb.properties.update(
                {k: commands.properties[k] for k in
                 ("ro.product.name", "ro.product.model", "ro.product.device")}
            )
            self._ready.set()
            if not self._stopping.is_set():
                await self._stop.wait()
        finally:
            if self._adb is not None:
                await self._adb.stop()
            if tools is not None:
                await tools.stop()
            await display.close()
            home_folder.cleanup()


async def _foreground(commands: ShellCommands) -> str:
    return commands.current_app().package
