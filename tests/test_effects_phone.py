"""Phone actions mean what they say, repeated while the machine is busy: on the virtual phone
through real adb, an app of the test's own (added to a copy of the bundled apps) records the
DOM events each action causes. A tap is one click where it says, a long press holds for its
duration, a swipe and a scroll move the content by what they say."""

from __future__ import annotations

import json
import shutil

import pytest

from core.actions import Back, Enter, Home, Key, LongPress, OpenApp, Scroll, Swipe, Tap, Type
from envs.virtual_phone.catalog import APPS_DIR, LAUNCHER
from envs.virtual_phone.display import SCALE
from tests.conftest import require_tool
from tests.load import cpu_load
from tests.probes import wait_for_value, wait_until

EVENTS_APP = "com.vlagent.events"
REPEATS = 20
# A tall page that records its events (CSS pixels, as the page sees them) and a text field.
PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Events</title>
<style>html, body { margin: 0; } #tall { height: 6000px; background: #fff; }
#field { position: absolute; left: 20px; top: 20px; width: 300px; height: 40px; }
#pin { position: absolute; left: 20px; top: 80px; width: 150px; height: 40px; }
#pay { position: absolute; left: 200px; top: 80px; width: 140px; height: 40px; }</style>
</head><body><input id="field" autocomplete="off"><input id="pin" type="password">
<button id="pay" onclick="">Send money</button><div id="tall"></div>
<script>
window.events = [];
for (const type of ['mousedown', 'mouseup', 'click', 'dblclick', 'contextmenu']) {
  document.addEventListener(type, (e) => window.events.push(
    {type: e.type, x: e.clientX, y: e.clientY, t: e.timeStamp}), true);
}
document.addEventListener('keydown', (e) => window.events.push({type: 'keydown', key: e.key}));
</script></body></html>"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    require_tool("adb")
    require_tool("chromium")
    from envs.android import AndroidEnv
    from envs.virtual_phone import VirtualPhone
    from envs.virtual_phone.adb_host import PrivateAdbServer

    apps = tmp_path_factory.mktemp("apps") / "apps"
    shutil.copytree(APPS_DIR, apps)
    (apps / "events").mkdir()
    (apps / "events" / "index.html").write_text(PAGE)
    (apps / "events" / "app.json").write_text(json.dumps(
        {"package": EVENTS_APP, "label": "Events", "activity": ".EventsActivity"}))
    with VirtualPhone(port=0, apps_dir=apps) as phone, PrivateAdbServer() as adb:
        adb.connect(phone.serial)
        with cpu_load(), AndroidEnv(serial=phone.serial, adb_port=adb.port) as android:
            android.page = lambda script: phone.call(lambda p: p.display.evaluate(script))
            yield android


@pytest.fixture
def app(env):
    assert env.execute(OpenApp(app=EVENTS_APP)).ok
    wait_until(lambda: env.foreground()[0] == EVENTS_APP, what="the events app")
    wait_until(lambda: env.page("() => document.readyState === 'complete' && !!window.events"))
    env.page("() => { window.events = []; window.scrollTo(0, 0); }")
    return env


def take(env) -> list[dict]:
    return env.page("() => window.events.splice(0)")


def scroll_y(env) -> float:
    return env.page("() => scrollY")


def test_each_tap_is_one_click_where_it_says(app):
    for i in range(REPEATS):
        x, y = 300 + 30 * i, 600 + 40 * i  # physical pixels, below the controls
        assert app.execute(Tap(x=x, y=y)).ok
        events = take(app)
        assert [e["type"] for e in events] == ["mousedown", "mouseup", "click"], (i, events)
        assert all((e["x"], e["y"]) == (x // SCALE, y // SCALE) for e in events)


def test_each_long_press_holds_for_its_duration(app):
    for i in range(5):
        duration = 400 + 100 * i
        assert app.execute(LongPress(x=540, y=1200, duration_ms=duration)).ok
        down, up, *rest = take(app)
        assert (down["type"], up["type"]) == ("mousedown", "mouseup")
        assert up["t"] - down["t"] >= duration * 0.95  # timer granularity
        assert [e["type"] for e in rest] in ([], ["click"])


def test_each_swipe_and_scroll_moves_the_content_by_what_it_says(app):
    for i in range(REPEATS):
        distance = 300 + 30 * i  # physical pixels
        if i % 2 == 0:
            # A finger moving up drags the content up: the page scrolls down by the distance.
            assert app.execute(Swipe(x=540, y=2000, x2=540, y2=2000 - distance)).ok
            wait_for_value(lambda: scroll_y(app), distance / SCALE)
            assert app.execute(Scroll(direction="up", amount=distance)).ok
        else:
            assert app.execute(Scroll(direction="down", x=540, y=1200, amount=distance)).ok
            wait_for_value(lambda: scroll_y(app), distance / SCALE)
            assert app.execute(Swipe(x=540, y=600, x2=540, y2=600 + distance)).ok
        wait_for_value(lambda: scroll_y(app), 0)
    assert [e for e in take(app) if e["type"] == "click"] == []  # no swipe was a tap


def test_typing_keys_and_navigation(app):
    assert app.execute(Tap(x=150, y=120)).ok  # the field
    wait_until(lambda: app.page("() => document.activeElement.id") == "field")
    for i in range(5):
        text = f"try {i}: it's 100% \"ok\""
        assert app.execute(Type(text=text)).ok
        wait_for_value(lambda: app.page("() => field.value"), text)
        app.page("() => { field.value = ''; window.events = []; }")
        assert app.execute(Key(key="a")).ok and app.execute(Enter()).ok
        wait_for_value(lambda: [e["key"] for e in take(app) if e["type"] == "keydown"],
                       ["a", "Enter"])
        app.page("() => { field.value = ''; }")
    for _ in range(3):
        assert app.execute(Home()).ok
        wait_until(lambda: app.foreground()[0] == LAUNCHER, what="home")
        assert app.execute(OpenApp(app=EVENTS_APP)).ok
        wait_until(lambda: app.foreground()[0] == EVENTS_APP, what="the events app")
        assert app.execute(Back()).ok
        wait_until(lambda: app.foreground()[0] == LAUNCHER, what="back to the launcher")


def test_the_gate_reads_the_ui_dump(app):
    from agent.safety import ConfirmationGate, GateRules

    gate = ConfirmationGate(GateRules(), app, "deny")
    pay = app.element_at(270 * SCALE, 100 * SCALE)
    assert pay.text == "Send money" and not pay.password
    assert gate.sensitive(Tap(x=270 * SCALE, y=100 * SCALE)).rule == "tap_text"
    assert gate.sensitive(Tap(x=540, y=1500)) is None
    assert app.execute(Tap(x=90 * SCALE, y=100 * SCALE)).ok  # the password field
    wait_until(lambda: app.page("() => document.activeElement.id") == "pin")
    assert app.focused_element().password
    assert gate.sensitive(Type(text="1234")).rule == "password_field"
    assert app.execute(Tap(x=150, y=120)).ok  # the plain field
    wait_until(lambda: app.page("() => document.activeElement.id") == "field")
    assert gate.sensitive(Type(text="1234")) is None
    # Enter in a field runs an action the dump does not name: judged as the screen's buttons.
    assert "Send money" in app.focused_element().text
    assert gate.sensitive(Enter()).rule == gate.sensitive(Type(text="1234\n")).rule == "tap_text"
