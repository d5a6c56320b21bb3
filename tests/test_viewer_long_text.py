"""The HTML view keeps its layout when the model writes very long text without a space.

A model stuck in a loop, a long URL or a base64 blob gives replies, thoughts, typed text and parse
errors thousands of characters long with nowhere to break a line. The page must still fit the
window (everything wraps inside its step) and show every character.
"""

from __future__ import annotations

import pytest

from actions.dialects import get_dialect
from agent.loop import Agent
from tests.agent_fakes import FakePhone, ListPolicy
from tests.conftest import require_tool
from trajectories.recorder import Recorder
from trajectories.viewer import write_view

WORD = "x" * 3000  # no space anywhere
TYPED = "y" * 1500  # within the type action's limit, so it runs and is drawn on the screenshot


@pytest.fixture
def long_trajectory(tmp_path):
    env = FakePhone()
    replies = [
        f"Thinking {WORD}\n*FUNCTION*: Type *ARGS*: {{\"text\": \"{TYPED}\"}}",
        f"not an action {WORD}",
        '*FUNCTION*: Terminate *ARGS*: {"status": "success"}',
    ]
    agent = Agent(env, ListPolicy(replies), get_dialect("qwen2vl", env.form_factor),
                  recorder=Recorder(tmp_path / "t"))
    assert agent.run(f"Open https://example.com/{WORD}").status == "success"
    return tmp_path / "t"


def test_very_long_unbroken_text_wraps_inside_the_page(long_trajectory):
    require_tool("chromium")
    from playwright.sync_api import sync_playwright

    from envs.chromium import launch_chromium

    page_file = write_view(long_trajectory)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(page_file.as_uri())
        width = page.evaluate("document.documentElement.clientWidth")
        # Nothing makes the page wider than the window.
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        for selector in ("header", "#step-0 .thought", "#step-0 .action", "#step-0 pre.raw",
                         "#step-1 .error", "#step-1 pre.raw"):
            box = page.locator(selector).bounding_box()
            assert box["x"] + box["width"] <= width, selector
            overflow = page.evaluate(
                "s => { const e = document.querySelector(s); return e.scrollWidth - e.clientWidth }",
                selector)
            assert overflow <= 1, selector
        # Every character is still there, only wrapped.
        assert WORD in page.locator("#step-0 pre.raw").text_content()
        assert TYPED in page.locator("#step-0 .action").text_content()
        assert f"https://example.com/{WORD}" in page.locator("header").text_content()
        # The typed text's label on the screenshot ends at its right edge, not over the details.
        shot = page.locator("#step-0 img").bounding_box()
        label = page.locator("#step-0 svg text").bounding_box()
        assert label["x"] + label["width"] <= shot["x"] + shot["width"] + 1
        assert page.locator("#step-0 svg text").text_content().startswith("type “yyy")
        browser.close()
