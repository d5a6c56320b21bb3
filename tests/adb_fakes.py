"""An AndroidEnv on a fake adb device that records every shell command (no adb server needed).

``FakeAdbDevice(fail=...)`` fails the commands its ``fail`` picks: ``fail(command)`` returns None
(run it), an exception (raised, as adbutils raises when the device is gone) or
``(exit_code, output)`` (the command ran and failed).
"""

from __future__ import annotations

import base64
import re
import shlex
from types import SimpleNamespace
from typing import Any, Callable

from PIL import Image

from envs.android import ADB_KEYBOARD, AndroidEnv, ScreenInfo
from envs.base import Env, SettleConfig

LATIN_IME = "com.android.inputmethod/.LatinIME"
HOME_SCREEN = (
    '<?xml version="1.0"?><hierarchy rotation="0"><node index="0" text="" resource-id="" '
    'class="android.widget.FrameLayout" package="launcher" content-desc="" clickable="false" '
    'focused="false" password="false" bounds="[0,0][1080,2400]"></node></hierarchy>')


def ui_node(bounds, *children, text="", desc="", clickable=False, focused=False,
            password=False, class_name="android.view.View"):
    """One uiautomator ``<node>`` (bounds: x1, y1, x2, y2) holding ``children``."""
    x1, y1, x2, y2 = bounds
    flags = {"clickable": clickable, "focused": focused, "password": password}
    return (f'<node index="0" text="{text}" resource-id="" class="{class_name}" '
            f'package="com.example.bank" content-desc="{desc}" '
            + "".join(f'{name}="{str(value).lower()}" ' for name, value in flags.items()) +
            f'bounds="[{x1},{y1}][{x2},{y2}]">{"".join(children)}</node>')


class FakeAdbDevice:
    def __init__(self, packages: tuple[str, ...] = (), adb_keyboard: bool = True,
                 fail: Callable[[str], Any] = lambda command: None) -> None:
        self.commands: list[str] = []
        self.packages = list(packages)
        self.adb_keyboard = adb_keyboard
        self.fail = fail
        self.rotation = 0  # dumpsys display's orientation: 1 is landscape
        #: The active keyboard, as `settings get secure default_input_method` reads it and
        #: `ime set` writes it; None: a device whose `settings` answers no id.
        self.keyboard: str | None = LATIN_IME

    def _answer(self, command: str) -> SimpleNamespace:
        self.commands.append(command)
        failure = self.fail(command)
        if isinstance(failure, BaseException):
            raise failure
        if failure is not None:
            return SimpleNamespace(returncode=failure[0], output=failure[1])
        output = ""
        if command == "pm list packages":
            output = "".join(f"package:{p}\n" for p in self.packages)
        elif command.startswith("monkey"):
            output = "Events injected: 1\n"
        elif command == "ime list -s":
            output = ADB_KEYBOARD if self.adb_keyboard else LATIN_IME
        elif command == "settings get secure default_input_method":
            output = f"{self.keyboard or 'null'}\n"
        elif command.startswith("ime set "):
            self.keyboard = shlex.split(command)[-1]
        elif command.startswith("uiautomator dump"):
            output = HOME_SCREEN
        elif command == "wm size":
            output = "Physical size: 1080x2400\n"
        elif command == "wm density":
            output = "Physical density: 420\n"
        elif command == "dumpsys display":
            output = f"  mViewports=[DisplayViewport{{orientation={self.rotation}}}]\n"
        return SimpleNamespace(returncode=0, output=output)

    def shell(self, command: str, timeout: float | None = None) -> str:
        return self._answer(command).output

    def shell2(self, command: str, timeout: float | None = None) -> SimpleNamespace:
        return self._answer(command)

    def typing_commands(self) -> list[str]:
        return [c for c in self.commands if c.startswith(("input text", "am broadcast"))]

    def typed(self) -> str:
        """What the typing commands carried, decoded, with each Enter key press as "\\n"."""
        typed = ""
        for command in self.commands:
            if command == "input keyevent KEYCODE_ENTER":
                typed += "\n"
                continue
            if not command.startswith(("input text", "am broadcast")):
                continue
            argument = shlex.split(command)[-1]
            if command.startswith("am broadcast"):
                typed += base64.b64decode(argument).decode("utf-8")
            else:
                typed += re.sub("%s", " ", argument)
        return typed


class DumpDevice(FakeAdbDevice):
    """A fake phone whose ``uiautomator dump`` shows ``nodes``."""

    def __init__(self, *nodes: str) -> None:
        super().__init__()
        self.dump = f'<?xml version="1.0"?><hierarchy rotation="0">{"".join(nodes)}</hierarchy>'

    def _answer(self, command):
        answer = super()._answer(command)
        if command.startswith("uiautomator dump"):
            answer.output = self.dump
        return answer


def fake_android_env(device: FakeAdbDevice) -> AndroidEnv:
    """An AndroidEnv on ``device``, skipping the connection ``AndroidEnv.__init__`` makes."""
    env = AndroidEnv.__new__(AndroidEnv)
    Env.__init__(env, SettleConfig(timeout_s=0.05, poll_interval_s=0.01))
    env.timeout_s = 1.0
    env.observe_ui = False
    env.serial = "fake-1"
    env.device = device
    env.screen = ScreenInfo(1080, 2400, 420, 0)
    env._raw_screencap = False
    env._adb_keyboard = None
    env._input_refused = None
    env.ime_switch_s = 0.0  # the fake device hears ADBKeyboard as soon as it is set
    env._replaced_keyboard = None
    env.still_frames = False
    env._last_frame = (None, None, b"")
    env._dump = None
    env.capture = lambda: Image.new("RGB", (1080, 2400))
    env.foreground = lambda: ("launcher", "Main")
    return env
