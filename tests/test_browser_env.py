"""The browser env on the real system chromium, against local pages that record their events."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from PIL import ImageChops

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
    Tap,
    Type,
)
from envs.base import EnvError
from envs.browser import BrowserEnv
from envs.urls import domain_allowed, normalize_url
from tests.conftest import require_tool
from tests.local_server import serve_directory
from tests.probes import find_color, wait_until
from tests.proc_table import command, descendants, processes

PAGES = Path(__file__).parent / "pages"
GREEN, YELLOW, RED, BLUE = (0, 200, 0), (255, 255, 0), (220, 0, 0), (0, 0, 220)


@pytest.fixture(scope="module")
def base_url():
    require_tool("chromium")
    with serve_directory(PAGES) as url:
        yield url


# A desktop-sized viewport at scale 2 and a phone-sized one at scale 3: screenshots are in
# device pixels, so every action below goes through the pixel -> CSS pixel conversion.
@pytest.fixture(
    scope="module", params=[((800, 600), 2.0), ((390, 844), 3.0)], ids=["800x600@2", "phone@3"]
)
def env(request, playwright):
    viewport, scale = request.param
    with BrowserEnv(viewport=viewport, device_scale_factor=scale, playwright=playwright) as browser:
        yield browser


@pytest.fixture
def page(env, base_url):
    """The events page, freshly loaded, and its first observation."""
    assert env.execute(Navigate(url=base_url + "events.html")).ok
    return env.observe()


def events(env, type_: str) -> list[dict]:
    return [e for e in env.page.evaluate("window.events") if e["type"] == type_]


def test_screenshot_is_in_device_pixels_with_url_and_title(env, page, base_url) -> None:
    width, height = env.viewport
    assert page.size == (round(width * env.scale), round(height * env.scale))
    assert page.extras["url"] == base_url + "events.html"
    assert page.extras["title"] == "events"
    # The 80x40 CSS-pixel target appears scale times larger in the screenshot.
    assert find_color(page.image, GREEN).size == (round(80 * env.scale), round(40 * env.scale))


@pytest.mark.parametrize("action_cls, event_type, button", [
    (Click, "click", 0), (DoubleClick, "dblclick", 0), (RightClick, "contextmenu", 2),
])
def test_clicks_land_where_the_screenshot_shows_the_target(
    env, page, action_cls, event_type, button
) -> None:
    target = find_color(page.image, GREEN)
    x, y = target.centre
    done = env.execute(action_cls(x=x, y=y))
    assert done.ok
    # No screenshot pixels in what the model reads: its own points are in another space.
    assert not any(c.isdigit() for c in done.message), done.message
    (event,) = events(env, event_type)
    assert event["id"] == "target" and event["button"] == button
    assert abs(event["clientX"] - x / env.scale) <= 1 and abs(event["clientY"] - y / env.scale) <= 1


def test_move_hovers_without_clicking(env, page) -> None:
    x, y = find_color(page.image, GREEN).centre
    assert env.execute(Move(x=x, y=y)).ok
    assert env.page.evaluate("document.querySelector('#target:hover') !== null")
    assert events(env, "mousedown") == []


def test_typed_text_including_non_ascii_arrives_exactly(env, page) -> None:
    x, y = find_color(page.image, YELLOW).centre
    assert env.execute(Click(x=x, y=y)).ok
    text = "héllo 日本語 ✓"
    assert env.execute(Type(text=text)).ok
    assert env.page.input_value("#field") == text
    assert env.execute(Hotkey(keys=["ctrl", "a"])).ok
    assert env.execute(Key(key="BackSpace")).ok
    assert env.page.input_value("#field") == ""
    assert env.execute(Key(key="Return")).ok
    assert events(env, "keydown")[-1]["key"] == "Enter"


TEXTAREA = """() => {
    const area = document.createElement('textarea');
    area.id = 'area';
    document.body.appendChild(area);
    area.focus();
    window.events = [];
}"""


@pytest.mark.parametrize(("text", "typed"), [
    ("a\r\nb", "a\nb"), ("a\rb", "a\nb"), ("a\r\r\nb\n\rc", "a\n\nb\n\nc"),
    ("\u65e5\r\n\u672c\n", "\u65e5\n\u672c\n"),
])
def test_a_line_break_is_typed_once_whichever_way_it_is_written(env, page, text, typed) -> None:
    # "\r\n" is one line break (one Enter), and so is a lone "\r".
    env.page.evaluate(TEXTAREA)
    assert env.execute(Type(text=text)).ok
    assert env.page.input_value("#area") == typed
    enters = [e for e in events(env, "keydown") if e["key"] == "Enter"]
    assert len(enters) == typed.count("\n")


def test_a_typing_error_does_not_quote_the_text(env, page, monkeypatch) -> None:
    from playwright.sync_api import Error as PlaywrightError

    text = "Zq9 xW7 'vK4' \\mP2\n"

    class FailingKeyboard:
        def type(self, typed: str) -> None:
            raise PlaywrightError(f"Keyboard.type: cannot type {typed!r} ({typed[:9]})")

    monkeypatch.setattr(type(env.page), "keyboard", property(lambda _: FailingKeyboard()))
    result = env.execute(Type(text=text))
    assert not result.ok and result.message.startswith(f"typing {len(text)} characters failed")
    for piece in {text[i:i + 6] for i in range(len(text) - 5)}:
        assert piece not in result.message and repr(piece)[1:-1] not in result.message


def test_unknown_key_fails_clearly(env, page) -> None:
    result = env.execute(Key(key="hyperdrive"))
    assert not result.ok and "unknown key 'hyperdrive'" in result.message


def test_drag_moves_the_box_by_the_drag_distance(env, page) -> None:
    before = find_color(page.image, RED)
    dx, dy = round(-90 * env.scale), round(60 * env.scale)
    x, y = before.centre
    assert env.execute(Drag(x=x, y=y, x2=x + dx, y2=y + dy)).ok
    after = find_color(env.observe().image, RED)
    assert abs(after.left - (before.left + dx)) <= env.scale
    assert abs(after.top - (before.top + dy)) <= env.scale


def test_scroll_moves_the_view_by_the_amount(env, page) -> None:
    before = find_color(page.image, GREEN)
    amount = round(60 * env.scale)
    assert env.execute(Scroll(direction="down", amount=amount)).ok
    wait_until(lambda: env.page.evaluate("scrollY") > 0)
    after = find_color(env.observe().image, GREEN)
    assert abs((before.top - after.top) - amount) <= env.scale
    assert env.execute(Scroll(direction="up", x=10, y=10, amount=amount)).ok
    wait_until(lambda: env.page.evaluate("scrollY") == 0)


def test_a_scroll_without_an_amount_goes_half_the_screen_along_its_direction(
        playwright, base_url) -> None:
    """On a tall phone viewport a sideways scroll goes half the width, not half the height
    (more than a whole screen width, skipping what no screenshot then showed); a long one
    stops at 100 screens of its own side."""
    with BrowserEnv(viewport=(300, 600), device_scale_factor=2, start_url=base_url + "events.html",
                    playwright=playwright) as browser:
        browser.page.evaluate("document.body.style.cssText = 'width: 90000px; height: 90000px'")
        assert browser.execute(Scroll(direction="right")).ok
        wait_until(lambda: browser.page.evaluate("scrollX") == 150)
        assert browser.execute(Scroll(direction="down")).ok
        wait_until(lambda: browser.page.evaluate("scrollY") == 300)
        assert browser.execute(Scroll(direction="right", amount=10**9)).ok
        wait_until(lambda: browser.page.evaluate("scrollX") == 150 + 100 * 300)


def test_navigate_and_back(env, page, base_url) -> None:
    assert env.execute(Navigate(url=base_url + "events.html?second=1")).ok
    assert env.observe().extras["url"].endswith("?second=1")
    result = env.execute(Back())
    assert result.ok, result.message
    assert env.observe().extras["url"] == base_url + "events.html"


def test_back_through_an_apps_own_routes_and_links_then_nothing(playwright, base_url) -> None:
    """A #link and a pushState route are history entries with no network response: going back
    through them works; once the first page is reached there is nothing to go back to."""
    start = base_url + "events.html"
    with BrowserEnv(viewport=(320, 240), start_url=start, playwright=playwright) as browser:
        browser.page.evaluate("history.pushState({}, '', '?view=2')")
        browser.page.evaluate("location.hash = 'details'")
        for url in (start + "?view=2", start):
            result = browser.execute(Back())
            assert result.ok and result.message == f"went back to {url}", result.message
            assert browser.page.url == url
        result = browser.execute(Back())
        assert not result.ok and "no previous page" in result.message
        assert browser.page.url == start


def test_reset_returns_to_the_start_page(playwright, base_url) -> None:
    start = base_url + "events.html"
    with BrowserEnv(viewport=(320, 240), start_url=start, playwright=playwright) as browser:
        assert browser.execute(Navigate(url=start + "?elsewhere=1")).ok
        assert browser.reset().extras["url"] == start
        # The new episode has no page before its start: back reached the last episode's.
        result = browser.execute(Back())
        assert not result.ok and "no previous page" in result.message, result.message
        assert browser.page.url == start


def _centre(env, script: str) -> tuple[int, int]:
    """The screenshot pixel at the centre of the box ``script`` gives (CSS pixels)."""
    left, top, width, height = env.page.evaluate(
        f"(() => {{ const r = {script}.getBoundingClientRect(); "
        "return [r.left, r.top, r.width, r.height]; })()")
    return int((left + width / 2) * env.scale), int((top + height / 2) * env.scale)


def test_a_drop_downs_options_are_on_the_screenshot_and_a_click_picks_one(env, base_url) -> None:
    """Headless chromium draws a <select>'s open list outside the page: a model saw it closed
    and had to choose blind."""
    assert env.execute(Navigate(url=base_url + "select.html")).ok
    closed = env.observe().image
    select = _centre(env, "document.getElementById('s')")
    assert env.execute(Click(x=select[0], y=select[1])).ok
    shown = env.observe().image
    options = "document.querySelector('[data-vlagent-options]')"
    left, bottom = env.page.evaluate(f"[{options}.getBoundingClientRect().left, "
                                     f"{options}.getBoundingClientRect().bottom]")
    # The list is drawn on the screenshot, under the drop-down, which still shows Aruba.
    changed = ImageChops.difference(closed, shown).getbbox()
    assert changed is not None and changed[3] >= int(bottom * env.scale) - 2
    assert changed[0] <= int(left * env.scale) + 2
    croatia = _centre(env, f"{options}.options[2]")
    assert env.execute(Click(x=croatia[0], y=croatia[1])).ok
    assert env.page.evaluate(f"[s.value, window.changes, {options} === null]") == [
        "Croatia", 1, True]
    assert env.observe().image != shown  # closed again, on the option picked
    # The keyboard picks too: typing reaches an option (a space is part of its name), Enter
    # takes it; Escape takes none.
    assert env.execute(Click(x=select[0], y=select[1])).ok
    assert env.execute(Type(text="South S")).ok and env.execute(Key(key="enter")).ok
    assert env.page.evaluate("[s.value, window.changes, document.activeElement.id]") == [
        "South Sudan", 2, "s"]
    assert env.execute(Click(x=select[0], y=select[1])).ok
    assert env.execute(Key(key="up")).ok and env.execute(Key(key="escape")).ok
    assert env.page.evaluate(f"[s.value, window.changes, {options} === null]") == [
        "South Sudan", 2, True]


def test_a_drop_down_at_the_bottom_opens_above_with_its_groups_and_in_a_shadow_root(
        env, base_url) -> None:
    """A list placed under a drop-down at the bottom left the screen, groups were lost (a
    disabled group's options could be picked), and a drop-down in a shadow root opened none."""
    assert env.execute(Navigate(url=base_url + "select.html")).ok
    options = "document.querySelector('[data-vlagent-options]')"
    low = _centre(env, "document.getElementById('low')")
    assert env.execute(Click(x=low[0], y=low[1])).ok
    top, bottom, height, groups, disabled = env.page.evaluate(
        f"(l => [l.getBoundingClientRect().top, l.getBoundingClientRect().bottom, innerHeight, "
        "[...l.querySelectorAll('optgroup')].map(g => g.label), "
        "[...l.options].filter(o => o.matches(':disabled')).map(o => o.value)])"
        f"({options})")
    assert 0 <= top and bottom <= height and groups == ["Open", "Closed"]
    assert disabled == ["B1", "B2"]
    assert env.execute(Key(key="escape")).ok
    inner = _centre(env, "document.getElementById('host').shadowRoot.getElementById('inner')")
    assert env.execute(Click(x=inner[0], y=inner[1])).ok
    assert env.page.evaluate(f"[...{options}.options].map(o => o.value)") == ["one", "two"]
    two = _centre(env, f"{options}.options[1]")
    assert env.execute(Click(x=two[0], y=two[1])).ok
    assert env.page.evaluate(
        "document.getElementById('host').shadowRoot.getElementById('inner').value") == "two"


@pytest.mark.parametrize("page_name, select, within", [
    ("select_in_dialog.html", "document.getElementById('s')", "document"),
    ("select_in_dialog.html",
     "document.getElementById('host').shadowRoot.getElementById('inner')", "document"),
    # Slotted into a component's own modal dialog: the list goes into that dialog.
    ("select_slotted_dialog.html", "document.getElementById('s')",
     "document.querySelector('modal-box').shadowRoot"),
    ("select_zoomed.html", "document.getElementById('s')", "document"),
])
def test_a_drop_down_in_a_modal_dialog_or_a_zoomed_page_opens_where_a_click_picks(
        env, base_url, page_name, select, within) -> None:
    """The list went behind a modal dialog (the rest of the page is inert there, so a click on
    an option hit the dialog), and on a page with CSS zoom it was placed twice as far away, off
    the screen."""
    assert env.execute(Navigate(url=base_url + page_name)).ok
    box = env.page.evaluate(f"(r => [r.left, r.bottom])({select}.getBoundingClientRect())")
    x, y = _centre(env, select)
    assert env.execute(Click(x=x, y=y)).ok
    options = f"{within}.querySelector('[data-vlagent-options]')"
    left, top, bottom = env.page.evaluate(
        f"(r => [r.left, r.top, r.bottom])({options}.getBoundingClientRect())")
    assert abs(left - box[0]) <= 1 and abs(top - box[1]) <= 1  # just under the drop-down
    assert bottom <= env.page.evaluate("innerHeight")
    last = env.page.evaluate(f"{options}.options.length - 1")
    picked = env.page.evaluate(f"{options}.options[{last}].value")
    x, y = _centre(env, f"{options}.options[{last}]")
    assert env.execute(Click(x=x, y=y)).ok
    assert env.page.evaluate(f"[{select}.value, {options} === null]") == [picked, True]


def test_unsupported_kind_is_refused(env, page) -> None:
    result = env.execute(Tap(x=1, y=1))
    assert not result.ok and "does not support 'tap'" in result.message
    assert events(env, "mousedown") == []


# -- the domain allowlist ---------------------------------------------------------------------
def test_domain_matching_and_url_normalising() -> None:
    allowed = ["example.com", "127.0.0.1"]
    assert domain_allowed("https://example.com/a", allowed)
    assert domain_allowed("http://shop.example.com:8080/", allowed)
    assert domain_allowed("http://127.0.0.1:5000/x", allowed)
    assert not domain_allowed("https://badexample.com/", allowed)
    assert not domain_allowed("https://example.com.evil.net/", allowed)
    assert not domain_allowed("file:///etc/passwd", allowed)
    assert not domain_allowed("javascript:alert(1)", allowed)
    assert domain_allowed("about:blank", allowed)
    assert normalize_url("example.com/x") == "https://example.com/x"
    assert normalize_url("http://a.b") == "http://a.b"


# Urls whose host Python's urlsplit once read apart from a browser, and their neighbours.
TRICKY_URLS = [
    "https://evil.com\\@example.com", "evil.com\\@example.com/", "https://evil.com\\.example.com",
    "https:\\\\evil.com\\@example.com", "HTTPS://evil.com\\@example.com", "https:evil.com",
    "https:///evil.com/@example.com", "https:/\\evil.com", "https://ev\til.com\\@example.com",
    "https://evil.com\n\\@example.com", " \x01https://evil.com\\@example.com ",
    "https://example.com@evil.com", "https://evil.com#@example.com", "https://evil.com?@example.com",
    "https://evil.com%5C@example.com", "https://example.com\\@evil.com", "//evil.com",
    "https://evil.com\uff3c@example.com", "https://evil.com\uff0f@example.com",
    "http://evil.com:80\\@example.com", "https://evil.com;@example.com", "https:\\/example.com",
    "https://example.com:443\\@evil.com", "https://evil.com\\\\.example.com", "HtTp:example.com",
    "https://shop.example.com:8080/x", "https://evil%2Ecom", "https://[::1",
    "https://example.com\u3002evil.com", "https://evil.com\x7f@example.com",
    # Hosts in other scripts, which chromium spells in ASCII (IDNA).
    "https://b\u00fccher.example.com/", "https://\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.com",
    "https://fa\u00df.example.com", "https://exam\u00adple.com", "https://\u0435xample.com",
    "https://evil.com\u2024example.com", "https://xn--exmple-cua.com", "https://EXAMPLE.COM\u3002",
]


def test_domain_allowed_reads_the_host_chromium_goes_to(guarded) -> None:
    # Chromium's own URL parser says which host each url goes to: an url the allowlist lets
    # through must go to an allowed host (it may refuse more than chromium would go to).
    normalized = [normalize_url(url) for url in TRICKY_URLS]
    hosts = guarded.page.evaluate("""(urls) => urls.map((u) => {
        try { return new URL(u).hostname; } catch (e) { return null; } })""", normalized)
    for url, host in zip(normalized, hosts):
        if domain_allowed(url, ["example.com"]):
            assert host == "example.com" or host.endswith(".example.com"), (url, host)
    # And each of the urls that once slipped through is refused.
    for url in TRICKY_URLS[:11]:
        assert not domain_allowed(normalize_url(url), ["example.com"]), url
    # A host in another script is allowed as the browser spells it, however the list or the
    # url writes it.
    for allowed in (["b\u00fccher.example"], ["xn--bcher-kva.example"], ["B\u00dcCHER.example"]):
        for url in ("https://b\u00fccher.example/", "https://shop.B\u00dcCHER.example/",
                    "https://xn--bcher-kva.example/"):
            assert domain_allowed(url, allowed), (url, allowed)
        assert not domain_allowed("https://bucher.example/", allowed)


@pytest.fixture(scope="module")
def guarded(playwright):
    """A browser allowed on 127.0.0.1 only; localhost is the same server, but off the list."""
    with BrowserEnv(
        viewport=(640, 480), allowed_domains=["127.0.0.1"], playwright=playwright
    ) as browser:
        yield browser


def test_navigate_off_the_list_is_blocked_and_reported(guarded, base_url) -> None:
    start = base_url + "events.html"
    assert guarded.execute(Navigate(url=start)).ok
    off_list = start.replace("127.0.0.1", "localhost")
    result = guarded.execute(Navigate(url=off_list))
    assert not result.ok
    assert f"blocked navigation to {off_list}" in result.message
    assert "not in the allowed domains (127.0.0.1)" in result.message
    assert guarded.observe().extras["url"] == start


def test_a_backslash_does_not_take_navigate_off_the_list(guarded, base_url) -> None:
    # To chromium, "http://localhost:PORT\\@127.0.0.1/" is a path on localhost, not a user
    # name before 127.0.0.1: it is blocked, and the message names the url chromium would open.
    start = base_url + "events.html"
    assert guarded.execute(Navigate(url=start)).ok
    host_and_port = base_url.split("//", 1)[1].rstrip("/").replace("127.0.0.1", "localhost")
    result = guarded.execute(Navigate(url=f"http://{host_and_port}\\@127.0.0.1/events.html"))
    assert not result.ok
    assert f"blocked navigation to http://{host_and_port}/@127.0.0.1/" in result.message
    assert guarded.observe().extras["url"] == start


def test_a_click_that_leads_off_the_list_is_blocked_not_followed(guarded, base_url) -> None:
    off_list = base_url.replace("127.0.0.1", "localhost") + "events.html"
    start = f"{base_url}events.html?link={off_list}"
    assert guarded.execute(Navigate(url=start)).ok
    link = find_color(guarded.observe().image, BLUE)
    result = guarded.execute(Click(x=link.centre[0], y=link.centre[1]))
    assert not result.ok
    assert f"blocked navigation to {off_list}" in result.message
    assert guarded.observe().extras["url"] == start
    # The same link on the allowed host is followed.
    on_list = base_url + "events.html?followed=1"
    assert guarded.execute(Navigate(url=f"{base_url}events.html?link={on_list}")).ok
    assert guarded.execute(Click(x=link.centre[0], y=link.centre[1])).ok
    guarded.page.wait_for_url(on_list, timeout=5000)


# -- a browser that goes away -----------------------------------------------------------------
def _our_chromium_browser_process() -> int:
    """The chromium main process this test process started last (through Playwright's driver;
    a module's other browsers may still run)."""
    table = processes()
    browsers = [pid for pid in descendants(os.getpid()) if pid in table
                and "chromium" in command(pid).split(" ")[0] and "--type=" not in command(pid)
                and "crashpad" not in command(pid)]
    assert browsers, "no chromium process found under this test process"
    return max(browsers, key=lambda pid: int(table[pid][19]))  # the latest start time


def test_a_killed_browser_gives_a_clear_error_quickly(playwright, base_url) -> None:
    with BrowserEnv(
        viewport=(320, 240), start_url=base_url + "events.html", playwright=playwright
    ) as browser:
        browser.observe()
        os.kill(_our_chromium_browser_process(), signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(EnvError, match="closed|crashed"):
            browser.observe()
        result = browser.execute(Click(x=5, y=5))
        assert not result.ok and "start a new browser env" in result.message
        assert time.monotonic() - start < 10


def test_a_closed_browser_gives_a_clear_error(playwright, base_url) -> None:
    browser = BrowserEnv(viewport=(320, 240), playwright=playwright)
    browser.close()
    with pytest.raises(EnvError, match="closed"):
        browser.observe()
    result = browser.execute(Navigate(url=base_url))
    assert not result.ok and "closed" in result.message
    browser.close()  # twice is fine


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "FILE:///etc/hostname", "javascript:document.title='pwned'",
    "data:text/html,<script>document.title='pwned'</script>", "view-source:https://example.com",
    "chrome://settings",
])
def test_a_model_navigates_to_web_pages_only(env, page, url) -> None:
    before = env.page.url
    result = env.execute(Navigate(url=url))
    assert not result.ok and "http(s) urls only" in result.message
    assert env.page.url == before and env.page.title() != "pwned"


