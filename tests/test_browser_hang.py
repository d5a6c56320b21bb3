"""A page that stops answering (a script that never yields holds every call into it, and
Playwright's calls have no timeout) ends chromium after the env's hang limit: the step fails
with that reason and the env is dead, instead of holding the run forever. Work that is slow but
moves on is waited for, and so is a server slower than the env's timeout (chromium holds every
call into a page, its screenshot too, while the page's navigation waits for its server); a
server that never answers has its page's loading stopped at the limit, and chromium lives on."""

from __future__ import annotations

import os
import re
import threading
import time
from urllib.parse import quote

import pytest

from core.actions import Back, Click, Navigate, Type
from envs.base import EnvError
from envs.browser import TYPE_PIECE
from tests.local_server import serve_pages
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


def open_env(playwright, start_url: str = "about:blank", **options):
    from envs.browser import BrowserEnv

    return BrowserEnv(viewport=VIEWPORT, start_url=start_url, playwright=playwright, **options)


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
    """Each key takes the page 40 ms: the whole text takes twice the limit, each piece of it
    (``TYPE_PIECE`` characters) a fifth of it."""
    slow = ("<textarea autofocus onkeydown='const end = Date.now() + 40; "
            "while (Date.now() < end) {}'></textarea>")
    text = "slow keys, all of them typed. " * 4 + "the end."
    assert len(text) * 0.04 > 2 * 2 and TYPE_PIECE * 0.04 < 2 / 4
    started = time.monotonic()
    with open_env(playwright, page(body=slow), hang_s=2) as env:
        env.observe()
        result = env.execute(Type(text=text))
        assert result.ok, result.message
        assert env.page.eval_on_selector("textarea", "el => el.value") == text
    assert time.monotonic() - started > 2  # or the limit was never put to the test


def link_to_a_held_page(answer: threading.Event, below: list[str] | None = None):
    """A server whose page links to one it answers only once ``answer`` is set; ``below``: HTML
    put under the link, read at each request (filled once the server's port is known)."""
    def render(query: dict[str, str]) -> bytes:
        if "held" in query:
            answer.wait(60)
        return (f"<title>{'held' if 'held' in query else 'first'}</title><a href='/?held=1' "
                f"style='display:block;height:100vh'>next</a>{''.join(below or ())}").encode()
    return serve_pages(render)


@pytest.mark.parametrize("how", ["link", "navigate"])
def test_a_server_slower_than_the_timeout_is_seen_once_it_answers(playwright, how) -> None:
    answer = threading.Event()
    with link_to_a_held_page(answer) as server, open_env(
            playwright, f"http://127.0.0.1:{server.server_port}/", timeout_s=2,
            hang_s=30) as env:
        env.observe()
        threading.Timer(5, answer.set).start()  # longer than the env's timeout
        if how == "link":
            assert env.execute(Click(x=200, y=150)).ok
        else:
            held = f"http://127.0.0.1:{server.server_port}/?held=1"
            result = env.execute(Navigate(url=held))
            assert (result.ok, result.message) == (False, f"{held} did not load within 2 s; it "
                                                   "may still be loading, and the next "
                                                   "screenshot waits for it")
        observation = env.observe()
        assert observation.extras["url"].endswith("/?held=1")
        assert observation.extras["title"] == "held"


WAYS = ["link", "redirect", "slow redirects", "navigate", "the page itself", "a frame below",
        "allowed domains", "the gate's lookup", "again and again"]


