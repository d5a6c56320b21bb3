"""Every dialect reads back what it renders: action -> render_action -> parse == action.

Rendered coordinates are integers, as the released models write them, so a point may move by one
pixel, or by half a model unit where a unit spans more than 3 pixels (a small resize budget on a
big screen); every other field must come back exactly.
"""

from __future__ import annotations

import math
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actions.dialects import DIALECTS, get_dialect
from actions.dialects.uitars import CALL_USER_MESSAGE, WAIT_SECONDS
from core.actions import ACTION_CLASSES
from core.geometry import Screen
from core.kinds import FORM_FACTORS, KINDS

# Written as whole model units, so within a pixel or half a unit (a scroll's amount is along y).
COORD_FIELDS = {"x", "y", "x2", "y2", "amount"}

screens = st.builds(
    Screen,
    width=st.integers(200, 3000),
    height=st.integers(200, 3000),
    max_pixels=st.sampled_from([12_845_056, 1_003_520, 200_704]),
)
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
# A white-space character is a key of its own (Space, Enter, Tab); other blank names are none.
spaces = st.sampled_from([" ", "\t", "\n", "\r"])
keynames = texts.filter(lambda k: k.strip()) | spaces
words = st.text(string.ascii_letters + string.digits + "_", min_size=1, max_size=10) | spaces
thoughts = st.text(string.ascii_letters + " ,.'", max_size=30)


def _default(kind: str, field: str):
    return ACTION_CLASSES[kind].model_fields[field].default


@st.composite
def actions(draw, kind: str, screen: Screen, dialect: str, form_factor: str = "computer"):
    """An action of ``kind`` using only what ``dialect`` can express."""
    dialect = "uitars" if dialect == "uitars15" else dialect
    w, h = screen.width, screen.height

    def pt(prefix: str = "") -> dict:
        return {f"x{prefix}": draw(st.integers(0, w - 1)),
                f"y{prefix}": draw(st.integers(0, h - 1))}

    cls = ACTION_CLASSES[kind]
    d: dict = {}
    if kind in ("tap", "click", "double_click", "right_click", "move"):
        d = pt()
    elif kind == "long_press":
        d = pt()
        if dialect == "qwen25vl":
            d["duration_ms"] = draw(st.integers(1, 60_000))
    elif kind in ("swipe", "drag"):
        d = {**pt(), **pt("2")}
    elif kind == "scroll":
        if dialect == "qwen25vl" and form_factor != "phone":
            d = {"direction": draw(st.sampled_from(["up", "down"])),
                 "amount": draw(st.integers(1, 5000))}
        else:
            d = {"direction": draw(st.sampled_from(["up", "down", "left", "right"]))}
        if draw(st.booleans()):
            d |= pt()
    elif kind == "type":
        d = {"text": draw(texts)}
    elif kind == "key":
        d = {"key": draw(words if dialect == "uitars" else keynames)}
    elif kind == "hotkey":
        d = {"keys": draw(st.lists(words if dialect == "uitars" else keynames,
                                   min_size=2 if dialect != "qwen2vl" else 1, max_size=4))}
    elif kind == "open_app":
        d = {"app": draw(texts.filter(bool))}
    elif kind == "navigate":
        d = {"url": draw(texts.filter(bool))}
    elif kind == "wait":
        d = {"seconds": WAIT_SECONDS if dialect == "uitars" else draw(
            st.floats(0.001, 60, allow_nan=False))}
    elif kind == "answer":
        d = {"text": draw(texts.filter(bool) if dialect == "uitars" else texts)}
    elif kind == "terminate":
        status = draw(st.sampled_from(["success", "failure"]))
        d = {"status": status}
        if dialect == "qwen2vl":
            d["message"] = draw(texts)
        elif dialect == "uitars" and status == "failure":
            d["message"] = CALL_USER_MESSAGE
    return cls(**d)


