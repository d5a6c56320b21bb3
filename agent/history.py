"""How much of the past the prompt shows: which past steps stay, and which keep their screenshot.

Screenshots dominate the prompt (a phone screen is about 3,000 tokens at the checkpoints' default
budget), so only the most recent ``images`` past steps show theirs; older steps appear as text
(their reply and what happened). ``steps`` caps how many past steps appear at all.

Screenshots leave ``block`` at a time. A backend that reuses the previous call's cached prefix
(the ``local`` one) re-reads the prompt from the first change on; with one screenshot turned into
text per step, that change sits near the start every step, and all later screenshots are read
again. In blocks, the shown screenshots stay put for ``block`` steps, each step only appends.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # so that the CLI and runtime.settings get the defaults without the dialects
    from actions.dialects.base import PastStep


@dataclass(frozen=True)
class HistoryPolicy:
    #: Past steps whose screenshot stays an image; the others become text.
    images: int = 4
    #: Past steps shown at all (the most recent ones); None shows every step.
    steps: int | None = None
    #: When the policy can count tokens, drop past images (oldest first) until the prompt fits.
    max_tokens: int | None = None
    #: Screenshots turn into text this many at a time, so between drops the prompt only grows;
    #: between ``images - block + 1`` and ``images`` screenshots stay. A block larger than
    #: ``images`` drops ``images`` at a time, so one screenshot at least stays (``images`` 1
    #: with blocks of 4 showed the last screenshot one step in four).
    #: The default keeps 1 to 4 (2.5 on average, like 3 kept and 2 dropped at a time) and
    #: re-reads the prompt every fourth step instead of every second.
    block: int = 4

    def __post_init__(self) -> None:
        if self.images < 0 or (self.steps is not None and self.steps < 0):
            raise ValueError("history sizes cannot be negative")
        if self.block < 1:
            raise ValueError(f"history block must be at least 1, got {self.block}")

    def select(self, past: list[PastStep]) -> list[PastStep]:
        """The past steps to show, the older ones without their screenshot."""
        return next(self.trimmed(past))

    def trimmed(self, past: list[PastStep]) -> Iterator[list[PastStep]]:
        """What a token budget tries in turn: ``select(past)``, then one block of screenshots
        fewer each time, oldest first, down to none (each distinct selection once)."""
        shown = past if self.steps is None else past[max(0, len(past) - self.steps):] \
            if self.steps else []
        block = min(self.block, self.images) or 1
        # The first shown step that keeps its screenshot, rounded up to a whole block.
        cut = max(0, -(-(len(shown) - self.images) // block) * block)
        while True:
            yield [s if i >= cut else replace(s, image=None) for i, s in enumerate(shown)]
            if cut >= len(shown):
                return
            cut += block
