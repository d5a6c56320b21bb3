"""The browser env shows one tab, as a person's browser does: a page that a link or a script
opens in a new tab or window (a popup) is the one observed and acted on from the next observation
on, at the env's own size; when it closes, the page before it comes back. The domain allowlist
holds for popups before they load anything."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from urllib.parse import quote

import pytest

from core.actions import Back, Click, Drag, Navigate
from envs.browser import BrowserEnv
from tests.conftest import require_tool
from tests.local_server import serve_pages
from tests.probes import wait_until

VIEWPORT, SCALE = (400, 300), 2.0

# /page?t=TITLE, and where its controls lead: TAB (a link to a new tab), WIN (a button that
# opens a 200x100 window, kept as window.win), GO (a plain link), TIMER (a window.open 50 ms
# after load, with no click or key). CLOSE closes the page. Each control is 200x50 CSS pixels,
# one under the other; clicks on MARK are counted in window.marks.
PAGE = """<!doctype html><title>{t}</title><body style="margin:0">
<style>#tab, #win, #go, #close, #mark {{display:block;width:200px;height:50px;margin:0;
  border:0}}</style>
<a id="tab" target="_blank" href="{tab}">tab</a>
<button id="win" onclick="window.win = window.open('{win}', '', 'width=200,height=100')">
  win</button>
