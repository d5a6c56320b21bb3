"""Replies the corpora do not hold: a key written twice is refused, never read as its last value."""

from __future__ import annotations

import pytest

from actions.dialects import ParseError, get_dialect
from core.actions import Type
from core.geometry import Screen

PHONE = Screen(1080, 2400)


@pytest.mark.parametrize("dialect, text, key", [
    # Two points for one tap: which one the model meant is unknown.
    ("qwen2vl", '*FUNCTION*: Tap *ARGS*: {"point": (100, 200), "point": (900, 950)}', "point"),
    ("qwen2vl", "*FUNCTION*: Type *ARGS*: {'text': 'yes', 'text': 'no',}", "text"),
    ("qwen25vl", '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "click", '
                 '"coordinate": [100, 200], "coordinate": [900, 2000]}}\n</tool_call>', "coordinate"),
    # Two actions in one object.
    ("qwen25vl", '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "click", '
                 '"coordinate": [100, 200], "action": "long_press"}}\n</tool_call>', "action"),
    ("qwen25vl", '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "click", '
                 '"coordinate": [100, 200]}, "arguments": {"action": "type", "text": "x"}}\n'
                 "</tool_call>", "arguments"),
    ("qwen25vl", "<tool_call>{'name': 'mobile_use', 'arguments': {'action': 'click', "
                 "'coordinate': (1, 2), 'coordinate': (3, 4)}}</tool_call>", "coordinate"),
])
def test_a_key_written_twice_is_a_parse_error(dialect, text, key):
    with pytest.raises(ParseError) as info:
        get_dialect(dialect, "phone").parse(text, PHONE)
    assert f"'{key}' is written twice" in str(info.value)
    assert "Expected" in str(info.value)


def test_the_same_key_in_different_objects_is_fine():
    text = ('<tool_call>\n{"name": "mobile_use", "arguments": {"action": "type", '
            '"text": "{\\"text\\": 1, \\"text\\": 2}"}}\n</tool_call>')
    action = get_dialect("qwen25vl", "phone").parse(text, PHONE)
    assert action.model_dump() == {"kind": "type", "text": '{"text": 1, "text": 2}'}


@pytest.mark.parametrize("content, typed", [
    ("caf\\u00e9", "café"),  # as the ui-tars package reads it: Python's string escapes
    ("\\x41\\U0001F600", "A😀"),
    ("\\ud83d\\ude00", "😀"),  # a JSON-style surrogate pair is one character
    ("C:\\\\Users\\\\new", "C:\\Users\\new"),
    ("\\user \\x4 \\u12G4", "\\user \\x4 \\u12G4"),  # not an escape: kept as written
])
def test_uitars_content_reads_numbered_escapes(content, typed):
    for name in ("uitars", "uitars15"):
        action = get_dialect(name, "phone").parse(f"Action: type(content='{content}')", PHONE)
        assert action.model_dump() == {"kind": "type", "text": typed}


def test_uitars_numbered_escapes_agree_with_the_peer():
    peer = pytest.importorskip("ui_tars.action_parser").parse_action_to_structure_output
    text = "Thought: t\nAction: type(content='caf\\u00e9 \\x41\\U0001F600')"
    (expected,) = peer(text, 1000, 2400, 1080, model_type="qwen2vl")
    ours = get_dialect("uitars", "phone").parse(text, PHONE)
    assert ours.text == expected["action_inputs"]["content"] == "café A😀"


def test_a_lone_surrogate_is_a_parse_error():
    with pytest.raises(ParseError):
        get_dialect("uitars", "phone").parse("Action: type(content='\\ud83d')", PHONE)


@pytest.mark.parametrize("text", ["\\u00e9", "a\\x41", "\\U0001F600\\n", "\\ud83d\\ude00"])
def test_backslashes_typed_literally_round_trip(text):
    dialect = get_dialect("uitars", "phone")
    assert dialect.parse(dialect.render_action(Type(text=text), PHONE), PHONE).text == text
