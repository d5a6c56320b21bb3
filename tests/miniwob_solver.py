"""Scripted MiniWoB++ solvers that act only through ``env.execute`` in screenshot pixels.

Each solver reads the task's instruction and the DOM to decide *which* element to use. It then
turns that element's bounding box (CSS pixels) into the centre point in screenshot pixels and
clicks or types through the env, exactly as a model's action would arrive. MiniWoB's own reward
then says whether the clicks landed, so a wrong coordinate conversion fails the episode.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import miniwob

from core.actions import Click, Scroll, Type
from envs.browser import BrowserEnv

MINIWOB_HTML = Path(miniwob.__file__).parent / "html"


class MiniWoB:
    """One MiniWoB task page in a browser env, served from ``base_url`` (the package's html)."""

    def __init__(self, env: BrowserEnv, base_url: str, task: str) -> None:
        self.env, self.url = env, f"{base_url}miniwob/{task}.html"

    def start(self, seed: int) -> str:
        """Load the task, seed its random generator, start an episode; return the instruction."""
        page = self.env.page
        page.goto(self.url, wait_until="load")
        page.evaluate("(seed) => Math.seedrandom(seed)", str(seed))
        page.evaluate("core.startEpisodeReal()")
        page.wait_for_function("WOB_TASK_READY")
        return page.evaluate("core.getUtterance()")

    def reward(self, timeout_s: float = 5.0) -> float:
        """MiniWoB's reward once the episode is done (it ends when the task is submitted)."""
        self.env.page.wait_for_function("WOB_DONE_GLOBAL", timeout=timeout_s * 1000)
        return float(self.env.page.evaluate("WOB_REWARD_GLOBAL"))


# -- acting through the env -------------------------------------------------------------------
def centre(env: BrowserEnv, selector: str) -> tuple[int, int]:
    """The centre of the first visible element matching ``selector``, in screenshot pixels."""
    box = env.page.locator(selector).locator("visible=true").first.bounding_box()
    assert box is not None, f"{selector} is not on screen"
    return (
        round((box["x"] + box["width"] / 2) * env.scale),
        round((box["y"] + box["height"] / 2) * env.scale),
    )


def click(env: BrowserEnv, selector: str) -> None:
    x, y = centre(env, selector)
    result = env.execute(Click(x=x, y=y))
    assert result.ok, result.message


def type_text(env: BrowserEnv, text: str) -> None:
    result = env.execute(Type(text=text))
    assert result.ok, result.message


def quoted(utterance: str) -> str:
    match = re.search(r'"([^"]*)"', utterance)
    assert match, f"no quoted target in {utterance!r}"
    return match.group(1)


def text_selector(tag: str, text: str) -> str:
    # Playwright's exact text match, with the text as a JSON string so quotes stay quoted.
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'{tag}:text-is("{escaped}")'


# -- the tasks --------------------------------------------------------------------------------
def click_button(env: BrowserEnv, utterance: str) -> None:
    click(env, text_selector("#area button", quoted(utterance)))


def click_link(env: BrowserEnv, utterance: str) -> None:
    click(env, text_selector("#area span.alink", quoted(utterance)))


def enter_text(env: BrowserEnv, utterance: str) -> None:
    click(env, "#tt")
    type_text(env, quoted(utterance))
    click(env, "#subbtn")


def click_checkboxes(env: BrowserEnv, utterance: str) -> None:
    wanted = re.fullmatch(r"Select (.*) and click Submit\.", utterance).group(1)
    names = [] if wanted == "nothing" else wanted.split(", ")
    labels = env.page.locator("#boxes label").all_inner_texts()
    for index, label in enumerate(labels):
        if label.strip() in names:
            click(env, f"#ch{index}")
    click(env, "#subbtn")


def book_flight(env: BrowserEnv, utterance: str) -> None:
    match = re.fullmatch(
        r"Book the (cheapest|shortest) one-way flight from: (.+) to: (.+) "
        r"on (\d\d)/(\d\d)/(\d{4})\.",
        utterance,
    )
    assert match, f"unexpected instruction {utterance!r}"
    goal, origin, destination, month, day, year = match.groups()
    page = env.page
    for field, place in (("#flight-from", origin), ("#flight-to", destination)):
        click(env, field)
        type_text(env, place)
        # jQuery UI's autocomplete searches 300 ms after the last key. Wait for the menu of the
        # whole text (a slow machine can show one for a prefix first), then pick the entry:
        # entries read "City, ST (CODE)", and the instruction names the city or the code.
        page.wait_for_function(
            """(f) => { const box = $(f);
                return box.autocomplete('instance').term === box.val()
                    && box.autocomplete('widget').is(':visible'); }""",
            arg=field,
        )
        menu_id, entries = page.evaluate(
            """(f) => { const menu = $(f).autocomplete('widget');
                return [menu.attr('id'), menu.find('li').map((_, e) => e.textContent).get()]; }""",
            field,
        )
        wanted = [e for e in entries if e.startswith(place + " (") or e.endswith(f"({place})")]
        assert wanted, f"{place!r} is not among {entries}"
        click(env, f"#{menu_id} li >> nth={entries.index(wanted[0])}")
        page.wait_for_function("([f, v]) => $(f).val() === v", arg=[field, wanted[0]])
    click(env, "#datepicker")
    page.wait_for_selector("#ui-datepicker-div:visible")
    target = (int(year), int(month))
    while True:
        env.observe()  # the picker positions itself after opening and after each month change
        shown = (int(page.inner_text(".ui-datepicker-year")),
                 _MONTHS.index(page.inner_text(".ui-datepicker-month")) + 1)
        if shown == target:
            break
        click(env, ".ui-datepicker-prev" if shown > target else ".ui-datepicker-next")
    click(env, f'td[data-month="{int(month) - 1}"][data-year="{year}"] a:text-is("{int(day)}")')
    click(env, "#search")
    page.wait_for_selector(".flight")
    key = "data-price" if goal == "cheapest" else "data-duration"
    values = page.eval_on_selector_all(
        ".flight", f"""flights => flights.map(f => parseInt(
            (f.querySelector('[{key}]')).getAttribute('{key}')))"""
    )
    best = values.index(min(values)) + 1
    button = f".flight:nth-child({best + 1}) .flight-price"  # child 1 is the results header
    _scroll_into_area(env, button)
    click(env, button)


_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]


