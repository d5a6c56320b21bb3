"""What each dialect shows the model: system prompts and conversations with history."""

from __future__ import annotations

import json
import re

import pytest

from actions.dialects import DIALECTS, ImagePart, PastStep, TextPart, get_dialect
from actions.dialects.qwen2vl import TABLE as QWEN2VL_TABLE
from core.geometry import Screen
from core.kinds import KINDS

PHONE = Screen(1080, 2400)
DESKTOP = Screen(1280, 800)


def flat(prompt) -> list[tuple[str, str, object]]:
    """(role, part type, value) for every part, in order."""
    return [
        (m.role, p.type, p.index if isinstance(p, ImagePart) else p.text)
        for m in prompt.messages
        for p in m.content
    ]


def steps(n: int) -> list[PastStep]:
    return [PastStep(f"reply {i}", f"feedback {i}", image=i) for i in range(n)]


def test_registry():
    assert set(DIALECTS) == {"qwen2vl", "qwen25vl", "uitars", "uitars15"}
    with pytest.raises(ValueError, match="qwen2vl, qwen25vl, uitars"):
        get_dialect("gpt", "phone")


# qwen2vl ------------------------------------------------------------------------------------
def test_qwen2vl_system_prompt_follows_the_paper():
    text = get_dialect("qwen2vl", "phone").system_prompt(["tap", "type", "terminate"], PHONE)
    assert re.search(r"^### Tap\n\nTap: .+ Parameters: \[\{\"name\": \"point\", \"description\": "
                     r".+, \"required\": True\}\]$", text, re.MULTILINE)
    assert "### Type" in text and "### Terminate" in text and "### Click" not in text
    assert "## Continuously take action until the task is completed." in text
    for line in ("*FUNCTION*: The action to take, should be one of {Tap,Type,Terminate}.",
                 "*ARGS*: The input of the action.", "*RESULT*: Action results.",
                 "*RETURN*: Reply based on action results."):
        assert line in text
    assert "1000" in text  # the coordinate convention is stated


def test_qwen2vl_stops_at_result():
    assert set(get_dialect("qwen2vl", "phone").stop) == {"*RESULT*", "✿RESULT✿"}


def test_qwen2vl_first_step_is_a_user_turn():
    prompt = get_dialect("qwen2vl", "phone").build_prompt("open the clock", [], 7, KINDS["phone"],
                                                          PHONE)
    assert [m.role for m in prompt.messages] == ["system", "user"]
    assert prompt.continue_final_message is False
    assert flat(prompt)[1:] == [("user", "text", "open the clock"), ("user", "image", 7)]


def test_qwen2vl_history_continues_one_assistant_turn():
    prompt = get_dialect("qwen2vl", "phone").build_prompt("goal", steps(2), 2, KINDS["phone"],
                                                          PHONE)
    assert [m.role for m in prompt.messages] == ["system", "user", "assistant"]
    assert prompt.continue_final_message is True
    assistant = flat(prompt)[3:]
    text = "".join(str(v) if t == "text" else f"<img{v}>" for _, t, v in assistant)
    assert text == ("reply 0\n*RESULT*: feedback 0\n<img1>\n*RETURN*: reply 1\n"
                    "*RESULT*: feedback 1\n<img2>\n*RETURN*: ")


def test_qwen2vl_each_step_only_extends_the_previous_prompt():
    # What makes the KV cache reusable: prompt k is a prefix of prompt k + 1.
    dialect = get_dialect("qwen2vl", "phone")
    history = steps(4)
    previous = None
    for k in range(4):
        prompt = flat(dialect.build_prompt("goal", history[:k], k, KINDS["phone"], PHONE))
        if previous is not None:
            assert prompt[: len(previous)] == previous
        previous = prompt


def test_qwen2vl_dropped_screenshots_become_text():
    history = [PastStep("r0", "ok", image=None), PastStep("r1", "ok", image=None)]
    parts = flat(get_dialect("qwen2vl", "phone").build_prompt("g", history, 5, KINDS["phone"],
                                                              PHONE))
    assert [v for _, t, v in parts if t == "image"] == [5]
    assert any("screenshot 1 not shown" in str(v) for _, _, v in parts)


# qwen25vl -----------------------------------------------------------------------------------
def _tool(text: str) -> dict:
    return json.loads(text.split("<tools>\n", 1)[1].split("\n</tools>", 1)[0])


def test_qwen25vl_mobile_prompt_states_the_resized_resolution():
    text = get_dialect("qwen25vl", "phone").system_prompt(KINDS["phone"], PHONE)
    tool = _tool(text)["function"]
    assert tool["name"] == "mobile_use"
    assert "The screen's resolution is 1092x2408." in tool["description"]
    actions = tool["parameters"]["properties"]["action"]["enum"]
    # The cookbook's actions, then the phone's scroll (an extension, docs/actions.md).
    assert actions == ["key", "click", "long_press", "swipe", "type", "system_button", "open",
                       "scroll", "wait", "answer", "terminate"]
    assert tool["parameters"]["properties"]["button"]["enum"] == ["Back", "Home", "Menu", "Enter"]
    assert '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>' \
        in text


def test_qwen25vl_desktop_prompt_uses_computer_use():
    text = get_dialect("qwen25vl", "computer").system_prompt(KINDS["computer"], DESKTOP)
    tool = _tool(text)["function"]
    assert tool["name"] == "computer_use"
    assert "The screen's resolution is 1288x812." in tool["description"]
    actions = tool["parameters"]["properties"]["action"]["enum"]
    assert {"left_click", "double_click", "right_click", "mouse_move", "left_click_drag",
            "scroll", "key", "type"} <= set(actions)
    assert "system_button" not in actions


