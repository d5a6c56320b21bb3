"""The Settings tasks' checks look at every switch, not only the ones the goal names.

An agent that does what was asked and flips another switch on the way (Airplane mode on while
setting Wi-Fi, say) has not done the task, as an edit-contact agent that adds a second contact has
not: the check must fail, as the Contacts and Messages checks do for their apps. A question is no
licence to flip any switch.
"""

from __future__ import annotations

import pytest

from actions.dialects import get_dialect
from agent.loop import Agent, AgentConfig
from agent.policies.scripted import ScriptedPolicy
from core.actions import Back, Home, Scroll
from tasks.base import SolutionStep
from tasks.phone.device import find, settled, tap, wait_for
from tasks.registry import get_task

#: At the top of the Settings page and never a target of these tasks.
STRAY = "airplane"


@pytest.fixture(scope="module")
def android(virtual_phone):
    from envs.android import AndroidEnv

    phone, adb = virtual_phone
    with AndroidEnv(serial=phone.serial, adb_port=adb.port) as env:
        yield env


class SolveAndFlipAnother(ScriptedPolicy):
    """The task's own solution, with one stray switch flipped before its last step."""

    def start(self, episode):
        super().start(episode)
        self._steps = self.steps(episode.env, self._steps)

    def steps(self, env, solution):
        for step in solution:
            if step.action.kind in ("terminate", "answer"):
                yield from flip(env, STRAY)
            yield step


def flip(env, key: str):
    yield SolutionStep(Home(), "Go home.")
    yield SolutionStep(tap(find(env, "launcher:settings")), "Open Settings again.")
    # Settings comes back as the solution left it, as an Android app does: on its About page,
    # or scrolled down its main one.
    if any(n.resource_id == "settings:device-name" for n in settled(env)):
        yield SolutionStep(Back(), "Back to the main page.")
    for _ in range(3):  # half a screen each, to its top
        yield SolutionStep(Scroll(direction="up"), "Up to the top.")
    switch = find(env, f"settings:{key}")
    yield SolutionStep(tap(switch), f"Flip {key} too.")
    wait_for(env, lambda nodes: [n for n in nodes if n.resource_id == switch.resource_id
                                 and n.checked != switch.checked], f"{key} flipped")


def run(task, env, policy):
    agent = Agent(env, policy, get_dialect("qwen2vl", env.form_factor),
                  config=AgentConfig(max_steps=task.max_steps + 6))
    return agent.run(task.goal, task)


@pytest.mark.parametrize("name", ["phone/set-wifi-bluetooth", "phone/toggle-setting",
                                  "phone/rename-device", "phone/setting-question"])
@pytest.mark.parametrize("seed", [3, 8])
def test_a_stray_switch_fails_the_task(android, name, seed):
    task = get_task(name, seed=seed)
    done = run(task, android, ScriptedPolicy())
    assert done.check is not None and done.check.success, done.check  # the solution alone passes
    result = run(get_task(name, seed=seed), android, SolveAndFlipAnother())
    assert result.status in ("success", "answered"), result.reason
    assert result.check is not None and not result.check.success, result.check
    assert STRAY in result.check.reason
