"""Peer conformance: our UI-TARS parsers agree with the ``ui-tars`` package on a real corpus.

``parse_action_to_structure_output(text, factor, origin_resized_height, origin_resized_width,
model_type)`` with factor=1000 and a model_type other than "qwen25vl" returns boxes as fractions
``[x1, y1, x2, y2]`` of the image (each [0, 1000] value divided by 1000). We scale the box centre
by the screen size and require our pixel to be within one pixel of it.

The peer reads text decoded with ``skip_special_tokens=True``, which drops ``<|box_start|>`` and
``<|box_end|>``; we hand it the text without them, as a decoder would. Ours reads both forms.
"""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path

import pytest
import ui_tars.action_parser
from hypothesis import assume, given, settings
from hypothesis import strategies as st  # the peer: a test-only dependency (the [test] extra)

from actions.dialects import ParseError, get_dialect
from core.actions import Click
from core.geometry import Screen

CORPUS = [
    json.loads(line)
    for line in (Path(__file__).parent / "data" / "uitars_corpus.jsonl").read_text().splitlines()
]
#: Where we disagree with the peer on purpose.
DISAGREE = {
    "c_two_actions": "the peer returns both calls; a step here is exactly one action, so we raise "
    "ParseError and the model is told to write one",
    "c_point_float": "the peer's <point> pattern takes integers only and then fails on the text; "
    "we accept float coordinates, as models write them",
}
PEER_KIND = {
    "click": ("tap", "click"), "left_single": ("tap", "click"), "left_double": "double_click",
    "right_single": "right_click", "hover": "move", "long_press": "long_press",
    "drag": ("swipe", "drag"), "type": "type", "scroll": "scroll", "open_app": "open_app",
    "press_home": "home", "press_back": "back", "wait": "wait",
}


def test_peer_signature_is_the_one_we_call():
    params = inspect.signature(ui_tars.action_parser.parse_action_to_structure_output).parameters
    assert list(params)[:5] == [
        "text", "factor", "origin_resized_height", "origin_resized_width", "model_type"
    ]


def test_corpus_covers_every_action_and_form():
    texts = "\n".join(r["text"] for r in CORPUS)
    assert len(CORPUS) >= 50
    for call in ("click(", "left_double(", "right_single(", "long_press(", "type(", "scroll(",
                 "drag(", "hotkey(", "press_home(", "press_back(", "open_app(", "wait(",
                 "finished(", "<|box_start|>", "),(", "<point>", "\\'", '\\"'):
        assert call in texts, call
    assert any(not r["text"].isascii() for r in CORPUS)


def _peer(row: dict) -> list[dict]:
    w, h = row["screen"]
    text = row["text"].replace("<|box_start|>", "").replace("<|box_end|>", "")
    peer = ui_tars.action_parser.parse_action_to_structure_output
    return peer(text, 1000, h, w, model_type="qwen2vl")


def _centre(value: str, w: int, h: int) -> tuple[float, float]:
    x1, y1, x2, y2 = ast.literal_eval(value)
    return (x1 + x2) / 2 * w, (y1 + y2) / 2 * h


