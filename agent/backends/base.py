"""The backend interface: ``generate(messages, images, **params) -> Completion``.

Messages are Hugging Face chat messages whose image parts (``{"type": "image"}``) carry no data;
``images`` holds the pictures in the order those parts appear.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Optional, Protocol

from core.stops import stop_strings
from model.config import check_repetition_penalty, check_temperature

if TYPE_CHECKING:
    from PIL import Image

Messages = list[dict[str, Any]]
#: Gets one request's text pieces as they are decoded (held back while they could start a stop
#: string); they join to its ``Completion.text``. None: the request is not streamed.
OnText = Optional[Callable[[str], None]]


@dataclass(frozen=True)
class Params:
    """How to generate, and how to render the prompt (the same for every backend)."""

    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 decodes greedily
    top_k: int = 0  # sample from this many likeliest tokens; 0: no limit
    top_p: float = 1.0
    seed: int | None = None
    #: Above 1, tokens the prompt or the reply hold are less likely; None: the model's default
    #: (a checkpoint's generation_config.json; an endpoint's own).
    repetition_penalty: float | None = None
    #: Generation stops at the first of these; the returned text ends before it.
    stop: tuple[str, ...] = ()
    #: Go on writing the last (assistant) message instead of opening a new turn (qwen2vl format).
    continue_final_message: bool = False
    #: The processor's resize budget per image; None: the checkpoint's own.
    min_pixels: int | None = None
    max_pixels: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        check_temperature(self.temperature)
        if self.top_k < 0:
            raise ValueError(f"top_k must be at least 0 (0: no limit), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        # serve's range (OpenAI's int64, not negative): the local backend then takes the same
        # seeds as an endpoint, and none that torch's generator cannot take (2**64: "Overflow
        # when unpacking long long", in greedy decoding too).
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be in [0, 2^63), got {self.seed}")
        check_repetition_penalty(self.repetition_penalty)
        for name in ("min_pixels", "max_pixels"):
            if (value := getattr(self, name)) is not None and value < 1:
                raise ValueError(f"{name} must be above 0 (None: the checkpoint's), got {value}")
        if self.min_pixels and self.max_pixels and self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels is above max_pixels ({self.min_pixels} > "
                             f"{self.max_pixels})")
        object.__setattr__(self, "stop", stop_strings(self.stop))


@dataclass(frozen=True)
class Joined:
    """A request taken into a running batch: its place among the batch's requests (the batch's
    own first), its sink (called on the model's thread) and whether its requester is gone."""

    index: int
    job: Any
    on_text: OnText
    gone: Callable[[], bool]


class Arrivals(Protocol):
    """Requests that arrived while a batch runs, as a continuously batching engine sees them
    (a server's ``runtime.server.scheduler.BatchArrivals``); called on the model's thread."""

    #: The most rows the batch may decode at once, joined ones included.
    max_rows: int

    def any(self, accept: Callable[[Any], bool]) -> bool:
        """Could ``take`` take a request now?"""

    def take(self, accept: Callable[[Any], bool], limit: int) -> list[Joined]:
        """Up to ``limit`` waiting requests that ``accept`` takes, oldest first; none from
        behind a request it refuses (that one waits for the next batch, and so do they)."""

    def deliver(self, index: int, result: "Completion | Exception") -> None:
        """Answer the batch's request ``index`` now."""


def check_context(prompt_tokens: int, max_new_tokens: int, context: int,
                  at_least: bool = False) -> None:
    """A ValueError when a prompt and the tokens to write after it do not fit the context
    (``at_least``: ``prompt_tokens`` is a lower bound, counted before tokenizing)."""
    if prompt_tokens + max_new_tokens > context:
        counted = f"the prompt has {'at least ' if at_least else ''}{prompt_tokens} tokens"
        if prompt_tokens >= context:  # whatever was asked to write: at least one token must fit
            raise ValueError(f"{counted}: with even one new token after it, it exceeds the "
                             f"context of {context}")
        raise ValueError(f"{counted}; with {max_new_tokens} new tokens to write it exceeds the "
                         f"context of {context}")


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    #: "stop": an EOS token or a stop string ended it; "length": max_new_tokens did; "dropped":
    #: nobody waited for it any more (a server's request whose client left), so it was cut off.
    finish_reason: Literal["stop", "length", "dropped"] = "stop"
    #: The stop string that ended the text (it is not in ``text``); None when an EOS token or
    #: the token limit did.
    stop: str | None = None
    #: False when an endpoint did not say whether a stop string or an EOS token ended its text
    #: (``stop`` is then None): OpenAI's API does not, vLLM's ``stop_reason`` and SGLang's
    #: ``matched_stop`` do.
    stop_known: bool = True
    #: Prompt tokens whose KV cache was reused from the previous call, not computed again.
    cached_tokens: int = 0
    #: Wall-clock milliseconds by phase, e.g. preprocess_ms and generate_ms, or request_ms.
    timings: dict[str, float] = field(default_factory=dict)


class Backend(ABC):
    #: Shown in meta.json and the live view: a checkpoint path or an endpoint's model name.
    name: str = "backend"

    def describe(self) -> str:
        """One line for the terminal: which model answers, and where it runs."""
        return self.name

    @abstractmethod
    def generate(self, messages: Messages, images: list["Image.Image"], **params: Any) -> Completion:
        """The model's reply to the conversation; ``params`` are the fields of ``Params``."""

    def close(self) -> None:
        """Release what the backend holds (a model, a connection)."""
