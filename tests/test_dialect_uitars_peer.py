"""Peer conformance: our UI-TARS parser agrees with the ``ui-tars`` package on a real corpus.

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
import ui_tars.action_parser  # the peer: a test-only dependency (the [test] extra)

from actions.dialects import ParseError, get_dialect
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
