"""The record page's input, in real chromium, without a device: each gesture on the picture
becomes the action a person meant, at the screenshot pixel under the pointer.

The page talks to ``record_app`` over a ``DemonstrationPolicy`` whose steps the test asks for
itself (``Steps``); qwen25vl writes resized-image pixels, and the screenshots' sides are multiples
of 28 within the pixel budget, so its coordinates are the screenshot's own, exactly.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from typing import Iterator

import pytest
from PIL import Image

from actions.dialects import get_dialect
from agent.policies.base import Episode, PolicyError, Request
from agent.policies.demonstration import DemonstrationPolicy
from core.actions import Action
from core.geometry import Screen
from tests.conftest import chromium_tab

SMALL = (560, 420)  # shown 1:1 in a 1600x1000 page
LARGE = (2240, 1680)  # shown scaled down


class Steps:
    """A policy asked step after step on a white screenshot of ``size``; each ``next_action``
    is what the page sent for one step."""

    def __init__(self, form_factor: str, size: tuple[int, int]) -> None:
        self.dialect = get_dialect("qwen25vl", form_factor)
        self.screen = Screen(*size)
        self.policy = DemonstrationPolicy()
        self.policy.start(Episode("Show the page what to do", self.dialect))
        self.replies: queue.Queue[str] = queue.Queue()
        self.step = -1
        self.ask()

    def ask(self) -> None:
        """Start the next step: the page shows its screenshot and takes one action."""
        self.step += 1
        request = Request(prompt=None, images=[Image.new("RGB", self.screen.size, "white")],
                          screen=self.screen, step=self.step)

        def respond() -> None:
            with contextlib.suppress(PolicyError):  # stopped at the end of the test
                self.replies.put(self.policy.respond(request).text)

        threading.Thread(target=respond, daemon=True).start()

    def next_action(self) -> Action:
        action = self.dialect.parse(self.replies.get(timeout=30), self.screen)
        self.ask()
        return action


@pytest.fixture(scope="module")
def chromium_page():
    with chromium_tab(1600, 1000) as page:
        yield page


@contextlib.contextmanager
def recording(page, form_factor: str, size: tuple[int, int]) -> Iterator[Steps]:
    """The page open on a record server whose policy ``Steps`` asks."""
    from runtime.record import record_app
    from runtime.server.app import running_server

    steps = Steps(form_factor, size)
    try:
        with running_server(record_app(steps.policy, threading.Event())) as base:
            page.goto(base.removesuffix("/v1") + "/")
            wait_for_input(page, 0)
            yield steps
    finally:
        steps.policy.stop()


def wait_for_input(page, step: int) -> None:
    page.wait_for_function(
        f"document.getElementById('screen').dataset.step === '{step}' && "
        "!document.getElementById('screen').classList.contains('busy')", timeout=30_000)


def pixel_centre(page, x: int, y: int) -> tuple[float, float]:
    """Where on the page the centre of screenshot pixel (x, y) is shown: inside the picture's
    border, if it has one."""
    left, top, width, height, natural_width, natural_height = page.evaluate(
        "(i => { const b = i.getBoundingClientRect(); return [b.left + i.clientLeft, "
        "b.top + i.clientTop, i.clientWidth, i.clientHeight, i.naturalWidth, i.naturalHeight]; })"
        "(document.getElementById('screen'))")
    return (left + (x + 0.5) * width / natural_width, top + (y + 0.5) * height / natural_height)


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["one-to-one", "scaled"])
def test_a_click_is_the_pixel_under_the_pointer_to_the_edges(chromium_page, size):
    """The picture's border was counted in its box, and rounding took the next pixel: a click
    landed up to 3 pixels off near the edges."""
    page = chromium_page
    with recording(page, "computer", size) as steps:
        width, height = size
        for x, y in [(0, 0), (width - 1, height - 1), (width - 1, 0), (200, 137)]:
            page.mouse.click(*pixel_centre(page, x, y))
            action = steps.next_action()
            assert (action.kind, action.x, action.y) == ("click", x, y)
            wait_for_input(page, steps.step)


def test_a_held_press_is_a_long_press_on_the_phone(chromium_page):
    page = chromium_page
    with recording(page, "phone", SMALL) as steps:
        page.mouse.move(*pixel_centre(page, 100, 50))
        page.mouse.down()
        page.wait_for_timeout(700)
        page.mouse.up()
        action = steps.next_action()
        assert (action.kind, action.x, action.y) == ("long_press", 100, 50)
        wait_for_input(page, 1)
        page.mouse.click(*pixel_centre(page, 100, 50))  # a short press stays a tap
        assert steps.next_action().kind == "tap"
        wait_for_input(page, 2)
        assert page.is_disabled("#press") is False and page.is_visible("button.key")


def test_keys_combinations_right_and_double_clicks_reach_the_desktop(chromium_page):
    page = chromium_page
    with recording(page, "computer", SMALL) as steps:
        page.mouse.click(*pixel_centre(page, 30, 40), button="right")
        assert (a := steps.next_action()).kind == "right_click" and (a.x, a.y) == (30, 40)
        wait_for_input(page, 1)
        page.keyboard.down("Shift")
        page.mouse.click(*pixel_centre(page, 31, 41))
        page.keyboard.up("Shift")
        assert (a := steps.next_action()).kind == "double_click" and (a.x, a.y) == (31, 41)
        sent = [("ctrl+a", ("hotkey", ["ctrl", "a"])), ("ctrl++", ("hotkey", ["ctrl", "+"])),
                (" escape ", ("key", "escape"))]
        for text, (kind, keys) in sent:
            wait_for_input(page, steps.step)
            page.fill("#keys", text)
            page.press("#keys", "Enter")
            action = steps.next_action()
            assert (action.kind, action.keys if kind == "hotkey" else action.key) == (kind, keys)
        wait_for_input(page, steps.step)
        page.click("button.key[data-key=backspace]")
        assert (a := steps.next_action()).kind == "key" and a.key == "backspace"
