"""One MiniWoB++ task page in the browser env: load it, seed it, start its episode, read its
instruction and its reward.

The pages ship inside the ``miniwob`` package and load from ``file://``. The page draws its
episode from ``Math.random``, which ``Math.seedrandom(page_seed)`` seeds (the package's own
mechanism); ``page_seed`` is drawn from the task's seed, so the same seed gives the same
episode. MiniWoB ends the episode itself, with a
reward in [-1, 1], when the agent submits; the first episode's result is kept on the page, so
clicking MiniWoB's "START" cover afterwards cannot change the score.
"""

from __future__ import annotations

import contextlib
import random
import secrets
import weakref
from abc import abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import miniwob

from core.actions import Terminate
from core.results import Score
from envs.base import Env, EnvError
from envs.browser import BrowserEnv
from tasks.base import SolutionStep, Task

if TYPE_CHECKING:
    from playwright.sync_api import Page

PAGES_DIR = Path(miniwob.__file__).parent / "html" / "miniwob"

#: Where and how the pages' clocks and dates are read, whatever the machine's settings.
PAGE_TIMEZONE, PAGE_LOCALE = "UTC", "en-US"
#: Long enough never to end an episode by itself: the step budget bounds an episode, and a
#: model's step takes seconds (MiniWoB's default of 10 s is meant for RL agents).
EPISODE_MAX_TIME_MS = 3_600_000

# Seeds the page, starts the episode without its START cover, and records the first
# episode's end (on the page, and with the task through ``_report_to``'s binding), marked with
# the task's episode id. The reward display (with a ticking countdown) is hidden: it is not
# part of the task, and a clock that changes every second keeps a screenshot from settling.
_START = """([seed, maxTime, episode]) => {
  Math.seedrandom(seed);
  core.EPISODE_MAX_TIME = maxTime;
  const endEpisode = core.endEpisode;
  window.__vlagentResult = null;
  core.endEpisode = function () {
    endEpisode.apply(this, arguments);
    if (WOB_DONE_GLOBAL && window.__vlagentResult === null) {
      window.__vlagentResult = {reward: WOB_REWARD_GLOBAL, raw: WOB_RAW_REWARD_GLOBAL,
                                reason: WOB_REWARD_REASON, episode};
      window.__vlagentEnded(window.__vlagentResult);
    }
  };
  core.startEpisodeReal();
  const style = document.createElement('style');
  style.textContent = '#reward-display { display: none !important; }';
  document.head.appendChild(style);
}"""
# Most pages answer a string; the natural-language email pages answer {utterance, fields}.
_UTTERANCE = """() => { const u = core.getUtterance();
  return typeof u === 'string' ? u : u.utterance; }"""


def page_names() -> list[str]:
    """Every task page the package ships, by name ("click-button")."""
    return sorted(path.stem for path in PAGES_DIR.glob("*.html"))


def on_page(env: Env, what: str, call: Any) -> Any:
    """Run ``call(page)`` on the browser env's page (the only env a MiniWoB task runs on), as
    the env runs its own calls: a Playwright failure, or a page that stops answering, is an
    EnvError that says ``what`` failed."""
    if not isinstance(env, BrowserEnv):
        raise EnvError(f"MiniWoB++ tasks run on the browser env, not on {env.name}")
    return env.on_page(what, call)


