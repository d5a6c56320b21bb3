"""An agent episode's prompts, step by step, as a dialect and a history policy lay them out.

Shared by the prefix-reuse tests and ``bench/prefix_reuse.py``: step ``i`` shows screenshot ``i``;
each past step's reply is the one passed in, with a short feedback line.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from actions.dialects import PastStep, Prompt, get_dialect
from agent.history import HistoryPolicy
from agent.policies.base import hf_messages, prompt_images
from core.geometry import Screen

GOAL = "Open the settings app and turn on dark mode"


def episode_prompts(
    dialect_name: str,
    replies: list[str],
    screen: Screen,
    history: HistoryPolicy,
    kinds: Iterable[str] | None = None,
    goal: str = GOAL,
) -> Iterator[Prompt]:
    """The prompt of each step, given the replies of the steps before it. ``kinds`` narrows the
    actions the system prompt lists (a shorter prompt for fast tests); None lists them all."""
    dialect = get_dialect(dialect_name, "phone")
    listed = dialect.kinds if kinds is None else dialect.kinds & set(kinds)
    past: list[PastStep] = []
    for step, reply in enumerate(replies):
        yield dialect.build_prompt(goal, history.select(past), step, listed, screen)
        past.append(PastStep(reply, f"done (step {step})", step))


def model_inputs(processor, prompt: Prompt, screenshots: list, screen: Screen, **options) -> dict:
    """The processor's tensors for one prompt, at the screen's pixel budget."""
    text = processor.apply_chat_template(
        hf_messages(prompt),
        add_generation_prompt=not prompt.continue_final_message,
        continue_final_message=prompt.continue_final_message,
    )
    return processor(text=text, images=prompt_images(prompt, screenshots) or None,
                     min_pixels=screen.min_pixels, max_pixels=screen.max_pixels, **options)