def test_a_screenshot_chromium_cannot_take_mid_navigation_is_tried_again(env, page,
                                                                        monkeypatch) -> None:
    from playwright.sync_api import Error as PlaywrightError

    real, calls = env.page.screenshot, []

    def flaky(**kwargs):
        calls.append(kwargs)
        if len(calls) < 3:
            raise PlaywrightError("Protocol error (Page.captureScreenshot): "
                                  "Unable to capture screenshot")
        return real(**kwargs)

    monkeypatch.setattr(env.page, "screenshot", flaky)
    assert env.capture().size == env.observe().size
    assert len(calls) >= 3

    def broken(**kwargs):
        raise PlaywrightError("Protocol error (Page.captureScreenshot): something else")

    monkeypatch.setattr(env.page, "screenshot", broken)
    with pytest.raises(EnvError, match="something else"):
        env.capture()


# Pages of made-up sites (shop.test and bank.test are two origins, so a bank.test frame in a
# shop.test page is cross-origin). Points below are CSS pixels of the top page.
PRESS = "onclick='window.pressed = this.textContent'"
SITES = {
    "http://shop.test/": f"""<body style="margin:0">
<iframe src="http://shop.test/inner.html" style="position:absolute;left:20px;top:30px;
  width:300px;height:150px;border:4px solid;padding:6px"></iframe>
<iframe src="http://bank.test/pay.html" style="position:absolute;left:20px;top:200px;
  width:300px;height:150px;border:0"></iframe>
<div id="host" style="position:absolute;left:20px;top:370px"></div>
<x-pay role="button" style="position:absolute;left:20px;top:500px;display:block;width:250px;
  height:40px"><b>Pay</b></x-pay>
<script>
host.attachShadow({{mode: 'open'}}).innerHTML = "<button style='width:150px;height:40px' "
  + "{PRESS}>Delete</button><iframe src='http://bank.test/shadowed.html' "
  + "style='display:block;width:200px;height:80px;border:0'></iframe>";
document.querySelector('x-pay').attachShadow({{mode: 'open'}}).innerHTML =
  "<span>Review and <slot></slot> </span><i>now</i>";
</script></body>""",
    # Same origin, in the first frame: a button, and a cross-origin frame nested in it.
    "http://shop.test/inner.html": f"""<body style="margin:0">
<button style="width:100px;height:40px" {PRESS}>Pay now</button>
<iframe src="http://bank.test/deep.html" style="position:absolute;left:120px;top:10px;
  width:150px;height:100px;border:2px solid"></iframe></body>""",
    # Two frames down: a button and a password field in a shadow root.
    "http://bank.test/deep.html": f"""<body style="margin:0"><div id="host"></div><script>
host.attachShadow({{mode: 'open'}}).innerHTML = "<button style='display:block;width:120px;"
  + "height:30px' {PRESS}>Transfer</button><input id='secret' type='password'>";
</script></body>""",
    "http://bank.test/pay.html": f"""<body style="margin:0">
<button style="width:120px;height:40px" {PRESS}>Buy</button>
<input id="pin" type="password" style="display:block"><input id="note"></body>""",
    # In an iframe that is in a shadow root of the top page.
    "http://bank.test/shadowed.html": f"""<body style="margin:0">
<a href="#sent" style="display:block;width:100px;height:30px" {PRESS}>Send</a></body>""",
    # A cross-origin frame below the first screen.
    "http://shop.test/below.html": """<body style="margin:0"><div style="height:1500px"></div>
<iframe src="http://bank.test/pay.html" style="display:block;margin-left:20px;width:300px;
  height:150px;border:0"></iframe><div style="height:1500px"></div></body>""",
    # An iframe drawn at half its size, its page scrolled down: the button is 300px down it.
    "http://shop.test/scaled.html": """<body style="margin:0">
<iframe src="http://bank.test/tall.html" style="position:absolute;left:20px;top:20px;
  width:400px;height:200px;border:0;transform:scale(0.5);transform-origin:0 0"></iframe></body>""",
    "http://bank.test/tall.html": f"""<body style="margin:0"><div style="height:300px"></div>
<button style="display:block;width:200px;height:60px" {PRESS}>Pay now</button>
<div style="height:600px"></div></body>""",
}


