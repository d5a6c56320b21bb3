"""What the phone's shell tools do: ``input``, ``screencap``, ``am``, ``uiautomator`` and the rest.

Each tool on the phone's PATH forwards its argv here (see tool_server.py), and a lone tool call
comes here straight from the adb transport (inline_shell.py); ``ShellCommands.run`` returns the
exit code and output a real device would give, as closely as the tools' common uses need.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import struct
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import quoteattr

from PIL import Image

from envs.base import TOUCH_SLOP  # swipes shorter than this (physical px) are presses
from envs.input_text import decode_input_text
from envs.still_frames import StillFrame
from envs.virtual_phone.catalog import LAUNCHER, App, app_for_url
from envs.virtual_phone.display import PHYSICAL, SCALE, PhoneDisplay, Stillness
from envs.virtual_phone.keycodes import PAGE_KEYS, key_name

ADB_KEYBOARD = "com.android.adbkeyboard/.AdbIME"
LATIN_IME = "com.vlagent.keyboard/.LatinIME"
DENSITY = 480
#: How long after ``ime set`` the new IME starts hearing broadcasts: a phone binds the IME's
#: service (starting its process) after ``ime set`` has answered, and ADBKeyboard registers its
#: receiver only then, so a broadcast sent sooner goes unheard ("Broadcast completed").
IME_BIND_S = 0.3
#: ``uiautomator dump`` waits until the screen has been still this long, or gives up waiting.
IDLE_QUIET_MS, IDLE_TIMEOUT_MS = 50, 3000


@dataclass
class Result:
    code: int = 0
    stdout: bytes = b""
    stderr: bytes = b""
    #: When set, the tool writes ``stdout`` to this path (relative to its cwd) instead.
    file: str | None = None
    #: Printed after writing ``file``.
    message: bytes = b""


def ok(text: str = "") -> Result:
    return Result(0, text.encode())


def _class_of(component: str) -> str:
    """A component's activity class in full: ``pkg/.Main`` and ``pkg/pkg.Main`` name the same."""
    package, _, name = component.partition("/")
    return package + name if name.startswith(".") else name


def fail(text: str, code: int = 1) -> Result:
    return Result(code, b"", (text.rstrip("\n") + "\n").encode())


class UsageError(Exception):
    """Bad arguments to a tool; becomes its stderr and exit code 1."""


