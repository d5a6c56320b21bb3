"""How much of the past the prompt shows: which past steps stay, and which keep their screenshot.

Screenshots dominate the prompt (a phone screen is about 3,000 tokens at the checkpoints' default
budget), so only the most recent ``images`` past steps show theirs; older steps appear as text
(their reply and what happened). ``steps`` caps how many past steps appear at all.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from actions.dialects.base import PastStep


@dataclass(frozen=True)
class HistoryPolicy:
    #: Past steps whose screenshot stays an image; the others become text.
    images: int = 2
    #: Past steps shown at all (the most recent ones); None shows every step.
    steps: int | None = None
    #: When the policy can count tokens, drop past images (oldest first) until the prompt fits.
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.images < 0 or (self.steps is not None and self.steps < 0):
            raise ValueError("history sizes cannot be negative")

    def select(self, past: list[PastStep], images: int | None = None) -> list[PastStep]:
        """The past steps to show, the older ones without their screenshot."""
        keep_images = self.images if images is None else images
        shown = past if self.steps is None else past[len(past) - self.steps :] if self.steps else []
        cut = len(shown) - keep_images
        return [s if i >= cut else replace(s, image=None) for i, s in enumerate(shown)]
