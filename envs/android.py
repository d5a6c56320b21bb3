"""An Android env on adbutils: a real phone, an emulator, or the virtual phone.

Screenshots are raw ``screencap`` over ``exec:`` (a 12- or 16-byte header plus RGBA, converted on
the host), with ``screencap -p`` as the fallback; the warning a phone with two displays writes
before the frame is skipped. Actions become ``input`` commands.

Typing never lets the device shell see the model's text unquoted: ASCII that ``input text`` can
carry goes through it, shell-quoted; anything else (non-ASCII, a literal ``%s``, tabs) goes
base64-encoded through the ADBKeyboard IME's broadcast, and when that IME is missing the action
fails with a clear error instead of typing something else. A line break is an Enter key press.

A real phone's screen goes off after its timeout while a model thinks: the env turns it on
before it looks, and refuses an action chosen before it went off (``_woke``).
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import re
import shlex
import socket
import struct
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Literal, TypeVar

from PIL import Image

from core.actions import Action
from envs import keys
from envs import still_frames as still_frames_protocol
from envs.android_keycodes import ADB_KEY_NAMES
from envs.base import (
    POINTER_DONE,
    AppTarget,
    ElementInfo,
    Env,
    EnvError,
    EnvGone,
    Observation,
    SettleConfig,
    conceal,
    one_line_break_each,
    scroll_side,
    settle_extras,
    typed_done,
)
from envs.input_text import input_text_argument
from envs.ui_tree import UiNode, UiTreeError, parse_hierarchy

ADB_KEYBOARD = "com.android.adbkeyboard/.AdbIME"
#: Waits between tries of an adb call that did not reach the device (about 15 s in all): an adb
#: server that restarts, and a device that comes back to it, are back within that.
ADB_RETRY_DELAYS_S = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
#: How long ``uiautomator dump`` waits for a screen that keeps changing (a video, a spinner) to
#: be idle before it gives up ("ERROR: could not get idle state."): adb is given that long too.
UI_IDLE_WAIT_S = 10.0
#: What ``input`` prints where the phone lets no adb shell inject events (Xiaomi, Redmi and POCO
#: phones, until "USB debugging (Security settings)" is on in their developer options).
INPUT_REFUSED = "INJECT_EVENTS permission"
#: How long the env waits after making ADBKeyboard the active keyboard before its first text:
#: ``ime set`` answers before the phone has bound the IME's service (which registers the
#: receiver of ADBKeyboard's broadcasts), and a broadcast sent sooner is lost without an error.
IME_SWITCH_S = 1.0
#: Characters per ``input text`` call (a piece of text without a literal "%s" has none either).
INPUT_TEXT_CHUNK = 200

ATTACH_HELP = (
    "attach a phone with USB debugging enabled, or `adb connect HOST:PORT` a networked one, "
    "or start the virtual phone: `python agent_cli.py device virtual --port 5555` and then "
    "`adb connect 127.0.0.1:5555`"
)

#: Phone keys first (a model saying "home" on a phone means the Home button), then the
#: canonical key names of envs.keys.
PHONE_KEYCODES: dict[str, str] = {
    "home": "KEYCODE_HOME", "back": "KEYCODE_BACK", "menu": "KEYCODE_MENU",
    "power": "KEYCODE_POWER", "volume_up": "KEYCODE_VOLUME_UP",
    "volume_down": "KEYCODE_VOLUME_DOWN", "app_switch": "KEYCODE_APP_SWITCH",
    "recent": "KEYCODE_APP_SWITCH", "search": "KEYCODE_SEARCH", "camera": "KEYCODE_CAMERA",
}
CANONICAL_KEYCODES: dict[str, str] = {
    "enter": "KEYCODE_ENTER", "backspace": "KEYCODE_DEL", "delete": "KEYCODE_FORWARD_DEL",
    "tab": "KEYCODE_TAB", "space": "KEYCODE_SPACE", "esc": "KEYCODE_ESCAPE",
    "up": "KEYCODE_DPAD_UP", "down": "KEYCODE_DPAD_DOWN", "left": "KEYCODE_DPAD_LEFT",
    "right": "KEYCODE_DPAD_RIGHT", "end": "KEYCODE_MOVE_END", "pageup": "KEYCODE_PAGE_UP",
    "pagedown": "KEYCODE_PAGE_DOWN", "insert": "KEYCODE_INSERT", "capslock": "KEYCODE_CAPS_LOCK",
}

T = TypeVar("T")

_FOCUS = re.compile(r"mCurrentFocus=(null|Window\{[^}]*\})")
_COMPONENT = re.compile(r"\s([\w.]+)/([^\s}]+)\}$")
#: The title of a focused PopupWindow (a dropdown's list, an overflow menu): the app's own.
_APP_POPUP = re.compile(r"\sPopupWindow:[0-9a-f]+\}$")
_FOCUSED_APP = re.compile(r"mFocusedApp=.*?\s([\w.]+)/([^\s}]+)")
_DISPLAY = re.compile(r"Display: mDisplayId=(\d+)")
#: ``dumpsys power``'s state of the screen: Awake, or Asleep, Dozing or Dreaming (off).
_WAKEFULNESS = re.compile(r"mWakefulness=(\w+)")
#: How far into ``screencap``'s output its warnings may reach.
WARNINGS_SPAN = 2048
#: A component's name, PACKAGE/CLASS: an input method's id, an activity ("null" and error
#: messages are none).
_COMPONENT_NAME = re.compile(r"[\w.]+/[\w.$]+")


#: What to do about a device the adb server lists but cannot use, by its state.
_STATE_ADVICE = {
    "unauthorized": "accept \"Allow USB debugging?\" on its screen",
    # adbutils keeps the first word of "no permissions (missing udev rules? ...)".
    "no": "this user may not open its USB device: add a udev rule for it, or join the plugdev "
          "group",
    "offline": "unplug it and plug it in again, or toggle USB debugging",
}


def device_state(state: str) -> str:
    """A device's state as adb means it: adbutils cuts "no permissions" to "no"."""
    return "no permissions" if state == "no" else state


def _not_ready(info: Any) -> str:
    advice = _STATE_ADVICE.get(info.state, "check `adb devices`")
    return f"{info.serial} is {device_state(info.state)} ({advice})"


def list_devices(client: Any) -> list[Any]:
    """``client.list(extended=True)``, refusing to start a server where none runs.

    adbutils would quietly start one on the default port, which is never what a user who named
    another server wants; the caller gets an OSError that names the server instead.
    """
    try:
        socket.create_connection((client.host, client.port), timeout=3).close()
    except OSError as exc:
        raise OSError(f"cannot reach the adb server at {client.host}:{client.port} "
                      f"({exc.strerror or exc})") from None
    try:
        return client.list(extended=True)
    except Exception as exc:  # noqa: BLE001 - adbutils raises several kinds here
        raise OSError(f"the adb server at {client.host}:{client.port} failed: {exc}") from None


def adb_client(host: str, port: int, timeout_s: float) -> Any:
    """An adbutils client of the adb server at ``host:port`` that never starts a server.

    adbutils runs ``adb start-server`` whenever it cannot reach the server: that starts a daemon
    on the default port (or $ANDROID_ADB_SERVER_PORT) with the user's HOME, not the server named
    here, and leaves it running. Here an unreachable server is adbutils' AdbConnectionError
    ("connect to adb server failed"), which ``AndroidEnv._call`` waits out or reports."""
    import adbutils

    class Connection(adbutils.AdbConnection):
        def _safe_connect(self) -> Any:
            return self._create_socket()

        def close(self) -> None:
            # adbutils sleeps 10 ms between its shutdown and close, on every command: the FIN
            # that tells the server we are done is sent by the shutdown alone. Its close then
            # finds the socket closed and skips the sleep.
            if not self.closed:
                with contextlib.suppress(OSError):
                    self.conn.shutdown(socket.SHUT_WR)
                self.conn.close()
            super().close()

    class Device(adbutils.AdbDevice):
        def open_transport(self, command: str | None = None, timeout: float | None = None
                           ) -> Any:
            if command is not None or self._transport_id or not self._serial:
                return super().open_transport(command, timeout)
            # adbutils asks the server's version first, on a connection of its own, before
            # every command (to attach with "host:tport:", from adb 41 on, whose transport id
            # it skips); "host:transport:" attaches on a server of any version, so no version is
            # needed (and none is kept that a server swapped for another adb would belie).
            connection = self._client.make_connection(timeout=timeout)
            try:
                connection.send_command(f"host:transport:{self._serial}")
                connection.check_okay()
            except BaseException:
                connection.close()
                raise
            return connection

    class Client(adbutils.AdbClient):
        def make_connection(self, timeout: float | None = None) -> Any:
            connection = Connection(self.host, self.port)
            connection.conn.settimeout(timeout or timeout_s)
            return connection

        def device(self, serial: str | None = None, transport_id: int | None = None) -> Any:
            return Device(self, serial=serial) if serial else \
                super().device(serial, transport_id)

    return Client(host=host, port=port, socket_timeout=timeout_s)


@dataclass(frozen=True)
class ScreenInfo:
    width: int
    height: int
    density: int
    rotation: int


DEFAULT_ADB_PORT = 5037
#: How long the element lookups reuse a UI dump (``AndroidEnv._looked_up_tree``).
DUMP_REUSE_S = 1.0


def adb_server_port() -> int:
    """The adb server's port as adb itself picks it: $ANDROID_ADB_SERVER_PORT, else 5037."""
    value = os.environ.get("ANDROID_ADB_SERVER_PORT", "").strip()
    if not value:
        return DEFAULT_ADB_PORT
    if not value.isdecimal() or not 0 < int(value) < 65536:
        raise EnvError(f"ANDROID_ADB_SERVER_PORT={value!r} is not a port; set it to a number "
                       "from 1 to 65535 or unset it")
    return int(value)


#: A scroll's finger goes down no nearer a screen edge than this share of the side (1/12: 200
#: px of 2400, 90 of 1080): a swipe that starts at an edge is the system's gesture, not the
#: app's scroll (the bottom's goes home, a side's goes back, the top's opens the shade).
EDGE_BAND = 12


def _inside(point: int, size: int) -> int:
    """``point`` moved out of the edge bands of a screen side of ``size`` pixels."""
    band = size // EDGE_BAND
    return min(max(point, band), size - 1 - band)