def test_qwen25vl_prompt_lists_only_the_envs_actions():
    tool = _tool(get_dialect("qwen25vl", "phone").system_prompt(["tap", "terminate"], PHONE))["function"]
    assert tool["parameters"]["properties"]["action"]["enum"] == ["click", "terminate"]
    assert set(tool["parameters"]["properties"]) == {"action", "coordinate", "status"}


def test_qwen25vl_history_is_text_then_the_current_screenshot():
    history = [PastStep('<tool_call>\n{"name": "mobile_use", "arguments": {"action": "open", '
                        '"text": "Clock"}}\n</tool_call>', "opened", image=None),
               PastStep("Thinking", "could not parse", image=4)]
    prompt = get_dialect("qwen25vl", "phone").build_prompt("set an alarm", history, 9,
                                                           KINDS["phone"], PHONE)
    assert [m.role for m in prompt.messages] == ["system", "user"]
    parts = flat(prompt)[1:]
    assert parts[-1] == ("user", "image", 9)
    text = "".join(str(v) for _, t, v in parts if t == "text")
    assert text.startswith("The user query: set an alarm\nTask progress")
    assert 'Step 1: {"name": "mobile_use", "arguments": {"action": "open", "text": "Clock"}}; ' \
           "result: opened" in text
    assert "Step 2: Thinking; result: could not parse" in text
    assert [v for _, t, v in parts if t == "image"] == [4, 9]


# uitars -------------------------------------------------------------------------------------
def test_uitars_templates():
    computer = get_dialect("uitars", "computer").system_prompt(KINDS["computer"], DESKTOP)
    phone = get_dialect("uitars", "phone").system_prompt(KINDS["phone"], PHONE)
    assert computer.startswith("You are a GUI agent.")
    assert "left_double(start_box='<|box_start|>(x1,y1)<|box_end|>')" in computer
    assert "hotkey(key='')" in computer and "press_home()" not in computer
    assert "press_home()" in phone and "open_app(app_name='')" in phone
    assert "long_press(start_box=" in phone and "left_double" not in phone
    for text in (computer, phone):
        assert "finished(content='xxx')" in text
        assert text.rstrip().endswith("## User Instruction\n{instruction}")


def test_uitars_history_alternates_screenshots_and_replies():
    history = [PastStep("Thought: a\nAction: press_home()", "", image=None),
               PastStep("Thought: b\nAction: wait()", "", image=3),
               PastStep("Action: oops()", "unknown action 'oops'", image=4)]
    prompt = get_dialect("uitars", "phone").build_prompt("call mom", history, 5,
                                                             KINDS["phone"], PHONE)
    roles = [m.role for m in prompt.messages]
    assert roles == ["user", "assistant", "user", "assistant", "user", "assistant", "user"]
    first = prompt.messages[0].text()
    assert first.endswith("## User Instruction\ncall mom\n") and "{instruction}" not in first
    assert prompt.messages[1].text() == "Thought: a\nAction: press_home()"
    assert prompt.messages[2].content == [ImagePart(3)]
    assert prompt.messages[4].content == [ImagePart(4)]
    assert prompt.messages[6].content == [TextPart("Result: unknown action 'oops'"), ImagePart(5)]
    assert prompt.continue_final_message is False


def test_uitars_replies_without_a_screenshot_between_are_turns_of_their_own(tiny_processor):
    """As UI-TARS's agent sends them: each reply in its own assistant turn. Run together, two
    replies read as one text, and a token spelled across them was a turn end in the prompt."""
    from agent.policies.base import hf_messages

    history = [PastStep("Thought: a\nAction: wait() <|im_", "", image=None),
               PastStep("end|>Thought: b\nAction: press_home()", "", image=None),
               PastStep("Action: wait()", "", image=2)]
    prompt = get_dialect("uitars", "phone").build_prompt("call mom", history, 3,
                                                         KINDS["phone"], PHONE)
    assert [m.role for m in prompt.messages] == ["user", "assistant", "assistant", "user",
                                                 "assistant", "user"]
    assert [m.text() for m in prompt.messages if m.role == "assistant"] == [
        step.response for step in history]
    text = tiny_processor.apply_chat_template(hf_messages(prompt))
    # The chat's own turns, each ended once: the reply's spelled pieces end none.
    assert text.count("<|im_end|>") == text.count("<|im_start|>") - 1 == 7  # system added
    assert "Action: wait() <|im_<|im_end|>\n<|im_start|>assistant\nend|>Thought: b" in text


def test_uitars_click_means_tap_on_a_phone():
    reply = "Action: click(start_box='(500,500)')"
    assert get_dialect("uitars", "phone").parse(reply, PHONE).kind == "tap"
    assert get_dialect("uitars", "computer").parse(reply, PHONE).kind == "click"
    assert get_dialect("uitars", "computer").parse(reply, PHONE).kind == "click"


@pytest.mark.parametrize("name", sorted(DIALECTS))
@pytest.mark.parametrize("form_factor", sorted(KINDS))
def test_every_word_the_parser_takes_is_shown(name, form_factor):
    """A word the parser turns into an offered action is one the prompt teaches (UI-TARS's
    call_user(), the way to give up, was parsed but never shown)."""
    dialect = get_dialect(name, form_factor)
    screen = PHONE if form_factor == "phone" else DESKTOP
    prompt = dialect.system_prompt(KINDS[form_factor], screen)
    table = getattr(dialect, "table", QWEN2VL_TABLE)  # qwen2vl has one table for every screen
    missing = {e.name for e in table.listed(KINDS[form_factor])
               if not re.search(rf"\b{e.name}\b", prompt)}
    assert not missing
