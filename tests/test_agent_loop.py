"""The agent loop's logic against a fake env and scripted replies (no device, no model)."""

from __future__ import annotations

import io
import json
import time

import pytest
from rich.console import Console

from actions.dialects import ImagePart, get_dialect
from agent.history import HistoryPolicy
from agent.loop import Agent, AgentConfig
from agent.policies.scripted import ScriptedPolicy
from agent.safety import PassThroughGate, SafetyGate, Verdict
from cli.live_view import LiveView
from core.actions import Tap
from envs.base import EnvError
from tasks.base import SolutionStep
from tests.agent_fakes import FakePhone, ListPolicy, NameTheColourTask, TypeHelloTask
from trajectories.reader import load
from trajectories.recorder import Recorder

TAP = '*FUNCTION*: Tap *ARGS*: {"point": (500, 250)}'
DONE = '*FUNCTION*: Terminate *ARGS*: {"status": "success"}'
GARBAGE = "I am not sure what to do here."


def run(replies, config=None, env=None, task=None, tmp_path=None, gate=None, observer=None,
        **kw):
    env = env or FakePhone()
    policy = replies if isinstance(replies, ListPolicy) else ListPolicy(replies, **kw)
    recorder = Recorder(tmp_path / "traj") if tmp_path is not None else None
    agent = Agent(env, policy, get_dialect("qwen2vl", env.form_factor), config=config,
                  recorder=recorder, gate=gate, observer=observer)
    return agent.run("Open the thing", task), env, policy


def test_terminate_ends_with_success_and_taps_in_screen_pixels(tmp_path):
    result, env, _ = run([TAP, DONE], tmp_path=tmp_path)
    assert (result.status, result.steps) == ("success", 2)
    # (500, 250) of [0, 1000) on a 1080x2400 screen.
    assert env.executed == [Tap(x=540, y=600)]
    traj = load(tmp_path / "traj")
    assert traj.meta.status == "success" and traj.meta.steps == 2
    assert [s.action["kind"] for s in traj.steps] == ["tap", "terminate"]


def test_parse_errors_are_fed_back_then_the_loop_recovers():
    result, env, policy = run([GARBAGE, GARBAGE, TAP, DONE])
    assert result.status == "success"
    assert env.executed == [Tap(x=540, y=600)]
    # The second and third prompts carry the parse error text back to the model.
    second = "".join(m.text() for m in policy.requests[1].prompt.messages)
    assert "Error:" in second and "*FUNCTION*" in second
    assert GARBAGE in second


def test_too_many_parse_errors_in_a_row_fail_the_episode(tmp_path):
    result, env, _ = run([GARBAGE] * 10, config=AgentConfig(max_parse_errors=2),
                         tmp_path=tmp_path)
    assert result.status == "failure"
    assert result.steps == 3  # two fed back, the third ends it
    assert "3 replies in a row did not parse" in result.reason
    alone, _, _ = run([GARBAGE], config=AgentConfig(max_parse_errors=0))
    assert alone.reason.startswith("the reply did not parse; the last error: ")  # not "1 replies"
    assert "FUNCTION" in result.reason  # the parser's own message is part of the reason
    assert env.executed == []
    steps = load(tmp_path / "traj").steps
    assert len(steps) == 3 and all(s.parse_error and s.action is None for s in steps)


def test_a_good_reply_resets_the_parse_error_count():
    replies = [GARBAGE, GARBAGE, TAP, GARBAGE, GARBAGE, DONE]
    result, _, _ = run(replies, config=AgentConfig(max_parse_errors=2))
    assert result.status == "success" and result.steps == 6


def test_step_budget():
    result, env, _ = run(lambda r: TAP, config=AgentConfig(max_steps=4))
    assert (result.status, result.steps) == ("max_steps", 4)
    assert len(env.executed) == 4


def test_time_budget():
    def slow(request):
        time.sleep(0.25)  # a slow model
        return TAP

    # A budget of a few model calls: loose enough that a loaded machine still runs one step.
    result, _, _ = run(slow, config=AgentConfig(max_steps=100, max_time_s=1.0))
    assert result.status == "timeout"
    assert 1 <= result.steps <= 4


def test_answer_ends_the_episode_with_the_answer():
    result, env, _ = run(['*FUNCTION*: Answer *ARGS*: {"text": "42 flights"}', TAP])
    assert (result.status, result.answer, result.steps) == ("answered", "42 flights", 1)
    assert env.executed == []


