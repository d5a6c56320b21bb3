"""``record``: a person demonstrates a task on a page that shows the live screen.

The page (``runtime/record_page.html``, served by ``runtime/record.py``) sends each action as JSON
in screenshot pixels; ``submit`` checks it against the current screen and writes it in the
dialect's text, exactly as the scripted policy writes a solution (integer, model-shaped
coordinates), and hands it to the waiting ``respond``, which takes it or refuses it (text typed
as it is into a password field: a secret is typed as its ``<secret:NAME>``), and the page hears
which. So the loop, the recorder, the safety gate and the limits treat a demonstration like a
model's run, and its trajectory is SFT data as it is.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from actions.dialects.base import Dialect
from agent.policies.base import Episode, Policy, PolicyError, Reply, Request
from agent.secrets import PLACEHOLDER
from core.actions import Action, parse_action
from core.geometry import Screen
from envs.base import EnvError

if TYPE_CHECKING:
    from PIL import Image


ENDED = "the recording has ended; start record again for another episode"


@dataclass
class ScreenView:
    """What the page shows: the latest screenshot, and whether an action is awaited."""

    goal: str = ""
    kinds: list[str] = field(default_factory=list)
    step: int = -1  # -1 until the first screenshot
    image: "Image.Image | None" = None
    waiting: bool = False  # the loop waits for the person's next action
    finished: dict[str, Any] | None = None  # the episode's end: status, reason, check


class DemonstrationPolicy(Policy):
    name = "demonstration"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._view = ScreenView()
        self._screen: Screen | None = None
        self._episode: Episode | None = None
        # Each submitted action, its dialect's text and the page's answer to come; None stops
        # the episode.
        self._inbox: queue.Queue[_Submitted | None] = queue.Queue()
        self._pending: Future[str] | None = None  # the answer a submit waits for
        self._stopped = False

    def start(self, episode: Episode) -> None:
        kinds = episode.dialect.kinds
        if episode.env is not None:
            kinds = kinds & episode.env.action_kinds
        self._episode = episode
        with self._lock:
            self._view = ScreenView(goal=episode.goal, kinds=sorted(kinds))

    def respond(self, request: Request) -> Reply:
        with self._lock:
            self._screen = request.screen
            self._view.step = request.step
            self._view.image = request.images[-1]
            self._view.waiting = True
        try:
            while (submitted := self._inbox.get()) is not None:
                # On this thread, the loop's: an env (Playwright's) answers only the thread that
                # drives it.
                refusal = self._refusal(submitted.action)
                if refusal is None:
                    submitted.answer.set_result(submitted.text)
                    return Reply(submitted.text)
                submitted.answer.set_exception(ValueError(refusal))
                with self._lock:
                    self._view.waiting = True  # the page may send another action
        finally:
            with self._lock:
                self._view.waiting = False
        raise PolicyError("the recording was stopped before the task was done")

    def _refusal(self, action: Action) -> str | None:
        """Why ``action`` is not taken, or None. Text typed into a password field would be
        recorded as it is (and trained on): a secret is typed as its placeholder instead."""
        # Only placeholders may go into a password field: "hunter2<secret:PW>" records hunter2.
        if action.kind != "type" or not PLACEHOLDER.sub("", action.text).strip() \
                or self._episode is None or self._episode.env is None:
            return None
        try:
            focused = self._episode.env.focused_element()
        except EnvError:
            return None  # the step's own execution will meet the env's trouble
        if focused is None or not focused.password:
            return None
        return ("that is a password field, and the text would be recorded as typed: name it "
                "in the goal as <secret:NAME>, start record with --secret NAME, and type "
                "<secret:NAME>")

    def submit(self, action: dict[str, Any], thought: str = "", step: int | None = None) -> str:
        """Write the page's ``action`` (screenshot pixels) in the dialect's text and send it to
        the waiting step; ValueError says why it cannot be (the page shows the message).
        ``step``: the step whose screenshot the action was made on (None: the current one)."""
        with self._lock:
            if self._stopped:
                raise ValueError(ENDED)
            if not self._view.waiting or self._screen is None or self._episode is None:
                raise ValueError("the device is busy with the last action; wait for the screen")
            # A second page (or a late click) may act on a screenshot the device has left: its
            # coordinates would land on whatever is there now, which nobody chose.
            if step is not None and step != self._view.step:
                raise ValueError(f"that action was made on step {step}'s screen, and the "
                                 f"device is at step {self._view.step} now; act on the new screen")
            screen, dialect, kinds = self._screen, self._episode.dialect, self._view.kinds
            parsed = parse_action(action, screen=screen.size)
            if parsed.kind not in kinds:
                raise ValueError(f"{parsed.kind} is not an action of this env and the "
                                 f"{dialect.name} dialect; they have: {', '.join(kinds)}")
            text = _render(dialect, parsed, screen, thought.strip())
            dialect.parse(text, screen)  # what the loop will read; a ParseError is a ValueError
            self._view.waiting = False  # one action per step, even if the page sends two
            self._pending = answer = Future()
        self._inbox.put(_Submitted(parsed, text, answer))
        return answer.result()  # the step's thread takes it, or says why not (ValueError)

    def view(self) -> ScreenView:
        with self._lock:
            return ScreenView(**vars(self._view))

    def finish(self, summary: dict[str, Any]) -> None:
        """Show the episode's end on the page."""
        with self._lock:
            self._view.finished = summary

    def stop(self) -> None:
        """End a step still waiting for the page (the run is over: Ctrl-C, the server stops).
        Closing the page does not call it: the episode waits for the page to be opened again."""
        self._inbox.put(None)
        with self._lock:
            self._stopped = True
            pending = self._pending
        # The loop, which takes submitted actions, has returned: a submit no step took hears
        # that the recording ended.
        if pending is not None and not pending.done():
            pending.set_exception(ValueError(ENDED))


@dataclass
class _Submitted:
    action: Action
    text: str
    answer: "Future[str]"


def _render(dialect: Dialect, action: Action, screen: Screen, thought: str) -> str:
    """The dialect's text for ``action``. A wheel's scroll carries its distance; a dialect whose
    scroll has no distance writes it without (as its models do)."""
    try:
        return dialect.render_action(action, screen, thought)
    except ValueError:
        if action.kind != "scroll" or action.amount is None:
            raise
        return dialect.render_action(action.model_copy(update={"amount": None}), screen, thought)
