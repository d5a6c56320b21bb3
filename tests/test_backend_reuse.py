"""The local backend's single calls reuse the previous step's prefix and still reply exactly as
the plain (batch) path does."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from actions.dialects import PastStep, get_dialect
from agent.backends.base import Params
from agent.backends.local import LocalBackend
from agent.history import HistoryPolicy
from agent.policies.base import hf_messages, prompt_images
from core.geometry import Screen

SCREEN = Screen(131, 277, max_pixels=40 * 28 * 28)  # a size no other test uses


@pytest.mark.parametrize("dialect_name", ["qwen2vl", "uitars"])
def test_a_multi_step_episode_replies_alike_with_and_without_reuse(tiny_checkpoint,
                                                                   dialect_name):
    backend = LocalBackend(tiny_checkpoint, device="cpu")
    dialect = get_dialect(dialect_name, "phone")
    rng = np.random.default_rng(7)
    screenshots = [Image.fromarray(rng.integers(0, 256, (277, 131, 3), dtype=np.uint8))
                   for _ in range(4)]
    history = HistoryPolicy(images=2, block=2)
    past: list[PastStep] = []
    cached = []
    for step in range(4):
        # Two actions listed: a short system prompt keeps the test fast.
        prompt = dialect.build_prompt("Open the clock", history.select(past), step,
                                      dialect.kinds & {"tap", "home"}, SCREEN)
        messages, images = hf_messages(prompt), prompt_images(prompt, screenshots)
        params = dict(max_new_tokens=6, stop=dialect.stop, min_pixels=SCREEN.min_pixels,
                      max_pixels=SCREEN.max_pixels,
                      continue_final_message=prompt.continue_final_message)
        reused = backend.generate(messages, images, **params)
        # The batch path runs the plain generate, between two session calls.
        (plain,) = backend.generate_batch([backend.prepare(messages, images,
                                                           Params(**params))])
        assert reused.text == plain.text and reused.completion_tokens == plain.completion_tokens
        assert plain.cached_tokens == 0 and reused.prompt_tokens == plain.prompt_tokens
        cached.append(reused.cached_tokens)
        past.append(PastStep(reused.text, f"done {step}", step))
    assert cached[0] == 0 and all(c > 0 for c in cached[1:]), cached
