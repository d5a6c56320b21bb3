"""A key the display's keyboard lacks is refused with a reason, not a traceback.

pyautogui maps a key name to a keycode when it is imported; a key missing from the keymap (here
Super, which "meta" / "cmd" / "win" press) gets keycode 0, and pressing that is an X error that
python-xlib misreads into an AttributeError, which escaped the env and ended the run. The keymap
here is a real one with Super removed (as ``xmodmap`` can); the env must say so and keep working.
"""

from __future__ import annotations

import pytest

from core.actions import Hotkey, Key, Move
from envs.desktop import DesktopEnv
from tests.conftest import require_tool
from tests.test_desktop_env import mouse_location


@pytest.fixture
def display_without_super(private_display):
    """A private display whose keymap has no Super key; yields the Xvfb."""
    from Xlib import XK

    require_tool("xdotool")
    xvfb, keymap_client = private_display  # kept open by private_display until the end
    for keysym in (XK.XK_Super_L, XK.XK_Super_R):
        for keycode, _ in list(keymap_client.keysym_to_keycodes(keysym)):
            keymap_client.change_keyboard_mapping(keycode, [(0, 0)])
    keymap_client.sync()
    return xvfb


@pytest.mark.parametrize("action", [Key(key="meta"), Hotkey(keys=["cmd", "e"])],
                         ids=["key", "hotkey"])
def test_a_key_the_keyboard_lacks_is_refused_with_a_reason(display_without_super,
                                                           action) -> None:
    xvfb = display_without_super
    with DesktopEnv(display=xvfb.display, xauthority=xvfb.xauthority) as env:
        result = env.execute(action)
        assert not result.ok
        assert "has no key for" in result.message
        assert "meta" in result.message or "cmd" in result.message
        # The env still drives the display afterwards.
        assert env.execute(Move(x=50, y=60)).ok
        assert mouse_location(xvfb) == (50, 60)
