"""What a dialect writes must be what it reads and what the model wrote.

- render_action never drops a field silently: a scroll's ``amount`` comes back from parse, or
  render_action refuses it (ValueError), in every dialect on every form factor.
- Qwen2.5-VL's history line shows the call exactly as the model wrote it, even when the thought
  names ``<tool_call>`` or typed text holds ``</tool_call>`` (the parser reads those replies
  right, so the history must show the same call).
"""

from __future__ import annotations

import json

import pytest

from actions.dialects import DIALECTS, PastStep, get_dialect
from core.actions import ACTION_CLASSES
from core.geometry import Screen
from core.kinds import FORM_FACTORS

SCREEN = Screen(1080, 2400)
Scroll = ACTION_CLASSES["scroll"]
TypeText = ACTION_CLASSES["type"]


@pytest.mark.parametrize("name", DIALECTS)
@pytest.mark.parametrize("form_factor", FORM_FACTORS)
@pytest.mark.parametrize("at", [{}, {"x": 540, "y": 1200}])
def test_a_scroll_amount_is_read_back_or_refused_never_dropped(name, form_factor, at):
    dialect = get_dialect(name, form_factor)
    action = Scroll(direction="down", amount=600, **at)
    try:
        text = dialect.render_action(action, SCREEN)
    except ValueError:
        return  # the format cannot carry it, and says so
    parsed = dialect.parse(text, SCREEN)
    assert parsed.kind == "scroll" and parsed.direction == "down", text
    assert parsed.amount is not None and abs(parsed.amount - 600) <= 3, (text, parsed)


@pytest.mark.parametrize("name", ["uitars", "uitars15"])
@pytest.mark.parametrize("form_factor", FORM_FACTORS)
def test_uitars_scroll_has_no_distance(name, form_factor):
    dialect = get_dialect(name, form_factor)
    with pytest.raises(ValueError, match="amount"):
        dialect.render_action(Scroll(direction="up", amount=120), SCREEN)
    # Without a distance it is written as UI-TARS writes it.
    assert dialect.parse(dialect.render_action(Scroll(direction="up"), SCREEN), SCREEN) == \
        Scroll(direction="up")


def _history_line(dialect, reply: str) -> str:
    [message] = dialect.render_step(PastStep(reply, "done", None), 0)
    return message.text()


@pytest.mark.parametrize("typed", ["</tool_call>", "a </tool_call> b", "<tool_call>{}"])
def test_qwen25vl_history_shows_the_whole_call_when_text_holds_a_tag(typed):
    dialect = get_dialect("qwen25vl", "phone")
    call = json.dumps({"name": "mobile_use", "arguments": {"action": "type", "text": typed}})
    reply = f"I type it.\n<tool_call>\n{call}\n</tool_call>"
    assert dialect.parse(reply, SCREEN) == TypeText(text=typed)
    assert _history_line(dialect, reply) == f"Step 1: {call}; result: done\n"


def test_qwen25vl_history_shows_the_call_when_the_thought_names_the_tag():
    dialect = get_dialect("qwen25vl", "phone")
    call = '{"name": "mobile_use", "arguments": {"action": "click", "coordinate": [5, 5]}}'
    reply = f"The box reads <tool_call>, so I tap it.\n<tool_call>\n{call}\n</tool_call>"
    assert dialect.parse(reply, SCREEN).kind == "tap"
    assert _history_line(dialect, reply) == f"Step 1: {call}; result: done\n"


def test_qwen25vl_history_reads_tags_in_any_case_as_parse_does():
    dialect = get_dialect("qwen25vl", "phone")
    call = '{"name": "mobile_use", "arguments": {"action": "system_button", "button": "Home"}}'
    reply = f"<TOOL_CALL>\n{call}\n</TOOL_CALL>"
    assert dialect.parse(reply, SCREEN).kind == "home"
    assert _history_line(dialect, reply) == f"Step 1: {call}; result: done\n"


def test_qwen25vl_history_of_a_reply_without_a_call_is_the_reply():
    dialect = get_dialect("qwen25vl", "phone")
    assert _history_line(dialect, "  I am thinking  ") == "Step 1: I am thinking; result: done\n"

