"""Browser actions mean what they say, repeated while the machine is busy: a click is one
``click``, a double click one ``dblclick``, a drag arrives where it says, a scroll moves by its
amount. The page (tests/pages/events.html) records the DOM events it receives."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.actions import (
    Back,
    Click,
    DoubleClick,
    Drag,
    Hotkey,
    Key,
    Move,
    Navigate,
    RightClick,
    Scroll,
    Type,
)
from envs.browser import BrowserEnv
from tests.conftest import require_tool
from tests.load import cpu_load
from tests.local_server import serve_directory
from tests.probes import find_color, wait_for_value

PAGES = Path(__file__).parent / "pages"
GREEN, YELLOW = (0, 200, 0), (255, 255, 0)
REPEATS = 20
SCALE = 2.0


@pytest.fixture(scope="module")
def env():
    require_tool("chromium")
    with serve_directory(PAGES) as url, cpu_load(), \
            BrowserEnv(viewport=(800, 600), device_scale_factor=SCALE) as browser:
        browser.page_url = url + "events.html"
        yield browser


@pytest.fixture
def page(env):
    assert env.execute(Navigate(url=env.page_url)).ok
    return env.observe()


def take_events(env) -> list[dict]:
    return env.page.evaluate("window.events.splice(0)")


def kinds(events: list[dict]) -> list[str]:
    return [e["type"] for e in events if e["type"] != "mousedown"]


@pytest.mark.parametrize("action_cls, expected, button", [
    (Click, ["click"], 0),
    (DoubleClick, ["click", "click", "dblclick"], 0),
    (RightClick, ["contextmenu"], 2),
])
def test_each_click_is_exactly_its_events_at_its_point(env, page, action_cls, expected, button):
    x, y = find_color(page.image, GREEN).centre
    for i in range(REPEATS):
        assert env.execute(action_cls(x=x + i, y=y)).ok
        events = take_events(env)
        assert kinds(events) == expected, (i, events)
        assert all(e["id"] == "target" and e["button"] == button for e in events)
        assert (events[-1]["clientX"], events[-1]["clientY"]) == ((x + i) // SCALE, y // SCALE)


def test_move_hovers_where_it_says(env, page):
    x, y = find_color(page.image, GREEN).centre
    hovered = "document.querySelector('#target:hover') !== null"
    for i in range(REPEATS):
        inside = i % 2 == 0
        assert env.execute(Move(x=x if inside else 20, y=y if inside else 20)).ok
        assert env.page.evaluate(hovered) is inside
    assert take_events(env) == []


def test_each_drag_arrives(env, page):
    box = "[drag.offsetLeft, drag.offsetTop]"
    left, top = env.page.evaluate(box)
    x, y = round((left + 30) * SCALE), round((top + 30) * SCALE)  # the box's centre
    for i in range(REPEATS):
        dx, dy = (80, 40) if i % 2 == 0 else (-80, -40)  # there and back, in CSS pixels
        assert env.execute(Drag(x=x, y=y, x2=x + round(dx * SCALE), y2=y + round(dy * SCALE))).ok
        left, top = left + dx, top + dy
        assert env.page.evaluate(box) == [left, top], i
        x, y = x + round(dx * SCALE), y + round(dy * SCALE)


def test_each_scroll_moves_by_its_amount(env, page):
    for i in range(REPEATS):
        amount = 40 + 10 * i  # screenshot pixels
        assert env.execute(Scroll(direction="down", amount=amount)).ok
        wait_for_value(lambda: env.page.evaluate("scrollY"), amount / SCALE)
        assert env.execute(Scroll(direction="up", x=10, y=10, amount=amount)).ok
        wait_for_value(lambda: env.page.evaluate("scrollY"), 0)


def test_typing_keys_and_navigation(env, page):
    x, y = find_color(page.image, YELLOW).centre
    assert env.execute(Click(x=x, y=y)).ok
    for i in range(5):
        text = f"try {i}: héllo ✓"
        assert env.execute(Type(text=text)).ok
        assert env.page.input_value("#field") == text
        assert env.execute(Hotkey(keys=["ctrl", "a"])).ok
        assert env.execute(Key(key="backspace")).ok
        assert env.page.input_value("#field") == ""
    for i in range(3):
        assert env.execute(Navigate(url=f"{env.page_url}?visit={i}")).ok
        assert env.page.url.endswith(f"?visit={i}")
        assert env.execute(Back()).ok
        assert env.page.url == env.page_url


def test_the_gate_reads_the_dom(env):
    from agent.safety import ConfirmationGate, GateRules

    env.page.set_content('<input id="pin" type="password" style="position:absolute;left:10px;'
                         'top:10px"><button style="position:absolute;left:10px;top:60px;'
                         'width:120px;height:30px"><span>Delete</span> account</button>')
    gate = ConfirmationGate(GateRules(), env, "deny")
    button = env.element_at(round(70 * SCALE), round(75 * SCALE))  # on the inner span
    assert button.text == "Delete account" and not button.password
    assert gate.sensitive(Click(x=round(70 * SCALE), y=round(75 * SCALE))).rule == "tap_text"
    assert gate.sensitive(Click(x=round(400 * SCALE), y=round(400 * SCALE))) is None
    assert env.focused_element() is None
    env.page.focus("#pin")
    assert env.focused_element().password
    assert gate.sensitive(Type(text="1234")).rule == "password_field"
