"""A page that stops answering (a script that never yields holds every call into it, and
Playwright's calls have no timeout) ends chromium after the env's hang limit: the step fails
with that reason and the env is dead, instead of holding the run forever. Work that is slow but
moves on is waited for."""

from __future__ import annotations

import os
import time
from urllib.parse import quote

import pytest

from core.actions import Click, Type
from envs.base import EnvError
from tests.probes import wait_until
from tests.proc_table import command, descendants

VIEWPORT = (400, 300)
NEVER_YIELDS = "while (true) {}"


def page(onclick: str = "", body: str = "") -> str:
    button = (f'<button style="width:100vw;height:100vh" onclick="{onclick}">go</button>'
              if onclick else "")
    return "data:text/html," + quote(f"<body style='margin:0'>{button}{body}</body>")


def chromium_processes() -> list[int]:
    return [p for p in descendants(os.getpid()) if "--user-data-dir=" in command(p)]


def open_env(playwright, start_url: str, hang_s: float):
    from envs.browser import BrowserEnv

    return BrowserEnv(viewport=VIEWPORT, start_url=start_url, hang_s=hang_s,
                      playwright=playwright)


def test_a_click_into_a_script_that_never_yields_fails_and_ends_chromium(playwright) -> None:
    with open_env(playwright, page(onclick=NEVER_YIELDS), hang_s=3) as env:
        env.observe()
        assert chromium_processes()
        result = env.execute(Click(x=200, y=150))
        assert not result.ok
        assert result.message.startswith("click failed: the page did not respond for 3 s")
        assert result.message.endswith("start a new browser env")
        with pytest.raises(EnvError, match="did not respond for 3 s"):
            env.observe()
        wait_until(lambda: not chromium_processes(), timeout_s=10, what="chromium to be gone")


def test_the_gates_lookup_on_a_page_that_froze_after_the_screenshot_fails(playwright) -> None:
    with open_env(playwright, page(body="<input autofocus>"), hang_s=2) as env:
        env.observe()
        env.page.evaluate(f"setTimeout(() => {{ {NEVER_YIELDS} }}, 0)")
        time.sleep(0.3)  # the page's own timer has run: it never gives its thread back
        with pytest.raises(EnvError, match="element lookup failed: the page did not respond"):
            env.element_at(10, 10)
        with pytest.raises(EnvError, match="did not respond"):  # dead, not asked again
            env.focused_element()


def test_a_handler_that_is_slow_but_ends_is_waited_for(playwright) -> None:
    busy = "const end = Date.now() + 1500; while (Date.now() < end) {} document.title = 'done'"
    with open_env(playwright, page(onclick=busy), hang_s=5) as env:
        env.observe()
        result = env.execute(Click(x=200, y=150))
        assert result.ok, result.message
        assert env.observe().extras["title"] == "done"


def test_a_long_text_into_a_slow_page_types_in_full(playwright) -> None:
    """Each key takes the page 10 ms: the whole text takes longer than the limit, each piece of
    it (``TYPE_PIECE`` characters) much less."""
    slow = ("<textarea autofocus onkeydown='const end = Date.now() + 10; "
            "while (Date.now() < end) {}'></textarea>")
    text = "slow keys, all of them typed. " * 14
    started = time.monotonic()
    with open_env(playwright, page(body=slow), hang_s=4) as env:
        env.observe()
        result = env.execute(Type(text=text))
        assert result.ok, result.message
        assert env.page.eval_on_selector("textarea", "el => el.value") == text
    assert time.monotonic() - started > 4  # or the limit was never put to the test
