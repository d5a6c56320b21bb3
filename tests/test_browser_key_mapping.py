"""Keys as a keyboard presses them. A key action naming one character that a US keyboard lacks
(``é``, ``ß``, ``ñ``, ``€``) presses it: the page sees the key go down with that character, and a
focused field gets it, as from a keyboard that has the key. Shift with a character types its
shifted character (shift+y is "Y"). Read from the page's own events and the field's value."""

from __future__ import annotations

import pytest

from core.actions import Hotkey, Key
from tests.conftest import require_tool

PAGE = """<!DOCTYPE html><html><body>
<input id="field" autocomplete="off">
<script>
  window.events = [];
  document.addEventListener('keydown',
    (e) => window.events.push([e.key, e.ctrlKey, e.shiftKey, e.altKey]), true);
</script></body></html>"""


@pytest.fixture(scope="module")
def env():
    require_tool("chromium")
    from envs.browser import BrowserEnv

    with BrowserEnv(viewport=(320, 240), device_scale_factor=2.0) as browser:
        yield browser


@pytest.fixture
def field(env):
    env.page.set_content(PAGE)
    env.page.focus("#field")
    return env


@pytest.mark.parametrize("char", ["é", "ß", "ñ", "€", "日"])
def test_a_single_non_ascii_key_is_pressed_and_typed(field, char) -> None:
    result = field.execute(Key(key=char))
    assert result.ok, result.message
    assert field.page.input_value("#field") == char
    assert field.page.evaluate("window.events") == [[char, False, False, False]]


def test_a_non_ascii_key_with_a_modifier_holds_the_modifier(field) -> None:
    field.page.evaluate("document.addEventListener('keydown', (e) => e.preventDefault())")
    result = field.execute(Hotkey(keys=["ctrl", "é"]))
    assert result.ok, result.message
    events = field.page.evaluate("window.events")
    assert events == [["Control", True, False, False], ["é", True, False, False]]
    # The modifiers are let go afterwards: a later key is plain.
    assert field.execute(Key(key="a")).ok
    assert field.page.evaluate("window.events")[-1] == ["a", False, False, False]


def test_ascii_keys_still_map_as_before(field) -> None:
    assert field.execute(Key(key="x")).ok and field.execute(Key(key="y")).ok
    assert field.execute(Hotkey(keys=["ctrl", "a"])).ok
    assert field.execute(Key(key="é")).ok  # replaces the selection, as typing does
    assert field.page.input_value("#field") == "é"
    assert field.page.evaluate("window.events")[:3] == [
        ["x", False, False, False], ["y", False, False, False], ["Control", True, False, False]]


@pytest.mark.parametrize(("combo", "typed"), [
    (["shift", "y"], "Y"), (["shift", "1"], "!"), (["shift", "/"], "?"), (["shift", "Y"], "Y"),
    (["shift", "-"], "_"),
])
def test_shift_with_a_character_types_its_shifted_character(field, combo, typed) -> None:
    # As on a US keyboard: shift+y is a capital Y, shift+1 an exclamation mark.
    assert field.execute(Hotkey(keys=combo)).ok
    assert field.page.input_value("#field") == typed
    assert field.page.evaluate("window.events")[-1] == [typed, False, True, False]
