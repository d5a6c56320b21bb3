"""``--model human``: a person types each action, which is how demonstrations get recorded.

A line is either the dialect's own text (``*FUNCTION*: Tap *ARGS*: {"point": (500,500)}``) or an
action as JSON in screenshot pixels (``{"kind": "tap", "x": 540, "y": 1200}``). JSON actions are
rendered into the dialect's text, so the trajectory reads as if the model had written them; so is
a line of dialect text, once parsed (``(181.5,318)`` becomes the integer coordinates a model
writes). A line that does not parse (a typo) is asked again with the parser's error; it is never
recorded.
"""

from __future__ import annotations

import json
from typing import Callable

from agent.policies.base import Episode, Policy, PolicyError, PolicyStopped, Reply, Request
from core.actions import parse_action

HELP = (
    "Type the action in the dialect's text, or as JSON in screenshot pixels, e.g. "
    '{"kind": "tap", "x": 540, "y": 1200}, {"kind": "type", "text": "hello"}, '
    '{"kind": "terminate", "status": "success"}. An empty line or end of input stops the run '
    "(recorded as interrupted)."
)


class HumanPolicy(Policy):
    name = "human"

    def __init__(
        self,
        read_line: Callable[[str], str] = input,
        show: Callable[[str], None] = print,
        screenshot: Callable[[int], str] | None = None,
    ) -> None:
        """``screenshot(step)`` names the file holding the step's screenshot, to look at."""
        self._read = read_line
        self._show = show
        self._screenshot = screenshot
        self._episode: Episode | None = None

    def start(self, episode: Episode) -> None:
        self._episode = episode
        self._show(f"Goal: {episode.goal}\n{HELP}")

    def respond(self, request: Request) -> Reply:
        width, height = request.screen.size
        if self._screenshot is not None:
            self._show(f"screenshot: {self._screenshot(request.step)}")
        while True:
            try:
                line = self._read(f"step {request.step} ({width}x{height})> ").strip()
            except EOFError:
                line = ""
            if not line:
                raise PolicyStopped("the person stopped (empty input)")
            if self._episode is None:
                raise PolicyError("HumanPolicy.start was not called")
            dialect = self._episode.dialect
            try:
                if line.startswith("{"):
                    action = parse_action(json.loads(line), screen=request.screen.size)
                    text = dialect.render_action(action, request.screen)
                else:
                    # A typo is asked again, not recorded; the action is written back as the
                    # models write it (integer coordinates), with the person's thought.
                    action = dialect.parse(line, request.screen)
                    text = dialect.render_action(action, request.screen, dialect.thought(line))
                dialect.parse(text, request.screen)  # what the loop will read back
                return Reply(text)
            except ValueError as exc:  # (ParseError is one) a typo, bad JSON, an invalid action, or
                self._show(f"not a valid action: {exc}\n{HELP}")  # one the dialect lacks
