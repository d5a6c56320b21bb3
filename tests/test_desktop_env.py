"""The desktop env on a private Xvfb, driving a real X client: chromium in app mode.

The page records the events it receives; the test reads them over chromium's DevTools port. The
pointer's position is also checked with ``xdotool getmouselocation``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from core.actions import (
    Click,
    DoubleClick,
    Drag,
    Hotkey,
    Key,
    Move,
    Navigate,
    RightClick,
    Scroll,
    Type,
)
from envs.base import EnvError
from envs.chromium import CHROMIUM_ARGS, CHROMIUM_PATH
from envs.desktop import PIXELS_PER_WHEEL_CLICK, DesktopEnv, ScreenMap
from envs.xvfb import Xvfb
from tests.conftest import require_tool
from tests.probes import find_color, wait_for_value, wait_until

PAGE = Path(__file__).parent / "pages" / "events.html"
GREEN, YELLOW, RED = (0, 200, 0), (255, 255, 0), (220, 0, 0)


@pytest.fixture(scope="module")
def xvfb():
    for tool in ("xvfb", "xdotool", "chromium"):
        require_tool(tool)
    saved = {k: os.environ.get(k) for k in ("DISPLAY", "XAUTHORITY")}
    with Xvfb(1280, 800, 24) as display:
        yield display
    for key, value in saved.items():  # DesktopEnv points this process at the display
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def app(xvfb, tmp_path_factory):
    """Chromium showing the events page as an app window; yields its page over DevTools."""
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    process = subprocess.Popen(
        [CHROMIUM_PATH, *CHROMIUM_ARGS,
         f"--user-data-dir={profile}", "--remote-debugging-port=0",
         "--window-position=0,0", "--window-size=1280,800", "--disable-smooth-scrolling",
         f"--app={PAGE.as_uri()}"],
        env={**os.environ, **xvfb.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        wait_until(lambda: port_file.exists() and port_file.read_text().strip(), timeout_s=30)
        port = port_file.read_text().split()[0]
        with sync_playwright() as playwright:
            browser = playwright.chromium.connect_over_cdp(f"http://127.0.0.1:{port}")
            page = wait_until(lambda: [p for c in browser.contexts for p in c.pages], 30)[0]
            page.wait_for_load_state("load")
            yield page
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def desktop(xvfb, app):
    with DesktopEnv(display=xvfb.display, xauthority=xvfb.xauthority) as env:
        yield env


@pytest.fixture
def fresh(desktop, app):
    """Reload the page and wait until the desktop shows it; return the first observation."""
    app.reload(wait_until="load")
    app.evaluate("window.scrollTo(0, 0)")
    return wait_until(lambda: _showing_page(desktop.observe()), timeout_s=10)


def _showing_page(obs):
    try:
        find_color(obs.image, GREEN)
    except AssertionError:
        return None
    return obs


def events(app, type_: str) -> list[dict]:
    return [e for e in app.evaluate("window.events") if e["type"] == type_]


def mouse_location(xvfb) -> tuple[int, int]:
    out = subprocess.run(
        ["xdotool", "getmouselocation"], env={**os.environ, **xvfb.env},
        capture_output=True, text=True, check=True,
    ).stdout
    fields = dict(part.split(":") for part in out.split())
    return int(fields["x"]), int(fields["y"])


def test_observation_is_the_whole_screen(desktop, fresh) -> None:
    assert fresh.size == (1280, 800)
    assert fresh.extras["display"] == desktop.display
    assert fresh.extras["settled"] is True


@pytest.mark.parametrize("point", [None, (1000, 600), (37, 777)])
def test_a_click_lands_at_the_screenshot_point(desktop, xvfb, app, fresh, point) -> None:
    x, y = point or find_color(fresh.image, GREEN).centre
    assert desktop.execute(Click(x=x, y=y)).ok
    assert mouse_location(xvfb) == (x, y)
    (click,) = wait_until(lambda: events(app, "click"))
    assert (click["screenX"], click["screenY"]) == (x, y)
    if point is None:
        assert click["id"] == "target"


def test_a_point_off_the_screenshot_is_refused_not_clamped_to_its_edge(desktop, xvfb, app,
                                                                       fresh) -> None:
    """X11 would move the pointer to the nearest edge pixel and click there."""
    desktop.execute(Move(x=640, y=400))
    for action in (Click(x=1280, y=400), DoubleClick(x=640, y=800),
                   Drag(x=10, y=10, x2=1400, y2=10)):
        result = desktop.execute(action)
        assert not result.ok and "outside the 1280x800 screen" in result.message
    assert mouse_location(xvfb) == (640, 400)
    desktop.observe()  # the screen settles: a click would have been handled by now
    assert events(app, "click") == events(app, "mousedown") == []


def test_double_and_right_clicks(desktop, app, fresh) -> None:
    x, y = find_color(fresh.image, GREEN).centre
    assert desktop.execute(DoubleClick(x=x, y=y)).ok
    wait_for_value(lambda: [e["type"] for e in events(app, "click") + events(app, "dblclick")],
                   ["click", "click", "dblclick"])
    (dbl,) = events(app, "dblclick")
    assert dbl["id"] == "target" and (dbl["screenX"], dbl["screenY"]) == (x, y)
    assert desktop.execute(RightClick(x=x + 5, y=y)).ok
    (menu,) = wait_until(lambda: events(app, "contextmenu"))
    assert menu["button"] == 2 and (menu["screenX"], menu["screenY"]) == (x + 5, y)


def test_move_only_moves(desktop, xvfb, app, fresh) -> None:
    assert desktop.execute(Move(x=321, y=456)).ok
    assert mouse_location(xvfb) == (321, 456)
    assert events(app, "mousedown") == []


# ASCII uses the keyboard's own keys, the rest spare keycodes (both through XTest); the last text
# needs more spare keycodes than Xvfb has (19), so it is typed in pieces.
@pytest.mark.parametrize("text", [
    "Hello, World! 123 ~{}|",
    "a <b> & 'c' | \"d\" $e `f` \\g",  # "<" once came out as ">"
    "héllo 日本語 ✓",
    "Ünïcödé ÀÉÎÕÜ 中文字符 Ω≈ç√∫ ✓✗ and ASCII too",
], ids=["ascii", "shell-characters", "unicode", "many-distinct"])
def test_typed_text_arrives_exactly(desktop, app, fresh, text) -> None:
    x, y = find_color(fresh.image, YELLOW).centre
    assert desktop.execute(Click(x=x, y=y)).ok
    wait_until(lambda: app.evaluate("document.activeElement.id") == "field")
    assert desktop.execute(Type(text=text)).ok
    wait_for_value(lambda: app.input_value("#field"), text)
    assert desktop.execute(Hotkey(keys=["ctrl", "a"])).ok
    assert desktop.execute(Key(key="backspace")).ok
    wait_for_value(lambda: app.input_value("#field"), "")


@pytest.mark.parametrize(("text", "typed"), [
    ("a\r\nb\rc", "a\nb\nc"),  # the keyboard's own keys
    ("\u00e9\r\n\u65e5\r\r\nz", "\u00e9\n\u65e5\n\nz"),  # and spare keycodes (envs.x11_typing)
], ids=["ascii", "unicode"])
def test_a_line_break_is_typed_once_whichever_way_it_is_written(desktop, app, fresh, text,
                                                                  typed) -> None:
    x, y = find_color(fresh.image, YELLOW).centre
    assert desktop.execute(Click(x=x, y=y)).ok  # the window has the keyboard
    # Once chromium has the click (on a loaded machine it came after the focus below and took
    # it to the field).
    wait_until(lambda: app.evaluate("document.activeElement.id") == "field")
    app.evaluate("""() => { const area = document.createElement('textarea');
        area.id = 'area'; document.body.appendChild(area); area.focus(); }""")
    wait_until(lambda: app.evaluate("document.activeElement.id") == "area")
    assert desktop.execute(Type(text=text)).ok
    wait_for_value(lambda: app.input_value("#area"), typed)


def test_xtest_typing_presses_return_once_per_line_break(desktop, monkeypatch) -> None:
    from Xlib import XK

    typist = desktop._typist
    # Bound first, whatever ran before: a new binding's Shift tap is not a key of the text.
    typist._bind({0xE9})
    pressed: list[int] = []
    monkeypatch.setattr(typist, "_fake", lambda keycode, press: press and pressed.append(keycode))
    for chunk in typist.chunks("\u00e9\r\nb\rc\n"):
        typist.type(chunk)
    bound = {keycode: keysym for keysym, keycode in typist._bound.items()}
    keysyms = [bound.get(k) or typist._display.keycode_to_keysym(k, 0) for k in pressed]
    assert keysyms == [0xE9, XK.XK_Return, XK.XK_b, XK.XK_Return, XK.XK_c, XK.XK_Return]


def test_characters_on_rebound_keycodes_arrive_as_themselves(desktop, app, fresh) -> None:
    """Two texts whose characters all need the spare keycodes, in turn: each character of one
    rebinds a keycode the other used, and the app reads each key with its new meaning (chromium
    once read the first key after a rebind as the keycode's old character)."""
    spare = len(desktop._typist._spare)
    upper = "".join(chr(0xC0 + i) for i in range(spare))  # À Á Â ...
    x, y = find_color(fresh.image, YELLOW).centre
    assert desktop.execute(Click(x=x, y=y)).ok
    wait_until(lambda: app.evaluate("document.activeElement.id") == "field")
    for _ in range(8):
        for text in (upper, upper.lower()):
            app.evaluate("document.getElementById('field').value = ''")
            desktop.observe()
            assert desktop.execute(Type(text=text)).ok
            desktop.observe()
            wait_for_value(lambda: app.input_value("#field"), text)


def test_a_rebind_is_followed_by_a_key_event_that_types_nothing(desktop, monkeypatch) -> None:
    typist = desktop._typist
    # Characters no other test types: the first is bound here, the second is not yet.
    typist.type("\u2ff0")
    pressed: list[int] = []
    monkeypatch.setattr(typist, "_fake", lambda keycode, press: press and pressed.append(keycode))
    for text in ("\u2ff0\u2ff0", "\u2ff1"):
        typist.type(text)
    assert pressed == [typist._bound[0x1002FF0], typist._bound[0x1002FF0], typist._shift,
                       typist._bound[0x1002FF1]]


def test_typing_stops_before_a_rebind_when_the_app_shows_nothing(desktop, monkeypatch) -> None:
    """A text longer than the spare keycodes into an app that never draws it (frozen, or an
    echo-off prompt): the keys of the first piece are not rebound under it, the action fails
    and says how far it got."""
    import dataclasses

    screen = desktop.capture()
    monkeypatch.setattr(desktop, "capture", lambda: screen)
    monkeypatch.setattr(desktop, "settle", dataclasses.replace(desktop.settle, timeout_s=0.3))
    spare = len(desktop._typist._spare)
    text = "".join(chr(0x4E00 + i) for i in range(spare + 3))
    result = desktop.execute(Type(text=text))
    assert not result.ok
    assert f"typed {spare} of {spare + 3} characters, then stopped" in result.message


@pytest.mark.parametrize("char", ["\x1b", "\x00", "\x08", "\x7f", "\x9b"])
def test_a_control_character_is_refused_not_dropped(desktop, app, fresh, char) -> None:
    """X apps type nothing for a control character's keysym: the action fails and says why,
    and nothing of the text is typed."""
    x, y = find_color(fresh.image, YELLOW).centre
    assert desktop.execute(Click(x=x, y=y)).ok
    wait_until(lambda: app.evaluate("document.activeElement.id") == "field")
    result = desktop.execute(Type(text=f"ab{char}c\u00e9"))
    assert not result.ok and f"control character U+{ord(char):04X}" in result.message
    assert desktop.execute(Type(text="ok")).ok
    wait_for_value(lambda: app.input_value("#field"), "ok")


def test_a_character_that_cannot_be_typed_is_not_named(desktop, monkeypatch) -> None:
    # The text may hold a secret's value: the error says how many characters, not which.
    monkeypatch.setattr(desktop._typist, "_spare", [])
    with pytest.raises(EnvError) as info:
        desktop._typist.chunks("ok \u2654\u2655")
    assert "typing 5 characters failed" in str(info.value)
    assert "\u2654" not in str(info.value) and "2654" not in str(info.value)


def _box_at(desktop, color, left_top):
    box = find_color(desktop.observe().image, color)
    return box if (box.left, box.top) == left_top else None


def test_a_drag_moves_the_box(desktop, app, fresh) -> None:
    before = find_color(fresh.image, RED)
    dx, dy = 150, 90
    x, y = before.centre
    assert desktop.execute(Drag(x=x, y=y, x2=x + dx, y2=y + dy)).ok
    wait_until(lambda: app.evaluate("[drag.offsetLeft, drag.offsetTop]") == [300 + dx, 120 + dy])
    # Under load chromium paints a moment after the DOM moves, so poll the screen as well.
    target = (before.left + dx, before.top + dy)
    after = wait_until(lambda: _box_at(desktop, RED, target), what="the painted box")
    assert (after.left, after.top) == target


def test_a_drag_from_where_the_last_click_was_is_a_single_press(desktop, app, fresh) -> None:
    """A click to focus, then a drag from there to select: the drag's press came 1 ms after the
    click's, so the app counted a double click (xterm then selects whole words)."""
    x, y = find_color(fresh.image, RED).centre
    assert desktop.execute(Click(x=x, y=y)).ok
    assert desktop.execute(Drag(x=x, y=y, x2=x + 60, y2=y)).ok
    presses = wait_until(lambda: len(events(app, "mousedown")) == 2 and events(app, "mousedown"))
    assert [press["detail"] for press in presses] == [1, 1]
    assert events(app, "dblclick") == []


def test_scroll_moves_the_page(desktop, app, fresh) -> None:
    before = find_color(fresh.image, GREEN)
    assert desktop.execute(Scroll(direction="down", x=640, y=400, amount=120)).ok  # one click
    wait_until(lambda: app.evaluate("scrollY"))
    scrolled = app.evaluate("scrollY")
    assert scrolled == PIXELS_PER_WHEEL_CLICK
    # Compare bottom edges: the box's top may now sit under the window's top edge.
    after = wait_until(
        lambda: (box := find_color(desktop.observe().image, GREEN)).bottom
        == before.bottom - scrolled and box,
        what="the painted scroll",
    )
    assert before.bottom - after.bottom == scrolled
    assert desktop.execute(Scroll(direction="up", amount=120)).ok
    wait_until(lambda: app.evaluate("scrollY") == 0)


def test_a_scroll_without_an_amount_goes_half_the_screen_along_its_direction(desktop, app,
                                                                            fresh) -> None:
    """Left and right go half the width (1280 / 2 = 640 px, 5 wheel clicks), up and down half
    the height (400 px, 3 clicks): sideways, half the height skipped less than asked on a wide
    screen and more than a screen on a tall one."""
    app.evaluate("document.getElementById('spacer').style.width = '20000px'")  # a wide page
    # The clicks the env sends, and that they went sideways (how far a click scrolls sideways
    # is chromium's, and moved under load in the full suite).
    assert desktop.execute(Scroll(direction="right")).message.endswith("by 5 wheel clicks")
    wait_until(lambda: app.evaluate("scrollX") > 0, what="a scroll to the right")
    assert app.evaluate("scrollY") == 0
    assert desktop.execute(Scroll(direction="down")).message.endswith("by 3 wheel clicks")
    wait_until(lambda: app.evaluate("scrollY") > 0, what="a scroll down")


def test_a_one_character_key_is_that_character_and_a_capital_names_its_key(desktop, app,
                                                                          fresh) -> None:
    x, y = find_color(fresh.image, YELLOW).centre
    assert desktop.execute(Click(x=x, y=y)).ok
    wait_until(lambda: app.evaluate("document.activeElement.id") == "field")
    for key in ("<", "A", "\u00e9", ">"):
        result = desktop.execute(Key(key=key))
        assert result.ok, result.message
    wait_for_value(lambda: app.input_value("#field"), "<A\u00e9>")
    assert desktop.execute(Hotkey(keys=["ctrl", "A"])).ok
    assert desktop.execute(Key(key="backspace")).ok
    wait_for_value(lambda: app.input_value("#field"), "")


def _caps_lock_on(xvfb) -> bool:
    from Xlib import X
    from Xlib.display import Display

    client = Display(xvfb.display)
    try:
        return bool(client.screen().root.query_pointer().mask & X.LockMask)
    finally:
        client.close()


def test_text_arrives_as_written_under_caps_lock_and_the_lock_stays(desktop, xvfb, app,
                                                                    fresh) -> None:
    """Keys picked by the keymap alone typed "hELLO" for "Hello" under Caps Lock."""
    x, y = find_color(fresh.image, YELLOW).centre
    assert desktop.execute(Click(x=x, y=y)).ok
    wait_until(lambda: app.evaluate("document.activeElement.id") == "field")
    assert desktop.execute(Key(key="capslock")).ok and _caps_lock_on(xvfb)
    try:
        assert desktop.execute(Type(text="Hello World, user@Example.com \u00e9\u00c9")).ok
        assert desktop.execute(Key(key="x")).ok
        wait_for_value(lambda: app.input_value("#field"),
                       "Hello World, user@Example.com \u00e9\u00c9x")
        assert _caps_lock_on(xvfb)  # the lock the model turned on is still on
    finally:
        desktop.execute(Key(key="capslock"))
    assert not _caps_lock_on(xvfb)


def test_a_combination_presses_the_character_it_names(desktop, app, fresh) -> None:
    """ctrl+< is not ctrl+> (pyautogui pressed Shift with "<", which made it ctrl+>)."""
    x, y = find_color(fresh.image, YELLOW).centre
    assert desktop.execute(Click(x=x, y=y)).ok
    wait_until(lambda: app.evaluate("document.activeElement.id") == "field")
    combos = [["ctrl", "<"], ["ctrl", ">"], ["alt", "<"], ["ctrl", "a"]]
    for keys in combos:
        result = desktop.execute(Hotkey(keys=keys))
        assert result.ok, result.message

    def pressed():
        return [e["key"] for e in events(app, "keydown")
                if e["key"] not in ("Control", "Alt", "Shift")]

    wait_for_value(pressed, ["<", ">", "<", "a"])


def test_unsupported_kind_and_unknown_key_are_refused(desktop, app, fresh) -> None:
    result = desktop.execute(Navigate(url="https://example.com"))
    assert not result.ok and "does not support 'navigate'" in result.message
    result = desktop.execute(Key(key="hyperdrive"))
    assert not result.ok and "unknown key" in result.message
    assert events(app, "keydown") == []


def test_typing_chunks_only_when_spare_keycodes_run_out(desktop) -> None:
    typist = desktop._typist
    spare = len(typist._spare)
    assert spare > 0
    assert typist.chunks("plain ASCII, typed with the keyboard's own keys!") == [
        "plain ASCII, typed with the keyboard's own keys!"
    ]
    many = "".join(chr(0x4E00 + i) for i in range(spare + 3))
    pieces = typist.chunks("a" + many)
    assert "".join(pieces) == "a" + many
    assert [len(p) for p in pieces] == [spare + 1, 3]


def test_keysyms_follow_the_x11_rule() -> None:
    from envs.x11_typing import keysym_for

    assert keysym_for("a") == ord("a")
    assert keysym_for("é") == 0xE9  # Latin-1 keysyms equal the code point
    assert keysym_for("日") == 0x1000000 + ord("日")
    assert keysym_for("\n") == 0xFF0D


def test_missing_monitor_is_a_clear_error(xvfb, desktop) -> None:
    with pytest.raises(EnvError, match="monitor 5 does not exist"):
        DesktopEnv(display=xvfb.display, monitor=5)


def test_a_display_that_lists_no_monitor_of_its_own_is_taken_whole(xvfb, desktop,
                                                                    monkeypatch) -> None:
    """A server without RandR 1.2 (Xnest, an old Xvnc) lists only the whole screen: the
    default monitor 1 is that, not an error no option could get past."""
    import mss

    real = mss.MSS

    class WholeScreenOnly:
        def __init__(self, **kwargs: Any) -> None:
            self._real = real(**kwargs)

        @property
        def monitors(self) -> list[dict]:
            return self._real.monitors[:1]

        def __getattr__(self, name: str) -> Any:
            return getattr(self._real, name)

    monkeypatch.setattr(mss, "MSS", WholeScreenOnly)
    env = DesktopEnv(display=xvfb.display)
    try:
        assert env.observe().size == (env.monitor["width"], env.monitor["height"])
        assert (env.monitor["left"], env.monitor["top"]) == (0, 0)
    finally:
        env.close()


@pytest.mark.parametrize("session", [{"WAYLAND_DISPLAY": "wayland-0"},
                                     {"XDG_SESSION_TYPE": "wayland"}, {}])
@pytest.mark.parametrize("server", ["xvfb", "xwayland"])
def test_a_run_on_an_xwayland_display_is_warned_of(xvfb, desktop, monkeypatch, session, server):
    """On Xwayland screenshots show Wayland programs black and input reaches X programs only:
    the run says so before it starts. The server tells, not the session's variables, which an
    Xvfb started from a Wayland session inherits (its runs were told to log in to X11)."""
    from rich.console import Console

    import envs.desktop
    from runtime.build import open_env
    from runtime.settings import RunSpec

    for name in ("WAYLAND_DISPLAY", "XDG_SESSION_TYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DISPLAY", xvfb.display)
    for name, value in session.items():
        monkeypatch.setenv(name, value)
    if server == "xwayland":  # none here: the server's answer (tests/test_desktop_displays.py)
        monkeypatch.setattr(envs.desktop, "serves_xwayland", lambda display: True)
    console = Console(record=True, width=400)
    with open_env(RunSpec(goal="g", model="scripted", env="desktop"), console) as (env, _):
        assert env.observe().size == (1280, 800)
    said = console.export_text()
    assert ("warning: this X display is Xwayland" in said) is (server == "xwayland")


def test_pyautogui_cannot_switch_displays(desktop) -> None:
    with Xvfb(320, 240) as other:
        with pytest.raises(EnvError, match="already bound to display"):
            DesktopEnv(display=other.display, xauthority=other.xauthority)


def test_screen_map_scales_and_offsets_for_hidpi() -> None:
    # A 2x HiDPI screen whose pointer works in logical points, second monitor to the right.
    mapping = ScreenMap(left=2560, top=0, scale_x=0.5, scale_y=0.5)
    assert mapping.to_pointer(0, 0) == (1280, 0)
    assert mapping.to_pointer(400, 300) == (1480, 150)
    assert ScreenMap(0, 0, 1.0, 1.0).to_pointer(17, 23) == (17, 23)


def test_xvfb_gives_a_private_display_and_stops_on_close() -> None:
    require_tool("xvfb")
    with Xvfb(320, 240) as display:
        assert display.running and display.display.startswith(":")
        assert Path(display.xauthority).exists()
        assert display.env == {"DISPLAY": display.display, "XAUTHORITY": display.xauthority}
        process = display._process
    assert process.poll() is not None
    assert not Path(display.xauthority).exists()


def test_failsafe_stays_on(desktop, xvfb) -> None:
    # A person who parks the pointer in a corner pulls pyautogui's emergency stop: the next
    # action raises instead of running, and is not swallowed into a failed result.
    move = ["xdotool", "mousemove"]
    try:
        for corner in ((0, 0), (1279, 799)):
            subprocess.run([*move, *map(str, corner)], env={**os.environ, **xvfb.env}, check=True)
            # Stopped as Ctrl-C stops a run: the loop ends it "interrupted", saying why.
            with pytest.raises(KeyboardInterrupt, match="fail-safe"):
                desktop.execute(Move(x=100, y=100))
            assert mouse_location(xvfb) == corner
        # The model's own action may go to a corner; it leaves the pointer one pixel inside, so
        # it does not stop the run itself.
        subprocess.run([*move, "200", "200"], env={**os.environ, **xvfb.env}, check=True)
        assert desktop.execute(Move(x=0, y=0)).ok and mouse_location(xvfb) == (1, 1)
        assert desktop.execute(Move(x=100, y=100)).ok
    finally:
        subprocess.run(["xdotool", "mousemove", "200", "200"], env={**os.environ, **xvfb.env},
                       check=True)