class ShellCommands:
    """What the phone's shell tools do, and the device state behind them: apps, their state,
    input, the display and IMEs."""

    def __init__(self, display: PhoneDisplay, apps: dict[str, App], properties: dict[str, str],
                 adb_keyboard: bool = True) -> None:
        self.display = display
        self.apps = apps
        self.properties = properties
        self.states: dict[str, dict[str, Any]] = {p: a.fresh_state() for p, a in apps.items()}
        self.imes = [LATIN_IME] + ([ADB_KEYBOARD] if adb_keyboard else [])
        self.current_ime = ADB_KEYBOARD if adb_keyboard else LATIN_IME
        self._ime_bound_at = 0.0  # the loop's clock when current_ime hears broadcasts
        self._last_frame: tuple[bytes, bytes] = (b"", b"")
        #: Commands run that may have changed the screen (input, navigation, state writes).
        self.touches = 0
        self._touched_at = 0.0  # the loop's clock at the end of the last one
        #: The last PNG and the screen version it shows (None: the screen moved while captured).
        self._png: tuple[str | None, bytes] = (None, b"")
        # One gesture or navigation at a time, as on a device's input queue.
        self._lock = asyncio.Lock()

    # -- app model ----------------------------------------------------------------------------
    def current_app(self) -> App:
        return app_for_url(self.apps, self.display.url) or self.apps[LAUNCHER]

    async def launch(self, package: str) -> None:
        """Bring ``package`` to the front: as it was left, if it runs (Home, then its icon or
        ``am start``, resumes it, as on Android), else started at its first page. The
        launcher's Home shows its first screen."""
        await self.display.show(package, self.apps[package].url, fresh=package == LAUNCHER)

    async def open_url(self, url: str) -> None:
        """A page's link to another app (a launcher icon): that app, launched, within the
        gesture's command."""
        app = app_for_url(self.apps, url)
        if app is not None:
            await self.launch(app.package)

    async def home(self) -> None:
        await self.launch(LAUNCHER)

    async def stop(self, package: str) -> None:
        """Stop the app (``am force-stop``, its data replaced): shown again, it starts afresh.
        The launcher is shown first if it was in front."""
        if package == LAUNCHER:
            return
        if self.current_app().package == package:
            await self.home()
        await self.display.end(package)

    async def _replace_state(self, package: str, state: dict[str, Any]) -> None:
        """An app's state replaced from outside (``pm clear``, ``vphone state set``, reset),
        as over adb: the app is stopped too, as Android stops an app it clears, since a
        running one would show the old state and write it back."""
        self.states[package] = state
        await self.stop(package)

    async def back(self) -> None:
        """Back within the app's own page stack first, then out of the app to the task under
        it (the app it was opened over, or the launcher). As on Android 12 and later (this
        phone says 14), an app's root activity is not finished by Back but moved to the back:
        shown again, it is as it was left."""
        handled = await self.display.evaluate(
            "() => typeof window.vphoneBack === 'function' ? !!window.vphoneBack() : false"
        )
        current = self.current_app().package
        if not handled and current != LAUNCHER:
            await self.launch(self.display.to_back(current) or LAUNCHER)

    def on_state(self, url: str, op: str, value: Any) -> Any:
        """The apps' ``vphoneState('get' | 'set', value)`` binding: each app sees only its own."""
        app = app_for_url(self.apps, url)
        if app is None:
            return None
        if op == "set":
            self.states[app.package] = value
            return None
        return self.states[app.package]

    async def reset(self, package: str | None = None) -> None:
        await self.home()
        for app in self.apps.values():
            if package is None or app.package == package:
                await self._replace_state(app.package, app.fresh_state())

    def resolve(self, package: str) -> App:
        if package not in self.apps:
            raise UsageError(f"Unknown package: {package}")
        return self.apps[package]

    # -- dispatch -----------------------------------------------------------------------------
    async def run(self, argv: list[str]) -> Result:
        if not argv:
            return fail("no command")
        handler = getattr(self, "cmd_" + argv[0], None)
        if handler is None:
            return fail(f"{argv[0]}: inaccessible or not found", 127)
        try:
            async with self._lock:
                try:
                    return await handler(argv[1:])
                finally:
                    if not _reads_only(argv):
                        self.touches += 1
                        self._touched_at = asyncio.get_running_loop().time()
        except UsageError as exc:
            return fail(f"{argv[0]}: {exc}")
        except Exception as exc:  # noqa: BLE001 - a tool must get an answer, never hang
            return fail(f"{argv[0]}: {type(exc).__name__}: {exc}")

    # -- tools --------------------------------------------------------------------------------
    async def cmd_input(self, args: list[str]) -> Result:
        sources = {"touchscreen", "touchpad", "mouse", "keyboard", "dpad", "gamepad", "stylus",
                   "trackball", "joystick", "touchnavigation"}
        if args and args[0] in sources:
            args = args[1:]
        if not args:
            raise UsageError("usage: input [source] tap|swipe|text|keyevent ...")
        verb, rest = args[0], args[1:]
        if verb == "tap":
            x, y = _numbers(rest, 2, "tap X Y")
            await self.display.tap(x, y)
        elif verb in ("swipe", "draganddrop"):
            if len(rest) not in (4, 5):
                raise UsageError(f"usage: input {verb} X1 Y1 X2 Y2 [DURATION_MS]")
            x1, y1, x2, y2, *duration = _numbers(rest, len(rest), "swipe")
            await self._swipe(x1, y1, x2, y2, (duration or [300])[0] / 1000)
        elif verb == "text":
            if not rest:
                raise UsageError("usage: input text <string>")
            await self._input_text(rest[0])
        elif verb == "keyevent":
            codes = [a for a in rest if a not in ("--longpress", "--doubletap")]
            if not codes:
                raise UsageError("usage: input keyevent [--longpress] KEYCODE ...")
            for code in codes:
                try:
                    await self._key(key_name(code))
                except ValueError as exc:
                    raise UsageError(str(exc)) from None
        else:
            raise UsageError(f"unknown command '{verb}'")
        return ok()

    async def _swipe(self, x1: float, y1: float, x2: float, y2: float, seconds: float) -> None:
        if abs(x2 - x1) < TOUCH_SLOP and abs(y2 - y1) < TOUCH_SLOP:
            await self.display.press_hold(x1, y1, seconds)
        else:
            # A finger moving up drags the content up: the page scrolls down.
            await self.display.scroll(x1, y1, x1 - x2, y1 - y2)

    async def _input_text(self, text: str) -> None:
        # Android's `input text` turns "%s" into a space and can type only what its key map has.
        typed = decode_input_text(text)
        bad = sorted({c for c in typed if not (" " <= c <= "~")})
        if bad:
            raise UsageError(
                f"cannot type {''.join(bad)!r} with the key map; use an IME (ADBKeyboard)"
            )
        await self.display.type_keys(typed)

    async def _key(self, name: str) -> None:
        if name == "HOME":
            await self.home()
        elif name == "BACK":
            await self.back()
        elif name in PAGE_KEYS:
            await self.display.press(PAGE_KEYS[name])
        # Power, volume, menu and the like change nothing on this phone.

    async def cmd_screencap(self, args: list[str]) -> Result:
        png = "-p" in args
        files = [a for a in args if not a.startswith("-") and not a.isdigit()]
        path = files[0] if files else None
        if path and path.endswith(".png"):
            png = True
        data, _ = await self.screen_png()
        if not png:
            data = self._raw_frame(data)
        return Result(0, data, file=path)

    async def screen_png(self, before: Stillness | None = None) -> tuple[bytes, str | None]:
        """The screen as PNG and its version; chromium is asked only when the screen may have
        changed since the last capture (a new version, or something moving). ``before``: the
        page's stillness just read, if the caller has it."""
        before = before or await self.display.stillness()
        version = f"{self.touches}:{before.version[0]}:{before.version[1]}"
        if not before.moving and self._png[0] == version:
            return self._png[1], version
        png = await self.display.png()
        after = await self.display.stillness()
        if after.moving or after.version != before.version:
            version = None  # it changed while captured: never serve this frame from the cache
        self._png = (version, png)
        return png, version

    async def wait_still(self, quiet_ms: float, timeout_ms: float) -> tuple[bool, Stillness]:
        """Wait until nothing has changed for ``quiet_ms``, at most ``timeout_ms``: (whether it
        did, the page's last stillness)."""
        clock = asyncio.get_running_loop().time
        deadline = clock() + timeout_ms / 1000
        while True:
            stillness = await self.display.stillness()
            # Quiet also since the last input: a tap's navigation may not have begun yet.
            quiet = min(stillness.quiet_ms, (clock() - self._touched_at) * 1000)
            if not stillness.moving and quiet >= quiet_ms:
                return True, stillness
            left = deadline - clock()
            if left <= 0:
                return False, stillness
            wait_ms = 10 if stillness.moving else quiet_ms - quiet
            await asyncio.sleep(min(left, max(wait_ms, 5) / 1000))

    async def still_frame(self, since: str, quiet_ms: float, timeout_ms: float) -> Result:
        """``vphone frame`` (envs/still_frames.py): once nothing has changed for ``quiet_ms``
        (or ``timeout_ms`` passed), the header line and the PNG, left out when the version is
        still ``since``."""
        still, stillness = await self.wait_still(quiet_ms, timeout_ms)
        png, version = await self.screen_png(stillness)
        package, activity = self.current_app().component.split("/", 1)
        header = StillFrame(version=version, still=still, package=package, activity=activity)
        body = b"" if version is not None and version == since else png
        return Result(0, header.model_dump_json().encode() + b"\n" + body)

    def _raw_frame(self, png: bytes) -> bytes:
        """The raw screencap of a PNG frame; an unchanged screen reuses the last conversion."""
        if self._last_frame[0] != png:
            image = Image.open(io.BytesIO(png)).convert("RGBA")
            # width, height, PIXEL_FORMAT_RGBA_8888, dataspace sRGB (the 16-byte header of API 28+)
            header = struct.pack("<4I", image.width, image.height, 1, 1)
            self._last_frame = (png, header + image.tobytes())
        return self._last_frame[1]

    async def cmd_wm(self, args: list[str]) -> Result:
        if args == ["size"]:
            return ok(f"Physical size: {PHYSICAL[0]}x{PHYSICAL[1]}\n")
        if args == ["density"]:
            return ok(f"Physical density: {DENSITY}\n")
        raise UsageError("only `wm size` and `wm density` are supported (the screen is fixed)")

    async def cmd_am(self, args: list[str]) -> Result:
        if not args:
            raise UsageError("usage: am start|broadcast|force-stop ...")
        verb, opts = args[0], _intent_options(args[1:])
        if verb in ("start", "start-activity"):
            component = opts.get("-n") or (opts["positional"][0] if opts["positional"] else "")
            if not component and opts.get("-c") == "android.intent.category.HOME":
                component = self.apps[LAUNCHER].component
            if not component and opts.get("-p") in self.apps:  # the package's main activity
                component = self.apps[opts["-p"]].component
            package = component.split("/", 1)[0]
            app = self.apps.get(package)
            if app is None or _class_of(component) != _class_of(app.component):
                # As Android answers an activity that no installed package has (exit 255).
                return Result(255, f"Starting: Intent {{ cmp={component} }}\n".encode(),
                              f"Error type 3\nError: Activity class {{{package}/"
                              f"{_class_of(component)}}} does not exist.\n".encode())
            if "-S" in args or "--activity-clear-task" in args:  # stopped first: afresh
                await self.stop(package)
            await self.launch(package)
            return ok(f"Starting: Intent {{ cmp={self.apps[package].component} }}\n")
        if verb == "broadcast":
            if opts.get("-p") in (None, ADB_KEYBOARD.split("/")[0]):  # else addressed elsewhere
                await self._broadcast(opts.get("-a", ""), opts["extras"])
            action = opts.get("-a", "")
            return ok(f"Broadcasting: Intent {{ act={action} flg=0x400000 (has extras) }}\n"
                      "Broadcast completed: result=0\n")
        if verb == "force-stop":
            await self.stop(args[1] if len(args) > 1 else "")
            return ok()
        raise UsageError(f"unknown command '{verb}'")

    async def _broadcast(self, action: str, extras: dict[str, str]) -> None:
        # As on a device, nobody hears ADBKeyboard's broadcasts unless it is the active IME, and
        # bound.
        if (self.current_ime != ADB_KEYBOARD
                or asyncio.get_running_loop().time() < self._ime_bound_at):
            return
        if action == "ADB_INPUT_TEXT":
            await self.display.insert_text(extras.get("msg", ""))
        elif action == "ADB_INPUT_B64":
            raw = extras.get("msg", "")
            try:
                text = base64.b64decode(raw, validate=True).decode("utf-8")
            except ValueError:
                return  # ADBKeyboard ignores what it cannot decode
            await self.display.insert_text(text)
        elif action == "ADB_CLEAR_TEXT":
            await self.display.evaluate(_CLEAR_FOCUSED)
        elif action == "ADB_INPUT_CODE" and extras.get("code", "").isdecimal():
            await self._key(key_name(extras["code"]))

    async def cmd_monkey(self, args: list[str]) -> Result:
        opts = _intent_options(args)
        package = opts.get("-p", "")
        if package not in self.apps:
            return Result(252, b"** No activities found to run, monkey aborted.\n")
        await self.launch(package)
        return ok("Events injected: 1\n")

    async def cmd_pm(self, args: list[str]) -> Result:
        if args[:2] == ["list", "packages"]:
            filters = [a for a in args[2:] if not a.startswith("-")]
            packages = [p for p in sorted(self.apps) if not filters or filters[0] in p]
            return ok("".join(f"package:{p}\n" for p in packages))
        if len(args) == 2 and args[0] == "clear":
            await self._replace_state(args[1], self.resolve(args[1]).fresh_state())
            return ok("Success\n")
        if len(args) == 2 and args[0] == "path":
            self.resolve(args[1])
            return ok(f"package:/data/app/{args[1]}/base.apk\n")
        raise UsageError("supported: pm list packages [FILTER], pm clear PKG, pm path PKG")

    async def cmd_dumpsys(self, args: list[str]) -> Result:
        service = args[0] if args else ""
        app = self.current_app()
        window = f"Window{{4f2a1c0 u0 {app.component}}}"
        if service == "window":
            return ok(f"WINDOW MANAGER WINDOWS (dumpsys window windows)\n"
                      f"  mCurrentFocus={window}\n"
                      f"  mFocusedApp=ActivityRecord{{8e1d2f7 u0 {app.component} t1}}\n")
        if service == "activity":
            return ok(f"  mResumedActivity: ActivityRecord{{8e1d2f7 u0 {app.component} t1}}\n")
        if service == "display":
            w, h = PHYSICAL
            return ok(f"  mViewports=[DisplayViewport{{type=INTERNAL, valid=true, displayId=0, "
                      f"orientation=0, logicalFrame=Rect(0, 0 - {w}, {h})}}]\n")
        if service == "input_method":
            return ok(f"  mCurMethodId={self.current_ime}\n")
        return ok()

    async def cmd_getprop(self, args: list[str]) -> Result:
        if args:
            return ok(self.properties.get(args[0], "") + "\n")
        return ok("".join(f"[{k}]: [{v}]\n" for k, v in sorted(self.properties.items())))

    async def cmd_ime(self, args: list[str]) -> Result:
        if args[:1] == ["list"]:
            if "-s" in args:
                return ok("".join(f"{ime}\n" for ime in self.imes))
            return ok("".join(f"{ime}:\n  mId={ime}\n" for ime in self.imes))
        if len(args) == 2 and args[0] == "set":
            if args[1] not in self.imes:
                return fail(f"Unknown input method {args[1]} cannot be selected for user #0")
            if args[1] != self.current_ime:
                self.current_ime = args[1]
                self._ime_bound_at = asyncio.get_running_loop().time() + IME_BIND_S
            return ok(f"Input method {args[1]} selected for user #0\n")
        if len(args) == 2 and args[0] in ("enable", "disable"):
            if args[1] not in self.imes:
                return fail(f"Unknown input method {args[1]} cannot be enabled for user #0")
            return ok(f"Input method {args[1]}: already {args[0]}d for user #0\n")
        raise UsageError("supported: ime list [-s], ime set ID, ime enable|disable ID")

    async def cmd_uiautomator(self, args: list[str]) -> Result:
        if not args or args[0] != "dump":
            raise UsageError("supported: uiautomator dump [--compressed] [FILE]")
        files = [a for a in args[1:] if not a.startswith("-")]
        path = files[0] if files else "window_dump.xml"
        # As Android's dump waits for the UI to be idle: an app still loading its state would
        # show its placeholder markup.
        await self.wait_still(IDLE_QUIET_MS, IDLE_TIMEOUT_MS)
        xml = hierarchy_xml(await self.display.hierarchy(), self.current_app().package)
        note = f"UI hierchary dumped to: {path}\n".encode()  # sic: Android's own spelling
        if path == "/dev/tty":
            return ok(xml + "\n" + note.decode())
        return Result(0, xml.encode(), file=path, message=note)

    async def cmd_vphone(self, args: list[str]) -> Result:
        if args[:1] == ["state"] and len(args) <= 2:
            await self.display.evaluate("() => 0")  # let state updates already sent arrive
            if len(args) == 2:
                return ok(json.dumps(self.states[self.resolve(args[1]).package]) + "\n")
            return ok(json.dumps(self.states) + "\n")
        if args[:2] == ["state", "set"] and len(args) == 4:
            return await self._set_state(self.resolve(args[2]), args[3])
        if args[:1] == ["reset"] and len(args) <= 2:
            if len(args) == 2:
                self.resolve(args[1])
            await self.reset(args[1] if len(args) == 2 else None)
            return ok()
        if args == ["apps"]:
            return ok("".join(f"{a.package}\t{a.label}\n" for a in self.apps.values()))
        if args[:1] == ["frame"]:
            options = dict(zip(args[1::2], args[2::2]))
            if len(args) % 2 == 0 or set(options) - {"--since", "--quiet-ms", "--timeout-ms"}:
                raise UsageError("usage: vphone frame [--since VERSION] [--quiet-ms MS] "
                                 "[--timeout-ms MS]")
            try:
                quiet_ms = float(options.get("--quiet-ms", 50))
                timeout_ms = float(options.get("--timeout-ms", 3000))
            except ValueError:
                raise UsageError(f"not a number in {' '.join(args[1:])}") from None
            return await self.still_frame(options.get("--since", ""), quiet_ms, timeout_ms)
        raise UsageError("usage: vphone state [PACKAGE] | vphone state set PACKAGE JSON | "
                         "vphone reset [PACKAGE] | vphone apps | "
                         "vphone frame [--since VERSION] [--quiet-ms MS] [--timeout-ms MS]")

    async def _set_state(self, app: App, text: str) -> Result:
        """Replace an app's state, as a test harness writes an app's database over adb."""
        try:
            state = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"the state is not JSON: {exc}") from None
        if not isinstance(state, dict):
            raise UsageError(f"the state must be a JSON object, not {type(state).__name__}")
        await self._replace_state(app.package, state)
        return ok()


