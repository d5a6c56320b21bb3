"""Model dialects: each renders prompts for one model family and parses its replies.

``get_dialect(name, kinds)`` builds one. ``kinds`` are the action kinds of the env it will drive;
dialects whose replies do not say by themselves whether they mean a phone or a computer (UI-TARS
writes ``click`` for both) use them to choose tap or click, and the matching prompt.
"""

from __future__ import annotations

from typing import Iterable

from actions.dialects.base import (
    Dialect,
    ImagePart,
    Message,
    ParseError,
    PastStep,
    Prompt,
    TextPart,
)
from actions.dialects.qwen2vl import Qwen2VLDialect
from actions.dialects.qwen25vl import Qwen25VLDialect
from actions.dialects.uitars import UITarsDialect

DIALECTS: dict[str, type[Dialect]] = {
    "qwen2vl": Qwen2VLDialect,
    "qwen25vl": Qwen25VLDialect,
    "uitars": UITarsDialect,
}


def get_dialect(name: str, kinds: Iterable[str] | None = None) -> Dialect:
    """The dialect called ``name``, set up for an env with these action ``kinds``."""
    try:
        cls = DIALECTS[name]
    except KeyError:
        raise ValueError(
            f"unknown dialect {name!r}; the dialects are {', '.join(DIALECTS)}"
        ) from None
    return cls(kinds=kinds)  # type: ignore[call-arg]


__all__ = [
    "DIALECTS", "Dialect", "ImagePart", "Message", "ParseError", "PastStep", "Prompt", "TextPart",
    "get_dialect",
]