@pytest.mark.parametrize(
    "row", [r for r in CORPUS if r["id"] not in DISAGREE], ids=lambda r: r["id"]
)
def test_we_agree_with_the_ui_tars_package(row):
    w, h = row["screen"]
    mobile = row["device"] == "phone"
    ours = get_dialect("uitars", "phone" if mobile else "computer").parse(
        row["text"], Screen(w, h)
    )
    (peer,) = _peer(row)
    kind, inputs = peer["action_type"], peer["action_inputs"]

    if kind == "finished":
        content = inputs.get("content", "")
        expected = ("answer", content) if content else ("terminate", "success")
        got = (ours.kind, ours.text) if ours.kind == "answer" else (ours.kind, ours.status)
        assert got == expected
        return
    if kind == "call_user":
        assert (ours.kind, ours.status) == ("terminate", "failure")
        return
    if kind == "hotkey":
        keys = inputs["key"].split()
        assert (ours.keys if ours.kind == "hotkey" else [ours.key]) == keys
        assert ours.kind == ("key" if len(keys) == 1 else "hotkey")
        return

    mapped = PEER_KIND[kind]
    if isinstance(mapped, tuple):  # the peer's click and drag mean tap and swipe on a phone
        mapped = mapped[0] if mobile else mapped[1]
    assert ours.kind == mapped
    if "start_box" in inputs:
        px, py = _centre(inputs["start_box"], w, h)
        assert abs(ours.x - px) <= 1 and abs(ours.y - py) <= 1, (ours, px, py)
    if "end_box" in inputs:
        px, py = _centre(inputs["end_box"], w, h)
        assert abs(ours.x2 - px) <= 1 and abs(ours.y2 - py) <= 1, (ours, px, py)
    if kind == "type":
        assert ours.text == inputs["content"]
    if kind == "scroll":
        assert ours.direction == inputs["direction"]
    if kind == "open_app":
        assert ours.app == inputs["app_name"]


def test_two_actions_disagreement_is_real():
    row = next(r for r in CORPUS if r["id"] == "c_two_actions")
    assert len(_peer(row)) == 2
    with pytest.raises(ParseError, match="more than one action"):
        get_dialect("uitars", "computer").parse(row["text"], Screen(*row["screen"]))


def test_float_point_disagreement_is_real():
    row = next(r for r in CORPUS if r["id"] == "c_point_float")
    with pytest.raises(ValueError):
        _peer(row)
    action = get_dialect("uitars", "computer").parse(row["text"], Screen(*row["screen"]))
    # <point>10.5 20.5</point> on 1920x1080: 10.5 * 1.92 = 20.16 -> 20, 20.5 * 1.08 = 22.14 -> 22
    assert (action.kind, action.x, action.y) == ("click", 20, 22)


# UI-TARS-1.5: points are pixels of the smart-resized screenshot (the peer's qwen25vl mode) ------
PEER_MIN_PIXELS = 100 * 28 * 28  # the peer's defaults, given to our Screen so both resize alike
PEER_MAX_PIXELS = 16384 * 28 * 28


def _peer15(text: str, screen: Screen) -> list[dict]:
    # In qwen25vl mode the peer divides each number by the smart-resized side of the screen.
    return ui_tars.action_parser.parse_action_to_structure_output(
        text, 1000, screen.height, screen.width, model_type="qwen25vl",
        max_pixels=screen.max_pixels, min_pixels=screen.min_pixels,
    )


@pytest.mark.parametrize("text, size", [
    ("Thought: open File\nAction: click(start_box='<|box_start|>(23,12)<|box_end|>')", (1920, 1080)),
    ("Thought: save\nAction: click(start_box='(612,845)')", (1920, 1080)),
    ("Action: left_double(start_box='(1800,40)')", (2560, 1440)),
    ("Action: drag(start_box='(100,200)', end_box='(900,700)')", (1280, 800)),
    ("Action: scroll(start_box='(640,400)', direction='down')", (1280, 800)),
    ("Action: click(point='<point>1091 2407</point>')", (1080, 2400)),
    ("Action: right_single(start_box='(10,10,30,50)')", (1366, 768)),
])
def test_uitars15_points_agree_with_the_peer_in_qwen25vl_mode(text, size):
    screen = Screen(*size, min_pixels=PEER_MIN_PIXELS, max_pixels=PEER_MAX_PIXELS)
    ours = get_dialect("uitars15", "computer").parse(text, screen)
    (peer,) = _peer15(text.replace("<|box_start|>", "").replace("<|box_end|>", ""), screen)
    inputs = peer["action_inputs"]
    px, py = _centre(inputs["start_box"], screen.width, screen.height)
    assert abs(ours.x - px) <= 1 and abs(ours.y - py) <= 1, (ours, px, py)
    if "end_box" in inputs:
        px, py = _centre(inputs["end_box"], screen.width, screen.height)
        assert abs(ours.x2 - px) <= 1 and abs(ours.y2 - py) <= 1, (ours, px, py)


