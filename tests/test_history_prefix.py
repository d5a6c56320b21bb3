"""History layouts that keep the prompt's prefix stable from step to step (for prefix reuse)."""

from __future__ import annotations

import os

import pytest
from episode_prompts import episode_prompts

from actions.dialects import PastStep
from agent.history import HistoryPolicy
from agent.policies.base import hf_messages
from core.geometry import Screen
from runtime.settings import RunSpec

SCREEN = Screen(1080, 2400)
STEPS = 10
IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"


def _texts(processor, dialect: str, history: HistoryPolicy) -> list[str]:
    replies = [f"Thought: go on ({i}).\nAction: reply {i}" for i in range(STEPS)]
    return [processor.apply_chat_template(hf_messages(p), add_generation_prompt=not
                                          p.continue_final_message,
                                          continue_final_message=p.continue_final_message)
            for p in episode_prompts(dialect, replies, SCREEN, history)]


def _shared(a: str, b: str) -> int:
    return len(os.path.commonprefix([a, b]))


def test_a_step_cap_shows_every_past_step_until_there_are_more():
    past = [PastStep(f"r{i}", "", image=i) for i in range(8)]
    for n in range(9):
        shown = HistoryPolicy(images=4, steps=5, block=1).select(past[:n])
        assert [s.response for s in shown] == [f"r{i}" for i in range(max(0, n - 5), n)]
    assert HistoryPolicy(steps=0).select(past) == []


def test_blocks_keep_between_images_minus_block_plus_one_and_images_screenshots():
    past = [PastStep(f"r{i}", "", image=i) for i in range(9)]
    kept = [sum(s.image is not None for s in HistoryPolicy(images=3, block=2).select(past[:n]))
            for n in range(10)]
    # Up to three stay; past three, two leave together, so it alternates between 2 and 3.
    assert kept == [0, 1, 2, 3, 2, 3, 2, 3, 2, 3]
    # The ones kept are always the most recent.
    shown = HistoryPolicy(images=3, block=2).select(past[:6])
    assert [s.image for s in shown] == [None] * 4 + [4, 5]
    # A block larger than the screenshots kept drops that many at a time: the most recent stays
    # at every step (images 1 in blocks of 3 showed it one step in three).
    for images, block in ((1, 3), (1, 4), (3, 8)):
        policy = HistoryPolicy(images=images, block=block)
        for n in range(1, 10):
            shown = [s.image for s in policy.select(past[:n]) if s.image is not None]
            assert shown and shown[-1] == n - 1 and len(shown) <= images, (images, block, n)
    with pytest.raises(ValueError, match="block must be at least 1"):
        HistoryPolicy(block=0)


def test_the_one_step_window_breaks_the_qwen2vl_prefix_before_the_kept_screenshots(
    tiny_processor
):
    texts = _texts(tiny_processor, "qwen2vl", HistoryPolicy(images=2, block=1))
    for step in range(3, STEPS):  # from step 3 a screenshot becomes text every step
        shared = _shared(texts[step - 1], texts[step])
        assert shared <= texts[step].index(f"(screenshot {step - 3} not shown)")
        # So every screenshot of the previous prompt is read again.
        assert texts[step - 1][shared:].count(IMAGE) == 3


@pytest.mark.parametrize("dialect", ["qwen2vl", "qwen25vl", "uitars"])
def test_the_default_blocks_extend_the_previous_prompt_between_drops(tiny_processor, dialect):
    spec = RunSpec(goal="g", model="m")
    history = HistoryPolicy(images=spec.history_images, block=spec.history_block)
    texts = _texts(tiny_processor, dialect, history)
    past_images = [sum(s.image is not None for s in history.select(
        [PastStep("r", "", image=i) for i in range(n)])) for n in range(STEPS)]
    for step in range(2, STEPS):
        shared = _shared(texts[step - 1], texts[step])
        if past_images[step] >= past_images[step - 1]:  # nothing dropped: the prompt only grows
            # qwen2vl continues the very sequence; the others insert the last reply just before
            # the current screenshot, so the previous prompt is shared up to that screenshot.
            previous = texts[step - 1]
            assert shared >= previous.rindex(IMAGE), (dialect, step)
            assert previous.count(IMAGE) == past_images[step - 1] + 1
        else:  # a block left: the prompt changes where the oldest screenshot was
            assert texts[step - 1][:shared].count(IMAGE) == 0  # no screenshot is shared
    drops = sum(past_images[s] < past_images[s - 1] for s in range(1, STEPS))
    assert drops == 2  # at steps 5 and 9 out of 10: four screenshots leave together