<a id="go" href="{go}">go</a>
<button id="close" onclick="window.close()">close</button>
<div id="mark" onclick="window.marks += 1">mark</div>
<script>
window.marks = 0;
if ('{timer}') setTimeout(() => window.open('{timer}'), 50);
</script></body>"""
TAB, WIN, GO, CLOSE, MARK = ((100 * SCALE, (25 + 50 * i) * SCALE) for i in range(5))


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadingHTTPServer]:
    """``/page?...`` is PAGE with its fields from the query."""
    require_tool("chromium")
    fields = ("t", "tab", "win", "go", "timer")
    with serve_pages(lambda query: PAGE.format(**{name: query.get(name, "")
                                                  for name in fields}).encode()) as server:
        yield server


def page_url(server, host: str = "127.0.0.1", **fields: str) -> str:
    """The url of a PAGE on ``host`` (localhost is the same server under another name)."""
    query = "&".join(f"{name}={quote(value, safe='')}" for name, value in fields.items())
    return f"http://{host}:{server.server_port}/page?{query}"


@pytest.fixture
def env(playwright) -> Iterator[BrowserEnv]:
    with BrowserEnv(viewport=VIEWPORT, device_scale_factor=SCALE, playwright=playwright) as env:
        yield env


@pytest.fixture
def guarded(playwright) -> Iterator[BrowserEnv]:
    """Allowed on 127.0.0.1 only; localhost is the same server, but off the list."""
    with BrowserEnv(viewport=VIEWPORT, device_scale_factor=SCALE, playwright=playwright,
                    allowed_domains=["127.0.0.1"]) as env:
        yield env


def shown(env: BrowserEnv, url: str):
    """The first observation that shows ``url`` (a popup shows from the observation after the
    browser reports it)."""
    last = []

    def showing():
        last[:] = [env.observe()]
        return last[0].extras["url"] == url

    wait_until(showing, what=f"the env showing {url}")
    return last[0]


def after_a_call(page, probe):
    """``probe``, asked after a call on ``page``: Playwright's sync API hears of a page opening
    or closing during a call only."""
    def answer():
        page.evaluate("0")
        return probe()

    return answer


def open_tabs(env: BrowserEnv) -> list[str]:
    """The urls of the browser's tabs, as chromium lists them (Playwright never hears of a tab
    that has not shown a first page)."""
    session = env.page.context.browser.new_browser_cdp_session()
    try:
        targets = session.send("Target.getTargets")["targetInfos"]
    finally:
        session.detach()
    return [target["url"] for target in targets if target["type"] == "page"]


def popup_shown(env: BrowserEnv, server) -> tuple[str, str]:
    """Open page "first", click its link to a new tab and observe that tab, "second"; their
    urls."""
    second = page_url(server, t="second")
    first = page_url(server, t="first", tab=second)
    assert env.execute(Navigate(url=first)).ok
    assert env.execute(Click(x=TAB[0], y=TAB[1])).ok
    shown(env, second)
    return first, second


def test_a_link_to_a_new_tab_is_followed_and_acted_on(env, server) -> None:
    first, second = popup_shown(env, server)
    opener = next(page for page in env.page.context.pages if page.url == first)
    observation = env.observe()
    assert observation.extras["url"] == second and observation.extras["title"] == "second"
    assert observation.size == (VIEWPORT[0] * SCALE, VIEWPORT[1] * SCALE)
    assert env.execute(Click(x=MARK[0], y=MARK[1])).ok
    assert env.page.evaluate("window.marks") == 1
    assert opener.evaluate("window.marks") == 0


def test_a_window_that_asks_for_its_own_size_is_shown_at_the_envs(env, server) -> None:
    popup = page_url(server, t="window")
    assert env.execute(Navigate(url=page_url(server, t="first", win=popup))).ok
    assert env.execute(Click(x=WIN[0], y=WIN[1])).ok
    observation = shown(env, popup)
    assert observation.size == (VIEWPORT[0] * SCALE, VIEWPORT[1] * SCALE)
    assert env.page.evaluate("[innerWidth, innerHeight, devicePixelRatio]") == [*VIEWPORT, SCALE]


def test_a_page_that_closes_itself_gives_way_to_the_page_before(env, server) -> None:
    third = page_url(server, t="third")
    second = page_url(server, t="second", win=third)
    first = page_url(server, t="first", tab=second)
    assert env.execute(Navigate(url=first)).ok
    assert env.execute(Click(x=TAB[0], y=TAB[1])).ok
    shown(env, second)
    assert env.execute(Click(x=WIN[0], y=WIN[1])).ok
    shown(env, third)
    for before, title in [(second, "second"), (first, "first")]:
        assert env.execute(Click(x=CLOSE[0], y=CLOSE[1])).ok
        assert shown(env, before).extras["title"] == title
    assert env.execute(Click(x=MARK[0], y=MARK[1])).ok
    assert env.page.url == first and env.page.evaluate("window.marks") == 1


def test_a_page_that_closes_as_its_frame_is_taken_gives_way(env, server, monkeypatch) -> None:
    first, _ = popup_shown(env, server)
    popup, real = env.page, env.page.screenshot

    def close_then_shoot(**kwargs):
        popup.close()
        return real(**kwargs)

    monkeypatch.setattr(popup, "screenshot", close_then_shoot)
    env.capture()
    assert env.page.url == first


def test_an_action_during_which_the_page_closes_is_done(env, server) -> None:
    first, _ = popup_shown(env, server)
    # The page closes as the button goes down, while the drag still has moves to make.
    # (A function: Playwright calls what an expression evaluates to when that is a function,
    # which would close the page at once.)
    env.page.evaluate("() => { document.querySelector('#close').onmousedown = "
                      "() => window.close(); }")
    result = env.execute(Drag(x=CLOSE[0], y=CLOSE[1], x2=MARK[0], y2=MARK[1]))
    assert result.ok and result.message == "drag closed the page"
    assert env.observe().extras["url"] == first


def test_back_on_a_popup_goes_back_in_it_then_closes_it(env, server) -> None:
    elsewhere = page_url(server, t="elsewhere")
    first, second = popup_shown(env, server)
    assert env.execute(Navigate(url=elsewhere)).ok
    assert env.execute(Back()).message == f"went back to {second}"
    result = env.execute(Back())
    assert result.ok and result.message == f"closed {second} and went back to {first}"
    assert env.observe().extras["url"] == first
    assert open_tabs(env) == [first]
    result = env.execute(Back())  # the first page: nothing before it
    assert not result.ok and "no previous page" in result.message


def test_an_action_goes_to_the_page_last_observed(env, server) -> None:
    second = page_url(server, t="second")
    first = page_url(server, t="first", tab=second)
    assert env.execute(Navigate(url=first)).ok
    opener = env.page
    assert env.execute(Click(x=TAB[0], y=TAB[1])).ok
    wait_until(after_a_call(opener, lambda: len(opener.context.pages) == 2),
               what="the popup reported")
    assert env.execute(Click(x=MARK[0], y=MARK[1])).ok  # made on the screen of the first page
    assert opener.evaluate("window.marks") == 1
    shown(env, second)
    popup = env.page
    # The page observed closes before the action made on it: the action is not done elsewhere.
    popup.evaluate("window.close()")
    wait_until(after_a_call(opener, popup.is_closed), what="the popup closed")
    result = env.execute(Click(x=MARK[0], y=MARK[1]))
    assert not result.ok
    assert result.message == f"click: the page closed before it; the browser now shows {first}"
    assert opener.evaluate("window.marks") == 1
    assert env.observe().extras["url"] == first


def test_a_page_reported_while_a_frame_is_taken_is_the_one_captured(env, server,
                                                                     monkeypatch) -> None:
    popup = page_url(server, t="popup")
    assert env.execute(Navigate(url=page_url(server, t="first", win=popup))).ok
    opener, real = env.page, env.page.screenshot

    def shot_while_a_popup_opens(**kwargs):
        frame = real(**kwargs)
        opener.click("#win")
        wait_until(after_a_call(opener, lambda: len(opener.context.pages) == 2),
                   what="the popup reported")
        return frame

    monkeypatch.setattr(opener, "screenshot", shot_while_a_popup_opens)
    env.capture()
    assert env.page.url == popup


def test_a_popup_a_page_opens_by_itself_is_shown_and_back_closes_it(env, server) -> None:
    timed = page_url(server, t="timed")
    first = page_url(server, t="first", timer=timed)
    assert env.execute(Navigate(url=first)).ok
    assert shown(env, timed).extras["title"] == "timed"
    assert env.execute(Back()).ok
    assert env.observe().extras["url"] == first
    assert open_tabs(env) == [first]


def test_reset_closes_the_popups(playwright, server) -> None:
    second = page_url(server, t="second")
    start = page_url(server, t="start", tab=second)
    with BrowserEnv(viewport=VIEWPORT, device_scale_factor=SCALE, start_url=start,
                    playwright=playwright) as env:
        assert env.execute(Click(x=TAB[0], y=TAB[1])).ok
        shown(env, second)
        assert env.reset().extras["url"] == start
        assert open_tabs(env) == [start]


# -- the domain allowlist ---------------------------------------------------------------------
OFF_LIST = "http://localhost:PORT/page?t=off"


@pytest.mark.parametrize("control, target", [
    ("tab", OFF_LIST), ("win", OFF_LIST),
    ("tab", "/redirect?to=" + quote(OFF_LIST, safe="")),  # on the list, redirected off it
    ("win", "about:blank"),  # a blank window, sent off the list once open
], ids=["link", "window", "redirect", "blank window"])
def test_a_popup_off_the_list_loads_nothing_and_closes(guarded, server, control, target) -> None:
    port = str(server.server_port)
    off_list = OFF_LIST.replace("PORT", port)
    first = page_url(server, t="first", **{control: target.replace("PORT", port)})
    assert guarded.execute(Navigate(url=first)).ok
    opener = guarded.page
    server.asked.clear()
    x, y = TAB if control == "tab" else WIN
    result = guarded.execute(Click(x=x, y=y))
    if target == "about:blank":
        assert result.ok
        opener.evaluate("(url) => { window.win.location = url; }", off_list)
    blocked: list[str] = [] if result.ok else [result.message]

    def reported_and_closed() -> bool:
        observation = guarded.observe()
        blocked.extend(observation.extras.get("blocked_urls", []))
        return any(off_list in text for text in blocked) and open_tabs(guarded) == [first]

    wait_until(reported_and_closed, what="the popup blocked and closed")
    assert not any("t=off" in path for path in server.asked), server.asked
    assert guarded.observe().extras["url"] == first


def test_a_popup_on_the_list_is_followed_and_guarded_in_its_turn(guarded, server) -> None:
    off_list = page_url(server, host="localhost", t="off")
    second = page_url(server, t="second", go=off_list)
    first = page_url(server, t="first", tab=second)
    assert guarded.execute(Navigate(url=first)).ok
    assert guarded.execute(Click(x=TAB[0], y=TAB[1])).ok
    shown(guarded, second)
    result = guarded.execute(Click(x=GO[0], y=GO[1]))
    assert not result.ok and f"blocked navigation to {off_list}" in result.message
    assert result.message.endswith(f"the page stayed at {second}")
    assert guarded.observe().extras["url"] == second
    assert sorted(open_tabs(guarded)) == sorted([first, second])
