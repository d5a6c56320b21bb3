"""A task, in android_world's shape: seeded params, a goal, a start state, a check, a solution.

- ``sample_params(rng)`` draws the episode's parameters; ``Task(seed)`` draws them from
  ``random.Random(seed)``, so the same seed gives the same params and the same goal.
- ``goal_template.format(**params)`` is what the agent is told.
- ``initialize(env)`` puts the env into the start state through device commands (on the virtual
  phone ``vphone state set``, as a real harness would write an app's database with adb).
- ``check(env, answer)`` reads success from the environment's state, never from the agent's claim;
  question tasks compare ``answer`` (the agent's final ``answer`` action, or None).
- ``solution(env)`` is the task's own way to solve it as typed actions, which the scripted policy
  writes in a dialect's text, so the parser and the loop run as with a model.
"""

from __future__ import annotations

import json
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Literal

from core.actions import Action
from core.results import Score
from envs.base import EnvError

if TYPE_CHECKING:
    from envs.base import Env

EnvKind = Literal["android", "desktop", "browser"]


class SolutionStuck(EnvError):
    """A scripted solution found the screen other than its next step needs (what it waited for
    never came: a step the safety gate refused, an app that went elsewhere). The solution gives
    up, as a model would; the env did not fail."""


@dataclass(frozen=True)
class SolutionStep:
    action: Action
    thought: str = ""


class Task(ABC):
    name: ClassVar[str]  # "phone/book-flight"; the suite is the part before "/"
    env: ClassVar[EnvKind]
    goal_template: ClassVar[str]  # "Book the cheapest flight from {origin} to {destination} ..."
    #: The app(s), difficulty and skills: scroll, long-press, typing, answer, multi-app ...
    tags: ClassVar[frozenset[str]] = frozenset()
    max_steps: ClassVar[int] = 20  # the step budget
    #: Extra words a free-text goal may use for this task ("airline", "ticket").
    keywords: ClassVar[tuple[str, ...]] = ()
    #: Whether ``solution`` can solve it (``--model scripted``); most MiniWoB++ pages cannot.
    has_solution: ClassVar[bool] = True

    def __init__(self, seed: int = 0, params: dict[str, Any] | None = None) -> None:
        if seed < 0:  # random.Random(-3) draws what Random(3) draws: two seeds, one episode
            raise ValueError(f"a task's seed is 0 or more, not {seed}")
        self.seed = seed
        self.params = dict(params) if params is not None \
            else self.sample_params(random.Random(seed))
        try:
            json.dumps(self.params)
        except TypeError as exc:
            raise ValueError(f"the params of {self.name} must be JSON: {exc}") from None

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        """This episode's parameters, drawn only from ``rng``; JSON-serializable."""
        return {}

    @property
    def suite(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def goal(self) -> str:
        try:
            return self.goal_template.format(**self.params)
        except KeyError as exc:
            raise ValueError(f"the goal of {self.name} needs the param {exc}") from None

    def initialize(self, env: "Env") -> None:
        """Bring the env into this episode's start state."""

    @abstractmethod
    def check(self, env: "Env", answer: str | None) -> Score:
        """Whether the task is done, read from the environment's state (and ``answer``)."""

    def tear_down(self, env: "Env") -> None:
        """Undo what ``initialize`` set up outside the env's own reset."""

    @abstractmethod
    def solution(self, env: "Env") -> Iterator[SolutionStep]:
        """The steps that solve the task. A generator: each step is computed after the previous
        one ran, so it can read the screen's current layout; the last one terminates or
        answers."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed}, params={self.params})"


def nothing_else_changed(score: Score, changed: list[str]) -> Score:
    """``score``, unless the agent also changed ``changed`` (what the task does not use): then
    a failure, whatever ``score`` said. Doing what was asked does not excuse the rest."""
    if not changed:
        return score
    return Score(success=False, reason=f"the agent changed {', '.join(changed)}, which the "
                                       f"task did not ask for ({score.reason})")