@settings(max_examples=100, deadline=None)
@given(width=st.integers(200, 3000), height=st.integers(200, 3000), data=st.data())
def test_uitars15_renders_what_the_peer_reads_back(width, height, data):
    screen = Screen(width, height, min_pixels=PEER_MIN_PIXELS, max_pixels=PEER_MAX_PIXELS)
    x, y = data.draw(st.integers(0, width - 1)), data.draw(st.integers(0, height - 1))
    text = get_dialect("uitars15", "computer").render_action(Click(x=x, y=y), screen)
    (peer,) = _peer15(text, screen)
    px, py = _centre(peer["action_inputs"]["start_box"], width, height)
    assert abs(x - px) <= 1 and abs(y - py) <= 1, (text, x, y, px, py)


# A call only named in the thought is never performed -------------------------------------------
MENTIONED_CALLS = ["finished()", "press_home()", "call_user()", "press_back()",
                   "finished(content='done')", "click(start_box='(500,500)')", "wait()",
                   "type(content='hello')", "hotkey(key='enter')"]


@pytest.mark.parametrize("text", [
    "Thought: The task is not done, so I must not call finished() yet. Let me look again.",
    "Thought: Last time press_home() lost my draft; I need to go back into the note.",
    "I should not press_back() here.",
    "Thought: click(start_box='(500,500)')",
])
@pytest.mark.parametrize("form_factor", ["phone", "computer"])
def test_a_call_in_a_reply_without_action_is_refused_as_by_the_peer(text, form_factor):
    with pytest.raises(ParseError, match="no `Action:` line"):
        get_dialect("uitars", form_factor).parse(text, Screen(1080, 2400))
    with pytest.raises(AssertionError):  # the peer asserts "Action:" in text
        ui_tars.action_parser.parse_action_to_structure_output(text, 1000, 2400, 1080)


@settings(max_examples=200, deadline=None)
@given(before=st.text(max_size=40), call=st.sampled_from(MENTIONED_CALLS),
       after=st.text(max_size=40), label=st.sampled_from(["Thought: ", "", "Reflection: "]))
def test_a_call_mentioned_in_a_thought_is_never_performed(before, call, after, label):
    assume("Action:" not in before + after and "`" not in before + after)
    text = f"{label}{before} {call} {after}"
    assume(text.strip() != call)  # the call alone is a reply; anything else is a thought
    with pytest.raises(ParseError):
        get_dialect("uitars", "phone").parse(text, Screen(1080, 2400))


@pytest.mark.parametrize("text, kind", [
    ("finished()", "terminate"),
    ("  press_home()\n", "home"),
    ("```\nclick(start_box='(500,500)')\n```", "tap"),
])
def test_a_reply_that_is_only_a_call_is_read(text, kind):
    assert get_dialect("uitars", "phone").parse(text, Screen(1080, 2400)).kind == kind


@pytest.mark.parametrize("text", [
    "Thought: I must not write Action: finished() yet, the form is still empty.",
    "Thought: the docs say Action: press_home() leaves the app. I stay here.",
])
def test_an_action_inside_a_line_must_end_the_reply(text):
    with pytest.raises(ParseError, match="inside a line must end the reply"):
        get_dialect("uitars", "phone").parse(text, Screen(1080, 2400))


@pytest.mark.parametrize("text, kind", [
    ("Thought: all done. Action: finished()", "terminate"),
    ("I will go home. Action: press_home()  \n", "home"),
])
def test_an_action_inside_a_line_that_ends_the_reply_is_read(text, kind):
    assert get_dialect("uitars", "phone").parse(text, Screen(1080, 2400)).kind == kind
