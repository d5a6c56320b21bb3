"""The browser's domain allowlist holds across HTTP redirects: an allowed url that answers with a
redirect to a host off the list is not followed, whether a ``navigate``, a link or a frame asked
for it (Playwright's routes never see a redirect's hops)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from core.actions import Click, Navigate
from envs import chromium
from envs.browser import BrowserEnv
from tests.conftest import require_tool
from tests.local_server import serve_pages
from tests.probes import wait_until

PAGE = b"""<!doctype html><body style="margin:0">
<a id="go" href="LINK" style="display:block;width:200px;height:100px;background:#00f">go</a>
</body>"""


def prefetching_page(query: dict[str, str]) -> bytes:
    """A link to ``query["link"]`` that the page asks chromium to prefetch (speculation rules);
    the page off the list, when asked for with ``landed``."""
    if "landed" in query:
        return b"<title>OFF THE LIST</title>"
    link = query["link"]
    return (b'<script type="speculationrules">{"prefetch": [{"source": "list", "urls": ["'
            + link.encode() + b'"]}]}</script>' + PAGE.replace(b"LINK", link.encode()))


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    require_tool("chromium")
    with serve_pages(lambda query: PAGE.replace(b"LINK", query.get("link", "#").encode())) as pages:
        yield pages.server_port


@pytest.fixture(scope="module")
def guarded(port, playwright) -> Iterator[BrowserEnv]:
    """Allowed on 127.0.0.1 only; localhost is the same server, but off the list."""
    with BrowserEnv(viewport=(400, 300), device_scale_factor=2.0, allowed_domains=["127.0.0.1"],
                    playwright=playwright) as env:
        yield env


def test_navigate_to_a_url_that_redirects_off_the_list_is_blocked(guarded, port) -> None:
    start = f"http://127.0.0.1:{port}/page"
    assert guarded.execute(Navigate(url=start)).ok
    off_list = f"http://localhost:{port}/page?landed=1"
    result = guarded.execute(Navigate(url=f"http://127.0.0.1:{port}/redirect?to={off_list}"))
    assert not result.ok
    assert f"blocked navigation to {off_list}" in result.message
    assert guarded.observe().extras["url"] == start


def test_a_link_that_redirects_off_the_list_is_not_followed(guarded, port) -> None:
    off_list = f"http://localhost:{port}/page?landed=1"
    start = f"http://127.0.0.1:{port}/page?link=/redirect?to={off_list}"
    assert guarded.execute(Navigate(url=start)).ok
    result = guarded.execute(Click(x=200, y=100))  # the link, in device pixels at scale 2
    observation = guarded.observe()
    # The redirect may come after the click returned: then the observation reports it.
    assert not result.ok or observation.extras.get("blocked_urls") == [off_list]
    assert observation.extras["url"] == start
    assert "localhost" not in {urlsplit(frame.url).hostname for frame in guarded.page.frames}


def test_a_frame_that_redirects_off_the_list_stays_empty(guarded, port) -> None:
    start = f"http://127.0.0.1:{port}/page"
    assert guarded.execute(Navigate(url=start)).ok
    off_list = f"http://localhost:{port}/page?landed=1"
    guarded.page.evaluate("""(src) => {
        const frame = document.createElement('iframe');
        frame.src = src;
        document.body.appendChild(frame);
    }""", f"/redirect?to={off_list}")
    blocked: list[str] = []

    def reported() -> bool:
        blocked.extend(guarded.observe().extras.get("blocked_urls", []))
        return off_list in blocked

    wait_until(reported, what="the frame's redirect reported as blocked")
    assert "localhost" not in {urlsplit(frame.url).hostname for frame in guarded.page.frames}
    # A redirect that stays on the list is followed.
    on_list = f"http://127.0.0.1:{port}/page?landed=2"
    assert guarded.execute(Navigate(url=f"http://127.0.0.1:{port}/redirect?to={on_list}")).ok
    assert guarded.observe().extras["url"] == on_list


def test_a_link_the_page_asks_to_prefetch_reaches_no_host_off_the_list(guarded) -> None:
    """A page may ask chromium to prefetch its links (speculation rules, as WordPress does by
    default). Chromium would fetch them itself, out of reach of the request guard, and follow
    an allowed link's redirect off the list: the env's profile turns that preloading off. The
    click then asks the network, and the guard blocks the redirect."""
    env = guarded
    with serve_pages(prefetching_page) as pages:
        port = pages.server_port
        off_list = f"http://localhost:{port}/page?landed=1"
        start = f"http://127.0.0.1:{port}/page?link=http://127.0.0.1:{port}/redirect?to=" \
                f"{off_list}"
        assert env.execute(Navigate(url=start)).ok
        assert env.page.evaluate("HTMLScriptElement.supports('speculationrules')")
        time.sleep(1)  # a prefetch starts as the rules are read (a list rule is "immediate")
        result = env.execute(Click(x=200, y=100))  # the link, in device pixels at scale 2
        observation = env.observe()
        assert not result.ok and off_list in result.message, result.message
        assert observation.extras["url"] == start and observation.extras["title"] != \
            "OFF THE LIST"
        assert "/page?landed=1" not in pages.asked, pages.asked  # the host off the list


def test_a_page_that_lands_off_the_list_without_a_request_is_taken_back(monkeypatch,
                                                                       playwright) -> None:
    """The last guard, for a page that reaches a host off the list without a request the guard
    sees: in a profile that preloads pages, a link's speculation-rules prefetch does (chromium
    fetches it itself), and the click is served from it, redirect and all. The page is taken
    back, and the click reports the url as blocked; the off-list page is never shown."""
    monkeypatch.setattr(chromium, "PROFILE_PREFERENCES", {})  # chromium's default: it preloads
    with serve_pages(prefetching_page) as pages, \
            BrowserEnv(viewport=(400, 300), device_scale_factor=2.0,
                       allowed_domains=["127.0.0.1"], playwright=playwright) as env:
        port = pages.server_port
        off_list = f"http://localhost:{port}/page?landed=1"
        start = f"http://127.0.0.1:{port}/page?link=http://127.0.0.1:{port}/redirect?to=" \
                f"{off_list}"
        assert env.execute(Navigate(url=start)).ok
        wait_until(lambda: "/page?landed=1" in pages.asked, what="the prefetch")
        result = env.execute(Click(x=200, y=100))  # the link, in device pixels at scale 2
        observation = env.observe()
        assert not result.ok or off_list in observation.extras.get("blocked_urls", [])
        assert observation.extras["url"] == start and observation.extras["title"] != \
            "OFF THE LIST"
        assert "localhost" not in {urlsplit(frame.url).hostname for frame in env.page.frames}
