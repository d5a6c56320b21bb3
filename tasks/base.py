"""A task: a goal, a seeded start state, a success check read from the device, and a solution.

Like android_world's tasks: ``setup`` puts the env into the task's start state, ``check`` reads
success from the environment's own state (an app's database through adb, a page's DOM), never from
what the agent claims, and ``solution`` is the task's own way to solve it as typed actions, which
the scripted policy writes in a dialect's text, so the parser and the loop run as with a model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Iterator, Literal

from core.actions import Action
from core.results import Score

if TYPE_CHECKING:
    from envs.base import Env

EnvKind = Literal["android", "desktop", "browser"]


@dataclass(frozen=True)
class SolutionStep:
    action: Action
    thought: str = ""


class Task(ABC):
    name: ClassVar[str]  # "phone/book-flight"
    goal: ClassVar[str]  # what the agent is told
    env: ClassVar[EnvKind]
    #: Extra words a free-text goal may use for this task ("airline", "ticket").
    keywords: ClassVar[tuple[str, ...]] = ()

    def setup(self, env: "Env") -> None:
        """Bring the env into this task's start state."""

    @abstractmethod
    def check(self, env: "Env") -> Score:
        """Whether the task is done, read from the environment's state."""

    @abstractmethod
    def solution(self, env: "Env") -> Iterator[SolutionStep]:
        """The steps that solve the task. A generator: each step is computed after the previous
        one ran, so it can read the screen's current layout, and the last one terminates."""