def _scroll_into_area(env: BrowserEnv, selector: str, attempts: int = 20) -> None:
    """Scroll the results list (through the env, with the wheel) until ``selector`` is in view."""
    for _ in range(attempts):
        area = env.page.locator("#area").bounding_box()
        box = env.page.locator(selector).bounding_box()
        if box["y"] >= area["y"] and box["y"] + box["height"] <= area["y"] + area["height"]:
            return
        x, y = centre(env, "#area")
        direction = "down" if box["y"] > area["y"] else "up"
        result = env.execute(Scroll(direction=direction, x=x, y=y, amount=round(40 * env.scale)))
        assert result.ok, result.message
        env.observe()
    raise AssertionError(f"{selector} never scrolled into view")


SOLVERS: dict[str, Callable[[BrowserEnv, str], None]] = {
    "click-button": click_button,
    "click-link": click_link,
    "enter-text": enter_text,
    "click-checkboxes": click_checkboxes,
    "book-flight": book_flight,
}


def solve(episode: MiniWoB, solver: Callable[[BrowserEnv, str], None], seed: int) -> float:
    """Run one seeded episode with ``solver``; return MiniWoB's reward."""
    utterance = episode.start(seed)
    started = time.monotonic()
    solver(episode.env, utterance)
    reward = episode.reward()
    assert time.monotonic() - started < 60
    return reward
