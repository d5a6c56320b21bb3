"""What the desktop env leaves on a display: an action stopped midway (Ctrl-C, an X error) holds
no key or button down, and close gives back every keycode the typist bound.

A key or button that XTest presses stays down on the display until something releases it, also
after the client that pressed it has gone: a person's Shift or mouse button stayed held after a
Ctrl-C. A watcher client stays connected throughout (Xvfb resets its keymap when its last client
leaves, which would hide a keymap left changed).
"""

from __future__ import annotations

import pytest
from Xlib import X

from core.actions import Drag, Hotkey, Type
from envs.desktop import DesktopEnv
from envs.x11_typing import X11Typist

#: Characters no keymap of Xvfb has: each needs a spare keycode.
CJK = "".join(chr(0x4E00 + i) for i in range(200))


def held(watcher) -> tuple[list[int], int]:
    """The keycodes down on the display, and its pointer's button mask."""
    keymap = watcher.query_keymap()
    keys = [i * 8 + b for i, byte in enumerate(keymap) for b in range(8) if byte >> b & 1]
    buttons = watcher.screen().root.query_pointer().mask
    return keys, buttons & (X.Button1Mask | X.Button2Mask | X.Button3Mask)


def keymap(watcher) -> list[tuple[int, ...]]:
    info = watcher.display.info
    return [tuple(syms) for syms in watcher.get_keyboard_mapping(
        info.min_keycode, info.max_keycode - info.min_keycode + 1)]


def ctrl_c_after(function, calls: int, when=lambda *args, **kwargs: True):
    """``function``, raising KeyboardInterrupt right after its ``calls``-th call that ``when``
    picks has run (the press it made was sent)."""
    seen = {"n": 0}

    def wrapped(*args, **kwargs):
        result = function(*args, **kwargs)
        if when(*args, **kwargs):
            seen["n"] += 1
            if seen["n"] == calls:
                raise KeyboardInterrupt
        return result
    return wrapped


def test_ctrl_c_while_typing_leaves_no_key_down(private_display, monkeypatch):
    from Xlib.ext import xtest

    xvfb, watcher = private_display
    with DesktopEnv(display=xvfb.display, xauthority=xvfb.xauthority) as env:
        # Stopped right after the Shift of "H" went down.
        with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
            patch.setattr(xtest, "fake_input", ctrl_c_after(
                xtest.fake_input, 1, lambda display, kind, code: kind == X.KeyPress))
            env.execute(Type(text="Hello"))
    assert held(watcher) == ([], 0)


@pytest.mark.parametrize("method, calls, action", [
    ("moveTo", 3, Drag(x=10, y=10, x2=200, y2=200)),  # the left button is down by then
    ("keyDown", 1, Hotkey(keys=["ctrl", "shift", "t"])),  # ctrl is down
], ids=["drag", "hotkey"])
def test_ctrl_c_midway_leaves_no_key_or_button_down(private_display, monkeypatch, method, calls,
                                                    action):
    xvfb, watcher = private_display
    with DesktopEnv(display=xvfb.display, xauthority=xvfb.xauthority) as env:
        with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
            patch.setattr(env._gui, method, ctrl_c_after(getattr(env._gui, method), calls))
            env.execute(action)
    assert held(watcher) == ([], 0)


def test_close_unbinds_every_keycode_the_typist_bound(private_display):
    """A text needing every spare keycode, then one needing a single other: the second rebinds
    one keycode and forgot the others' characters, which stayed bound after close."""
    xvfb, watcher = private_display
    before = keymap(watcher)
    typist = X11Typist(xvfb.display)
    first = typist.chunks(CJK)[0]  # as many characters as there are spare keycodes
    typist.type(first)
    typist.type(CJK[len(first)])
    assert keymap(watcher) != before
    typist.close()
    assert keymap(watcher) == before
