"""What a dialect is: one model family's prompt format and output format.

A dialect renders the system prompt and the conversation for a step, renders an action the way the
model would write it (the scripted policy and the round-trip tests need that), and parses the
model's reply into a typed Action in absolute screen pixels.

Conversations are plain data: ``Message`` objects whose parts are text or a reference to an image
by index. The runtime holds the images; the model processor or an HTTP policy turns the messages
into what it needs. Nothing here does I/O.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Iterable, Literal

from core.actions import Action
from core.coords import CoordSpace
from core.geometry import Screen
from core.kinds import FORM_FACTORS, FormFactor


class ParseError(ValueError):
    """The model's text is not exactly one valid action. The message is fit to show the model."""


@dataclass(frozen=True)
class TextPart:
    text: str
    type: Literal["text"] = "text"
    #: The text is an earlier step's reply as the model wrote it (stripped), nothing added, so
    #: SFT exports know what the model wrote without searching for it (trajectories/export.py).
    reply: bool = False


@dataclass(frozen=True)
class ImagePart:
    """The ``index``-th image of the list the runtime passes along with the messages."""

    index: int
    type: Literal["image"] = "image"


Part = TextPart | ImagePart


@dataclass
class Message:
    role: Literal["system", "user", "assistant"]
    content: list[Part] = field(default_factory=list)

    def text(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


@dataclass(frozen=True)
class PastStep:
    """One finished step, as the prompt of a later step shows it."""

    response: str  # the model's raw text
    feedback: str  # what happened: the env's message, or the parse error fed back
    image: int | None  # index of the screenshot the model saw, or None when it is shown as text
    action: Action | None = None  # None when the response did not parse


@dataclass
class Prompt:
    messages: list[Message]
    #: True when the last message is an assistant turn the model continues (qwen2vl's
    #: ``*RESULT*: <image> *RETURN*:`` history) rather than a new one to open.
    continue_final_message: bool = False


class Dialect(ABC):
    name: str
    #: Action kinds this dialect can express on its form factor.
    kinds: frozenset[str]
    #: Generation stops once the decoded text ends with one of these.
    stop: tuple[str, ...] = ()
    #: Those of ``stop`` that close the reply's own syntax (qwen25vl's ``</tool_call>``): a reply
    #: keeps the one that ended it, as the model wrote it. The others open the runtime's text
    #: (qwen2vl's ``*RESULT*``), which the prompt writes itself, so replies leave them out.
    closing_stop: tuple[str, ...] = ()
    #: Where the action starts in a reply; what comes before it is the model's thought.
    action_marker: re.Pattern[str]
    #: How the model writes a screen position.
    space: CoordSpace

    def __init__(self, form_factor: FormFactor) -> None:
        if form_factor not in FORM_FACTORS:
            raise ValueError(f"unknown form factor {form_factor!r}; the form factors are "
                             f"{', '.join(FORM_FACTORS)}")
        #: The device the env is (an env declares it): it picks the prompt and, where a format
        #: writes both alike, whether a click is a tap.
        self.form_factor = form_factor

    def action_start(self, text: str) -> re.Match[str] | None:
        """Where the reply's action begins, as ``parse`` reads it."""
        return self.action_marker.search(text)

    def thought(self, text: str) -> str:
        """The reasoning a reply gives before its action (without a ``Thought:`` label)."""
        match = self.action_start(text)
        before = text[: match.start()] if match else ""
        return re.sub(r"^\s*Thought\s*:\s*", "", before.strip(), flags=re.IGNORECASE).strip()

    @abstractmethod
    def system_prompt(self, action_kinds: Iterable[str], screen: Screen) -> str:
        """The system prompt describing the actions in ``action_kinds`` on this screen."""

    @abstractmethod
    def build_prompt(
        self,
        goal: str,
        history: list[PastStep],
        current_image: int,
        action_kinds: Iterable[str],
        screen: Screen,
    ) -> Prompt:
        """The whole conversation for the next step: system, goal, history, current screenshot."""

    @abstractmethod
    def render_action(self, action: Action, screen: Screen, thought: str = "") -> str:
        """The text this model family would write to perform ``action``."""

    @abstractmethod
    def parse(self, text: str, screen: Screen) -> Action:
        """Read exactly one action from the model's reply, or raise ParseError."""
