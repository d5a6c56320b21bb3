"""Model dialects: each renders prompts for one model family and parses its replies.

``get_dialect(name, form_factor)`` builds one for an env of that form factor (phone, computer or
browser; an env declares it). The form factor picks the prompt (a phone's, a computer's, a
browser's) and, where a format writes both alike (UI-TARS's ``click``), a tap or a click. Each
dialect states its words once, in an action table (``actions/dialects/table.py``).
"""

from __future__ import annotations

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
from actions.dialects.uitars import UITars15Dialect, UITarsDialect
from core.kinds import FormFactor

DIALECTS: dict[str, type[Dialect]] = {
    "qwen2vl": Qwen2VLDialect,
    "qwen25vl": Qwen25VLDialect,
    "uitars": UITarsDialect,
    "uitars15": UITars15Dialect,
}


def get_dialect(name: str, form_factor: FormFactor) -> Dialect:
    """The dialect called ``name``, set up for an env of this ``form_factor``."""
    try:
        cls = DIALECTS[name]
    except KeyError:
        raise ValueError(
            f"unknown dialect {name!r}; the dialects are {', '.join(DIALECTS)}"
        ) from None
    return cls(form_factor)  # type: ignore[call-arg]


__all__ = [
    "DIALECTS", "Dialect", "ImagePart", "Message", "ParseError", "PastStep", "Prompt", "TextPart",
    "get_dialect",
]