#: Tools that only read the device; any other command may change the screen.
_READERS = {"screencap", "dumpsys", "getprop", "wm", "uiautomator"}


def _reads_only(argv: list[str]) -> bool:
    if argv[0] == "vphone":
        return argv[1:2] in (["frame"], ["apps"]) or (argv[1:2] == ["state"] and len(argv) <= 3)
    return argv[0] in _READERS


_CLEAR_FOCUSED = """() => {
  const el = document.activeElement;
  if (el && 'value' in el) {
    el.value = '';
    el.dispatchEvent(new Event('input', {bubbles: true}));
  }
}"""


def _numbers(args: list[str], count: int, usage: str) -> list[float]:
    if len(args) != count:
        raise UsageError(f"usage: input {usage}")
    try:
        return [float(a) for a in args]
    except ValueError:
        raise UsageError(f"not a number in {' '.join(args)}") from None


def _intent_options(args: list[str]) -> dict[str, Any]:
    """The am/monkey options we use: -n -a -c -d -p, --es/--ei extras, then positionals."""
    opts: dict[str, Any] = {"extras": {}, "positional": []}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("--es", "--ei", "--ez", "-e") and i + 2 < len(args):
            opts["extras"][args[i + 1]] = args[i + 2]
            i += 3
        elif arg in ("-n", "-a", "-c", "-d", "-p", "-t", "--throttle", "--user") \
                and i + 1 < len(args):
            opts[arg] = args[i + 1]
            i += 2
        elif arg.startswith("-"):
            i += 1  # flags such as -W, -S, -v
        else:
            opts["positional"].append(arg)
            i += 1
    return opts


