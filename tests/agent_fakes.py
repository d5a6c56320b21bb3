"""Fakes for the agent-loop tests: an env that records what it was asked to do, scripted replies."""

from __future__ import annotations

import io
from typing import Callable

from PIL import Image

from agent.policies.base import Policy, PolicyError, Reply, Request
from core.actions import Action, Answer, Tap, Terminate, Type
from core.results import Score
from envs.base import ElementInfo, Env, EnvError, SettleConfig
from tasks.base import SolutionStep, Task


class FakePhone(Env):
    """A 1080x2400 'phone' whose screen colour changes with each executed action."""

    name = "fake"
    form_factor = "phone"

    def __init__(self, fail_observe_at: int | None = None) -> None:
        super().__init__(SettleConfig(timeout_s=1.0, poll_interval_s=0.001))
        self.executed: list[Action] = []
        self.observations = 0
        self.fail_observe_at = fail_observe_at
        self.typed = ""

    def capture(self) -> Image.Image:
        shade = (len(self.executed) * 40) % 256
        return Image.new("RGB", (1080, 2400), (shade, 255 - shade, 128))

    def observe(self):
        if self.fail_observe_at is not None and self.observations >= self.fail_observe_at:
            raise EnvError("device went away")
        self.observations += 1
        return super().observe()

    def _execute(self, action: Action) -> str:
        self.executed.append(action)
        if action.kind == "type":
            self.typed += action.text
        return f"did {action.kind}"


class PasswordPhone(FakePhone):
    """A fake phone whose focused element is a password field."""

    def focused_element(self):
        return ElementInfo("", password=True)


class ListPolicy(Policy):
    """Replies from a list; records every request it saw."""

    name = "list"

    def __init__(self, replies: list[str] | Callable[[Request], str],
                 tokens: Callable[..., int | None] | None = None) -> None:
        self.replies = replies
        self.requests: list[Request] = []
        self._tokens = tokens

    def respond(self, request: Request) -> Reply:
        self.requests.append(request)
        if callable(self.replies):
            return Reply(self.replies(request))
        if len(self.requests) > len(self.replies):
            raise PolicyError("out of replies")
        return Reply(self.replies[len(self.requests) - 1])

    def count_tokens(self, prompt, images, screen):
        return self._tokens(prompt, images, screen) if self._tokens else None


class TypeHelloTask(Task):
    """Type 'hello' and terminate; success is read from the fake phone's typed text."""

    name = "fake/type-hello"
    goal_template = "Type hello into the search box"
    env = "android"
    keywords = ("greeting",)

    def initialize(self, env: Env) -> None:
        env.typed = ""

    def check(self, env: Env, answer: str | None) -> Score:
        return Score(success=env.typed == "hello", reason=f"typed {env.typed!r}")

    def solution(self, env: Env):
        yield SolutionStep(Tap(x=540, y=300), "Focus the search box.")
        yield SolutionStep(Type(text="hello"), "Type the word.")
        yield SolutionStep(Terminate(status="success"), "Done.")



class NameTheColourTask(Task):
    """A question task: the check compares the agent's answer; tear_down marks the fake phone."""

    name = "fake/name-the-colour"
    goal_template = "What colour is the {thing}?"
    env = "android"

    @classmethod
    def sample_params(cls, rng):
        return {"thing": "sky", "colour": rng.choice(["blue", "grey", "orange"])}

    def check(self, env: Env, answer: str | None) -> Score:
        return Score(success=answer == self.params["colour"], reason=f"answered {answer!r}")

    def tear_down(self, env: Env) -> None:
        env.torn_down = True

    def solution(self, env: Env):
        yield SolutionStep(Answer(text=self.params["colour"]), "I can see it.")


class TextStream(io.StringIO):
    """A stream standing for stdin, stdout or stderr, a terminal or not (a file, a pipe)."""

    def __init__(self, terminal: bool, text: str = "") -> None:
        super().__init__(text)
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal
