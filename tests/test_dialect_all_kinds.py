"""Every dialect on every env's form factor: each action kind the env supports can be written,
read back and executed; replies are shaped as the released models write them; thoughts are found.
"""

from __future__ import annotations

import re
import time
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import envs.base
from actions.dialects import DIALECTS, get_dialect
from core.actions import ACTION_CLASSES
from core.geometry import Screen
from core.kinds import FORM_FACTORS, KINDS
from tests.agent_fakes import FakePhone

SCREEN = Screen(1080, 2400)  # the fake env's screenshot
_AT = {"x": 300, "y": 700}
#: Ways to fill each kind, tried in order: formats differ in what they carry (UI-TARS waits 5 s,
#: Qwen2.5-VL's computer_use scrolls by an amount, Qwen2-VL's Scroll has none).
SAMPLES: dict[str, list[dict]] = {
    "tap": [_AT], "long_press": [_AT], "click": [_AT], "double_click": [_AT],
    "right_click": [_AT], "move": [_AT],
    "swipe": [{**_AT, "x2": 800, "y2": 1900}], "drag": [{**_AT, "x2": 800, "y2": 1900}],
    "scroll": [{"direction": "down", **_AT}, {"direction": "down", "amount": 600, **_AT}],
    "type": [{"text": "hello"}], "key": [{"key": "volume_up"}],
    "hotkey": [{"keys": ["ctrl", "c"]}], "home": [{}], "back": [{}], "enter": [{}],
    "open_app": [{"app": "Clock"}], "navigate": [{"url": "https://example.com/"}],
    "wait": [{"seconds": 0.01}, {"seconds": 5.0}], "answer": [{"text": "42"}],
    "terminate": [{"status": "success"}],
}


def fake_env(form_factor: str) -> FakePhone:
    """The fake phone, declaring another form factor: the base class refuses foreign kinds."""
    return type(f"Fake{form_factor.title()}", (FakePhone,), {"form_factor": form_factor})()


def render_some(dialect, kind: str):
    """The first sample of ``kind`` the dialect can write, and its text."""
    refusals = []
    for fields in SAMPLES[kind]:
        action = ACTION_CLASSES[kind](**fields)
        try:
            return action, dialect.render_action(action, SCREEN, thought="on it")
        except ValueError as exc:
            refusals.append(str(exc))
    pytest.fail(f"{dialect.name} on a {dialect.form_factor} cannot write {kind}: {refusals}")


@pytest.mark.parametrize("name", DIALECTS)
@pytest.mark.parametrize("form_factor", FORM_FACTORS)
def test_every_kind_of_the_env_is_written_read_and_executed(name, form_factor, monkeypatch):
    # UI-TARS's wait() is 5 s; the env's wait is a plain sleep, not what is under test here.
    monkeypatch.setattr(envs.base, "time", SimpleNamespace(monotonic=time.monotonic,
                                                           sleep=lambda s: None))
    dialect = get_dialect(name, form_factor)
    env = fake_env(form_factor)
    assert set(SAMPLES) >= env.action_kinds
    for kind in sorted(env.action_kinds):
        action, text = render_some(dialect, kind)
        parsed = dialect.parse(text, SCREEN)
        assert parsed.kind == kind, (text, parsed)
        for field, value in action.model_dump().items():
            got = getattr(parsed, field)
            if field in ("x", "y", "x2", "y2") and value is not None:
                assert abs(got - value) <= 1, (field, text, parsed)
            else:
                assert got == value, (field, text, parsed)
        result = env.execute(parsed)
        assert result.ok, (kind, result.message)
        assert dialect.thought(text) == "on it"


@pytest.mark.parametrize("name", ["uitars", "uitars15", "qwen25vl"])
def test_a_browser_click_stays_a_click(name):
    dialect = get_dialect(name, "browser")
    text = dialect.render_action(ACTION_CLASSES["click"](**_AT), SCREEN)
    assert dialect.parse(text, SCREEN).kind == "click"
    assert fake_env("browser").execute(dialect.parse(text, SCREEN)).ok


@pytest.mark.parametrize("name", DIALECTS)
def test_the_browser_prompt_speaks_of_a_browser(name):
    dialect = get_dialect(name, "browser")
    prompt = dialect.system_prompt(KINDS["browser"], SCREEN)
    assert "phone" not in prompt.lower() and "mobile" not in prompt.lower()
    assert "navigate" in prompt.lower()
    if name == "qwen2vl":
        assert "operating a web browser" in prompt


# Model-shaped coordinates -------------------------------------------------------------------
@pytest.mark.parametrize("name", DIALECTS)
@settings(max_examples=150, deadline=None)
@given(data=st.data(), width=st.integers(100, 3000), height=st.integers(100, 3000),
       kind=st.sampled_from(["tap", "click", "drag"]))
def test_rendered_points_are_integers_within_one_pixel(name, data, width, height, kind):
    screen = Screen(width, height)  # the checkpoints' default pixel budget
    form_factor = "phone" if kind == "tap" else "computer"
    dialect = get_dialect(name, form_factor)
    points = {"x": data.draw(st.integers(0, width - 1)), "y": data.draw(st.integers(0, height - 1))}
    if kind == "drag":
        points |= {"x2": data.draw(st.integers(0, width - 1)),
                   "y2": data.draw(st.integers(0, height - 1))}
    action = ACTION_CLASSES[kind](**points)
    text = dialect.render_action(action, screen)
    assert not re.search(r"\d\.\d", text), text  # integers, as the released models write
    parsed = dialect.parse(text, screen)
    for field, value in points.items():
        assert abs(getattr(parsed, field) - value) <= 1, (field, text, parsed)


# Thoughts -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name, text, thought", [
    ("qwen2vl", 'I will tap it.\n*FUNCTION*: Tap *ARGS*: {"point": (1, 2)}', "I will tap it."),
    ("uitars", "Thought: open the app\nAction: click(start_box='(1,2)')", "open the app"),
    ("uitars15", "Thought: open the app\nAction: click(start_box='(1,2)')", "open the app"),
    # One line: an `Action:` inside a line that ends the reply is the action parse reads.
    ("uitars", "Thought: the OK button Action: click(start_box='(900,950)')", "the OK button"),
    # A line's `Action:` comes first, even after one inside a line.
    ("uitars", "Thought: no Action: yet\nAction: press_home()", "no Action: yet"),
    ("qwen25vl", 'Search first.\n<tool_call>\n{"name": "mobile_use"}\n</tool_call>',
     "Search first."),
    ("qwen2vl", '*FUNCTION*: Home *ARGS*: {}', ""),
    ("qwen2vl", "no action at all", ""),
    ("uitars", "no action at all", ""),
    ("qwen25vl", "no action at all", ""),
])
def test_thought_is_what_comes_before_the_action(name, text, thought):
    assert get_dialect(name, "phone").thought(text) == thought
