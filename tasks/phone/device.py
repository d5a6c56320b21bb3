"""What phone tasks do through the device: find elements on screen, read and write app state.

Scripted solutions find elements by resource-id in the live accessibility tree
(``AndroidEnv.ui_tree``), so they follow the real layout instead of hard-coded pixels. Start
states and success checks go through the app's own state, as android_world goes through an app's
database with adb and sqlite: on the virtual phone ``vphone state PACKAGE`` reads it,
``vphone state set PACKAGE JSON`` writes it, and ``vphone reset`` restores every app's initial
state (the app's ``app.json``).
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import time
from abc import abstractmethod
from typing import TYPE_CHECKING, Any, Callable, Generator

from core.actions import LongPress, Scroll, Swipe, Tap
from core.results import Score
from envs.base import EnvError
from envs.ui_tree import UiNode
from envs.virtual_phone.catalog import LAUNCHER, App, load_apps
from tasks.base import SolutionStep, SolutionStuck, Task, nothing_else_changed

if TYPE_CHECKING:
    from envs.android import AndroidEnv

FLIGHTS = "com.vlagent.flights"
NOTES = "com.vlagent.notes"
SETTINGS = "com.vlagent.settings"
CONTACTS = "com.vlagent.contacts"
MESSAGES = "com.vlagent.messages"


class PhoneTask(Task):
    """A task on the virtual phone: every episode starts from the apps' initial states, at home;
    a subclass's ``initialize`` calls this one, then writes the state its params need.

    ``verdict`` judges the apps in ``uses``: those the goal asks to change, and those it reads
    from. Every other app must end as it started, in its initial state: ``check`` fails an
    episode that changed one, whatever the verdict.
    """

    env = "android"
    #: The packages of the apps the task uses, and its ``verdict`` judges.
    uses: frozenset[str] = frozenset()

    def initialize(self, env: "AndroidEnv") -> None:  # type: ignore[override]
        reset_apps(env)

    @abstractmethod
    def verdict(self, env: "AndroidEnv", answer: str | None) -> Score:
        """The score the apps in ``uses`` (and the answer) earn."""

    def check(self, env: "AndroidEnv", answer: str | None) -> Score:  # type: ignore[override]
        score = self.verdict(env, answer)
        return nothing_else_changed(score, [
            app.label for package, app in sorted(_apps().items())
            if package not in self.uses and package != LAUNCHER
            and _user_data(package, app_state(env, package))
            != _user_data(package, app.initial_state)])


@functools.cache
def _apps() -> dict[str, App]:
    return load_apps()


def _user_data(package: str, state: dict[str, Any]) -> dict[str, Any]:
    """What of an app's state its user keeps: all of it but a note being typed, unsaved."""
    return {k: v for k, v in state.items() if not (package == NOTES and k == "draft")}


#: The apps' sticky title bar (56 CSS px at scale 3): a row under it cannot be tapped.
APP_BAR_PX = 168
#: How much of a row must show before a solution taps it.
MIN_VISIBLE_PX = 60


def tap(node: UiNode) -> Tap:
    x, y = node.center
    return Tap(x=x, y=y)


def long_press(node: UiNode) -> LongPress:
    x, y = node.center
    return LongPress(x=x, y=y)


def settled(env: "AndroidEnv", timeout_s: float = 5.0) -> list[UiNode]:
    """The screen's nodes once two dumps in a row agree: a scroll may still be moving."""
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        nodes = list(env.ui_tree().walk())
        layout = [(n.resource_id, n.text, n.bounds) for n in nodes]
        if layout == last or time.monotonic() >= deadline:
            return nodes
        last = layout
        time.sleep(0.1)