@pytest.mark.parametrize("how", WAYS)
def test_a_server_that_never_answers_is_stopped_after_the_limit(playwright, how) -> None:
    """Its loading is stopped, not chromium: the page stays where it was, still answering, and
    the model is told before its next action. Whichever call into the page meets the held
    navigation first: a screenshot, a frame's look (a frame of another origin below the fold),
    the allowlist's read of the page after the click, the gate's lookup of the element."""
    answer, below = threading.Event(), []
    with link_to_a_held_page(answer, below) as server:
        if how == "a frame below":  # another origin: the same server by another name
            below.append(f"<iframe src='http://localhost:{server.server_port}/?frame=1' "
                         "style='position:absolute;top:3000px'></iframe>")
        first = f"http://127.0.0.1:{server.server_port}/"
        held = f"{first}?held=1"
        allowed = ["127.0.0.1", "localhost"] if how == "allowed domains" else None
        try:
            with open_env(playwright, first, timeout_s=2, hang_s=4,
                          allowed_domains=allowed) as env:
                env.observe()
                stopped = f"{held} did not answer within 4 s, so its loading was stopped " \
                    f"and the page stayed at {first}"
                if how == "allowed domains":  # the read of what was blocked waits it out
                    clicked = env.execute(Click(x=200, y=150))
                    assert (clicked.ok, clicked.message) == (True, f"clicked; {stopped}")
                    navigated = env.execute(Navigate(url=held))
                    assert (navigated.ok, navigated.message) == (False, stopped)
                elif how in ("link", "a frame below", "again and again"):
                    if how == "again and again":  # as a page retrying a server that is down
                        env.page.evaluate(f"let n = 0; addEventListener('click', () => "
                                          f"setInterval(() => {{ location.href = '{held}&n=' + "
                                          "(++n); }, 1500))")
                    assert env.execute(Click(x=200, y=150)).ok
                elif how == "redirect":
                    env.page.evaluate(f"location = '/redirect?to={quote(held)}'")
                elif how == "slow redirects":  # each hop answers within the limit, not all
                    hop = f"/redirect?wait=1.5&to={quote(held)}"
                    env.page.evaluate(f"location = '/redirect?wait=1.5&to={quote(hop)}'")
                elif how == "navigate":
                    assert not env.execute(Navigate(url=held)).ok  # "did not load within 2 s"
                else:  # while the model thinks, after the last observation
                    env.page.evaluate(f"setTimeout(() => {{ location = '{held}'; }}, 200)")
                    time.sleep(0.5)
                if how == "the gate's lookup":
                    assert env.element_at(200, 150).text == "next"
                elif how != "the page itself":
                    observation = env.observe()
                    assert observation.extras["url"] == first
                    # (Playwright reads a page's title in a world of its own, which a page
                    # navigated again and again leaves empty for a while, or as chromium's
                    # "Loading URL" of the try under way.)
                    title = observation.extras["title"]
                    assert title == "first" or how == "again and again" and (
                        title == "" or title.startswith(f"Loading {held}&n="))
                result = env.execute(Click(x=200, y=150))
                if how != "allowed domains":  # told with the actions themselves
                    # (Again and again: the page's latest try is the one stopped.)
                    assert re.search(rf"before it, {re.escape(held)}(&n=\d+)? did not answer "
                                     rf"within 4 s, so its loading was stopped and the page "
                                     rf"stayed at {re.escape(first)}", result.message), \
                        result.message
                assert chromium_processes()
                assert env.page.url == first
        finally:
            answer.set()


def test_back_to_a_page_whose_server_no_longer_answers_is_stopped_too(playwright) -> None:
    answer, asked = threading.Event(), []

    def render(query: dict[str, str]) -> bytes:
        asked.append(query)
        if "twice" in query and asked.count(query) > 1:
            answer.wait(60)
        return b"<title>page</title>"

    with serve_pages(render) as server:
        first = f"http://127.0.0.1:{server.server_port}/?twice=1"
        second = f"http://127.0.0.1:{server.server_port}/?second=1"
        try:
            with open_env(playwright, first, timeout_s=2, hang_s=4) as env:
                assert env.execute(Navigate(url=second)).ok
                result = env.execute(Back())
                assert (result.ok, result.message) == (False, "going back did not load within "
                                                       "2 s; it may still be loading, and the "
                                                       "next screenshot waits for it")
                assert env.observe().extras["url"] == second
                assert f"before it, {first} did not answer within 4 s, so its loading was " \
                    f"stopped and the page stayed at {second}" in env.execute(Back()).message
        finally:
            answer.set()


def test_a_tasks_check_on_a_page_that_froze_while_the_model_thought_fails(playwright) -> None:
    """A task reads the page through the env (``BrowserEnv.on_page``): the MiniWoB++ reward,
    read after the model's last reply, fails on a frozen page instead of waiting forever."""
    from tasks.registry import get_task

    task = get_task("miniwob/click-test", seed=1)
    with open_env(playwright, hang_s=2) as env:
        env.reset(task.initialize)
        env.page.evaluate(f"setTimeout(() => {{ {NEVER_YIELDS} }}, 0)")
        time.sleep(0.3)  # frozen since the last observation
        with pytest.raises(EnvError, match="MiniWoB.* failed: the page did not respond for 2 s"):
            task.check(env, None)


@pytest.mark.parametrize("hang_s", [0, -1, float("nan")])
def test_a_hang_limit_that_is_no_time_is_refused(hang_s) -> None:
    from envs.browser import BrowserEnv

    with pytest.raises(ValueError, match="hang_s .* must be a number of seconds above 0"):
        BrowserEnv(hang_s=hang_s)
