"""Desktop actions mean what they say, repeated while the machine is busy: chromium in app mode
on a private Xvfb (the fixtures of tests/test_desktop_env.py) records the DOM events it gets."""

from __future__ import annotations

import pytest

from core.actions import Click, DoubleClick, Drag, Hotkey, Key, Move, RightClick, Scroll, Type
from envs.desktop import PIXELS_PER_WHEEL_CLICK, DesktopEnv
from tests.load import cpu_load
from tests.probes import find_color, wait_for_value, wait_until
from tests.test_desktop_env import GREEN, RED, YELLOW, app, mouse_location, xvfb  # noqa: F401

REPEATS = 20


@pytest.fixture(scope="module")
def desktop(xvfb, app):  # noqa: F811 - the imported fixtures
    with cpu_load(), DesktopEnv(display=xvfb.display, xauthority=xvfb.xauthority) as env:
        yield env


@pytest.fixture
def fresh(desktop, app):  # noqa: F811
    app.reload(wait_until="load")
    return wait_until(lambda: _with_target(desktop.observe()), timeout_s=10)


def _with_target(observation):
    try:
        find_color(observation.image, GREEN)
    except AssertionError:
        return None
    return observation


def take(app, expected: list[str]) -> list[dict]:  # noqa: F811
    """Wait until the page has received exactly ``expected`` (mousedowns aside), take them."""
    seen: list[dict] = []

    def kinds() -> list[str]:
        seen.extend(app.evaluate("window.events.splice(0)"))
        return [e["type"] for e in seen if e["type"] != "mousedown"]

    wait_for_value(kinds, expected)
    return seen


@pytest.mark.parametrize("action_cls, expected, button", [
    (Click, ["click"], 0),
    (DoubleClick, ["click", "click", "dblclick"], 0),
    (RightClick, ["contextmenu"], 2),
])
def test_each_click_is_exactly_its_events_at_its_point(
    desktop, app, fresh, action_cls, expected, button  # noqa: F811
):
    x, y = find_color(fresh.image, GREEN).centre
    for i in range(REPEATS):
        # Alternate ends of the target: two clicks on one spot within the double-click time
        # are one double click to X clients (see the test below).
        point = (x - 30 if i % 2 else x + 30, y)
        assert desktop.execute(action_cls(x=point[0], y=point[1])).ok
        events = take(app, expected)
        assert all(e["id"] == "target" and e["button"] == button for e in events), events
        assert (events[-1]["screenX"], events[-1]["screenY"]) == point
    take(app, [])  # and nothing more arrives late


def test_two_clicks_on_one_spot_stay_two_clicks(desktop, app, fresh):  # noqa: F811
    # Apps pair two quick clicks on one spot into a double click; the env keeps separate click
    # actions apart by more than the double-click time, so each stays one click.
    x, y = find_color(fresh.image, GREEN).centre
    for _ in range(3):
        assert desktop.execute(Click(x=x, y=y)).ok
        desktop.observe()  # as the loop does between steps
        take(app, ["click"])
    assert desktop.execute(DoubleClick(x=x, y=y)).ok  # and a double click stays one
    take(app, ["click", "click", "dblclick"])
    take(app, [])


def test_move_puts_the_pointer_there(desktop, xvfb, app, fresh):  # noqa: F811
    for i in range(REPEATS):
        point = (100 + 37 * i, 700 - 23 * i)
        assert desktop.execute(Move(x=point[0], y=point[1])).ok
        assert mouse_location(xvfb) == point
    take(app, [])


def test_each_drag_arrives(desktop, app, fresh):  # noqa: F811
    box = "[drag.offsetLeft, drag.offsetTop]"
    left, top = app.evaluate(box)
    x, y = find_color(fresh.image, RED).centre
    for i in range(REPEATS):
        dx, dy = (150, 90) if i % 2 == 0 else (-150, -90)
        assert desktop.execute(Drag(x=x, y=y, x2=x + dx, y2=y + dy)).ok
        left, top, x, y = left + dx, top + dy, x + dx, y + dy
        wait_for_value(lambda: app.evaluate(box), [left, top])


def test_each_scroll_moves_by_its_amount(desktop, app, fresh):  # noqa: F811
    for i in range(REPEATS):
        clicks = 1 + i % 3
        amount = clicks * PIXELS_PER_WHEEL_CLICK
        assert desktop.execute(Scroll(direction="down", x=640, y=400, amount=amount)).ok
        wait_for_value(lambda: app.evaluate("scrollY"), amount)
        assert desktop.execute(Scroll(direction="up", x=640, y=400, amount=amount)).ok
        wait_for_value(lambda: app.evaluate("scrollY"), 0)


def test_typing_and_keys(desktop, app, fresh):  # noqa: F811
    x, y = find_color(fresh.image, YELLOW).centre
    assert desktop.execute(Click(x=x, y=y)).ok
    wait_until(lambda: app.evaluate("document.activeElement.id") == "field")
    for i in range(5):
        text = f"try {i}: héllo ✓"
        assert desktop.execute(Type(text=text)).ok
        wait_for_value(lambda: app.input_value("#field"), text)
        assert desktop.execute(Hotkey(keys=["ctrl", "a"])).ok
        assert desktop.execute(Key(key="backspace")).ok
        wait_for_value(lambda: app.input_value("#field"), "")
