"""Resource limits: steps, wall-clock time, the token budget per call and screenshot pixels each
stop a run cleanly, with the reason in meta.json."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from rich.console import Console

from actions.dialects import get_dialect
from agent.loop import Agent, AgentConfig
from agent.policies.base import Reply
from tests.agent_fakes import FakePhone, ListPolicy, TypeHelloTask
from trajectories.reader import load
from trajectories.recorder import Recorder

REPO = Path(__file__).resolve().parent.parent
TAP = '*FUNCTION*: Tap *ARGS*: {"point": (500, 250)}'


def run(policy, config, tmp_path, env=None):
    env = env or FakePhone()
    agent = Agent(env, policy, get_dialect("qwen2vl", env.form_factor), config=config,
                  recorder=Recorder(tmp_path / "traj"))
    result = agent.run("Tap the thing")
    meta = load(tmp_path / "traj").meta
    assert (meta.status, meta.reason, meta.steps) == (result.status, result.reason, result.steps)
    assert meta.finished_at is not None
    return result, env


def test_the_step_budget(tmp_path):
    result, env = run(ListPolicy(lambda r: TAP), AgentConfig(max_steps=3), tmp_path)
    assert (result.status, result.steps, len(env.executed)) == ("max_steps", 3, 3)
    assert "step budget (3)" in result.reason


class ShortTask(TypeHelloTask):
    max_steps = 4


@pytest.mark.parametrize("given, budget", [(None, 4), (2, 2)])
def test_a_task_run_has_the_tasks_step_budget_unless_one_is_given(tmp_path, given, budget):
    from runtime.episode import run as run_episode
    from runtime.settings import RunSpec

    @contextmanager
    def phone(spec, console):
        yield FakePhone(), None

    spec = RunSpec(goal=None, model="scripted", max_steps=given, out=tmp_path / "runs")
    outcome = run_episode(spec, Console(file=io.StringIO()), task=ShortTask(),
                          env_factory=phone, policy=ListPolicy(lambda r: TAP))
    assert (outcome.result.status, outcome.result.steps) == ("max_steps", budget)
    assert f"step budget ({budget})" in outcome.result.reason


def test_the_wall_clock_budget(tmp_path):
    def slow(request):
        time.sleep(0.15)
        return TAP

    started = time.monotonic()
    # Long enough for the start (recording, the first screenshot) on a loaded box.
    result, _ = run(ListPolicy(slow), AgentConfig(max_steps=1000, max_time_s=2), tmp_path)
    assert result.status == "timeout" and "time budget (2s)" in result.reason
    assert 1 <= result.steps < 1000 and time.monotonic() - started < 30


class TruncatingPolicy(ListPolicy):
    """Replies as a model whose generation ran out of new tokens reports them."""

    def __init__(self, replies, cut: int = 20) -> None:
        super().__init__(replies)
        self.cut = cut

    def respond(self, request):
        reply = super().respond(request)
        cut = request.step == 1
        return Reply(reply.text[:self.cut] if cut else reply.text,
                     usage={"new_tokens": 7, "truncated": cut})


@pytest.mark.parametrize("cut", [20, len(TAP) - 3, len(TAP)])
def test_a_reply_cut_off_by_the_token_budget(tmp_path, cut):
    """Cut anywhere, even where what came out parses (``(500, 2`` reads as a tap at y=2 of
    1000) or looks whole, a reply the budget ended is never executed, and the run ends."""
    result, env = run(TruncatingPolicy(lambda r: TAP, cut), AgentConfig(max_steps=10), tmp_path)
    assert (result.status, result.steps, len(env.executed)) == ("limit", 2, 1)
    assert result.reason == ("step 1's reply used the whole token budget (7 new tokens) and "
                             "was cut off, so it was not executed (--max-new-tokens raises it)")
    step = load(tmp_path / "traj").steps[1]
    assert step.action is None and "cut off by the token budget" in step.parse_error


def test_a_replayed_cut_off_reply_names_no_count_and_no_option(tmp_path):
    """A replay read "(None new tokens)" and advised an option the replay does not have."""
    from agent.policies.replay import ReplayPolicy

    replies = tmp_path / "replies.jsonl"
    replies.write_text(json.dumps({"response": TAP}) + "\n"
                       + json.dumps({"response": TAP[:20], "truncated": True}) + "\n")
    result, _ = run(ReplayPolicy(str(replies)), AgentConfig(max_steps=10), tmp_path)
    assert result.reason == ("step 1's reply used the whole token budget and was cut off, so it "
                             "was not executed")


def test_a_screenshot_over_the_pixel_limit(tmp_path):
    class Growing(FakePhone):
        def capture(self):
            image = super().capture()
            return image if not self.executed else image.resize((2160, 4800))

    result, env = run(ListPolicy(lambda r: TAP), AgentConfig(max_screen_pixels=1080 * 2400),
                      tmp_path, env=Growing())
    # The first (1080x2400) screen is within the limit, the second (2160x4800) is not: it is
    # neither shown to the model nor recorded.
    assert (result.status, result.steps, len(env.executed)) == ("limit", 1, 1)
    assert result.reason == ("the screenshot has 2160x4800 = 10368000 pixels, over the limit "
                             "of 2592000 (--max-screen-pixels)")


def test_cli_limits_reach_the_run(tmp_path):
    from tests.conftest import require_tool

    require_tool("chromium")
    replies = tmp_path / "replies.jsonl"
    replies.write_text(json.dumps({"response": "Action: wait()"}) + "\n")

    def cli(*args):
        return subprocess.run([sys.executable, str(REPO / "agent_cli.py"), "run", "Look",
                               "--env", "browser", "--dialect", "uitars", "--model",
                               f"replay:{replies}", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=240)

    # The browser's default 1280x800 screen is over a 1000-pixel limit: no step runs.
    done = cli("--max-screen-pixels", "1000", "--out", "pixels")
    assert done.returncode == 1, done.stdout + done.stderr
    (directory,) = (tmp_path / "pixels").iterdir()
    meta = load(directory).meta
    assert (meta.status, meta.steps) == ("limit", 0) and "1280x800" in meta.reason
    done = cli("--max-steps", "1", "--out", "steps")
    assert done.returncode == 1, done.stdout + done.stderr
    (directory,) = (tmp_path / "steps").iterdir()
    meta = load(directory).meta
    assert (meta.status, meta.steps) == ("max_steps", 1)


def test_a_prompt_over_the_token_budget_without_past_screenshots(tmp_path):
    """Screenshots are dropped to fit first; once the text history alone is over the budget the
    run ends with status limit, and the model is not asked."""
    from agent.history import HistoryPolicy
    from agent.policies.base import prompt_images

    def tokens(prompt, images, screen):
        shown = len(prompt_images(prompt, images))
        return 1000 * shown + sum(len(m.text()) for m in prompt.messages)

    policy = ListPolicy(lambda r: TAP, tokens=tokens)
    config = AgentConfig(max_steps=20, history=HistoryPolicy(images=3, max_tokens=4100, block=1))
    result, env = run(policy, config, tmp_path)
    assert result.status == "limit" and "without past screenshots, over the budget of 4100" \
        in result.reason, result.reason
    assert len(policy.requests) == result.steps == len(env.executed) == 4
    assert all(tokens(r.prompt, r.images, r.screen) <= 4100 for r in policy.requests)
    # The screenshot whose prompt ended the run belongs to no step: it is not left behind.
    directory = tmp_path / "traj"
    assert sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*.png")) == [
        step.image for step in load(directory).steps]


def test_the_prompt_budget_is_the_smaller_of_the_option_and_the_models_room():
    import pytest

    from runtime.episode import prompt_budget
    from runtime.settings import RunError, RunSpec

    spec = RunSpec(goal="g", model="m", max_new_tokens=96)
    assert prompt_budget(spec, None) is None
    assert prompt_budget(spec, 4096) == 4000
    assert prompt_budget(RunSpec(goal="g", model="m", max_new_tokens=96, max_prompt_tokens=900),
                         4096) == 900
    assert prompt_budget(RunSpec(goal="g", model="m", max_prompt_tokens=900), None) == 900
    with pytest.raises(RunError, match="--max-new-tokens 4096 leaves no room"):
        prompt_budget(RunSpec(goal="g", model="m", max_new_tokens=4096), 4096)
    # A replay's budget is the run's as recorded (4080 for a run with --max-new-tokens 16): the
    # default 256 tokens of room cut it to 3840, and the replayed prompts dropped screenshots.
    assert prompt_budget(RunSpec(goal="g", model="replay:r.jsonl", max_prompt_tokens=4080),
                         4096) == 4080
    assert prompt_budget(RunSpec(goal="g", model="replay:r.jsonl"), 4096) == 4096 - 256


def test_the_time_budget_lets_the_step_under_way_finish(tmp_path):
    """The budget is checked between steps: a reply that arrives after it ran out is still
    parsed, executed and recorded, and the next step does not start."""
    def slow(request):
        time.sleep(1.5)
        return TAP

    # The budget also covers the start (recording, the first screenshot): a second leaves it
    # room on a loaded box, where 0.1 s ran out before the first step.
    result, env = run(ListPolicy(slow), AgentConfig(max_steps=10, max_time_s=1.0), tmp_path)
    assert (result.status, result.steps, len(env.executed)) == ("timeout", 1, 1)
    (step,) = load(tmp_path / "traj").steps
    assert step.action["kind"] == "tap" and step.timings.model_ms >= 1500
