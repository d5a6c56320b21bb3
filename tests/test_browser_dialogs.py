"""What a page asks in a dialog is never answered yes on the model's behalf, and the model is
told: an alert is closed, a confirm or a prompt answered Cancel, and a "leave this page?"
answered Stay, unless the model tries to leave again at its very next action. What a page tries
on its own while the model thinks is not blamed on the model's next action."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from core.actions import Click, Navigate, Scroll, Type
from envs.browser import BrowserEnv
from tests.conftest import require_tool
from tests.local_server import serve_pages
from tests.probes import wait_until

PAGE = b"""<!doctype html><body style="margin:0">
<input id="draft" style="display:block;width:200px;height:40px">
<button id="delete" style="display:block;width:200px;height:40px"
  onclick="document.title = 'deleted: ' + confirm('Delete all 12 messages?')">delete</button>
<button id="name" style="display:block;width:200px;height:40px"
  onclick="document.title = 'name: ' + prompt('Your name?', 'Ada')">name</button>
<button id="alert" style="display:block;width:200px;height:40px"
  onclick="alert('Saved\\nat noon'); document.title = 'alerted'">alert</button>
<a id="leave" href="/elsewhere?page=other" style="display:block;width:200px;height:40px">leave</a>
<a id="popup" href="/?page=asking" target="_blank"
  style="display:block;width:200px;height:40px">popup</a>
<button id="many" style="display:block;width:200px;height:40px"
  onclick="for (let i = 0; i < 20; i++) alert('number ' + i)">many</button>
<a id="noisy" href="/elsewhere?page=other"
  style="position:fixed;right:0;top:0;width:150px;height:40px"
  onclick="for (let i = 1; i <= 3; i++) alert('note ' + i)">noisy</a>
<button id="close" style="position:fixed;right:0;top:50px;width:150px;height:40px"
  onclick="window.close()">close</button>
<script>
// Called by a test after it observed: a timer raises n alerts in a row while the model thinks.
window.nag = (n) => setTimeout(() => { for (let i = 0; i < n; i++) alert('expires ' + i); }, 50);
// Called by a test once the model has done its part: the page leaves by itself soon after.
window.wander = () => setTimeout(() => { location.href = "/elsewhere?page=other"; }, 100);
addEventListener("beforeunload", e => {
  if (document.getElementById("draft").value) { e.preventDefault(); e.returnValue = ""; }
});
</script></body>"""

# A page that tries to open a host off the allowed list by itself: once, or again and again.
WANDERING = b"""<!doctype html><body style="margin:0">
<input id="field" style="display:block;width:200px;height:40px">
<script>
const leave = () => { location.href = "OFF_LIST"; };
// Called by a test after it observed: once soon after, or again and again.
window.wander = (again) => again ? setInterval(leave, 50) : setTimeout(leave, 100);
// Or n other urls off the list, one after the other.
window.spam = (n) => { let i = 0;
  const t = setInterval(() => { location.href = "OFF_LIST&n=" + i++; if (i >= n) clearInterval(t); }, 10); };
