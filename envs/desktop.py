"""A desktop env on X11: mss captures the screen, pyautogui drives the mouse and keyboard.

pyautogui opens its X connection when it is first imported, from ``DISPLAY`` as it is at that
moment. So this module imports it lazily, after the env has set ``DISPLAY`` and ``XAUTHORITY``, and
when no env of this process is open it reconnects pyautogui to the new env's display (a bench runs
one episode after another in a process, each on its own private Xvfb). A second env on another
display while the first is open is refused with a clear error rather than silently driving the
first display.

pyautogui's failsafe stays on: when the pointer sits in a corner of the screen, the next action
stops the run on purpose (a human's emergency brake), as Ctrl-C does (a ``KeyboardInterrupt``
that says why), so it is not turned into a failed ActionResult. It is checked before each action; the
model's own actions may point at a corner (pyautogui alone would refuse), and one that ends
there leaves the pointer one pixel inside it, so only a human trips the brake.

Text goes through XTest (``envs.x11_typing``), which reads the display's own keymap for each
character and binds a character it lacks to a spare keycode: like ``xdotool type``, without its
race that drops characters on a busy client. pyautogui does not type text: it assumes a US
keyboard (on a German one its "/" came out as "7", and a character missing from the keymap,
such as "@" there, ended in an X error).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any

from PIL import Image
from Xlib.error import ConnectionClosedError as XlibConnectionClosed
from Xlib.error import XError as XlibError

from core.actions import Action
from envs import keys
from envs.base import (
    POINTER_DONE,
    Env,
    EnvError,
    SettleConfig,
    frames_equal,
    one_line_break_each,
    scroll_side,
    typed_done,
)
from envs.x11_typing import X11Typist
from envs.xauthority import for_python_xlib

#: Screenshot pixels per wheel click, to turn a scroll amount into clicks: chromium on X11
#: scrolls 120 px per click (tests/test_desktop_env.py sees it); other apps differ.
PIXELS_PER_WHEEL_CLICK = 120
#: Pointer steps in a drag, so apps that track mousemove see the motion.
DRAG_STEPS = 12
#: Gap between the two presses of a double click. X stamps events in whole milliseconds, and
#: chromium takes two presses with the same stamp for one native event, so back-to-back XTest
#: presses often arrive as two single clicks. xdotool's `click --repeat` leaves 12 ms for the same
#: reason; 40 ms stays far below every toolkit's double-click time (GTK and Qt 400 ms, chromium 500).
DOUBLE_CLICK_GAP_S = 0.04
#: Two separate click actions on one spot closer in time than a toolkit's double-click time
#: (chromium 500 ms, GTK and Qt 400 ms) would reach the app as a double click, so the second waits
#: this long after the first. "One spot": within the toolkits' double-click distance (GTK 5 px).
CLICK_SEPARATION_S = 0.6
SAME_SPOT_PX = 8
#: The most wheel clicks one scroll sends (about 30 screens of chromium): a model asking for
#: an absurd amount must not keep the runtime busy for hours.
MAX_WHEEL_CLICKS = 200
#: Why a run stops when a person parks the pointer in a screen corner (pyautogui's failsafe).
FAILSAFE_STOP = ("stopped by the fail-safe: the pointer is in a corner of the screen (move it "
                 "away to run again)")
#: The displays of this process's open envs, with how many envs each: pyautogui drives one.
_OPEN_DISPLAYS: Counter[str] = Counter()

#: Said before a run on an Xwayland display (``DesktopEnv.xwayland``).
XWAYLAND_WARNING = (
    "this X display is Xwayland, a Wayland session's: screenshots show the windows of Wayland "
    "programs black, and input reaches X programs only. Log in to an X11 session, or run X "
    "programs on a private display with --display new")


def serves_xwayland(display: Any) -> bool:
    """Whether the X server behind a python-xlib ``display`` is Xwayland, as the server itself
    says (a Wayland session's variables would also name an Xvfb started from it): from 21.1 it
    has an extension of that name, and before, its RandR outputs were named XWAYLAND0...."""
    if "XWAYLAND" in display.list_extensions():
        return True
    if not display.has_extension("RANDR"):
        return False
    resources = display.screen().root.xrandr_get_screen_resources()
    return any(display.xrandr_get_output_info(output, resources.config_timestamp).name
               .startswith("XWAYLAND") for output in resources.outputs)


@dataclass(frozen=True)
class ScreenMap:
    """Maps screenshot pixels of one monitor to pointer coordinates.

    ``left``/``top`` place the monitor in the (possibly multi-monitor) capture space; ``scale``
    is pointer units per captured pixel (below 1 on HiDPI setups where the pointer works in
    logical points and the capture in physical pixels).
    """

    left: int
    top: int
    scale_x: float
    scale_y: float

    def to_pointer(self, x: int, y: int) -> tuple[int, int]:
        return round((self.left + x) * self.scale_x), round((self.top + y) * self.scale_y)


class DesktopEnv(Env):
    """Capture and drive an X11 display; ``display=None`` uses this process's ``DISPLAY``."""

    name = "desktop"
    form_factor = "computer"

    def __init__(
        self,
        display: str | None = None,
        xauthority: str | None = None,
        monitor: int = 1,
        settle: SettleConfig | None = None,
    ) -> None:
        super().__init__(settle)
        self.display = display or os.environ.get("DISPLAY")
        if not self.display:
            raise EnvError("no X display: give --display :N (or --display new for a private "
                           "Xvfb), or set DISPLAY")
        screen = re.fullmatch(r"(.*:\d+)\.(\d+)", self.display)
        if screen and int(screen.group(2)):
            # XTest moves the pointer on the screen it is on, not the one captured: every click
            # went to screen 0.
            raise EnvError(f"display {self.display} is X screen {int(screen.group(2))} of "
                           f"{screen.group(1)}, and the desktop env drives a display's screen 0 "
                           f"only; give {screen.group(1)}.0, or run the programs on that screen")
        self.xauthority = xauthority or os.environ.get("XAUTHORITY")
        # The connections made through python-xlib: pyautogui's, the typist's.
        with for_python_xlib(self.xauthority, self.display):
            self._gui = self._pyautogui()
            try:  # what failed to open is let go, and the display is free again for another env
                self._connect(monitor)
            except BaseException:
                self.close()
                raise

    def _connect(self, monitor: int) -> None:
        """The screenshots' and the typist's connections to the display, and where ``monitor``
        lies on it."""
        import mss

        try:
            self._mss = mss.MSS(display=self.display)
            monitors = self._mss.monitors
        except Exception as exc:  # noqa: BLE001 - mss raises several kinds when X is unreachable
            raise EnvError(f"cannot open X display {self.display} for screenshots: {exc}") \
                from exc
        if monitor == 1 and len(monitors) == 1:
            monitor = 0  # a server without RandR lists the whole screen alone: that is the one
        if not 0 <= monitor < len(monitors):
            raise EnvError(
                f"monitor {monitor} does not exist; this display has 0..{len(monitors) - 1}"
            )
        self.monitor = dict(monitors[monitor])
        # HiDPI: the pointer's idea of the screen size can differ from the captured pixels.
        everything = monitors[0]
        pointer_w, pointer_h = self._gui.size()
        self.screen_map = ScreenMap(
            left=self.monitor["left"] - everything["left"],
            top=self.monitor["top"] - everything["top"],
            scale_x=pointer_w / everything["width"],
            scale_y=pointer_h / everything["height"],
        )
        self._typist = X11Typist(self.display)
        #: Whether the display is Xwayland's, where a run is told what it cannot do.
        self.xwayland = serves_xwayland(self._gui._pyautogui_x11._display)

    def _pyautogui(self) -> Any:
        """Import pyautogui bound to this env's display, or refuse if an open env of this process
        holds it on another display."""
        free = not +_OPEN_DISPLAYS
        if free:  # nobody drives it: (re)connect it to this display
            os.environ["DISPLAY"] = self.display
        imported = "pyautogui" in sys.modules
        try:
            import pyautogui
            from pyautogui import _pyautogui_x11

            if free and imported:
                # Its X backend connects when its module runs: run it again for this display (the
                # one it knew may be gone, and a new Xvfb may reuse its number).
                with contextlib.suppress(Exception):
                    _pyautogui_x11._display.close()
                importlib.reload(_pyautogui_x11)
        except Exception as exc:  # noqa: BLE001 - Xlib raises many kinds when X is unreachable
            raise EnvError(f"cannot open X display {self.display} for pyautogui: {exc}") from exc
        bound = _pyautogui_x11._display.get_display_name()
        if bound != self.display:
            raise EnvError(
                f"pyautogui is already bound to display {bound} in this process and cannot "
                f"switch to {self.display} while that env is open; close it first"
            )
        if free:
            # pyautogui lists the screen's corners once, at import, from the display it met
            # first: list this display's, so the failsafe watches the right corners.
            right, bottom = pyautogui.size()
            pyautogui.FAILSAFE_POINTS[:] = [(0, 0), (0, bottom - 1), (right - 1, 0),
                                            (right - 1, bottom - 1)]
        _OPEN_DISPLAYS[self.display] += 1
        self._holds_pyautogui = True
        return pyautogui

    # -- Env --------------------------------------------------------------------------------
    def capture(self) -> Image.Image:
        try:
            shot = self._mss.grab(self.monitor)
        except Exception as exc:  # noqa: BLE001 - mss raises several kinds when X is gone
            raise self._x_failed("capture", exc) from None
        return Image.frombytes("RGB", shot.size, shot.bgra, "raw", "BGRX")

    def extras(self) -> dict[str, Any]:
        return {"display": self.display, "monitor": self.monitor}

    def close(self) -> None:
        if getattr(self, "_holds_pyautogui", False):
            _OPEN_DISPLAYS[self.display] -= 1
            self._holds_pyautogui = False
        mss_instance, self._mss = getattr(self, "_mss", None), None
        typist, self._typist = getattr(self, "_typist", None), None
        for closer in (mss_instance, typist):
            if closer is not None:
                with contextlib.suppress(Exception):  # the X server may be gone already
                    closer.close()

    def _execute(self, action: Action) -> str:
        gui = self._gui
        try:
            gui.failSafeCheck()  # a human's pointer in a corner stops the run before the model acts
        except gui.FailSafeException:
            # The run stops as Ctrl-C stops it ("interrupted", the trajectory finished).
            raise KeyboardInterrupt(FAILSAFE_STOP) from None
        except (XlibError, XlibConnectionClosed, OSError) as exc:
            raise self._x_failed(action.kind, exc) from None
        gui.FAILSAFE = False  # pyautogui refuses to act on a corner, where the model may point
        try:
            message = self._perform(action)
            x, y = gui.position()
            if (x, y) in gui.FAILSAFE_POINTS:  # one pixel inside, so only a human trips it
                gui.moveTo(x + 1 if x == 0 else x - 1, y + 1 if y == 0 else y - 1, _pause=False)
        except EnvError:
            raise  # refused before pressing, or stopped between pieces of text: nothing is held
        except BaseException as exc:  # Ctrl-C or an X error midway
            self._let_go()
            if isinstance(exc, (XlibError, XlibConnectionClosed, OSError)):
                raise self._x_failed(action.kind, exc) from None
            raise
        finally:
            gui.FAILSAFE = True
        return message

    def _let_go(self) -> None:
        """Release the buttons and keys an action stopped midway may hold (a drag's button,
        typing's Shift): XTest's presses stay down on the display until released, and releasing
        one that is not down does nothing."""
        with contextlib.suppress(Exception):  # the X server may be gone
            for button in ("left", "right"):
                self._gui.mouseUp(button=button, _pause=False)
        with contextlib.suppress(Exception):
            self._typist.release_all()

    def _separate_from_last_click(self, x: int, y: int) -> None:
        last = getattr(self, "_last_click", None)
        if last is not None and abs(x - last[1]) <= SAME_SPOT_PX and abs(y - last[2]) <= SAME_SPOT_PX:
            wait = last[0] + CLICK_SEPARATION_S - time.monotonic()
            if wait > 0:
                time.sleep(wait)

    def _x_failed(self, what: str, exc: BaseException) -> EnvError:
        return EnvError(f"{what} failed: the X display {self.display} is gone or broken "
                        f"({type(exc).__name__}: {exc}); was the X server stopped?")

    def _perform(self, action: Action) -> str:
        gui = self._gui
        kind = action.kind
        if kind in ("click", "double_click", "right_click", "move"):
            x, y = self.screen_map.to_pointer(action.x, action.y)
            if kind == "move":
                gui.moveTo(x, y, _pause=False)
            else:
                self._separate_from_last_click(x, y)
                gui.click(
                    x, y,
                    clicks=2 if kind == "double_click" else 1,
                    interval=DOUBLE_CLICK_GAP_S if kind == "double_click" else 0.0,
                    button="right" if kind == "right_click" else "left",
                    _pause=False,
                )
            if kind != "move":
                self._last_click = (time.monotonic(), x, y)
            return POINTER_DONE[kind]
        if kind == "drag":
            return self._drag(action)
        if kind == "scroll":
            return self._scroll(action)
        if kind == "type":
            return self._type(action.text)
        if kind == "key" and len(action.key) == 1 and action.key != " ":
            # One character is that character, typed: pyautogui would refuse "A", turn "<" into
            # ">" (it presses Shift with "<", and Xvfb's first "<" key is "< >"), and has no key
            # at all for "é".
            self._type(action.key)
            return f"pressed {action.key}"
        if kind in ("key", "hotkey"):
            names = [action.key] if kind == "key" else action.keys
            # In a combination a letter names its key: ctrl+A is ctrl+a, as in the browser env.
            names = [k.lower() if len(k) == 1 and k.isupper() else k for k in names]
            try:
                mapped = [keys.backend_key(k, keys.PYAUTOGUI) for k in names]
            except ValueError as exc:
                raise EnvError(str(exc)) from None
            _refuse_control_characters("".join(k for k in mapped if len(k) == 1))
            unknown = [k for k in mapped if len(k) > 1 and k not in gui.KEYBOARD_KEYS]
            if unknown:
                raise EnvError(f"pyautogui cannot press {unknown}")
            # A key this display's keymap lacks (say, no Super key for "meta") has keycode 0 in
            # pyautogui, whose press is an X error that python-xlib turns into an AttributeError.
            codes = gui.platformModule.keyboardMapping
            absent = [k for k, m in zip(names, mapped) if len(m) > 1 and not codes.get(m)]
            if absent:
                raise EnvError(f"the keyboard of X display {self.display} has no key for "
                               f"{', '.join(absent)}")
            self._press_together(mapped)
            return "pressed " + "+".join(mapped)
        raise EnvError(f"the desktop env cannot perform '{kind}'")  # guarded by action_kinds

    # -- actions ----------------------------------------------------------------------------
    def _press_together(self, names: list[str]) -> None:
        """Press the keys in order and release them in reverse. A character goes through the
        typist's keymap: pyautogui presses Shift with "<" (which Xvfb's "< >" key turns into
        ">") and has no key for "é"."""
        held: list[str] = []
        try:
            for name in names:
                if len(name) == 1:  # the typist releases its own keys if stopped midway
                    self._typist.hold(name, press=True)
                    held.append(name)
                else:  # counted before the press: one sent and then stopped is released too
                    held.append(name)
                    self._gui.keyDown(name, _pause=False)
        finally:
            for name in reversed(held):
                if len(name) == 1:
                    self._typist.hold(name, press=False)
                else:
                    self._gui.keyUp(name, _pause=False)

    def _drag(self, action: Action) -> str:
        gui = self._gui
        x1, y1 = self.screen_map.to_pointer(action.x, action.y)
        x2, y2 = self.screen_map.to_pointer(action.x2, action.y2)
        # Its press is a press like a click's: right after a click on its start it would be
        # the second of a double click (a selection by words, not by characters).
        self._separate_from_last_click(x1, y1)
        gui.moveTo(x1, y1, _pause=False)
        gui.mouseDown(_pause=False)
        for step in range(1, DRAG_STEPS + 1):
            t = step / DRAG_STEPS
            gui.moveTo(round(x1 + (x2 - x1) * t), round(y1 + (y2 - y1) * t), _pause=False)
        gui.mouseUp(_pause=False)
        self._last_click = (time.monotonic(), x1, y1)
        return POINTER_DONE["drag"]

    def _scroll(self, action: Action) -> str:
        width, height = self.monitor["width"], self.monitor["height"]
        x, y = (width // 2, height // 2) if action.x is None else (action.x, action.y)
        px, py = self.screen_map.to_pointer(x, y)
        amount = min(action.amount or scroll_side(action.direction, width, height) // 2,
                     MAX_WHEEL_CLICKS * PIXELS_PER_WHEEL_CLICK)
        clicks = max(1, round(amount / PIXELS_PER_WHEEL_CLICK))
        gui = self._gui
        gui.moveTo(px, py, _pause=False)
        if action.direction in ("up", "down"):
            # pyautogui: positive scrolls up (wheel button 4).
            gui.scroll(clicks if action.direction == "up" else -clicks, _pause=False)
        else:
            gui.hscroll(clicks if action.direction == "right" else -clicks, _pause=False)
        return f"scrolled {action.direction} by {clicks} wheel clicks"

    def _type(self, text: str) -> str:
        text = one_line_break_each(text)  # "\r\n" is one Return, as is a lone "\r"
        _refuse_control_characters(text)
        # Not pyautogui's write, even for ASCII: it presses Shift by a US keyboard's rules, so on
        # another layout ("/" is Shift+7 on a German one) it typed other characters.
        chunks = self._typist.chunks(text)
        typed = 0
        for index, chunk in enumerate(chunks):
            before = self.capture()
            self._typist.type(chunk)
            typed += len(chunk)
            # The next piece rebinds the keycodes this one used: it waits until the client has
            # drawn this piece (the screen changed, then settled), so it has read every key.
            # Rebinding under a client that has not would change what its unread keys mean.
            if index + 1 < len(chunks) and not self._redrawn(before):
                # Counts only: the text may hold a secret's value.
                raise EnvError(
                    f"typed {typed} of {len(text)} characters, then stopped: the screen did not "
                    f"change within {self.settle.timeout_s:g}s, and the rest needs the keys of "
                    "the last ones rebound, which the app may not have read yet")
        return typed_done(text)

    def _redrawn(self, before: Image.Image) -> bool:
        deadline = time.monotonic() + self.settle.timeout_s
        while frames_equal(before, self.capture()):
            if time.monotonic() >= deadline:
                return False
            time.sleep(self.settle.poll_interval_s)
        self.observe()
        return True


def _refuse_control_characters(chars: str) -> None:
    """X apps take a control character's keysym (but for Return's and Tab's) for no key at all:
    typed or pressed in a combination, it is refused, not dropped while the env says it was
    pressed."""
    control = next((c for c in chars if unicodedata.category(c) == "Cc" and c not in "\n\r\t"),
                   None)
    if control is not None:
        raise EnvError(f"the desktop cannot type the control character U+{ord(control):04X}; "
                       "name the key instead (esc, backspace, delete...)")