@pytest.fixture
def sites(env):
    """``open_site(url)`` opens a page of ``SITES`` (each url of it served to the env's page)."""
    def fulfil(route):
        route.fulfill(content_type="text/html", body=SITES[route.request.url.split("#")[0]])

    env.page.route("http://*.test/**", fulfil)

    def open_site(url):
        env.page.goto(url)
        # Observed at once, as the agent observes before it acts (a capture made before a frame
        # of another origin first drew once lost every later click into it).
        env.observe()
        return env.page

    yield open_site
    env.page.unroute("http://*.test/**", fulfil)
    env.page.goto("about:blank")


def frame(env, url):
    """The frame showing ``url``; a click on a link to "#sent" may have moved it there."""
    return next(f for f in env.page.frames if f.url.split("#")[0] == url)


def element_at(env, x, y):
    """The element at CSS point (x, y) of the page, as the env reads it from a screenshot's
    pixel."""
    return env.element_at(round(x * env.scale), round(y * env.scale))


def pressed_by_click(env, x, y) -> dict[str, str]:
    """What a click at CSS point (x, y) pressed, by frame url (a frame of another origin runs in
    a renderer of its own, which may handle the click after the page's acknowledged it)."""
    def pressed():
        return {f.url.split("#")[0]: f.evaluate("window.pressed") for f in env.page.frames}

    before = pressed()
    assert env.execute(Click(x=round(x * env.scale), y=round(y * env.scale))).ok
    now = wait_until(lambda: (p := pressed()) != before and p, what=f"a press at {(x, y)}")
    return {url: text for url, text in now.items() if before.get(url) != text}


