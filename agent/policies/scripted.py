"""``--model scripted``: the task's own solution, written in the dialect's text.

The solution's typed actions are rendered the way the model would write them
(``dialect.render_action``), so the parser, the history and the recorder see exactly what a model
run produces: a scripted trajectory is valid SFT data and a test of the whole loop.
"""

from __future__ import annotations

from typing import Iterator

from agent.policies.base import Episode, Policy, PolicyError, PolicyGaveUp, Reply, Request
from tasks.base import SolutionStep, SolutionStuck


class ScriptedPolicy(Policy):
    name = "scripted"

    def __init__(self) -> None:
        self._episode: Episode | None = None
        self._steps: Iterator[SolutionStep] | None = None

    def start(self, episode: Episode) -> None:
        if episode.task is None:
            raise PolicyError("the scripted policy needs a task (--task NAME)")
        if episode.env is None:
            raise PolicyError("the scripted policy needs the env its solution reads")
        self._episode = episode
        self._steps = iter(episode.task.solution(episode.env))

    def respond(self, request: Request) -> Reply:
        if self._steps is None or self._episode is None:
            raise PolicyError("ScriptedPolicy.start was not called")
        try:
            step = next(self._steps, None)
        except SolutionStuck as exc:  # its previous step was refused, or the app went elsewhere
            raise PolicyGaveUp(f"the solution of {self._episode.task.name} gave up: {exc}") \
                from None
        if step is None:
            raise PolicyError(f"the solution of {self._episode.task.name} has no more steps")
        dialect = self._episode.dialect
        try:
            text = dialect.render_action(step.action, request.screen, step.thought)
        except ValueError as exc:  # an action or field this dialect cannot write
            raise PolicyError(f"the {dialect.name} dialect cannot write the solution's step "
                              f"{step.action.model_dump_json()}: {exc}") from None
        return Reply(text)