def test_terminate_failure():
    result, _, _ = run(['*FUNCTION*: Terminate *ARGS*: {"status": "failure", "message": "stuck"}'])
    assert (result.status, result.reason) == ("failure", "stuck")


def test_ctrl_c_finalizes_the_trajectory(tmp_path):
    def interrupt(request):
        if request.step == 2:
            raise KeyboardInterrupt
        return TAP

    result, _, _ = run(interrupt, tmp_path=tmp_path)
    assert (result.status, result.steps) == ("interrupted", 2)
    traj = load(tmp_path / "traj")
    assert traj.meta.status == "interrupted" and len(traj.steps) == 2
    assert traj.meta.finished_at is not None


def test_env_error_on_observe_ends_with_error(tmp_path):
    result, _, _ = run(lambda r: TAP, env=FakePhone(fail_observe_at=2), tmp_path=tmp_path)
    assert result.status == "error"
    assert "device went away" in result.reason
    assert load(tmp_path / "traj").meta.status == "error"


def test_policy_error_ends_with_error():
    result, _, _ = run([TAP])
    assert result.status == "error" and "out of replies" in result.reason


def test_history_keeps_only_recent_screenshots_as_images():
    policy = ListPolicy(lambda r: TAP)
    run(policy, config=AgentConfig(max_steps=5, history=HistoryPolicy(images=1, block=1)))
    last = policy.requests[-1]
    shown = [p.index for m in last.prompt.messages for p in m.content if isinstance(p, ImagePart)]
    assert shown == [3, 4]  # one past screenshot plus the current one
    assert "(screenshot 0 not shown)" in "".join(m.text() for m in last.prompt.messages)


def test_token_budget_drops_old_screenshots():
    def tokens(prompt, images, screen):
        return 1000 * sum(isinstance(p, ImagePart) for m in prompt.messages for p in m.content)

    policy = ListPolicy(lambda r: TAP, tokens=tokens)
    config = AgentConfig(max_steps=5, history=HistoryPolicy(images=3, max_tokens=2500, block=1))
    run(policy, config=config)
    for request in policy.requests:
        images = sum(isinstance(p, ImagePart) for m in request.prompt.messages for p in m.content)
        assert images <= 2