def test_the_gate_sees_into_frames_and_shadow_roots(env, sites) -> None:
    from agent.safety import ConfirmationGate, GateRules

    sites("http://shop.test/")
    gate = ConfirmationGate(GateRules(), env, "deny")
    cases = [
        ((50, 50), "Pay now", "http://shop.test/inner.html"),  # same-origin iframe
        ((160, 60), "Transfer", "http://bank.test/deep.html"),  # its cross-origin iframe's shadow
        ((40, 210), "Buy", "http://bank.test/pay.html"),  # cross-origin iframe
        ((30, 380), "Delete", "http://shop.test/"),  # shadow root of the top page
        ((30, 420), "Send", "http://bank.test/shadowed.html"),  # iframe in that shadow root
    ]
    for (x, y), text, url in cases:
        element = element_at(env, x, y)
        assert element.text == text and not element.opaque, (x, y)
        hit = gate.sensitive(Click(x=round(x * env.scale), y=round(y * env.scale)))
        assert hit.rule == "tap_text" and repr(text) in hit.reason, (x, y)
        # The click at that point presses that very element, and nothing else.
        assert pressed_by_click(env, x, y) == {url: text}, (x, y)
    # A custom element that is a button: its text is in its shadow root and in a slot.
    for x, y in [(30, 510), (120, 510), (200, 510), (260, 530)]:  # (120, 510): on the <b>
        assert element_at(env, x, y).text == "Review and Pay now", (x, y)
    # On an iframe's border, in its empty part, off everything: nothing to gate.
    border = element_at(env, 22, 100)  # the iframe itself
    assert border.text == "" and not border.opaque
    assert element_at(env, 60, 150) is None
    assert element_at(env, 360, 300) is None
    for x, y in [(22, 100), (60, 150), (360, 300)]:
        assert gate.sensitive(Click(x=round(x * env.scale), y=round(y * env.scale))) is None


