"""A page that locks the pointer (a game, a 3D view): every click then went to its locked
element, not the one at the pixel the model chose nor the one the gate judged there, and
Escape, which a browser keeps for itself to end the lock, never reached the page's lock."""

from __future__ import annotations

from urllib.parse import quote

from core.actions import Click, Key, Type
from tests.conftest import require_tool
from tests.probes import wait_until

PAGE = ("<body style='margin:0'><canvas id=game width=300 height=100 style='background:#ccc' "
        "onclick='game.requestPointerLock()'></canvas><input id=name style='position:absolute;"
        "left:0;top:200px;width:300px;height:40px'>"
        # A view in a frame of its own, also taking the lock.
        "<iframe id=view style='position:absolute;left:320px;top:0;width:200px;height:100px;"
        "border:0' srcdoc=\"<body style='margin:0'><canvas id=c width=200 height=100 "
        "onclick='c.requestPointerLock()'></canvas>\"></iframe>"
        # A page that would hide its lock from the env.
        "<script>window.__vlagentPointerLocked = () => {};</script>")
LOCKED = "document.pointerLockElement?.id ?? null"


def lock_told(env) -> None:
    """Wait for the page's notice of its lock, which the model's thinking gives it time for
    (it comes through a binding, after the click that locked)."""
    wait_until(lambda: env.page.evaluate("0") == 0 and env._pointer_locked,
               what="the page's notice of its pointer lock")


def test_a_click_goes_where_the_model_and_the_gate_see_and_escape_ends_a_lock(playwright):
    require_tool("chromium")
    from envs.browser import BrowserEnv

    with BrowserEnv(viewport=(600, 400), playwright=playwright) as env:
        env.page.goto("data:text/html," + quote(PAGE))
        env.observe()
        assert env.execute(Click(x=100, y=50)).message == "clicked"
        assert env.page.evaluate(LOCKED) == "game"
        lock_told(env)
        assert env.element_at(150, 220).field  # what the gate judges a click there by
        result = env.execute(Click(x=150, y=220))
        assert result.message == ("clicked; the page had locked the pointer (clicks went to one "
                                  "element, wherever they were), released before it")
        assert env.page.evaluate(f"[{LOCKED}, document.activeElement.id]") == [None, "name"]
        assert env.execute(Type(text="hello")).ok
        assert env.page.evaluate("document.getElementById('name').value") == "hello"
        env.execute(Click(x=100, y=50))
        assert env.page.evaluate(LOCKED) == "game"
        assert env.execute(Key(key="escape")).message == \
            "pressed Escape; released the pointer the page had locked, as a browser does"
        assert env.page.evaluate(LOCKED) is None
        assert env.execute(Key(key="escape")).message == "pressed Escape"  # none held now
        env.execute(Click(x=420, y=50))  # into the frame's view
        view = env.page.frame_locator("#view")
        assert view.locator("body").evaluate(f"() => {LOCKED}") == "c"
        lock_told(env)
        assert env.execute(Click(x=150, y=220)).message.endswith("released before it")
        assert view.locator("body").evaluate(f"() => {LOCKED}") is None
        assert env.page.evaluate("document.activeElement.id") == "name"


def test_escape_ends_a_lock_whose_notice_has_not_arrived(playwright):
    """The page tells the env of a lock through a binding, which may arrive after the next
    action begins (on a loaded machine, an Escape pressed right after the click that locked)."""
    require_tool("chromium")
    from envs.browser import BrowserEnv

    with BrowserEnv(viewport=(600, 400), playwright=playwright) as env:
        env.page.goto("data:text/html," + quote(PAGE))
        env.observe()
        env.execute(Click(x=100, y=50))
        assert env.page.evaluate(LOCKED) == "game"
        env._pointer_locked = False  # as it is before the notice arrives
        assert env.execute(Key(key="escape")).message == \
            "pressed Escape; released the pointer the page had locked, as a browser does"
        assert env.page.evaluate(LOCKED) is None