@pytest.mark.parametrize("block", [1, 2])
def test_the_budget_tries_each_smaller_selection_once_however_large_the_image_count(block):
    counted = []

    def tokens(prompt, images, screen):
        counted.append(sum(isinstance(p, ImagePart) for m in prompt.messages for p in m.content))
        return 1000 * counted[-1]

    policy = ListPolicy(lambda r: TAP, tokens=tokens)
    history = HistoryPolicy(images=1000, max_tokens=2500, block=block)
    run(policy, config=AgentConfig(max_steps=6, history=history))
    shown = [sum(isinstance(p, ImagePart) for m in r.prompt.messages for p in m.content)
             for r in policy.requests]

    def fitting_cut(past):  # the first block boundary that leaves at most one past screenshot
        return -(-max(past - 1, 0) // block) * block

    # Screenshots leave a block at a time, oldest first, until the prompt fits.
    assert shown == [1 + past - fitting_cut(past) for past in range(6)]
    # Each step counts every past screenshot shown, then one block fewer each time: once each.
    assert len(counted) == sum(fitting_cut(past) // block + 1 for past in range(6))


@pytest.mark.parametrize("dialect", ["qwen2vl", "qwen25vl", "uitars"])
@pytest.mark.parametrize("history", [
    HistoryPolicy(), HistoryPolicy(images=1, block=1), HistoryPolicy(images=0),
    HistoryPolicy(images=3, steps=2, block=2), HistoryPolicy(images=6, block=4, max_tokens=4500),
], ids=["default", "one", "none", "steps", "budget"])
def test_a_long_episode_holds_only_the_screenshots_a_prompt_can_still_show(dialect, history):
    """An episode of hundreds of steps held every screenshot (10 MB a phone frame): those
    older than the first the history shows are let go, and no prompt asks for one of them."""
    from agent.policies.base import prompt_images

    held = []

    def reply(request):
        prompt_images(request.prompt, request.images)  # every frame it shows is still there
        held.append(sum(image is not None for image in request.images))
        return get_dialect(dialect, "phone").render_action(Tap(x=5, y=5), request.screen)

    def tokens(prompt, images, screen):  # a budget that shows fewer on odd steps
        shown = len(prompt_images(prompt, images))
        return 1000 * shown + 600 * (len(images) % 2)

    policy = ListPolicy(reply, tokens=tokens)
    Agent(FakePhone(), policy, get_dialect(dialect, "phone"),
          config=AgentConfig(max_steps=40, history=history)).run("wander")
    assert len(held) == 40
    assert max(held) <= history.images + 1 and held[-1] >= 1


def test_token_count_is_recorded(tmp_path):
    run([TAP, DONE], tmp_path=tmp_path, tokens=lambda prompt, images, screen: 1234)
    assert [s.prompt_tokens for s in load(tmp_path / "traj").steps] == [1234, 1234]


def test_safety_gate_block_is_fed_back_and_not_executed():
    class NoTaps(SafetyGate):
        def review(self, action, context):
            return Verdict(action.kind != "tap", "taps are not allowed")

    result, env, policy = run([TAP, DONE], gate=NoTaps())
    assert result.status == "success" and env.executed == []
    second = "".join(m.text() for m in policy.requests[1].prompt.messages)
    assert "blocked by the safety gate: taps are not allowed" in second


def test_pass_through_gate_allows_everything():
    assert PassThroughGate().review(Tap(x=1, y=1), None).allowed


def test_scripted_policy_solves_a_task_and_the_check_reads_the_env(tmp_path):
    env = FakePhone()
    task = TypeHelloTask()
    recorder = Recorder(tmp_path / "traj")
    agent = Agent(env, ScriptedPolicy(), get_dialect("qwen2vl", env.form_factor),
                  recorder=recorder)
    result = agent.run(task.goal, task)
    assert result.status == "success"
    assert result.check is not None and result.check.success, result.check
    traj = load(tmp_path / "traj")
    assert traj.meta.task == "fake/type-hello" and traj.meta.check.success
    # The scripted text went through the real parser, thought included.
    assert traj.steps[1].response.startswith("Type the word.")
    assert traj.steps[1].thought == "Type the word."
    assert traj.steps[1].action == {"kind": "type", "text": "hello"}


@pytest.mark.parametrize("stuck", [True, False])
def test_a_scripted_solution_stuck_on_a_refused_step_is_a_failure_not_an_env_error(stuck):
    """With --deny-sensitive the gate refuses the solution's tap, and what the tap would have
    shown never comes: the solution gives up, as a model would, and the check decides; a device
    that fails while the solution reads it stays a runtime error."""
    from tasks.base import SolutionStuck

    class WaitsForTheTap(TypeHelloTask):
        def solution(self, env):
            yield SolutionStep(Tap(x=540, y=300), "Focus the search box.")
            if stuck:
                raise SolutionStuck("the search box did not appear on the screen within 10s")
            raise EnvError("device offline")

    class NoTaps(SafetyGate):
        def review(self, action, context):
            return Verdict(action.kind != "tap", "taps are not allowed")

    env = FakePhone()
    task = WaitsForTheTap()
    result = Agent(env, ScriptedPolicy(), get_dialect("qwen2vl", env.form_factor),
                   gate=NoTaps()).run(task.goal, task)
    if stuck:
        assert result.status == "failure" and "gave up" in result.reason
        assert "did not appear" in result.reason and result.check.success is False
    else:
        assert result.status == "error" and "env failed: device offline" in result.reason


def test_a_check_that_breaks_still_tears_down_and_finishes_the_trajectory(tmp_path):
    """A bug in a check (an exception no env raises) propagates, after the task is torn down
    and the trajectory says the episode ended in an error, and why."""

    class BrokenCheck(NameTheColourTask):
        def check(self, env, answer):
            raise KeyError("colour")

    env = FakePhone()
    agent = Agent(env, ScriptedPolicy(), get_dialect("qwen2vl", env.form_factor),
                  recorder=Recorder(tmp_path / "traj"))
    task = BrokenCheck(seed=4)
    with pytest.raises(KeyError):
        agent.run(task.goal, task)
    assert env.torn_down
    meta = load(tmp_path / "traj").meta
    assert meta.status == "error" and meta.reason == "the check failed: KeyError: 'colour'"


def test_failed_check_is_reported_even_when_the_agent_claims_success():
    env = FakePhone()
    agent = Agent(env, ListPolicy([DONE]), get_dialect("qwen2vl", env.form_factor))
    result = agent.run("Type hello", TypeHelloTask())
    assert result.status == "success" and not result.check.success


def test_the_agents_answer_reaches_the_check_and_the_task_is_torn_down(tmp_path):
    env = FakePhone()
    task = NameTheColourTask(seed=4)
    agent = Agent(env, ScriptedPolicy(), get_dialect("qwen2vl", env.form_factor),
                  recorder=Recorder(tmp_path / "traj"))
    result = agent.run(task.goal, task)
    assert result.status == "answered" and result.answer == task.params["colour"]
    assert result.check.success, result.check
    assert env.torn_down
    meta = load(tmp_path / "traj").meta
    assert (meta.seed, meta.params) == (4, task.params)

    wrong = {**task.params, "colour": "green"}
    agent = Agent(FakePhone(), ListPolicy(['*FUNCTION*: Answer *ARGS*: {"text": "purple"}']),
                  get_dialect("qwen2vl", env.form_factor))
    result = agent.run(task.goal, NameTheColourTask(params=wrong))
    assert result.answer == "purple" and not result.check.success


def test_recorded_steps_hold_prompt_timings_and_results(tmp_path):
    run([GARBAGE, TAP, DONE], tmp_path=tmp_path)
    steps = load(tmp_path / "traj").steps
    assert [s.step for s in steps] == [0, 1, 2]
    assert steps[0].result is None and steps[0].parse_error
    assert steps[1].result.ok and steps[1].result.message == "did tap"
    assert all((tmp_path / "traj" / s.image).is_file() for s in steps)
    assert all(s.screen == (1080, 2400) for s in steps)
    images = [p.image for m in steps[2].prompt.messages for p in m.content if p.type == "image"]
    assert images[-1] == "images/step_002.png"
    assert steps[2].prompt.continue_final_message  # qwen2vl continues the assistant turn
    assert all(s.timings.model_ms >= 0 and s.timings.observe_ms > 0 for s in steps)
    json.dumps([s.model_dump(mode="json") for s in steps])


def test_an_unexpected_exception_still_finalizes_the_trajectory(tmp_path):
    def broken(request):
        if request.step == 1:
            raise ZeroDivisionError("bug in a policy")
        return TAP

    with pytest.raises(ZeroDivisionError):
        run(broken, tmp_path=tmp_path)
    traj = load(tmp_path / "traj")
    assert traj.meta.status == "error" and "bug in a policy" in traj.meta.reason
    assert len(traj.steps) == 1


def test_scripted_step_the_dialect_cannot_write_is_a_policy_error():
    from core.actions import Terminate
    from tasks.base import SolutionStep

    class Chatty(TypeHelloTask):
        def solution(self, env):
            yield SolutionStep(Terminate(status="success", message="all done"))

    env = FakePhone()
    agent = Agent(env, ScriptedPolicy(), get_dialect("uitars", env.form_factor))
    result = agent.run("x", Chatty())
    assert result.status == "error" and "uitars dialect cannot write" in result.reason


class GoalFromTheScreenTask(TypeHelloTask):
    """Knows its goal only once its start state exists, as a MiniWoB page does."""

    def __init__(self) -> None:
        super().__init__()
        self.shown: str | None = None

    @property
    def goal(self) -> str:
        return self.shown or "Do what the screen says"

    def initialize(self, env) -> None:
        super().initialize(env)
        self.shown = "Type hello, as the screen says"


def test_a_goal_the_start_state_tells_is_the_one_the_model_is_told(tmp_path):
    prompts = []

    def reply(request):
        prompts.append("\n".join(m.text() for m in request.prompt.messages))
        return DONE

    task = GoalFromTheScreenTask()
    screen = io.StringIO()  # not a terminal: the live view prints plain lines
    with LiveView(Console(file=screen, width=200), "Do what the screen says") as view:
        result, _, _ = run(reply, task=task, tmp_path=tmp_path, observer=view)
    assert result.status == "success"
    assert view.title == "Type hello, as the screen says"
    assert "goal: Type hello, as the screen says" in screen.getvalue()
    assert "Type hello, as the screen says" in prompts[0]
    assert "Open the thing" not in prompts[0] and "Do what the screen" not in prompts[0]
    assert load(tmp_path / "traj").meta.goal == "Type hello, as the screen says"
