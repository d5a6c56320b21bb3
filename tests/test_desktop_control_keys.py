"""A control character in a desktop combination is refused, as in typed text.

X apps take a control character's keysym for no key at all. ``type`` refused such text, but a
``hotkey`` holding one (ctrl plus ESC written as a character) bound it to a spare keycode, pressed
it, and reported "pressed ctrl+\\x1b" though no app saw a key. Tab and Return are keys, and stay.
"""

from __future__ import annotations

import pytest

from core.actions import Hotkey
from tests.probes import wait_for_value
from tests.test_desktop_env import app, desktop, events, fresh, xvfb  # noqa: F401 - fixtures


@pytest.mark.parametrize("keys", [["ctrl", "\x1b"], ["alt", "\x00"], ["ctrl", "shift", "\x7f"]])
def test_a_combination_with_a_control_character_is_refused(desktop, app, fresh, keys):  # noqa: F811
    result = desktop.execute(Hotkey(keys=keys))
    assert not result.ok
    assert f"control character U+{ord(keys[-1]):04X}" in result.message
    assert events(app, "keydown") == []  # refused before any key went down


def test_tab_and_return_in_a_combination_are_their_keys(desktop, app, fresh):  # noqa: F811
    for keys in (["shift", "\t"], ["ctrl", "\n"]):
        result = desktop.execute(Hotkey(keys=keys))
        assert result.ok, result.message
    wait_for_value(lambda: [e["key"] for e in events(app, "keydown")
                            if e["key"] not in ("Control", "Shift")], ["Tab", "Enter"])
