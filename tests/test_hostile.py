"""Hostile model output through the real loop on the virtual phone, the browser and the desktop.

The replies of tests/data/hostile/corpus.jsonl marked ``phone`` (all but two thirds of the
typed texts) run on the virtual phone; those marked ``sample`` (each category in each dialect)
run on the browser and on the desktop. For each:

- nothing runs a command on the host or on the device: the payloads would create
  ``vlagent-canary*`` files, looked for in /tmp and the working directory, and through the
  phone's own shell in its working directory;
- the loop neither crashes nor ends the episode with an env error;
- every executed action lies on the screen;
- every reply becomes a valid action or a parse error that the next prompt shows the model;
- typed text arrives exactly as written, read back from a text field in the page.
"""

from __future__ import annotations

import glob
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
from PIL import Image

from actions.dialects import get_dialect
from agent.loop import Agent, AgentConfig
from agent.policies.base import Policy, Reply, Request
from core.actions import Action, Scroll
from core.geometry import Screen
from core.results import ActionResult
from envs.base import Env, Observation, SettleConfig
from tests.conftest import require_tool
from tests.data.hostile.generate import CANARY, render
from tests.probes import wait_until
from tests.test_desktop_env import app, xvfb  # noqa: F401 - the desktop fixtures
from trajectories.reader import load
from trajectories.recorder import Recorder

CORPUS_FILE = Path(__file__).parent / "data" / "hostile" / "corpus.jsonl"
CORPUS = [json.loads(line) for line in CORPUS_FILE.read_text(encoding="utf-8").splitlines()]
SAMPLE = [entry for entry in CORPUS if entry["sample"]]
PHONE = [entry for entry in CORPUS if entry["phone"]]
#: Replies per episode: a terminate or answer reply ends one earlier.
EPISODE = 50
FAST_SETTLE = SettleConfig(timeout_s=1.0, poll_interval_s=0.02)
FIELD_ID = "vlagent-hostile"
# A text field over the page, created when missing, emptied and focused before each typing reply.
PREPARE_FIELD = """() => {
  let f = document.getElementById('%s');
  if (!f) {
    f = document.createElement('textarea');
    f.id = '%s';
    f.style.cssText = 'position:fixed;left:0;top:0;width:60%%;height:20%%;z-index:2147483647';
    (document.body || document.documentElement).appendChild(f);
  }
  f.value = '';
  f.focus();
  return document.activeElement === f;
}""" % (FIELD_ID, FIELD_ID)
READ_FIELD = f"() => document.getElementById('{FIELD_ID}')?.value ?? null"


def canaries(*directories: Path) -> list[str]:
    found = glob.glob(f"{CANARY}*")
    for directory in directories:
        found += glob.glob(str(directory / "vlagent-canary*"))
    return found


@pytest.fixture(autouse=True, scope="module")
def no_canary_before():
    for path in canaries(Path.cwd()):
        os.rmdir(path) if os.path.isdir(path) else os.remove(path)
    yield
    assert canaries(Path.cwd()) == [], "a hostile reply ran a shell command on the host"


def test_the_corpus_is_what_generate_writes():
    assert CORPUS_FILE.read_text(encoding="utf-8") == render()
    assert len(CORPUS) >= 200 and {e["dialect"] for e in CORPUS} == {"qwen2vl", "qwen25vl",
                                                                       "uitars"}
    categories = {e["category"] for e in CORPUS}
    assert categories == {e["category"] for e in SAMPLE}  # every category on every env
    for dialect in ("qwen2vl", "qwen25vl", "uitars"):
        assert categories == {e["category"] for e in SAMPLE if e["dialect"] == dialect}
        assert categories == {e["category"] for e in PHONE if e["dialect"] == dialect}


@pytest.mark.parametrize("form_factor", ["phone", "computer", "browser"])
def test_every_typed_text_parses_to_exactly_itself(form_factor):
    """What the envs' runs below rely on to skip typing some texts in some dialects."""
    screen = Screen(1080, 2400) if form_factor == "phone" else Screen(800, 600)
    for entry in CORPUS:
        if entry["typed"] is not None:
            action = get_dialect(entry["dialect"], form_factor).parse(entry["text"], screen)
            assert (action.kind, action.text) == ("type", entry["typed"]), entry["id"]


@dataclass
class Page:
    """The env's page as the test reads it: ``evaluate(script)`` runs JS in what the screen
    shows, ``recover()`` brings back a page to evaluate in when that failed."""

    evaluate: Callable[[str], Any]
    recover: Callable[[], None] = lambda: None


@dataclass
class CorpusPolicy(Policy):
    """Replies from the corpus in order; before each typing reply it prepares the field, and at
    the next request it reads back what arrived."""

    page: Page
    queue: list[dict]
    name: str = "hostile"
    typed: list[tuple[str, str, str | None]] = field(default_factory=list)  # id, want, got
    _pending: dict | None = None

    def respond(self, request: Request) -> Reply:
        self.read_back()
        entry = self.queue.pop(0)
        if entry["typed"] is not None:
            self._prepare_field()
            self._pending = entry
        return Reply(entry["text"])

    def _prepare_field(self) -> None:
        try:
            ready = self.page.evaluate(PREPARE_FIELD)
        except Exception:  # noqa: BLE001 - the page was navigating or is an error page
            ready = False
        if not ready:
            self.page.recover()
            assert wait_until(lambda: self.page.evaluate(PREPARE_FIELD), timeout_s=15,
                              what="a focused text field")

    def read_back(self) -> None:
        if self._pending is None:
            return
        want, got = self._pending["typed"], None
        try:
            got = wait_until(lambda: (v := self.page.evaluate(READ_FIELD)) == want and v,
                             timeout_s=5, what="the typed text")
        except AssertionError:
            got = self.page.evaluate(READ_FIELD)
        self.typed.append((self._pending["id"], want, got))
        self._pending = None