def hierarchy_xml(nodes: list[dict[str, Any]], package: str) -> str:
    """An Android-style hierarchy: a full-screen root holding the visible elements."""
    w, h = PHYSICAL

    def flag(value: bool) -> str:
        return "true" if value else "false"

    parts = [
        "<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>",
        '<hierarchy rotation="0">',
        f'<node index="0" text="" resource-id="" class="android.widget.FrameLayout" '
        f'package="{package}" content-desc="" checkable="false" checked="false" '
        f'clickable="false" enabled="true" focusable="false" focused="false" '
        f'scrollable="false" long-clickable="false" password="false" selected="false" '
        f'bounds="[0,0][{w},{h}]">',
    ]
    for index, node in enumerate(nodes):
        x1, y1, x2, y2 = (round(v * SCALE) for v in node["bounds"])
        parts.append(
            f'<node index="{index}" text={_attr(node["text"])} '
            f'resource-id={_attr(node["id"])} class="{node["cls"]}" package="{package}" '
            f'content-desc={_attr(node["desc"])} checkable="{flag(node["checkable"])}" '
            f'checked="{flag(node["checked"])}" clickable="{flag(node["clickable"])}" '
            f'enabled="true" focusable="{flag(node["clickable"])}" '
            f'focused="{flag(node["focused"])}" scrollable="false" long-clickable="false" '
            f'password="{flag(node["password"])}" selected="false" '
            f'bounds="[{x1},{y1}][{x2},{y2}]" />'
        )
    parts.append("</node></hierarchy>")
    return "".join(parts)


#: Characters XML 1.0 has no place for (C0 controls but tab and line breaks, surrogates, FFFE/FFFF).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _attr(text: str) -> str:
    """An attribute value as uiautomator writes it: each character XML cannot hold becomes "?"
    (AccessibilityNodeInfoDumper does so), so a field holding one still leaves a dump to read."""
    return quoteattr(_NOT_XML.sub("?", text))
