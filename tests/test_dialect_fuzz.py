"""Fuzz: whatever text comes in, parse returns an on-screen Action or raises ParseError.

Any other exception escaping parse() is a bug. Four sources of text: arbitrary unicode, valid
replies from the corpora mutated (cut, spliced, duplicated, numbers changed), text built from the
formats' own fragments, and well-formed calls of each format whose argument values are arbitrary
JSON (huge, infinite and NaN numbers, lists, nulls), which reach the argument checks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actions.dialects import ParseError, get_dialect
from core.actions import check_on_screen
from core.geometry import Screen

DATA = Path(__file__).parent / "data"
DIALECTS = ("qwen2vl", "qwen25vl", "uitars")
SCREENS = [Screen(1080, 2400), Screen(1920, 1080), Screen(640, 480, max_pixels=200_704)]
FUZZ = settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
# The structured sources cost more per example; together with the 2,000 arbitrary texts each
# dialect still sees 4,500 inputs, and the whole file stays near half a minute on 2 cores.
FUZZ_MORE = settings(FUZZ, max_examples=1000)
FUZZ_CALLS = settings(FUZZ, max_examples=500)


def _replies() -> list[str]:
    texts = []
    for path in sorted(DATA.glob("*_replies.jsonl")) + [DATA / "uitars_corpus.jsonl"]:
        texts += [json.loads(line)["text"] for line in path.read_text().splitlines()]
    return [t for t in texts if t]


REPLIES = _replies()
FRAGMENTS = [
    "*FUNCTION*:", "*ARGS*:", "*RESULT*:", "*RETURN*:", "✿FUNCTION✿", "✿ARGS✿", "✿RESULT✿",
    "Tap", "Swipe", "Type", "Terminate", "Scroll", "Hotkey", "Wait", '{"point": ', "'point': ",
    '"start": ', '"keys": ', '"seconds": ', '"status": "success"', '"direction": "down"',
    "<tool_call>", "</tool_call>", '{"name": "mobile_use", "arguments": ', '"computer_use"',
    '"action": "click"', '"action": "scroll"', '"action": "key"', '"action": "long_press"',
    '"coordinate": ', '"coordinate2": ', '"start_coordinate": ', '"pixels": ', '"time": ',
    '"button": "Back"', '"text": ', "Thought: ", "Action: ", "click(", "drag(", "scroll(",
    "type(", "hotkey(", "finished(", "call_user()", "start_box=", "end_box=", "point=",
    "content=", "direction=", "key=", "<|box_start|>", "<|box_end|>", "<point>", "</point>",
    "<bbox>", "'", '"', "\\", "\\'", "(", ")", "[", "]", "{", "}", ",", ":", " ", "\n", "```",
    "1e308", "1e999", "-0", '"time": ', '["a", ""]', '"name": ["x"]', "9" * 5000, "-1", "0",
    "999", "1000", "1000.0001", "nan", "inf", "NaN", "Infinity", "True",
    "None", "null", "__import__('os')", "1" * 400, "[" * 300, "{" * 300, "(" * 300, "\x00",
]


@st.composite
def mutated(draw) -> str:
    text = draw(st.sampled_from(REPLIES))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["cut", "insert", "dup", "truncate", "number"]))
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, len(text)))
        if op == "cut":
            text = text[:i] + text[j:]
        elif op == "insert":
            piece = draw(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=5)))
            text = text[:i] + piece + text[i:]
        elif op == "dup":
            text = text[:j] + text[i:j] + text[j:]
        elif op == "truncate":
            text = text[:i]
        else:
            number = draw(st.one_of(st.integers(-10**6, 10**6).map(str),
                                    st.floats(allow_nan=True).map(repr)))
            text = text[:i] + number + text[j:]
    return text


fragments = st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("".join)

values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats() | st.text(max_size=8)
    | st.sampled_from(["(1,2)", "(5, 5, 9, 9)", "up", "Back", "success", "ctrl c", ""]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                               max_size=3),
    max_leaves=8,
)
QWEN2VL_NAMES = ["Tap", "LongPress", "Swipe", "Click", "Drag", "Scroll", "Type", "Key", "Hotkey",
                 "Home", "OpenApp", "Wait", "Answer", "Terminate", "Navigate", "Move"]
QWEN2VL_PARAMS = ["point", "start", "end", "text", "key", "keys", "direction", "seconds",
                  "status", "message", "app", "url"]
QWEN25VL_ACTIONS = ["key", "click", "long_press", "swipe", "type", "system_button", "open",
                    "wait", "terminate", "answer", "mouse_move", "left_click", "left_click_drag",
                    "right_click", "double_click", "scroll", "middle_click"]
QWEN25VL_PARAMS = ["coordinate", "coordinate2", "start_coordinate", "text", "keys", "pixels",
                   "time", "button", "status"]
UITARS_NAMES = ["click", "left_double", "right_single", "hover", "long_press", "drag", "hotkey",
                "type", "scroll", "open_app", "press_home", "wait", "finished", "call_user"]
UITARS_PARAMS = ["start_box", "end_box", "point", "start_point", "end_point", "content", "key",
                 "direction", "app_name"]


def _py(value) -> str:
    return repr(value)  # Python-literal spelling: the qwen2vl parser's fallback reads it


@st.composite
def calls(draw, name: str) -> str:
    if name == "qwen2vl":
        args = draw(st.dictionaries(st.sampled_from(QWEN2VL_PARAMS), values, max_size=3))
        body = "{" + ", ".join(f"{k!r}: {_py(v)}" for k, v in args.items()) + "}"
        return f"*FUNCTION*: {draw(st.sampled_from(QWEN2VL_NAMES))} *ARGS*: {body}"
    if name == "qwen25vl":
        args = draw(st.dictionaries(st.sampled_from(QWEN25VL_PARAMS), values, max_size=3))
        args["action"] = draw(st.sampled_from(QWEN25VL_ACTIONS) | values)
        tool = draw(st.sampled_from(["mobile_use", "computer_use"]) | values)
        return "<tool_call>" + _py({"name": tool, "arguments": args}) + "</tool_call>"
    args = draw(st.dictionaries(st.sampled_from(UITARS_PARAMS), st.text(max_size=12) | values.map(
        str), max_size=3))
    body = ", ".join(f"{k}={_py(v)}" for k, v in args.items())
    return f"Thought: t\nAction: {draw(st.sampled_from(UITARS_NAMES))}({body})"


def check(name: str, text: str, screen: Screen, mobile: bool) -> None:
    dialect = get_dialect(name, "phone" if mobile else "computer")
    try:
        action = dialect.parse(text, screen)
    except ParseError as exc:
        assert str(exc)  # always says something
        return
    check_on_screen(action, screen.size)


@pytest.mark.parametrize("name", DIALECTS)
@FUZZ
@given(text=st.text(), screen=st.sampled_from(SCREENS), mobile=st.booleans())
def test_arbitrary_text_only_raises_parse_error(name, text, screen, mobile):
    check(name, text, screen, mobile)


@pytest.mark.parametrize("name", DIALECTS)
@FUZZ_MORE
@given(text=mutated(), screen=st.sampled_from(SCREENS), mobile=st.booleans())
def test_mutated_replies_only_raise_parse_error(name, text, screen, mobile):
    check(name, text, screen, mobile)


@pytest.mark.parametrize("name", DIALECTS)
@FUZZ_MORE
@given(text=fragments, screen=st.sampled_from(SCREENS), mobile=st.booleans())
def test_text_from_format_fragments_only_raises_parse_error(name, text, screen, mobile):
    check(name, text, screen, mobile)


@pytest.mark.parametrize("name", DIALECTS)
@FUZZ_CALLS
@given(data=st.data(), screen=st.sampled_from(SCREENS), mobile=st.booleans())
def test_calls_with_arbitrary_arguments_only_raise_parse_error(name, data, screen, mobile):
    check(name, data.draw(calls(name)), screen, mobile)