def scroll_to(
    env: "AndroidEnv", resource_id: str, what: str, *, swipe: bool = False, max_moves: int = 12
) -> Generator[SolutionStep, None, UiNode]:
    """Scroll down (a Scroll, or with ``swipe`` a finger's Swipe) until the element is on the
    screen below the app bar; ``node = yield from scroll_to(...)`` gives it."""
    for _ in range(max_moves):
        node = next((n for n in settled(env) if n.resource_id == resource_id), None)
        if node is not None and _tappable(env, node):
            return node
        if swipe:
            x, height = env.screen.width // 2, env.screen.height
            yield SolutionStep(Swipe(x=x, y=height * 3 // 4, x2=x, y2=height // 4),
                               f"Swipe up to look further down for {what}.")
        else:
            yield SolutionStep(Scroll(direction="down"), f"Scroll down to look for {what}.")
    raise SolutionStuck(f"{what} ({resource_id!r}) did not come into view after {max_moves} "
                        "scrolls")


def _tappable(env: "AndroidEnv", node: UiNode) -> bool:
    x1, y1, x2, y2 = node.bounds
    top = max(y1, APP_BAR_PX)
    return y2 - top >= MIN_VISIBLE_PX and top < env.screen.height


def slug(name: str) -> str:
    """The apps' resource-id form of a name (``slug`` in their pages): "Ada Lovelace" ->
    "ada-lovelace"."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower())


def same_answer(answer: str | None, expected: str) -> bool:
    """An answer matches when it says the same words, ignoring case, spacing, the quotes around
    it and the punctuation that ends a sentence ('"Lunch tomorrow?".' is "lunch tomorrow")."""
    def norm(text: str) -> str:
        return " ".join(text.casefold().strip(" \t\n'\"\u2018\u2019\u201c\u201d.?!").split())

    return answer is not None and norm(answer) == norm(expected)


def digits(text: str | None) -> str:
    """The digits of a phone number or a price: "+1 555 0101" -> "15550101"."""
    return re.sub(r"\D", "", text or "")


#: A number as phone numbers are written: an optional plus, then digit groups (one may be in
#: parentheses) joined by nothing or one space, dash or dot before the next group.
_NUMBER = re.compile(r"\+?(?:\(\d+\)|\d)(?:\d|\(\d+\)|[ .-](?=\d|\(\d+\)))*")
#: A date written as 2026-03-14, which is no phone number (but "+1555-06-01" and
#: "1555-06-01" spell one).
_ISO_DATE = re.compile(
    r"(?<![\d+-])(?:19|20)\d\d-(?:0?[1-9]|1[0-2])-(?:0?[1-9]|[12]\d|3[01])(?![\d-])")


#: A number with this many digits or more is a phone number ("555 0101"); shorter ones are the
#: times and counts a message or an answer may also hold (unless they are part of another
#: contact's number, for a message).
PHONE_DIGITS = 7
#: A shorter number this long that is part of another contact's number is a guess ("or 0143").
FRAGMENT_DIGITS = 4


def numbers_in(text: str | None) -> list[str]:
    """The digits of each number written in ``text`` (``_NUMBER``; dates as 2026-03-14 are
    none): "call +1 (555) 0101 at 5. 24/7" -> ["15550101", "5", "24", "7"]."""
    return [digits(m) for m in _NUMBER.findall(_ISO_DATE.sub(" ", text or ""))]


def wait_for(
    env: "AndroidEnv",
    want: Callable[[list[UiNode]], list[UiNode]],
    what: str,
    timeout_s: float = 10.0,
) -> list[UiNode]:
    """Poll the screen's tree until ``want`` finds something; SolutionStuck names ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = want(list(env.ui_tree().walk()))
        if found:
            return found
        if time.monotonic() >= deadline:
            raise SolutionStuck(f"{what} did not appear on the screen within {timeout_s:g}s")
        time.sleep(0.1)


def wait_gone(env: "AndroidEnv", resource_id: str, anchor: str, what: str) -> None:
    """Wait until the screen shows ``anchor`` (the page is there) but not ``resource_id``."""
    wait_for(env, lambda nodes: [] if any(n.resource_id == resource_id for n in nodes)
             else [n for n in nodes if n.resource_id == anchor], what)


def find(env: "AndroidEnv", resource_id: str, timeout_s: float = 10.0) -> UiNode:
    """The element with this resource-id, once it is on the screen."""
    return wait_for(env, lambda nodes: [n for n in nodes if n.resource_id == resource_id],
                    f"the element {resource_id!r}", timeout_s)[0]


def app_state(env: "AndroidEnv", package: str) -> dict[str, Any]:
    """An app's state as JSON, through the virtual phone's ``vphone state``."""
    out = env.shell(f"vphone state {shlex.quote(package)}")
    try:
        state = json.loads(out)
    except json.JSONDecodeError:
        raise EnvError(f"`vphone state {package}` did not print JSON (is this the virtual phone?): "
                       f"{out.strip()[:200]!r}") from None
    if not isinstance(state, dict):
        raise EnvError(f"`vphone state {package}` printed {type(state).__name__}, not an object")
    return state


def set_app_state(env: "AndroidEnv", package: str, state: dict[str, Any]) -> None:
    """Replace an app's state (``vphone state set``); the app, if open, is stopped first."""
    _run(env, f"vphone state set {shlex.quote(package)} {shlex.quote(json.dumps(state))}",
         f"`vphone state set {package}`")


def reset_apps(env: "AndroidEnv") -> None:
    """Reset every app's state and go home; only the virtual phone has ``vphone``."""
    _run(env, "vphone reset", "`vphone reset`")


def _run(env: "AndroidEnv", command: str, what: str) -> None:
    out = env.shell(f"{command}; echo rc=$?")
    if not out.rstrip().endswith("rc=0"):
        raise EnvError(f"{what} failed (tasks with a seeded state need the virtual phone: "
                       f"--device virtual): {out.strip()[:200]!r}")
