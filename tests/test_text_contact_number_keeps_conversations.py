"""phone/text-contact-number: sending the number is the task, deleting a conversation is not.

The check looked only at the messages added after the seeded ones, so an agent that sent the
right number and deleted another conversation on the way (a long press too many) passed.
"""

from __future__ import annotations

import pytest

from actions.dialects import get_dialect
from agent.loop import Agent, AgentConfig
from agent.policies.scripted import ScriptedPolicy
from core.actions import Back
from tasks.base import SolutionStep
from tasks.phone.device import find, long_press, scroll_to, slug, tap, wait_gone
from tasks.registry import get_task


@pytest.fixture(scope="module")
def android(virtual_phone):
    from envs.android import AndroidEnv

    phone, adb = virtual_phone
    with AndroidEnv(serial=phone.serial, adb_port=adb.port) as env:
        yield env


class SolveThenDeleteAnother(ScriptedPolicy):
    """The task's solution, then a conversation with someone else deleted before it ends."""

    def start(self, episode):
        super().start(episode)
        self._steps = self.steps(episode.env, episode.task.params, self._steps)

    def steps(self, env, p, solution):
        for step in solution:
            if step.action.kind == "terminate":
                other = next(t["contact"] for t in p["threads"]
                             if t["contact"] != p["recipient"])
                yield SolutionStep(Back(), "Back to the conversations.")
                row = yield from scroll_to(env, f"messages:thread-{slug(other)}", other)
                yield SolutionStep(long_press(row), "Hold it.")
                yield SolutionStep(tap(find(env, "messages:menu-delete")), "Delete it.")
                wait_gone(env, row.resource_id, "messages:new", "the list without it")
            yield step


@pytest.mark.parametrize("seed", [2, 9])
def test_deleting_another_conversation_fails(android, seed):
    task = get_task("phone/text-contact-number", seed=seed)
    agent = Agent(android, SolveThenDeleteAnother(), get_dialect("qwen2vl", android.form_factor),
                  config=AgentConfig(max_steps=task.max_steps + 8))
    result = agent.run(task.goal, task)
    assert result.status == "success", result.reason
    assert result.check is not None and not result.check.success, result.check