def test_a_capture_right_after_a_load_loses_no_click_into_a_cross_origin_frame(env, sites):
    # Captured at once, before the frame had drawn, chromium went on sending the clicks over it
    # to the frame's element in the page: in about half of the loads, every one was lost.
    for _ in range(4):
        sites("http://shop.test/")
        assert pressed_by_click(env, 40, 210) == {"http://bank.test/pay.html": "Buy"}
        assert pressed_by_click(env, 160, 60) == {"http://bank.test/deep.html": "Transfer"}


def test_a_frame_out_of_view_is_waited_for_once_scrolled_into_view(env, sites, monkeypatch):
    # Out of view, a frame does not draw (each capture would wait for it in vain) and takes no
    # click; once a capture finds it in view, it is let draw, and takes its clicks.
    frame_type = type(env.page.main_frame)
    real, waited = frame_type.wait_for_function, []

    def spy(frame, *args, **kwargs):
        waited.append(frame.url)
        return real(frame, *args, **kwargs)

    monkeypatch.setattr(frame_type, "wait_for_function", spy)
    sites("http://shop.test/below.html")
    assert waited == []
    env.page.evaluate("window.scrollTo(0, 1400)")
    env.observe()
    assert waited == ["http://bank.test/pay.html"]
    assert pressed_by_click(env, 40, 120) == {"http://bank.test/pay.html": "Buy"}