def tolerance(dialect, screen: Screen, field: str) -> int:
    """Pixels an integer model coordinate may miss by: 1, or half a unit where units are coarse."""
    n_x, n_y = dialect.space.extent(screen)
    side, n = (screen.width, n_x) if field.startswith("x") else (screen.height, n_y)
    if field == "amount":  # a distance is at least one unit, whatever it was in pixels
        return max(1, math.ceil(side / n))
    return max(1, math.ceil(side / n) // 2)


def assert_same(parsed, action, dialect=None, screen=None) -> None:
    assert parsed.kind == action.kind, (parsed, action)
    a, b = parsed.model_dump(), action.model_dump()
    for field in a:
        if field in COORD_FIELDS and a[field] is not None and b[field] is not None:
            tol = 1 if dialect is None else tolerance(dialect, screen, field)
            assert abs(a[field] - b[field]) <= tol, (field, parsed, action)
        else:
            assert a[field] == b[field], (field, parsed, action)


PARAMS = [
    pytest.param(name, form_factor, kind, id=f"{name}-{form_factor}-{kind}")
    for name in DIALECTS
    for form_factor in FORM_FACTORS
    for kind in sorted(get_dialect(name, form_factor).kinds)
]


@pytest.mark.parametrize("name, form_factor, kind", PARAMS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), screen=screens, thought=thoughts)
def test_render_then_parse_gives_the_action_back(name, form_factor, kind, data, screen, thought):
    dialect = get_dialect(name, form_factor)
    action = data.draw(actions(kind, screen, name, form_factor))
    text = dialect.render_action(action, screen, thought=thought)
    assert_same(dialect.parse(text, screen), action, dialect, screen)


def test_every_dialect_covers_the_kinds_its_envs_need():
    assert get_dialect("qwen2vl", "phone").kinds == frozenset(ACTION_CLASSES)
    for name in DIALECTS:
        for form_factor in FORM_FACTORS:
            assert KINDS[form_factor] <= get_dialect(name, form_factor).kinds, (name, form_factor)


@pytest.mark.parametrize(
    "name, action, reason",
    [
        ("qwen2vl", ACTION_CLASSES["long_press"](x=1, y=1, duration_ms=2000), "duration_ms"),
        ("qwen25vl", ACTION_CLASSES["scroll"](direction="left", amount=10), "scrolls up or down"),
        ("qwen25vl", ACTION_CLASSES["terminate"](status="success", message="hi"), "message"),
        ("uitars", ACTION_CLASSES["wait"](seconds=2), "waits 5"),
        ("uitars", ACTION_CLASSES["navigate"](url="https://example.com"), "cannot express"),
        ("uitars", ACTION_CLASSES["answer"](text=""), "empty answer"),
    ],
)
def test_render_refuses_what_the_format_cannot_carry(name, action, reason):
    with pytest.raises(ValueError, match=reason):
        get_dialect(name, "computer").render_action(action, Screen(1080, 2400))


TRICKY = "</tool_call> <tool_call> *RESULT* *FUNCTION*: Tap\nAction: click(start_box='(1,2)') ✿ARGS✿"


@pytest.mark.parametrize("name", DIALECTS)
def test_format_markers_inside_typed_text_stay_text(name):
    # The parsers skip quoted strings when they look for tags, keywords and a second call.
    dialect = get_dialect(name, "computer")
    screen = Screen(1080, 2400)
    action = ACTION_CLASSES["type"](text=TRICKY)
    assert dialect.parse(dialect.render_action(action, screen, thought="typing"), screen) == action


@pytest.mark.parametrize("name", DIALECTS)
@pytest.mark.parametrize("form_factor", ["computer", "browser"])
@pytest.mark.parametrize("pressed, named", [(" ", "space"), ("\t", "tab"), ("\n", "enter")])
def test_a_white_space_key_is_written_by_its_name_and_read_back(name, form_factor, pressed,
                                                                 named):
    """A person at `--model human` or a recorded demonstration presses Space: every dialect
    writes it so that its own parser reads the same press back, alone and in a hotkey."""
    dialect = get_dialect(name, form_factor)
    screen = Screen(1280, 800)
    for action, expected in [(ACTION_CLASSES["key"](key=pressed), {"key": named}),
                             (ACTION_CLASSES["hotkey"](keys=["ctrl", pressed]),
                              {"keys": ["ctrl", named]})]:
        if action.kind not in dialect.kinds:
            continue
        parsed = dialect.parse(dialect.render_action(action, screen), screen)
        assert parsed.model_dump(include=set(expected)) == expected, (name, action, parsed)