class MiniWobTask(Task):
    """A MiniWoB++ page as a task: its instruction is the goal, its reward is the score.

    Subclasses set ``name`` = "miniwob/<page>"; the ones with a scripted ``solution`` are tagged
    ``scripted`` (tasks/miniwob/solutions.py), the others are generated (tasks/miniwob/pages.py).
    """

    env = "browser"
    tags = frozenset({"miniwob"})
    goal_template = "Do what the MiniWoB++ page {page} asks."
    max_steps = 15
    has_solution = False

    def __init__(self, seed: int = 0, params: dict[str, Any] | None = None) -> None:
        super().__init__(seed, params)
        self.utterance: str | None = None
        #: MiniWoB's verdict as the page reported it when the episode ended: it stays when
        #: the page is left afterwards (a navigation, back).
        self.reported: dict[str, Any] | None = None
        #: Marks the episode ``initialize`` started in what the page reports (``_START``): a
        #: page may end an earlier episode after the next one started on it.
        self.episode: str | None = None

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        # The page draws the episode itself, from the seed it is given: the params hold that
        # seed, so given params replay the same episode.
        return {"page": cls.name.split("/", 1)[1], "page_seed": rng.randrange(2**31)}

    @property
    def page(self) -> str:
        return self.name.split("/", 1)[1]

    @property
    def goal(self) -> str:
        """The page's own instruction once ``initialize`` loaded it; a placeholder before."""
        return self.utterance if self.utterance is not None else super().goal

    def initialize(self, env: Env) -> None:
        url = (PAGES_DIR / f"{self.page}.html").as_uri()
        self.episode = secrets.token_hex(8)

        def start(page: "Page") -> str:
            _pin_clock(page)
            _report_to(page, self)
            page.goto(url, wait_until="load")
            page.evaluate(_START, [str(self.params["page_seed"]), EPISODE_MAX_TIME_MS,
                                   self.episode])
            page.wait_for_function("WOB_TASK_READY")
            return page.evaluate(_UTTERANCE)

        self.utterance = on_page(env, f"loading the MiniWoB++ page {self.page}", start)

    def result(self, env: Env) -> dict[str, Any] | None:
        """MiniWoB's verdict on the episode, None while it has not ended: the page's, or
        where the page was left since, the one it reported."""
        shown = on_page(env, "reading the MiniWoB++ reward",
                        lambda page: page.evaluate("() => window.__vlagentResult"))
        ours = shown is not None and shown.get("episode") == self.episode
        return shown if ours else self.reported

    def check(self, env: Env, answer: str | None) -> Score:
        result = self.result(env)
        if result is None:
            return Score(success=False, reward=0.0,
                         reason="the MiniWoB++ episode has not ended (nothing was submitted)")
        raw = float(result["raw"])
        # MiniWoB's raw reward (without its time penalty) is in [-1, 1], and some pages give part
        # of it: click-checkboxes scores the boxes left alone too, so submitting without ticking
        # any is above 0. Success is the whole reward, as the gym's binary reward counts it.
        return Score(success=raw >= 1.0, reward=min(1.0, max(0.0, raw)),
                     reason=f"MiniWoB++ reward {raw:g} ({result['reason'] or 'no reason given'})")

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        raise NotImplementedError(f"{self.name} has no scripted solution; the tasks tagged "
                                  "'scripted' have one")


class ScriptedTask(MiniWobTask):
    """A MiniWoB++ task with a scripted solution: ``steps`` reads the DOM and acts in pixels;
    the solution then waits for MiniWoB to end the episode and reports success."""

    tags = frozenset({"miniwob", "scripted"})
    has_solution = True

    @abstractmethod
    def steps(self, env: Env, utterance: str) -> Iterator[SolutionStep]:
        """The actions that solve this episode, each computed after the previous one ran."""

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        if self.utterance is None:
            raise EnvError(f"{self.name}: initialize the page before its solution")
        yield from self.steps(env, self.utterance)
        on_page(env, "waiting for the MiniWoB++ reward", _await_result)
        yield SolutionStep(Terminate(status="success"), "The task is done.")


#: The DevTools session of each page whose clock is pinned: the overrides last while it is
#: attached, and a page takes one override of each kind.
_PINNED: "weakref.WeakKeyDictionary[Page, Any]" = weakref.WeakKeyDictionary()


def _pin_clock(page: "Page") -> None:
    """The date pages draw their dates in local time (a day apart across a DST change): one
    time zone and locale everywhere give a seed the same episode on any machine."""
    if page not in _PINNED:
        session = page.context.new_cdp_session(page)
        session.send("Emulation.setTimezoneOverride", {"timezoneId": PAGE_TIMEZONE})
        session.send("Emulation.setLocaleOverride", {"locale": PAGE_LOCALE})
        _PINNED[page] = session


#: The task each page's episodes report their end to (a page takes its binding once).
_REPORTS_TO: "weakref.WeakKeyDictionary[Page, MiniWobTask]" = weakref.WeakKeyDictionary()


def _report_to(page: "Page", task: MiniWobTask) -> None:
    task.reported = None
    if page not in _REPORTS_TO:
        def ended(source: dict[str, Any], result: dict[str, Any]) -> None:
            task = _REPORTS_TO[source["page"]]
            if result.get("episode") == task.episode:
                task.reported = result

        page.expose_binding("__vlagentEnded", ended)
    _REPORTS_TO[page] = task


def _await_result(page: "Page") -> None:
    """Wait (up to 3 s) for the page to end its episode: it may do so a moment after the click."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_function("() => window.__vlagentResult != null", timeout=3000)