def _travel(start: int, delta: int, size: int) -> tuple[int, int]:
    """Where a finger moving by ``-delta`` from ``start`` goes down and comes up along a screen
    side of ``size`` pixels: down out of the edge bands (``_inside``), up on the screen, and at
    least a tenth of the side (or ``delta``) apart, the start moving back from an edge for it,
    so a scroll does not end as a tap."""
    first = _inside(start, size)
    last = min(max(first - delta, 1), size - 2)
    short = min(abs(delta), size // 10) - abs(last - first)
    if short > 0:
        first = _inside(first + (short if delta > 0 else -short), size)
    return first, last


class AndroidEnv(Env):
    """One Android device through the adb server at ``adb_host:adb_port``.

    ``serial`` picks the device (default: the only one that is ready). ``timeout_s`` bounds
    every adb call, so a device that goes away fails the next call within it; an adb server
    that goes away is waited for a while (``ADB_RETRY_DELAYS_S``), never started.
    ``screencap="png"`` skips the raw frames (for devices or links where PNG is faster).
    ``observe_ui=True`` adds the screen's accessibility tree to every observation. A device
    that tells when its screen is still (envs/still_frames.py: the virtual phone) is observed
    with one frame per observation instead of frames compared until two match;
    ``still_frames=False`` compares frames anyway.
    """

    name = "android"
    form_factor = "phone"
    ime_switch_s = IME_SWITCH_S

    def __init__(
        self,
        serial: str | None = None,
        adb_host: str = "127.0.0.1",
        adb_port: int | None = None,  # None: $ANDROID_ADB_SERVER_PORT, else 5037, as adb does
        timeout_s: float = 10.0,
        screencap: Literal["raw", "png"] = "raw",
        settle: SettleConfig | None = None,
        observe_ui: bool = False,
        still_frames: bool = True,
    ) -> None:
        super().__init__(settle)
        if screencap not in ("raw", "png"):
            raise ValueError(f"screencap must be 'raw' or 'png', not {screencap!r}")
        self.timeout_s = timeout_s
        adb_port = adb_server_port() if adb_port is None else adb_port
        self.observe_ui = observe_ui
        self._client = adb_client(adb_host, adb_port, timeout_s)
        self._server, self._adb_port = f"{adb_host}:{adb_port}", adb_port
        self.serial = self._pick_serial(serial, self._server)
        self.device = self._client.device(self.serial)
        self.screen = self._read_screen()
        # Raw until the device shows it cannot do it; PNG only when asked for.
        self._raw_screencap = screencap == "raw"
        self._adb_keyboard: bool | None = None  # checked on first need
        self._input_refused: str | None = None  # why the phone takes no input (INPUT_REFUSED)
        self._replaced_keyboard: str | None = None  # the keyboard ADBKeyboard took over from
        self.still_frames = still_frames and self.shell(
            f"getprop {shlex.quote(still_frames_protocol.PROPERTY)}").strip() == "1"
        #: The last still frame: its version, image and PNG.
        self._last_frame: tuple[str | None, Image.Image | None, bytes] = (None, None, b"")
        #: The last dump the element lookups read, and when (``_looked_up_tree``).
        self._dump: tuple[float, UiNode] | None = None

    # -- device -----------------------------------------------------------------------------
    def _pick_serial(self, serial: str | None, server: str) -> str:
        try:
            infos = list_devices(self._client)
        except (OSError, RuntimeError) as exc:
            # A plain start-server starts one on adb's default port.
            raise EnvError(f"{exc}; start it with `adb -P {self._adb_port} start-server`, then "
                           f"{ATTACH_HELP}") from None
        ready = [i.serial for i in infos if i.state == "device"]
        if serial is not None:
            if serial in ready:
                return serial
            listed = [i for i in infos if i.serial == serial]
            if listed:
                raise EnvError(f"device {_not_ready(listed[0])}, so it is not ready")
            attached = ", ".join(ready) or "none"
            raise EnvError(f"device {serial} is not attached (attached: {attached}); "
                           f"{ATTACH_HELP}")
        if not ready:
            if infos:  # attached, but none usable: say why rather than that none is there
                raise EnvError("no Android device is ready at the adb server at "
                               f"{server}: {'; '.join(map(_not_ready, infos))}")
            raise EnvError(f"no Android device is attached to the adb server at {server}; "
                           f"{ATTACH_HELP}")
        if len(ready) > 1:
            raise EnvError(f"several devices are attached ({', '.join(ready)}); "
                           "choose one with serial=... (`agent_cli.py run --device SERIAL`)")
        return ready[0]

    def _read_screen(self) -> ScreenInfo:
        size = self.shell("wm size")
        found = re.search(r"Override size: (\d+)x(\d+)", size) or re.search(
            r"Physical size: (\d+)x(\d+)", size)
        if not found:
            raise EnvError(f"unexpected `wm size` output from {self.serial}: {size!r}")
        said = self.shell("wm density")  # the user's "Display size" is the override
        density = re.search(r"Override density: (\d+)", said) or re.search(
            r"Physical density: (\d+)", said)
        turned = re.search(r"orientation=(\d)", self.shell("dumpsys display"))
        rotation = int(turned.group(1)) if turned else 0
        width, height = int(found.group(1)), int(found.group(2))
        if rotation % 2:  # `wm size` is the natural (portrait) size; frames come rotated
            width, height = height, width
        return ScreenInfo(width, height, int(density.group(1)) if density else 0, rotation)

    def _unreachable(self, what: str, exc: BaseException, hide: tuple[str, ...] = ()
                     ) -> EnvError:
        from adbutils import AdbTimeout

        reason = conceal(str(exc), hide) or type(exc).__name__
        if _server_down(exc):  # the device may be fine: the server that reaches it is gone
            port = self._adb_port
            return EnvGone(f"{what} failed: the adb server at {self._server} stopped "
                           f"({reason}); start it again with `adb -P {port} start-server`, "
                           f"then `adb -P {port} connect` a networked device")
        # A command that ran past adb's timeout (a dump on a busy screen) says nothing of the
        # device being gone: it is an error of that command alone.
        if isinstance(exc, (AdbTimeout, TimeoutError)):
            return EnvError(f"{what} failed: device {self.serial} did not answer in time "
                            f"({reason})")
        return EnvGone(f"{what} failed: device {self.serial} is not reachable ({reason}); was "
                       "it unplugged or stopped? check `adb devices`")

    def _call(self, what: str, fn: Callable[[], T], hide: tuple[str, ...] = ()) -> T:
        """Run one adb call. While the adb server is down or restarting (and then, until the
        device is attached to it again) the command never reaches the device, so it is retried
        with backoff. Any other failure (a device that went offline fails at once), or one
        that outlasts the retries, is an EnvError (its reason without the strings in ``hide``)."""
        restarting = False
        for delay in (*ADB_RETRY_DELAYS_S, None):
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - adbutils: AdbError, AdbTimeout, OSError
                restarting = restarting or _server_down(exc)
                if delay is None or not (_server_down(exc) or restarting and _unknown(exc)):
                    raise self._unreachable(what, exc, hide) from None
            time.sleep(delay)
        raise AssertionError("unreachable")

    def shell(self, command: str, busy_s: float = 0.0) -> str:
        """Run a device shell command (already quoted) and return its output; ``busy_s``: how
        long the command itself may take, on top of the time adb is given to answer."""
        return self._call(f"`{command[:60]}`",
                          lambda: self.device.shell(command, timeout=self.timeout_s + busy_s))

    def _run(self, command: str, what: str | None = None, hide: tuple[str, ...] = (),
             busy_s: float = 0.0) -> str:
        """Run a command that must succeed; a non-zero exit becomes an EnvError.

        ``what`` names the command in an error instead of the command itself, and the reason
        (adb's, or the command's output) is shown without the strings in ``hide``: typing
        passes both, so that no error quotes the typed text (it may hold a secret's value),
        plain or as the command encoded it. ``busy_s``: how long the command itself takes (a
        gesture answers when the finger lifts), on top of the time adb is given to answer."""
        what = what or f"`{command[:60]}`"
        timeout = self.timeout_s + busy_s
        result = self._call(what, lambda: self.device.shell2(command, timeout=timeout), hide)
        if INPUT_REFUSED in result.output:  # whatever the exit status: no event arrived
            self._input_refused = (
                f"{what} was refused on {self.serial}: the phone lets adb inject no input "
                "(INJECT_EVENTS); on a Xiaomi, Redmi or POCO phone turn on Developer options > "
                "USB debugging (Security settings), then start again")
            raise EnvError(self._input_refused)
        if result.returncode != 0:
            output = conceal(result.output.strip(), hide)
            raise EnvError(f"{what} failed on {self.serial} "
                           f"(exit {result.returncode}): {output[:300]}")
        return result.output

    def exec_out(self, command: str) -> bytes:
        """Binary-safe output of a command (the ``exec:`` service, as ``adb exec-out``)."""
        def run() -> bytes:
            with self.device.open_transport(timeout=self.timeout_s) as conn:
                conn.send_command("exec:" + command)
                conn.check_okay()
                return _read_to_end(conn.conn)

        return self._call(f"`{command}`", run)

    # -- Env --------------------------------------------------------------------------------
    def capture(self) -> Image.Image:
        if self._raw_screencap and (image := self._capture_raw()) is not None:
            return image
        return self.capture_png()

    def _capture_raw(self) -> Image.Image | None:
        """The raw frame as an image; None where this frame is to be taken as PNG."""
        data = _past_warnings(self.exec_out("screencap"), png=False)
        if len(data) >= 12:
            width, height, fmt = struct.unpack_from("<3I", data)
            header = len(data) - width * height * 4
            if fmt == 1 and header in (12, 16):
                return Image.frombuffer("RGBA", (width, height), data[header:], "raw", "RGBA",
                                        0, 1).convert("RGB")
            if fmt == 1 and header < 12:
                return None  # cut short on the way (a link hiccup): only this frame as PNG
        self._raw_screencap = False  # only RGBA_8888 is converted here: PNG from now on
        return None

    def capture_png(self) -> Image.Image:
        data = _past_warnings(self.exec_out("screencap -p"), png=True)
        try:
            return Image.open(io.BytesIO(data)).convert("RGB")
        except Exception as exc:  # noqa: BLE001 - PIL raises several kinds for bad data
            raise EnvError(f"screencap -p on {self.serial} gave no image: {data[:120]!r}") from exc

    def extras(self) -> dict[str, Any]:
        return self._extras(*self.foreground())

    def _extras(self, package: str | None, activity: str | None) -> dict[str, Any]:
        return {"serial": self.serial, "foreground": package, "activity": activity,
                "density": self.screen.density, "rotation": self.screen.rotation}

    def observe(self) -> Observation:
        if self._input_refused:  # no action can work: the episode ends with the reason
            raise EnvError(self._input_refused)
        self._dump = None  # a fresh look: the screen may have changed by itself
        woke = self._woke()
        observation = self._observe_still() if self.still_frames else super().observe()
        if woke:
            observation.extras["woke"] = True
        self.seen_size = observation.size
        if observation.size != (self.screen.width, self.screen.height):
            # The phone turned (an app asked for landscape): scrolls are placed and clamped on
            # the screen as it is now, and the extras say how it is turned.
            self.screen = self._read_screen()
            observation.extras.update(density=self.screen.density,
                                      rotation=self.screen.rotation)
        if self.observe_ui:
            observation.ui = self.ui_tree()
        return observation

    def _observe_still(self) -> Observation:
        """One round trip: the device waits until its screen is still and sends the frame (none
        when unchanged since the last one) with the foreground app."""
        start = time.monotonic()
        command = still_frames_protocol.frame_command(
            self._last_frame[0], round(self.settle.poll_interval_s * 1000),
            round(self.settle.timeout_s * 1000))
        data = self.exec_out(command)
        try:
            frame, png = still_frames_protocol.split_frame(data)
            image = _rgb(png) if png else self._last_frame[1]
        except Exception as exc:  # noqa: BLE001 - a bad header, or PIL's several kinds
            raise EnvError(f"`vphone frame` on {self.serial} gave no frame: {exc}") from None
        if image is None:
            raise EnvError(f"`vphone frame` on {self.serial} sent no frame and none came before")
        self._last_frame = (frame.version, image, png or self._last_frame[2])
        extras = settle_extras(frame.still, start)
        extras.update(self._extras(frame.package, frame.activity))
        return Observation(image=image, extras=extras, png=self._last_frame[2])

    def foreground(self) -> tuple[str | None, str | None]:
        """(package, activity) of the focused window, from ``dumpsys window``: display 0's,
        its last focus, since a section on the last ANR, kept for hours, comes first with the
        window state of then. A focused window of no app (the lock screen's NotificationShade or
        StatusBar, an "Application Not Responding" dialog) is (None, None), not the app behind
        it; with no window focused (between two), or an app's own popup (a dropdown, a menu),
        the focused app."""
        output = self.shell("dumpsys window")
        # Android 10+ keeps a focus per display: display 0's, which the screenshots show, in
        # its last block (an earlier one is the last ANR's). Before 10 the focus is global.
        blocks = [m.end() for m in _DISPLAY.finditer(output) if m.group(1) == "0"]
        if blocks:
            following = _DISPLAY.search(output, blocks[-1])
            block = output[blocks[-1]:following.start() if following else len(output)]
            if _FOCUS.search(block) or _FOCUSED_APP.search(block):
                output = block
        focus = _FOCUS.findall(output)
        if focus and focus[-1] != "null" and not _APP_POPUP.search(focus[-1]):
            component = _COMPONENT.search(focus[-1])
            return (component.group(1), component.group(2)) if component else (None, None)
        apps = _FOCUSED_APP.findall(output)
        return apps[-1] if apps else (None, None)

    def reset(self, prepare: Callable[[Env], None] | None = None) -> Observation:
        """With ``prepare`` (a task's start state), go to the home screen and run it; without,
        press nothing: a run without a task starts on the screen the phone shows. Then observe."""
        if prepare is not None:
            self._keyevent("KEYCODE_HOME")
        return super().reset(prepare)

    def _woke(self) -> bool:
        """Turn the screen on if it went off, and say whether it did. A phone sleeps after its
        screen timeout without a touch, which a model that thinks for long gives it: a
        screenshot is then black and a tap is lost. ``KEYCODE_WAKEUP`` does nothing to a screen
        that is on. The virtual phone's screen never goes off (its frames need no check)."""
        if self.still_frames or not self._asleep():
            return False
        self._keyevent("KEYCODE_WAKEUP")
        deadline = time.monotonic() + self.timeout_s
        while self._asleep():
            if time.monotonic() > deadline:
                raise EnvError(f"the screen of {self.serial} is off and did not come on after "
                               f"KEYCODE_WAKEUP in {self.timeout_s:g}s")
            time.sleep(0.1)
        return True

    def _asleep(self) -> bool:
        # A device whose dumpsys does not say counts as awake, as it did before this check.
        found = _WAKEFULNESS.search(self.shell("dumpsys power"))
        return found is not None and found.group(1) != "Awake"

    def _execute(self, action: Action) -> str:
        self._dump = None  # the screen is about to change
        if self._woke():
            # The model chose this action on a screen that has since gone off; after waking the
            # phone may show its lock screen instead, where the action would land elsewhere.
            raise EnvError(f"{action.kind} not done: the phone's screen had gone off; it is on "
                           "again now, so look at it before acting")
        kind = action.kind
        if kind == "tap":
            self._run(f"input tap {action.x} {action.y}")
            return POINTER_DONE[kind]
        if kind == "long_press":
            self._run(f"input swipe {action.x} {action.y} {action.x} {action.y} "
                      f"{action.duration_ms}", busy_s=action.duration_ms / 1000)
            return f"long-pressed for {action.duration_ms} ms"
        if kind == "swipe":
            self._run(f"input swipe {action.x} {action.y} {action.x2} {action.y2} "
                      f"{action.duration_ms}", busy_s=action.duration_ms / 1000)
            return POINTER_DONE[kind]
        if kind == "scroll":
            return self._scroll(action)
        if kind == "type":
            return self.type_text(action.text)
        if kind == "key":
            return self._key(action.key)
        if kind in ("home", "back", "enter"):
            self._keyevent(f"KEYCODE_{kind.upper()}")
            return f"pressed {kind}"
        if kind == "open_app":
            return self.open_app(action.app)
        raise EnvError(f"the android env cannot perform '{kind}'")  # guarded by action_kinds

    # -- actions ----------------------------------------------------------------------------
    def _keyevent(self, keycode: str) -> None:
        self._run(f"input keyevent {keycode}")

    def _scroll(self, action: Action) -> str:
        x1, y1, x2, y2 = self._scroll_swipe(action)
        self._run(f"input swipe {x1} {y1} {x2} {y2} 300")
        asked = self._scroll_amount(action)
        moved = abs(x2 - x1) + abs(y2 - y1)
        if moved >= asked:
            return f"scrolled {action.direction}"
        # A share, not pixels: the model's distances are in its own space (POINTER_DONE).
        return (f"scrolled {action.direction} {100 * moved // asked}% of the way asked: the "
                "screen's edge was nearer")

    def _scroll_swipe(self, action: Action) -> tuple[int, int, int, int]:
        """The swipe a scroll is: its finger moves against ``direction`` (scrolling down drags
        the content up). At a point, the finger goes down there, since the view under the first
        touch is the one that scrolls (a list inside a page, a text area), but out of the
        screen's edge bands (``EDGE_BAND``), and moves up to ``amount``, as far as the screen
        allows; without one, the swipe is centred on the screen."""
        w, h = self.screen.width, self.screen.height
        vertical = action.direction in ("up", "down")
        amount = self._scroll_amount(action)
        delta = amount if action.direction in ("down", "right") else -amount
        centred = action.x is None
        x = w // 2 if centred else action.x
        y = h // 2 if centred else action.y
        if vertical:
            y1, y2 = _travel(y + delta // 2 if centred else y, delta, h)
            x1 = x2 = _inside(x, w)
        else:
            x1, x2 = _travel(x + delta // 2 if centred else x, delta, w)
            y1 = y2 = _inside(y, h)
        return x1, y1, x2, y2

    def _scroll_amount(self, action: Action) -> int:
        """How far a scroll asks to go: its amount, else half the screen along its direction."""
        screen = self.screen
        return action.amount or scroll_side(action.direction, screen.width, screen.height) // 2

    def press_point(self, action: Action) -> tuple[int, int] | None:
        """As any env's, and a scroll, which the phone performs as a swipe, judged as one."""
        if action.kind == "scroll":
            x1, y1, x2, y2 = self._scroll_swipe(action)
            return self.gesture_press((x1, y1), (x2, y2))
        return super().press_point(action)

    def _key(self, name: str) -> str:
        """A phone button, a named key, ``KEYCODE_*``, or one character (typed as text)."""
        lowered = name.strip().lower().replace("-", "_")
        if lowered in PHONE_KEYCODES:
            keycode = PHONE_KEYCODES[lowered]
        elif re.fullmatch(r"keycode_[a-z0-9_]+", lowered):
            keycode = lowered.upper()  # a key code the model named itself
        elif re.fullmatch(r"[0-9]{2,3}", lowered):  # ASCII only: \d takes "٦٧" too
            keycode = lowered  # adb keyevent's number ("67": backspace); one digit is typed
        elif lowered.upper() in ADB_KEY_NAMES:
            keycode = f"KEYCODE_{lowered.upper()}"  # adb's name without its prefix: DEL, clear
        else:
            try:
                canonical = keys.canonical(name)
            except ValueError as exc:
                raise EnvError(str(exc)) from None
            if canonical not in CANONICAL_KEYCODES:
                if len(canonical) == 1:  # "a", "A", "7", "/": exactly that character
                    return self.type_text(canonical)
                raise EnvError(f"the android env has no key '{name}'")
            keycode = CANONICAL_KEYCODES[canonical]
        self._keyevent(keycode)
        return f"pressed {keycode}"

    def type_text(self, text: str) -> str:
        """Type ``text`` exactly into the focused field (see the module docstring); "\\r\\n"
        and a lone "\\r" are one line break each, as "\\n", and each line break is one Enter key
        press, as a keyboard's: a new line in a multi-line field, the field's action (send,
        search, next) in a one-line field, which a line break inside typed text would not do.

        No error message holds the text, or the command that carries it (the text may hold a
        secret's value, and errors are shown to the model and recorded): it says "typing N
        characters failed" and why, and how many had been typed before."""
        text = one_line_break_each(text)
        if not text:
            return "typed nothing"
        what = f"typing {len(text)} characters"
        lines = text.split("\n")
        keyboard = any(input_text_argument(line) is None for line in lines)
        if keyboard and not self._has_adb_keyboard():
            raise EnvError(
                f"cannot type these {len(text)} characters: `input text` carries only printable "
                f"ASCII (no non-ASCII characters, literal '%s' or tabs), and the ADBKeyboard IME "
                f"({ADB_KEYBOARD}) that would carry the rest is not installed on {self.serial}; "
                "install and enable ADBKeyboard, or type ASCII only"
            )
        typed = 0
        for number, line in enumerate(lines):
            pieces = [("enter", "\n")] if number else []
            if input_text_argument(line) is not None:
                # In pieces, so that each `input text` ends well within the adb call's timeout
                # however long the text is (a device types a few dozen keys a second).
                pieces += [("input", line[i:i + INPUT_TEXT_CHUNK])
                           for i in range(0, len(line), INPUT_TEXT_CHUNK)]
            else:
                pieces.append(("ime", line))
            for way, piece in pieces:
                try:
                    self._type_piece(way, piece, what, text)
                except EnvError as exc:
                    if not typed:
                        raise
                    # The earlier pieces are in the field: say so (by length, never the text),
                    # or the model types the whole text again and its start arrives twice.
                    raise EnvError(f"{exc}; the first {typed} of the {len(text)} characters "
                                   "had been typed before that and are in the field, and of "
                                   f"the rest up to the next {len(piece)} may have been too"
                                   ) from None
                typed += len(piece)
        return typed_done(text) + (" with ADBKeyboard" if keyboard else "")

    def _type_piece(self, way: str, piece: str, what: str, text: str) -> None:
        """Send one piece of ``text``: an Enter key press, one `input text`, or (``ime``) one
        broadcast to ADBKeyboard."""
        if way == "enter":
            self._run("input keyevent KEYCODE_ENTER", what)
        elif way == "input":
            argument = input_text_argument(piece)
            quoted = shlex.quote(argument)
            self._run("input text " + quoted, what, hide=(quoted, argument, piece, text))
        else:
            payload = base64.b64encode(piece.encode("utf-8")).decode("ascii")
            # Addressed to ADBKeyboard alone: an implicit broadcast reaches any app that
            # listens for its action, and the text may be a secret.
            self._run(f"am broadcast -p {ADB_KEYBOARD.split('/')[0]} -a ADB_INPUT_B64 "
                      f"--es msg {shlex.quote(payload)}", what, hide=(payload, piece, text))

    def _has_adb_keyboard(self) -> bool:
        """Whether ADBKeyboard is installed; if so it is the active keyboard now. Its broadcasts
        are heard only while it is, and the person, the system or the agent's own steps in
        Settings may have switched keyboards since the last time, so that is read each time.
        It replaces a keyboard only when that keyboard can be read, to be given back on close."""
        if self._adb_keyboard is None:
            self._adb_keyboard = ADB_KEYBOARD in self.shell("ime list -s").split()
        if self._adb_keyboard:
            active = self._active_keyboard()
            if active != ADB_KEYBOARD:
                if self._replaced_keyboard is None:
                    if active is None:
                        raise EnvError(
                            f"cannot type with ADBKeyboard on {self.serial}: it would replace "
                            "the phone's keyboard, and which keyboard is active cannot be read "
                            "to give it back afterwards; type ASCII only")
                    self._replaced_keyboard = active  # given back on close
                self._run(f"ime set {ADB_KEYBOARD}")
                time.sleep(self.ime_switch_s)
        return self._adb_keyboard

    def _active_keyboard(self) -> str | None:
        """The active keyboard's id: the setting ``ime set`` writes, else (a device without the
        ``settings`` tool) what ``dumpsys input_method`` reports; None when neither names one."""
        setting = self.shell("settings get secure default_input_method").strip()
        if _COMPONENT_NAME.fullmatch(setting):
            return setting
        found = re.search(r"mCurMethodId=(\S+)", self.shell("dumpsys input_method"))
        return found.group(1) if found and _COMPONENT_NAME.fullmatch(found.group(1)) else None

    def close(self) -> None:
        """Give the phone back the keyboard ADBKeyboard replaced (it shows none on screen)."""
        replaced, self._replaced_keyboard = self._replaced_keyboard, None
        if replaced is not None:
            with contextlib.suppress(EnvError):  # a phone that went away keeps what it had
                self._run(f"ime set {shlex.quote(replaced)}")

    def packages(self) -> list[str]:
        return [line.removeprefix("package:").strip()
                for line in self.shell("pm list packages").splitlines()
                if line.startswith("package:")]

    def resolve_app(self, app: str) -> AppTarget:
        """What ``open_app(app)`` opens: a package, or else (or where the package has nothing
        to launch) the home-screen icon labelled so. Names that several launchable packages
        could be (or several packages, on a phone that cannot say which launch) open nothing;
        they are judged by the name."""
        try:
            package = self._package_for(app, self.packages())
        except EnvError:
            package = None
        return AppTarget(package=package, label=app.strip())

    def _package_for(self, app: str, packages: list[str]) -> str | None:
        """The package ``open_app(app)`` starts (``_packages_named``); of several, the one
        with an activity to launch: every stock phone has ``com.android.settings`` beside
        ``com.android.providers.settings``, a content provider, and Contacts and Calendar
        beside theirs. Several launchable ones (or a phone that cannot say) are an EnvError:
        which one is meant is not known, and the first listed may be any app that named itself
        so."""
        found = _packages_named(app, packages)
        if len(found) > 1:
            launchable = [p for p in found if self._launchable(p)]
            if len(launchable) != 1:
                raise EnvError(f"several installed packages could be '{app}': "
                               f"{', '.join(found[:8])}; name the package")
            found = launchable
        return found[0] if found else None

    def _launchable(self, package: str) -> bool:
        """Whether ``package`` has a launcher activity (Android 7+ resolves it; elsewhere the
        command fails, and no package counts as launchable)."""
        output = self.shell("cmd package resolve-activity --brief -a android.intent.action.MAIN "
                            f"-c android.intent.category.LAUNCHER {shlex.quote(package)}")
        # The intent names the package, so any activity it resolves to is the package's own or,
        # for a package with several launcher activities (Samsung's Contacts and Phone), the
        # phone's chooser: AOSP's, Huawei's HwResolverActivity, ZUI's and other vendors'.
        return any(_COMPONENT_NAME.fullmatch(line.strip()) for line in output.splitlines())

    def open_app(self, app: str) -> str:
        """Open ``app`` by package name (or its last segment, ignoring case and punctuation),
        or by the label its launcher icon shows."""
        if not app.strip():
            # A blank label would match every clickable node without text and tap the first.
            raise EnvError("open_app needs the name of an app: a package name or the label "
                           "of its icon on the home screen")
        packages = self.packages()
        package = self._package_for(app, packages)
        if package is not None:
            output = self.shell(
                f"monkey -p {shlex.quote(package)} -c android.intent.category.LAUNCHER 1")
            if "Events injected" in output:
                return f"opened {package}"
            # Nothing to launch (com.android.phone is the telephony service, not the dialer):
            # the icon labelled so may still open the app the model means.
        # Look for an icon with that label on the home screen.
        self._keyevent("KEYCODE_HOME")
        wanted_label = app.strip().casefold()
        for node in self.ui_tree().walk():
            labels = {node.text.strip().casefold(), node.content_desc.strip().casefold()}
            if wanted_label in labels and node.clickable:
                x, y = node.center
                self._run(f"input tap {x} {y}")
                return f"opened '{app}' from the home screen"
        looked = "the phone is on its home screen now, where it looked"
        if package is not None:
            raise EnvError(f"{package} has no launcher activity to open ({output.strip()[-200:]}),"
                           f" and no icon on the home screen is labelled '{app}' ({looked})")
        raise EnvError(f"no app called '{app}' on {self.serial}: it is neither an installed "
                       f"package nor a label on the home screen ({looked}; packages include: "
                       f"{', '.join(packages[:12])})")

    def element_at(self, x: int, y: int) -> ElementInfo | None:
        """What a tap at (x, y) presses (``_pressed``: the clickable node on top there, which is
        a row for a tap on its icon or its empty part), described by its own text and
        content-desc, else by those of the nodes below it (``_pressed_info``). When no node
        there is clickable, the smallest node holding the point, by its own text."""
        tree = self._looked_up_tree()
        pressed = _pressed(tree, x, y)
        if pressed is not None:
            return _pressed_info(pressed)
        holding = [node for node in tree.walk() if _holds(node, x, y)]
        if not holding:
            return None
        return _element_info(min(holding, key=lambda n: (n.bounds[2] - n.bounds[0])
                                 * (n.bounds[3] - n.bounds[1])))

    def focused_element(self) -> ElementInfo | None:
        """The focused node. Enter or the d-pad's centre presses a focused clickable node as a
        tap would. Enter in a text field runs the field's own action instead (a one-line
        field's "send", "search" or "go"), which the UI dump does not name, and which an app
        may tie to any of its buttons: such a field is described with the labels of the
        screen's pressable nodes too ("Message (Enter may press: Attach, Send)"), so the gate
        asks about Enter there as about a tap on them. No node focused in view is an element
        the env cannot inspect (opaque): the focus may be out of view."""
        tree = self._looked_up_tree()
        node = next((n for n in tree.walk() if n.focused), None)
        if node is None:
            # The dump lists only what is in view: a field that keeps the focus once scrolled
            # out of it is not there, and a key or a typed text still goes to it.
            return ElementInfo(text="", opaque=True)
        info = _pressed_info(node) if node.clickable else _element_info(node)
        if not info.field:
            return info
        buttons = dict.fromkeys(text for n in tree.walk()
                                if n.clickable and not _is_field(n)
                                and (text := _pressed_info(n).text))
        if not buttons:
            return info
        return replace(info, text=f"{info.text or 'a text field'} (Enter may press: "
                                  f"{', '.join(buttons)})")

    def ui_tree(self) -> UiNode:
        """The accessibility tree of the current screen (``uiautomator dump``)."""
        output = self.shell("uiautomator dump /dev/tty", busy_s=UI_IDLE_WAIT_S)
        try:
            return parse_hierarchy(output)
        except UiTreeError as exc:
            raise EnvError(f"uiautomator dump failed on {self.serial}: {exc}") from None

    def _looked_up_tree(self) -> UiNode:
        """The tree ``element_at`` and ``focused_element`` read: a dump taken less than
        ``DUMP_REUSE_S`` ago, with no action or observation since, answers again. The safety
        gate asks about one action several times (where a swipe starts and ends, then what it
        presses), and a real phone takes a second or more per dump."""
        if self._dump is not None and time.monotonic() - self._dump[0] < DUMP_REUSE_S:
            return self._dump[1]
        tree = self.ui_tree()
        self._dump = (time.monotonic(), tree)
        return tree


def _packages_named(app: str, packages: list[str]) -> list[str]:
    """The packages ``open_app(app)`` may mean: ``app`` itself when installed, else those whose
    last segment is ``app`` (ignoring case and anything but letters and digits)."""
    app = app.strip()  # a model's string may end in a space or a line break
    if app in packages:
        return [app]
    wanted = _letters_and_digits(app)
    return [p for p in packages if wanted and _letters_and_digits(p.rsplit(".", 1)[-1]) == wanted]


def _letters_and_digits(name: str) -> str:
    """A name compared ignoring case and punctuation (on both sides: firefox_beta is an app's
    last segment, "Firefox Beta" how a model names it)."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _server_down(exc: BaseException) -> bool:
    """Nothing listens on the adb server's port (adbutils words it so)."""
    return isinstance(exc, ConnectionRefusedError) or "connect to adb server failed" in str(exc)


def _unknown(exc: BaseException) -> bool:
    """The adb server answered that it does not know the device."""
    return "not found" in str(exc)


def _rgb(png: bytes) -> Image.Image:
    """The PNG's pixels, decoded now: PIL reads lazily, and a frame cut short (the device went
    away mid-transfer) must fail here, not wherever its pixels are first read."""
    image = Image.open(io.BytesIO(png))
    image.load()
    return image.convert("RGB") if image.mode != "RGB" else image  # no copy of an RGB frame


def _holds(node: UiNode, x: int, y: int) -> bool:
    x1, y1, x2, y2 = node.bounds
    return x1 <= x < x2 and y1 <= y < y2


def _pressed(node: UiNode, x: int, y: int) -> UiNode | None:
    """The node a tap at (x, y) presses, as Android hands a touch down the views: each view's
    children first, the last drawn (a later sibling, an overlay such as a bottom sheet) before
    the ones below it, and the first clickable view holding the point takes it. Smallest-first
    read the list row under a sheet's "Delete" (of the same size) as the one pressed."""
    for child in reversed(node.children):
        if (found := _pressed(child, x, y)) is not None:
            return found
    return node if node.clickable and _holds(node, x, y) else None


def _labels(node: UiNode) -> str:
    """A node's text and content-desc; a field's by its content-desc alone. Its text is what is
    typed in it (or its hint): no press is judged by that, and a secret typed there and reshaped
    by the app ("4111 1111 ...") would be quoted in the record."""
    labels = ("" if _is_field(node) else node.text.strip(), node.content_desc.strip())
    return " ".join(label for label in labels if label)


def _element_info(node: UiNode) -> ElementInfo:
    return ElementInfo(text=_labels(node), password=node.password, field=_is_field(node))


def _is_field(node: UiNode) -> bool:
    """An editable text node: Android's EditText and its subclasses (AutoCompleteTextView...),
    which report their class as such, as Compose's text fields do."""
    name = node.class_name.rsplit(".", 1)[-1]
    return name.endswith(("EditText", "AutoCompleteTextView"))


def _pressed_info(node: UiNode) -> ElementInfo:
    """A clickable node described by its own text and content-desc, else by those of every node
    below it, in document order (how an accessibility service labels a clickable container).
    Clickable nodes below it count too, to be safe: a text-less row that holds a "Delete"
    button reads as "... Delete", though a tap on its empty part may not delete."""
    text = _labels(node) or " ".join(t for n in node.walk() if (t := _labels(n)))
    return ElementInfo(text=text, password=node.password, field=_is_field(node))


def _read_to_end(sock: Any) -> bytes:
    """Everything until the peer closes (adbutils' own reader copies quadratically)."""
    chunks = []
    while chunk := sock.recv(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _past_warnings(data: bytes, png: bool) -> bytes:
    """The frame in ``screencap``'s output. On a phone with two displays (Android 14+: a
    foldable's cover screen, an external display) it first writes "[Warning] Multiple displays
    were found, but no display id was specified! ..." and some advice to stderr, which ``exec:``
    sends in the same stream; it then captures the first display, as it says. The frame starts
    at the PNG signature, or at the line whose raw header the frame's length fits."""
    if not data.startswith(b"[Warning]"):
        return data
    head = data[:WARNINGS_SPAN]
    if png:
        at = head.find(b"\x89PNG\r\n\x1a\n")
        return data[at:] if at > 0 else data
    for line_end in re.finditer(rb"\n", head):
        at = line_end.end()
        if len(data) - at >= 12:
            width, height, _ = struct.unpack_from("<3I", data, at)
            if len(data) - at - width * height * 4 in (12, 16):
                return data[at:]
    return data