@dataclass
class Executed:
    """Every action the env was asked to execute, and its result."""

    actions: list[tuple[Action, ActionResult]] = field(default_factory=list)

    def wrap(self, env: Env) -> None:
        execute = type(env).execute

        def recorded(action: Action) -> ActionResult:
            result = execute(env, action)
            self.actions.append((action, result))
            return result

        env.execute = recorded  # type: ignore[method-assign]


def observe_once_per_episode(env: Env) -> Callable[[], None]:
    """Make ``env`` observe for real at an episode's start only, and show a blank frame of the
    same size at its later steps: the replies do not depend on the screen, and on a busy box a
    phone screenshot costs a second to take and a third of one to record. The returned function
    starts a new episode."""
    observe = env.observe
    last: list[Observation] = []

    def reused() -> Observation:
        if last:
            return Observation(Image.new("RGB", last[0].size), dict(last[0].extras))
        last.append(observe())
        return last[0]

    env.observe = reused  # type: ignore[method-assign]
    return last.clear


def run_corpus(env: Env, page: Page, entries: list[dict], out: Path,
               new_episode: Callable[[], None] = lambda: None) -> None:
    """Run ``entries`` through the loop on ``env`` and check every guarantee but the canaries."""
    executed = Executed()
    executed.wrap(env)
    screen = env.observe().size
    typed: list[tuple[str, str, str | None]] = []
    replies = 0
    for dialect_name in ("qwen2vl", "qwen25vl", "uitars"):
        queue = [e for e in entries if e["dialect"] == dialect_name]
        dialect = get_dialect(dialect_name, env.form_factor)
        while queue:
            policy = CorpusPolicy(page, queue)
            chunk = min(EPISODE, len(queue))
            directory = out / f"{dialect_name}-{len(queue)}"
            agent = Agent(env, policy, dialect,
                          config=AgentConfig(max_steps=chunk, max_parse_errors=chunk),
                          recorder=Recorder(directory))
            new_episode()
            result = agent.run("Do what the screen tells you.")
            policy.read_back()
            typed += policy.typed
            assert result.status != "error", (dialect_name, result.reason)
            trajectory = load(directory)
            assert trajectory.meta.status == result.status and trajectory.meta.finished_at
            assert len(trajectory.steps) == result.steps >= 1
            replies += result.steps
            for step, following in zip(trajectory.steps, trajectory.steps[1:] + [None]):
                # A valid action, or a parse error (nothing executed) fed back to the model.
                assert (step.action is None) != (step.parse_error is None), step.step
                if step.parse_error is not None:
                    assert step.result is None
                    if following is not None:
                        shown = "".join(part.text or "" for message in following.prompt.messages
                                        for part in message.content)
                        assert step.parse_error[:60] in shown, (dialect_name, step.step)
    assert replies == len(entries)
    width, height = screen
    for action, _ in executed.actions:
        assert all(0 <= x < width and 0 <= y < height for x, y in action.points()), action
    wrong = [(i, want, got) for i, want, got in typed if got != want]
    assert not wrong, f"typed text did not arrive as written: {wrong[:3]}"
    assert len(typed) == sum(1 for e in entries if e["typed"] is not None)


def assert_an_absurd_scroll_returns(env: Env) -> None:
    """A model may write any integer as a scroll amount: the env caps it, quickly."""
    for direction in ("down", "up"):
        started = time.monotonic()
        result = env.execute(Scroll(direction=direction, amount=10**400))
        assert result.ok and time.monotonic() - started < 20, result.message


@pytest.mark.timeout(600)  # about two minutes on an idle 2-core box; adb calls are slow when busy
def test_every_reply_on_the_virtual_phone(virtual_phone, tmp_path):
    from envs.android import AndroidEnv

    phone, adb = virtual_phone
    with AndroidEnv(serial=phone.serial, adb_port=adb.port, settle=FAST_SETTLE) as env:
        page = Page(lambda script: phone.call(lambda c: c.display.evaluate(script)))
        run_corpus(env, page, PHONE, tmp_path, observe_once_per_episode(env))
        env.observe = type(env).observe.__get__(env)  # the real one: the phone still works
        assert env.observe().size == (1080, 2400)
        # The phone's shell runs in its own working directory: nothing was created there.
        assert "vlagent-canary" not in env.shell("ls -a"), "a reply ran a command on the phone"
        assert "vlagent-canary" not in env.shell(f"ls -d {CANARY}* 2>/dev/null; echo")


def test_a_sample_of_each_category_in_the_browser(tmp_path):
    require_tool("chromium")
    from envs.browser import BrowserEnv

    with BrowserEnv(viewport=(800, 600), settle=FAST_SETTLE) as env:
        page = Page(env.page.evaluate, lambda: env.page.goto("about:blank"))
        run_corpus(env, page, SAMPLE, tmp_path)
        assert_an_absurd_scroll_returns(env)


def test_a_sample_of_each_category_on_the_desktop(xvfb, app, tmp_path):  # noqa: F811
    from envs.desktop import DesktopEnv

    with DesktopEnv(display=xvfb.display, xauthority=xvfb.xauthority,
                    settle=FAST_SETTLE) as env:
        run_corpus(env, Page(app.evaluate, lambda: app.reload(wait_until="load")), SAMPLE,
                   tmp_path)
        assert_an_absurd_scroll_returns(env)

