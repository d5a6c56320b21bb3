"""Realistic replies, messy ones included, each with the exact action written by hand.

The expectations in tests/data/<dialect>_replies.jsonl were computed from the coordinate rule in
actions/coords.py (pixel = round half up of v * side / extent, the extent's own value mapping to
the last pixel), not by running the parser. Rows with "error" must raise ParseError whose message
contains that text and says which format was expected.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from actions.dialects import ParseError, get_dialect
from actions.dialects.reply_syntax import strip_fences
from core.actions import parse_action
from core.geometry import Screen

DATA = Path(__file__).parent / "data"
DIALECTS = ("qwen2vl", "qwen25vl", "uitars")


def load(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / f"{name}_replies.jsonl").read_text().splitlines()]


def cases(kind: str) -> list:
    return [
        pytest.param(name, row, id=f"{name}-{row['id']}")
        for name in DIALECTS
        for row in load(name)
        if kind in row
    ]


def setup(name: str, row: dict):
    w, h = row["screen"]
    screen = Screen(w, h, **({"max_pixels": row["max_pixels"]} if "max_pixels" in row else {}))
    return get_dialect(name, row.get("device", "computer")), screen


@pytest.mark.parametrize("name", DIALECTS)
def test_each_corpus_is_big_enough(name):
    rows = load(name)
    assert sum("expected" in r for r in rows) >= 30
    assert sum("error" in r for r in rows) >= 10
    assert len({r["id"] for r in rows}) == len(rows)


@pytest.mark.parametrize("name, row", cases("expected"))
def test_reply_parses_to_the_expected_action(name, row):
    dialect, screen = setup(name, row)
    assert dialect.parse(row["text"], screen) == parse_action(row["expected"])


@pytest.mark.parametrize("name, row", cases("error"))
def test_bad_reply_raises_a_parse_error_that_says_why(name, row):
    dialect, screen = setup(name, row)
    with pytest.raises(ParseError) as info:
        dialect.parse(row["text"], screen)
    message = str(info.value)
    assert row["error"] in message
    assert "Expected" in message  # names the format the model must write


# Regressions ----------------------------------------------------------------------------------
PHONE = Screen(1080, 2400)
TYPE_CALL = '{"name": "mobile_use", "arguments": {"action": "type", "text": "Ankara"}}'
CLICK_CALL = '{"name": "mobile_use", "arguments": {"action": "click", "coordinate": [100, 200]}}'
HOME_CALL = '{"name": "mobile_use", "arguments": {"action": "system_button", "button": "Home"}}'
#: Characters whose lower() is longer or shorter than they are ('İ' lowers to 'i' + a combining
#: dot), next to ordinary ones: an index found in text.lower() is wrong in text after them.
CASE_TRICKY = st.sampled_from(["İ", "ẞ", "ß", "Σ", "ς", "K", "ſ", "ı", "ﬁ", "a", "Z", " ", "\n",
                               ".", ","])


@pytest.mark.parametrize("thought", [
    "İzmir değil, İstanbul yazmalıyım.",
    "İİİİİİİİİİİİİİİİİİİİİİİİİİİİİİİİİİİİİİİİİİİİİİ",
    "KELVİN İS ĞOOD",
])
@pytest.mark.parametrize("tag", ["<tool_call>", "<TOOL_CALL>", "<Tool_Call>"])
def test_qwen25vl_finds_the_tag_after_text_whose_lowercase_is_longer(thought, tag):
    reply = f"{thought}\n{tag}\n{TYPE_CALL}\n</tool_call>"
    assert get_dialect("qwen25vl", "phone").parse(reply, PHONE) == parse_action(
        {"kind": "type", "text": "Ankara"})


@settings(max_examples=300, deadline=None)
@given(thought=st.text(CASE_TRICKY, max_size=60) | st.text(max_size=60))
def test_qwen25vl_any_thought_before_the_tag_leaves_the_call_alone(thought):
    assume(not re.search("tool_call", thought, re.IGNORECASE) and "{" not in thought)
    reply = f"{thought}\n<tool_call>\n{TYPE_CALL}\n</tool_call>"
    assert get_dialect("qwen25vl", "phone").parse(reply, PHONE).text == "Ankara"


@pytest.mark.parametrize("reply", [
    f"<tool_call>\n{CLICK_CALL}\n{HOME_CALL}\n</tool_call>",  # two objects in one tag
    f"{CLICK_CALL}\n{HOME_CALL}",  # two objects, no tags
    f"<tool_call>\n[{CLICK_CALL}, {HOME_CALL}]\n</tool_call>",  # a list of two
    f"<tool_call>{CLICK_CALL}</tool_call>\n{HOME_CALL}",  # the second after the tag
    f"```json\n{CLICK_CALL}\n```\n```json\n{HOME_CALL}\n```",  # two fenced blocks
    f"<tool_call>\n{CLICK_CALL}\n{{\"name\": \"mobile_use\", \"arguments\": {{\"action\"",  # cut
    f"<tool_call>\n{CLICK_CALL}\n{{'arguments': {{'action': 'wait'}}}}\n</tool_call>",
    # The second's keys in another order: its "action" is not its first key.
    f'<tool_call>\n{CLICK_CALL}\n{{"coordinate": [10, 10], "action": "click"}}\n</tool_call>',
], ids=["one_tag", "no_tags", "list", "after_tag", "fenced", "cut_second", "python_second",
        "keys_reordered"])
def test_qwen25vl_a_second_call_object_is_a_second_action(reply):
    with pytest.raises(ParseError, match="more than one action") as info:
        get_dialect("qwen25vl", "phone").parse(reply, PHONE)
    assert "Expected" in str(info.value)


@pytest.mark.parametrize("reply", [
    '*FUNCTION*: Tap *ARGS*: {"point": (348,291)}, {"point": (900,900)}',
    '*FUNCTION*: Type *ARGS*: {"text": "hello"} {"text": "world"}',
    "*FUNCTION*: Home *ARGS*: {}\nthen {'point': (1, 2)}",
    '*FUNCTION*: Tap *ARGS*: {"point": (1,2)} [{"point": (3,4)}]',  # in a list
    '*FUNCTION*: Tap *ARGS*: {"point": (1,2)} {"point": (3,4), "point": (5,6)}',  # key twice
])
def test_qwen2vl_a_second_args_object_is_a_second_action(reply):
    with pytest.raises(ParseError, match="more than one action"):
        get_dialect("qwen2vl", "phone").parse(reply, PHONE)


@pytest.mark.parametrize("reply, text", [
    ('*FUNCTION*: Type *ARGS*: {"text": "hi"}\nThat types {the greeting}.', "hi"),
    # What follows *RESULT* is the env's, not the reply's.
    ('*FUNCTION*: Type *ARGS*: {"text": "hi"} *RESULT*: {"ok": true}', "hi"),
    ('*FUNCTION*: Type *ARGS*: {"text": "{\\"point\\": [1, 2]}"}', '{"point": [1, 2]}'),
])
def test_qwen2vl_braces_that_are_no_second_object_are_left_alone(reply, text):
    assert get_dialect("qwen2vl", "phone").parse(reply, PHONE).text == text


@pytest.mark.parametrize("dialect, call", [
    ("qwen2vl", '*FUNCTION*: Type *ARGS*: {"text": "hi"}'),
    ("qwen25vl", '<tool_call>{"name": "mobile_use", "arguments": {"action": "type", "text": '
                 '"hi"}}</tool_call>'),
])
@pytest.mark.parametrize("tail", ["{" * 20_000, "{'a': {" * 5000, "I'm [{(" * 5000])
def test_a_reply_trailing_thousands_of_brackets_is_read_once(dialect, call, tail, monkeypatch):
    """Each unclosed "{" after the call was read to the end of the text and parsed: quadratic,
    seconds for 20,000. Now the text is walked once, and only a closed object is parsed."""
    from actions.dialects import reply_syntax

    parsed = []
    read = reply_syntax.load_literal
    monkeypatch.setattr(reply_syntax, "load_literal",
                        lambda text: parsed.append(text) or read(text))
    assert get_dialect(dialect, "phone").parse(f"{call}\n{tail}", PHONE).text == "hi"
    assert parsed == []


@pytest.mark.parametrize("dialect, reply", [
    ("uitars", "Action: click(start_box='<|box_start|>(-800,500),(900,524)<|box_end|>')"),
    ("qwen25vl", '<tool_call>{"name": "mobile_use", "arguments": {"action": "click", '
                 '"coordinate": [-2000, 406, 2010, 406]}}</tool_call>'),
    ("qwen2vl", '*FUNCTION*: Tap *ARGS*: {"point": [-100, 0, 300, 0]}'),
    ("qwen2vl", '*FUNCTION*: Tap *ARGS*: {"point": [100, 0, 1300, 10]}'),
])
def test_a_box_with_a_corner_off_the_screen_is_refused_not_centred(dialect, reply):
    with pytest.raises(ParseError, match="outside the screen"):
        get_dialect(dialect, "phone").parse(reply, PHONE)


def test_a_box_on_the_screen_is_its_centre():
    dialect = get_dialect("qwen2vl", "phone")
    box = dialect.parse('*FUNCTION*: Tap *ARGS*: {"point": [100, 0, 300, 10]}', PHONE)
    assert box == dialect.parse('*FUNCTION*: Tap *ARGS*: {"point": (200, 5)}', PHONE)


@pytest.mark.parametrize("reply, text", [
    # A call written inside the typed text is text, not a second action.
    ('<tool_call>{"name": "mobile_use", "arguments": {"action": "type", "text": '
     '"{\\"name\\": \\"mobile_use\\", \\"arguments\\": {}}"}}</tool_call>',
     '{"name": "mobile_use", "arguments": {}}'),
    # Braces after the call that are no call object are not a second action.
    (f"<tool_call>\n{TYPE_CALL}\n</tool_call>\nThat types {{the city}}.", "Ankara"),
])
def test_qwen25vl_one_call_with_braces_around_is_still_one_action(reply, text):
    assert get_dialect("qwen25vl", "phone").parse(reply, PHONE).text == text


@pytest.mark.parametrize("fence", ["```", "```python", "  ```  ", "```json"])
def test_strip_fences_removes_only_the_wrapping_fence(fence):
    inner = f"Action: type(content='Here:\n{fence}\nprint(1)\n```\nThanks')"
    assert strip_fences(f"```\n{inner}\n```\n") == inner
    assert strip_fences(f"\n  ```json\n{inner}") == inner
    assert strip_fences(inner) == inner


FENCED_LINES = st.lists(
    st.sampled_from(["```", "```python", "  ```", "```json ", "print(1)", "", "Here:", "a b"]),
    min_size=1, max_size=8,
).map("\n".join)


def _type_reply(name: str, text: str) -> str:
    if name == "uitars":  # content with real newlines, as UI-TARS writes long text
        return f"Thought: paste the snippet.\nAction: type(content='{text}')"
    if name == "qwen2vl":  # a triple-quoted Python string
        return f'Paste the snippet.\n*FUNCTION*: Type *ARGS*: {{"text": """{text}"""}}'
    return ('Paste the snippet.\n<tool_call>\n{"name": "mobile_use", "arguments": {"action": '
            f'"type", "text": """{text}"""}}}}\n</tool_call>')


@pytest.mark.parametrize("name", DIALECTS)
@settings(max_examples=100, deadline=None)
@given(text=FENCED_LINES, wrapped=st.booleans())
def test_typed_text_keeps_its_fence_lines(name, text, wrapped):
    assume(text.strip() and not text.endswith(" "))
    reply = _type_reply(name, text)
    if wrapped:  # a fence around the whole reply goes; the ones inside the text stay
        reply = f"```\n{reply}\n```"
    action = get_dialect(name, "phone").parse(reply, PHONE)
    assert (action.kind, action.text) == ("type", text)


@pytest.mark.parametrize("name, reply", [
    ("uitars", "```\nThought: t\nAction: press_home()\n```"),
    ("uitars", "Thought: t\n```\nAction: press_home()\n```"),  # the action part fenced
    ("uitars", "Thought: t\nAction:\n```\npress_home()\n```"),
    ("qwen2vl", "Go home.\n```\n*FUNCTION*: Home\n```"),
    ("qwen2vl", '*FUNCTION*: Terminate *ARGS*:\n```json\n{"status": "success"}\n```'),
    ("qwen25vl", f"<tool_call>\n```json\n{HOME_CALL}\n```\n</tool_call>"),
    ("qwen25vl", f"Go home.\n```json\n<tool_call>\n{HOME_CALL}\n</tool_call>\n```"),
])
def test_a_fence_around_the_reply_or_its_action_is_still_read_through(name, reply):
    assert get_dialect(name, "phone").parse(reply, PHONE).kind in ("home", "terminate")


@pytest.mark.parametrize("dialect, reply, keys", [
    ("qwen25vl", '<tool_call>{"name": "computer_use", "arguments": {"action": "key", '
                 '"keys": "ctrl++"}}</tool_call>', ["ctrl", "+"]),
    ("qwen25vl", '<tool_call>{"name": "computer_use", "arguments": {"action": "key", '
                 '"keys": "ctrl shift +"}}</tool_call>', ["ctrl", "shift", "+"]),
    ("qwen2vl", '*FUNCTION*: Hotkey *ARGS*: {"keys": "ctrl++"}', ["ctrl", "+"]),
    ("qwen2vl", '*FUNCTION*: Hotkey *ARGS*: {"keys": "ctrl + c"}', ["ctrl", "c"]),
    ("qwen2vl", '*FUNCTION*: Hotkey *ARGS*: {"keys": "Control+Shift+T"}',
     ["Control", "Shift", "T"]),
])
def test_a_plus_key_in_a_key_string_is_kept(dialect, reply, keys):
    """A '+' joins two keys; any other '+' is the key (ctrl++ zooms in, it is not ctrl alone)."""
    action = get_dialect(dialect, "computer").parse(reply, Screen(1280, 800))
    assert action.keys == keys


@pytest.mark.parametrize("reply", [
    "Action: type(content='print('hi')')",
    "Action: type(content='the 'Tim's pick' (aka 'best')')",
    "Action: type(content='abc') and then press enter",
])
def test_a_uitars_call_followed_by_more_text_on_its_line_is_refused(reply):
    """Read up to the first quote that could close it, the content would be cut short
    ("print('hi"): the reply is refused rather than typing a text that was not written."""
    with pytest.raises(ParseError, match="text follows the call on its line"):
        get_dialect("uitars", "phone").parse(reply, Screen(1080, 2400))
    escaped = get_dialect("uitars", "phone").parse(
        "Action: type(content='print(\\'hi\\')')", Screen(1080, 2400))
    assert escaped.text == "print('hi')"
