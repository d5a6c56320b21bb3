"""The OpenAI chat-completions request as we accept it, checked strictly: a wrong type is an
error, never coerced, a top-level null is the field's default, fields we do not know are ignored
(as OpenAI's clients expect), and a known feature we lack is refused unless it asks for nothing."""

from __future__ import annotations

import json
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from core.stops import stop_strings

#: Request fields of OpenAI's API (and vLLM's) that this server cannot honour, with the values
#: that ask for nothing (what some clients send every time).
UNSUPPORTED: dict[str, tuple] = {
    "logprobs": (False,),
    "top_logprobs": (0,),
    "tools": ([],),
    "functions": ([],),
    "response_format": ({"type": "text"},),
    "frequency_penalty": (0, 0.0),
    "presence_penalty": (0, 0.0),
    "logit_bias": ({},),
    "best_of": (1,),
    "use_beam_search": (False,),
    "echo": (False,),
    "min_tokens": (0,),
    # "auto" without tools can only answer in text; "required" or a named function asks for a
    # call this server never makes.
    "tool_choice": ("none", "auto"),
    "function_call": ("none", "auto"),
    "modalities": (["text"],),
    # Any value asks for something: spoken output, a web search.
    "audio": (),
    "web_search_options": (),
}

STRICT = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)


class ImageURL(BaseModel):
    model_config = STRICT
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class TextContent(BaseModel):
    model_config = STRICT
    type: Literal["text"]
    text: str


class ImageContent(BaseModel):
    model_config = STRICT
    type: Literal["image_url"]
    image_url: ImageURL


Part = Annotated[Union[TextContent, ImageContent], Field(discriminator="type")]
PART_TYPES = ("text", "image_url")


class ChatMessage(BaseModel):
    model_config = STRICT
    role: Literal["system", "user", "assistant"]
    content: str | Annotated[list[Part], Field(min_length=1)]


class PixelBudget(BaseModel):
    """vLLM's ``mm_processor_kwargs`` for Qwen2-VL: the processor's resize budget per image."""

    model_config = STRICT
    min_pixels: Annotated[int, Field(ge=1)] | None = None
    max_pixels: Annotated[int, Field(ge=1)] | None = None


class StreamOptions(BaseModel):
    model_config = STRICT
    #: OpenAI's: the usage in a chunk of its own (empty choices) before ``[DONE]``.
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = STRICT
    model: str
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None  # OpenAI's newer name
    temperature: Annotated[float, Field(ge=0, le=2)] = 1.0
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    top_k: Annotated[int, Field(ge=-1)] = 0  # vLLM's extension: 0 or -1 is no limit
    # vLLM's extension; unset: the checkpoint's (generation_config.json's), as vLLM's default.
    repetition_penalty: Annotated[float, Field(gt=0, le=10)] | None = None
    seed: Annotated[int, Field(ge=0, lt=2**63)] | None = None
    stop: str | Annotated[list[str], Field(max_length=8)] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Annotated[int, Field(ge=1, le=1)] = 1
    # vLLM's extensions for writing on in the last assistant message (the qwen2vl format).
    continue_final_message: bool = False
    add_generation_prompt: bool = True
    mm_processor_kwargs: PixelBudget | None = None

    @model_validator(mode="before")
    @classmethod
    def _null_is_unset(cls, data: object) -> object:
        """``"temperature": null`` means the default, as OpenAI's API and vLLM read it. A
        feature this server does not have is refused unless it asks for nothing: answering
        without the logprobs or tool calls a client asked for would look like success."""
        if not isinstance(data, dict):
            return data
        data = {key: value for key, value in data.items() if value is not None}
        for name, neutral in UNSUPPORTED.items():
            if name in data and data[name] not in neutral:
                only = f" (only {' or '.join(json.dumps(v) for v in neutral)})" if neutral else ""
                raise PydanticCustomError(
                    "unsupported", "{name} is not supported by this server{only}",
                    {"name": name, "only": only})
        return data

    @model_validator(mode="after")
    def _stream_options_need_a_stream(self) -> "ChatRequest":
        if self.stream_options is not None and not self.stream:  # as OpenAI's API refuses it
            raise PydanticCustomError("stream_options", "stream_options is only allowed with "
                                      "\"stream\": true")
        return self

    @property
    def token_limit(self) -> tuple[str, int] | None:
        """The limit the client set on new tokens, with the field that set it (OpenAI's newer
        name wins where both are sent); None: unset."""
        if self.max_completion_tokens is not None:
            return "max_completion_tokens", self.max_completion_tokens
        return None if self.max_tokens is None else ("max_tokens", self.max_tokens)

    @property
    def stop_strings(self) -> tuple[str, ...]:
        return stop_strings(self.stop)


def error_body(message: str, kind: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": kind, "code": None}}
