"""What a scripted MiniWoB++ solution uses: read the DOM to find a target, then act on it only
through pixel actions, exactly as a model's action would arrive.

An element's bounding box (CSS pixels) becomes its centre in screenshot pixels (times the env's
device scale factor), so a wrong conversion misses and MiniWoB's reward says so.
"""

from __future__ import annotations

import re
from typing import Iterator

from core.actions import Click, Key, Scroll, Type
from envs.base import Env, EnvError
from tasks.base import SolutionStep, SolutionStuck
from tasks.miniwob.page import on_page

# The point of an element a click reaches: its centre, or else the first point of a grid over
# it that no other element covers (MiniWoB places buttons at random, sometimes overlapping).
_CLICKABLE_POINT = """(element) => {
  const box = element.getBoundingClientRect();
  const points = [[0.5, 0.5]];
  // A fine grid: an overlapping button may leave only a sliver of the target uncovered.
  for (let fy = 0.05; fy < 1; fy += 0.1)
    for (let fx = 0.05; fx < 1; fx += 0.1) points.push([fx, fy]);
  for (const [fx, fy] of points) {
    const x = box.left + box.width * fx, y = box.top + box.height * fy;
    const hit = document.elementFromPoint(x, y);
    if (hit && (hit === element || element.contains(hit))) return [x, y];
  }
  return null;
}"""


def centre(env: Env, selector: str) -> tuple[int, int]:
    """A point of the first visible element matching ``selector`` that a click reaches (its
    centre unless something covers it), in screenshot pixels."""
    point = on_page(env, f"finding {selector}",
                    lambda page: page.locator(selector).locator("visible=true").first
                    .evaluate(_CLICKABLE_POINT, timeout=3000))
    if point is None:
        raise SolutionStuck(f"{selector} is covered or off screen")
    scale = getattr(env, "scale", 1.0)
    return round(point[0] * scale), round(point[1] * scale)


def click(env: Env, selector: str, thought: str) -> SolutionStep:
    x, y = centre(env, selector)
    return SolutionStep(Click(x=x, y=y), thought)


def type_text(text: str, thought: str) -> SolutionStep:
    return SolutionStep(Type(text=text), thought)


def key(name: str, thought: str) -> SolutionStep:
    return SolutionStep(Key(key=name), thought)


def texts(env: Env, selector: str) -> list[str]:
    """The inner texts of every element matching ``selector``, stripped."""
    found = on_page(env, f"reading {selector}",
                    lambda page: page.locator(selector).all_inner_texts())
    return [text.strip() for text in found]


def visible(env: Env, selector: str) -> bool:
    return on_page(env, f"looking for {selector}",
                   lambda page: page.locator(selector).first.is_visible())


def wait_for(env: Env, selector: str, timeout_s: float = 3.0) -> None:
    """Wait until ``selector`` is visible (a menu that opens after a delay); SolutionStuck if it
    does not become so."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    def visible(page) -> None:
        try:
            page.locator(selector).first.wait_for(state="visible", timeout=timeout_s * 1000)
        except PlaywrightTimeout:
            raise SolutionStuck(f"{selector} did not become visible within "
                                f"{timeout_s:g}s") from None

    on_page(env, f"waiting for {selector}", visible)


def quoted(utterance: str, index: int = 0) -> str:
    """The ``index``-th "quoted" part of the instruction."""
    found = re.findall(r'"([^"]*)"', utterance)
    if len(found) <= index:
        raise EnvError(f"no quoted target #{index + 1} in {utterance!r}")
    return found[index]


def text_is(selector: str, text: str) -> str:
    """``selector`` narrowed to elements whose whole text is ``text`` (quotes kept quoted)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'{selector}:text-is("{escaped}")'


def reveal(env: Env, selector: str, handle: str, attempts: int = 30) -> Iterator[SolutionStep]:
    """Scroll the list that holds ``selector`` until a click can reach it: click the list's
    ``handle`` (a spot of it that does nothing), then press the arrow keys, 40 pixels a press.

    Keys rather than the wheel: a dialect such as qwen2vl cannot say how far to scroll, and
    its default (half the screen) can jump over a row in a short list.
    """
    grabbed = False
    for _ in range(attempts):
        direction = scrolled_out(env, selector)
        if not direction:
            return
        if not grabbed:
            yield click(env, handle, "Click the list, so that the arrow keys scroll it.")
            grabbed = True
        yield key(direction, f"Scroll {direction} to bring the target into view.")
    raise SolutionStuck(f"{selector} never scrolled into view")


def scrolled_out(env: Env, selector: str) -> str:
    """Which way the list around ``selector`` must scroll for all of it to show ('up' or
    'down'), or '' when it shows."""
    return on_page(env, f"locating {selector}",
                   lambda page: page.locator(selector).first.evaluate(_SCROLL_DIRECTION))


def onto_screen(env: Env, selector: str, attempts: int = 10) -> Iterator[SolutionStep]:
    """Scroll the page (the wheel, by the dialect's default amount) until ``selector`` lies
    within the window: a long menu can reach below a small screen."""
    for _ in range(attempts):
        direction = on_page(env, f"locating {selector}", lambda page: page.locator(selector).first
                            .evaluate("""(e) => { const r = e.getBoundingClientRect();
                                return r.top < 0 ? 'up' : r.bottom > innerHeight ? 'down' : ''; }"""))
        if not direction:
            return
        yield SolutionStep(Scroll(direction=direction), f"Scroll {direction} to the target.")
    raise SolutionStuck(f"{selector} never scrolled onto the screen")


# Which way the list around an element must scroll for all of it to show: '' when it shows.
_SCROLL_DIRECTION = """(element) => {
  const e = element.getBoundingClientRect();
  for (let box = element.parentElement; box; box = box.parentElement) {
    const overflow = getComputedStyle(box).overflowY;
    if ((overflow === 'auto' || overflow === 'scroll') && box.scrollHeight > box.clientHeight) {
      const b = box.getBoundingClientRect();
      if (e.top < b.top) return 'up';
      if (e.bottom > b.top + box.clientHeight) return 'down';
    }
  }
  return '';
}"""