def test_a_scaled_and_scrolled_frame_is_read_where_it_is_drawn(env, sites) -> None:
    sites("http://shop.test/scaled.html")
    tall = frame(env, "http://bank.test/tall.html")
    tall.evaluate("window.scrollTo(0, 250)")
    # The button is at 50..110 of the frame's viewport, drawn at half size from (20, 20).
    assert element_at(env, 40, 60).text == "Pay now"
    assert element_at(env, 40, 30).text == ""  # the spacer above it
    assert env.execute(Click(x=round(40 * env.scale), y=round(60 * env.scale))).ok
    wait_until(lambda: tall.evaluate("window.pressed") == "Pay now", what="'Pay now' pressed")


def test_typing_into_a_password_field_in_a_frame_is_gated(env, sites) -> None:
    from agent.safety import ConfirmationGate, GateRules

    sites("http://shop.test/")
    gate = ConfirmationGate(GateRules(), env, "deny")
    assert env.focused_element() is None
    frame(env, "http://bank.test/pay.html").focus("#pin")  # cross-origin
    assert env.focused_element().password
    assert gate.sensitive(Type(text="1234")).rule == "password_field"
    frame(env, "http://bank.test/pay.html").focus("#note")
    assert not env.focused_element().password and gate.sensitive(Type(text="1234")) is None
    frame(env, "http://bank.test/deep.html").focus("#secret")  # shadow root, two frames down
    assert env.focused_element().password
    assert gate.sensitive(Type(text="1234")).rule == "password_field"