</script></body>"""


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    require_tool("chromium")

    def render(query: dict[str, str]) -> bytes:
        if query.get("page") == "other":
            return b"<title>other</title>elsewhere"
        if query.get("page") == "asking":  # asks as it loads, before its page is reported
            return b"<title>asking</title><script>confirm('Allow this popup?')</script>"
        if query.get("page") == "wandering":
            return WANDERING.replace(b"OFF_LIST", query["off"].encode())
        if query.get("page") == "terms":  # asks as it loads, and can try to close its tab
            return (b"<title>terms</title><script>document.title = 'terms: ' + "
                    b"confirm('Accept the terms?')</script>" + PAGE)
        return PAGE

    with serve_pages(render) as pages:
        yield pages.server_port


@pytest.fixture()
def env(port, playwright) -> Iterator[BrowserEnv]:
    with BrowserEnv(viewport=(400, 300), start_url=f"http://127.0.0.1:{port}/",
                    playwright=playwright) as made:
        made.observe()
        yield made


def click(env: BrowserEnv, selector: str) -> Click:
    box = env.page.locator(selector).bounding_box()
    return Click(x=int(box["x"] + box["width"] / 2), y=int(box["y"] + box["height"] / 2))


def test_a_confirm_or_a_prompt_is_answered_cancel_and_the_model_is_told(env) -> None:
    result = env.execute(click(env, "#delete"))
    assert result.ok and env.page.title() == "deleted: false"
    assert 'the page asked "Delete all 12 messages?" (confirm), answered Cancel' in result.message
    result = env.execute(click(env, "#name"))
    assert env.page.title() == "name: null"
    assert 'the page asked "Your name?" (prompt), answered Cancel' in result.message
    result = env.execute(click(env, "#alert"))
    assert env.page.title() == "alerted"
    assert 'the page showed an alert "Saved at noon", closed' in result.message
    # A second press asks again and is answered the same: no yes is ever given.
    assert "answered Cancel" in env.execute(click(env, "#delete")).message
    assert env.page.title() == "deleted: false"
    # A page that asks without end fills no context: the first few are named, the rest counted.
    many = env.execute(click(env, "#many")).message
    assert many == ('clicked; the page showed an alert "number 0", closed; the page showed an '
                    'alert "number 1", closed; the page showed an alert "number 2", closed; '
                    "17 more dialogs, each closed or answered Cancel")
    # Those the page showed while the model thought count in the same few.
    many = click(env, "#many")
    env.page.evaluate("() => setTimeout(() => alert('a'), 50)")
    time.sleep(0.3)
    assert env.execute(many).message == (
        'clicked; before it, the page showed an alert "a", closed; the page showed an alert '
        '"number 0", closed; the page showed an alert "number 1", closed; 18 more dialogs, '
        "each closed or answered Cancel")


def test_a_popup_that_asks_as_it_loads_is_answered_and_told(env) -> None:
    said = 'the page asked "Allow this popup?" (confirm), answered Cancel'
    opened = env.execute(click(env, "#popup"))
    # Chromium reports the popup once its page starts: on a busy machine, after the screen
    # settled on the opener, and then at a later observation.
    wait_until(lambda: env.observe().extras["title"] == "asking", timeout_s=10,
               what="the popup to be shown")
    after = env.execute(Scroll(direction="down"))
    assert said in opened.message or f"before it, {said}" in after.message, (opened, after)


def test_leaving_a_page_that_holds_a_draft_takes_a_second_try_at_the_next_action(env,
                                                                                  port) -> None:
    start = env.page.url
    env.execute(click(env, "#draft"))
    assert env.execute(Type(text="half a letter")).ok
    stayed = env.execute(click(env, "#leave"))
    assert stayed.ok and "answered Stay" in stayed.message
    env.observe()
    assert env.page.url == start
    assert env.page.locator("#draft").input_value() == "half a letter"

    # Something else in between: the next try to leave is a first one again.
    env.execute(Scroll(direction="down"))
    failed = env.execute(Navigate(url=f"http://127.0.0.1:{port}/elsewhere?page=other"))
    assert not failed.ok and "answered Stay" in failed.message
    assert env.page.url == start

    time.sleep(0.2)  # the model reads the reply (chromium aborts a navigation right after Stay)
    left = env.execute(Navigate(url=f"http://127.0.0.1:{port}/elsewhere?page=other"))
    assert left.ok and "answered Leave" in left.message
    assert env.observe().extras["title"] == "other"


def test_alerts_the_page_raised_while_the_model_thought_do_not_eat_its_action(env) -> None:
    """Chromium drops an input sent while a dialog is open, and answering one alert lets the
    page's script raise its next: every one is answered before the action, whose text arrives
    whole."""
    env.execute(click(env, "#draft"))
    env.page.evaluate("() => nag(3)")
    time.sleep(0.5)  # the model thinks; the page raises its alerts meanwhile
    typed = env.execute(Type(text="hello world"))
    assert typed.ok and typed.message.startswith("typed 11 characters; before it, the page "
                                                 'showed an alert "expires 0", closed')
    assert typed.message.count("before it,") == 3, typed.message
    assert env.page.locator("#draft").input_value() == "hello world"


def test_a_leave_this_page_is_named_however_many_dialogs_come_with_it(env) -> None:
    env.execute(click(env, "#draft"))
    env.execute(Type(text="half a letter"))
    noisy = click(env, "#noisy")
    stayed = env.execute(noisy)
    assert 'alert "note 3", closed; the page asked to confirm leaving it' in stayed.message
    assert "answered Stay; try to leave it again" in stayed.message
    assert "more dialogs" not in stayed.message
    left = env.execute(noisy)
    assert left.message.endswith("the page asked again to confirm leaving it, answered Leave")
    assert env.observe().extras["title"] == "other"


def test_an_action_that_fails_in_between_takes_the_leave_away(env) -> None:
    from core.actions import Key

    env.execute(click(env, "#draft"))
    env.execute(Type(text="half a letter"))
    leave = click(env, "#leave")
    assert "answered Stay" in env.execute(leave).message
    assert not env.execute(Key(key="NoSuchKey")).ok  # the very next action, though it failed
    assert "answered Stay" in env.execute(leave).message
    assert env.page.locator("#draft").input_value() == "half a letter"


def test_each_episode_starts_as_the_first_did(port, playwright) -> None:
    """After a reset, the new start page's own dialog is told at the first action, as in the
    first episode, and its script may not close the tab (history of two, as at the start)."""
    with BrowserEnv(viewport=(400, 300), start_url=f"http://127.0.0.1:{port}/?page=terms",
                    playwright=playwright) as env:
        for episode in range(2):
            if episode:
                env.reset()
            else:
                env.observe()
            first = env.execute(Scroll(direction="down"))
            assert first.message == ('scrolled down; before it, the page asked "Accept the '
                                     'terms?" (confirm), answered Cancel'), (episode, first)
            env.execute(Scroll(direction="up"))
            assert env.execute(click(env, "#close")).ok
            assert env.observe().extras["title"] == "terms: false", episode


def test_reset_leaves_a_page_that_asks_before_it_is_left(env) -> None:
    env.execute(click(env, "#draft"))
    env.execute(Type(text="draft"))
    assert "answered Stay" in env.execute(click(env, "#leave")).message
    observation = env.reset()
    assert observation.extras["url"] == env.start_url
    # What the last episode's page asked is not told to the next episode's first action, and
    # the Stay told to the last episode's model lets this one's first try to leave go nowhere.
    assert env.execute(click(env, "#draft")).message == "clicked"
    env.execute(Type(text="a new draft"))
    assert "answered Stay" in env.execute(click(env, "#leave")).message
    assert env.page.url == env.start_url


def test_a_page_that_tries_to_leave_by_itself_grants_the_model_no_leave(env, port) -> None:
    """The page's own try to leave (a timer) is answered Stay, and the model's first try after
    it is a first try: answered Stay too, its draft kept."""
    env.execute(click(env, "#draft"))
    env.execute(Type(text="half a letter"))
    leave = click(env, "#leave")
    env.page.evaluate("() => wander()")
    time.sleep(0.6)  # the model thinks; the page tries to leave meanwhile
    tried = env.execute(leave)
    assert tried.message.startswith("clicked; before it, the page asked to confirm leaving it")
    assert tried.message.count("answered Stay") == 2 and "answered Leave" not in tried.message
    assert env.page.locator("#draft").input_value() == "half a letter"


@pytest.mark.parametrize("how", ["once", "again"])
def test_what_the_page_tries_by_itself_is_not_the_models_action_failing(port, playwright,
                                                                         how) -> None:
    off_list = f"http://localhost:{port}/?page=other"
    start = f"http://127.0.0.1:{port}/?page=wandering&off={off_list}"
    said = f"the page tried to open {off_list}, which is off the allowed domains (blocked)"
    with BrowserEnv(viewport=(400, 300), start_url=start, allowed_domains=["127.0.0.1"],
                    playwright=playwright) as env:
        env.observe()
        focus = click(env, "#field")
        env.page.evaluate("again => wander(again)", how == "again")
        time.sleep(0.6)  # the model thinks; meanwhile the page tries to leave
        if how == "once":
            # Tried before the click, so not the click's doing.
            clicked = env.execute(focus)
            assert clicked.ok and f"before it, {said}" in clicked.message, clicked.message
        else:
            env.execute(focus)
            time.sleep(0.3)
        # The text arrives whatever the page tries meanwhile, and is said to have arrived: a
        # model told it failed would type it again.
        typed = env.execute(Type(text="hello"))
        assert typed.ok, typed.message
        assert how == "once" or said in typed.message, typed.message
        assert env.page.locator("#field").input_value() == "hello"
        assert env.page.url == start


def test_a_page_that_tries_many_urls_off_the_list_fills_no_context(port, playwright) -> None:
    off_list = f"http://localhost:{port}/?page=other"
    start = f"http://127.0.0.1:{port}/?page=wandering&off={off_list}"
    with BrowserEnv(viewport=(400, 300), start_url=start, allowed_domains=["127.0.0.1"],
                    playwright=playwright) as env:
        env.observe()
        env.page.evaluate("() => spam(12)")
        time.sleep(1.5)  # the model thinks; the page tries its 12 urls meanwhile
        result = env.execute(Scroll(direction="down"))
    assert result.ok, result.message
    named = [f"before it, the page tried to open {off_list}&n={i}, which is off the allowed "
             "domains (blocked)" for i in range(3)]
    assert result.message == "; ".join(["scrolled down", *named, "before it, the page tried "
                                        "to open 9 more urls off the allowed domains (blocked)"])
