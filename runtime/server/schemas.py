"""The OpenAI chat-completions request as we accept it, checked strictly: a wrong type is an
error, never coerced, a top-level null is the field's default, and fields we do not know are
ignored (as OpenAI's clients expect)."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

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


class ChatRequest(BaseModel):
    model_config = STRICT
    model: str
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None  # OpenAI's newer name
    temperature: Annotated[float, Field(ge=0, le=2)] = 1.0
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    seed: Annotated[int, Field(ge=0, lt=2**63)] | None = None
    stop: str | Annotated[list[str], Field(max_length=8)] | None = None
    stream: bool = False
    n: Annotated[int, Field(ge=1, le=1)] = 1
    # vLLM's extensions for writing on in the last assistant message (the qwen2vl format).
    continue_final_message: bool = False
    add_generation_prompt: bool = True
    mm_processor_kwargs: PixelBudget | None = None

    @model_validator(mode="before")
    @classmethod
    def _null_is_unset(cls, data: object) -> object:
        """``"temperature": null`` means the default, as OpenAI's API and vLLM read it."""
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data

    @property
    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


def error_body(message: str, kind: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": kind, "code": None}}
