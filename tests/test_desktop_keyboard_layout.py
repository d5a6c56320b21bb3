"""Typing on a desktop whose keyboard is not a US one.

pyautogui assumes a US keyboard: it finds the key that carries a character and presses Shift only
for the characters that need it there (``~!@#$%^&*()_+{}|:"<>?`` and capitals). On a German
keyboard "/" is Shift+7, so pyautogui pressed the 7 key alone and the app got "7". The env reads
the display's own keymap for every character instead.

The display gets a German-like core keymap (as ``xmodmap`` sets one); an xterm running ``cat``
writes what it receives to a file, which the test reads.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from core.actions import Click, Key, Type
from envs.desktop import DesktopEnv
from envs.xvfb import Xvfb
from tests.conftest import require_tool
from tests.probes import wait_until

# Key by key, as on a German keyboard: (unshifted, shifted). "@" is left off the keyboard
# (on a German one it needs AltGr), so it is typed on a spare keycode.
GERMAN_KEYS = {
    "2": ("2", "quotedbl"), "3": ("3", "section"), "7": ("7", "slash"),
    "8": ("8", "parenleft"), "9": ("9", "parenright"), "0": ("0", "equal"),
    "minus": ("ssharp", "question"), "slash": ("minus", "underscore"),
    "comma": ("comma", "semicolon"), "period": ("period", "colon"),
    "semicolon": ("odiaeresis", "Odiaeresis"), "apostrophe": ("numbersign", "apostrophe"),
}


def _german_keymap(display: str):
    """Set the keymap; return the connection that set it, to be closed last (Xvfb resets its
    keymap when its last client leaves)."""
    from Xlib import XK
    from Xlib.display import Display

    conn = Display(display)
    for us_key, (plain, shifted) in GERMAN_KEYS.items():
        keycode = conn.keysym_to_keycode(XK.string_to_keysym(us_key))
        syms = (XK.string_to_keysym(plain), XK.string_to_keysym(shifted))
        conn.change_keyboard_mapping(keycode, [syms * 2])
    conn.sync()
    return conn


@pytest.fixture
def german_xterm(tmp_path):
    """A private display with a German-like keymap, an xterm whose ``cat`` writes to a file, and
    a desktop env on it; yields (env, the file)."""
    for tool in ("xvfb", "xdotool", "xterm"):
        require_tool(tool)
    saved = {k: os.environ.get(k) for k in ("DISPLAY", "XAUTHORITY")}
    out = tmp_path / "received.txt"
    with Xvfb(640, 400) as xvfb:
        child_env = {**os.environ, **xvfb.env}
        saved_xauthority = os.environ.get("XAUTHORITY")
        os.environ["XAUTHORITY"] = xvfb.xauthority  # python-xlib reads the cookie from here
        try:
            keymap_client = _german_keymap(xvfb.display)
        finally:
            if saved_xauthority is None:
                os.environ.pop("XAUTHORITY", None)
            else:
                os.environ["XAUTHORITY"] = saved_xauthority
        xterm = subprocess.Popen(
            ["xterm", "-geometry", "80x20+0+0", "-e", "sh", "-c", f"stty -echo; cat > '{out}'"],
            env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            subprocess.run(["xdotool", "search", "--sync", "--onlyvisible", "--class", "xterm"],
                           env=child_env, capture_output=True, timeout=30, check=True)
            with DesktopEnv(display=xvfb.display, xauthority=xvfb.xauthority) as env:
                # No window manager: the keyboard follows the pointer, which this puts on xterm.
                assert env.execute(Click(x=200, y=100)).ok
                time.sleep(0.3)  # cat starts once the shell has run stty
                yield env, out
        finally:
            xterm.terminate()
            xterm.wait(timeout=10)
            keymap_client.close()
    for key, value in saved.items():  # DesktopEnv points this process at its display
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _received(out) -> str:
    return out.read_text() if out.exists() else ""


def test_typed_text_arrives_exactly_on_a_german_keyboard(german_xterm) -> None:
    env, out = german_xterm
    text = 'a/b "c" (d)=e? f-g_h; i:j \'k\' #l @m 7&\n'
    result = env.execute(Type(text=text))
    assert result.ok, result.message
    wait_until(lambda: _received(out).endswith("\n"), what="the line in xterm")
    assert _received(out) == text


def test_a_one_character_key_is_that_character_on_a_german_keyboard(german_xterm) -> None:
    env, out = german_xterm
    for key in ("/", "(", "=", "?", "-", "enter"):
        result = env.execute(Key(key=key))
        assert result.ok, result.message
    wait_until(lambda: _received(out).endswith("\n"), what="the line in xterm")
    assert _received(out) == "/(=?-\n"