def test_a_frame_that_cannot_be_inspected_is_sensitive(env, sites, monkeypatch) -> None:
    import envs.page_elements
    from agent.safety import ConfirmationGate, GateRules

    sites("http://shop.test/")
    gate = ConfirmationGate(GateRules(), env, "deny")
    frame(env, "http://bank.test/deep.html").focus("#secret")
    # Frames deeper than the lookup follows are not inspected: what is in them is unknown.
    monkeypatch.setattr(envs.page_elements, "MAX_FRAME_DEPTH", 1)
    assert element_at(env, 50, 50).text == "Pay now"  # one frame down is still read
    assert element_at(env, 160, 60).opaque and env.focused_element().opaque
    hit = gate.sensitive(Click(x=round(160 * env.scale), y=round(60 * env.scale)))
    assert hit.rule == "tap_text" and "cannot inspect" in hit.reason
    assert gate.sensitive(Type(text="x")).rule == "password_field"
    # A frame Playwright cannot reach at all.
    monkeypatch.setattr(envs.page_elements, "MAX_FRAME_DEPTH", 8)
    monkeypatch.setattr(envs.page_elements, "frame_of", lambda frame, owner: None)
    assert element_at(env, 40, 210).opaque
    assert gate.sensitive(Click(x=round(40 * env.scale), y=round(210 * env.scale))).rule == \
        "tap_text"
    assert element_at(env, 30, 380).text == "Delete"  # not in a frame: read as ever
