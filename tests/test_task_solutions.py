"""Every registered task, on a real env, through the real loop: its check fails on the start
state, its scripted solution (the scripted policy, written in a dialect's text and parsed back)
succeeds within the step budget, and a wrong solution scores 0.

One virtual phone serves the whole module; each task's ``initialize`` resets the apps. Each task
runs with a fixed seed and with one seed drawn per run (printed, so a failure can be replayed).
"""

from __future__ import annotations

import random

import pytest

from actions.dialects import get_dialect
from agent.loop import Agent, AgentConfig
from agent.policies.scripted import ScriptedPolicy
from core.actions import Answer, Terminate
from core.kinds import FINAL_KINDS, KINDS
from tasks.base import SolutionStep
from tasks.registry import find_tasks, get_task, task_names

RUN_SEED = random.SystemRandom().randrange(1, 10_000)
SEEDS = (0, RUN_SEED)
#: The action kinds each phone solution used, filled as the tests run.
PHONE_KINDS: dict[str, set[str]] = {}


@pytest.fixture(scope="module")
def android(virtual_phone):
    from envs.android import AndroidEnv

    phone, adb = virtual_phone
    with AndroidEnv(serial=phone.serial, adb_port=adb.port) as env:
        yield env


@pytest.fixture
def env_for(request):
    def env_for(kind: str):
        if kind == "android":
            return request.getfixturevalue("android")
        pytest.fail(f"no {kind} env here yet: add a fixture for it to {__file__}")
    return env_for


class RecordingPolicy(ScriptedPolicy):
    """The scripted policy, noting the kind of each step it plays."""

    def __init__(self, kinds: set[str]) -> None:
        super().__init__()
        self.kinds = kinds

    def start(self, episode):
        super().start(episode)
        steps = self._steps
        self._steps = (self.kinds.add(s.action.kind) or s for s in steps)


def run_episode(task, env, policy):
    agent = Agent(env, policy, get_dialect("qwen2vl", env.form_factor),
                  config=AgentConfig(max_steps=task.max_steps))
    return agent.run(task.goal, task)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", task_names())
def test_check_fails_at_the_start_and_the_solution_succeeds(name, seed, env_for):
    print(f"seed {seed}")
    task = get_task(name, seed=seed)
    env = env_for(task.env)
    env.reset(task.initialize)
    before = task.check(env, None)
    assert not before.success and before.reward < 1, f"{task!r} is done before it starts: {before}"

    kinds = PHONE_KINDS.setdefault(name, set()) if task.suite == "phone" else set()
    result = run_episode(task, env, RecordingPolicy(kinds))
    assert result.status in ("success", "answered"), f"{task!r}: {result.status}: {result.reason}"
    assert result.check is not None and result.check.success and result.check.reward == 1, \
        f"{task!r}: {result.check}"


class GiveUpAtOnce(ScriptedPolicy):
    """A wrong solution: claim success (or answer nonsense) before doing anything."""

    def start(self, episode):
        super().start(episode)
        claim = Answer(text="I don't know") if "answer" in episode.task.tags \
            else Terminate(status="success")
        self._steps = iter([SolutionStep(claim, "Done.")])


# A task that does something and a question task: the check scores the device and the answer,
# not the claim. (Every task's check already fails on its untouched start state.)
@pytest.mark.parametrize("name", ["phone/edit-contact-number", "phone/contact-number-question"])
def test_a_wrong_solution_scores_zero(name, env_for):
    task = get_task(name, seed=RUN_SEED)
    result = run_episode(task, env_for(task.env), GiveUpAtOnce())
    assert result.steps == 1
    assert result.check is not None and not result.check.success and result.check.reward == 0, \
        f"{task!r}: {result.check}"


def test_phone_solutions_cover_every_phone_action_kind():
    phone = [c.name for c in find_tasks(suite="phone")]
    missing = [n for n in phone if n not in PHONE_KINDS]
    if missing:
        pytest.skip(f"run the whole module: {len(missing)} phone tasks did not run")
    used = set().union(*PHONE_KINDS.values())
    # "wait" is never needed: solutions read the screen before each step.
    assert KINDS["phone"] - {"wait"} <= used, sorted(KINDS["phone"] - {"wait"} - used)
    assert FINAL_KINDS <= used
