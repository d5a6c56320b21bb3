"""The Policy interface: a conversation and its screenshots in, the model's raw text out.

Every way of choosing actions (a local Qwen2-VL, an OpenAI-compatible endpoint, a task's scripted
solution, a replayed file, a person at the keyboard) sits behind this one interface, and the loop
treats them alike: their text goes through the dialect's parser either way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from actions.dialects.base import Dialect, ImagePart, Prompt, TextPart
from core.geometry import Screen
from core.special_tokens import unframed

if TYPE_CHECKING:
    from PIL import Image

    from envs.base import Env
    from tasks.base import Task


class PolicyError(RuntimeError):
    """The policy cannot produce a reply (a file ran out, a server failed); the episode ends."""


class PolicyStopped(PolicyError):
    """A person ended the episode before it was done (``--model human``'s empty line): it is
    interrupted, as by Ctrl-C, not a runtime error."""


class PolicyGaveUp(PolicyError):
    """The policy ends the episode as a failure of its own, not a runtime error (a scripted
    solution found the screen other than it needs)."""


@dataclass
class Episode:
    """What a policy may know about the episode it starts: the goal, and for scripted runs the
    task and the env its solution reads the screen layout from."""

    goal: str
    dialect: Dialect
    env: "Env | None" = None
    task: "Task | None" = None


@dataclass
class Request:
    prompt: Prompt
    #: The episode's screenshots by step; ``ImagePart.index`` refers into this list. Those
    #: older than the first the history shows are None (no later prompt shows them again).
    images: list["Image.Image | None"]
    screen: Screen
    step: int
    #: Generation stops once the text ends with one of these (the dialect's stop strings).
    stop: tuple[str, ...] = ()
    #: Those of ``stop`` that the reply keeps when one ends it (``Dialect.closing_stop``).
    closing_stop: tuple[str, ...] = ()


@dataclass
class Reply:
    text: str
    usage: dict[str, Any] = field(default_factory=dict)  # e.g. generated token count


class Policy(ABC):
    #: Shown in meta.json and the live view: a model path, "scripted", "replay:FILE", "human".
    name: str = "policy"

    def describe(self) -> str:
        """One line for the terminal: what answers, and where it runs."""
        return self.name

    def start(self, episode: Episode) -> None:
        """Called once before the first step."""

    @abstractmethod
    def respond(self, request: Request) -> Reply:
        """The model's text for this step."""

    def count_tokens(
        self, prompt: Prompt, images: list["Image.Image | None"], screen: Screen
    ) -> int | None:
        """Prompt length in tokens, when this policy has a processor to count with."""
        return None

    def count_reply(self, text: str) -> int | None:
        """A reply's length in tokens, when this policy has a tokenizer to count with (one that
        generates reports its new tokens instead)."""
        return None

    def context_length(self) -> int | None:
        """Most tokens a prompt and its reply may hold together, when this policy knows it."""
        return None

    def close(self) -> None:
        """Release what the policy holds (a model, a connection)."""


def prompt_images(prompt: Prompt, images: list["Image.Image | None"]) -> list["Image.Image"]:
    """The screenshots the prompt shows, in the order its image parts appear."""
    shown = [images[p.index] for m in prompt.messages for p in m.content
             if isinstance(p, ImagePart)]
    if None in shown:  # a history that showed an older screenshot again than it did before
        raise ValueError("the prompt shows a screenshot the agent loop has let go")
    return shown


def hf_messages(prompt: Prompt) -> list[dict[str, Any]]:
    """The prompt as Hugging Face chat messages (``{"type": "image"}`` parts carry no data).

    Text that spells a token framing the chat (a reply or a goal holding ``<|im_end|>`` or
    ``<|image_pad|>``, a parse error quoting one) goes without it: the tokenizer would read it
    as the chat's structure, a turn or an image that is not there, as a local model's replies
    leave those tokens out."""
    return [
        {
            "role": m.role,
            "content": [
                {"type": "text", "text": unframed(p.text)} if isinstance(p, TextPart)
                else {"type": "image"}
                for p in m.content
            ],
        }
        for m in prompt.messages
    ]

